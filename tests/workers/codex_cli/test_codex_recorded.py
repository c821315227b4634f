"""Every recorded real Codex transcript parses and classifies as the run it came from.

The files are genuine ``codex exec --json`` output (``tests/fixtures/recorded/codex-cli/README.md``);
this needs no CLI, so the ``codex-json`` parser is checked against real output everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from adw_modules.outcomes import Usage
from adw_modules.workers.classify import classify
from adw_modules.workers.streams import parse_file
from tests.paths import FIXTURES

RECORDED = FIXTURES / "recorded" / "codex-cli"


@dataclass(frozen=True)
class Expect:
    name: str
    exit_code: int
    outcome: str
    usage: Usage = field(default_factory=Usage)
    api_status: int | None = None
    retry_events: int = 0
    result_text: str | None = None


CASES = [
    Expect("success", 0, "success", Usage(534, 56, 700, 0), result_text="Hello from the fake."),
    Expect("tool_call", 0, "success", Usage(300, 42, 1800, 0), result_text="The command printed adw-fixture."),
    Expect("rate_limit_429", 1, "rate_limited", api_status=429),
    Expect("rate_limit_429_retried", 0, "success", Usage(120, 24), retry_events=1, result_text="Second time lucky."),
    Expect("auth_401", 1, "auth_failed", api_status=401),
    Expect("server_error_500", 1, "api_error"),
    Expect("dropped_stream", 1, "api_error"),
]


def test_every_recorded_file_has_a_case() -> None:
    assert sorted(p.stem for p in RECORDED.glob("*.jsonl")) == sorted(c.name for c in CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_recorded_transcript(case: Expect) -> None:
    s = parse_file(RECORDED / f"{case.name}.jsonl", "codex-json")
    outcome = classify(s, case.exit_code)

    assert outcome.name == case.outcome, outcome
    assert s.terminal and s.skipped_lines == 0
    assert s.usage == case.usage
    assert s.api_status == case.api_status
    assert s.retry_events == case.retry_events
    assert s.result_text == case.result_text
    assert s.session_id is not None and len(s.session_id) == 36
    assert s.cost_usd is None and s.models == []
