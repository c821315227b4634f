"""adw's Gemini parser and classifier on transcripts the real CLI printed (no Node needed).

The files come from ``test_gemini_cli_real.py`` (see ``tests/fixtures/recorded/gemini-cli/README.md``);
the exit codes are the ones the CLI exited with.
"""

from __future__ import annotations

import pytest

from adw_modules.outcomes import ErrorKind, Usage
from adw_modules.workers.classify import classify
from adw_modules.workers.streams import parse_file
from tests.paths import FIXTURES

RECORDED = FIXTURES / "recorded" / "gemini-cli"


@pytest.mark.parametrize(
    ("name", "exit_code", "kind", "status", "retry_after_s"),
    [
        ("success", 0, None, None, None),
        ("rate_limit_429", 173, ErrorKind.RATE_LIMITED, 429, 22.0),
        ("daily_quota_429", 173, ErrorKind.QUOTA_EXHAUSTED, 429, None),
        ("api_key_invalid_400", 144, ErrorKind.AUTH_FAILED, 400, None),
        ("overloaded_503", 247, ErrorKind.OVERLOADED, None, None),
        ("dropped_stream", 1, ErrorKind.API_ERROR, None, None),
    ],
)
def test_recorded_transcript(
    name: str, exit_code: int, kind: ErrorKind | None, status: int | None, retry_after_s: float | None
) -> None:
    summary = parse_file(RECORDED / f"{name}.jsonl", "gemini-stream-json")
    outcome = classify(summary, exit_code)

    assert summary.skipped_lines == 0 and summary.terminal
    assert summary.session_id and summary.models == ["gemini-2.5-flash"]
    assert outcome.ok is (kind is None)
    assert outcome.error_kind == kind
    assert summary.api_status == status
    assert outcome.retry_after_s == retry_after_s


def test_recorded_success_usage() -> None:
    summary = parse_file(RECORDED / "success.jsonl", "gemini-stream-json")

    assert summary.usage == Usage(input_tokens=534, output_tokens=86, cache_read_tokens=700)
    assert summary.result_text == "Hello from the fake Gemini."
