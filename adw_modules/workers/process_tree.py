"""Finding and killing a supervised process tree without ever hitting a reused pid.

A supervised agent CLI runs in its own session, so its process group id equals its pid.
``ProcessIdentity`` records enough to find that tree again after the coordinator itself
restarted: pid and pgid, psutil's ``create_time`` (a pid reused by an unrelated process has a
different one) and the host (pids mean nothing on another machine).

Limits, stated honestly: a descendant that called ``setsid()`` leaves the process group and is
found only as a descendant, i.e. only while its parent chain up to the leader is alive.  Once
its parent has died it is reparented to init and nothing short of a cgroup can find it.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import socket
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import psutil

log = logging.getLogger(__name__)

# psutil derives create_time from the boot time plus clock ticks, so within one boot the value
# read twice for the same process is identical; the tolerance only absorbs float round trips.
CREATE_TIME_TOLERANCE_S = 0.01


@dataclass(frozen=True)
class ProcessIdentity:
    """Who a supervised leader process is: enough to find and kill it later, never a stranger."""

    pid: int
    pgid: int
    create_time: float
    host: str

    def to_dict(self) -> dict[str, Any]:
        return {"pid": self.pid, "pgid": self.pgid, "create_time": self.create_time, "host": self.host}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ProcessIdentity:
        """Inverse of ``to_dict``; raises ``ValueError`` naming the bad field."""
        missing = [k for k in ("pid", "pgid", "create_time", "host") if k not in d]
        if missing:
            raise ValueError(f"process identity lacks {', '.join(missing)}: {dict(d)!r}")
        for key in ("pid", "pgid"):
            value = d[key]
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"process identity {key} must be a positive int, got {value!r}")
        ctime = d["create_time"]
        if isinstance(ctime, bool) or not isinstance(ctime, (int, float)) or not math.isfinite(ctime):
            raise ValueError(f"process identity create_time must be a number, got {ctime!r}")
        if not isinstance(d["host"], str) or not d["host"]:
            raise ValueError(f"process identity host must be a non-empty string, got {d['host']!r}")
        return cls(pid=d["pid"], pgid=d["pgid"], create_time=float(ctime), host=d["host"])

    @classmethod
    def of(cls, pid: int) -> ProcessIdentity:
        """The identity of a live (or not yet reaped) process on this host."""
        return cls(pid=pid, pgid=os.getpgid(pid), create_time=psutil.Process(pid).create_time(), host=this_host())


def this_host() -> str:
    return socket.gethostname()


def running(proc: psutil.Process) -> bool:
    """True while ``proc`` is the same process as when it was looked up and is not a zombie."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def send(proc: psutil.Process, sig: int) -> bool:
    """Signal ``proc`` unless it is gone or its pid now belongs to someone else."""
    try:
        # is_running() compares create_time, so a reused pid is refused here.
        if not proc.is_running():
            return False
        proc.send_signal(sig)
        return True
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        log.warning("not permitted to send signal %d to pid %d", sig, proc.pid)
        return False


def signal_group(pgid: int, sig: int) -> bool:
    """``killpg`` that treats an empty group as nothing to do.  Callers guarantee the pgid is theirs."""
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        log.warning("not permitted to send signal %d to process group %d", sig, pgid)
        return False


def descendants(pid: int) -> list[psutil.Process]:
    """Every live descendant of ``pid`` (setsid()'d ones included), or [] if pid is gone."""
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def pgid_of(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def group_members(pgid: int) -> list[psutil.Process]:
    """Every process whose process group is ``pgid`` (one getpgid per process on the host)."""
    members = []
    for pid in psutil.pids():
        if pgid_of(pid) == pgid:
            try:
                members.append(psutil.Process(pid))
            except psutil.Error:
                continue
    return members


def wait_gone(procs: Iterable[psutil.Process], timeout_s: float) -> list[psutil.Process]:
    """Wait until every process is gone (exited or a zombie) or the timeout; return survivors.

    Polls with a short backoff: processes that are not our children give no exit event.
    """
    alive = list(procs)
    deadline = time.monotonic() + timeout_s
    delay = 0.005
    while True:
        alive = [p for p in alive if running(p)]
        remaining = deadline - time.monotonic()
        if not alive or remaining <= 0:
            return alive
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, 0.1)


def _leader(identity: ProcessIdentity) -> tuple[psutil.Process | None, bool]:
    """(the leader if it is still the recorded process, whether identity.pid now names a stranger)."""
    try:
        proc = psutil.Process(identity.pid)
        ctime = proc.create_time()
    except psutil.Error:
        return None, False
    if abs(ctime - identity.create_time) > CREATE_TIME_TOLERANCE_S:
        return None, True
    return proc, False


def is_alive(identity: ProcessIdentity) -> bool:
    """True if the recorded leader itself still runs on this host (a zombie counts as dead)."""
    if identity.host != this_host():
        return False
    leader, _ = _leader(identity)
    return leader is not None and running(leader)


def _tree(identity: ProcessIdentity, leader: psutil.Process | None) -> dict[int, psutil.Process]:
    procs: dict[int, psutil.Process] = {}
    if leader is not None and running(leader):
        procs[leader.pid] = leader
        for child in descendants(leader.pid):
            procs[child.pid] = child
    for member in group_members(identity.pgid):
        try:
            # A member born before the leader cannot belong to the recorded group.
            if member.create_time() >= identity.create_time - CREATE_TIME_TOLERANCE_S:
                procs.setdefault(member.pid, member)
        except psutil.Error:
            continue
    return {pid: p for pid, p in procs.items() if running(p)}


def kill_tree(identity: ProcessIdentity, grace_s: float = 5.0) -> bool:
    """Kill an orphaned supervised tree: SIGTERM, ``grace_s``, then SIGKILL to the survivors.

    Refuses (returns False, signals nothing) when the identity belongs to another host, when its
    pid now names a different process (create_time differs), or when it names this process's own
    group.  Targets are the leader, its descendants and the members of its process group.
    Returns True if at least one process was signalled.
    """
    if identity.host != this_host():
        log.info("not killing pid %d: it ran on host %s, not here", identity.pid, identity.host)
        return False
    if identity.pgid == os.getpgrp() or identity.pid == os.getpid():
        log.warning("refusing to kill pid %d / group %d: that is this process", identity.pid, identity.pgid)
        return False
    leader, reused = _leader(identity)
    if reused:
        # The pid number is in use by a stranger, so the old group (which would reserve the
        # number while it has members) cannot exist any more.
        log.info("not killing pid %d: the pid was reused by another process", identity.pid)
        return False
    targets = _tree(identity, leader)
    if not targets:
        return False
    in_group = any(pgid_of(pid) == identity.pgid for pid in targets)
    if in_group:
        signal_group(identity.pgid, signal.SIGTERM)
    for pid, proc in targets.items():
        if pgid_of(pid) != identity.pgid:
            send(proc, signal.SIGTERM)
    survivors = wait_gone(targets.values(), grace_s)
    if survivors:
        # Forks made during the grace period are caught by a second look at the tree.
        late = _tree(identity, leader)
        if any(pgid_of(pid) == identity.pgid for pid in late):
            signal_group(identity.pgid, signal.SIGKILL)
        for proc in {**late, **{p.pid: p for p in survivors}}.values():
            send(proc, signal.SIGKILL)
        wait_gone(survivors, 1.0)
    return True
