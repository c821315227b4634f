"""The real Claude Code CLI driven through adw's own runner, stream parser and classifier.

This is the production path in miniature: ``runner.run`` supervises the CLI, ``on_line`` feeds
each stdout line to the ``claude-stream-json`` parser and aborts on the first event carrying a
``signal`` (so a rate-limited CLI is killed instead of sleeping through its retries), and
``classify`` turns the result into the attempt's ``Outcome``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fakes.anthropic_api import ApiError, Behaviour, DropMidStream, FakeAnthropicAPI, Reply, Usage
from tests.workers.claude_cli.conftest import claude_argv

runner = pytest.importorskip("adw_modules.workers.runner", reason="adw_modules/runner.py is not written yet")
classify_mod = pytest.importorskip("adw_modules.workers.classify", reason="adw_modules/classify.py is not written yet")
streams = pytest.importorskip("adw_modules.workers.streams", reason="adw_modules/streams is not written yet")

from adw_modules.outcomes import ErrorKind, Outcome, StreamEvent, StreamSummary  # noqa: E402
from adw_modules.workers.runner import RunResult, RunSpec  # noqa: E402

pytestmark = pytest.mark.claude_cli


@dataclass
class Supervised:
    result: RunResult
    summary: StreamSummary
    outcome: Outcome
    abort_event: StreamEvent | None
    aborted_at: float | None  # wall-clock time on_line asked for the abort (RunResult uses time.time)


@pytest.fixture
def supervise(claude_cli: Path, fake_api: FakeAnthropicAPI, cli_home: Path, tmp_path: Path):
    def go(*behaviours: Behaviour, max_retries: int, timeout_s: float = 60) -> Supervised:
        fake_api.enqueue(*behaviours)
        parser = streams.parser_for("claude-stream-json")
        state: dict[str, float | StreamEvent | None] = {"event": None, "at": None}

        def on_line(line: str) -> str | None:
            event = parser.feed(line)
            if event is not None and event.signal is not None:
                state["event"], state["at"] = event, time.time()
                return f"stream signal: {event.signal}"
            return None

        spec = RunSpec(
            argv=claude_argv(claude_cli),
            cwd=tmp_path,
            env=fake_api.cli_env(cli_home, max_retries=max_retries),
            timeout_s=timeout_s,
            kill_grace_s=3.0,
            log_path=tmp_path / "claude.log",
        )
        result = runner.run(spec, on_line)
        summary = parser.finish()
        event = state["event"]
        assert event is None or isinstance(event, StreamEvent)
        outcome = classify_mod.classify(
            summary,
            result.exit_code,
            ended_by=result.ended_by,
            abort_signal=event,
            stderr_tail=result.stderr_tail,
            launch_error=result.launch_error,
        )
        at = state["at"]
        return Supervised(result, summary, outcome, event, at if isinstance(at, float) else None)

    return go


def test_success_is_classified_ok_with_tokens_and_cost(supervise, fake_api: FakeAnthropicAPI) -> None:
    run = supervise(
        Reply("All done.", usage=Usage(input_tokens=2000, output_tokens=100, cache_read_input_tokens=500)),
        max_retries=0,
    )

    assert (run.result.ended_by, run.result.exit_code) == ("exit", 0), run.result.stderr_tail
    assert run.outcome.ok, run.outcome
    s = run.summary
    assert s.terminal and not s.is_error
    assert s.result_text == "All done."
    assert (s.usage.input_tokens, s.usage.output_tokens, s.usage.cache_read_tokens) == (2000, 100, 500)
    expected = 2000 * 3e-6 + 100 * 15e-6 + 500 * 0.30e-6  # Sonnet 4.5 list prices
    assert s.cost_usd == pytest.approx(expected, rel=1e-9)
    assert s.cost_source == "reported"
    assert "claude-sonnet-4-5" in s.models
    assert len(fake_api.message_requests()) == 1


def test_rate_limit_is_aborted_on_the_first_retry_line(supervise, fake_api: FakeAnthropicAPI) -> None:
    run = supervise(ApiError.rate_limit(retry_after=30), max_retries=5)

    assert run.result.ended_by == "aborted"
    assert run.abort_event is not None and run.abort_event.signal == ErrorKind.RATE_LIMITED
    assert run.outcome.error_kind == ErrorKind.RATE_LIMITED
    # The CLI announced a >= 30 s wait (retry-after plus jitter); the outcome carries it.
    assert run.outcome.retry_after_s is not None and run.outcome.retry_after_s >= 30
    assert run.aborted_at is not None
    assert run.result.ended_at - run.aborted_at < 5.0, "the CLI was not stopped promptly"
    assert run.result.duration_s < 15
    assert len(fake_api.message_requests()) == 1


def test_overload_is_aborted_and_classified_overloaded(supervise, fake_api: FakeAnthropicAPI) -> None:
    run = supervise(ApiError.overloaded(), max_retries=5)

    assert run.result.ended_by == "aborted"
    assert run.outcome.error_kind == ErrorKind.OVERLOADED
    assert run.aborted_at is not None and run.result.ended_at - run.aborted_at < 5.0
    assert len(fake_api.message_requests()) == 1


def test_auth_failure_is_aborted_instead_of_retried(supervise, fake_api: FakeAnthropicAPI) -> None:
    run = supervise(ApiError.authentication(), max_retries=5)

    assert run.result.ended_by == "aborted"
    assert run.outcome.error_kind == ErrorKind.AUTH_FAILED
    assert len(fake_api.message_requests()) == 1


@pytest.mark.parametrize(
    ("behaviours", "kind", "status"),
    [
        pytest.param((ApiError.rate_limit(retry_after=120),), ErrorKind.RATE_LIMITED, 429, id="429-long-retry-after"),
        pytest.param(
            (ApiError.model_not_found(), ApiError.model_not_found()),
            ErrorKind.INVALID_MODEL,
            404,
            id="404-model",
        ),
        pytest.param((ApiError.credit_balance_too_low(),), ErrorKind.QUOTA_EXHAUSTED, 400, id="400-credit"),
        pytest.param((ApiError.prompt_too_long(),), ErrorKind.CONTEXT_TOO_LONG, 400, id="400-prompt-too-long"),
    ],
)
def test_errors_the_cli_reports_without_retrying(
    supervise, behaviours: tuple[Behaviour, ...], kind: ErrorKind, status: int
) -> None:
    run = supervise(*behaviours, max_retries=0)

    assert (run.result.ended_by, run.result.exit_code) == ("exit", 1)
    assert run.summary.terminal and run.summary.is_error
    assert run.summary.api_status == status
    assert run.outcome.error_kind == kind, run.outcome


def test_dropped_connection_is_an_api_error_not_a_crash(supervise, fake_api: FakeAnthropicAPI) -> None:
    # Drops on the stream, on its retry and on the non-streaming fallback: the CLI gives up,
    # but still writes its result line, so this is an API error rather than a crash.
    fake_api.default = DropMidStream()
    fake_api.strict_queue = False

    run = supervise(max_retries=1)

    assert run.result.ended_by == "exit" and run.result.exit_code == 1
    assert run.abort_event is None  # a connection error (no HTTP status) carries no abort signal
    assert run.summary.retry_events == 1
    assert run.summary.terminal and run.summary.is_error
    assert run.outcome.error_kind == ErrorKind.API_ERROR, run.outcome
    assert run.outcome.policy is not None and run.outcome.policy.value == "retry"
