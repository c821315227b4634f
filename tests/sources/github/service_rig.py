"""``adw run`` (the real ``Service``) against the fake GitHub, with or without a webhook: the rig the
label-to-attempt latency test and ``bench/webhook_latency.py`` share."""

from __future__ import annotations

import statistics
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from adw_modules.config.schema import load_config
from adws.service import Service
from tests.fakes.github_api import FAKE_TOKEN, FakeGitHub

REPO = "acme/app"
SECRET = "whsec-latency-0123456789abcdef"
QUICK_AGENT = """\
import json, sys
sys.stdin.read()
print(json.dumps({"type": "result", "subtype": "success", "is_error": False, "result": "ok",
                  "session_id": "s", "usage": {"input_tokens": 1, "output_tokens": 1}}), flush=True)
"""


@contextmanager
def running_service(tmp_path: Path, fake: FakeGitHub, *, poll_s: float, webhook: bool) -> Iterator[Service]:
    agent = tmp_path / "agent.py"
    agent.write_text(QUICK_AGENT)
    hook = (
        f'[github.webhook]\nlisten = "127.0.0.1:0"\nsecret_env = "HOOK_SECRET"\npoll_interval_s = {poll_s}\n'
        if webhook
        else ""
    )
    path = tmp_path / "config.toml"
    path.write_text(
        f"""
[providers.a]
command_template = ["{sys.executable}", "{agent}"]
prompt_stdin = true
[routing]
default_provider = "a"
default_model = "m"
[coordinator]
state_dir = "state"
[github]
repositories = ["{REPO}"]
base_url = "{fake.base_url}"
poll_interval_s = {poll_s}
sync_interval_s = 600
read_spacing_s = 0
write_spacing_s = 0
{hook}"""
    )
    environ = {"PATH": "/usr/bin:/bin", "GITHUB_TOKEN": FAKE_TOKEN, "HOOK_SECRET": SECRET}
    service = Service(load_config(path), environ=environ)
    runner = threading.Thread(target=service.run, name="service", daemon=True)
    runner.start()
    try:
        deadline = time.monotonic() + 30
        while webhook and service.webhook is None:  # the receiver is up before the first dispatch
            if time.monotonic() > deadline:
                raise AssertionError("the webhook receiver did not start")
            time.sleep(0.01)
        yield service
    finally:
        service.request_stop()
        runner.join(60)


def label_to_attempt_s(service: Service, fake: FakeGitHub, *, webhook: bool, timeout_s: float = 120.0) -> float:
    """Label a new issue (and deliver the webhook, as GitHub would); seconds until its attempt starts."""
    n = fake.add_issue(REPO, "Latency", user="someone", body="b")
    labelled = time.monotonic()
    fake.label_issue(REPO, n, "adw", actor="maintainer")
    if webhook:
        assert service.webhook is not None
        fake.deliver(REPO, "issues", fake.issues_payload(REPO, n, "labeled", "maintainer", label="adw"))
    deadline = labelled + timeout_s
    while True:
        task = service.store.find_task("github", f"{REPO}#{n}")
        if task is not None and service.store.attempts_for(task.id):
            return time.monotonic() - labelled
        if time.monotonic() > deadline:
            raise AssertionError(f"issue #{n}'s attempt did not start within {timeout_s} s")
        time.sleep(0.005)


def median(values: list[float]) -> float:
    return statistics.median(values)
