"""Server-Sent Events: open pages learn within a second that something changed.

One ``ChangeWatcher`` per app polls ``Store.change_marker`` (a few index reads) every
``POLL_S`` while at least one page listens, whatever the number of pages; each stream waits
on it and, when the marker (or its page's own extra, e.g. the followed transcript's size)
moves, sends ``event: change``.  The page then fetches itself and swaps its live parts.

A stream starts with ``retry: 1000``: when the server goes away (a coordinator restart) the
browser's EventSource reconnects by itself a second later, and the first message on the new
stream makes the page catch up.  A wake-up of the store (``Store.listen``) is not used:
it fires only for claimable work, not for ends or progress, and polling a marker covers all.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Generator
from typing import Any

from adw_modules.queue.store import Store

POLL_S = 0.5
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


def stream(watcher: ChangeWatcher, extra: Callable[[], Any] | None = None) -> Generator[str, None, None]:
    """The text/event-stream body: ``retry``, a first ``change`` (catch up after a reconnect),
    then one per change; a comment line every KEEPALIVE_S keeps proxies from closing it."""
    watcher.subscribe()
    try:
        yield f"retry: {RETRY_MS}\n\n"
        seen, seen_extra = watcher.wait(-1, 0), None if extra is None else extra()
        yield f"event: change\ndata: {json.dumps({'version': seen})}\n\n"
        quiet_since = time.monotonic()
        while not watcher.stopping.is_set():
            version = watcher.wait(seen, POLL_S)
            now_extra = None if extra is None else extra()
            if version != seen or now_extra != seen_extra:
                seen, seen_extra = version, now_extra
                quiet_since = time.monotonic()
                yield f"event: change\ndata: {json.dumps({'version': seen})}\n\n"
            elif time.monotonic() - quiet_since >= KEEPALIVE_S:
                quiet_since = time.monotonic()
                yield ": keepalive\n\n"
    finally:
        watcher.unsubscribe()
