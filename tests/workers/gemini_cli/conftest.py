"""Fixtures for running the real Gemini CLI against ``tests.fakes.gemini_api``.

``gemini_cli`` installs the pinned CLI once per session (``tests/workers/gemini_cli/install.py``) and
FAILS, not skips, when that is impossible: a missing CLI is a broken setup, not a reason to test
less.

Set ``ADW_RECORD_GEMINI_TRANSCRIPTS=1`` to (re)write ``tests/fixtures/recorded/gemini-cli/`` from
the runs; by default tests leave the recorded files alone so a test run changes no tracked file.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from adw_modules.outcomes import Outcome, StreamSummary
from adw_modules.workers.classify import classify
from adw_modules.workers.streams import parser_for
from tests.fakes.gemini_api import FAKE_API_KEY, FakeGeminiAPI, iter_stream_json
from tests.node_tools import installed_or_fail
from tests.paths import FIXTURES
from tests.recording import save_transcript
from tests.workers.gemini_cli.install import ensure_gemini_cli

RECORD_DIR = FIXTURES / "recorded" / "gemini-cli"
MODEL = "gemini-2.5-flash"
STREAM_FORMAT = "gemini-stream-json"  # adw's name for `--output-format stream-json`


def gemini_argv(cli: Path, prompt: str, output_format: str = "stream-json", extra: Sequence[str] = ()) -> list[str]:
    """Headless, as production runs it: a prompt, an explicit model and machine-readable output."""
    return [str(cli), "-p", prompt, "--model", MODEL, "--output-format", output_format, *extra]


@dataclass
class CliRun:
    returncode: int
    stdout: str
    stderr: str
    duration_s: float
    events: list[dict[str, Any]] = field(default_factory=list)

    def of_type(self, type_: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("type") == type_]

    @property
    def result(self) -> dict[str, Any]:
        results = self.of_type("result")
        assert len(results) == 1, f"expected exactly one result line, got {len(results)}:\n{self.stdout[-3000:]}"
        return results[0]

    def summary(self) -> StreamSummary:
        """stdout through adw's own parser, line by line as the runner feeds it."""
        parser = parser_for(STREAM_FORMAT)
        for line in self.stdout.splitlines(keepends=True):
            parser.feed(line)
        return parser.finish()

    def outcome(self) -> Outcome:
        return classify(self.summary(), self.returncode, stderr_tail=self.stderr[-4000:])


@pytest.fixture(scope="session")
def gemini_cli() -> Path:
    return installed_or_fail(ensure_gemini_cli, "Gemini CLI", "tests/workers/gemini_cli/install.py")


@pytest.fixture
def fake_api() -> Iterator[FakeGeminiAPI]:
    # strict: a generation request the test did not script answers 500, so surprises show up.
    with FakeGeminiAPI(strict_queue=True) as fake:
        yield fake


@pytest.fixture
def run_gemini(gemini_cli: Path, fake_api: FakeGeminiAPI, tmp_path: Path) -> Any:
    workdir = tmp_path / "work"
    workdir.mkdir()

    def run(
        *,
        prompt: str = "Say hello",
        output_format: str = "stream-json",
        max_attempts: int = 1,
        api_key: str | None = FAKE_API_KEY,
        settings: Mapping[str, Any] | None = None,
        relaunch: bool = False,
        timeout: float = 60,
    ) -> CliRun:
        # relaunch=False sets GEMINI_CLI_NO_RELAUNCH: the CLI otherwise re-executes itself in a
        # child Node with a bigger heap (0.6 s per run, same output; the success test keeps it).
        extra = {} if relaunch else {"GEMINI_CLI_NO_RELAUNCH": "true"}
        env = fake_api.cli_env(
            tmp_path / "home", max_attempts=max_attempts, settings=settings, api_key=api_key, **extra
        )
        start = time.monotonic()
        proc = subprocess.run(
            gemini_argv(gemini_cli, prompt, output_format),
            env=env,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        duration = time.monotonic() - start
        events = list(iter_stream_json(proc.stdout)) if output_format == "stream-json" else []
        return CliRun(proc.returncode, proc.stdout, proc.stderr, duration, events)

    return run


def record_transcript(scenario: str, stdout: str) -> None:
    """Save a genuine transcript for the parser tests when ADW_RECORD_GEMINI_TRANSCRIPTS=1."""
    save_transcript(RECORD_DIR, "ADW_RECORD_GEMINI_TRANSCRIPTS", scenario, stdout, (FAKE_API_KEY, "AIza"))
