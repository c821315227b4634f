"""What a webhook delivery does: the same intake, commands and cancellation as polling, for one issue.

``route(source, event, payload)`` runs on the receiver's worker thread, under the source's lock
(so it never interleaves with a poll or a sync).  The payload says what happened and to which
issue; who may trigger is still read from the API (the latest ``labeled`` or ``assigned`` event,
the user's permission, cached), exactly as a poll would, so a delivery cannot widen who starts runs.

Payload shapes: GitHub's "Webhook events and payloads" (docs.github.com/en/webhooks/webhook-events-and-payloads)
and the ``webhook-issues-*``, ``webhook-issue-comment-created``, ``webhook-pull-request-review-*``
schemas of its OpenAPI description.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from adw_modules.queue.tasks import Task
from adw_modules.sources.github import acks, triggers
from adw_modules.sources.github.client import LabelEvent

if TYPE_CHECKING:
    from adw_modules.sources.github.source import GitHubSource

log = logging.getLogger("adw.github")


def route(source: GitHubSource, event: str, payload: dict[str, Any]) -> None:
    repo = str((payload.get("repository") or {}).get("full_name") or "")
    if repo not in source.cfg.repositories:
        log.info(f"webhook {event} for {repo or 'no repository'}: not one of ours, ignored")
        return
    action = str(payload.get("action") or "")
    if (payload.get("sender") or {}).get("login") == source.client.me():
        return  # our own labels, comments and reactions come back as deliveries too
    if event == "issues":
        _issues(source, repo, action, payload)
    elif event == "issue_comment":
        issue = payload.get("issue") or {}
        _comment(source, repo, issue, payload.get("comment") or {})
    elif event in ("pull_request_review", "pull_request_review_comment"):
        pull = payload.get("pull_request") or {}
        item = payload.get("review") if event == "pull_request_review" else payload.get("comment")
        _pull_review(source, repo, int(pull.get("number") or 0), item or {})


def _issues(source: GitHubSource, repo: str, action: str, payload: dict[str, Any]) -> None:
    issue = payload.get("issue") or {}
    number = int(issue.get("number") or 0)
    if not number or "pull_request" in issue:
        return
    own = source.client.me()
    labels = {lb.get("name") for lb in issue.get("labels") or [] if isinstance(lb, dict)}
    labelled = source.cfg.trigger_label in labels and issue.get("state") == "open"
    label = str((payload.get("label") or {}).get("name") or "")
    if ((action == "labeled" and label == source.cfg.trigger_label) or action == "reopened") and labelled:
        source.intake_issue(repo, number, issue)
    elif action == "assigned" and (payload.get("assignee") or {}).get("login") == own:
        source.assigned(repo, number, issue)
    elif action == "opened":
        body = str(issue.get("body") or "")
        instruction = triggers.find_mention(body, source.mention(own)) if source.cfg.mention_trigger else None
        if instruction is not None:
            source.mentioned(repo, number, issue, author(issue, int(issue.get("id") or 0)), None, instruction)
        elif labelled:
            source.intake_issue(repo, number, issue)
    if action in ("unassigned", "closed") or (action == "unlabeled" and label == source.cfg.trigger_label):
        source.departed(repo, number, issue)


def author(item: dict[str, Any], item_id: int) -> LabelEvent:
    """Who wrote ``item`` (an issue, a comment, a review), as a trigger event with id ``item_id``."""
    user = item.get("user") or {}
    return LabelEvent(item_id, str(user.get("login", "")), str(user.get("type", "User")))


def _comment(source: GitHubSource, repo: str, issue: dict[str, Any], comment: dict[str, Any]) -> None:
    number = int(issue.get("number") or 0)
    if not number or not comment.get("id"):
        return
    own = source.client.me()
    if "pull_request" in issue:
        found = task_of_pull(source, repo, number)
        if found is not None:
            pr_task, pr_state = found
            source.commands(repo, number, pr_task, pr_state, own, [comment], "last_pr_comment_id")
        return
    task = source.task_of_issue(repo, number)
    state = source.store.source_state(task.id) if task is not None else {}
    if task is not None and state.get("trigger_event_id"):
        source.commands(repo, number, task, state, own, [comment], "last_comment_id")
        return
    instruction = source.instruction_in(str(comment.get("body") or "").strip(), own)
    if instruction is None or (comment.get("user") or {}).get("login") == own:
        return
    source.mentioned(repo, number, issue, author(comment, int(comment["id"])), int(comment["id"]), instruction)


def _pull_review(source: GitHubSource, repo: str, number: int, item: dict[str, Any]) -> None:
    """A review, or an inline comment, on a task's pull request: a command or a mention in it
    is a command (the review itself reaches the next round's prompt as before)."""
    found = task_of_pull(source, repo, number) if number else None
    if found is None or not item.get("id"):
        return
    task, _state = found
    own = source.client.me()
    instruction = source.instruction_in(str(item.get("body") or "").strip(), own)
    if instruction is None or (item.get("user") or {}).get("login") == own:
        return
    who = author(item, int(item["id"]))
    decision = triggers.decide(source.cfg, who, own, lambda login: source.client.permission(repo, login))
    target = f"pulls/comments/{item['id']}" if "path" in item else f"issues/{number}"
    if not decision.allowed:
        acks.react(source.client, repo, target, "confused")
        return
    acks.react(source.client, repo, target, "eyes")
    source.follow_up(task, who.actor, instruction, int(item["id"]))


def task_of_pull(source: GitHubSource, repo: str, pr: int) -> tuple[Task, dict[str, Any]] | None:
    """The task whose pull request is ``pr`` (and its source state), among those touched within
    ``PR_WATCH`` (as polling watches them: an older pull request is resumed by re-labelling)."""
    from adw_modules.sources.github.source import PR_WATCH, SOURCE  # source imports this module

    for task in source.store.tasks_by_source(SOURCE, updated_since=source.clock() - PR_WATCH):
        if task.repo == repo:
            state = source.store.source_state(task.id)
            if int(state.get("pr_number") or 0) == pr:
                return task, state
    return None
