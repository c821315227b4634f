"""A webhook delivery id is taken once, across every coordinator sharing the store (both backends)."""

from __future__ import annotations

import datetime as dt
import threading

from adw_modules.queue.store import Store

NOW = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)


def test_a_delivery_is_taken_once_across_coordinators(store: Store, store_url: str) -> None:
    others = [Store.open(store_url) for _ in range(3)]
    try:
        stores = [store, *others]
        results: list[bool] = []
        barrier = threading.Barrier(len(stores))

        def take(s: Store) -> None:
            barrier.wait()
            results.append(s.record_delivery("72d3162e-cc78-11e3-81ab-4c9367dc0958", "issues", NOW))

        threads = [threading.Thread(target=take, args=(s,)) for s in stores]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sorted(results) == [False, False, False, True]
        assert store.record_delivery("another", "issue_comment", NOW + dt.timedelta(seconds=1))
        assert [d["delivery_id"] for d in others[0].deliveries()] == ["another", "72d3162e-cc78-11e3-81ab-4c9367dc0958"]
    finally:
        for s in others:
            s.close()


def test_old_deliveries_are_pruned(store: Store) -> None:
    store.record_delivery("old", "issues", NOW - dt.timedelta(days=40))
    store.record_delivery("new", "issues", NOW)
    assert store.prune_deliveries(NOW - dt.timedelta(days=30)) == 1
    assert [d["delivery_id"] for d in store.deliveries()] == ["new"]
    assert store.record_delivery("old", "issues", NOW)  # forgotten: GitHub redelivers for days, not months
