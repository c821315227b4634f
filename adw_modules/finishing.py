"""How the coordinator finishes an attempt: keep its work, record its end, its provider's health
and its events, whatever fails on the way (``Finishing``, a part of ``Coordinator``).

Each attempt's watcher thread runs ``_watch``: it waits for the worker, then ``_finish``
records, step by step.  The store is asked to record the end in full, then without the
worker's texts, then to end the attempt as "could not record the result" (counted toward
``max_total_attempts``); if all fail, the slot ends and the lease expires, and the reaper
requeues the task (counted too).  So no failure here makes a task run again unbounded.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import random
import threading
from collections.abc import Callable

from adw_modules.config.schema import Config
from adw_modules.config.service import CoordinatorConfig
from adw_modules.dispatch import (
    Ending,
    Slot,
    attempt_end,
    health_update,
    short_error,
    without_texts,
    workspace_state,
)
from adw_modules.dispatch import log_event as _event
from adw_modules.outcomes import Outcome
from adw_modules.queue.provider_view import ProviderView, clean, with_recent
from adw_modules.queue.store import Store
from adw_modules.queue.tasks import HealthChange, NewEvent, ProviderState, Task, TaskState, Transition
from adw_modules.queue.transitions import after_attempt
from adw_modules.routing.learning import Fact, LearningStats, learning_key, rule_learn_by, success_of
from adw_modules.workers.attempt import AttemptResult
from adw_modules.workspace.worktrees import WorkspaceError, Workspaces

log = logging.getLogger("adw.coordinator")


class Finishing:
    """The finishing half of ``Coordinator`` (which sets these attributes)."""

    store: Store
    owner: str
    config: Config
    svc: CoordinatorConfig
    rng: random.Random
    clock: Callable[[], dt.datetime]
    redact: Callable[[str], str]
    workspaces: Workspaces | None
    lock: threading.RLock
    idle: threading.Condition
    slots: dict[int, Slot]
    on_change: Callable[[], None] | None
    view: ProviderView
    learning: LearningStats

    def _backoff_s(self, task: Task) -> float:
        """How long a task waits after its start or its recording failed: the retry backoff."""
        return self.svc.retry.delay(max(1, task.attempt_count), self.rng)

    def _keep_work(self, slot: Slot, succeeded: bool, now: dt.datetime) -> None:
        """Commit what the worker left, push the branch, and tell the task's source about it."""
        assert self.workspaces is not None and slot.worktree is not None
        task, wt = slot.task, slot.worktree
        ref = f" (#{task.external_id.rsplit('#', 1)[1]})" if task.source == "github" else ""
        message = f"adw: {task.title}{ref}\n\nWork of adw task {task.id}, attempt {slot.number} on {slot.target}."
        with contextlib.suppress(Exception):  # a follow-up round's commit names what it was asked
            follow_up = follow_up_message(self.store.source_state(task.id), ref)
            if follow_up is not None:
                message = f"{follow_up}\n\nIssue: {task.title}\n" + message.split("\n\n", 1)[1]
        try:
            changes = self.workspaces.finish(wt, message, push=self.workspaces.cfg.should_push(succeeded))
            self.store.update_source_state(task.id, {"workspace": workspace_state(wt, changes)}, now)
        except Exception as exc:  # whatever failed here, the attempt's result is still recorded
            if not isinstance(exc, WorkspaceError):
                log.exception("keeping the work of task %s failed", task.id)
            error = self.redact(str(exc) if isinstance(exc, WorkspaceError) else short_error(exc))
            with contextlib.suppress(Exception):
                self.store.add_event("workspace.error", error, task_id=task.id, now=now)
            _event(log, "workspace.error", task=task.id, error=error)
            return
        _event(
            log, "workspace.kept", task=task.id, branch=wt.branch, commits=changes.commits_ahead, pushed=changes.pushed
        )

    def _watch(self, slot: Slot) -> None:
        cost: float | None = None
        try:
            result = slot.running.wait()
            cost = result.cost_usd
            self._finish(slot, result)
        except Exception:  # a bug here must not leave the slot taken forever
            log.exception("recording attempt of task %s failed", slot.task.id)
        finally:
            self.view.ended(slot.target.provider, cost, None)
            if slot.trial and not slot.health_recorded:
                self._release_trial(slot.target.provider, slot.task.id)
            with self.lock:
                # The task may already run again here (a failover is requeued at once): remove
                # only this attempt's slot, never its successor's.
                if self.slots.get(slot.task.id) is slot:
                    del self.slots[slot.task.id]
                self.idle.notify_all()
            if self.on_change is not None:
                self.on_change()

    def _finish(self, slot: Slot, result: AttemptResult) -> None:
        """Record a finished attempt: decide its end, keep its work, then store its end, its
        provider's health and its events in one transaction.  A lost lease records no end."""
        now = self.clock()
        with self.lock:
            stop_reason = slot.stop_reason  # read once: a heartbeat may set it while we record
        if stop_reason == "lease lost":
            _event(log, "attempt.dropped", task=slot.task.id, reason="lease lost: another coordinator owns the task")
            return
        ending = self._ending(slot, result, stop_reason, now)
        if slot.worktree is not None and stop_reason in (None, "shutdown"):
            self._keep_work(slot, ending.outcome.ok, now)
        change = None
        if stop_reason is None:
            # With the end, in its transaction: a failed-over task is claimable the moment its end
            # is recorded, and a dispatch pass must then already see this provider cooling down.
            change = self._health_change(slot, result.outcome, now)
            slot.health_recorded = change is None  # nothing to write now (a clean success)
        recorded = self._record_end(slot, ending, now, change)
        if change is not None and not slot.health_recorded:
            # What the provider answered is true even if our lease turned out to be lost.
            self._record_health_alone(slot, change)
        if recorded:
            self._report_finish(slot, result, ending)
            if stop_reason is None:
                self._learn(slot, result, ending)

    def _learn(self, slot: Slot, result: AttemptResult, ending: Ending) -> None:
        """The attempt's outcome into the learned statistics (in memory; the store has it too).
        With ``[learning] success = "merged"`` a success waits for its pull request's fate,
        which the next reload reads from the store."""
        end = ending.end
        ok = success_of(end.outcome, end.error_kind, False, None, self.config.learning.success)
        if ok is not None:
            learn_by = rule_learn_by(self.config.routing.rules, slot.rule)
            key = learning_key(learn_by, slot.rule, slot.task.labels, slot.task.repo)
            self.learning.record(Fact(key, str(slot.target), ok, end.cost_usd, slot.attempt_id))
        if result.duration_s is not None:
            self.learning.record_duration(slot.target.provider, float(result.duration_s))

    def _record_end(self, slot: Slot, ending: Ending, now: dt.datetime, change: HealthChange | None) -> bool:
        """Store the attempt's end (with the health ``change`` and the attempt.finished event)
        and move its task on; True if that happened.

        The store makes any text storable, so this only fails when the store itself fails.
        Then the attempt is recorded once more without its texts; if that fails too, it is
        ended as "could not record the result" (counted: the task fails after
        max_total_attempts of those) and the task waits a backoff.  If even that fails, this
        slot ends, its lease is no longer renewed, and the reaper requeues the task (counted).
        """
        try:
            recorded = self._store_end(slot, ending, now, change)
        except Exception as exc:
            log.exception("recording task %s attempt %s failed", slot.task.id, slot.number)
            bare = self._record_bare_end(slot, ending, now, exc, change)
            if bare is None:
                return False
            recorded = bare
        if not recorded:
            _event(log, "attempt.dropped", task=slot.task.id, reason="fenced out: the lease was lost")
        return recorded

    def _store_end(self, slot: Slot, ending: Ending, now: dt.datetime, change: HealthChange | None) -> bool:
        recorded = self.store.finish_attempt(
            slot.attempt_id,
            self.owner,
            ending.end,
            ending.transition,
            now,
            events_after=[finished_event(slot, ending)],
            health=change,
            process=None if slot.process_recorded else slot.process(),
            announce=self._frees_shared_capacity(slot.target.provider),
        )
        if recorded and change is not None:
            slot.health_recorded = True
        return recorded

    def _frees_shared_capacity(self, provider: str) -> bool:
        """Does an attempt ending on ``provider`` free capacity other coordinators may wait for
        (a concurrency limit shared through the store)?  Then its end wakes them."""
        pc = self.config.providers.get(provider)
        return pc is not None and pc.max_concurrency is not None

    def _record_bare_end(
        self, slot: Slot, ending: Ending, now: dt.datetime, exc: Exception, change: HealthChange | None
    ) -> bool | None:
        """The fallbacks of ``_record_end``; None when the attempt was ended as not recorded."""
        why = self.redact(short_error(exc))
        end, transition = without_texts(ending.end, ending.transition, why)
        try:
            return self._store_end(slot, Ending(ending.outcome, end, transition), now, change)
        except Exception:
            log.exception("recording task %s attempt %s without its texts failed", slot.task.id, slot.number)
        wait = now + dt.timedelta(seconds=self._backoff_s(slot.task))
        try:
            self.store.abandon_attempt(
                slot.attempt_id,
                self.owner,
                now,
                f"could not record the result: {why}",
                self.svc.max_total_attempts,
                wait,
            )
        except Exception:  # bounded all the same: the lease runs out and the reaper counts it
            log.exception("ending task %s attempt %s as not recorded failed", slot.task.id, slot.number)
        return None

    def _cancel_reason(self, slot: Slot) -> str:
        """Who or what asked to cancel the task (read now: it was asked after the claim)."""
        try:
            task = self.store.get_task(slot.task.id)
        except Exception:  # the reason is a nicety; the cancellation is not
            log.exception("reading why task %s was cancelled failed", slot.task.id)
            return "cancel requested"
        return (task.cancel_reason if task is not None else None) or "cancel requested"

    def _ending(self, slot: Slot, result: AttemptResult, stop_reason: str | None, now: dt.datetime) -> Ending:
        """The attempt's end and the task's next state: requeued on shutdown, cancelled on the
        operator's request, else as the outcome's policy says."""
        # Whatever a CLI printed may echo a secret: mask before anything is stored, logged or posted.
        outcome = dataclasses.replace(
            result.outcome, message=result.outcome.message and self.redact(result.outcome.message)
        )
        end = attempt_end(result, self.redact)
        if stop_reason == "shutdown":
            end = dataclasses.replace(
                end,
                outcome="cancelled",
                error_kind="cancelled",
                error_message="coordinator shut down; task requeued",
            )
            transition = Transition(TaskState.QUEUED, wait_reason="requeued: coordinator shut down mid-attempt")
        elif stop_reason == "cancelled":
            why = f"cancelled: {self._cancel_reason(slot)}"
            end = dataclasses.replace(end, outcome="cancelled", error_kind="cancelled", error_message=why)
            transition = Transition(TaskState.CANCELLED, last_error=why, last_error_kind="cancelled")
        else:
            # task.attempt_count was counted at claim time (this attempt included).
            transition = after_attempt(
                slot.task, outcome, slot.target, self.svc.retry, self.svc.max_total_attempts, now, self.rng
            )
        return Ending(outcome, end, transition)

    def _report_finish(self, slot: Slot, result: AttemptResult, ending: Ending) -> None:
        """The attempt.finished log line (its event row went with the end)."""
        end, transition = ending.end, ending.transition
        _event(
            log,
            "attempt.finished",
            task=slot.task.id,
            attempt=slot.number,
            target=str(slot.target),
            outcome=end.outcome,
            error=end.error_message,
            next_state=str(transition.state),
            tokens_in=end.input_tokens,
            tokens_out=end.output_tokens,
            cost_usd=end.cost_usd,
            duration_s=result.to_dict()["duration_s"],
        )

    def _health_change(self, slot: Slot, outcome: Outcome, now: dt.datetime) -> HealthChange | None:
        """How this outcome changes the provider's health, to write with the attempt's end; None
        when it changes nothing but the recent-outcome window (kept in memory until the next write)."""
        provider = slot.target.provider
        fn = health_update(outcome, now, self.config.service.health)
        cached = self.view.state(provider)
        if clean(cached) and clean(fn(cached or ProviderState(provider))):
            if outcome.ok:
                self.view.defer_recent(provider, True)
            return None
        pending = self.view.take_pending(provider).get(provider, [])

        def recorded(before: ProviderState, after: ProviderState) -> NewEvent | None:
            self.view.stored(after)  # before the commit: the next pass must see it at once
            if before.circuit == after.circuit:
                return None
            _event(
                log,
                "provider.circuit",
                provider=provider,
                circuit=str(after.circuit),
                cooldown_until=after.cooldown_until,
                reason=after.cooldown_reason,
            )
            return NewEvent("provider.circuit", circuit_message(after), provider=provider)

        return HealthChange(provider, lambda s: fn(with_recent(s, pending)), recorded, tuple(pending))

    def _record_health_alone(self, slot: Slot, change: HealthChange) -> None:
        """The health change of an attempt whose end was not recorded with it."""
        try:
            before: list[ProviderState] = []

            def apply(state: ProviderState) -> ProviderState:
                before.append(state)
                return change.apply(state)

            after = self.store.update_provider_state(change.provider, apply)
            slot.health_recorded = True
        except Exception:
            log.exception("recording the health of %s after task %s failed", change.provider, slot.task.id)
            self.view.give_back({change.provider: list(change.pending)})
            return
        event = change.recorded(before[-1], after)
        if event is not None:
            with contextlib.suppress(Exception):
                self.store.add_event(event.kind, event.message, provider=event.provider)

    def _release_trial(self, provider: str, task_id: int) -> None:
        """Give back a half-open trial slot that no recorded outcome released (cancel, shutdown,
        lost lease, a start that failed): else the provider would wait for that trial forever."""
        try:
            state = self.store.update_provider_state(
                provider,
                lambda s: dataclasses.replace(s, probe_attempt_id=None) if s.probe_attempt_id == task_id else s,
            )
            self.view.stored(state)
        except Exception:
            log.exception("releasing the trial slot of %s failed", provider)


