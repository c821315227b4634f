"""Fixtures for running the real OpenAI Codex CLI against ``tests.fakes.openai_responses``.

``codex_cli`` installs the pinned CLI once per session (``tests/node_tools.py``) and FAILS, not
skips, when that is impossible: CI installs it beforehand, so a missing CLI is a broken setup.

How Codex is kept on loopback (all verified with the pinned 0.169.0, see the tests):

- a custom model provider from ``FakeResponsesAPI.codex_config()`` (``base_url`` on 127.0.0.1,
  ``wire_api = "responses"``, key from an env var named by ``env_key``; no login, no ChatGPT
  auth, no websocket transport);
- ``CODEX_HOME`` (and ``HOME``) in the test's temp dir, so ``~/.codex`` of the machine is never
  read and nothing is written there;
- ``--disable plugins``: otherwise a background plugin sync runs ``git`` against github.com and
  calls api.github.com and chatgpt.com;
- ``-c analytics.enabled=false``: otherwise events go to ab.chatgpt.com when the turn ends;
- every proxy variable points at the fake with ``NO_PROXY`` for loopback only, so anything that
  still tried to leave would arrive at the fake as a ``CONNECT`` (``fake.proxy_requests``); each
  run asserts there was none.

Set ``ADW_RECORD_CODEX_TRANSCRIPTS=1`` to (re)write ``tests/fixtures/recorded/codex-cli/`` from
the runs; by default tests leave the recorded files alone so a test run changes no tracked file.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from adw_modules.outcomes import Outcome, StreamEvent, StreamSummary
from adw_modules.workers.classify import classify
from adw_modules.workers.streams import parser_for
from tests.fakes.openai_responses import FAKE_API_KEY, FakeResponsesAPI, iter_jsonl
from tests.node_tools import ensure_codex_cli, installed_or_fail
from tests.paths import FIXTURES
from tests.recording import save_transcript

RECORD_DIR = FIXTURES / "recorded" / "codex-cli"
FORMAT = "codex-json"
MODEL = "gpt-5.5"
# Keeps the CLI from contacting anything but the model provider (see the module docstring).
OFFLINE_ARGS = ("--disable", "plugins", "-c", "analytics.enabled=false")


def codex_argv(
    cli: Path,
    fake: FakeResponsesAPI,
    prompt: str = "Say hello",
    *,
    model: str = MODEL,
    extra: Sequence[str] = (),
    request_max_retries: int = 0,
    stream_max_retries: int = 0,
) -> list[str]:
    """``codex exec --json`` as a headless supervisor runs it, pointed at ``fake``."""
    config = fake.codex_config(
        model=model, request_max_retries=request_max_retries, stream_max_retries=stream_max_retries
    )
    return [
        str(cli),
        "exec",
        "--json",
        "--skip-git-repo-check",  # the work dir is a bare temp dir
        "--sandbox",
        "read-only",  # the exec default, spelled out; bwrap works in this container
        *config,
        *OFFLINE_ARGS,
        *extra,
        prompt,
    ]


@dataclass
class CodexRun:
    returncode: int
    stdout: str
    stderr: str
    duration_s: float
    events: list[dict[str, Any]]
    parsed: list[StreamEvent | None]  # what the parser returned for each stdout line
    summary: StreamSummary
    outcome: Outcome

    def of_type(self, type_: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("type") == type_]

    def items(self, item_type: str) -> list[dict[str, Any]]:
        return [e["item"] for e in self.of_type("item.completed") if e["item"].get("type") == item_type]

    @property
    def types(self) -> list[str]:
        return [str(e.get("type")) for e in self.events]

    @property
    def signals(self) -> list[StreamEvent]:
        return [e for e in self.parsed if e is not None and e.signal is not None]


@pytest.fixture(scope="session")
def codex_cli() -> Path:
    return installed_or_fail(ensure_codex_cli, "Codex CLI", "tests/node_tools.py")


@pytest.fixture
def fake_api() -> Iterator[FakeResponsesAPI]:
    # strict: a request the test did not script answers 500, so surprises show up in asserts.
    with FakeResponsesAPI(strict_queue=True) as fake:
        yield fake
        assert fake.proxy_requests == [], f"the CLI tried to leave loopback:\n{fake.dump()}"


@pytest.fixture
def codex_home(tmp_path: Path) -> Path:
    home = tmp_path / "codex-home"
    home.mkdir()
    return home


@pytest.fixture
def run_codex(codex_cli: Path, fake_api: FakeResponsesAPI, codex_home: Path, tmp_path: Path) -> Any:
    workdir = tmp_path / "work"
    workdir.mkdir()

    def run(
        *,
        prompt: str = "Say hello",
        model: str = MODEL,
        api_key: str = FAKE_API_KEY,
        request_max_retries: int = 0,
        stream_max_retries: int = 0,
        timeout: float = 60,
    ) -> CodexRun:
        argv = codex_argv(
            codex_cli,
            fake_api,
            prompt,
            model=model,
            request_max_retries=request_max_retries,
            stream_max_retries=stream_max_retries,
        )
        start = time.monotonic()
        proc = subprocess.run(
            argv,
            env=fake_api.cli_env(codex_home, api_key=api_key),
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        duration = time.monotonic() - start
        parser = parser_for(FORMAT)
        parsed = [parser.feed(line) for line in proc.stdout.splitlines()]
        summary = parser.finish()
        outcome = classify(summary, proc.returncode, stderr_tail=proc.stderr[-4000:])
        return CodexRun(
            proc.returncode,
            proc.stdout,
            proc.stderr,
            duration,
            list(iter_jsonl(proc.stdout)),
            parsed,
            summary,
            outcome,
        )

    return run


def record_transcript(scenario: str, stdout: str) -> None:
    """Save a genuine transcript for the parser tests when ADW_RECORD_CODEX_TRANSCRIPTS=1."""
    save_transcript(RECORD_DIR, "ADW_RECORD_CODEX_TRANSCRIPTS", scenario, stdout, (FAKE_API_KEY, "sk-proj-"))
