"""classify(): every ErrorKind path, and "success needs a terminal success AND exit 0"."""

from __future__ import annotations

import json

import pytest

from adw_modules.outcomes import ErrorKind, StreamEvent, StreamSummary
from adw_modules.workers.classify import classify, describe
from adw_modules.workers.streams import parse_lines, parser_for

OK_RESULT = (
    '{"type":"result","subtype":"success","is_error":false,"duration_ms":5,"num_turns":1,'
    '"result":"done","session_id":"s","total_cost_usd":0.01}'
)


def claude(*lines: str) -> StreamSummary:
    return parse_lines("claude-stream-json", list(lines))


def claude_error(status: int | None = None, text: str = "", **extra: object) -> StreamSummary:
    fields = {"type": "result", "subtype": "success", "is_error": True, "result": text, **extra}
    if status is not None:
        fields["api_error_status"] = status
    return claude(json.dumps(fields))


# -- success needs both ----------------------------------------------------------------


def test_terminal_success_and_exit_zero_is_success() -> None:
    outcome = classify(claude(OK_RESULT), 0)
    assert outcome.ok and outcome.error_kind is None and outcome.policy is None


@pytest.mark.parametrize("exit_code", [1, 2, 143, -9, None])
def test_terminal_success_with_other_exit_code_is_crashed(exit_code: int | None) -> None:
    outcome = classify(claude(OK_RESULT), exit_code)
    assert outcome.error_kind == ErrorKind.CRASHED
    assert "reported success" in (outcome.message or "")


def test_exit_zero_without_terminal_event_is_crashed() -> None:
    s = claude('{"type":"system","subtype":"init","session_id":"s","model":"claude-sonnet-4-6"}')
    assert classify(s, 0).error_kind == ErrorKind.CRASHED


def test_no_summary_at_all_is_crashed_with_stderr() -> None:
    outcome = classify(None, 1, stderr_tail="boom\nError: When using --print, --output-format=stream-json"
                       " requires --verbose\n")  # fmt: skip
    assert outcome.error_kind == ErrorKind.CRASHED
    assert "requires --verbose" in (outcome.message or "")


def test_claude_success_subtype_with_is_error_is_not_success() -> None:
    assert not classify(claude_error(500, "API Error: 500 Internal server error"), 0).ok


def test_old_cli_error_subtype_with_is_error_false_is_still_an_error() -> None:
    s = claude('{"type":"result","subtype":"error_during_execution","is_error":false,"session_id":"s"}')
    assert classify(s, 0).error_kind == ErrorKind.API_ERROR


# -- runner endings --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ended_by", "kind"),
    [
        ("launch_failed", ErrorKind.LAUNCH_FAILED),
        ("cancelled", ErrorKind.CANCELLED),
        ("timeout", ErrorKind.TIMEOUT),
        ("idle_timeout", ErrorKind.STALLED),
    ],
)
def test_runner_endings(ended_by: str, kind: ErrorKind) -> None:
    # Even a success transcript does not override how the runner ended the process.
    assert classify(claude(OK_RESULT), None, ended_by=ended_by).error_kind == kind


def test_launch_error_is_launch_failed_and_named() -> None:
    outcome = classify(None, None, ended_by="launch_failed", launch_error="claude: not found on PATH")
    assert outcome.error_kind == ErrorKind.LAUNCH_FAILED and "not found on PATH" in (outcome.message or "")


def test_unknown_ending_is_rejected() -> None:
    with pytest.raises(ValueError, match="idle_timeout"):
        classify(None, 0, ended_by="exploded")


def test_idle_timeout_mentions_what_the_stream_said() -> None:
    s = parse_lines(
        "opencode-json",
        ['{"type":"error","error":{"name":"APIError","data":{"message":"slow down","statusCode":429}}}'],
    )
    outcome = classify(s, None, ended_by="idle_timeout")
    assert outcome.error_kind == ErrorKind.STALLED and "rate limited" in (outcome.message or "")