def finished_event(slot: Slot, ending: Ending) -> NewEvent:
    """The attempt.finished event: outcome, why, and the task's next state."""
    end, transition = ending.end, ending.transition
    message = f"attempt {slot.number} on {slot.target}: {end.outcome}"
    if end.error_message:
        message += f" ({end.error_message})"
    message += f" -> {transition.state}"
    return NewEvent("attempt.finished", message, provider=slot.target.provider, data={"state": str(transition.state)})


def circuit_message(state: ProviderState) -> str:
    """The provider.circuit event's message: the new circuit, until when and why."""
    until = f" until {state.cooldown_until:%H:%M:%S} ({state.cooldown_reason})" if state.cooldown_until else ""
    return f"{state.provider}: circuit {state.circuit}{until}"


def follow_up_message(state: dict[str, object], ref: str) -> str | None:
    """The commit message of a round run for a ``/adw`` command or a mention: its instruction as
    the subject (first line, at most 72 characters) and in full below; None for other rounds."""
    instruction = str(state.get("instruction") or "").strip()
    if not instruction or not state.get("instruction_id"):
        return None
    if state.get("instruction_delivered") != state.get("instruction_id"):
        return None  # the round's prompt did not carry it
    clean = "".join(ch for ch in instruction if ch == "\n" or ch.isprintable())
    subject = clean.splitlines()[0][:72] if clean.splitlines() else clean[:72]
    return f"adw: {subject}{ref}\n\nFollow-up requested by @{state.get('instruction_by')}:\n{clean}"
