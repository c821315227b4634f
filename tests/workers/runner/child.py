"""Programs the runner tests supervise: ``python -S child.py MODE [ARGS]`` (stdlib only).

Modes that start a grandchild write its pid to a file *before* printing ``ready``, atomically,
so a test that has seen ``ready`` can read the pid without waiting.
"""

from __future__ import annotations

import hashlib
import os
import signal
import sys
import time


def _hang() -> None:
    while True:
        signal.pause()


def _write_pid(path: str, pid: int) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as fh:
        fh.write(f"{pid}\n")
    os.replace(tmp, path)


def _ready() -> None:
    sys.stdout.write("ready\n")
    sys.stdout.flush()


def _grandchild(pid_file: str, *, setsid: bool, keep_stdio: bool) -> None:
    """Fork a sleeping grandchild; return in the parent once its pid file exists."""
    r, w = os.pipe()
    if os.fork() == 0:
        os.close(r)
        if setsid:
            os.setsid()
        if not keep_stdio:
            devnull = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
        _write_pid(pid_file, os.getpid())
        os.write(w, b"x")
        os.close(w)
        _hang()
    os.close(w)
    os.read(r, 1)  # the grandchild has written its pid file
    os.close(r)


def main(mode: str, *args: str) -> int:
    if mode == "exit":
        print("bye", flush=True)
        return int(args[0])
    if mode == "selfkill":
        os.kill(os.getpid(), signal.SIGKILL)
    if mode == "sha256":
        data = sys.stdin.buffer.read()
        print(len(data), hashlib.sha256(data).hexdigest(), flush=True)
        return 0
    if mode == "hang":
        _ready()
        _hang()
    if mode == "silent":
        _hang()
    if mode == "ignore_term":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _ready()
        _hang()
    if mode == "chatty":  # chatty INTERVAL COUNT
        for i in range(int(args[1])):
            print(f"tick {i}", flush=True)
            time.sleep(float(args[0]))
        return 0
    if mode == "count":  # print 1, 2, 3 ... forever
        i = 0
        while True:
            i += 1
            print(i, flush=True)
            time.sleep(0.01)
    if mode == "bigline":
        sys.stdout.buffer.write(b"x" * int(args[0]) + b"\ntail\n")
        return 0
    if mode == "flood":  # flood MB [NEWLINE]: MB megabytes of one line, then (maybe) a newline and "tail"
        block = b"x" * (1 << 20)
        for _ in range(int(args[0])):
            sys.stdout.buffer.write(block)
        sys.stdout.buffer.write(b"\ntail\n" if "newline" in args[1:] else b"")
        sys.stdout.buffer.flush()
        return 0
    if mode == "raw":  # write args[0] (a hex string) to stdout as bytes
        sys.stdout.buffer.write(bytes.fromhex(args[0]))
        return 0
    if mode == "stderr":
        sys.stderr.write("e" * int(args[0]) + "END")
        return 0
    if mode == "argv":
        for arg in args:
            print(arg)
        return 0
    if mode in ("fork_hang", "setsid_hang"):
        _grandchild(args[0], setsid=mode == "setsid_hang", keep_stdio=mode == "fork_hang")
        _ready()
        _hang()
    if mode == "leave_behind":  # a grandchild in our group, not holding our pipes, then exit 0
        _grandchild(args[0], setsid=False, keep_stdio=False)
        return 0
    if mode == "detach":  # start `child.py fork_hang PIDFILE` in its own session and exit
        import subprocess

        devnull = subprocess.DEVNULL
        proc = subprocess.Popen(
            [sys.executable, "-S", __file__, "fork_hang", args[0]],
            start_new_session=True,
            stdin=devnull,
            stdout=devnull,
            stderr=devnull,
        )
        print(proc.pid, flush=True)
        return 0
    raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
