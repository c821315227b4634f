"""Fuzz every stream parser: whatever a CLI prints, ``feed``/``finish`` never raise, nor does ``classify``.

The lines are built from the parsers' own vocabulary (every string constant in their source:
event types, field names, subtypes), so they reach the handlers rather than the JSON decoder,
with every field given a value of any type: huge and non-finite numbers, deep nesting, wrong
types everywhere.  Then the serialised lines are truncated, spliced with invalid UTF-8 and NUL,
or replaced by raw bytes.  Kept small (``max_examples``) so the whole file runs in seconds.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adw_modules.outcomes import StreamSummary
from adw_modules.workers import classify
from adw_modules.workers.streams import FORMATS, parser_for

STREAMS_DIR = Path(classify.__file__).resolve().parent / "streams"


def _vocabulary() -> list[str]:
    """Every short string constant in the parsers' source: the keys and values they look for."""
    words: set[str] = set()
    for source in STREAMS_DIR.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and 0 < len(node.value) <= 40:
                words.add(node.value)
    return sorted(words)


WORDS = _vocabulary()
word = st.sampled_from(WORDS)

scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**60), max_value=10**60),  # far past int64
    st.sampled_from([0, -1, 2**63, -(2**63) - 1, 10**308, 1.5, -0.0, 1e308]),
    st.floats(allow_nan=True, allow_infinity=True),  # json.dumps writes NaN and Infinity, json.loads reads them
    word,
    st.text(max_size=30),
    st.sampled_from(["", "0", "429", "yes", "true", "null", "\x00", "\ud800", "9" * 40]),
)

json_value = st.recursive(
    scalar,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(word, st.text(max_size=8)), children, max_size=5),
    ),
    max_leaves=15,
)


@st.composite
def event(draw: st.DrawFn) -> dict[str, Any]:
    """An object shaped like a CLI event: a known ``type`` (mostly), known fields of any type."""
    obj: dict[str, Any] = draw(st.dictionaries(word, json_value, max_size=8))
    if draw(st.booleans()):
        obj["type"] = draw(word)
    if draw(st.booleans()):
        obj[draw(word)] = draw(st.dictionaries(word, json_value, max_size=6))  # message, usage, item, part...
    return obj


FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
SEED_DIRS = {
    "claude-stream-json": ["transcripts/claude-stream-json", "recorded/claude-cli"],
    "claude-json": ["transcripts/claude-json", "transcripts/claude-stream-json"],
    "codex-json": ["transcripts/codex-json", "recorded/codex-cli"],
    "gemini-stream-json": ["transcripts/gemini-stream-json", "recorded/gemini-cli"],
    "opencode-json": ["transcripts/opencode-json", "recorded/opencode-cli"],
}


def _seeds(fmt: str) -> list[Any]:
    """Real events of ``fmt`` (recorded and documented transcripts): the skeletons to mutate."""
    out: list[Any] = []
    for sub in SEED_DIRS[fmt]:
        for path in sorted((FIXTURES / sub).iterdir()):
            if path.suffix == ".json":
                doc = json.loads(path.read_text())
                out += [doc, *(doc if isinstance(doc, list) else [])]
            elif path.suffix == ".jsonl":
                for text in path.read_text().splitlines():
                    try:
                        out.append(json.loads(text))
                    except ValueError:
                        pass  # the fixtures' own non-JSON lines
    return out


SEEDS = {fmt: _seeds(fmt) for fmt in FORMATS}


def _slots(node: Any) -> list[tuple[Any, Any]]:
    """Every (container, key) in a decoded JSON tree: the places a value can be replaced."""
    out: list[tuple[Any, Any]] = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in items:
        out.append((node, key))
        out += _slots(child)
    return out


@st.composite
def mutated_seed(draw: st.DrawFn, fmt: str) -> str:
    """A real event with a few of its fields given a value of another type, or removed."""
    obj = json.loads(json.dumps(draw(st.sampled_from(SEEDS[fmt]))))
    slots = _slots(obj)
    for _ in range(draw(st.integers(1, 4)) if slots else 0):
        container, key = draw(st.sampled_from(slots))
        if isinstance(container, dict) and draw(st.integers(0, 5)) == 0:
            container.pop(key, None)
        else:
            container[key] = draw(json_value)
        slots = _slots(obj)
        if not slots:
            break
    return json.dumps(obj)


