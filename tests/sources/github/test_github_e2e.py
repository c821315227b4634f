"""End to end: a labelled issue -> the coordinator service -> a dry-run provider that rate-limits ->
failover -> the done label and one final progress comment with tokens and cost."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from adw_modules.config.schema import load_config
from adw_modules.queue.tasks import TaskState
from adws.service import Service
from tests.fakes.github_api import FAKE_TOKEN, FakeGitHub
from tests.paths import TOOLS

REPO = "acme/app"
AGENT = TOOLS / "dry-run-agent.py"


def wait_for(what: str, check: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_labelled_issue_fails_over_and_ends_done_with_cost(tmp_path: Path) -> None:
    with FakeGitHub() as fake:
        fake.add_repo(REPO)
        fake.set_permission(REPO, "maintainer", "write")
        n = fake.add_issue(REPO, "Login times out", body="Steps: log in, wait.", user="someone")
        fake.label_issue(REPO, n, "adw", actor="maintainer")
        config_path = tmp_path / "config.toml"
        config_path.write_text(
            f"""
[providers.claude-dry]
command_template = ["{AGENT}", "--model", "{{model}}", "--output-format", "stream-json", "--verbose"]
prompt_stdin = true
env = {{ ADW_DRY_RUN_FAIL = "rate_limit@1", ADW_DRY_RUN_STATE = "{tmp_path / "rl.count"}", ADW_DRY_RUN_RETRY_AFTER = "120" }}
[providers.openrouter-dry]
command_template = ["{AGENT}", "--model", "{{model}}", "--output-format", "stream-json", "--verbose"]
prompt_stdin = true
price_provider = "openrouter"
[routing]
enabled = true
default_provider = "claude-dry"
default_model = "claude-sonnet-4-5"
fallback = ["openrouter-dry:anthropic/claude-sonnet-4.5"]
[coordinator]
dispatch_interval_s = 0.2
heartbeat_s = 1
lease_s = 10
state_dir = "state"
[github]
repositories = ["{REPO}"]
base_url = "{fake.base_url}"
poll_interval_s = 0.3
sync_interval_s = 0.2
read_spacing_s = 0
write_spacing_s = 0
"""
        )
        service = Service(load_config(config_path), environ={"PATH": "/usr/bin:/bin", "GITHUB_TOKEN": FAKE_TOKEN})
        runner = threading.Thread(target=service.run, name="service")
        runner.start()
        try:
            wait_for(
                "the task to succeed",
                lambda: any(t.state is TaskState.SUCCEEDED for t in service.store.tasks_by_source("github")),
            )
            wait_for("the done label", lambda: "adw:done" in fake.issue_labels(REPO, n))
            wait_for("the final comment", lambda: any("✅ done" in c.body for c in fake.comments(REPO, n)))
        finally:
            service.request_stop()
            runner.join(30)
        assert not runner.is_alive()
        labels = fake.issue_labels(REPO, n)
        assert "adw:done" in labels and "adw:queued" not in labels and "adw:running" not in labels
        progress = [c.body for c in fake.comments(REPO, n) if "<!-- adw:progress" in c.body]
        assert len(progress) == 1  # edited in place through queued -> running -> done
        body = progress[0]
        assert "✅ done" in body and "`openrouter-dry` / `anthropic/claude-sonnet-4.5`" in body, body
        assert "`claude-dry/claude-sonnet-4-5`: the provider rate-limited the request" in body
        assert " in · " in body and "| Cost | $" in body and "(estimated from genai-prices)" in body
        assert FAKE_TOKEN not in body
        fake.assert_valid()
