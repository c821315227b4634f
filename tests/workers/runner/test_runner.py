"""The supervised process runner: endings, tree kills, I/O fidelity, orphan killing."""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from adw_modules.workers import runner
from adw_modules.workers.runner import ProcessIdentity, RunSpec
from tests.paths import REPO

CHILD = str(Path(__file__).with_name("child.py"))
ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}


def spec(mode: str, *args: str, cwd: Path | None = None, **kw) -> RunSpec:
    return RunSpec(argv=[sys.executable, "-S", CHILD, mode, *args], cwd=cwd or Path.cwd(), env=ENV, **kw)


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_until(cond: Callable[[], bool], timeout_s: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def read_pid(path: Path) -> int:
    return int(path.read_text())


def abort_on(text: str, reason: str = "seen") -> Callable[[str], str | None]:
    return lambda line: reason if line == text else None


# -- endings and exit codes


@pytest.mark.parametrize(("args", "code"), [(("exit", "0"), 0), (("exit", "3"), 3), (("selfkill",), -9)])
def test_exact_exit_codes(args: tuple[str, ...], code: int) -> None:
    result = runner.run(spec(*args))
    assert result.exit_code == code
    assert result.ended_by == "exit"
    assert result.launch_error is None and result.abort_reason is None
    assert result.identity is not None and result.identity.pgid == result.identity.pid
    assert result.ended_at >= result.started_at and result.duration_s > 0


def test_timeout_kills_child_and_grandchild(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    result = runner.run(spec("fork_hang", str(pid_file), timeout_s=2.5, kill_grace_s=0.5))
    assert result.ended_by == "timeout"
    assert result.stdout_lines == 1  # "ready": the grandchild existed before the timeout fired
    assert result.exit_code == -15
    assert result.identity is not None
    assert gone(result.identity.pid)
    assert gone(read_pid(pid_file))
    assert 2.5 <= result.duration_s < 6.0


def test_setsid_grandchild_outside_the_group_is_still_killed(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    result = runner.run(spec("setsid_hang", str(pid_file), kill_grace_s=0.3), on_line=abort_on("ready"))
    grandchild = read_pid(pid_file)
    assert result.ended_by == "aborted"
    # It left the process group and holds none of our pipes: only the descendant snapshot finds it.
    assert gone(grandchild)


def test_leftover_group_member_is_torn_down_after_a_normal_exit(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    result = runner.run(spec("leave_behind", str(pid_file), kill_grace_s=1.0))
    assert (result.ended_by, result.exit_code) == ("exit", 0)
    assert wait_until(lambda: gone(read_pid(pid_file)))


def test_silent_worker_is_killed_by_idle_timeout_but_a_chatty_one_is_not() -> None:
    silent = runner.run(spec("silent", idle_timeout_s=1.0, kill_grace_s=0.5))
    assert silent.ended_by == "idle_timeout"
    assert silent.exit_code == -15
    assert 1.0 <= silent.duration_s < 5.0
    chatty = runner.run(spec("chatty", "0.2", "12", idle_timeout_s=1.0, kill_grace_s=0.5))
    assert chatty.ended_by == "exit" and chatty.exit_code == 0
    assert chatty.stdout_lines == 12
    assert chatty.duration_s > 2.0  # outlived the idle timeout twice over by talking


def test_cancel_from_another_thread() -> None:
    ready = threading.Event()

    def on_line(line: str) -> None:
        if line == "ready":
            ready.set()

    worker = runner.start(spec("hang", kill_grace_s=0.5), on_line)
    assert worker.identity is not None and runner.is_alive(worker.identity)
    assert ready.wait(5)
    cancellers = [threading.Thread(target=worker.cancel, args=("operator asked",)) for _ in range(3)]
    for t in cancellers:
        t.start()
    result = worker.wait()
    for t in cancellers:
        t.join()
    assert result.ended_by == "cancelled"
    assert result.abort_reason == "operator asked"
    assert result.exit_code == -15
    assert not runner.is_alive(worker.identity)
    worker.cancel("too late")  # idempotent, and harmless once over
    assert worker.wait() is result


def test_concurrent_workers_keep_their_own_endings() -> None:
    workers = [runner.start(spec("chatty", "0.05", "6" if i % 2 else "1000", kill_grace_s=0.5)) for i in range(8)]
    for i, worker in enumerate(workers):
        if i % 2 == 0:
            worker.cancel(f"cancel {i}")
    results = [w.wait() for w in workers]
    for i, result in enumerate(results):
        if i % 2:
            assert (result.ended_by, result.exit_code, result.stdout_lines) == ("exit", 0, 6)
        else:
            assert (result.ended_by, result.abort_reason) == ("cancelled", f"cancel {i}")
    assert len({r.identity.pid for r in results if r.identity}) == 8


def test_wait_from_on_line_is_refused_not_a_deadlock() -> None:
    holder: list[runner.Worker] = []
    errors: list[str] = []
    started = threading.Event()

    def on_line(line: str) -> str:
        started.wait(5)  # start() has returned and holder is filled
        try:
            holder[0].wait()
        except RuntimeError as exc:
            errors.append(str(exc))
        return "stop"

    holder.append(runner.start(spec("hang", kill_grace_s=0.5), on_line))
    started.set()
    result = holder[0].wait()
    assert errors and "on_line" in errors[0]
    assert (result.ended_by, result.abort_reason) == ("aborted", "stop")


def test_on_line_abort_stops_the_run_and_the_callbacks() -> None:
    seen: list[str] = []

    def on_line(line: str) -> str | None:
        seen.append(line)
        return "enough" if line == "3" else None

    result = runner.run(spec("count", kill_grace_s=0.5), on_line)
    assert result.ended_by == "aborted" and result.abort_reason == "enough"
    assert seen == ["1", "2", "3"]
    assert result.exit_code == -15


def test_on_line_exception_aborts_with_its_message() -> None:
    def on_line(line: str) -> str | None:
        raise KeyError("bad parser")

    result = runner.run(spec("count", kill_grace_s=0.5), on_line)
    assert result.ended_by == "aborted"
    assert result.abort_reason is not None and "KeyError" in result.abort_reason


def test_sigterm_ignoring_worker_is_sigkilled_after_the_grace() -> None:
    result = runner.run(spec("ignore_term", kill_grace_s=0.4), on_line=abort_on("ready", "stop"))
    assert result.ended_by == "aborted"
    assert result.exit_code == -9
    assert result.duration_s >= 0.4


# -- I/O fidelity


def test_300kb_stdin_prompt_arrives_intact() -> None:
    prompt = os.urandom(150_000).hex().encode()  # 300 KB, far beyond a pipe's 64 KiB
    result_lines: list[str] = []
    result = runner.run(spec("sha256", stdin_data=prompt, timeout_s=10), result_lines.append)
    assert result.exit_code == 0
    assert result_lines == [f"{len(prompt)} {hashlib.sha256(prompt).hexdigest()}"]


def test_stdin_is_dev_null_without_stdin_data() -> None:
    lines: list[str] = []
    result = runner.run(spec("sha256", timeout_s=10), lines.append)
    assert result.exit_code == 0
    assert lines == [f"0 {hashlib.sha256(b'').hexdigest()}"]


def test_5mb_stdout_line_arrives_whole() -> None:
    lengths: list[int] = []
    result = runner.run(spec("bigline", str(5 * 1024 * 1024), timeout_s=20), lambda s: lengths.append(len(s)))
    assert result.exit_code == 0
    assert lengths == [5 * 1024 * 1024, 4]
    assert result.stdout_lines == 2


def test_crlf_blank_and_unterminated_lines() -> None:
    lines: list[str] = []
    raw = b"a\r\nb\r\n\r\n\xffz\nlast"
    result = runner.run(spec("raw", raw.hex()), lines.append)
    assert result.exit_code == 0
    assert lines == ["a", "b", "", "\ufffdz", "last"]
    assert result.stdout_lines == 5


def test_log_path_gets_the_raw_stdout(tmp_path: Path) -> None:
    raw = b"one\r\ntwo\n\xff\xfe binary\npartial"
    log = tmp_path / "attempt.log"
    result = runner.run(spec("raw", raw.hex(), log_path=log))
    assert result.exit_code == 0
    assert log.read_bytes() == raw


def test_stderr_tail_is_bounded_and_keeps_the_end() -> None:
    result = runner.run(spec("stderr", "100000", stderr_tail_bytes=100))
    assert len(result.stderr_tail) == 100
    assert result.stderr_tail.endswith("END")


def test_env_is_exactly_what_was_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADW_TEST_CANARY_SECRET", "must-not-leak")
    lines: list[str] = []
    given = {"ONLY_THIS": "1", "SPACES": "two words"}
    result = runner.run(RunSpec(argv=["/usr/bin/env"], cwd=Path.cwd(), env=given), lines.append)
    assert result.exit_code == 0
    assert sorted(lines) == ["ONLY_THIS=1", "SPACES=two words"]


def test_argv_is_never_interpreted_by_a_shell(tmp_path: Path) -> None:
    lines: list[str] = []
    evil = f"$(touch {tmp_path}/pwned); `touch {tmp_path}/pwned2` | rm -rf ~"
    result = runner.run(spec("argv", evil, cwd=tmp_path), lines.append)
    assert result.exit_code == 0
    assert lines == [evil]
    assert list(tmp_path.iterdir()) == []


# -- launch failures and bad input


def test_missing_binary_is_a_launch_failure() -> None:
    worker = runner.start(RunSpec(argv=["adw-no-such-agent-cli"], cwd=Path.cwd(), env=ENV))
    assert worker.identity is None
    worker.cancel()  # nothing to cancel: must not raise
    result = worker.wait()
    assert result.ended_by == "launch_failed"
    assert result.launch_error == "executable not found: adw-no-such-agent-cli"
    assert result.exit_code is None and result.identity is None


def test_non_executable_file_is_a_launch_failure(tmp_path: Path) -> None:
    script = tmp_path / "agent"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    result = runner.run(RunSpec(argv=[str(script)], cwd=tmp_path, env=ENV))
    assert result.ended_by == "launch_failed"
    assert result.launch_error is not None and "not permitted" in result.launch_error


def test_bad_cwd_and_bad_log_path_are_launch_failures(tmp_path: Path) -> None:
    result = runner.run(spec("exit", "0", cwd=tmp_path / "missing"))
    assert result.ended_by == "launch_failed"
    assert result.launch_error is not None and "working directory" in result.launch_error
    result = runner.run(spec("exit", "0", log_path=tmp_path / "no" / "dir" / "x.log"))
    assert result.ended_by == "launch_failed"
    assert result.launch_error is not None and "log file" in result.launch_error


def test_null_byte_in_argv_is_a_launch_failure() -> None:
    result = runner.run(spec("argv", "a\0b"))
    assert result.ended_by == "launch_failed"
    assert result.launch_error is not None and "null" in result.launch_error


@pytest.mark.parametrize(
    "kwargs",
    [
        {"argv": []},
        {"argv": "claude -p hi"},
        {"argv": ["claude", 3]},
        {"timeout_s": 0},
        {"idle_timeout_s": -1.0},
        {"kill_grace_s": -1.0},
        {"stdin_data": "text, not bytes"},
    ],
)
def test_runspec_rejects_bad_input(kwargs: dict) -> None:
    base = {"argv": ["true"], "cwd": Path.cwd(), "env": ENV}
    with pytest.raises(ValueError):
        RunSpec(**(base | kwargs))


# -- resources


# In a fresh interpreter too: a test worker's fd and thread counts also move with what earlier
# tests left running there (a server thread accepting, a connection pool), not only with us.
LEAK_PROBE = """
import gc, json, os, sys, threading
from pathlib import Path
from adw_modules.workers import runner
from adw_modules.workers.runner import RunSpec
from tests.workers.runner.test_runner import ENV, spec
tmp = Path(sys.argv[1])
def fds():
    return len(os.listdir("/proc/self/fd"))
runner.run(spec("exit", "0"))  # warm up lazily created module state
gc.collect()
before_fds, before_threads = fds(), threading.active_count()
codes = []
for i in range(50):
    if i % 2:
        codes.append(runner.run(spec("exit", "0", stdin_data=b"x", log_path=tmp / f"{i}.log")).exit_code)
    else:
        codes.append(runner.run(spec("exit", "0")).exit_code)
runner.run(RunSpec(argv=["adw-no-such-agent-cli"], cwd=Path.cwd(), env=ENV))
gc.collect()
print(json.dumps({"codes": codes, "fds": [before_fds, fds()], "threads": [before_threads, threading.active_count()]}))
"""


def test_no_fd_or_thread_leak_over_50_runs(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", LEAK_PROBE, str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    seen = json.loads(proc.stdout)
    assert seen["codes"] == [0] * 50
    before_fds, after_fds = seen["fds"]
    assert after_fds <= before_fds  # a leak of 51 runs would show as dozens more
    before_threads, after_threads = seen["threads"]
    assert after_threads <= before_threads


def test_fallback_without_pidfd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "_open_pidfd", lambda pid: None)
    assert runner.run(spec("exit", "3")).exit_code == 3
    result = runner.run(spec("silent", timeout_s=0.3, kill_grace_s=0.3))
    assert (result.ended_by, result.exit_code) == ("timeout", -15)


# -- identities and orphan killing


def test_identity_round_trips_through_json() -> None:
    ident = ProcessIdentity(pid=123, pgid=123, create_time=1795318625.04, host="vm")
    assert ProcessIdentity.from_dict(json.loads(json.dumps(ident.to_dict()))) == ident
    for bad in ({"pid": 1}, ident.to_dict() | {"pid": "123"}, ident.to_dict() | {"create_time": None}):
        with pytest.raises(ValueError):
            ProcessIdentity.from_dict(bad)


@pytest.fixture
def sleeper():
    """A session-leading process of our own, killed at teardown whatever the test did."""
    proc = subprocess.Popen([sys.executable, "-S", CHILD, "silent"], start_new_session=True)
    yield proc
    proc.kill()
    proc.wait()


def test_kill_tree_refuses_a_wrong_create_time_or_host(sleeper: subprocess.Popen) -> None:
    real = ProcessIdentity.of(sleeper.pid)
    assert runner.is_alive(real)
    reused = dataclasses.replace(real, create_time=real.create_time - 1000)
    assert runner.kill_tree(reused, grace_s=0.2) is False
    assert not runner.is_alive(reused)
    elsewhere = dataclasses.replace(real, host=real.host + "-other")
    assert runner.kill_tree(elsewhere, grace_s=0.2) is False
    assert sleeper.poll() is None and runner.is_alive(real)


def test_kill_tree_kills_a_real_orphan_and_its_child(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    launcher = subprocess.run(
        [sys.executable, "-S", CHILD, "detach", str(pid_file)], capture_output=True, text=True, check=True
    )
    orphan = int(launcher.stdout)
    assert wait_until(pid_file.exists)
    grandchild = read_pid(pid_file)
    ident = ProcessIdentity.of(orphan)
    assert ident.pgid == orphan and runner.is_alive(ident)
    assert psutil.Process(orphan).ppid() != os.getpid()  # a true orphan: not ours to reap
    assert runner.kill_tree(ident, grace_s=1.0) is True
    assert wait_until(lambda: gone(orphan) and gone(grandchild))
    assert not runner.is_alive(ident)
    assert runner.kill_tree(ident, grace_s=0.2) is False  # nothing left to kill


# -- a line without end


def peak_rss_growth_while(work: Callable[[], object]) -> tuple[int, object]:
    """(peak RSS growth of this process while ``work`` runs, in bytes; what ``work`` returned)."""
    me = psutil.Process()
    gc.collect()
    base = me.memory_info().rss
    peak = base
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.005):
            peak = max(peak, me.memory_info().rss)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        value = work()
    finally:
        done.set()
        sampler.join()
    return max(peak, me.memory_info().rss) - base, value


# Run in a fresh interpreter, so the RSS measured is this run's alone: a test worker's
# process also holds whatever earlier tests' threads allocate meanwhile.
FLOOD_PROBE = """
import json, sys
from adw_modules.workers import runner
from tests.workers.runner.test_runner import peak_rss_growth_while, spec
newline = sys.argv[1] == "1"
lines = []
flood = spec("flood", "200", *(["newline"] if newline else []), timeout_s=60)
growth, result = peak_rss_growth_while(lambda: runner.run(flood, lambda s: lines.append(len(s))))
print(json.dumps({"growth": growth, "ended_by": result.ended_by, "exit_code": result.exit_code,
                  "skipped_lines": result.skipped_lines, "lines": lines}))
"""


@pytest.mark.parametrize("newline", [False, True])
def test_a_200mb_line_is_dropped_and_counted_with_memory_flat(newline: bool) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", FLOOD_PROBE, "1" if newline else "0"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    seen = json.loads(proc.stdout)
    assert seen["ended_by"] == "exit" and seen["exit_code"] == 0  # the attempt still ends, normally
    assert seen["skipped_lines"] == 1
    assert seen["lines"] == ([4] if newline else [])  # the line after it arrives whole
    # Flat: bounded by the 64 MB line cap the runner buffers up to, not by the 200 MB line.
    assert seen["growth"] < 100 * 1024 * 1024, f"RSS grew {seen['growth'] / 2**20:.0f} MB"


def test_the_line_cap_is_exact() -> None:
    lines: list[str] = []
    raw = b"12345\n123456\n1234567\n" + b"9" * 20 + b"\nend" + b"\n" + b"x" * 9
    result = runner.run(spec("raw", raw.hex(), max_line_bytes=6), lines.append)
    assert lines == ["12345", "123456", "end"]
    assert result.skipped_lines == 3  # 1234567, the twenty 9s, the unterminated 9 x's
