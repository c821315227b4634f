"""adw's OpenCode parser and classifier on transcripts the real CLI printed (no CLI needed).

The files come from ``test_opencode_cli_real.py`` (see ``tests/fixtures/recorded/opencode-cli/README.md``);
the exit codes are the ones the CLI exited with.
"""

from __future__ import annotations

import pytest

from adw_modules.outcomes import ErrorKind
from adw_modules.workers.classify import classify
from adw_modules.workers.streams import parse_file
from tests.paths import FIXTURES

RECORDED = FIXTURES / "recorded" / "opencode-cli"


def test_recorded_success() -> None:
    summary = parse_file(RECORDED / "success.jsonl", "opencode-json")

    assert summary.skipped_lines == 0 and summary.terminal and not summary.is_error
    assert summary.result_text == "Hello from the fake!"
    assert summary.session_id and summary.session_id.startswith("ses_")
    usage = summary.usage
    assert (usage.input_tokens, usage.output_tokens, usage.cache_read_tokens, usage.cache_write_tokens) == (
        534,
        56,
        700,
        0,
    )
    assert summary.cost_source == "reported"
    assert summary.cost_usd == pytest.approx((534 * 3 + 56 * 15 + 700 * 0.3) / 1e6)
    assert classify(summary, 0).ok


def test_recorded_rate_limit() -> None:
    summary = parse_file(RECORDED / "error_429.jsonl", "opencode-json")
    outcome = classify(summary, 1)

    assert summary.skipped_lines == 0 and summary.is_error
    assert summary.api_status == 429
    assert summary.error_message == "Rate limit exceeded: free-models-per-minute"
    assert not outcome.ok and outcome.error_kind == ErrorKind.RATE_LIMITED
    assert outcome.retry_after_s == pytest.approx(0.02)  # from the retry-after-ms response header
