"""Server-Sent Events: open pages learn within a second that something changed.

One ``ChangeWatcher`` per app polls ``Store.change_marker`` (a few index reads) every
``POLL_S`` while at least one page listens, whatever the number of pages; each stream waits
on it and, when the marker (or its page's own extra, e.g. the followed transcript's size)
moves, sends ``event: change`` (a store that raises, down or restarting, counts as
unchanged).  The page then fetches itself and swaps its live parts.

A stream starts with ``retry: 1000``: when the server goes away (a coordinator restart) the
browser's EventSource reconnects by itself a second later, and the first message on the new
stream makes the page catch up.  A wake-up of the store (``Store.listen``) is not used:
it fires only for claimable work, not for ends or progress, and polling a marker covers all.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncGenerator, Callable
from typing import Any

import anyio
import anyio.to_thread

from adw_modules.queue.store import Store

POLL_S = 0.5
TICK_S = 0.1  # how often each stream looks at the watcher's version (no store read)
KEEPALIVE_S = 15.0
RETRY_MS = 1000


class ChangeWatcher:
    def __init__(self, store: Store, poll_s: float = POLL_S) -> None:
        self.store = store
        self.poll_s = poll_s
        self.marker: Any = None
        self.version = 0
        self._cond = threading.Condition()
        self._listeners = 0
        self._thread: threading.Thread | None = None
        self.stopping = threading.Event()

    def _run(self) -> None:
        while not self.stopping.is_set():
            with self._cond:
                if self._listeners == 0:
                    self._thread = None
                    return
            try:
                marker = self.store.change_marker()
            except Exception:  # the store is away (a restart, a dropped connection): try again next poll
                marker = self.marker
            with self._cond:
                if marker != self.marker:
                    self.marker, self.version = marker, self.version + 1
                    self._cond.notify_all()
            self.stopping.wait(self.poll_s)

    def subscribe(self) -> None:
        with self._cond:
            self._listeners += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="adw-web-changes", daemon=True)
                self._thread.start()

    def unsubscribe(self) -> None:
        with self._cond:
            self._listeners -= 1

    def wait(self, seen: int, timeout: float) -> int:
        """The version after ``seen`` (or ``seen`` again after ``timeout``)."""
        with self._cond:
            self._cond.wait_for(lambda: self.version != seen or self.stopping.is_set(), timeout)
            return self.version

    def stop(self) -> None:
        self.stopping.set()
        with self._cond:
            self._cond.notify_all()


async def _checked(extra: Callable[[], Any], last: Any) -> Any:
    """The page's extra (read in a worker thread); the last value while the store is away."""
    try:
        return await anyio.to_thread.run_sync(extra)
    except Exception:  # the store is down or restarting: unchanged, asked again next poll
        return last


async def stream(watcher: ChangeWatcher, extra: Callable[[], Any] | None = None) -> AsyncGenerator[str, None]:
    """The text/event-stream body: ``retry``, a first ``change`` (catch up after a reconnect),
    then one per change; a comment line every KEEPALIVE_S keeps proxies from closing it.

    An async generator on the event loop: it looks at the watcher's version every TICK_S (an
    attribute read) and holds no worker thread while it waits, so open pages never use up
    the thread pool every other request needs (a sync generator would hold one each)."""
    watcher.subscribe()
    try:
        yield f"retry: {RETRY_MS}\n\n"
        seen = watcher.version
        seen_extra = None if extra is None else await _checked(extra, None)
        yield f"event: change\ndata: {json.dumps({'version': seen})}\n\n"
        quiet_since = extra_at = time.monotonic()
        while not watcher.stopping.is_set():
            await anyio.sleep(TICK_S)
            version, now_extra = watcher.version, seen_extra
            if extra is not None and time.monotonic() - extra_at >= POLL_S:
                extra_at = time.monotonic()
                now_extra = await _checked(extra, seen_extra)
            if version != seen or now_extra != seen_extra:
                seen, seen_extra = version, now_extra
                quiet_since = time.monotonic()
                yield f"event: change\ndata: {json.dumps({'version': seen})}\n\n"
            elif time.monotonic() - quiet_since >= KEEPALIVE_S:
                quiet_since = time.monotonic()
                yield ": keepalive\n\n"
    finally:
        watcher.unsubscribe()
