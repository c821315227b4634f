"""Real CLI output other people published (tests/fixtures/real/, SOURCES.md says where each came from).

Expected figures are worked out by hand from each file: for Claude, the sum over the last
result's ``modelUsage`` (which is what ``total_cost_usd`` covers; ``result.usage`` covers the
main model only and is zero on API errors), the CLI's ``total_cost_usd``, and the init
event's model; for the others, the CLI's own totals.  Outcomes are with exit code 0, as
the CLIs exited in these runs.
"""

from __future__ import annotations

import json
from typing import NamedTuple

import pytest

from adw_modules.workers.classify import classify
from adw_modules.workers.streams import parse_file
from tests.paths import FIXTURES

REAL = FIXTURES / "real"
FORMATS = {
    "claude": "claude-stream-json",
    "codex": "codex-json",
    "gemini": "gemini-stream-json",
    "opencode": "opencode-json",
}


class Real(NamedTuple):
    path: str
    tokens: tuple[int, int, int, int]  # input (uncached), output, cache read, cache write
    cost_usd: float | None
    main_model: str | None
    outcome: str


CASES = [
    Real(
        "claude/hivemind-issue719-weekly-limit-is_error.jsonl",
        (8067, 4517, 58446, 19624),
        0.14746179999999998,
        "claude-sonnet-4-5-20250929",
        "quota_exhausted",
    ),
    Real(
        "claude/hivemind-issue724-v2.0.36-two-results.jsonl",
        (150645, 33967, 4188294, 82322),
        2.1948016999999993,
        "claude-sonnet-4-5-20250929",
        "success",
    ),
    Real(
        "claude/hivemind-issue759-v2.0.55-opus45-two-results.jsonl",
        (51883, 4800, 482545, 28009),
        0.5873877500000001,
        "claude-opus-4-5-20251101",
        "success",
    ),
    Real("claude/hivemind-issue789-404-model-is_error.jsonl", (2237, 979, 0, 0), 0.027108, "oups", "invalid_model"),
    Real(
        "claude/hivemind-pr4-session3-sonnet45-haiku35.jsonl",
        (20464, 2649, 160370, 13631),
        0.14794805,
        "claude-sonnet-4-5-20250929",
        "success",
    ),
    Real(
        "claude/hivemind-pr49-run1-v2.0.27-sonnet45-haiku45.jsonl",
        (1527, 14759, 1794594, 78318),
        0.9644162999999997,
        "claude-sonnet-4-5-20250929",
        "success",
    ),
    Real(
        "claude/hivemind-pr4revert-session1-sonnet45-haiku35.jsonl",
        (26699, 8345, 614952, 23489),
        0.4109151500000002,
        "claude-sonnet-4-5-20250929",
        "success",
    ),
    Real(
        "claude/hivemind-pr52-v2.0.27-sonnet45-haiku45.jsonl",
        (963, 18722, 2294220, 79207),
        1.2734612500000004,
        "claude-sonnet-4-5-20250929",
        "success",
    ),
    Real(
        "claude/orcho-probe-2026-05-18-opus47-1m-haiku45.jsonl",
        (456, 24, 0, 11677),
        0.0738,
        "claude-opus-4-7[1m]",
        "success",
    ),
    Real(
        "claude/vecsum-v2.1.4-500-api_error-is_error.jsonl",
        (989, 3960, 314875, 22711),
        0.38886945000000006,
        "claude-opus-4-5-20251101",
        "api_error",
    ),
    Real(
        "claude/vecsum-v2.1.4-529-overloaded-is_error.jsonl",
        (6, 282, 37887, 0),
        0.0176027,
        "claude-opus-4-5-20251101",
        "overloaded",
    ),
    Real(
        "claude/vecsum-v2.1.4-opus45-haiku45-readme_specs_quality.jsonl",
        (7, 1261, 92986, 57573),
        0.35941625,
        "claude-opus-4-5-20251101",
        "success",
    ),
    Real(
        "claude/vecsum-v2.1.4-opus45-haiku45-req_fix_01_cli.jsonl",
        (9029, 10810, 926441, 41499),
        0.9982954500000001,
        "claude-opus-4-5-20251101",
        "success",
    ),
    Real(
        "claude/vecsum-v2.1.4-sonnet45-haiku45-fix_attempt.jsonl",
        (7696, 26581, 1264860, 76972),
        1.0669852,
        "claude-sonnet-4-5-20250929",
        "success",
    ),
    Real(
        "claude/vecsum-v2.1.4-sonnet45-init-3models-download_compiler.jsonl",
        (4554, 1628, 161934, 52042),
        0.29084019999999994,
        "claude-sonnet-4-5-20250929",
        "success",
    ),
    Real(
        "claude/vecsum-v2.1.4-sonnet45-init-3models-vibe_code.jsonl",
        (7214, 17534, 2512779, 67804),
        1.2783756999999998,
        "claude-sonnet-4-5-20250929",
        "success",
    ),
    Real("codex/hivemind-issue642-two-runs-thread-turn-events.jsonl", (24379, 4949, 254592, 0), None, None, "success"),
    Real("codex/hivemind-issue715-401-reconnecting-head20.jsonl", (0, 0, 0, 0), None, None, "auth_failed"),
    Real("codex/hivemind-issue719-usage-limit-single.jsonl", (0, 0, 0, 0), None, None, "quota_exhausted"),
    Real("codex/hivemind-issue729-usage-limit-loop.jsonl", (80123, 4187, 927616, 0), None, None, "quota_exhausted"),
    Real("codex/openai-codex-issue19022-no-reasoning-field.jsonl", (30241, 47, 1920, 0), None, None, "success"),
    Real("codex/orcho-probe-2026-05-18-minimal.jsonl", (30101, 7, 6912, 0), None, None, "success"),
    Real("codex/zed-codex-acp-issue99-turn-completed.jsonl", (12933, 2374, 57088, 0), None, None, "success"),
    Real("gemini/gemini-stream-json-result-2025-11-25-example.jsonl", (7854, 210, 0, 0), None, None, "success"),
    Real("gemini/gemini-stream-json-result-2026-02-11-parser-test.jsonl", (17031, 127, 0, 0), None, None, "success"),
    Real(
        "gemini/gemini-stream-json-result-captured-gemini-3.5-flash.jsonl", (4453, 297, 8148, 0), None, None, "success"
    ),
    Real("opencode/anomalyco-opencode-pr2810-step-no-reason.jsonl", (11087, 145, 0, 0), 0.0070147, None, "success"),
    Real("opencode/takopi-fixture-opencode_stream_success.jsonl", (22443, 118, 21415, 0), 0.001, None, "success"),
]


