"""GitHub issues as a task source: intake, cancellation, and the issue's view of the task.

``poll()`` (every ``poll_interval_s``, by the one coordinator holding the ``github`` leader
lease) lists each repository's open issues carrying the trigger label — conditionally, so an
idle cycle costs no rate-limit points — and:

- an issue that newly carries the label is checked: who applied it (latest ``labeled``
  event) and may they? If yes, it is upserted as a task keyed ``owner/name#N`` (a restart or
  a second coordinator never duplicates it); a terminal task whose label was re-applied is
  queued again.  If not, the refusal is logged and answered once with a short comment;
- an active task whose issue is no longer listed is looked up: closed, or label removed,
  cancels it (a running worker is killed by its coordinator).

``sync()`` (every ``sync_interval_s``) brings each changed GitHub task's issue up to date:
the lifecycle label and the single progress comment (found again by its hidden marker,
edited in place, secrets redacted).  Both are idempotent, so a crash between a store write
and a GitHub write is repaired by the next cycle.

A ``/adw`` command that arrives while an attempt runs cannot reach that attempt's prompt: it
is kept (``instruction_id`` in the source state, the comment's id), the prompt records which
command it was built with (``instruction_delivered``), and ``sync()`` queues the next round
once the attempt has ended (succeeded or failed; not cancelled) without it.  A command is
acted on once (``instruction_requeued``), so a round that fails before its prompt is built
does not loop.

``prompt()`` honours GitHub's backoff: while the client is rate-limited or backing off an
outage, or when a fetch is answered so, it raises ``outcomes.NotReady`` with the time GitHub
gave, and the coordinator puts the task back until then instead of asking again each pass.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import threading
from collections.abc import Callable
from typing import Any

import github
from github import GithubException

from adw_modules.config.github import GitHubConfig
from adw_modules.ops.redact import Redactor
from adw_modules.outcomes import NotReady
from adw_modules.queue.store import Store
from adw_modules.queue.tasks import PRIORITY_RANK, TERMINAL_STATES, NewTask, Task, TaskState
from adw_modules.sources.github import acks, events, mentions, progress, triggers
from adw_modules.sources.github.client import Backoff, GitHubClient, LabelEvent
from adw_modules.sources.github.fate import record_pull_fate

log = logging.getLogger("adw.github")

SOURCE = "github"
ACTIVE = (TaskState.QUEUED, TaskState.RUNNING, TaskState.RETRY_WAIT)
# Re-read a little behind the watermark: clocks and commits race.
SYNC_OVERLAP = dt.timedelta(seconds=2)
# How long a finished task's pull request is watched for /adw commands.
PR_WATCH = dt.timedelta(days=14)
# The ends of an attempt after which a command that came during it starts the next round.
FOLLOW_UP_AFTER = (TaskState.SUCCEEDED, TaskState.FAILED)


def external_id(repo: str, number: int) -> str:
    return f"{repo}#{number}"


def issue_digest(issue: dict[str, Any]) -> str:
    """What we compare to notice a change: ``updated_at`` has one-second resolution, so two
    changes in one second look alike; the comment count and the text tell them apart."""
    labels = sorted(lb.get("name", "") for lb in issue.get("labels", []) if isinstance(lb, dict))
    key = [issue.get("updated_at"), issue.get("comments"), issue.get("title"), issue.get("body"), labels]
    return hashlib.sha256(json.dumps(key, default=str).encode()).hexdigest()[:16]


def issue_number(task: Task) -> int:
    return int(task.external_id.rsplit("#", 1)[1])


class GitHubSource:
    def __init__(
        self,
        cfg: GitHubConfig,
        store: Store,
        client: GitHubClient,
        *,
        redact: Redactor | None = None,
        max_attempts: int = 8,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.client = client
        self.redact = redact or Redactor()
        self.max_attempts = max_attempts
        self.clock = clock
        self.backoff_until: dt.datetime | None = None
        self.backoff_reason: str | None = None
        self._listed: dict[str, set[int]] = {}  # repo -> issue numbers seen labelled last poll
        self._refused: set[int] = set()  # label event ids already answered
        # issue -> its digest when we last decided not to run it (refused, or the label is the
        # one that ran its since-pruned task)
        self._passed_over: dict[tuple[str, int], Any] = {}
        self._sync_watermark: dt.datetime | None = None
        self._assigned_listed: dict[str, set[int]] = {}  # repo -> issues assigned to us last poll
        self.mention_since: dict[str, str] = {}  # repo -> watermark of the comments listing (``mentions``)
        self.mention_seen: dict[str, int] = {}  # repo -> the highest comment id looked at for a mention
        self._lock = threading.RLock()

    # ------------------------------------------------------------ guarded entry points
    def _guard(self, what: str, fn: Callable[[], None]) -> bool:
        now = self.clock()
        if self.backoff_until is not None and now < self.backoff_until:
            return False
        try:
            with self._lock:  # a poll, a sync and webhook deliveries take turns
                fn()
        except GithubException as exc:  # not a rate limit or an outage (those are Backoff): log, go on
            log.warning(
                f"github {what} failed: GitHub answered {exc.status}",
                extra={"data": {"event": "github.error", "what": what, "status": exc.status}},
            )
            return False
        except Backoff as exc:
            self.backoff_until, self.backoff_reason = exc.until, exc.reason
            log.warning(
                f"github {what} paused until {exc.until:%H:%M:%S} UTC: {exc.reason}",
                extra={"data": {"event": "github.backoff", "until": exc.until, "reason": exc.reason}},
            )
            return False
        self.backoff_until = self.client.low_quota_until()
        self.backoff_reason = "rate-limit points nearly spent" if self.backoff_until else None
        return True

    def poll(self) -> bool:
        return self._guard("poll", self._poll)

    def sync(self) -> bool:
        return self._guard("sync", self._sync)

    # ------------------------------------------------------------ intake
    def _poll(self) -> None:
        own = self.client.me()
        for repo in self.cfg.repositories:
            if self.cfg.assignment_trigger:
                self._poll_assigned(repo, own)
            if self.cfg.mention_trigger:
                mentions.poll_mentions(self, repo, own)
            items = self.client.open_issues_with_label(repo, self.cfg.trigger_label)
            if items is None:
                continue  # 304: nothing changed since the last poll, at no cost
            try:
                issues = {int(i["number"]): i for i in items if "pull_request" not in i}
                before = self._listed.get(repo)
                for number, issue in issues.items():
                    self._intake(repo, number, issue, own, newly_listed=before is None or number not in before)
                self._departures(repo, set(issues))
            except BaseException:
                # The listing was read but not fully handled: read it in full next time.
                self.client.forget_changes(f"/repos/{repo}/")
                raise
            self._listed[repo] = set(issues)
        self._pull_request_commands(own)

    def _poll_assigned(self, repo: str, own: str) -> None:
        """Issues newly assigned to the bot (conditional listing: free when nothing changed)."""
        items = self.client.assigned_issues(repo, own)
        if items is None:
            return
        issues = {int(i["number"]): i for i in items if "pull_request" not in i}
        before = self._assigned_listed.get(repo, set())
        try:
            for number in sorted(set(issues) - before):
                self.assigned(repo, number, issues[number])
        except BaseException:
            self.client.forget_changes(f"/repos/{repo}/issues?")
            raise
        self._assigned_listed[repo] = set(issues)

    def _intake(self, repo: str, number: int, issue: dict[str, Any], own: str, newly_listed: bool) -> None:
        task = self.store.find_task(SOURCE, external_id(repo, number))
        state = self.store.source_state(task.id) if task else {}
        if task is not None and not newly_listed and state.get("issue_digest") == issue_digest(issue):
            return  # nothing about this issue changed
        if task is None and not newly_listed and self._passed_over.get((repo, number)) == issue_digest(issue):
            return  # passed over before, still listed, and nobody has touched it since
        if task is not None and not newly_listed and state.get("trigger_event_id"):
            # An edit or a comment.  The task keeps the text as it was when a writer applied the
            # label: anyone may edit an issue, and approval was for that text (re-label to refresh).
            self.commands(repo, number, task, state, own)
            self.store.update_source_state(task.id, {"issue_digest": issue_digest(issue)}, self.clock())
            return
        retired = self.store.retired_source(SOURCE, external_id(repo, number)) if task is None else None
        event = self.client.latest_label_event(repo, number, self.cfg.trigger_label)
        if task is not None and event is not None and state.get("trigger_event_id") == event.event_id:
            self.store.update_source_state(task.id, {"issue_digest": issue_digest(issue)}, self.clock())
            return  # same trigger as before (e.g. after a restart): never re-run a finished task for it
        if retired is not None and event is not None and retired["data"].get("trigger_event_id") == event.event_id:
            self._passed_over[(repo, number)] = issue_digest(issue)
            return  # the label that ran the pruned task: re-label to run it again
        decision = triggers.decide(self.cfg, event, own, lambda login: self.client.permission(repo, login))
        if not decision.allowed:
            self._refuse(repo, number, decision)
            self._passed_over[(repo, number)] = issue_digest(issue)
            return
        self._accept(repo, number, issue, decision, kind="label", state=state)

    def _accept(
        self,
        repo: str,
        number: int,
        issue: dict[str, Any],
        decision: triggers.TriggerDecision,
        *,
        kind: str,
        state: dict[str, Any],
        comment_id: int | None = None,
        instruction: str = "",
    ) -> Task:
        """Start (or start again) the issue's task for an allowed trigger: a label, an assignment
        (``kind``), or a mention in comment ``comment_id`` whose ``instruction`` the prompt carries."""
        assert decision.event is not None
        task, created = self._upsert(repo, number, issue)
        requeued = False
        if not created and task.state in TERMINAL_STATES:
            requeued = self.store.requeue_task(task.id, self.clock(), reset_retries=True)
        # Commands count from now on: earlier comments were written before this trigger.
        seen = max((int(c["id"]) for c in self.client.comments(repo, number)), default=0)
        changes: dict[str, Any] = {
            "trigger_event_id": decision.event.event_id,
            "trigger_actor": decision.event.actor,
            "trigger_kind": kind,
            "issue_digest": issue_digest(issue),
            "last_comment_id": max(seen, int(state.get("last_comment_id") or 0)),
            # A new trigger is a new request: an earlier round's instruction is not repeated.
            "instruction": instruction,
            "instruction_by": decision.event.actor if instruction else None,
        }
        if comment_id is not None:
            changes.update(include_thread=True, instruction_id=comment_id, instruction_requeued=comment_id)
        self.store.update_source_state(task.id, changes, self.clock())
        what = "queued" if created else ("queued again" if requeued else "refreshed")
        self.store.add_event("github.trigger", f"{what}: {decision.reason}", task_id=task.id, now=self.clock())
        log.info(
            f"github {repo}#{number} {what} ({kind}): {decision.reason}",
            extra={"data": {"event": "github.trigger", "task": task.id, "repo": repo, "issue": number, "kind": kind}},
        )
        target = f"issues/comments/{comment_id}" if comment_id is not None else f"issues/{number}"
        acks.react(self.client, repo, target, "eyes")
        return task

    def _upsert(self, repo: str, number: int, issue: dict[str, Any]) -> tuple[Task, bool]:
        labels = [lb["name"] for lb in issue.get("labels", []) if isinstance(lb, dict)]
        ours = self.cfg.lifecycle_labels() | {self.cfg.trigger_label}
        priority = "normal"
        for label in labels:
            mapped = self.cfg.priority_labels.get(label)
            if mapped is not None and (priority == "normal" or PRIORITY_RANK[mapped] < PRIORITY_RANK[priority]):
                priority = mapped
        return self.store.upsert_task(
            NewTask(
                source=SOURCE,
                external_id=external_id(repo, number),
                title=triggers.sanitize(issue.get("title")),
                body=triggers.sanitize(issue.get("body")),
                labels=tuple(lb for lb in labels if lb not in ours),
                priority=priority,
                repo=repo,
                url=issue.get("html_url"),
            )
        )

    def _pull_request_commands(self, own: str) -> None:
        """Commands in the conversation of a task's pull request, and on the issue of a task a mention
        or an assignment started (conditional reads: free when unchanged)."""
        recent = self.clock() - PR_WATCH
        for task in self.store.tasks_by_source(SOURCE, states=[*TERMINAL_STATES, TaskState.RETRY_WAIT]):
            if task.repo not in self.cfg.repositories or task.updated_at < recent:
                continue  # a PR idle for weeks is merged or abandoned: re-label the issue to resume
            state = self.store.source_state(task.id)
            pr = int(state.get("pr_number") or 0)
            comments = self.client.comments_if_changed(task.repo or "", pr) if pr else None
            if comments is not None:
                self.commands(task.repo or "", pr, task, state, own, comments, "last_pr_comment_id")
            if pr:
                record_pull_fate(self.client, self.store, task, state, self.clock())  # issue 16: merged?
            if state.get("trigger_kind") in ("mention", "assignment"):
                # Not in the labelled listing, whose changes bring the issue's comments: read them here.
                issue_comments = self.client.comments_if_changed(task.repo or "", issue_number(task))
                if issue_comments is not None:
                    self.commands(task.repo or "", issue_number(task), task, state, own, issue_comments)

    def commands(
        self,
        repo: str,
        number: int,
        task: Task,
        state: dict[str, Any],
        own: str,
        comments: list[dict[str, Any]] | None = None,
        seen_key: str = "last_comment_id",
    ) -> None:
        """``/adw retry`` or ``/adw <instructions>`` from someone allowed to trigger requeues the task,
        with the issue thread (and the instructions) in its next prompt.  ``number`` is the issue's
        or its pull request's (whose conversation is read the same way)."""
        last = int(state.get(seen_key) or 0)
        newest = last
        for c in comments if comments is not None else self.client.comments(repo, number):
            cid = int(c["id"])
            if cid <= last:
                continue
            newest = max(newest, cid)
            # Seen before acting: a failure below must not replay an earlier command later.
            self.store.update_source_state(task.id, {seen_key: newest}, self.clock())
            body = (c.get("body") or "").strip()
            user = c.get("user") or {}
            instruction = self.instruction_in(body, own)
            if instruction is None or user.get("login") == own:
                continue  # not addressed to adw, or our own words (which may quote an instruction)
            who = events.author(c, cid)
            decision = triggers.decide(self.cfg, who, own, lambda login: self.client.permission(repo, login))
            if not decision.allowed:
                log.warning(
                    f"github {repo}#{number}: command refused: {decision.reason}",
                    extra={"data": {"event": "github.command_refused", "task": task.id}},
                )
                self.client.create_comment(
                    repo,
                    number,
                    self.redact(
                        f"<!-- adw:refused-command comment={cid} -->\n`{self.cfg.command}` was not run: commands count "
                        f"only from people with write access to this repository, and {decision.reason}."
                    ),
                )
                acks.react(self.client, repo, f"issues/comments/{cid}", "confused")
                continue
            acks.react(self.client, repo, f"issues/comments/{cid}", "eyes")
            if instruction.lower() == "retry":
                instruction = ""
            self.follow_up(task, who.actor, instruction, cid)
            if seen_key == "last_pr_comment_id":  # asked on the pull request: answered there
                acks.pr_taken(self.client, self.store, task, repo, number, cid, who.actor, instruction, self.redact)
        if newest != last:
            self.store.update_source_state(task.id, {seen_key: newest}, self.clock())

    def follow_up(self, task: Task, who: str, instruction: str, cid: int) -> None:
        """Queue the next round of ``task`` for ``who``'s instruction (comment or review ``cid``)."""
        # Stored before the task's state is read: if it reads running, the attempt's end comes
        # later and ``sync`` sees this command then (see ``_follow_up``).
        command = {"include_thread": True, "instruction": instruction, "instruction_by": who}
        self.store.update_source_state(task.id, {**command, "instruction_id": cid}, self.clock())
        current = self.store.get_task(task.id)
        if current is not None and current.state in (*TERMINAL_STATES, TaskState.RETRY_WAIT):
            self.store.requeue_task(task.id, self.clock(), reset_retries=True)
            self.store.update_source_state(task.id, {"instruction_requeued": cid}, self.clock())
        event = f"@{who}: {self.cfg.command} {instruction}".strip()
        self.store.add_event("github.command", event, task_id=task.id, now=self.clock())

    # ------------------------------------------------------------ webhook deliveries (see ``events``)
    def handle_event(self, event: str, payload: dict[str, Any]) -> bool:
        """Act on one verified, first-seen webhook delivery; False if GitHub trouble stopped it
        (the next poll reconciles)."""
        return self._guard(f"webhook {event}", lambda: events.route(self, event, payload))

    def intake_issue(self, repo: str, number: int, issue: dict[str, Any]) -> None:
        """A labelled issue, as a poll would find it newly listed."""
        self._intake(repo, number, issue, self.client.me(), newly_listed=True)

    def task_of_issue(self, repo: str, number: int) -> Task | None:
        return self.store.find_task(SOURCE, external_id(repo, number))

    def assigned(self, repo: str, number: int, issue: dict[str, Any]) -> None:
        """The issue was assigned to the bot: who did it (the ``assigned`` event), and may they?"""
        own = self.client.me()
        if not self.cfg.assignment_trigger:
            return
        event = self.client.latest_assignment(repo, number, own)
        task = self.task_of_issue(repo, number)
        state = self.store.source_state(task.id) if task is not None else {}
        if event is None or state.get("trigger_event_id") == event.event_id:
            return  # not found, or the assignment that already ran
        decision = triggers.decide(self.cfg, event, own, lambda login: self.client.permission(repo, login))
        if not decision.allowed:
            self._refuse(repo, number, decision, kind="assignment")
            return
        self._accept(repo, number, issue, decision, kind="assignment", state=state)

    def mentioned(
        self, repo: str, number: int, issue: dict[str, Any], who: LabelEvent, cid: int | None, instruction: str
    ) -> None:
        """``who`` mentioned the bot in the issue (``cid`` None) or in comment ``cid`` of an issue
        without a triggered task: start one with the text after the mention as its instruction."""
        own = self.client.me()
        decision = triggers.decide(self.cfg, who, own, lambda login: self.client.permission(repo, login))
        if not decision.allowed:
            self._refuse(repo, number, decision, kind="mention", comment_id=cid)
            return
        task = self.task_of_issue(repo, number)
        state = self.store.source_state(task.id) if task is not None else {}
        self._accept(
            repo, number, issue, decision, kind="mention", state=state, comment_id=cid, instruction=instruction
        )

    def departed(self, repo: str, number: int, issue: dict[str, Any]) -> None:
        """Unlabelled, unassigned or closed: cancel the issue's active task if its trigger is gone."""
        task = self.task_of_issue(repo, number)
        if task is not None and task.state in ACTIVE:
            self._cancel_if_gone(repo, task, issue)

    def mention(self, own: str) -> str:
        return self.cfg.mention or f"@{own}"

    def instruction_in(self, body: str, own: str) -> str | None:
        """The instruction a comment gives adw: the text after ``/adw`` at its start, or (with
        ``mention_trigger``) after the first mention of the bot; None if it addresses adw not."""
        if body == self.cfg.command or body.startswith(self.cfg.command + " "):
            return body[len(self.cfg.command) :].strip()
        if self.cfg.mention_trigger:
            found = triggers.find_mention(body, self.mention(own))
            if found is not None:
                return found
        return None

    def _refuse(
        self,
        repo: str,
        number: int,
        decision: triggers.TriggerDecision,
        *,
        kind: str = "label",
        comment_id: int | None = None,
    ) -> None:
        """Log a refused trigger and answer it once (a comment, and 😕 on what triggered)."""
        log.warning(
            f"github {repo}#{number}: {kind} trigger refused: {decision.reason}",
            extra={"data": {"event": "github.refused", "repo": repo, "issue": number, "reason": decision.reason}},
        )
        if decision.event is None or decision.event.event_id in self._refused:
            return
        if kind == "mention" and triggers.is_bot(decision.event):
            return  # no answer to a bot's mention: two bots answering each other would never stop
        marker = f"<!-- adw:refused event={decision.event.event_id} -->"
        if not any(marker in (c.get("body") or "") for c in self.client.comments(repo, number)):
            body = progress.refusal(decision.event.event_id, decision.reason, self.cfg.trigger_label, kind)
            self.client.create_comment(repo, number, self.redact(body))
            target = f"issues/comments/{comment_id}" if comment_id is not None else f"issues/{number}"
            acks.react(self.client, repo, target, "confused")
        self._refused.add(decision.event.event_id)

    def _departures(self, repo: str, listed: set[int]) -> None:
        for task in self.store.tasks_by_source(SOURCE, states=ACTIVE):
            if task.repo != repo or issue_number(task) in listed:
                continue
            self._cancel_if_gone(repo, task, self.client.issue(repo, issue_number(task)))

    def _cancel_if_gone(self, repo: str, task: Task, issue: dict[str, Any]) -> None:
        """Cancel ``task`` if what triggered it is gone: the issue closed, or (by its trigger) the
        label removed or the bot unassigned.  A mention stays valid while the issue is open."""
        kind = self.store.source_state(task.id).get("trigger_kind") or "label"
        labels = {lb["name"] for lb in issue.get("labels", []) if isinstance(lb, dict)}
        assignees = {a.get("login") for a in issue.get("assignees") or [] if isinstance(a, dict)}
        if issue.get("state") == "closed":
            why = "issue closed"
        elif kind == "label" and self.cfg.trigger_label not in labels:
            why = f'label "{self.cfg.trigger_label}" removed'
        elif kind == "assignment" and self.client.me() not in assignees:
            why = f"@{self.client.me()} unassigned"
        else:
            return  # still wanted (e.g. listed on a page that changed under us)
        state = self.store.request_cancel(task.id, self.clock(), reason=f"{why} on GitHub")
        self.store.add_event("github.cancel", f"{why}: cancel ({state})", task_id=task.id, now=self.clock())
        log.info(
            f"github {repo}#{issue_number(task)}: {why}; task {task.id} cancelled",
            extra={"data": {"event": "github.cancel", "task": task.id, "reason": why}},
        )

    # ------------------------------------------------------------ the issue's view of the task
    def _sync(self) -> None:
        now = self.clock()
        since = None if self._sync_watermark is None else self._sync_watermark - SYNC_OVERLAP
        failed = False
        for task in self.store.tasks_by_source(SOURCE, updated_since=since):
            if task.repo not in self.cfg.repositories:
                continue
            try:
                self.sync_task(task)
            except GithubException as exc:  # one issue's trouble must not hold up the others
                failed = True
                log.warning(
                    f"github sync of task {task.id} failed: {exc.status}",
                    extra={"data": {"event": "github.sync_failed", "task": task.id, "status": exc.status}},
                )
        if not failed:
            self._sync_watermark = now  # else re-read the same window next time

    def sync_task(self, task: Task) -> None:
        repo, number = task.repo or "", issue_number(task)
        state = self.store.source_state(task.id)
        if not state.get("trigger_event_id"):
            return  # not (or no longer) triggered by an authorised label
        task = self._follow_up(task, state)
        changes: dict[str, Any] = {}
        want = progress.lifecycle_label(self.cfg, task.state)
        have = state.get("lifecycle_label")
        if want != have:
            if have:
                self.client.remove_label(repo, number, have)
            if want:
                self.client.add_label(repo, number, want)
            changes["lifecycle_label"] = want
        work = dict(state.get("workspace") or {})
        if (
            task.state is TaskState.SUCCEEDED
            and work.get("commits_ahead")
            and work.get("pushed")
            and not state.get("pr_number")
        ):
            pr, pr_body_digest = self._open_pull(task, number, str(work["branch"]))
            changes.update(pr_number=pr["number"], pr_url=pr["html_url"], last_pr_comment_id=0)
            changes.update(pr_body_digest=pr_body_digest)
            self.client.add_label(repo, number, self.cfg.labels["pr_open"])
            acks.react(self.client, repo, f"issues/{number}", "rocket")
        pr_number = changes.get("pr_number", state.get("pr_number"))
        if task.state is TaskState.SUCCEEDED and pr_number:
            # A later run (a /adw follow-up, a re-label) pushed to the same branch: say what it did.
            pr_body = self.redact(progress.pull_body(task, self.store.attempts_for(task.id), number))
            if progress.digest(pr_body) != changes.get("pr_body_digest", state.get("pr_body_digest")):
                try:
                    self.client.edit_pull_body(repo, int(pr_number), pr_body)
                except github.UnknownObjectException:
                    log.warning(f"github {repo}#{number}: pull request #{pr_number} is gone; not updating it")
                changes["pr_body_digest"] = progress.digest(pr_body)
        work.update(
            pr_number=changes.get("pr_number", state.get("pr_number")),
            pr_url=changes.get("pr_url", state.get("pr_url")),
        )
        acks.pr_done(self.client, self.store, task, state, repo, self.redact)
        body = self.redact(progress.render(task, self.store.attempts_for(task.id), self.max_attempts, work))
        digest = progress.digest(body)
        if digest != state.get("comment_digest"):
            comment_id = state.get("comment_id") or self._find_progress_comment(repo, number, task.id)
            if comment_id:
                try:
                    self.client.edit_comment(repo, int(comment_id), body)
                except github.UnknownObjectException:  # someone deleted it: post it again
                    comment_id = self.client.create_comment(repo, number, body)
            else:
                comment_id = self.client.create_comment(repo, number, body)
            changes.update(comment_id=int(comment_id), comment_digest=digest)
        if changes:
            self.store.update_source_state(task.id, changes, self.clock())

    def _follow_up(self, task: Task, state: dict[str, Any]) -> Task:
        """Queue the next round for a command that came while the task's last attempt ran (its
        prompt was built without it); the task as it now is."""
        command = int(state.get("instruction_id") or 0)
        acted_on = max(int(state.get("instruction_delivered") or 0), int(state.get("instruction_requeued") or 0))
        if command <= acted_on or task.state not in FOLLOW_UP_AFTER:
            return task
        if not self.store.requeue_task(task.id, self.clock(), reset_retries=True):
            return task  # running again already (listed before it was requeued): its end is checked
        self.store.update_source_state(task.id, {"instruction_requeued": command}, self.clock())
        who = state.get("instruction_by")
        self.store.add_event(
            "github.command",
            f"@{who}'s command came while the task ran: the next round is queued",
            task_id=task.id,
            now=self.clock(),
        )
        log.info(
            f"github task {task.id}: @{who}'s command came during the run; queued again",
            extra={"data": {"event": "github.follow_up", "task": task.id, "comment": command}},
        )
        return self.store.get_task(task.id) or task

    def _open_pull(self, task: Task, number: int, branch: str) -> tuple[dict[str, Any], str | None]:
        """The task's draft PR and the digest of the description it was opened with (None for an
        open one reused for the branch, e.g. after a crash: its description is not known)."""
        repo = task.repo or ""
        existing = self.client.open_pull_for(repo, branch)
        if existing is not None:
            return existing, None
        body = self.redact(progress.pull_body(task, self.store.attempts_for(task.id), number))
        pr = self.client.create_pull(repo, task.title, branch, self.client.default_branch(repo), body)
        self.store.add_event(
            "github.pr", f"draft pull request #{pr['number']} opened", task_id=task.id, now=self.clock()
        )
        return pr, progress.digest(body)

    def _find_progress_comment(self, repo: str, number: int, task_id: int) -> int | None:
        marker = progress.MARKER.format(task_id=task_id)
        for c in self.client.comments(repo, number):
            if marker in (c.get("body") or ""):
                return int(c["id"])
        return None

    # ------------------------------------------------------------ prompts
    @staticmethod
    def _thread(items: list[dict[str, Any]], own: str, when: str = "created_at") -> list[tuple[str, str, str]]:
        """(time, login, sanitised body) of the comments people wrote: not ours, not empty."""
        out = []
        for c in items:
            login = str((c.get("user") or {}).get("login", ""))
            body = c.get("body") or ""
            if login == own or "<!-- adw:" in body or not body.strip():
                continue
            out.append((str(c.get(when) or ""), login, triggers.sanitize(body)))
        return out

    def _pull_thread(self, repo: str, number: int, own: str) -> list[str]:
        """The review of the task's pull request, oldest first: review verdicts with their
        summaries, inline comments with the file and line they are about, and the conversation
        (on a tie, in that order: a command usually answers a review)."""
        items: list[tuple[str, str]] = []
        for r in self.client.pull_reviews(repo, number):
            verdict = str(r.get("state") or "commented").lower().replace("_", " ")
            items += [
                (t, f"Review by @{who} ({verdict}):\n{text}") for t, who, text in self._thread([r], own, "submitted_at")
            ]
        for c in self.client.pull_review_comments(repo, number):
            where = f"{c.get('path')}:{c.get('line') or c.get('original_line') or '?'}"
            items += [(t, f"Review comment by @{who} on {where}:\n{text}") for t, who, text in self._thread([c], own)]
        conversation = self._thread(self.client.comments(repo, number), own)
        items += [(t, f"Comment on the pull request by @{who}:\n{text}") for t, who, text in conversation]
        return [text for _, text in sorted(items, key=lambda item: item[0])]

    def prompt(self, task: Task) -> str:
        """The prompt for a GitHub task: the configured template, issue text fenced as untrusted.

        Raises ``NotReady`` (until when GitHub said) while GitHub rate-limits or is backing off,
        rather than failing at once: reading the thread would only be refused again."""
        state = self.store.source_state(task.id)
        try:
            comments = self._comments_part(task, state)
        except Backoff as exc:
            raise NotReady(f"GitHub: {exc.reason}", exc.until) from None
        command = state.get("instruction_id")
        if command and command != state.get("instruction_delivered"):
            # This prompt carries the thread as it was when ``state`` was read: that command too.
            self.store.update_source_state(task.id, {"instruction_delivered": command}, self.clock())
        return self.cfg.prompt_template.format(
            title=task.title,
            body=task.body,
            labels=", ".join(task.labels) or "(none)",
            repo=task.repo or "",
            number=issue_number(task),
            url=task.url or "",
            comments=comments,
        )

    def _comments_part(self, task: Task, state: dict[str, Any]) -> str:
        """The issue thread (and the pull request's review, and a follow-up request), if asked for."""
        if not ((self.cfg.include_comments or state.get("include_thread")) and task.repo):
            return ""
        own = self.client.me()
        parts = [
            f"Comment by @{login}:\n{text}"
            for _, login, text in self._thread(self.client.comments(task.repo, issue_number(task)), own)
        ]
        if state.get("pr_number"):
            parts += self._pull_thread(task.repo, int(state["pr_number"]), own)
        if state.get("instruction"):
            parts.append(
                f"Follow-up request from @{state.get('instruction_by')}:\n"
                f"{triggers.sanitize(str(state['instruction']))}"
            )
        return ("\n\n" + "\n\n".join(parts) + "\n") if parts else ""
