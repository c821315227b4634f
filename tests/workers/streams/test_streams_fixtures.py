"""Every recorded transcript parses to the tokens, cost, session, models and outcome it shows."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest

from adw_modules.outcomes import ErrorKind, Usage
from adw_modules.workers.classify import classify
from adw_modules.workers.streams import FORMATS, parse_file, parse_lines, parser_for
from tests.paths import FIXTURES

FIXTURES = FIXTURES / "transcripts"


@dataclass
class Expect:
    path: str
    exit_code: int
    outcome: str  # "success" or an ErrorKind value
    usage: tuple[int, int, int, int] | None = None  # input, output, cache read, cache write
    cost: float | None = None
    session: str | None = None
    models: list[str] = field(default_factory=list)
    result_text: str | None = None
    api_status: int | None = None
    retry_after_s: float | None = None
    resets_at: float | None = None
    skipped: int = 0


CASES = [
    # -- Claude stream-json ---------------------------------------------------------
    Expect(
        "claude-stream-json/success_model_usage.jsonl",
        0,
        "success",
        # The sum over modelUsage (fable 9388/184/34904/14392 + haiku 535/13/0/0), which is what
        # total_cost_usd covers; result.usage (9388/184/…) leaves the haiku side call out.
        usage=(9923, 197, 34904, 14392),
        cost=0.42642399999999997,
        session="ab4694a7-7cfd-41d4-9f9b-fac26ce2930d",
        models=["claude-fable-5", "claude-haiku-4-5-20251001"],
        result_text='Done — I created `hello.txt` in the working directory containing the word "hello".',
    ),
    Expect(
        "claude-stream-json/success_no_model_usage.jsonl",
        0,
        "success",
        usage=(10, 25, 0, 21570),
        cost=0.1354875,
        session="1d1e46f9-35c7-4834-b529-846d5bb82288",
        models=["claude-opus-4-5-20251101"],
        result_text="4",
    ),
    Expect(
        "claude-stream-json/rate_limit_429.jsonl",
        1,
        "rate_limited",
        api_status=429,
        retry_after_s=30.0,
        session="x",
    ),
    Expect("claude-stream-json/overloaded_529.jsonl", 1, "overloaded", api_status=529),
    Expect(
        "claude-stream-json/overloaded_529_model_usage.jsonl",
        1,
        "overloaded",
        usage=(1908, 14, 0, 0),
        cost=0.001978,
        models=["claude-haiku-4-5-20251001"],
        api_status=529,
    ),
    Expect(
        "claude-stream-json/auth_401.jsonl",
        1,
        "auth_failed",
        usage=(0, 0, 0, 0),
        cost=0.0,
        session="50884eed-28b7-431e-9ad8-78b326696ae7",
        result_text="Invalid API key · Please run /login",
    ),
    Expect("claude-stream-json/auth_api_retry_401.jsonl", 1, "auth_failed", api_status=401, session="x"),
    Expect("claude-stream-json/billing_credit.jsonl", 1, "quota_exhausted", api_status=400),
    Expect(
        "claude-stream-json/rate_limit_rejected.jsonl",
        1,
        "quota_exhausted",
        api_status=429,
        resets_at=1790920800.0,
        session="sess-1",
    ),
    Expect(
        "claude-stream-json/max_turns.jsonl",
        1,
        "max_turns",
        usage=(9386, 410, 18206, 1625),
        cost=0.16568400000000003,
        session="b1cacbdf-32f5-479b-97ed-4a869575dda8",
    ),
    Expect("claude-stream-json/max_budget.jsonl", 1, "budget_exceeded", cost=5.12),
    Expect(
        "claude-stream-json/bad_model_404.jsonl",
        1,
        "invalid_model",
        api_status=404,
        session="0a4d8d99-ef93-4499-9084-39b2c92d24e0",
    ),
    Expect(
        "claude-stream-json/partial_messages.jsonl",
        0,
        "crashed",
        session="23dd665a-e0c0-43e5-8099-08f8f0c0ba27",
    ),
    # -- Claude json (object and --verbose array) ------------------------------------
    Expect(
        "claude-json/object_pretty.json",
        0,
        "success",
        # modelUsage (the whole session's count), not result.usage (18/424/17254/25067).
        usage=(38, 765, 28775, 31159),
        cost=0.24722425,
        session="40e7b02d-c0f9-4876-9010-f514d4eb0603",
        models=["claude-opus-4-5-20251101"],
        result_text="Here are the files in the current directory.",
    ),
    Expect(
        "claude-json/array_verbose.json",
        0,
        "success",
        usage=(10, 25, 0, 21570),
        cost=0.1354875,
        session="1d1e46f9-35c7-4834-b529-846d5bb82288",
        models=["claude-opus-4-5-20251101"],
        result_text="4",
    ),
    Expect("claude-json/object_auth.json", 1, "auth_failed", cost=0.0),
    # -- Codex -----------------------------------------------------------------------
    Expect(
        "codex-json/success.jsonl",
        0,
        "success",
        usage=(24763 - 24448, 122, 24448, 0),
        session="0199a213-81c0-7800-8aa1-bbab2a035a53",
        result_text="Yep — there’s a `README.md` in the repository root.",
    ),
    Expect(
        "codex-json/success_short.jsonl",
        0,
        "success",
        usage=(2946, 7, 0, 0),
        session="019a2d7a-41c4-78b1-b7cc-a45d62a89cd5",
        result_text="4",
    ),
    Expect("codex-json/turn_failed_auth.jsonl", 1, "auth_failed", api_status=401, session="REDACTED-THREAD-ID"),
    # Codex has exited 0 after turn.failed: the terminal event wins.
    Expect("codex-json/usage_limit.jsonl", 0, "quota_exhausted"),
    Expect("codex-json/capacity.jsonl", 1, "overloaded"),
    Expect("codex-json/invalid_model_400.jsonl", 1, "invalid_model", api_status=400),
    Expect("codex-json/reconnecting_429.jsonl", 1, "rate_limited", api_status=429),
    # -- Gemini ----------------------------------------------------------------------
    Expect(
        "gemini-stream-json/success.jsonl",
        0,
        "success",
        usage=(14800, 717, 8115, 0),  # 74 candidates + 643 thinking (the rest of the total)
        session="d1f03c4d-470b-4894-a540-3fd31e12be65",
        models=["gemini-3.1-flash-lite", "gemini-3.5-flash"],
        result_text="amux-fixture",
    ),
    Expect(
        "gemini-stream-json/invalid_model.jsonl",
        1,
        "invalid_model",
        usage=(0, 0, 0, 0),
        models=["does-not-exist-model"],
    ),
    Expect("gemini-stream-json/turn_limit.jsonl", 53, "max_turns", usage=(7862, 393, 0, 0)),
    Expect("gemini-stream-json/max_turns_error_event.jsonl", 0, "max_turns"),
    # The official snapshot keeps a <DURATION> placeholder: its result line is not JSON.
    Expect(
        "gemini-stream-json/snapshot_deltas.jsonl",
        0,
        "crashed",
        session="test-session-id",
        models=["test-model"],
        result_text="Thinking...Final answer",
        skipped=1,
    ),
    # -- OpenCode --------------------------------------------------------------------
    Expect(
        "opencode-json/success_cost.jsonl",
        0,
        "success",
        usage=(3, 7, 0, 8176),
        cost=0.010258,
        session="ses_1496d7d5effenFlBINeoCqBVk8",
        result_text="PING-123",
    ),
    # Only a "tool-calls" step: the run was cut before its final step (opencode PR #40061).
    Expect(
        "opencode-json/tool_step_no_stop.jsonl",
        0,
        "crashed",
        usage=(237, 39 + 67, 7936, 0),
        cost=0.0,
        session="ses_fe64248c1ffeT4xyThvSemc697",
    ),
    Expect(
        "opencode-json/error_balance.jsonl",
        1,
        "quota_exhausted",
        api_status=401,
        session="ses_f5fb6bc6fffediCqltJppwYZht",
    ),
    Expect("opencode-json/error_429.jsonl", 1, "rate_limited", api_status=429),
]


def test_every_fixture_has_a_case() -> None:
    on_disk = {str(p.relative_to(FIXTURES)) for p in FIXTURES.glob("*/*") if p.suffix in (".json", ".jsonl")}
    assert on_disk == {c.path for c in CASES}


@pytest.mark.parametrize("case", CASES, ids=[c.path for c in CASES])
def test_fixture(case: Expect) -> None:
    fmt = case.path.split("/")[0]
    summary = parse_file(FIXTURES / case.path, fmt)
    assert summary.format == fmt
    assert summary.skipped_lines == case.skipped
    if case.usage is not None:
        u = summary.usage
        assert (u.input_tokens, u.output_tokens, u.cache_read_tokens, u.cache_write_tokens) == case.usage
    if case.cost is None:
        assert summary.cost_usd is None or case.outcome != "success"
    else:
        assert summary.cost_usd == pytest.approx(case.cost)
        assert summary.cost_source == "reported"
    if case.session is not None:
        assert summary.session_id == case.session
    assert summary.models == case.models
    if case.result_text is not None:
        assert summary.result_text == case.result_text
    if case.api_status is not None:
        assert summary.api_status == case.api_status

    outcome = classify(summary, case.exit_code)
    assert outcome.name == case.outcome, outcome.message
    assert outcome.retry_after_s == case.retry_after_s
    assert outcome.resets_at == case.resets_at
    if not outcome.ok:
        assert outcome.message and "\n" not in outcome.message and len(outcome.message) < 400


@pytest.mark.parametrize("case", CASES, ids=[c.path for c in CASES])
def test_parse_lines_agrees_with_parse_file(case: Expect) -> None:
    fmt = case.path.split("/")[0]
    path = FIXTURES / case.path
    from_lines = parse_lines(fmt, path.read_text(encoding="utf-8").splitlines(keepends=True))
    assert from_lines == parse_file(path, fmt)


def test_claude_per_model_from_model_usage() -> None:
    s = parse_file(FIXTURES / "claude-stream-json/success_model_usage.jsonl", "claude-stream-json")
    assert s.per_model == {
        "claude-haiku-4-5-20251001": Usage(535, 13, 0, 0, 0.0006),
        "claude-fable-5": Usage(9388, 184, 34904, 14392, 0.425824),
    }
    assert s.duration_s == pytest.approx(8.66)
    assert s.num_turns == 2
    assert s.terminal and not s.is_error


def test_claude_per_model_falls_back_to_assistant_messages() -> None:
    s = parse_file(FIXTURES / "claude-stream-json/success_no_model_usage.jsonl", "claude-stream-json")
    # One model and no modelUsage: the breakdown is result.usage (the streamed messages said 5 output tokens, the total 25).
    assert s.per_model == {"claude-opus-4-5-20251101": Usage(10, 25, 0, 21570, 0.1354875)}
    assert s.main_model == "claude-opus-4-5-20251101"


def test_gemini_per_model_stats() -> None:
    s = parse_file(FIXTURES / "gemini-stream-json/success.jsonl", "gemini-stream-json")
    assert s.per_model["gemini-3.5-flash"] == Usage(13837, 614, 8115, 0)
    assert s.per_model["gemini-3.1-flash-lite"] == Usage(963, 103, 0, 0)
    assert s.duration_s == pytest.approx(7.175)
    assert s.cost_usd is None and s.cost_source is None


def test_codex_has_no_cost() -> None:
    s = parse_file(FIXTURES / "codex-json/success.jsonl", "codex-json")
    assert s.cost_usd is None and s.cost_source is None


def test_codex_usage_with_cache_write_and_reasoning() -> None:
    # Captured from Codex CLI 0.153.4 (reference section 2.1).
    line = (
        '{"type":"turn.completed","usage":{"input_tokens":17232,"cached_input_tokens":12928,'
        '"cache_write_input_tokens":0,"output_tokens":6,"reasoning_output_tokens":0}}'
    )
    s = parse_lines("codex-json", [line])
    assert (s.usage.input_tokens, s.usage.cache_read_tokens, s.usage.output_tokens) == (4304, 12928, 6)


def test_claude_usage_falls_back_to_assistant_sum_deduplicated_by_message_id() -> None:
    # One API message streamed as two content-block lines repeats its usage; a
    # second message follows; the result has no usage at all.
    def assistant(msg_id: str, block: str, inp: int, out: int) -> str:
        usage = {
            "input_tokens": inp,
            "cache_creation_input_tokens": 100,
            "cache_read_input_tokens": 1000,
            "output_tokens": out,
        }
        message = {
            "model": "claude-sonnet-4-6",
            "id": msg_id,
            "type": "message",
            "role": "assistant",
            "content": [{"type": "text", "text": block}],
            "usage": usage,
        }
        return json.dumps({"type": "assistant", "message": message, "session_id": "s"})

    lines = [
        assistant("msg_1", "a", 10, 3),
        assistant("msg_1", "b", 10, 3),
        assistant("msg_2", "c", 20, 4),
        '{"type":"result","subtype":"success","is_error":false,"duration_ms":5,"num_turns":2,'
        '"result":"ok","session_id":"s","total_cost_usd":0.01}',
    ]
    s = parse_lines("claude-stream-json", lines)
    assert s.usage == Usage(30, 7, 2000, 200, 0.01)
    assert s.per_model == {"claude-sonnet-4-6": Usage(30, 7, 2000, 200)}


def test_claude_events_and_signals() -> None:
    p = parser_for("claude-stream-json")
    lines = (FIXTURES / "claude-stream-json/rate_limit_429.jsonl").read_text().splitlines()
    retry = p.feed(lines[0])
    assert retry is not None and retry.signal == ErrorKind.RATE_LIMITED and retry.retry_after_s == 30.0
    assistant = p.feed(lines[1])
    assert assistant is not None and assistant.signal is None  # the result follows at once
    result = p.feed(lines[2])
    assert result is not None and result.terminal and result.type == "result"
    assert p.finish().retry_events == 1


@pytest.mark.parametrize(
    ("line", "signal"),
    [
        ('{"type":"system","subtype":"api_retry","attempt":10,"error_status":529}', ErrorKind.OVERLOADED),
        # CLIs before 0.3.150 called a 529 "rate_limit": the status decides.
        (
            '{"type":"system","subtype":"api_retry","attempt":1,"error_status":529,"error":"rate_limit"}',
            ErrorKind.OVERLOADED,
        ),
        (
            '{"type":"system","subtype":"api_retry","attempt":1,"error_status":401,"error":"authentication_failed"}',
            ErrorKind.AUTH_FAILED,
        ),
        (
            '{"type":"system","subtype":"api_retry","attempt":1,"error_status":400,"error":"billing_error"}',
            ErrorKind.QUOTA_EXHAUSTED,
        ),
        ('{"type":"system","subtype":"api_retry","attempt":1,"error_status":null,"error":"unknown"}', None),
        (
            '{"type":"system","subtype":"api_retry","attempt":1,"error_status":500,"error":"server_error"}',
            None,
        ),
    ],
)
def test_claude_api_retry_signals(line: str, signal: ErrorKind | None) -> None:
    p = parser_for("claude-stream-json")
    event = p.feed(line)
    assert event is not None and event.signal == signal
    assert p.summary.retry_events == 1


def test_claude_rate_limit_event_signals() -> None:
    p = parser_for("claude-stream-json")
    lines = (FIXTURES / "claude-stream-json/success_model_usage.jsonl").read_text().splitlines()
    allowed = p.feed(lines[0])
    assert allowed is not None and allowed.signal is None
    rejected = p.feed((FIXTURES / "claude-stream-json/rate_limit_rejected.jsonl").read_text().splitlines()[0])
    assert rejected is not None
    assert rejected.signal == ErrorKind.QUOTA_EXHAUSTED and rejected.resets_at == 1790920800.0


def test_codex_reconnect_signal_and_recovery() -> None:
    p = parser_for("codex-json")
    event = p.feed('{"type":"error","message":"Reconnecting... 1/5 (unexpected status 429 Too Many Requests)"}')
    assert event is not None and event.signal == ErrorKind.RATE_LIMITED
    assert p.summary.retry_events == 1
    # The reconnect worked and the turn completed: the earlier chatter does not fail the run.
    p.feed('{"type":"turn.completed","usage":{"input_tokens":10,"cached_input_tokens":0,"output_tokens":1}}')
    assert classify(p.finish(), 0).ok


def test_codex_usage_limit_error_event_signal() -> None:
    p = parser_for("codex-json")
    event = p.feed('{"type":"error","message":"You’ve hit your usage limit. Try again at 1:37 AM."}')
    assert event is not None and event.signal == ErrorKind.QUOTA_EXHAUSTED


def test_opencode_error_signal() -> None:
    p = parser_for("opencode-json")
    event = p.feed((FIXTURES / "opencode-json/error_429.jsonl").read_text())
    assert event is not None and event.signal == ErrorKind.RATE_LIMITED and not event.terminal


def test_opencode_done_is_terminal() -> None:
    s = parse_lines(
        "opencode-json",
        [
            (FIXTURES / "opencode-json/tool_step_no_stop.jsonl").read_text().splitlines()[1],
            '{"type":"done","timestamp":1,"sessionID":"ses_fe64248c1ffeT4xyThvSemc697","reason":"idle","rejected":[]}',
        ],
    )
    assert s.terminal and classify(s, 0).ok


def test_gemini_quota_error_result() -> None:
    # Shape of a TerminalQuotaError result (reference section 3.1; stats elided there).
    line = (
        '{"type":"result","timestamp":"2026-01-01T00:00:00Z","status":"error","error":{"type":'
        '"TerminalQuotaError","message":"You have exhausted your daily quota on this model."}}'
    )
    assert classify(parse_lines("gemini-stream-json", [line]), 1).name == "quota_exhausted"


def test_parser_for_unknown_format_names_the_known_ones() -> None:
    with pytest.raises(ValueError) as err:
        parser_for("aider")
    for name in FORMATS:
        assert name in str(err.value)


def test_formats_registry() -> None:
    assert set(FORMATS) == {
        "claude-stream-json",
        "claude-json",
        "codex-json",
        "gemini-stream-json",
        "opencode-json",
    }
    for name, cls in FORMATS.items():
        assert cls.format == name
        assert parser_for(name).summary.format == name
