"""Bad input is counted and skipped, never raised; memory stays constant."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adw_modules.outcomes import StreamSummary
from adw_modules.workers.classify import classify
from adw_modules.workers.streams import FORMATS, parse_file, parse_lines, parser_for
from tests.paths import FIXTURES

FIXTURES = FIXTURES / "transcripts"
SUCCESS = FIXTURES / "claude-stream-json" / "success_model_usage.jsonl"


def _success_lines() -> list[str]:
    return SUCCESS.read_text(encoding="utf-8").splitlines()


def _assert_success_summary(s: StreamSummary) -> None:
    assert s.terminal and not s.is_error
    assert s.usage.input_tokens == 9923 and s.usage.output_tokens == 197  # summed over modelUsage
    assert s.session_id == "ab4694a7-7cfd-41d4-9f9b-fac26ce2930d"
    assert classify(s, 0).ok


def test_non_json_chatter_blank_and_crlf_lines(tmp_path: Path) -> None:
    lines = _success_lines()
    noisy = [
        "[SandboxDebug] Seccomp filter applied",
        "",
        "   ",
        lines[0],
        "not json at all {",
        lines[1],
        "[1, 2, 3]",  # JSON, but not an event object
        '"a bare string"',
        lines[2],
        lines[3],
    ]
    path = tmp_path / "noisy.jsonl"
    path.write_bytes("\r\n".join(noisy).encode("utf-8") + b"\r\n")
    s = parse_file(path, "claude-stream-json")
    _assert_success_summary(s)
    assert s.skipped_lines == 4  # blank lines are not bad lines
    assert s.events == 4


def test_unknown_types_and_subtypes_are_ignored() -> None:
    lines = _success_lines()
    extra = [
        '{"type":"something_new_from_a_future_cli","payload":{}}',
        '{"type":"system","subtype":"brand_new","session_id":"ab4694a7-7cfd-41d4-9f9b-fac26ce2930d"}',
        '{"no_type_field":true}',
        '{"type":"tool_progress","tool_use_id":"t"}',
    ]
    s = parse_lines("claude-stream-json", [lines[0], *extra, *lines[1:]])
    _assert_success_summary(s)
    assert s.skipped_lines == 0
    assert s.events == 8


def test_wrong_field_types_are_skipped_not_raised() -> None:
    lines = [
        '{"type":"result","subtype":"success","is_error":false,"usage":"lots","modelUsage":[1],'
        '"total_cost_usd":"free","num_turns":"two","duration_ms":null,"session_id":42}',
    ]
    s = parse_lines("claude-stream-json", lines)
    assert s.terminal and s.usage.total_tokens == 0 and s.cost_usd is None and s.session_id is None


def test_truncated_last_line_is_skipped(tmp_path: Path) -> None:
    lines = _success_lines()
    path = tmp_path / "cut.jsonl"
    path.write_text("\n".join(lines[:3]) + "\n" + lines[3][: len(lines[3]) // 2], encoding="utf-8")
    s = parse_file(path, "claude-stream-json")
    assert s.skipped_lines == 1
    assert not s.terminal
    assert classify(s, 1).name == "crashed"


def test_last_line_without_newline_is_parsed(tmp_path: Path) -> None:
    path = tmp_path / "no-newline.jsonl"
    path.write_text("\n".join(_success_lines()), encoding="utf-8")
    _assert_success_summary(parse_file(path, "claude-stream-json"))


def test_truncated_user_line_is_not_taken_for_an_event() -> None:
    # User lines are not decoded (nothing in them is needed), but a cut one still counts as bad.
    cut = _success_lines()[2][:80]
    s = parse_lines("claude-stream-json", [cut])
    assert s.skipped_lines == 1 and s.events == 0


def test_invalid_utf8_line_is_skipped() -> None:
    s = parse_lines("claude-stream-json", [b'{"type":"assistant","message":{"content":"\xff\xfe"}}', b"\xc3("])
    assert s.skipped_lines == 2


def test_five_megabyte_line(tmp_path: Path) -> None:
    lines = _success_lines()
    big = json.loads(lines[2])
    big["message"]["content"][0]["content"] = "x" * (5 * 1024 * 1024)
    huge_assistant = json.loads(lines[1])
    huge_assistant["message"]["content"][0]["input"]["content"] = "y" * (5 * 1024 * 1024)
    path = tmp_path / "big.jsonl"
    body = [lines[0], json.dumps(huge_assistant), json.dumps(big), lines[3]]
    path.write_text("\n".join(body) + "\n", encoding="utf-8")
    s = parse_file(path, "claude-stream-json")
    _assert_success_summary(s)
    assert s.skipped_lines == 0 and s.events == 4
    assert s.models == ["claude-fable-5", "claude-haiku-4-5-20251001"]


def test_overlong_line_is_dropped_and_counted(tmp_path: Path) -> None:
    lines = _success_lines()
    path = tmp_path / "overlong.jsonl"
    filler = '{"type":"assistant","message":{"content":"' + "z" * 3_000_000 + '"}}'
    path.write_text("\n".join([lines[0], filler, *lines[1:]]) + "\n", encoding="utf-8")
    s = parse_file(path, "claude-stream-json", max_line_bytes=1_000_000)
    _assert_success_summary(s)
    assert s.skipped_lines == 1


def test_claude_json_with_chatter_before_the_document(tmp_path: Path) -> None:
    path = tmp_path / "doc.json"
    doc = (FIXTURES / "claude-json" / "object_pretty.json").read_text(encoding="utf-8")
    path.write_text("[SandboxDebug] hello\n" + doc, encoding="utf-8")
    s = parse_file(path, "claude-json")
    assert s.skipped_lines == 1 and s.terminal and s.usage.output_tokens == 765  # modelUsage


def test_claude_json_truncated_document_is_not_success() -> None:
    doc = (FIXTURES / "claude-json" / "array_verbose.json").read_text(encoding="utf-8")
    s = parse_lines("claude-json", [doc[: len(doc) - 40]])
    assert not s.terminal and s.skipped_lines == 1
    assert classify(s, 0).name == "crashed"


def test_feed_accepts_str_and_bytes_with_or_without_newline() -> None:
    line = _success_lines()[3]
    for variant in (line, line + "\n", line + "\r\n", line.encode(), line.encode() + b"\n"):
        p = parser_for("claude-stream-json")
        event = p.feed(variant)
        assert event is not None and event.terminal


def test_finish_is_idempotent() -> None:
    p = parser_for("claude-stream-json")
    for line in _success_lines():
        p.feed(line)
    first = p.finish()
    assert p.finish() is first and first.usage.input_tokens == 9923


# -- properties ------------------------------------------------------------------------

_KNOWN_TYPES = [
    "system",
    "assistant",
    "user",
    "result",
    "rate_limit_event",
    "stream_event",
    "thread.started",
    "item.completed",
    "turn.completed",
    "turn.failed",
    "error",
    "init",
    "message",
    "text",
    "step_finish",
    "done",
]
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
_FIELDS = [
    "subtype", "message", "usage", "modelUsage", "result", "error", "is_error", "api_error_status",
    "session_id", "sessionID", "rate_limit_info", "part", "item", "stats", "status", "severity",
    "content", "delta", "role", "error_status", "retry_delay_ms", "model", "total_cost_usd", "errors",
]  # fmt: skip
_event_like = st.builds(
    lambda t, extra: json.dumps({"type": t, **extra}),
    st.sampled_from(_KNOWN_TYPES),
    st.dictionaries(st.sampled_from(_FIELDS), _json, max_size=6),
)
_garbage = st.one_of(st.text(max_size=200), st.binary(max_size=200), _event_like)


@settings(max_examples=300, deadline=None)
@given(fmt=st.sampled_from(sorted(FORMATS)), lines=st.lists(_garbage, max_size=12))
def test_random_lines_never_raise(fmt: str, lines: list[str | bytes]) -> None:
    s = parse_lines(fmt, lines)
    if fmt != "claude-json":  # one array line of claude-json holds many events
        assert s.events + s.skipped_lines <= len(lines)
    for ended_by in ("exit", "aborted", "idle_timeout"):
        outcome = classify(s, 0, ended_by=ended_by)
        assert outcome.ok or outcome.error_kind is not None


# -- constant memory -------------------------------------------------------------------


_ASSISTANT = (
    '{"type":"assistant","message":{"model":"claude-sonnet-4-6","id":"msg_NNN","type":"message",'
    '"role":"assistant","content":[{"type":"text","text":"step NNN"}],"usage":{"input_tokens":3,'
    '"cache_creation_input_tokens":5,"cache_read_input_tokens":7,"output_tokens":11}},'
    '"session_id":"s","uuid":"u-NNN"}'
)


def _assistant_line(i: int) -> str:
    return _ASSISTANT.replace("NNN", f"{i:08d}")


@pytest.mark.parametrize("fmt", ["claude-stream-json"])
def test_memory_does_not_grow_with_transcript_length(fmt: str) -> None:
    p = parser_for(fmt)
    for i in range(1000):  # warm up: caches, interned strings, the open-message window
        p.feed(_assistant_line(i))
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for i in range(1000, 51000):
            p.feed(_assistant_line(i))
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # 50k distinct messages; a kept list of events would cost tens of MB here.
    assert after - before < 64 * 1024
    s = p.finish()
    assert s.events == 51000 and s.models == ["claude-sonnet-4-6"]
    assert s.usage.input_tokens == 3 * 51000 and s.usage.output_tokens == 11 * 51000


def test_streamed_text_is_bounded() -> None:
    p = parser_for("gemini-stream-json")
    piece = json.dumps({"type": "message", "role": "assistant", "content": "w" * 1000, "delta": True})
    for _ in range(500):
        p.feed(piece)
    text = p.finish().result_text
    assert text is not None and len(text) == 64 * 1024


def test_usage_so_far_counts_each_message_once_while_streaming() -> None:
    p = parser_for("claude-stream-json")
    assert p.usage_so_far().total_tokens == 0
    for i in range(100):
        p.feed(_assistant_line(i))
        p.feed(_assistant_line(i))  # the CLI repeats a message's usage on each content block
        so_far = p.usage_so_far()
        assert (so_far.input_tokens, so_far.output_tokens) == (3 * (i + 1), 11 * (i + 1))
    p.feed('{"type":"result","subtype":"success","is_error":false,"usage":{"input_tokens":500,"output_tokens":9}}')
    assert (p.usage_so_far().input_tokens, p.usage_so_far().output_tokens) == (500, 9)  # the total wins
    assert p.finish().usage.input_tokens == 500
