"""What became of a task's pull request (issue 16's outcome signal for ``[learning] success =
"merged"``): merged, closed unmerged, or still open, stored in the task's source state.

Read where the sync already watches the pull request's conversation, with a conditional GET:
an unchanged pull request answers 304, which costs no rate-limit points.  A decided fate
(merged or closed) is not read again.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from adw_modules.queue.store import Store
from adw_modules.queue.store.learning import PR_FATE_KEY
from adw_modules.queue.tasks import Task
from adw_modules.sources.github.client import GitHubClient

DECIDED = ("merged", "closed")


def fate_of(pull: dict[str, Any]) -> str:
    """merged | closed (unmerged) | open, from a pull request as the REST API returns it."""
    if pull.get("merged_at") or pull.get("merged"):
        return "merged"
    return "closed" if pull.get("state") == "closed" else "open"


def record_pull_fate(client: GitHubClient, store: Store, task: Task, state: dict[str, Any], now: dt.datetime) -> None:
    """Store the fate of the task's pull request if it changed (a conditional read)."""
    number = state.get("pr_number")
    if not number or not task.repo or state.get(PR_FATE_KEY) in DECIDED:
        return
    pull = client.pull_if_changed(task.repo, int(number))
    if pull is None:
        return
    fate = fate_of(pull)
    if fate == state.get(PR_FATE_KEY):
        return
    store.update_source_state(task.id, {PR_FATE_KEY: fate}, now)
    if fate in DECIDED:
        what = "merged" if fate == "merged" else "closed without merging"
        store.add_event("github.pr", f"pull request #{number} {what}", task_id=task.id, now=now)
