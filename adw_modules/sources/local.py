"""Where tasks come from.  The local queue is the embedded default: ``adw enqueue`` writes
straight into the store.  (GitHub issues arrive as another source in a later issue.)"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from adw_modules.queue.store import Store
from adw_modules.queue.tasks import PRIORITY_RANK, NewTask, Task

LOCAL = "local"


def enqueue_local(
    store: Store,
    title: str,
    body: str = "",
    *,
    priority: str = "normal",
    labels: Iterable[str] = (),
    repo: str | None = None,
    external_id: str | None = None,
) -> Task:
    """Add a local task.  Give ``external_id`` to make the call idempotent (a retried script)."""
    if priority not in PRIORITY_RANK:
        raise ValueError(f"priority {priority!r} is unknown (known: {', '.join(PRIORITY_RANK)})")
    if not title.strip():
        raise ValueError("a task needs a title")
    new = NewTask(
        source=LOCAL,
        external_id=external_id or uuid.uuid4().hex,
        title=title.strip(),
        body=body,
        labels=tuple(dict.fromkeys(labels)),
        priority=priority,
        repo=repo,
    )
    task, _ = store.upsert_task(new)
    return task
