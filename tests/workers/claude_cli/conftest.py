"""Fixtures for running the real Claude Code CLI against ``tests.fakes.anthropic_api``.

``claude_cli`` installs the pinned CLI once per session (``tests/node_tools.py``) and FAILS, not
skips, when that is impossible: CI installs it beforehand, so a missing CLI is a broken setup.

Set ``ADW_RECORD_CLAUDE_TRANSCRIPTS=1`` to (re)write ``tests/fixtures/recorded/claude-cli/`` from
the runs; by default tests leave the recorded files alone so a test run changes no tracked file.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.anthropic_api import FAKE_API_KEY, FakeAnthropicAPI, iter_stream_json
from tests.node_tools import CLAUDE_CODE_VERSION, ensure_claude_cli, installed_or_fail
from tests.paths import FIXTURES
from tests.recording import save_transcript

RECORD_DIR = FIXTURES / "recorded" / "claude-cli"
MODEL = "claude-sonnet-4-5"
# Every test runs the CLI headless exactly like production does (see adw's provider template).
BASE_ARGS = ("--model", MODEL, "--output-format", "stream-json", "--verbose", "--max-turns", "1")


def claude_argv(cli: Path, prompt: str = "Say hello", extra: Sequence[str] = ()) -> list[str]:
    return [str(cli), "-p", prompt, *BASE_ARGS, *extra]


@dataclass
class CliRun:
    returncode: int
    stdout: str
    stderr: str
    duration_s: float
    events: list[dict[str, Any]]

    def of_type(self, type_: str, subtype: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("type") == type_ and (subtype is None or e.get("subtype") == subtype)]

    @property
    def result(self) -> dict[str, Any]:
        results = self.of_type("result")
        assert len(results) == 1, f"expected exactly one result line, got {len(results)}:\n{self.stdout[-3000:]}"
        return results[0]

    @property
    def retries(self) -> list[dict[str, Any]]:
        return self.of_type("system", "api_retry")

    @property
    def api_error_assistant(self) -> dict[str, Any]:
        errs = [e for e in self.of_type("assistant") if e.get("error")]
        assert len(errs) == 1, f"expected one assistant line with `error`, got {len(errs)}"
        return errs[0]


@pytest.fixture(scope="session")
def claude_cli() -> Path:
    return installed_or_fail(ensure_claude_cli, "Claude Code CLI", "tests/node_tools.py")


@pytest.fixture
def fake_api() -> Iterator[FakeAnthropicAPI]:
    # strict: a request the test did not script answers 500, so surprises show up in asserts.
    with FakeAnthropicAPI(strict_queue=True) as fake:
        yield fake


@pytest.fixture
def cli_home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    return home


@pytest.fixture
def run_claude(claude_cli: Path, fake_api: FakeAnthropicAPI, cli_home: Path, tmp_path: Path) -> Any:
    workdir = tmp_path / "work"
    workdir.mkdir()

    def run(*, max_retries: int = 0, prompt: str = "Say hello", timeout: float = 60) -> CliRun:
        env = fake_api.cli_env(cli_home, max_retries=max_retries)
        start = time.monotonic()
        proc = subprocess.run(
            claude_argv(claude_cli, prompt),
            env=env,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        duration = time.monotonic() - start
        return CliRun(proc.returncode, proc.stdout, proc.stderr, duration, list(iter_stream_json(proc.stdout)))

    return run


def record_transcript(scenario: str, stdout: str) -> None:
    """Save a genuine transcript for the parser tests when ADW_RECORD_CLAUDE_TRANSCRIPTS=1."""
    if os.environ.get("ADW_RECORD_CLAUDE_TRANSCRIPTS") == "1":
        lines = save_transcript(
            RECORD_DIR, "ADW_RECORD_CLAUDE_TRANSCRIPTS", scenario, stdout, (FAKE_API_KEY, "sk-ant-")
        )
        assert CLAUDE_CODE_VERSION in lines[0], "init line should name the pinned CLI version"
