from __future__ import annotations

import datetime as dt

from adw_modules.store import Store
from adw_modules.tasks import NewTask, TaskState

NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)


def test_source_state_merges_and_survives_reopen(store: Store, store_url: str) -> None:
    task, _ = store.upsert_task(NewTask("github", "acme/app#1", "t"))
    assert store.source_state(task.id) == {}
    assert store.update_source_state(task.id, {"event_id": 7}, NOW) == {"event_id": 7}
    assert store.update_source_state(task.id, {"comment_id": 99}, NOW) == {"event_id": 7, "comment_id": 99}
    again = Store.open(store_url)
    try:
        assert again.source_state(task.id) == {"event_id": 7, "comment_id": 99}
    finally:
        again.close()


def test_tasks_by_source_filters_state_and_change_time(store: Store) -> None:
    a, _ = store.upsert_task(NewTask("github", "acme/app#1", "a"))
    b, _ = store.upsert_task(NewTask("github", "acme/app#2", "b"))
    store.upsert_task(NewTask("local", "x", "c"))
    assert [t.id for t in store.tasks_by_source("github")] == [a.id, b.id]
    store.request_cancel(b.id, NOW)
    assert [t.id for t in store.tasks_by_source("github", states=[TaskState.QUEUED])] == [a.id]
    cancelled = store.get_task(b.id)
    assert cancelled is not None
    later = store.tasks_by_source("github", updated_since=cancelled.updated_at)
    assert b.id in [t.id for t in later]