def deep(depth: int, key: str) -> str:
    return '{"type":"' + key + '","message":' + '{"content":[' * depth + "1" + "]}" * depth + "}"


@st.composite
def line(draw: st.DrawFn) -> str | bytes:
    text = json.dumps(draw(event()), ensure_ascii=draw(st.booleans()))
    how = draw(st.sampled_from(["whole", "whole", "truncated", "spliced", "raw", "deep", "number"]))
    if how == "truncated":
        return text[: draw(st.integers(0, len(text)))]
    if how == "spliced":
        at = draw(st.integers(0, len(text)))
        junk = draw(st.sampled_from([b"\xff", b"\xc3", b"\x00", b"\xed\xa0\x80", b"\r", b"\\u", b'"']))
        return text.encode("utf-8", "surrogatepass")[:at] + junk + text.encode("utf-8", "surrogatepass")[at:]
    if how == "raw":
        return draw(st.binary(max_size=60))
    if how == "deep":
        return deep(draw(st.sampled_from([50, 500, 5000, 100_000])), draw(word))
    if how == "number":
        huge = draw(st.sampled_from(["1" * 5000, "1e999", "-1e999", "1" + "0" * 400 + ".5", "NaN", "-Infinity"]))
        field = draw(word)
        return '{"type":"' + draw(word) + '","' + field + '":' + huge + ',"usage":{"' + field + '":' + huge + "}}"
    return text


def check_stream(fmt: str, lines: Sequence[str | bytes]) -> None:
    parser = parser_for(fmt)
    for one in lines:
        parser.feed(one)
        parser.usage_so_far()
    summary = parser.finish()
    assert isinstance(summary, StreamSummary)
    assert parser.finish() is summary  # idempotent
    for ended_by in sorted(classify.ENDINGS):
        for exit_code in (0, 1, None, -9):
            classify.classify(summary, exit_code, ended_by=ended_by, stderr_tail="Error: 429 quota")
    json.dumps(summary.to_dict() if hasattr(summary, "to_dict") else {}, default=str)


FUZZ = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@settings(FUZZ, max_examples=25)
@given(lines=st.lists(line(), max_size=6))
def test_no_exception_escapes_a_parser_or_classify(fmt: str, lines: list[str | bytes]) -> None:
    check_stream(fmt, lines)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@FUZZ
@given(data=st.data())
def test_real_events_with_fields_of_the_wrong_type_never_raise(fmt: str, data: st.DataObject) -> None:
    lines = data.draw(st.lists(mutated_seed(fmt), min_size=1, max_size=6))
    if data.draw(st.booleans()):  # and cut off where the CLI died
        last = lines[-1]
        lines[-1] = last[: data.draw(st.integers(0, len(last)))]
    check_stream(fmt, lines)


def test_the_vocabulary_reaches_the_handlers() -> None:
    # If the parsers' field names were not in the vocabulary, the fuzzer would only test the decoder.
    assert {"type", "result", "usage", "message", "content", "is_error", "subtype"} <= set(WORDS)
    assert len(FORMATS) == 5


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize(
    "bad",
    [
        deep(100_000, "assistant"),
        deep(900, "result"),
        '{"type":"result","is_error":"yes","result":' + "1" * 5000 + "}",
        '{"type":"result","usage":{"input_tokens":1e999,"output_tokens":-1e999},"total_cost_usd":NaN}',
        b'{"type":"assistant","message":{"content":[{"type":"text","text":"\xff\xfe\x00"}]}}',
        "\x00" * 10 + '{"type":"result"}',
        '{"type":"result","result":"\\ud800"}',
    ],
)
def test_known_hostile_lines(fmt: str, bad: str | bytes) -> None:
    check_stream(fmt, [bad, bad])
