"""Run one agent CLI as a supervised process tree and report how it ended.

``start(spec, on_line)`` launches ``spec.argv`` (never through a shell) in a new session, so its
pgid equals its pid, and hands back a ``Worker``; one supervisor thread per worker then

* writes ``stdin_data`` and closes stdin, reads stdout line by line into ``log_path`` and
  ``on_line``, and keeps a bounded tail of stderr, all through one selector.  A line longer than
  ``max_line_bytes`` (``parse_file``'s cap, 64 MB) is dropped as it streams past and counted in
  ``skipped_lines``: a CLI printing endless bytes without a newline keeps our memory flat;
* learns of the leader's exit from a pidfd without reaping it, so the pid and pgid stay
  reserved (no reuse) while the tree is being killed;
* enforces ``timeout_s`` and ``idle_timeout_s`` as selector timeouts (no sleep loops).

Every run ends the same way: SIGTERM to the group (and to descendants that left it), then,
once the leader has exited and its pipes are closed, or ``kill_grace_s`` has passed, SIGKILL
to the group and every descendant found before signalling.  So processes a CLI leaves behind
in its session are torn down even after a normal exit.  Finally the leader is reaped with
``Popen.wait`` (its real exit code is kept) and every fd is closed.

Limits: a descendant that called setsid() and whose parent already died is invisible (only a
cgroup would find it); a leader stuck in uninterruptible sleep delays ``wait()`` until it dies.
Supervisor threads are daemons: if the coordinator itself dies, its children live on, which is
why ``Worker.identity`` should be persisted for ``kill_tree``.

``ended_by`` precedence: an ``on_line`` abort wins whenever it happens (it depends only on the
stream's content); otherwise cancel, the leader's own exit, timeout, idle timeout, in that order,
as first observed.
"""

from __future__ import annotations

import collections
import errno
import logging
import os
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import psutil

from adw_modules.workers import process_tree
from adw_modules.workers.process_tree import ProcessIdentity, is_alive, kill_tree
from adw_modules.workers.streams import MAX_LINE_BYTES

__all__ = [
    "EndedBy",
    "LineCallback",
    "ProcessIdentity",
    "RunResult",
    "RunSpec",
    "Worker",
    "is_alive",
    "kill_tree",
    "run",
    "start",
]

log = logging.getLogger(__name__)

EndedBy = Literal["exit", "timeout", "idle_timeout", "cancelled", "aborted", "launch_failed"]
LineCallback = Callable[[str], "str | None"]

_READ_CHUNK = 1 << 16  # the default pipe capacity: one read empties a full pipe
# After SIGKILL, how long to wait for pipe EOF once the leader is gone.  Only a process we could
# not find (a setsid()'d descendant whose parent already died) can keep the pipes open that long.
_DRAIN_AFTER_KILL_S = 1.0


