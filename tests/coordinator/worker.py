"""A minimal agent CLI for the coordinator's process-level tests and benchmarks.

    worker.py --log FILE --mode MODE [--state DIR] TASK_ID

It records every run on the worker side by appending one line to FILE (O_APPEND, one
write(2) per line, so lines from concurrent workers never interleave):

    start <task_id> <pid>     when it begins (modes other than ``ok``)
    done <task_id> <pid>      just before it reports success

then prints a Claude-style final result line and exits 0.  Modes:

- ``ok``          append ``done`` and succeed at once (the throughput worker).
- ``sleep:S``     take S seconds, then succeed.
- ``hang``        write its pid to DIR/<task_id>.pid and block until killed.
- ``hang-first``  the first run of a task (claimed with an O_EXCL marker in DIR) behaves
                  like ``hang``; every later run succeeds at once.

Standard library only, started with ``python -I -S``: it must cost as little as possible.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import time


def append(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def write_pid(state: str, task_id: str) -> None:
    tmp = os.path.join(state, f"{task_id}.pid.tmp")
    with open(tmp, "w") as f:
        f.write(str(os.getpid()))
    os.replace(tmp, os.path.join(state, f"{task_id}.pid"))  # appears complete or not at all


def hang() -> None:
    while True:  # until SIGTERM / SIGKILL (default dispositions)
        signal.pause()


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--log", required=True)
    p.add_argument("--mode", default="ok")
    p.add_argument("--state", default=".")
    p.add_argument("task_id")
    a = p.parse_args()
    pid = os.getpid()
    if a.mode != "ok":
        append(a.log, f"start {a.task_id} {pid}\n")
    if a.mode == "hang":
        write_pid(a.state, a.task_id)
        hang()
    elif a.mode == "hang-first":
        try:
            os.close(os.open(os.path.join(a.state, f"{a.task_id}.first"), os.O_WRONLY | os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            pass
        else:
            write_pid(a.state, a.task_id)
            hang()
    elif a.mode.startswith("sleep:"):
        time.sleep(float(a.mode.split(":", 1)[1]))
    elif a.mode != "ok":
        raise SystemExit(f"unknown mode {a.mode}")
    append(a.log, f"done {a.task_id} {pid}\n")
    result = {
        "type": "result",
        "subtype": "success",
        "is_error": False,
        "result": "ok",
        "session_id": f"s-{a.task_id}",
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
