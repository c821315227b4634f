"""The console's store reads on SQLite and PostgreSQL: keyset task pages with filters,
spend series, the change marker, leaders, recent durations."""

from __future__ import annotations

import datetime as dt

from adw_modules.queue.store import Store, TaskFilter
from adw_modules.queue.tasks import AttemptEnd, AttemptStart, CircuitState, ProviderState, TaskState, Transition
from adw_modules.sources.local import enqueue_local

T0 = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.UTC)


def _run(store: Store, task_id: int, at: dt.datetime, provider: str, cost: float, model_usage: dict | None = None):
    claimed = store.claim_task("o", at + dt.timedelta(minutes=5), at, task_id=task_id)
    assert claimed is not None
    start = AttemptStart(provider, "m", None, {}, "fp", "host")
    attempt = store.start_attempt(task_id, "o", start, at)
    assert attempt is not None
    end = AttemptEnd(outcome="success", input_tokens=10, output_tokens=5, cost_usd=cost, model_usage=model_usage or {})
    assert store.finish_attempt(attempt.id, "o", end, Transition(TaskState.SUCCEEDED), at + dt.timedelta(seconds=30))


def test_task_pages_walk_every_match_once_newest_first(store: Store) -> None:
    for i in range(7):
        enqueue_local(store, f"task {i} 100%_done", "", labels=["docs", "ünï"] if i % 2 else ["bug"], repo="a/b")
    seen, after = [], None
    while True:
        page, after = store.task_page(TaskFilter(), after, limit=3)
        seen += [t.id for t in page]
        if after is None:
            break
    assert seen == [7, 6, 5, 4, 3, 2, 1]
    assert [t.id for t in store.task_page(TaskFilter(label="docs"))[0]] == [6, 4, 2]
    assert [t.id for t in store.task_page(TaskFilter(label="ünï"))[0]] == [6, 4, 2]
    assert store.task_page(TaskFilter(label="doc"))[0] == []  # a whole label, not a part
    assert [t.id for t in store.task_page(TaskFilter(text="TASK 3"))[0]] == [4]
    assert len(store.task_page(TaskFilter(text="100%_"))[0]) == 7
    assert store.task_page(TaskFilter(text="%"))[0] != [] and store.task_page(TaskFilter(text="x%"))[0] == []
    assert store.task_page(TaskFilter(repo="a/c"))[0] == []
    assert len(store.task_page(TaskFilter(state="queued", source="local", repo="a/b"))[0]) == 7
    _run(store, 3, T0, "p1", 0.5)
    assert [t.id for t in store.task_page(TaskFilter(provider="p1"))[0]] == [3]


def test_usage_series_by_day_hour_provider_model_label(store: Store) -> None:
    a = enqueue_local(store, "a", "", labels=["docs", "bug"])
    b = enqueue_local(store, "b", "")
    _run(
        store,
        a.id,
        T0,
        "p1",
        1.0,
        {"m": {"input_tokens": 8, "cost_usd": 0.75}, "h": {"input_tokens": 2, "cost_usd": 0.25}},
    )
    _run(store, b.id, T0 + dt.timedelta(hours=25), "p2", 2.0)
    since = T0 - dt.timedelta(days=1)
    days = store.usage_series("day", "provider", since)
    assert [(r["bucket"], r["key"], r["cost_usd"]) for r in days] == [
        ("2026-12-01", "p1", 1.0),
        ("2026-12-02", "p2", 2.0),
    ]
    hours = store.usage_series("hour", "provider", since)
    assert [r["bucket"] for r in hours] == ["2026-12-01 10:00", "2026-12-02 11:00"]
    models = {(r["key"], r["cost_usd"]) for r in store.usage_series("day", "model", since)}
    assert models == {("m", 0.75), ("h", 0.25), ("m", 2.0)}
    labels = {(r["key"], r["cost_usd"]) for r in store.usage_series("day", "label", since)}
    assert labels == {("docs", 1.0), ("bug", 1.0), ("(unlabelled)", 2.0)}
    assert store.usage_series("day", "provider", T0 + dt.timedelta(days=2)) == []


def test_change_marker_moves_with_each_change(store: Store) -> None:
    first = store.change_marker()
    assert store.change_marker() == first  # nothing changed: the same
    task = enqueue_local(store, "x", "")
    second = store.change_marker()
    assert second != first
    store.request_cancel(task.id, T0)  # a state change alone (no event written)
    third = store.change_marker()
    assert third != second
    store.save_provider_state(ProviderState("p1", circuit=CircuitState.OPEN))  # provider health
    assert store.change_marker() != third


def test_leaders_and_recent_durations(store: Store) -> None:
    assert store.leaders() == {}
    store.acquire_leader("github", "owner-1", T0 + dt.timedelta(minutes=1), T0)
    assert store.leaders()["github"]["owner"] == "owner-1"
    task = enqueue_local(store, "x", "")
    _run(store, task.id, T0, "p1", 0.1)
    assert store.recent_durations() == {"p1": [30.0]}


def test_spend_cache_agrees_with_a_fresh_sum_as_settled_hours_change(store: Store) -> None:
    from adws.web.spendcache import SpendCache

    def fresh(now: dt.datetime) -> dict:
        return {by: store.usage_series("hour", by, since) for by in ("provider", "model", "label")}

    since, now = T0 - dt.timedelta(hours=2), T0 + dt.timedelta(hours=3)
    c = enqueue_local(store, "c", "", labels=["bug", "docs"])
    d = enqueue_local(store, "d", "", labels=["docs"])  # "docs" first here: grouped by value, not position
    _run(store, c.id, T0, "p1", 1.0, {"m": {"input_tokens": 8, "cost_usd": 0.75}, "h": {"cost_usd": 0.25}})
    _run(store, d.id, T0 + dt.timedelta(hours=1), "p2", 2.0)
    cache = SpendCache()
    first = cache.hourly(store, since, now)
    assert first == fresh(now)
    assert sum(r["cost_usd"] for r in first["label"] if r["key"] == "docs") == 3.0
    late = enqueue_local(store, "late", "", labels=["chore"])
    _run(store, late.id, T0 + dt.timedelta(minutes=10), "p1", 4.0)  # lands in an hour already summed
    assert cache.hourly(store, since, now) == fresh(now)
    running = enqueue_local(store, "running", "")
    assert store.claim_task("o", now, now, task_id=running.id) is not None
    attempt = store.start_attempt(running.id, "o", AttemptStart("p3", "m", None, {}, "fp", "host"), T0)
    assert attempt is not None and cache.hourly(store, since, now) == fresh(now)
    end = AttemptEnd(outcome="success", input_tokens=1, output_tokens=1, cost_usd=8.0)
    assert store.finish_attempt(attempt.id, "o", end, Transition(TaskState.SUCCEEDED), now)
    after = cache.hourly(store, since, now)
    assert after == fresh(now) and ("2026-12-01 10:00", "p3") in {(r["bucket"], r["key"]) for r in after["provider"]}