@pytest.mark.parametrize(
    ("event", "kind"),
    [
        (StreamEvent("system", "api_retry", signal=ErrorKind.RATE_LIMITED, retry_after_s=30.0), "rate"),
        (
            StreamEvent("rate_limit_event", "rejected", signal=ErrorKind.QUOTA_EXHAUSTED, resets_at=1.79e9),
            "q",
        ),
        (StreamEvent("system", "api_retry", signal=ErrorKind.AUTH_FAILED), "auth"),
        (StreamEvent("system", "api_retry", signal=ErrorKind.OVERLOADED), "over"),
    ],
)
def test_aborted_on_a_signal_takes_its_kind_and_times(event: StreamEvent, kind: str) -> None:
    outcome = classify(claude(), 143, ended_by="aborted", abort_signal=event)
    assert outcome.error_kind == event.signal
    assert outcome.retry_after_s == event.retry_after_s
    assert outcome.resets_at == event.resets_at


def test_aborted_429_message() -> None:
    retry = (
        '{"type":"system","subtype":"api_retry","attempt":1,"max_retries":10,"retry_delay_ms":30000,'
        '"error_status":429,"error":"rate_limit","session_id":"x","uuid":"y"}'
    )
    parser = parser_for("claude-stream-json")
    event = parser.feed(retry)
    outcome = classify(parser.finish(), -15, ended_by="aborted", abort_signal=event)
    assert outcome.message == (
        "rate limited by the API (HTTP 429), retry after 30 s: attempt 1 of 10 failed (rate_limit)"
    )


def test_aborted_without_signal_is_cancelled() -> None:
    assert classify(claude(), -15, ended_by="aborted").error_kind == ErrorKind.CANCELLED


# -- terminal failures by API status first ---------------------------------------------


@pytest.mark.parametrize(
    ("status", "text", "kind"),
    [
        (429, "API Error: Request rejected (429)", ErrorKind.RATE_LIMITED),
        (529, "API Error: 529 Overloaded", ErrorKind.OVERLOADED),
        (503, "", ErrorKind.OVERLOADED),
        (401, "Invalid API key · Please run /login", ErrorKind.AUTH_FAILED),
        (403, "", ErrorKind.AUTH_FAILED),
        (402, "", ErrorKind.QUOTA_EXHAUSTED),
        (400, "Credit balance is too low", ErrorKind.QUOTA_EXHAUSTED),
        (404, "There's an issue with the selected model", ErrorKind.INVALID_MODEL),
        (413, "", ErrorKind.CONTEXT_TOO_LONG),
        (400, "Prompt is too long", ErrorKind.CONTEXT_TOO_LONG),
        (500, "API Error: 500 Internal server error", ErrorKind.API_ERROR),
        (None, "", ErrorKind.API_ERROR),
        # Status first: a 401 stays auth even if the text also mentions a rate limit.
        (401, "rate limit", ErrorKind.AUTH_FAILED),
        # A plan window (not a short backoff) arrives as 429 with its own words.
        (429, "You've hit your limit · resets 1am (Europe/Berlin)", ErrorKind.QUOTA_EXHAUSTED),
    ],
)
def test_terminal_error_by_status(status: int | None, text: str, kind: ErrorKind) -> None:
    assert classify(claude_error(status, text), 1).error_kind == kind


def test_cli_own_reasons() -> None:
    turns = claude('{"type":"result","subtype":"error_max_turns","is_error":true,"terminal_reason":"max_turns"}')
    budget = claude(
        '{"type":"result","subtype":"error_max_budget_usd","is_error":true,"terminal_reason":"budget_exhausted",'
        '"total_cost_usd":5.12,"usage":{}}'
    )
    assert classify(turns, 1).error_kind == ErrorKind.MAX_TURNS
    outcome = classify(budget, 1)
    assert outcome.error_kind == ErrorKind.BUDGET_EXCEEDED and "$5.12" in (outcome.message or "")


def test_preceding_error_event_before_text() -> None:
    s = claude(
        '{"type":"assistant","message":{"content":[{"type":"text","text":"Something odd"}]},'
        '"error":"authentication_failed"}',
        '{"type":"result","subtype":"success","is_error":true,"result":""}',
    )
    assert classify(s, 1).error_kind == ErrorKind.AUTH_FAILED


