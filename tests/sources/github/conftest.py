"""A real coordinator driving GitHub tasks through the GitHub source, against the fake GitHub."""

from __future__ import annotations

import errno
import os
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from adw_modules.config.schema import load_config
from adw_modules.coordinator import Coordinator
from adw_modules.queue.store import Store
from adw_modules.queue.tasks import Task
from adw_modules.sources.github.client import GitHubClient
from adw_modules.sources.github.source import GitHubSource
from tests.fakes.github_api import FAKE_TOKEN, FakeGitHub

REPO = "acme/app"
T = TypeVar("T")

# Records each prompt it gets (prompts/<n>.txt, in run order); the run whose number is in
# $GATED blocks until the test opens and closes the FIFO $GATE (an event, not a sleep).
AGENT = """\
import json, os, sys
from pathlib import Path
prompt = sys.stdin.read()
runs = Path(os.environ["PROMPTS"])
n = len(list(runs.glob("*.txt"))) + 1
(runs / f"{n}.tmp").write_text(prompt)
os.replace(runs / f"{n}.tmp", runs / f"{n}.txt")
if str(n) in os.environ.get("GATED", "").split(","):
    with open(os.environ["GATE"]) as gate:
        gate.read()
print(json.dumps({"type": "result", "subtype": "success", "is_error": False, "result": f"run {n}",
                  "session_id": "s", "usage": {"input_tokens": 1, "output_tokens": 1}}), flush=True)
"""


def wait_for(check: Callable[[], T | None], what: str, timeout_s: float = 30.0) -> T:
    deadline = time.monotonic() + timeout_s
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
    return value


class Rig:
    """One store, one GitHub source and one in-process coordinator, as ``adw run`` wires them."""

    def __init__(self, tmp_path: Path, fake: FakeGitHub, *, gated: str = "", github: str = "") -> None:
        self.fake = fake
        self.prompts = tmp_path / "prompts"
        self.prompts.mkdir()
        self.gate = tmp_path / "gate.fifo"
        os.mkfifo(self.gate)
        agent = tmp_path / "agent.py"
        agent.write_text(AGENT)
        path = tmp_path / "config.toml"
        path.write_text(
            textwrap.dedent(
                f"""
                [providers.a]
                command_template = ["{sys.executable}", "{agent}"]
                prompt_stdin = true
                timeout = 60
                env = {{ PROMPTS = "{self.prompts}", GATE = "{self.gate}", GATED = "{gated}" }}
                [routing]
                default_provider = "a"
                default_model = "m"
                [coordinator]
                retry_base_s = 0.01
                retry_max_s = 0.01
                state_dir = "state"
                [github]
                repositories = ["{REPO}"]
                base_url = "{fake.base_url}"
                """
            )
            + textwrap.dedent(github)
        )
        self.config = load_config(path)
        assert self.config.github is not None
        self.store = Store.open(f"sqlite:///{tmp_path / 'adw.db'}")
        self.client = GitHubClient(fake.base_url, FAKE_TOKEN, pace_s=(0, 0))
        self.source = GitHubSource(self.config.github, self.store, self.client)
        self.coord = Coordinator(self.config, self.store, environ={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
        self.coord.prompt_renderers["github"] = self.source.prompt
        self.coord.startup()

    def issue(self, title: str = "Fix the login") -> int:
        n = self.fake.add_issue(REPO, title, user="someone", body="please fix")
        self.fake.label_issue(REPO, n, "adw", actor="maintainer")
        return n

    def task(self, n: int) -> Task:
        t = self.store.find_task("github", f"{REPO}#{n}")
        assert t is not None
        return t

    def prompt(self, run: int) -> str:
        return (self.prompts / f"{run}.txt").read_text()

    def runs(self) -> int:
        return len(list(self.prompts.glob("*.txt")))

    def open_gate(self) -> None:
        """Let the gated run go on: open the FIFO once its reader waits on it, then close it (EOF)."""

        def writer() -> int | None:
            try:
                return os.open(self.gate, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno == errno.ENXIO:  # the agent has not opened it yet
                    return None
                raise

        os.close(wait_for(writer, "the gated agent to wait on its gate"))

    def close(self) -> None:
        self.coord.stop_all("test over")
        self.coord.wait_idle(30)
        self.coord.shutdown()
        self.store.close()


@pytest.fixture
def fake() -> Iterator[FakeGitHub]:
    with FakeGitHub() as f:
        f.add_repo(REPO)
        f.set_permission(REPO, "maintainer", "write")
        yield f
        f.assert_valid()


@pytest.fixture
def rig_factory(tmp_path: Path, fake: FakeGitHub) -> Iterator[Callable[..., Rig]]:
    rigs: list[Rig] = []

    def make(**kw: str) -> Rig:
        rig = Rig(tmp_path, fake, **kw)
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        rig.close()
