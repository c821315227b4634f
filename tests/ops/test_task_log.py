"""``adw task log``: an attempt's stored transcript, readable, raw, and followed while it runs."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from collections.abc import Callable
from pathlib import Path

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