def test_quota_hint_outranks_later_plain_429() -> None:
    s = claude(
        '{"type":"rate_limit_event","session_id":"s","rate_limit_info":{"status":"rejected",'
        '"rateLimitType":"five_hour","resetsAt":1790920800}}',
        '{"type":"assistant","error":"rate_limit","message":{"content":[{"type":"text","text":"x"}]}}',
        '{"type":"result","subtype":"success","is_error":true,"api_error_status":429,"result":""}',
    )
    outcome = classify(s, 1)
    assert outcome.error_kind == ErrorKind.QUOTA_EXHAUSTED and outcome.resets_at == 1790920800.0


def test_old_claude_usage_limit_text_carries_the_reset_epoch() -> None:
    s = claude_error(None, "Claude AI usage limit reached|1790920800")
    outcome = classify(s, 1)
    assert outcome.error_kind == ErrorKind.QUOTA_EXHAUSTED and outcome.resets_at == 1790920800.0


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("Prompt is too long", ErrorKind.CONTEXT_TOO_LONG),
        ("Codex ran out of room in the model's context window. Start a new thread.", ErrorKind.CONTEXT_TOO_LONG),
        ("Not logged in · Please run /login", ErrorKind.AUTH_FAILED),
        ("OAuth token has expired", ErrorKind.AUTH_FAILED),
        ("Server is temporarily limiting requests", ErrorKind.RATE_LIMITED),
        ("Quota exceeded. Check your plan and billing details.", ErrorKind.QUOTA_EXHAUSTED),
        ("You hit your spend cap set in your workspace. Increase your spend cap to continue.",
         ErrorKind.QUOTA_EXHAUSTED),
        ("Request timed out", ErrorKind.API_ERROR),
    ],
)  # fmt: skip
def test_terminal_error_by_message_text(text: str, kind: ErrorKind) -> None:
    s = parse_lines("codex-json", [json.dumps({"type": "turn.failed", "error": {"message": text}})])
    assert classify(s, 1).error_kind == kind


def test_retry_after_from_message_text() -> None:
    s = parse_lines(
        "gemini-stream-json",
        [
            '{"type":"result","status":"error","error":{"type":"RetryableQuotaError",'
            '"message":"Resource exhausted. Please retry in 12.5s."}}'
        ],
    )
    outcome = classify(s, 1)
    assert outcome.error_kind == ErrorKind.RATE_LIMITED and outcome.retry_after_s == 12.5


# -- no terminal event -----------------------------------------------------------------


def test_no_terminal_but_401_in_retry_event() -> None:
    s = claude(
        '{"type":"system","subtype":"api_retry","attempt":3,"max_retries":10,"retry_delay_ms":2000,'
        '"error_status":401,"error":"authentication_failed","session_id":"x","uuid":"y"}'
    )
    assert classify(s, 1).error_kind == ErrorKind.AUTH_FAILED


def test_no_terminal_but_stderr_names_the_kind() -> None:
    s = parse_lines("gemini-stream-json", ['{"type":"init","session_id":"g","model":"gemini-2.5-pro"}'])
    tail = "Attempt 3 failed with status 429. Retrying with backoff... _GaxiosError: Too Many Requests"
    assert classify(s, 1, stderr_tail=tail).error_kind == ErrorKind.RATE_LIMITED


def test_gemini_exit_code_41_is_auth() -> None:
    s = parse_lines("gemini-stream-json", ['{"type":"init","session_id":"g","model":"gemini-2.5-pro"}'])
    assert classify(s, 41).error_kind == ErrorKind.AUTH_FAILED


def test_no_terminal_error_event_without_kind_is_api_error() -> None:
    s = parse_lines(
        "opencode-json",
        ['{"type":"error","error":{"name":"APIError","data":{"message":"Bad gateway","statusCode":502}}}'],
    )
    assert classify(s, 1).error_kind == ErrorKind.API_ERROR


# -- every kind is reachable -----------------------------------------------------------


def test_every_error_kind_has_a_headline() -> None:
    for kind in ErrorKind:
        assert describe(kind)


def test_message_is_short_and_hides_credentials() -> None:
    text = "Invalid API key sk-ant-api03-abcdefghijklmnop " + "x" * 500
    outcome = classify(claude_error(401, text), 1)
    assert outcome.message is not None
    assert "sk-ant" not in outcome.message and len(outcome.message) < 250
    assert outcome.message.startswith("authentication failed (HTTP 401): Invalid API key [redacted]")