def test_every_real_capture_has_a_case() -> None:
    on_disk = {f"{p.parent.name}/{p.name}" for p in REAL.glob("*/*.jsonl")}
    assert on_disk == {c.path for c in CASES}
    assert len(CASES) >= 20


@pytest.mark.parametrize("case", CASES, ids=[c.path for c in CASES])
def test_real_capture(case: Real) -> None:
    cli = case.path.split("/")[0]
    summary = parse_file(REAL / case.path, FORMATS[cli])
    u = summary.usage
    assert (u.input_tokens, u.output_tokens, u.cache_read_tokens, u.cache_write_tokens) == case.tokens
    assert summary.cost_usd == case.cost_usd
    assert summary.main_model == case.main_model
    assert summary.skipped_lines == 0
    assert classify(summary, 0).name == case.outcome


@pytest.mark.parametrize("case", [c for c in CASES if c.path.startswith("claude/")], ids=lambda c: c.path)
def test_claude_totals_are_the_model_usage_sum_and_the_cost_covers_them(case: Real) -> None:
    """Independent of the parser: the file's own modelUsage adds up to what adw reports."""
    lines = [json.loads(line) for line in (REAL / case.path).read_text(encoding="utf-8").splitlines()]
    result = [o for o in lines if o.get("type") == "result"][-1]
    keys = ("inputTokens", "outputTokens", "cacheReadInputTokens", "cacheCreationInputTokens")
    assert tuple(sum(m.get(k, 0) for m in result["modelUsage"].values()) for k in keys) == case.tokens
    per_model_cost = sum(m["costUSD"] for m in result["modelUsage"].values())
    assert per_model_cost == pytest.approx(result["total_cost_usd"], abs=1e-4)
    summary = parse_file(REAL / case.path, "claude-stream-json")
    assert sum(p.total_tokens for p in summary.per_model.values()) == summary.usage.total_tokens
    # The headline model is the one the run was for, never merely the last one listed.
    init = [o for o in lines if o.get("type") == "system" and o.get("subtype") == "init"]
    if init:
        assert summary.main_model == init[-1]["model"]
