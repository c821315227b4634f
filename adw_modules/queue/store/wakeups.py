"""Instant pick-up: a write that makes work claimable wakes the coordinators that wait for it.

PostgreSQL: the write's own transaction sends ``pg_notify('adw_work', '')`` (delivered on
commit, to every listener on any host; repeated notifies of one transaction fold into one);
each coordinator keeps one extra connection that ``LISTEN``s, and wakes on it.

SQLite (one host): each listening coordinator owns a FIFO in ``<database file>.wake/``; after
the write commits, the writer puts one byte into every FIFO there.  A FIFO nobody reads any
more (its coordinator died) answers ENXIO and is removed.  A full FIFO already holds a wake-up.

Both are a latency optimisation only: the dispatch tick still runs, so a lost wake-up (a
listener reconnecting, a FIFO removed) costs at most one tick.  Listeners wake the process
only when a notification arrives; they never poll.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

log = logging.getLogger("adw.store")

CHANNEL = "adw_work"
RECONNECT_MAX_S = 30.0


def wake_dir(engine: Engine) -> Path | None:
    """The FIFO directory of a SQLite store (None for PostgreSQL)."""
    if engine.dialect.name != "sqlite" or not engine.url.database:
        return None
    db = Path(engine.url.database).expanduser()
    return db.with_name(db.name + ".wake")


def notify_in(conn: Connection) -> None:
    """PostgreSQL: announce work from inside the writing transaction (sent when it commits)."""
    conn.execute(sa.select(sa.func.pg_notify(CHANNEL, "")))


def poke(directory: Path) -> int:
    """SQLite: wake every coordinator listening in ``directory``; how many were woken."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return 0
    woken = 0
    for name in names:
        if not name.endswith(".fifo"):
            continue
        path = directory / name
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # no reader: its coordinator is gone
                with contextlib.suppress(OSError):
                    path.unlink()
            continue
        try:
            os.write(fd, b"!")
            woken += 1
        except BlockingIOError:  # full: a wake-up is already waiting there
            woken += 1
        except OSError:
            pass
        finally:
            os.close(fd)
    return woken


class Listener:
    """Calls ``on_wake`` (from its own thread) whenever work is announced; ``close`` stops it."""

    def __init__(self, on_wake: Callable[[], None]) -> None:
        self.on_wake = on_wake
        self._stop_r, self._stop_w = os.pipe()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="adw-wakeups", daemon=True)

    def start(self) -> Listener:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stopped.set()
        with contextlib.suppress(OSError):
            os.write(self._stop_w, b"x")
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        for fd in (self._stop_r, self._stop_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _listening(self, how: str) -> None:
        log.info(f"listening for announced work ({how})", extra={"data": {"event": "store.listening", "how": how}})

    def _wake(self) -> None:
        try:
            self.on_wake()
        except Exception:
            log.exception("a wake-up handler failed")

    def _wait(self, fd: int) -> bool:
        """Block until ``fd`` is readable (True) or the listener is closed (False)."""
        readable, _, _ = select.select([fd, self._stop_r], [], [])
        return self._stop_r not in readable and not self._stopped.is_set()

    def _run(self) -> None:
        raise NotImplementedError


class PgListener(Listener):
    """``LISTEN adw_work`` on a connection of its own, reconnecting with backoff."""

    def __init__(self, conninfo: str, on_wake: Callable[[], None]) -> None:
        super().__init__(on_wake)
        self.conninfo = conninfo

    def _run(self) -> None:
        import psycopg  # only a PostgreSQL store needs the driver here

        delay = 0.5
        while not self._stopped.is_set():
            try:
                with psycopg.connect(self.conninfo, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    delay = 0.5
                    self._listening(f"LISTEN {CHANNEL}")
                    self._wake()  # announcements made while we were not listening are lost: look now
                    while self._wait(conn.fileno()):
                        if list(conn.notifies(timeout=0)):
                            self._wake()
                        elif conn.closed or conn.broken:
                            break
            except Exception as exc:  # the server went away: listen again once it is back
                if self._stopped.is_set():
                    return
                log.warning(
                    "wake-up listener lost its connection (%s); reconnecting in %.1f s",
                    type(exc).__name__,
                    delay,
                    extra={"data": {"event": "store.listener_lost"}},
                )
                if self._stopped.wait(delay):
                    return
                delay = min(RECONNECT_MAX_S, delay * 2)


class FifoListener(Listener):
    """Reads its own FIFO in the store's wake-up directory."""

    def __init__(self, directory: Path, on_wake: Callable[[], None]) -> None:
        super().__init__(on_wake)
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path = directory / f"{os.getpid()}-{uuid.uuid4().hex[:8]}.fifo"
        os.mkfifo(self.path, 0o600)
        self._read = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        self._hold = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)  # never EOF while we listen

    def close(self) -> None:
        super().close()
        with contextlib.suppress(OSError):
            self.path.unlink()
        for fd in (self._read, self._hold):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _run(self) -> None:
        self._listening(f"FIFO {self.path}")
        while self._wait(self._read):
            with contextlib.suppress(BlockingIOError):
                while os.read(self._read, 4096):
                    pass
            self._wake()


def listen(engine: Engine, on_wake: Callable[[], None]) -> Listener:
    """Start listening for announced work on the store behind ``engine``."""
    directory = wake_dir(engine)
    if directory is not None:
        return FifoListener(directory, on_wake).start()
    conninfo = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    return PgListener(conninfo, on_wake).start()


def announce_after_commit(directory: Path | None) -> None:
    """SQLite: poke the listeners once the write is committed (never fails the write)."""
    if directory is None:
        return
    try:
        poke(directory)
    except OSError:
        log.debug("waking listeners in %s failed", directory, exc_info=True)
