"""One coordinator's picture of its providers, kept in memory: health, attempts running, starts
in the last minute, spend today.

A dispatch pass reads this instead of querying the store (it used to run four grouped queries
per pass).  The picture is exact for this coordinator's own starts and finishes, which update
it as they happen, and is reconciled with the store (``Store.provider_snapshot``, one read) on a
timer: that is how what other coordinators on the same store did shows up.  Between
reconciliations another coordinator's attempts are seen as of the last snapshot, so a shared
``max_concurrency``, ``rpm`` or daily cap may be overshot by what the others started within one
reconcile interval; a circuit another coordinator opened is seen within one interval.

A success on a provider whose circuit is clean changes nothing but its recent-outcome window,
so it is not written at once: such outcomes wait here (``pending_recent``) and go to the store
with the provider's next write or the next reconciliation, appended under the row lock so that
no coordinator's outcomes are lost.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
from collections import deque
from collections.abc import Iterable, Mapping

from adw_modules.queue.health import RECENT_WINDOW
from adw_modules.queue.tasks import CircuitState, ProviderSnapshot, ProviderState

MINUTE = dt.timedelta(seconds=60)


def clean(state: ProviderState | None) -> bool:
    """Nothing a success would reset: closed, no failures counted, no cooldown, no trial."""
    return state is None or (
        state.circuit is CircuitState.CLOSED
        and state.consecutive_failures == 0
        and state.trips == 0
        and state.cooldown_until is None
        and state.probe_attempt_id is None
        and state.disabled_reason is None
    )


def with_recent(state: ProviderState, outcomes: Iterable[bool]) -> ProviderState:
    """``state`` with ``outcomes`` appended to its recent-outcome window."""
    added = list(outcomes)
    if not added:
        return state
    return dataclasses.replace(state, recent=[*state.recent, *added][-RECENT_WINDOW:])


def append_recent(outcomes: Iterable[bool], state: ProviderState) -> ProviderState:
    """``with_recent`` with the outcomes first (for ``functools.partial``)."""
    return with_recent(state, outcomes)


class ProviderView:
    """Thread-safe: the dispatch thread reads it, attempt watchers and the heartbeat update it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: dict[str, ProviderState] = {}
        self._others_running: dict[str, int] = {}  # other coordinators', as of the last snapshot
        self._own_running: dict[str, int] = {}
        self._started: dict[str, deque[dt.datetime]] = {}
        self._spent: dict[str, float] = {}
        self._day_start: dt.datetime | None = None
        self._pending: dict[str, list[bool]] = {}
        self.reconciled_at: dt.datetime | None = None

    # ------------------------------------------------------------ reconciling
    def reconcile(
        self, snap: ProviderSnapshot, own_running: Mapping[str, int], day_start: dt.datetime, now: dt.datetime
    ) -> None:
        """Take the store's snapshot as the truth; ``own_running``: what runs here right now."""
        with self._lock:
            self._states = dict(snap.states)
            self._own_running = {p: n for p, n in own_running.items() if n}
            self._others_running = {p: max(0, n - self._own_running.get(p, 0)) for p, n in snap.running.items() if n}
            self._started = {
                p: deque(sorted(t for t in times if t > now - MINUTE)) for p, times in snap.started.items()
            }
            self._spent = dict(snap.spent)
            self._day_start = day_start
            self.reconciled_at = now

    def invalidate(self) -> None:
        """Another coordinator announced a change (a slot freed, a task requeued): reconcile on
        the next pass instead of waiting for the interval."""
        with self._lock:
            self.reconciled_at = None

    def due(self, now: dt.datetime, interval: dt.timedelta) -> bool:
        """Is it time to reconcile?"""
        return self.reconciled_at is None or now - self.reconciled_at >= interval or now < self.reconciled_at

    # ------------------------------------------------------------ this coordinator's changes
    def started(self, provider: str, now: dt.datetime) -> None:
        with self._lock:
            self._own_running[provider] = self._own_running.get(provider, 0) + 1
            self._started.setdefault(provider, deque()).append(now)

    def ended(self, provider: str, cost_usd: float | None, started_at: dt.datetime | None) -> None:
        with self._lock:
            self._own_running[provider] = max(0, self._own_running.get(provider, 0) - 1)
            if cost_usd and (self._day_start is None or started_at is None or started_at >= self._day_start):
                self._spent[provider] = self._spent.get(provider, 0.0) + cost_usd

    def stored(self, state: ProviderState) -> None:
        """The store now holds ``state`` for its provider (this coordinator wrote it)."""
        with self._lock:
            self._states[state.provider] = state

    def defer_recent(self, provider: str, ok: bool) -> None:
        """An outcome for the provider's recent window, written with its next write."""
        with self._lock:
            self._pending.setdefault(provider, []).append(ok)
            state = self._states.get(provider)
            if state is not None:
                self._states[provider] = with_recent(state, [ok])

    def take_pending(self, provider: str | None = None) -> dict[str, list[bool]]:
        """The deferred outcomes (of one provider, or all), removed from here: the caller writes them."""
        with self._lock:
            if provider is None:
                out, self._pending = self._pending, {}
                return out
            outcomes = self._pending.pop(provider, None)
            return {provider: outcomes} if outcomes else {}

    def give_back(self, pending: Mapping[str, list[bool]]) -> None:
        """Deferred outcomes whose write failed: keep them for the next one."""
        with self._lock:
            for provider, outcomes in pending.items():
                self._pending[provider] = [*outcomes, *self._pending.get(provider, [])]

    # ------------------------------------------------------------ reading
    def state(self, provider: str) -> ProviderState | None:
        with self._lock:
            return self._states.get(provider)

    def running(self) -> dict[str, int]:
        """Attempts running per provider, all coordinators."""
        with self._lock:
            names = {*self._own_running, *self._others_running}
            return {p: self._own_running.get(p, 0) + self._others_running.get(p, 0) for p in names}

    def started_last_minute(self, now: dt.datetime) -> dict[str, int]:
        with self._lock:
            out = {}
            for provider, times in self._started.items():
                while times and times[0] <= now - MINUTE:
                    times.popleft()
                if times:
                    out[provider] = len(times)
            return out

    def spent_today(self, day_start: dt.datetime) -> dict[str, float]:
        """Known spend per provider since ``day_start``; nothing yet if the day turned since the
        last reconciliation (the next one counts the new day from the store)."""
        with self._lock:
            if self._day_start is not None and day_start > self._day_start:
                self._spent, self._day_start = {}, day_start
            return dict(self._spent)
