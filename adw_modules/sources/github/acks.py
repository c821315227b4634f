"""Acknowledgements on GitHub: reactions on what triggered a run, and replies on a pull request.

- 👀 (``eyes``) on the trigger as soon as a run is accepted: the issue for a label or an
  assignment, the comment for a mention or a ``/adw`` command; 🚀 (``rocket``) on the issue
  when its pull request opens; 😕 (``confused``) on what was refused.
- A command given on the task's pull request is answered there: "taken" at once, then edited
  to "done" (or "failed") with the round's result and cost once the round it started ends.

Reactions are courtesy: a failure to react (a permission the token lacks, a rate limit) is
logged and never holds up the run.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

from github import GithubException

from adw_modules.ops.display import format_usd
from adw_modules.queue.store import Store
from adw_modules.queue.tasks import TERMINAL_STATES, Task, TaskState
from adw_modules.sources.github.client import Backoff, GitHubClient

log = logging.getLogger("adw.github")

REPLY_MARKER = "<!-- adw:pr-reply comment={comment} -->"


def react(client: GitHubClient, repo: str, target: str, content: str) -> bool:
    """Add reaction ``content`` to ``target`` (``issues/{n}``, ``issues/comments/{id}``); False if it failed."""
    try:
        client.add_reaction(repo, target, content)
    except (GithubException, Backoff) as exc:
        why = f"GitHub answered {exc.status}" if isinstance(exc, GithubException) else exc.reason
        log.warning(
            f"github {repo}: could not react {content} on {target}: {why}",
            extra={"data": {"event": "github.reaction_failed", "target": target, "content": content}},
        )
        return False
    return True


def pr_taken(
    client: GitHubClient,
    store: Store,
    task: Task,
    repo: str,
    pr: int,
    comment_id: int,
    who: str,
    instruction: str,
    redact: Callable[[str], str],
) -> None:
    """Answer a command given on the pull request: taken (the round's end edits it to done)."""
    what = f": {instruction}" if instruction else " (run again)"
    body = f"{REPLY_MARKER.format(comment=comment_id)}\n👀 @{who}'s request is taken{_quoted(what)}"
    reply = client.create_comment(repo, pr, redact(body))
    store.update_source_state(task.id, {"pr_reply": {"comment": comment_id, "reply_id": reply, "done": False}}, _now())


def pr_done(
    client: GitHubClient, store: Store, task: Task, state: dict[str, Any], repo: str, redact: Callable[[str], str]
) -> None:
    """Once the round a pull-request command started has ended, edit its reply to say how it went."""
    reply = state.get("pr_reply") or {}
    if not reply or reply.get("done") or task.state not in TERMINAL_STATES:
        return
    if int(state.get("instruction_delivered") or 0) < int(reply.get("comment") or 0):
        return  # the round with this command has not run yet (the task ended before it was requeued)
    client.edit_comment(repo, int(reply["reply_id"]), redact(done_text(store, task, int(reply["comment"]))))
    store.update_source_state(task.id, {"pr_reply": {**reply, "done": True}}, _now())


def done_text(store: Store, task: Task, comment_id: int) -> str:
    attempts = [a for a in store.attempts_for(task.id) if a.ended_at is not None]
    since = task.round_started_at
    this_round = [a for a in attempts if since is None or a.started_at >= since]
    cost = sum(a.cost_usd for a in this_round if a.cost_usd is not None)
    headline = {TaskState.SUCCEEDED: "✅ done", TaskState.FAILED: "❌ failed", TaskState.CANCELLED: "⛔ cancelled"}
    lines = [REPLY_MARKER.format(comment=comment_id), f"{headline.get(task.state, str(task.state))}"]
    last = this_round[-1] if this_round else None
    if last is not None and last.result_text:
        lines += ["", last.result_text.strip()[:3000]]
    lines += ["", f"This round: {len(this_round)} attempt(s), cost {format_usd(cost)}."]
    return "\n".join(lines)


def _quoted(text: str) -> str:
    return text.replace("\n", " ")[:300] + "."


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
