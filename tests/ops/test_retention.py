from __future__ import annotations

import datetime as dt
import socket
from pathlib import Path

from adw_modules.config.service import RetentionConfig
from adw_modules.ops import retention
from adw_modules.queue.store import Store
from adw_modules.queue.tasks import AttemptEnd, AttemptStart, NewTask, TaskState, Transition

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
HOST = socket.gethostname()


def finished_task(store: Store, state_dir: Path, name: str, when: dt.datetime, state: TaskState) -> int:
    task, _ = store.upsert_task(NewTask("local", name, name))
    claimed = store.claim_task("o", when + dt.timedelta(minutes=5), when)
    assert claimed is not None and claimed.id == task.id
    att = store.start_attempt(task.id, "o", AttemptStart("p", "m", None, {}, "f", HOST), when)
    assert att is not None
    log = state_dir / "attempts" / f"task-{task.id}" / "attempt-1" / "stdout.jsonl"
    log.parent.mkdir(parents=True)
    log.write_text("{}\n")
    store.finish_attempt(att.id, "o", AttemptEnd("success", log_path=str(log)), Transition(state), when)
    store.add_event("x", "old event", task_id=task.id, now=when)
    return task.id


def test_prune_keeps_recent_and_active_work(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    store = Store.open(f"sqlite:///{state_dir / 'adw.db'}")
    old = finished_task(store, state_dir, "old", T0, TaskState.SUCCEEDED)
    mid = finished_task(store, state_dir, "mid", T0 + dt.timedelta(days=80), TaskState.FAILED)
    queued, _ = store.upsert_task(NewTask("local", "waiting", "waiting"))
    store.add_event("y", "recent", now=T0 + dt.timedelta(days=99))
    store.add_event("z", "stale", now=T0 + dt.timedelta(days=10))
    now = T0 + dt.timedelta(days=100)
    cfg = RetentionConfig(transcripts_days=14, finished_tasks_days=90, events_days=30)

    result = retention.prune(store, cfg, state_dir, HOST, now)

    assert result == {"transcripts": 2, "tasks": 1, "events": 1}
    assert store.get_task(old) is None and store.attempts_for(old) == []
    assert store.get_task(mid) is not None and store.attempts_for(mid)[0].log_path is None
    assert not (state_dir / "attempts" / f"task-{mid}").exists() or not any(
        (state_dir / "attempts" / f"task-{mid}").rglob("stdout.jsonl")
    )
    assert store.get_task(queued.id) is not None
    assert sorted(e["message"] for e in store.events()) == ["old event", "recent"]  # mid's event is recent enough
    assert retention.prune(store, cfg, state_dir, HOST, now) == {"transcripts": 0, "tasks": 0, "events": 0}
    store.close()


def test_prune_never_deletes_outside_the_state_dir(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    elsewhere = tmp_path / "precious"
    store = Store.open(f"sqlite:///{state_dir / 'adw.db'}")
    task_id = finished_task(store, elsewhere, "t", T0, TaskState.SUCCEEDED)
    retention.prune(
        store,
        RetentionConfig(transcripts_days=1, finished_tasks_days=None, events_days=None),
        state_dir,
        HOST,
        T0 + dt.timedelta(days=2),
    )
    assert (elsewhere / "attempts" / f"task-{task_id}" / "attempt-1" / "stdout.jsonl").exists()
    store.close()
