"""Mentions found by polling: the bot addressed in a comment on an issue that has no task yet.

Without webhooks (or when a delivery was lost) a mention like ``@adw-bot please fix the footer``
on an issue nobody labelled must still start a run.  Reading every issue's comments would cost
a request per issue; instead one conditional request per poll per repository lists the
repository's comments updated since a watermark (``GET /repos/{o}/{r}/issues/comments?since=…``,
sorted by ``updated`` ascending).  With the watermark unchanged the URL is the same, so an idle
poll is answered 304 from the ETag and costs no rate-limit points; after a change the watermark
moves to the newest comment seen (one full request, then 304s again).

Only ``mention_trigger`` turns this on.  A comment already handled (its id at or below the
highest seen), one by the bot itself, one on a pull request (the task's pull request is polled
on its own) or on an issue whose task was triggered already (its comments are read as commands
by the task's own poll) is skipped; the rest go through ``GitHubSource.mentioned``, i.e. the same
permission check and one-time refusal as a webhook's mention.

Source: "List issue comments for a repository" (docs.github.com/rest/issues/comments).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from adw_modules.sources.github import events

if TYPE_CHECKING:
    from adw_modules.sources.github.source import GitHubSource

# How far back the first poll after a start looks: a mention written while no coordinator ran.
LOOKBACK = dt.timedelta(hours=1)


def poll_mentions(source: GitHubSource, repo: str, own: str) -> None:
    since = source.mention_since.get(repo) or _iso(source.clock() - LOOKBACK)
    source.mention_since[repo] = since
    items = source.client.repo_comments_if_changed(repo, since)
    if items is None:
        return  # 304: no comment written or edited since the watermark
    seen = source.mention_seen.get(repo, 0)
    try:
        for comment in sorted(items, key=lambda c: int(c.get("id") or 0)):
            cid = int(comment.get("id") or 0)
            if cid > seen:
                _mention_in(source, repo, own, comment)
                seen = max(seen, cid)
    except BaseException:
        # Read but not fully handled (GitHub trouble half-way): read it in full next time, not 304.
        source.client.forget_changes(f"/repos/{repo}/issues/comments")
        raise
    finally:
        source.mention_seen[repo] = seen
    newest = max((str(c.get("updated_at") or "") for c in items), default="")
    if newest > since:
        source.mention_since[repo] = newest


def _mention_in(source: GitHubSource, repo: str, own: str, comment: dict[str, Any]) -> None:
    user = comment.get("user") or {}
    if user.get("login") == own:
        return
    instruction = source.instruction_in(str(comment.get("body") or "").strip(), own)
    number = _issue_number(str(comment.get("issue_url") or ""))
    if instruction is None or number is None:
        return
    task = source.task_of_issue(repo, number)
    if task is not None and source.store.source_state(task.id).get("trigger_event_id"):
        return  # the task's own poll reads its comments as commands
    issue = source.client.issue(repo, number)
    if "pull_request" in issue or issue.get("state") != "open":
        return
    source.mentioned(repo, number, issue, events.author(comment, int(comment["id"])), int(comment["id"]), instruction)


def _issue_number(issue_url: str) -> int | None:
    tail = issue_url.rstrip("/").rsplit("/", 1)[-1]
    return int(tail) if tail.isdigit() else None


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
