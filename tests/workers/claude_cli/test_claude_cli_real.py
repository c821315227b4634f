"""The real Claude Code CLI (pinned, from npm) against the fake Anthropic API on loopback.

These tests document what the CLI really does for each API behaviour, so the stream parser,
classifier and supervisor are built on observed facts rather than guesses.  Observed with
2.1.330 (see ``tests/node_tools.py``):

- One ``POST /v1/messages?beta=true`` (``stream: true``) per turn; no other endpoint is called
  with ``CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1``.
- API errors never crash it: it prints a synthetic ``assistant`` line with a top-level
  ``error`` (plus ``api_error_status``/``api_error_type``), then ``result`` with
  ``subtype: "success"``, ``is_error: true``, ``api_error_status`` and
  ``terminal_reason: "api_error"``, and exits 1.
- Retryable errors (429, 529, 401 too!, dropped connections) print ``system/api_retry`` before
  each retry (``CLAUDE_CODE_MAX_RETRIES``); a 429's delay is its ``retry-after`` plus jitter,
  unless ``retry-after`` exceeds a minute, then it gives up at once without retrying.
- A failed *streaming* request (dropped connection, SSE error event, 404) is followed by one
  non-streaming fallback request (``stream: false``).
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.anthropic_api import (
    FAKE_API_KEY,
    ApiError,
    DropMidStream,
    FakeAnthropicAPI,
    Reply,
    Usage,
    iter_stream_json,
)
from tests.node_tools import CLAUDE_CODE_VERSION
from tests.workers.claude_cli.conftest import MODEL, CliRun, claude_argv, record_transcript

pytestmark = pytest.mark.claude_cli

# Claude Sonnet 4.5 list prices, USD per token: the CLI's own price table gives the cost.
SONNET_45 = {"input": 3e-6, "output": 15e-6, "cache_read": 0.30e-6, "cache_write_5m": 3.75e-6}


def _api_error_result(run: CliRun, status: int | None, *, check_cost: bool = True) -> dict[str, Any]:
    result = run.result
    assert run.returncode == 1, run.stderr
    assert result["subtype"] == "success"  # sic: the CLI reports API failures this way
    assert result["is_error"] is True
    assert result["api_error_status"] == status
    assert result["terminal_reason"] == "api_error"
    if check_cost:
        assert result["total_cost_usd"] == 0
    return result


def _assert_retry_line(line: dict[str, Any], *, attempt: int, max_retries: int, status: int | None, error: str) -> None:
    assert line["attempt"] == attempt
    assert line["max_retries"] == max_retries
    assert line["error_status"] == status
    assert line["error"] == error
    assert isinstance(line["retry_delay_ms"], int | float) and line["retry_delay_ms"] > 0
    assert line["session_id"] and line["uuid"]


def test_success_reports_the_fake_usage_and_a_cost(run_claude: Any, fake_api: FakeAnthropicAPI) -> None:
    usage = Usage(input_tokens=1234, output_tokens=56, cache_read_input_tokens=700, cache_creation_input_tokens=300)
    fake_api.enqueue(Reply("Hello from the fake.", usage=usage))

    run = run_claude()
    record_transcript("success", run.stdout)

    assert run.returncode == 0, run.stderr
    init = run.of_type("system", "init")[0]
    assert init["claude_code_version"] == CLAUDE_CODE_VERSION
    assert init["apiKeySource"] == "ANTHROPIC_API_KEY"
    assert init["model"] == MODEL
    result = run.result
    assert (result["subtype"], result["is_error"], result["api_error_status"]) == ("success", False, None)
    assert result["result"] == "Hello from the fake."
    assert result["terminal_reason"] == "completed"
    assert result["stop_reason"] == "end_turn"
    assert result["num_turns"] == 1
    u = result["usage"]
    assert (u["input_tokens"], u["output_tokens"]) == (1234, 56)
    assert (u["cache_read_input_tokens"], u["cache_creation_input_tokens"]) == (700, 300)
    expected_cost = (
        1234 * SONNET_45["input"]
        + 56 * SONNET_45["output"]
        + 700 * SONNET_45["cache_read"]
        + 300 * SONNET_45["cache_write_5m"]
    )
    assert result["total_cost_usd"] == pytest.approx(expected_cost, rel=1e-9)
    per_model = result["modelUsage"][MODEL]
    assert (per_model["inputTokens"], per_model["outputTokens"]) == (1234, 56)
    assert per_model["costUSD"] == pytest.approx(expected_cost, rel=1e-9)
    assert run.retries == []

    # What the CLI sent: exactly one streaming request, authenticated with the fake key.
    (req,) = fake_api.requests
    assert (req.method, req.path, req.query) == ("POST", "/v1/messages", "beta=true")
    assert req.body["model"] == MODEL and req.body["stream"] is True
    assert req.headers["x-api-key"] == FAKE_API_KEY
    assert req.headers["anthropic-version"] == "2023-06-01"
    assert req.headers["user-agent"].startswith(f"claude-cli/{CLAUDE_CODE_VERSION}")
    assert "claude-code-20250219" in req.headers["anthropic-beta"]
    assert FAKE_API_KEY not in repr(req) and FAKE_API_KEY not in fake_api.dump()


def test_rate_limit_429_is_retried_after_retry_after_then_reported(run_claude: Any, fake_api: FakeAnthropicAPI) -> None:
    fake_api.enqueue(ApiError.rate_limit(retry_after=1), ApiError.rate_limit(retry_after=1))

    run = run_claude(max_retries=1)
    record_transcript("rate_limit_429", run.stdout)

    (retry,) = run.retries
    _assert_retry_line(retry, attempt=1, max_retries=1, status=429, error="rate_limit")
    # The CLI honours retry-after (seconds) and adds up to ~25 % jitter on top.
    assert 1000 <= retry["retry_delay_ms"] <= 1500
    assistant = run.api_error_assistant
    assert (assistant["error"], assistant["api_error_status"], assistant["api_error_type"]) == (
        "rate_limit",
        429,
        "rate_limit_error",
    )
    result = _api_error_result(run, 429)
    assert result["result"].startswith("API Error: Request rejected (429)")
    assert len(fake_api.message_requests()) == 2
    assert run.duration_s >= 1.0  # it really waited out the retry-after


def test_rate_limit_can_be_aborted_on_the_first_api_retry_line(
    claude_cli: Path, fake_api: FakeAnthropicAPI, cli_home: Path, tmp_path: Path
) -> None:
    fake_api.enqueue(ApiError.rate_limit(retry_after=30))
    proc = subprocess.Popen(
        claude_argv(claude_cli),
        env=fake_api.cli_env(cli_home, max_retries=3),
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: list[str] = []
    retry_line: dict[str, Any] | None = None
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            seen.append(line)
            if '"api_retry"' in line:
                retry_line = next(iter_stream_json(line))
                break
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        returncode = proc.wait(timeout=5)
        exit_delay = time.monotonic() - signalled
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    record_transcript("rate_limit_429_aborted", "".join(seen))

    assert retry_line is not None, "".join(seen)[-3000:]
    _assert_retry_line(retry_line, attempt=1, max_retries=3, status=429, error="rate_limit")
    # Waiting would have cost 30 s or more; killing on the line costs almost nothing.
    assert retry_line["retry_delay_ms"] >= 30_000
    assert exit_delay < 5.0
    assert returncode in (143, -signal.SIGTERM)  # it handles SIGTERM itself and exits 143
    assert len(fake_api.message_requests()) == 1


def test_rate_limit_with_retry_after_over_a_minute_fails_at_once(run_claude: Any, fake_api: FakeAnthropicAPI) -> None:
    fake_api.enqueue(ApiError.rate_limit(retry_after=120))

    run = run_claude(max_retries=3)
    record_transcript("rate_limit_429_long_retry_after", run.stdout)

    assert run.retries == []
    assert run.api_error_assistant["error"] == "rate_limit"
    _api_error_result(run, 429)
    assert len(fake_api.message_requests()) == 1
    assert run.duration_s < 20


def test_overloaded_529(run_claude: Any, fake_api: FakeAnthropicAPI) -> None:
    fake_api.enqueue(ApiError.overloaded(), ApiError.overloaded())

    run = run_claude(max_retries=1)
    record_transcript("overloaded_529", run.stdout)

    (retry,) = run.retries
    _assert_retry_line(retry, attempt=1, max_retries=1, status=529, error="overloaded")
    assistant = run.api_error_assistant
    # The retry line says "overloaded" but the assistant error enum has no such value.
    assert (assistant["error"], assistant["api_error_status"], assistant["api_error_type"]) == (
        "server_error",
        529,
        "overloaded_error",
    )
    result = _api_error_result(run, 529)
    assert result["result"].startswith("API Error: 529 Overloaded")


def test_authentication_401_is_retried_like_a_transient_error(run_claude: Any, fake_api: FakeAnthropicAPI) -> None:
    fake_api.enqueue(ApiError.authentication(), ApiError.authentication())

    run = run_claude(max_retries=1)
    record_transcript("auth_401", run.stdout)

    (retry,) = run.retries
    _assert_retry_line(retry, attempt=1, max_retries=1, status=401, error="authentication_failed")
    assistant = run.api_error_assistant
    assert (assistant["error"], assistant["api_error_status"], assistant["api_error_type"]) == (
        "authentication_failed",
        401,
        "authentication_error",
    )
    result = _api_error_result(run, 401)
    assert result["result"].startswith("Invalid API key")
    assert len(fake_api.message_requests()) == 2


def test_dropped_stream_recovers_through_a_non_streaming_fallback(run_claude: Any, fake_api: FakeAnthropicAPI) -> None:
    fake_api.enqueue(DropMidStream(), Reply("Recovered answer."))

    run = run_claude(max_retries=0)
    record_transcript("dropped_stream_recovered", run.stdout)

    assert run.returncode == 0, run.stderr
    result = run.result
    assert (result["is_error"], result["result"]) == (False, "Recovered answer.")
    first, second = fake_api.message_requests()
    assert (first.body["stream"], first.status, first.behaviour) == (True, 200, "DropMidStream")
    assert second.body["stream"] is False


def test_dropped_connection_every_time_is_a_connection_error(run_claude: Any, fake_api: FakeAnthropicAPI) -> None:
    fake_api.default = DropMidStream()
    fake_api.strict_queue = False

    run = run_claude(max_retries=0)
    record_transcript("dropped_connection", run.stdout)

    assert run.retries == []
    assistant = run.api_error_assistant
    assert assistant["error"] == "server_error"
    assert assistant["api_error"] == "connection_failed"
    assert "api_error_status" not in assistant or assistant["api_error_status"] is None
    result = _api_error_result(run, None, check_cost=False)
    # Racy in the CLI: the usage of a message_start that arrived before the drop is sometimes
    # counted (25 input + 1 output tokens from the fake), sometimes not.
    partial = 25 * SONNET_45["input"] + 1 * SONNET_45["output"]
    assert result["total_cost_usd"] in (0, pytest.approx(partial))
    assert re.match(r"API Error: Connection to the API was lost \(E[A-Z]+\)", result["result"])
    streams = [r.body["stream"] for r in fake_api.message_requests()]
    assert streams == [True, False]


def test_dropped_connection_emits_api_retry_without_status(run_claude: Any, fake_api: FakeAnthropicAPI) -> None:
    fake_api.enqueue(DropMidStream(reset=True), Reply("Second time lucky."))

    run = run_claude(max_retries=1)

    (retry,) = run.retries
    _assert_retry_line(retry, attempt=1, max_retries=1, status=None, error="unknown")
    assert run.returncode == 0
    assert run.result["result"] == "Second time lucky."


def test_unknown_model_404(run_claude: Any, fake_api: FakeAnthropicAPI) -> None:
    # The failed streaming request is followed by a non-streaming one; both get the 404.
    fake_api.enqueue(ApiError.model_not_found(MODEL), ApiError.model_not_found(MODEL))

    run = run_claude(max_retries=0)
    record_transcript("model_not_found_404", run.stdout)

    assert run.retries == []
    assistant = run.api_error_assistant
    assert (assistant["error"], assistant["api_error_status"]) == ("model_not_found", 404)
    result = _api_error_result(run, 404)
    assert result["result"].startswith("There's an issue with the selected model (claude-sonnet-4-5)")
    assert [r.body["stream"] for r in fake_api.message_requests()] == [True, False]


def test_credit_balance_too_low_400(run_claude: Any, fake_api: FakeAnthropicAPI) -> None:
    fake_api.enqueue(ApiError.credit_balance_too_low())

    run = run_claude(max_retries=2)
    record_transcript("credit_balance_400", run.stdout)

    assert run.retries == []  # a 400 is not retried
    assistant = run.api_error_assistant
    assert (assistant["error"], assistant["api_error_status"]) == ("billing_error", 400)
    result = _api_error_result(run, 400)
    assert "Credit balance is too low" in result["result"]
    assert len(fake_api.message_requests()) == 1


def test_prompt_too_long_400(run_claude: Any, fake_api: FakeAnthropicAPI) -> None:
    fake_api.enqueue(ApiError.prompt_too_long(tokens=210_000, limit=200_000))

    run = run_claude(max_retries=2)
    record_transcript("prompt_too_long_400", run.stdout)

    assert run.retries == []
    assistant = run.api_error_assistant
    assert (assistant["error"], assistant["api_error_status"]) == ("invalid_request", 400)
    result = run.result
    assert run.returncode == 1
    assert (result["is_error"], result["api_error_status"]) == (True, 400)
    assert result["terminal_reason"] == "prompt_too_long"  # not "api_error", unlike the others
    assert result["result"].startswith("Prompt is too long")
    assert "210000" in result["result"] and "200000" in result["result"]
    assert len(fake_api.message_requests()) == 1


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_the_cli_connects_only_to_the_fake_on_loopback(
    claude_cli: Path, fake_api: FakeAnthropicAPI, cli_home: Path, tmp_path: Path
) -> None:
    fake_api.enqueue(ApiError.overloaded(), Reply())
    trace = tmp_path / "connect.trace"
    proc = subprocess.run(
        ["strace", "-f", "-qq", "-e", "trace=connect", "-o", str(trace), *claude_argv(claude_cli)],
        env=fake_api.cli_env(cli_home, max_retries=1),
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    inet = re.findall(r"connect\(\d+, \{sa_family=(AF_INET6?), ([^}]*)\}", trace.read_text())
    assert inet, "strace saw no TCP connect at all; the trace is not working"
    for family, addr in inet:
        assert f"htons({fake_api.port})" in addr, f"unexpected connection: {family} {addr}"
        assert "127.0.0.1" in addr or "::1" in addr or "::ffff:127.0.0.1" in addr, addr
    assert len(fake_api.message_requests()) == 2