@dataclass
class RunSpec:
    """What to run and how to supervise it.  ``env`` is the child's complete environment."""

    argv: Sequence[str]
    cwd: Path
    env: Mapping[str, str]
    stdin_data: bytes | None = None  # None: stdin is /dev/null
    # idle_timeout_s restarts on any stdout bytes, not only on whole lines: a multi-MB line on
    # a slow pipe is output, not silence.
    timeout_s: float | None = None
    idle_timeout_s: float | None = None
    kill_grace_s: float = 5.0
    log_path: Path | None = None
    stderr_tail_bytes: int = 65536
    max_line_bytes: int = MAX_LINE_BYTES  # a longer stdout line is dropped, not buffered

    def __post_init__(self) -> None:
        if isinstance(self.argv, (str, bytes)):
            raise ValueError("argv must be a sequence of strings, not one string (no shell is used)")
        if not self.argv:
            raise ValueError("argv is empty")
        bad = [a for a in self.argv if not isinstance(a, str)]
        if bad:
            raise ValueError(f"argv items must be strings, got {bad[0]!r}")
        for name in ("timeout_s", "idle_timeout_s"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be positive or None, got {value!r}")
        if not self.kill_grace_s >= 0:
            raise ValueError(f"kill_grace_s must be >= 0, got {self.kill_grace_s!r}")
        if self.max_line_bytes < 1:
            raise ValueError(f"max_line_bytes must be >= 1, got {self.max_line_bytes!r}")
        if self.stderr_tail_bytes < 0:
            raise ValueError(f"stderr_tail_bytes must be >= 0, got {self.stderr_tail_bytes!r}")
        if self.stdin_data is not None and not isinstance(self.stdin_data, (bytes, bytearray, memoryview)):
            raise ValueError("stdin_data must be bytes (encode the prompt first)")


@dataclass
class RunResult:
    """How one run ended.  ``exit_code`` is the real code; negative N means killed by signal N."""

    exit_code: int | None
    ended_by: EndedBy
    abort_reason: str | None
    identity: ProcessIdentity | None
    started_at: float
    ended_at: float
    duration_s: float
    stdout_lines: int
    stderr_tail: str
    launch_error: str | None
    skipped_lines: int = 0  # stdout lines dropped for being longer than max_line_bytes


class _Tail:
    """The last ``cap`` bytes written to it."""

    def __init__(self, cap: int) -> None:
        self._cap = cap
        self._chunks: collections.deque[bytes] = collections.deque()
        self._size = 0

    def add(self, data: bytes) -> None:
        if self._cap == 0:
            return
        self._chunks.append(data)
        self._size += len(data)
        while self._size > self._cap:
            excess = self._size - self._cap
            first = self._chunks[0]
            if len(first) <= excess:
                self._chunks.popleft()
                self._size -= len(first)
            else:
                self._chunks[0] = first[excess:]
                self._size -= excess

    def text(self) -> str:
        return b"".join(self._chunks).decode("utf-8", "replace")


@dataclass
class _Supervision:
    """Where the supervisor loop of one run is; owned by the supervisor thread."""

    phase: Literal["run", "term", "kill"] = "run"
    exited: bool = False  # the leader exited (not yet reaped)
    ended_by: EndedBy | None = None
    cancel_reason: str | None = None
    kill_at: float = 0.0  # term phase: when the grace is over
    drain_until: float | None = None  # kill phase: how long to wait for pipe EOF
    snapshot: dict[int, psutil.Process] = field(default_factory=dict)  # every descendant found


def _launch_error(exc: BaseException, spec: RunSpec) -> str:
    program = spec.argv[0]
    if isinstance(exc, OSError):
        cwd_failed = exc.filename is not None and os.fspath(exc.filename) == os.fspath(spec.cwd)
        if cwd_failed:
            return f"working directory not usable: {spec.cwd}: {exc.strerror}"
        if exc.errno == errno.ENOENT:
            return f"executable not found: {program}"
        if exc.errno == errno.EACCES:
            return f"executable not permitted (not executable or no access): {program}"
        if exc.errno == errno.ENOEXEC:
            return f"not an executable format: {program}"
        return f"cannot start {program}: {exc.strerror or exc}"
    return f"cannot start {program}: {exc}"


class Worker:
    """One supervised run.  Create with ``start()``.

    ``identity`` is None only when the launch failed (then ``wait()`` says ``launch_failed``);
    persist it right after ``start()`` so a restarted coordinator can ``kill_tree`` an orphan.
    """

    identity: ProcessIdentity | None

    def __init__(self, spec: RunSpec, on_line: LineCallback | None) -> None:
        self._spec = spec
        self._on_line = on_line
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._result: RunResult | None = None
        self._error: BaseException | None = None
        self._cancel_reason: str | None = None
        self._closed = False  # wake pipe closed; guarded by _lock
        self._exited_flag = False  # set by the fallback waiter thread (no pidfd)
        self._thread: threading.Thread | None = None
        self._waiter: threading.Thread | None = None
        self.identity = None

    # -- public

    def cancel(self, reason: str = "cancelled") -> None:
        """Kill the tree (ended_by="cancelled") unless the run already ended; idempotent, thread-safe."""
        with self._lock:
            if self._cancel_reason is None:
                self._cancel_reason = reason
        self._wake()

    def wait(self) -> RunResult:
        """Block until the run is over and every fd and thread of it is released.

        Never call it from ``on_line`` (the supervisor thread): that would wait for itself.
        """
        if self._thread is threading.current_thread():
            raise RuntimeError("Worker.wait() called from its own on_line callback")
        self._done.wait()
        if self._thread is not None:
            self._thread.join()
        if self._error is not None:
            raise RuntimeError(f"supervisor of {self._spec.argv[0]} failed: {self._error}") from self._error
        assert self._result is not None
        return self._result

    # -- launch

    def _fail_launch(self, message: str, started_at: float) -> None:
        self._result = RunResult(
            exit_code=None,
            ended_by="launch_failed",
            abort_reason=None,
            identity=None,
            started_at=started_at,
            ended_at=time.time(),
            duration_s=0.0,
            stdout_lines=0,
            stderr_tail="",
            launch_error=message,
        )
        self._done.set()

    def _launch(self) -> None:
        """Open the log, start the process, learn its identity, start the supervisor; on any
        failure the run ends at once as ``launch_failed`` with nothing left running."""
        self._started_at = time.time()
        self._t0 = time.monotonic()
        self._log_fd: int | None = None
        if not self._open_log() or not self._popen():
            return
        pid = self._proc.pid
        try:
            ctime = psutil.Process(pid).create_time()
        except psutil.Error:  # cannot happen for an unreaped child; never leave it running
            process_tree.signal_group(pid, signal.SIGKILL)
            self._proc.wait()
            self._close_pipes()
            self._close_log()
            self._fail_launch(f"cannot read the identity of pid {pid}", self._started_at)
            return
        # start_new_session=True: setsid() ran before exec, so the child leads its own group.
        self.identity = ProcessIdentity(pid=pid, pgid=pid, create_time=ctime, host=process_tree.this_host())
        self._wake_r, self._wake_w = os.pipe()
        self._pidfd = _open_pidfd(pid)
        if self._pidfd is None:
            self._waiter = threading.Thread(target=self._wait_exit_fallback, name=f"adw-exit-{pid}", daemon=True)
            self._waiter.start()
        self._thread = threading.Thread(target=self._supervise, name=f"adw-runner-{pid}", daemon=True)
        self._thread.start()

    def _open_log(self) -> bool:
        spec = self._spec
        if spec.log_path is None:
            return True
        try:
            # 0o600: agent transcripts can echo secrets found in the work tree.
            self._log_fd = os.open(spec.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        except OSError as exc:
            self._fail_launch(f"cannot open log file {spec.log_path}: {exc.strerror}", self._started_at)
            return False
        return True

    def _popen(self) -> bool:
        spec = self._spec
        try:
            self._proc = subprocess.Popen(
                list(spec.argv),
                cwd=spec.cwd,
                env=dict(spec.env),
                stdin=subprocess.PIPE if spec.stdin_data is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                bufsize=0,
            )
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            self._close_log()
            self._fail_launch(_launch_error(exc, spec), self._started_at)
            return False
        return True

    def _wait_exit_fallback(self) -> None:
        # WNOWAIT: learn of the exit without reaping, so the pgid stays reserved while we kill.
        try:
            os.waitid(os.P_PID, self._proc.pid, os.WEXITED | os.WNOWAIT)
        except ChildProcessError:
            pass
        with self._lock:
            self._exited_flag = True
        self._wake()

    def _wake(self) -> None:
        with self._lock:
            if self._closed or not hasattr(self, "_wake_w"):
                return
            try:
                os.write(self._wake_w, b"x")
            except BlockingIOError:  # pipe already full of wake-ups: one is enough
                pass

    # -- supervision (runs in self._thread)

    def _supervise(self) -> None:
        try:
            self._loop()
        except BaseException as exc:
            log.exception("runner supervisor for pid %d failed", self._proc.pid)
            self._error = exc
            if self._proc.returncode is None:
                process_tree.signal_group(self._proc.pid, signal.SIGKILL)
                self._proc.wait()
        finally:
            self._close_all()
            self._done.set()

    def _loop(self) -> None:
        """Select until the run has ended and its tree is torn down: run -> term (SIGTERM sent,
        grace running) -> kill (SIGKILL sent, draining the pipes); then reap and record."""
        self._register()
        self._reset_streams()
        st = _Supervision()
        while True:
            self._handle_ready(st, self._sel.select(self._select_timeout(st)))
            now = time.monotonic()
            if st.phase == "run":
                self._check_end(st, now)
            if st.phase == "term":
                self._check_grace(st, now)
            if st.phase == "kill" and st.exited and self._drained(st, now):
                break
        self._result = self._reap(st)

    def _register(self) -> None:
        """One selector for the wake pipe, the pidfd, stdout, stderr and (while writing) stdin."""
        proc = self._proc
        sel = self._sel = selectors.DefaultSelector()
        assert proc.stdout is not None and proc.stderr is not None
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        if self._pidfd is not None:
            sel.register(self._pidfd, selectors.EVENT_READ, "exit")
        for name, stream in (("out", proc.stdout), ("err", proc.stderr)):
            os.set_blocking(stream.fileno(), False)
            sel.register(stream.fileno(), selectors.EVENT_READ, name)
        self._stdin_view: memoryview | None = None
        if self._spec.stdin_data is not None:
            assert proc.stdin is not None
            self._stdin_view = memoryview(bytes(self._spec.stdin_data))
            os.set_blocking(proc.stdin.fileno(), False)
            if len(self._stdin_view):
                sel.register(proc.stdin.fileno(), selectors.EVENT_WRITE, "in")
            else:
                self._close_stdin()

    def _reset_streams(self) -> None:
        self._pending = bytearray()
        self._overlong = False  # the line being read passed max_line_bytes: drop up to its newline
        self._skipped = 0
        self._lines = 0
        self._last_output = time.monotonic()
        self._tail = _Tail(self._spec.stderr_tail_bytes)
        self._out_open = self._err_open = True
        self._callbacks_on = self._on_line is not None
        self._abort_reason: str | None = None

    def _select_timeout(self, st: _Supervision) -> float | None:
        """Until the next deadline of the phase: timeout or idle timeout, the grace, the drain."""
        spec = self._spec
        now = time.monotonic()
        if st.phase == "run":
            deadlines = []
            if spec.timeout_s is not None:
                deadlines.append(self._t0 + spec.timeout_s)
            if spec.idle_timeout_s is not None:
                deadlines.append(self._last_output + spec.idle_timeout_s)
            return max(0.0, min(deadlines) - now) if deadlines else None
        if st.phase == "term":
            return max(0.0, st.kill_at - now)
        return None if st.drain_until is None else max(0.0, st.drain_until - now)

    def _handle_ready(self, st: _Supervision, ready: list[tuple[selectors.SelectorKey, int]]) -> None:
        for key, _mask in ready:
            what = key.data
            if what == "out":
                self._read_stdout(key.fd)
            elif what == "err":
                self._read_stderr(key.fd)
            elif what == "in":
                self._write_stdin()
            elif what == "exit":
                self._sel.unregister(key.fd)  # stays readable forever once the child exited
                st.exited = True
            else:
                self._drain_wake()
        if not st.exited and self._pidfd is None:
            with self._lock:
                st.exited = self._exited_flag

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    def _check_end(self, st: _Supervision, now: float) -> None:
        """In the run phase: has the run ended?  Then SIGTERM the tree and start the grace."""
        with self._lock:
            st.cancel_reason = self._cancel_reason
        ended_by = self._end_cause(st, now)
        if ended_by is None:
            return
        st.ended_by = ended_by
        if ended_by != "cancelled":
            st.cancel_reason = None  # a cancel that came too late changes nothing
        _signal_tree(self._proc.pid, st.snapshot, signal.SIGTERM, leader_alive=not st.exited)
        st.kill_at = now + self._spec.kill_grace_s
        st.phase = "term"

    def _end_cause(self, st: _Supervision, now: float) -> EndedBy | None:
        """Why the run ends now, in ``ended_by`` precedence; None while it goes on."""
        spec = self._spec
        if self._abort_reason is not None:
            return "aborted"
        if st.cancel_reason is not None:
            return "cancelled"
        if st.exited:
            return "exit"
        if spec.timeout_s is not None and now >= self._t0 + spec.timeout_s:
            return "timeout"
        if spec.idle_timeout_s is not None and now >= self._last_output + spec.idle_timeout_s:
            return "idle_timeout"
        return None

    def _check_grace(self, st: _Supervision, now: float) -> None:
        """In the term phase: once all is gone, or the grace is over, SIGKILL what remains."""
        pipes_closed = not (self._out_open or self._err_open)
        finished = st.exited and pipes_closed and not any(map(process_tree.running, st.snapshot.values()))
        if finished or now >= st.kill_at:
            _signal_tree(self._proc.pid, st.snapshot, signal.SIGKILL, leader_alive=not st.exited)
            st.phase = "kill"

    def _drained(self, st: _Supervision, now: float) -> bool:
        """In the kill phase, the leader gone: are the pipes closed, or has the drain timed out?"""
        if st.drain_until is None:
            st.drain_until = now + _DRAIN_AFTER_KILL_S
        pipes_closed = not (self._out_open or self._err_open)
        return pipes_closed or now >= st.drain_until

    def _reap(self, st: _Supervision) -> RunResult:
        """Wait for the killed tree, flush the last partial line, reap the leader: the result."""
        if st.snapshot:
            # SIGKILL is asynchronous: make "wait() returned" mean "every process we found is dead".
            process_tree.wait_gone(st.snapshot.values(), _DRAIN_AFTER_KILL_S)
        if self._pending and not self._overlong:
            self._emit(bytes(self._pending))
        self._pending.clear()
        self._proc.wait()  # the leader has exited: this only reaps it
        ended_by = st.ended_by
        if self._abort_reason is not None and ended_by == "exit":
            ended_by = "aborted"  # the stream said so: same verdict however fast the CLI exited
        reason = self._abort_reason if ended_by == "aborted" else st.cancel_reason
        assert ended_by is not None and self.identity is not None
        ended_at = time.time()
        return RunResult(
            exit_code=self._proc.returncode,
            ended_by=ended_by,
            abort_reason=reason,
            identity=self.identity,
            started_at=self._started_at,
            ended_at=ended_at,
            duration_s=time.monotonic() - self._t0,
            stdout_lines=self._lines,
            stderr_tail=self._tail.text(),
            launch_error=None,
            skipped_lines=self._skipped,
        )

    # -- I/O helpers (supervisor thread only)

    def _read_stdout(self, fd: int) -> None:
        try:
            data = os.read(fd, _READ_CHUNK)
        except BlockingIOError:
            return
        except OSError as exc:
            log.warning("reading stdout of pid %d failed: %s", self._proc.pid, exc)
            data = b""
        if not data:
            self._sel.unregister(fd)
            self._out_open = False
            return
        self._last_output = time.monotonic()
        self._log(data)
        start = 0
        while (nl := data.find(b"\n", start)) >= 0:
            self._end_line(data, start, nl)
            start = nl + 1
        if start < len(data) and not self._overlong:
            self._pending += data[start:]
            if len(self._pending) > self._spec.max_line_bytes:
                self._drop_line()

    def _end_line(self, data: bytes, start: int, nl: int) -> None:
        """``data[start:nl]`` ends the line being read: emit it whole, or drop it if too long."""
        if self._overlong:
            self._overlong = False  # counted when it passed the cap
        elif len(self._pending) + (nl - start) > self._spec.max_line_bytes:
            self._skipped += 1
        elif self._pending:
            self._pending += data[start:nl]
            line = bytes(self._pending)
            self._pending = bytearray()  # a fresh one: clear() keeps a long line's allocation
            self._emit(line)
            return
        else:
            self._emit(data[start:nl])
            return
        self._pending = bytearray()

    def _drop_line(self) -> None:
        self._skipped += 1
        self._overlong = True
        self._pending = bytearray()

    def _emit(self, raw: bytes) -> None:
        self._lines += 1
        if not self._callbacks_on or self._on_line is None:
            return
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        text = raw.decode("utf-8", "replace")
        try:
            verdict = self._on_line(text)
        except Exception as exc:
            # A parser that cannot read the stream cannot classify or account the run either.
            log.exception("on_line callback raised; aborting pid %d", self._proc.pid)
            verdict = f"on_line raised {type(exc).__name__}: {exc}"
        if verdict is not None:
            self._callbacks_on = False
            if self._abort_reason is None:
                self._abort_reason = verdict

    def _read_stderr(self, fd: int) -> None:
        try:
            data = os.read(fd, _READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._sel.unregister(fd)
            self._err_open = False
            return
        self._tail.add(data)

    def _write_stdin(self) -> None:
        view = self._stdin_view
        stdin = self._proc.stdin
        assert view is not None and stdin is not None
        try:
            written = os.write(stdin.fileno(), view[:_READ_CHUNK])
        except BlockingIOError:
            return
        except (BrokenPipeError, OSError):
            written = len(view)  # the child stopped reading: nothing more can be delivered
        self._stdin_view = view[written:]
        if not len(self._stdin_view):
            self._sel.unregister(stdin.fileno())
            self._close_stdin()

    def _close_stdin(self) -> None:
        stdin = self._proc.stdin
        if stdin is not None and not stdin.closed:
            try:
                stdin.close()
            except OSError:
                pass

    def _log(self, data: bytes) -> None:
        if self._log_fd is None:
            return
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._log_fd, view) :]
        except OSError as exc:
            log.warning("writing %s failed, log copy stops here: %s", self._spec.log_path, exc)
            self._close_log()

    # -- teardown

    def _close_log(self) -> None:
        if self._log_fd is not None:
            os.close(self._log_fd)
            self._log_fd = None

    def _close_pipes(self) -> None:
        for stream in (self._proc.stdin, self._proc.stdout, self._proc.stderr):
            if stream is not None and not stream.closed:
                stream.close()

    def _close_all(self) -> None:
        sel = getattr(self, "_sel", None)
        if sel is not None:
            sel.close()
        if self._waiter is not None:
            self._waiter.join()
        self._close_pipes()
        self._close_log()
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        with self._lock:
            self._closed = True
            os.close(self._wake_r)
            os.close(self._wake_w)


def _signal_tree(pgid: int, snapshot: dict[int, psutil.Process], sig: int, *, leader_alive: bool) -> None:
    """Signal the leader's group and every known descendant; grow ``snapshot`` first.

    The caller has not reaped the leader, so ``pgid`` cannot have been reused.  Descendants are
    collected before signalling: a setsid()'d grandchild leaves the group but is still a
    descendant, found only while its parent chain to the leader lives.
    """
    if leader_alive:
        snapshot.update((p.pid, p) for p in process_tree.descendants(pgid))
    process_tree.signal_group(pgid, sig)
    for pid, proc in snapshot.items():
        if process_tree.pgid_of(pid) != pgid:  # group members already got it from killpg
            process_tree.send(proc, sig)


def _open_pidfd(pid: int) -> int | None:
    """A pidfd (Linux >= 5.3) becomes readable when the process exits, without reaping it."""
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        fd: int = opener(pid)
    except OSError:
        return None
    return fd


def start(spec: RunSpec, on_line: LineCallback | None = None) -> Worker:
    """Launch ``spec`` and supervise it in the background; never raises on a launch failure.

    ``on_line`` receives each stdout line (UTF-8, errors replaced, without the line ending) in
    order, from the supervisor thread; keep it quick, timers are checked between calls.  A
    non-None return aborts the run: the tree is killed, ended_by="aborted", abort_reason=it.
    An exception from ``on_line`` aborts likewise.  After an abort it is not called again.
    """
    worker = Worker(spec, on_line)
    worker._launch()
    return worker


def run(spec: RunSpec, on_line: LineCallback | None = None) -> RunResult:
    """``start(spec, on_line).wait()``."""
    return start(spec, on_line).wait()
