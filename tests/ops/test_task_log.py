"""``adw task log``: an attempt's stored transcript, readable, raw, and followed while it runs."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from adw_modules.config.schema import load_config
from adw_modules.queue.store import Store
from adw_modules.sources.local import enqueue_local
from adw_modules.workers import transcripts
from adws.cli import cli
from adws.service import Service
from tests.coordinator.harness import kill_pid, wait_for
from tests.ops.conftest import ADW, provider_toml

RECORDED = Path(__file__).resolve().parents[1] / "fixtures" / "recorded" / "claude-cli"


def rendered(name: str) -> list[str]:
    lines = (RECORDED / name).read_text().splitlines(keepends=True)
    return [shown for line in lines for shown in transcripts.render(line, "claude-stream-json")]


def test_render_a_real_claude_transcript() -> None:
    shown = rendered("success.jsonl")
    assert shown[0].startswith("── session ") and "model claude-sonnet-4-5" in shown[0]
    assert any(s.startswith("── success: 1 turn(s)") for s in shown)
    assert not any(s.lstrip().startswith("{") for s in shown)  # nothing left as raw JSON
    retries = rendered("rate_limit_429.jsonl")
    assert any(s.startswith("⚠ API retry 1/") and "HTTP 429" in s for s in retries)


def test_other_formats_and_non_json_lines_are_shown_as_they_are() -> None:
    assert transcripts.render('{"type":"turn.completed"}\n', "codex-json") == ['{"type":"turn.completed"}']
    assert transcripts.render("debug: warming up\r\n", "claude-stream-json") == ["debug: warming up"]
    assert transcripts.render("\n", "claude-stream-json") == []


def test_follow_reads_until_the_attempt_ends_and_everything_is_read(tmp_path: Path) -> None:
    path = tmp_path / "stdout.jsonl"  # not there yet: the attempt is starting
    to_write = ["one\n", "two\n", "three (no newline yet)", "\n", "last\n"]
    written: list[str] = []

    def sleep(_s: float) -> None:  # each poll, the "agent" writes one more piece
        piece = to_write.pop(0)
        with path.open("a") as fh:
            fh.write(piece)
        written.append(piece)

    got = list(transcripts.follow(path, still_running=lambda: bool(to_write), sleep=sleep))
    assert got == ["one\n", "two\n", "three (no newline yet)\n", "last\n"]
    assert "".join(written) == "".join(got)


def test_task_log_shows_the_transcript_of_a_finished_attempt(tmp_path: Path, write_config: Callable[..., Path]) -> None:
    url = f"sqlite:///{tmp_path / 'adw.db'}"
    config = write_config(provider_toml("a"), '[routing]\ndefault_provider = "a"\ndefault_model = "m1"\n', url)
    service = Service(load_config(config))
    task = enqueue_local(service.store, "Explain the cache", "why is it slow?")
    service.run("until_idle", idle_wait_s=0)
    runner = CliRunner()

    shown = runner.invoke(cli, ["task", "log", str(task.id), "--config", str(config)])
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    assert lines[0].startswith("── session ") and any(line.startswith("── success") for line in lines)
    raw = runner.invoke(cli, ["task", "log", str(task.id), "--raw", "--config", str(config)])
    assert [json.loads(line)["type"] for line in raw.stdout.splitlines()][-1] == "result"
    assert "attempt 1 ended: success" in raw.stderr  # the ending, kept off stdout
    missing = runner.invoke(cli, ["task", "log", str(task.id), "--attempt", "9", "--config", str(config)])
    assert missing.exit_code == 2 and "has no attempt 9" in missing.output


def test_task_log_follows_a_running_attempt(tmp_path: Path, write_config: Callable[..., Path]) -> None:
    url = f"sqlite:///{tmp_path / 'adw.db'}"
    config = write_config(
        provider_toml("a", env='ADW_DRY_RUN_FAIL = "stall"'),
        '[routing]\ndefault_provider = "a"\ndefault_model = "m1"\n',
        url,
    )
    with Store.open(url) as store:
        task = enqueue_local(store, "Stalls after some work")
    run = subprocess.Popen(
        [str(ADW), "run", "--config", str(config)], stderr=subprocess.DEVNULL, start_new_session=True
    )
    log = None
    att = None
    try:
        with Store.open(url) as store:
            att = wait_for(lambda: next(iter(store.running_attempts()), None), 20, "the attempt to start")
        log = subprocess.Popen(
            [str(ADW), "task", "log", str(task.id), "--follow", "--config", str(config)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert log.stdout is not None
        assert log.stdout.readline().startswith("── session ")
        assert log.stdout.readline().strip() == "Working on it."  # what the agent said so far
        subprocess.run([str(ADW), "cancel", str(task.id), "--config", str(config)], check=True, capture_output=True)
        assert log.wait(30) == 0  # the attempt ended: following stops by itself
    finally:
        run.terminate()
        run.wait(30)
        if log is not None:
            if log.poll() is None:
                log.kill()
                log.wait(10)
            assert log.stdout is not None
            log.stdout.close()
        if att is not None and att.pid is not None:
            kill_pid(att.pid, att.create_time)


def test_streamed_text_is_shown_as_it_arrives_and_not_repeated() -> None:
    renderer = transcripts.Renderer("claude-stream-json")
    delta = '{{"type":"stream_event","event":{{"type":"content_block_delta","index":0,"delta":{{"type":"text_delta","text":"{}"}}}}}}'
    shown = [renderer.lines(delta.format(part)) for part in ("[1/3] ", "[2/3] ", "[3/3] ")]
    assert shown == [["… [1/3]"], ["… [2/3]"], ["… [3/3]"]]  # one line per line the agent wrote
    whole = '{"type":"assistant","message":{"id":"m1","content":[{"type":"text","text":"[1/3] [2/3] [3/3] "},{"type":"tool_use","name":"Bash","input":{"command":"ls"}}]}}'
    assert renderer.lines(whole) == ['→ Bash {"command": "ls"}']  # the text was shown already


def test_a_rate_limit_window_reads_as_a_state_with_a_local_relative_time() -> None:
    now = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
    resets = int((now + dt.timedelta(hours=4)).timestamp())
    allowed = f'{{"type":"rate_limit_event","rate_limit_info":{{"status":"allowed","resetsAt":{resets},"rateLimitType":"five_hour"}}}}'
    (line,) = transcripts.render(allowed, "claude-stream-json", now)
    assert line.startswith("· five-hour limit: allowed, resets in 4.0 h (")
    assert "⚠" not in line and str(resets) not in line
    rejected = allowed.replace('"allowed"', '"rejected"')
    (line,) = transcripts.render(rejected, "claude-stream-json", now)
    assert line.startswith("✗ five-hour limit: rejected, resets in 4.0 h")


PLANTED = "sk-ant-api03-planted/SECRET-9f8e7d6c5b4a3210"
# What the agent prints: the key JSON-escaped, "-" as \u002d (both hex cases) and "/" as \/.
ESCAPED = PLANTED.replace("-", "\\u002d", 2).replace("-", "\\u002D").replace("/", "\\/")
ESCAPING_AGENT = f"""
import sys
escaped = {json.dumps(ESCAPED)}
print('{{"type":"system","subtype":"init","session_id":"s1","model":"m1"}}', flush=True)
print('{{"type":"assistant","message":{{"id":"msg1","model":"m1","role":"assistant",'
      '"content":[{{"type":"text","text":"my key is ' + escaped + '"}}],'
      '"usage":{{"input_tokens":3,"output_tokens":4}}}}}}', flush=True)
