"""The real Codex CLI driven through adw's own runner, ``codex-json`` parser and classifier.

The production path in miniature: ``runner.run`` supervises the CLI, ``on_line`` feeds each
stdout line to the parser and aborts on the first event carrying a ``signal``, so a CLI that
announces it will wait out a long ``retry-after`` (``Reconnecting... 1/N (… 429 …)``) is
stopped instead of sleeping, and ``classify`` turns the result into the attempt's ``Outcome``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from adw_modules.outcomes import ErrorKind, Outcome, StreamEvent, StreamSummary, Usage
from adw_modules.workers import runner
from adw_modules.workers.classify import classify
from adw_modules.workers.runner import RunResult, RunSpec
from adw_modules.workers.streams import parser_for
from tests.fakes.openai_responses import ApiError, Behaviour, DropMidStream, FakeResponsesAPI, Reply
from tests.fakes.openai_responses import Usage as ApiUsage
from tests.workers.codex_cli.conftest import FORMAT, codex_argv


@dataclass
class Supervised:
    result: RunResult
    summary: StreamSummary
    outcome: Outcome
    abort_event: StreamEvent | None
    aborted_at: float | None  # wall-clock time on_line asked for the abort (RunResult uses time.time)


Supervise = Callable[..., Supervised]


@pytest.fixture
def supervise(codex_cli: Path, fake_api: FakeResponsesAPI, codex_home: Path, tmp_path: Path) -> Supervise:
    def go(*behaviours: Behaviour, stream_max_retries: int = 0, timeout_s: float = 60) -> Supervised:
        fake_api.enqueue(*behaviours)
        parser = parser_for(FORMAT)
        seen: list[tuple[StreamEvent, float]] = []

        def on_line(line: str) -> str | None:
            event = parser.feed(line)
            if event is not None and event.signal is not None:
                seen.append((event, time.time()))
                return f"stream signal: {event.signal}"
            return None

        spec = RunSpec(
            argv=codex_argv(codex_cli, fake_api, stream_max_retries=stream_max_retries),
            cwd=tmp_path,
            env=fake_api.cli_env(codex_home),
            timeout_s=timeout_s,
            kill_grace_s=3.0,
            log_path=tmp_path / "codex.log",
        )
        result = runner.run(spec, on_line)
        summary = parser.finish()
        event, at = seen[0] if seen else (None, None)
        outcome = classify(
            summary,
            result.exit_code,
            ended_by=result.ended_by,
            abort_signal=event,
            stderr_tail=result.stderr_tail,
            launch_error=result.launch_error,
        )
        return Supervised(result, summary, outcome, event, at)

    return go


def test_success_is_classified_ok_with_tokens(supervise: Supervise, fake_api: FakeResponsesAPI) -> None:
    run = supervise(Reply("All done.", usage=ApiUsage(input_tokens=2000, cached_tokens=500, output_tokens=100)))

    assert (run.result.ended_by, run.result.exit_code) == ("exit", 0), run.result.stderr_tail
    assert run.outcome.ok, run.outcome
    assert run.summary.result_text == "All done."
    assert run.summary.usage == Usage(input_tokens=1500, output_tokens=100, cache_read_tokens=500)
    assert len(fake_api.response_requests()) == 1


def test_a_429_with_a_long_retry_after_is_aborted_on_the_reconnect_line(
    supervise: Supervise, fake_api: FakeResponsesAPI
) -> None:
    # Codex would sleep the full 30 s before its retry; the reconnect line comes first.
    run = supervise(ApiError.rate_limit(retry_after=30), stream_max_retries=3)

    assert run.result.ended_by == "aborted"
    assert run.abort_event is not None and run.abort_event.signal == ErrorKind.RATE_LIMITED
    assert run.abort_event.message is not None and run.abort_event.message.startswith("Reconnecting... 1/3 (")
    assert run.outcome.error_kind == ErrorKind.RATE_LIMITED
    assert run.outcome.retry_after_s is None  # Codex does not say how long it meant to wait
    assert run.aborted_at is not None
    assert run.result.ended_at - run.aborted_at < 5.0, "the CLI was not stopped promptly"
    assert run.result.duration_s < 15
    assert run.summary.retry_events == 1
    assert len(fake_api.response_requests()) == 1


def test_a_dropped_stream_is_an_api_error_without_abort(supervise: Supervise, fake_api: FakeResponsesAPI) -> None:
    run = supervise(DropMidStream(), DropMidStream(), stream_max_retries=1)

    assert (run.result.ended_by, run.result.exit_code) == ("exit", 1)
    assert run.abort_event is None  # a transport error names no kind worth aborting for
    assert run.summary.retry_events == 1
    assert run.summary.terminal and run.summary.is_error
    assert run.outcome.error_kind == ErrorKind.API_ERROR, run.outcome
    assert run.outcome.policy is not None and run.outcome.policy.value == "retry"
    assert len(fake_api.response_requests()) == 2
