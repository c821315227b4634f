"""tools/dry-run-agent.py: Claude Code stream-json look-alike with failure injection.

Each mode is run as a real subprocess under the runner; its lines are compared with the line
shapes of real Claude Code transcripts (tests/fixtures/recorded/claude-cli).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from adw_modules.outcomes import ErrorKind
from adw_modules.workers import runner
from adw_modules.workers.runner import RunResult, RunSpec
from adw_modules.workers.streams import parse_lines
from tests.paths import REPO

AGENT = str(REPO / "tools" / "dry-run-agent.py")
RECORDED = REPO / "tests" / "fixtures" / "recorded" / "claude-cli"
BASE_ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
STREAM = ["--output-format", "stream-json", "--verbose"]


def agent(
    *args: str,
    env: dict[str, str] | None = None,
    stdin: bytes | None = None,
    cwd: Path | None = None,
    **kw: Any,
) -> tuple[RunResult, list[str]]:
    lines: list[str] = []
    on_line = kw.pop("on_line", None)

    def collect(line: str) -> str | None:
        lines.append(line)
        return on_line(line) if on_line else None

    spec = RunSpec(
        argv=[sys.executable, AGENT, *args],
        cwd=cwd or REPO,
        env=BASE_ENV | (env or {}),
        stdin_data=stdin,
        **({"timeout_s": 20.0, "kill_grace_s": 1.0} | kw),
    )
    return runner.run(spec, collect), lines


def events(lines: list[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines]


def kinds(evs: list[dict[str, Any]]) -> list[str]:
    return [e["type"] + ("/" + e["subtype"] if "subtype" in e and e["type"] == "system" else "") for e in evs]


def _real_keys() -> dict[tuple[str, str | None], set[str]]:
    keys: dict[tuple[str, str | None], set[str]] = {}
    for path in RECORDED.glob("*.jsonl"):
        for line in path.read_text().splitlines():
            if line.startswith("{"):
                ev = json.loads(line)
                keys.setdefault((ev["type"], ev.get("subtype")), set()).update(ev)
    return keys


def assert_like_real(evs: list[dict[str, Any]]) -> None:
    """Every line carries only keys real Claude Code lines of that type carry (plus `errors`,
    which real error_* results have), and every line names the same session."""
    real = _real_keys()
    session = {e["session_id"] for e in evs}
    assert len(session) == 1
    for ev in evs:
        known = real.get((ev["type"], ev.get("subtype"))) or real.get((ev["type"], "success"))
        if known is None:
            continue  # e.g. rate_limit_event: not in the recorded set, shape from the reference doc
        assert set(ev) - known - {"errors"} == set(), ev["type"]


def result_of(evs: list[dict[str, Any]]) -> dict[str, Any]:
    results = [e for e in evs if e["type"] == "result"]
    assert len(results) == 1 and evs[-1] is results[0]
    return results[0]


# -- success and formats


def test_success_stream_json_shape_and_deterministic_tokens() -> None:
    prompt = "Fix the failing test in adw_modules/routing.py\n" * 7
    result, lines = agent("-p", prompt, *STREAM, "--model", "m-1")
    assert (result.exit_code, result.ended_by) == (0, "exit")
    evs = events(lines)
    assert kinds(evs) == ["system/init", "rate_limit_event", "assistant", "result"]
    assert_like_real(evs)
    init, _, assistant, res = evs
    assert init["model"] == "m-1" and init["cwd"] == str(REPO) and init["tools"]
    assert init["apiKeySource"] == "none"
    msg = assistant["message"]
    assert msg["model"] == "m-1" and msg["id"].startswith("msg_") and msg["role"] == "assistant"
    answer = msg["content"][0]["text"]
    assert (res["subtype"], res["is_error"], res["api_error_status"]) == ("success", False, None)
    assert res["result"] == answer and res["num_turns"] == 1 and res["terminal_reason"] == "completed"
    usage = res["usage"]
    assert usage["input_tokens"] == math.ceil(len(prompt) / 4)
    assert usage["output_tokens"] == math.ceil(len(answer) / 4)
    assert usage["cache_read_input_tokens"] == usage["cache_creation_input_tokens"] == 0
    assert msg["usage"]["input_tokens"] == usage["input_tokens"]
    assert res["modelUsage"]["m-1"]["inputTokens"] == usage["input_tokens"]
    # No cost unless asked: the coordinator prices tokens itself.
    assert "total_cost_usd" not in res and "costUSD" not in res["modelUsage"]["m-1"]
    assert isinstance(res["duration_ms"], int)


def test_same_prompt_same_tokens_and_answer() -> None:
    first = result_of(events(agent("-p", "same", *STREAM)[1]))
    second = result_of(events(agent("-p", "same", *STREAM)[1]))
    assert first["usage"] == second["usage"] and first["result"] == second["result"]
    assert first["session_id"] != second["session_id"]


def test_report_cost_puts_cost_where_claude_does() -> None:
    res = result_of(events(agent("-p", "hi", *STREAM, "--report-cost", "0.0123")[1]))
    assert res["total_cost_usd"] == 0.0123
    assert res["modelUsage"]["dry-run-model"]["costUSD"] == 0.0123


def test_prompt_from_stdin_file_and_positional(tmp_path: Path) -> None:
    prompt_file = tmp_path / "prompt.txt"
    prompt_file.write_text("from a file")
    via_stdin = result_of(events(agent(*STREAM, stdin=b"from a file")[1]))
    via_file = result_of(events(agent("--prompt-file", str(prompt_file), *STREAM)[1]))
    via_positional = result_of(events(agent("-p", *STREAM, "from a file")[1]))
    assert via_stdin["result"] == via_file["result"] == via_positional["result"]
    assert "from a file" in via_stdin["result"]


def test_json_output_is_one_object_or_an_array_with_verbose() -> None:
    result, lines = agent("-p", "hi", "--output-format", "json")
    assert result.exit_code == 0 and len(lines) == 1
    single = json.loads(lines[0])
    assert single["type"] == "result" and single["is_error"] is False
    result, lines = agent("-p", "hi", "--output-format", "json", "--verbose")
    array = json.loads(lines[0])
    assert isinstance(array, list) and array[0]["subtype"] == "init" and array[-1]["type"] == "result"


def test_output_file_gets_the_same_stream(tmp_path: Path) -> None:
    out = tmp_path / "copy.jsonl"
    _, lines = agent("-p", "hi", *STREAM, "--output-file", str(out))
    assert out.read_text().splitlines() == lines


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["-p", "hi", "--output-format", "stream-json"], {}, "requires --verbose"),
        (["-p", "hi", "--no-such-flag"], {}, "unrecognized arguments"),
        (["-p", "hi", "--fail", "meteor"], {}, "unknown failure kind"),
        (["-p", "hi"], {"ADW_DRY_RUN_FAIL": "rate_limit@2"}, "ADW_DRY_RUN_STATE"),
        ([], {}, "Input must be provided"),
    ],
)
def test_usage_errors_exit_1_with_a_message_and_no_stream(args, env, message) -> None:
    result, lines = agent(*args, env=env)
    assert result.exit_code == 1 and lines == []
    assert message in result.stderr_tail


# -- failure injection


def test_rate_limit_retries_then_fails_with_429() -> None:
    result, lines = agent("-p", "hi", *STREAM, "--fail", "rate_limit", "--retry-after", "7", "--retry-delay-ms", "5")
    assert (result.exit_code, result.ended_by) == (1, "exit")
    evs = events(lines)
    assert kinds(evs) == ["system/init"] + ["system/api_retry"] * 3 + ["assistant", "result"]
    assert_like_real(evs)
    retries = [e for e in evs if e.get("subtype") == "api_retry"]
    assert [r["attempt"] for r in retries] == [1, 2, 3]
    assert all(r["error"] == "rate_limit" and r["error_status"] == 429 for r in retries)
    assert all(r["retry_delay_ms"] == 7000 for r in retries)  # Retry-After, as the CLI reports it
    synthetic = evs[-2]
    assert synthetic["error"] == "rate_limit" and synthetic["message"]["model"] == "<synthetic>"
    res = evs[-1]
    assert (res["subtype"], res["is_error"], res["api_error_status"]) == ("success", True, 429)
    assert "429" in res["result"] and res["terminal_reason"] == "api_error"


def test_rate_limit_can_be_aborted_at_the_first_retry_line() -> None:
    def on_line(line: str) -> str | None:
        return "rate limited" if '"subtype":"api_retry"' in line else None

    result, lines = agent("-p", "hi", *STREAM, "--fail", "rate_limit", "--retry-delay-ms", "3000", on_line=on_line)
    assert result.ended_by == "aborted" and result.abort_reason == "rate limited"
    assert result.exit_code == 143  # like claude: SIGTERM ends print mode with 143
    assert result.duration_s < 6.0  # three retries would take 9 s
    assert kinds(events(lines)) == ["system/init", "system/api_retry"]


def test_env_var_injects_and_retry_after_env_is_honoured() -> None:
    env = {"ADW_DRY_RUN_FAIL": "overloaded", "ADW_DRY_RUN_RETRY_AFTER": "2"}
    result, lines = agent("-p", "hi", *STREAM, "--retry-delay-ms", "1", env=env)
    evs = events(lines)
    assert result.exit_code == 1
    retries = [e for e in evs if e.get("subtype") == "api_retry"]
    assert retries and all(r["error"] == "overloaded" and r["error_status"] == 529 for r in retries)
    assert retries[0]["retry_delay_ms"] == 2000
    assert result_of(evs)["api_error_status"] == 529 and "Overloaded" in result_of(evs)["result"]


def test_auth_failure() -> None:
    result, lines = agent("-p", "hi", *STREAM, "--fail", "auth")
    evs = events(lines)
    assert result.exit_code == 1
    assert_like_real(evs)
    assert evs[-2]["error"] == "authentication_failed"
    res = result_of(evs)
    assert res["is_error"] is True and res["api_error_status"] == 401
    assert res["result"] == "Invalid API key · Please run /login"


def test_quota_rejection_carries_resets_at() -> None:
    before = time.time()
    result, lines = agent("-p", "hi", *STREAM, "--fail", "quota", "--retry-after", "5400")
    evs = events(lines)
    assert result.exit_code == 1
    assert_like_real(evs)
    [event] = [e for e in evs if e["type"] == "rate_limit_event"]
    info = event["rate_limit_info"]
    assert info["status"] == "rejected" and info["rateLimitType"]
    assert before + 5400 - 1 <= info["resetsAt"] <= time.time() + 5400
    res = result_of(evs)
    assert res["is_error"] is True and res["api_error_status"] == 429
    assert res["result"].startswith("You've hit your limit · resets ")


def test_max_turns_and_budget_results_have_no_result_key() -> None:
    result, lines = agent("-p", "hi", *STREAM, "--fail", "max_turns", "--max-turns", "3")
    res = result_of(events(lines))
    assert result.exit_code == 1
    assert (res["subtype"], res["is_error"], res["terminal_reason"]) == ("error_max_turns", True, "max_turns")
    assert "result" not in res and res["errors"] == ["Reached maximum number of turns (3)"]
    assert res["num_turns"] == 4
    result, lines = agent("-p", "hi", *STREAM, "--fail", "budget", "--max-budget-usd", "0.5")
    res = result_of(events(lines))
    assert result.exit_code == 1
    assert (res["subtype"], res["terminal_reason"]) == ("error_max_budget_usd", "budget_exhausted")
    assert "result" not in res and res["is_error"] is True


def test_hang_prints_init_then_goes_silent() -> None:
    result, lines = agent("-p", "hi", *STREAM, "--fail", "hang", idle_timeout_s=3.0)
    assert result.ended_by == "idle_timeout" and result.exit_code == 143
    assert kinds(events(lines)) == ["system/init"]


def test_stall_reports_work_then_goes_silent() -> None:
    result, lines = agent("-p", "hi", *STREAM, "--fail", "stall", idle_timeout_s=3.0)
    assert result.ended_by == "idle_timeout" and result.exit_code == 143
    evs = events(lines)
    assert kinds(evs) == ["system/init", "assistant"]
    assert evs[1]["message"]["usage"]["output_tokens"] == 4


def test_crash_exits_2_with_a_stack_trace_and_no_result() -> None:
    result, lines = agent("-p", "hi", *STREAM, "--fail", "crash")
    assert result.exit_code == 2
    assert kinds(events(lines)) == ["system/init"]
    assert "TypeError" in result.stderr_tail and "    at " in result.stderr_tail


def test_slow_emits_spaced_lines_then_succeeds() -> None:
    stamps: list[float] = []
    result, lines = agent(
        "-p",
        "hi",
        *STREAM,
        "--fail",
        "slow",
        "--slow-interval",
        "0.15",
        "--slow-lines",
        "4",
        idle_timeout_s=3.0,
        on_line=lambda _line: stamps.append(time.monotonic()),
    )
    evs = events(lines)
    assert (result.exit_code, result.ended_by) == (0, "exit")
    assert kinds(evs).count("stream_event") == 4
    assert result_of(evs)["is_error"] is False
    assert stamps[4] - stamps[0] >= 4 * 0.15 * 0.9


def test_fork_leaves_a_grandchild_that_the_runner_kills(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"

    existed_at_first_line: list[bool] = []

    def on_line(line: str) -> str | None:
        existed_at_first_line.append(pid_file.exists())
        return "stop"

    # The agent prints init only after the grandchild wrote its pid file.
    result, _ = agent("-p", "hi", *STREAM, "--fail", "fork", "--pid-file", str(pid_file), on_line=on_line)
    assert result.ended_by == "aborted" and existed_at_first_line == [True]
    grandchild = int(pid_file.read_text())
    try:
        alive = psutil.Process(grandchild).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        alive = False
    assert not alive


def test_fail_only_the_first_n_calls(tmp_path: Path) -> None:
    env = {"ADW_DRY_RUN_FAIL": "rate_limit@1", "ADW_DRY_RUN_STATE": str(tmp_path / "count")}
    first, lines1 = agent("-p", "hi", *STREAM, "--retry-delay-ms", "1", env=env)
    second, lines2 = agent("-p", "hi", *STREAM, env=env)
    assert first.exit_code == 1 and result_of(events(lines1))["api_error_status"] == 429
    assert second.exit_code == 0 and result_of(events(lines2))["is_error"] is False
    assert (tmp_path / "count").read_text().strip() == "2"


def test_the_agent_never_reads_api_keys() -> None:
    source = Path(AGENT).read_text()
    assert "API_KEY" not in source and "AUTH_TOKEN" not in source


@pytest.mark.parametrize(
    ("fail", "kind", "status"),
    [
        (None, None, None),
        ("rate_limit", ErrorKind.RATE_LIMITED, 429),
        ("overloaded", ErrorKind.OVERLOADED, 529),
        ("auth", ErrorKind.AUTH_FAILED, 401),
        ("quota", ErrorKind.QUOTA_EXHAUSTED, 429),
        ("max_turns", ErrorKind.MAX_TURNS, None),
        ("budget", ErrorKind.BUDGET_EXCEEDED, None),
    ],
)
def test_the_projects_claude_parser_reads_every_mode_as_the_real_thing(fail, kind, status) -> None:
    args = ["-p", "hello world", *STREAM, "--retry-delay-ms", "1"] + (["--fail", fail] if fail else [])
    _, lines = agent(*args)
    summary = parse_lines("claude-stream-json", lines)
    assert summary.terminal and summary.skipped_lines == 0
    assert (summary.is_error, summary.error_kind, summary.api_status) == (kind is not None, kind, status)
    if fail is None:
        assert summary.usage.input_tokens == math.ceil(len("hello world") / 4)
        assert summary.cost_usd is None  # no reported cost: the coordinator estimates it
