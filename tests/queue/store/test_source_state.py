from __future__ import annotations

import datetime as dt

from adw_modules.queue.store import Store
from adw_modules.queue.tasks import NewTask, TaskState

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


def test_pruning_a_task_retires_its_source_state_until_the_key_is_used_again(store: Store) -> None:
    done, _ = store.upsert_task(NewTask("github", "acme/app#1", "done"))
    store.update_source_state(done.id, {"trigger_event_id": 41}, NOW)
    store.request_cancel(done.id, NOW)  # queued -> cancelled: terminal
    bare, _ = store.upsert_task(NewTask("local", "x", "no source state"))
    store.request_cancel(bare.id, NOW)
    live, _ = store.upsert_task(NewTask("github", "acme/app#2", "still queued"))
    store.update_source_state(live.id, {"trigger_event_id": 42}, NOW)

    assert store.prune(NOW + dt.timedelta(seconds=1), None)["tasks"] == 2

    retired = store.retired_source("github", "acme/app#1")
    assert retired is not None and retired["state"] == "cancelled" and retired["data"] == {"trigger_event_id": 41}
    assert store.retired_source("local", "x") == {"state": "cancelled", "data": {}, "retired_at": retired["retired_at"]}
    assert store.retired_source("github", "acme/app#2") is None  # not pruned: nothing retired
    again, created = store.upsert_task(NewTask("github", "acme/app#1", "asked again"))
    assert created and store.source_state(again.id) == {}
    assert store.retired_source("github", "acme/app#1") is None