print('{{"type":"result","subtype":"success","is_error":false,"result":"done, key=' + escaped + '",'
      '"session_id":"s1","num_turns":1,"duration_ms":5,"usage":{{"input_tokens":3,"output_tokens":4}}}}', flush=True)
"""


def test_a_json_escaped_key_is_masked_in_the_transcript_and_in_task_log(
    tmp_path: Path, write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert json.loads(f'"{ESCAPED}"') == PLANTED  # the agent really prints the key, only spelled otherwise
    agent = tmp_path / "escaping_agent.py"
    agent.write_text(ESCAPING_AGENT)
    provider = (
        f'[providers.leaky]\ncommand_template = ["{sys.executable}", "{agent}"]\n'
        'requires_api_key = true\napi_key_env = "PLANTED_KEY"\n'
        '[providers.leaky.models.m1]\ntier = "fast"\n'
    )
    url = f"sqlite:///{tmp_path / 'adw.db'}"
    config = write_config(provider, '[routing]\ndefault_provider = "leaky"\ndefault_model = "m1"\n', url)
    environ = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PLANTED_KEY": PLANTED}
    service = Service(load_config(config), environ=environ)
    task = enqueue_local(service.store, "Leak it escaped", "please")
    service.run("until_idle", idle_wait_s=0)
    attempt = service.store.attempts_for(task.id)[-1]
    assert attempt.outcome == "success"
    stored = transcripts.transcript_path(tmp_path / "state", attempt)
    assert "[REDACTED]" in stored.read_text()
    assert PLANTED not in stored.read_text() and ESCAPED not in stored.read_text()

    # A transcript written before the key was known (or before it rotated) holds it as the agent printed it.
    stored.write_text(stored.read_text().replace("[REDACTED]", ESCAPED))
    monkeypatch.setenv("PLANTED_KEY", PLANTED)  # the CLI knows the key the way the service does
    runner = CliRunner()
    for extra in ([], ["--raw"]):
        shown = runner.invoke(cli, ["task", "log", str(task.id), *extra, "--config", str(config)])
        assert shown.exit_code == 0, shown.output
        assert "[REDACTED]" in shown.output, extra
        assert PLANTED not in shown.output and ESCAPED not in shown.output, extra
        assert "\\u002d" not in shown.output.lower(), extra
