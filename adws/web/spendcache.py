"""The spend page's per-hour sums, kept for the hours that can no longer change.

``/spend`` shows 30 days by provider, model and label.  Summing 30 days of a busy store on
every request cost ~1.3 s at 100,000 attempts (bench/web_at_scale.py); an hour before the
current one, with no attempt of it still running, is settled: its attempts have their final
cost and tokens.  So settled hours are summed once and kept; each request sums only the open
part (since the start of the current hour, or of the oldest running attempt's hour) and
checks the settled part's fingerprint (attempts and known cost, from an index alone): an
attempt added, deleted (retention) or re-priced there drops the cache and it is summed anew.
"""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

from adw_modules.queue.store import Store

GROUPS = ("provider", "model", "label")
MAX_KEPT = dt.timedelta(days=31)  # the cache restarts when its start falls this far behind
Row = dict[str, Any]


def _hour(when: dt.datetime) -> dt.datetime:
    return when.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)


def _add(into: dict[tuple[str, str], Row], rows: list[Row]) -> None:
    for r in rows:
        acc = into.setdefault((r["bucket"], r["key"]), {**r, "attempts": 0, "cost_usd": 0.0, "tokens": 0})
        acc["attempts"] += r["attempts"]
        acc["cost_usd"] += r["cost_usd"]
        acc["tokens"] += r["tokens"]


class SpendCache:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._from: dt.datetime | None = None
        self._until: dt.datetime | None = None  # settled: [_from, _until)
        self._fingerprint: tuple[int, float] = (0, 0.0)
        self._rows: dict[str, dict[tuple[str, str], Row]] = {by: {} for by in GROUPS}

    def hourly(self, store: Store, since: dt.datetime, now: dt.datetime) -> dict[str, list[Row]]:
        """Per ``by``: rows {bucket "YYYY-MM-DD HH:00", key, attempts, cost_usd, tokens} of the
        attempts started since ``since`` (an hour's start), sorted by bucket then key."""
        running = store.earliest_running_start()
        settled = _hour(now) if running is None else min(_hour(now), _hour(running))
        with self._lock:
            self._settle(store, since, max(since, settled))
            kept = {by: dict(rows) for by, rows in self._rows.items()}
            open_from = self._until or since
        first = since.astimezone(dt.UTC).strftime("%Y-%m-%d %H:00")
        out = {}
        for by in GROUPS:
            merged = {k: dict(v) for k, v in kept[by].items() if k[0] >= first}
            _add(merged, store.usage_series("hour", by, open_from))
            out[by] = [merged[k] for k in sorted(merged)]
        return out

    def _settle(self, store: Store, since: dt.datetime, settled: dt.datetime) -> None:
        stale = (
            self._from is None
            or self._until is None
            or since < self._from
            or since - self._from > MAX_KEPT
            or settled < self._until
            or store.spend_fingerprint(self._from, self._until) != self._fingerprint
        )
        if stale:
            self._from, self._until, self._fingerprint = since, since, (0, 0.0)
            self._rows = {by: {} for by in GROUPS}
        assert self._from is not None and self._until is not None
        if settled <= self._until:
            return
        # The fingerprint first: a write landing during the sums makes the next check differ.
        fingerprint = store.spend_fingerprint(self._from, settled)
        for by in GROUPS:
            _add(self._rows[by], store.usage_series("hour", by, self._until, settled))
        self._until, self._fingerprint = settled, fingerprint
