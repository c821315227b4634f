"""The coordinator: claims tasks from the store, routes them, runs attempts, records what happened.

One ``Coordinator`` is one process's share of the work.  Several may share a PostgreSQL
store: claims are atomic, every running task carries a lease this coordinator renews, and
every write about a running attempt is fenced on owner + attempt, so a coordinator that
lost its lease (paused, partitioned) kills its worker and its late result is dropped.

Periodic duties (``dispatch``, ``heartbeat``, ``reap``, ``refresh``) are plain methods;
adws/service.py has APScheduler call them.  Each attempt runs in its own thread, which
waits for the worker and then records the outcome and the provider's health.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import logging
import os
import random
import socket
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from adw_modules.config.schema import Config, Target
from adw_modules.outcomes import ErrorKind, Outcome, Policy, StreamEvent
from adw_modules.queue import health
from adw_modules.queue.store import RECOVERED_EVENT, Store
from adw_modules.queue.tasks import (
    Attempt,
    AttemptEnd,
    AttemptStart,
    CircuitState,
    ProviderState,
    Task,
    TaskState,
    Transition,
)
from adw_modules.queue.transitions import after_attempt
from adw_modules.routing.providers import ProviderRegistry
from adw_modules.routing.router import ModelRouter, TaskAttrs, estimate_tokens
from adw_modules.workers import runner
from adw_modules.workers.attempt import AttemptRequest, AttemptResult, AttemptRunner, RunningAttempt
from adw_modules.workspace.worktrees import WorkspaceError, Workspaces, Worktree

log = logging.getLogger("adw.coordinator")

Clock = Callable[[], dt.datetime]
NO_TARGET_RECHECK = dt.timedelta(seconds=60)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def render_prompt(task: Task) -> str:
    labels = f"\nLabels: {', '.join(task.labels)}" if task.labels else ""
    where = f"\nRepository: {task.repo}" if task.repo else ""
    return f"# {task.title}\n{where}{labels}\n\n{task.body}".rstrip() + "\n"


@dataclass
class Gates:
    """One dispatch pass's view of provider health: skip ``down``; ``trials`` are half-open
    (an attempt there must take the single trial slot first)."""

    down: dict[str, str]
    until: dict[str, dt.datetime]  # when a down provider may come back, where known
    trials: set[str]


@dataclass
class Load:
    """Attempts running, and started in the last minute, per provider (across all coordinators)."""

    running: dict[str, int]
    started: dict[str, int]


@dataclass
class Slot:
    """A running attempt this coordinator owns."""

    task: Task
    attempt_id: int
    number: int
    target: Target
    rule: str | None
    running: RunningAttempt
    thread: threading.Thread | None = None
    stop_reason: str | None = None  # "cancelled" (operator), "shutdown", "lease lost"
    trial: bool = False
    worktree: Worktree | None = None
    health_recorded: bool = False
    reported_tokens: int = 0  # tokens so far, as last stored by the heartbeat


class Coordinator:
    def __init__(
        self,
        config: Config,
        store: Store,
        *,
        environ: Mapping[str, str] | None = None,
        clock: Clock = utcnow,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.rng = rng or random.Random()
        self.environ = environ
        self.host = socket.gethostname()
        self.slots: dict[int, Slot] = {}
        self.lock = threading.RLock()
        self.claiming = True
        self.idle = threading.Condition(self.lock)  # notified whenever a slot ends
        self.on_change: Callable[[], None] | None = None  # the service wakes dispatch with it
        self.prompt_renderers: dict[str, Callable[[Task], str]] = {}  # by task source; default render_prompt
        self.apply_config(config)
        self.name = self.svc.name or self.host
        self.owner = f"{self.name}/{uuid.uuid4().hex[:8]}"
        self.last_renewal = clock()

    # ------------------------------------------------------------ configuration
    def apply_config(self, config: Config) -> None:
        """Use a new config for attempts started from now on (running ones keep theirs)."""
        registry = ProviderRegistry(config, environ=self.environ)
        redact = registry.secrets.fetch_all(config)  # masks, too, any key the registry fetches later
        workspaces = None
        if config.workspace is not None:
            workspaces = Workspaces(config.workspace, self.environ if self.environ is not None else os.environ)
        with self.lock:
            self.redact = redact
            self.workspaces = workspaces
            self.config = config
            self.svc = config.service.coordinator
            self.registry = registry
            self.router = ModelRouter(config, registry)
            self.attempts = AttemptRunner(
                config, registry, environ=self.environ, kill_grace_s=self.svc.kill_grace_s, redact=redact
            )

    # ------------------------------------------------------------ lifecycle
    def startup(self) -> None:
        # Real time, not the injectable clock: orphan checks compare it with the process start time.
        self.store.register_coordinator(self.owner, self.name, self.host, os.getpid(), utcnow())
        self.recover_orphans()
        for name in self.config.providers:
            a = self.registry.availability(name)
            _event(log, "provider.availability", provider=name, available=a.available, reason=a.reason)
        for warning in self.dead_rules():
            log.warning(warning, extra={"data": {"event": "routing.dead_rule"}})

    def dead_rules(self) -> list[str]:
        """Rules none of whose targets could run now (so they would only ever make tasks wait)."""
        down = self.registry.unavailable()
        out = []
        for rule in self.config.routing.rules:
            targets: list[Target] = []
            if rule.model is not None:
                targets.append(Target(rule.provider or self.config.routing.default_provider, rule.model))
            targets += list(rule.fallback)
            if rule.chain:
                targets += list(self.config.routing.chains[rule.chain].targets)
            targets += list(self.config.routing.fallback)
            if targets and all(t.provider in down for t in targets):
                why = "; ".join(f"{p}: {down[p]}" for p in dict.fromkeys(t.provider for t in targets))
                out.append(f'rule "{rule.name}": every target is unavailable ({why})')
        return out

    def recover_orphans(self) -> int:
        """Kill the workers a previous run of this coordinator left behind and requeue their tasks."""
        now = self.clock()
        recovered = 0
        live = {c["id"] for c in self.store.coordinators() if c["host"] == self.host and _process_alive(c)}
        for att in self.store.running_attempts(host=self.host):
            if att.owner == self.owner or att.owner.split("/")[0] != self.name:
                continue
            if att.owner in live:
                continue  # another live coordinator with this name on this host (e.g. `adw run --once`)
            self._kill_local_worker(att)
            if self.store.abandon_attempt(att.id, att.owner, now, "coordinator restarted: orphan worker killed"):
                recovered += 1
                self.store.add_event(
                    RECOVERED_EVENT,
                    f"attempt {att.number} of a previous run ({att.owner}) ended; task requeued",
                    task_id=att.task_id,
                    attempt_id=att.id,
                    now=now,
                )
        return recovered

    def shutdown(self) -> None:
        self.store.unregister_coordinator(self.owner)

    # ------------------------------------------------------------ availability
    def unavailable(self, now: dt.datetime) -> Gates:
        """Providers the router must skip now, with reasons, and when each may come back."""
        down = dict(self.registry.unavailable())
        until: dict[str, dt.datetime] = {}
        trials: set[str] = set()
        states = self.store.provider_states()
        for name in self.config.providers:
            if name in down:
                continue
            g = health.gate(states.get(name), now)
            if not g.open:
                down[name] = g.reason or "circuit open"
                if g.until is not None:
                    until[name] = g.until
            elif g.trial:
                trials.add(name)
        day = now.replace(hour=0, minute=0, second=0, microsecond=0)
        spend = self.store.spend_since(day)
        for name, pc in self.config.providers.items():
            cap = pc.daily_budget_usd
            if name not in down and cap is not None and spend.get(name, 0.0) >= cap:
                down[name] = f"daily spend ${spend[name]:.2f} reached its cap of ${cap:.2f}"
                until[name] = day + dt.timedelta(days=1)
        return Gates(down, until, trials)

    def load(self, now: dt.datetime) -> Load:
        return Load(
            running=self.store.running_count_by_provider(),
            started=self.store.attempts_started_since(now - dt.timedelta(seconds=60)),
        )

    def busy_reason(self, provider: str, load: Load) -> str | None:
        """At its concurrency or rpm limit: tasks for it wait, they do not fail over."""
        pc = self.config.providers[provider]
        if pc.max_concurrency is not None and load.running.get(provider, 0) >= pc.max_concurrency:
            return f"at max_concurrency {pc.max_concurrency}"
        if pc.rpm is not None and load.started.get(provider, 0) >= pc.rpm:
            return f"at {pc.rpm} attempts per minute"
        return None

    # ------------------------------------------------------------ dispatch
    def dispatch(self) -> int:
        """Claim and start as many tasks as there is room for; returns how many started."""
        with self.lock:
            if not self.claiming:
                return 0
            room = self.svc.max_concurrency - len(self.slots)
        if room <= 0:
            return 0
        now = self.clock()
        gates = self.unavailable(now)
        load = self.load(now)
        seen: set[int] = set()
        started = 0
        while room > 0 and self.claiming:
            now = self.clock()  # per claim: preparing the previous one (git, GitHub) may have taken long
            lease = now + dt.timedelta(seconds=self.svc.lease_s)
            task = self.store.claim_task(self.owner, lease, now, exclude_ids=seen)
            if task is None:
                break
            seen.add(task.id)
            if self._start(task, now, gates, load):
                started += 1
                room -= 1
        return started

    def _release(
        self, task: Task, state: TaskState, now: dt.datetime, reason: str, not_before: dt.datetime | None
    ) -> None:
        if self.store.release_task(task.id, self.owner, state, not_before, reason):
            kind = "task.failed" if state is TaskState.FAILED else "task.waiting"
            self.store.add_event(kind, reason, task_id=task.id, now=now)
            _event(log, kind, task=task.id, state=str(state), reason=reason)

    def _start(
        self,
        task: Task,
        now: dt.datetime,
        gates: Gates,
        load: Load,
    ) -> bool:
        if task.cancel_requested:
            self._release(task, TaskState.CANCELLED, now, "cancelled before it could start", None)
            return False
        attrs = TaskAttrs(
            priority=task.priority,
            labels=frozenset(task.labels),
            retry_count=task.retry_count,
            repo=task.repo,
            source=task.source,
            prompt_tokens=estimate_tokens(task.title + task.body),
        )
        decision = self.router.decide(attrs, unavailable=gates.down, now=now)
        candidates = [t for t in decision.targets if str(t) not in task.excluded_targets]
        if not candidates:
            skipped = "; ".join(f"{t} ({why})" for t, why in decision.skipped) or "all targets excluded"
            recover = [gates.until[t.provider] for t, _ in decision.skipped if t.provider in gates.until]
            not_before = min(recover) if recover else now + NO_TARGET_RECHECK
            self._release(task, TaskState.RETRY_WAIT, now, f"no usable target: {skipped}", not_before)
            return False
        target = candidates[0]
        busy = self.busy_reason(target.provider, load)
        if busy is not None:
            self._release(task, TaskState.QUEUED, now, f"waiting for {target.provider}: {busy}", None)
            return False
        history = functools.cache(lambda: self.store.attempts_for(task.id))  # read once, only if needed
        budget = self._remaining_budget(task, history)
        if budget is not None and budget <= 0:
            self._release(task, TaskState.FAILED, now, "task budget spent", None)
            return False
        try:
            prompt = self.prompt_renderers.get(task.source, render_prompt)(task)
        except Exception as exc:  # e.g. GitHub unreachable while fetching comments: try again later
            self._release(task, TaskState.QUEUED, now, f"could not build the prompt: {exc}", None)
            return False
        try:
            worktree = self._worktree(task)
        except WorkspaceError as exc:
            self._release(task, TaskState.RETRY_WAIT, now, f"workspace: {exc}", now + NO_TARGET_RECHECK)
            return False
        # Preparing (prompt from GitHub, git fetch) may have outlasted part of the claim's lease.
        now = self.clock()
        if self.store.renew_leases(self.owner, [(task.id, None)], now + dt.timedelta(seconds=self.svc.lease_s)):
            return False  # reaped meanwhile: whoever holds it now runs it
        trial = False
        if target.provider in gates.trials:
            state = self.store.update_provider_state(
                target.provider, lambda s: health.start_trial(s, task.id, now) or s
            )
            if state.probe_attempt_id != task.id:
                self._release(task, TaskState.QUEUED, now, f"{target.provider}: another trial attempt is running", None)
                return False
            trial = True
        previous = self._failover_source(task, history)
        routing = {**decision.to_dict(), "chosen": str(target), "excluded": task.excluded_targets}
        start = AttemptStart(
            provider=target.provider,
            model=target.model,
            rule=decision.rule,
            routing=routing,
            config_fingerprint=self.config.fingerprint,
            host=self.host,
            failover_from=previous,
        )
        attempt = self.store.start_attempt(task.id, self.owner, start, now)
        if attempt is None:
            if trial:
                self._release_trial(target.provider, task.id)
            return False  # lost the task between claim and start; whoever has it now runs it
        load.running[target.provider] = load.running.get(target.provider, 0) + 1
        load.started[target.provider] = load.started.get(target.provider, 0) + 1
        params = dict(decision.params)
        if budget is not None:
            params.setdefault("max_budget_usd", round(budget, 4))
        state_dir = self.svc.state_dir
        request = AttemptRequest(
            task_id=str(task.id),
            prompt=prompt,
            target=target,
            workdir=worktree.path if worktree else _ensure_dir(state_dir / "work" / f"task-{task.id}"),
            attempt_dir=state_dir / "attempts" / f"task-{task.id}" / f"attempt-{attempt.number}",
            rule_params=params,
            inject=decision.inject,
        )
        running = self.attempts.start(request, on_event=functools.partial(self._on_event, task.id))
        slot = Slot(task, attempt.id, attempt.number, target, decision.rule, running, trial=trial, worktree=worktree)
        ident = running.identity
        what = f"attempt {attempt.number} on {target}" + (f" (failover from {previous})" if previous else "")
        try:
            # Recorded before the watcher starts, so even a worker that ends at once keeps its pid.
            if ident is not None:
                self.store.set_attempt_process(attempt.id, self.owner, ident.pid, ident.pgid, ident.create_time)
            self.store.add_event(
                "attempt.started", what, task_id=task.id, attempt_id=attempt.id, provider=target.provider, now=now
            )
        except Exception:  # the store hiccuped: the attempt runs on; only orphan recovery data is missing
            log.exception("recording the start of task %s attempt %s failed", task.id, attempt.number)
        finally:
            # Whatever failed above, a started worker is supervised: watched, its lease renewed,
            # its outcome recorded (else it would run unsupervised, and the task twice).
            slot.thread = threading.Thread(target=self._watch, args=(slot,), name=f"task-{task.id}", daemon=True)
            with self.lock:
                self.slots[task.id] = slot
            slot.thread.start()
        _event(
            log,
            "attempt.started",
            task=task.id,
            attempt=attempt.number,
            target=str(target),
            rule=decision.rule,
            failover_from=previous,
            pid=None if ident is None else ident.pid,
        )
        return True

    def _worktree(self, task: Task) -> Worktree | None:
        """The task's own git worktree when [workspace] is configured and the task names a repo."""
        if self.workspaces is None or not task.repo:
            return None
        number = int(task.external_id.rsplit("#", 1)[1]) if task.source == "github" else None
        return self.workspaces.prepare(task.repo, task.id, number, task.title)

    def _keep_work(self, slot: Slot, succeeded: bool, now: dt.datetime) -> None:
        """Commit what the worker left, push the branch, and tell the task's source about it."""
        assert self.workspaces is not None and slot.worktree is not None
        task, wt = slot.task, slot.worktree
        ref = f" (#{task.external_id.rsplit('#', 1)[1]})" if task.source == "github" else ""
        message = f"adw: {task.title}{ref}\n\nWork of adw task {task.id}, attempt {slot.number} on {slot.target}."
        try:
            changes = self.workspaces.finish(wt, message, push=self.workspaces.cfg.should_push(succeeded))
        except WorkspaceError as exc:
            self.store.add_event("workspace.error", self.redact(str(exc)), task_id=task.id, now=now)
            _event(log, "workspace.error", task=task.id, error=self.redact(str(exc)))
            return
        self.store.update_source_state(
            task.id,
            {
                "workspace": {
                    "branch": wt.branch,
                    "base_sha": wt.base_sha,
                    "head_sha": changes.head_sha,
                    "commits_ahead": changes.commits_ahead,
                    "pushed": changes.pushed,
                    "changed_files": changes.changed_files[:50],
                }
            },
            now,
        )
        _event(
            log, "workspace.kept", task=task.id, branch=wt.branch, commits=changes.commits_ahead, pushed=changes.pushed
        )

    def _remaining_budget(self, task: Task, history: Callable[[], list[Attempt]]) -> float | None:
        """What this round may still spend: a follow-up request starts with the whole budget."""
        cap = self.svc.task_budget_usd
        if cap is None:
            return None
        since = task.round_started_at
        return cap - sum(a.cost_usd or 0.0 for a in history() if since is None or a.started_at >= since)

    def _failover_source(self, task: Task, history: Callable[[], list[Attempt]]) -> str | None:
        if task.attempt_count <= 1 or task.last_error_kind is None:
            return None
        try:
            kind = ErrorKind(task.last_error_kind)
        except ValueError:
            return None
        if Outcome(False, kind).policy not in (Policy.FAILOVER, Policy.DISABLE):
            return None
        finished = [a for a in history() if a.state == "finished"]
        return f"{finished[-1].provider}:{finished[-1].model}" if finished else None

    def _on_event(self, task_id: int, event: StreamEvent) -> None:
        if event.signal is not None:
            _event(log, "attempt.signal", task=task_id, signal=str(event.signal), message=event.message)

    # ------------------------------------------------------------ finishing
    def _watch(self, slot: Slot) -> None:
        try:
            result = slot.running.wait()
            self._finish(slot, result)
        except Exception:  # a bug here must not leave the slot taken forever
            log.exception("recording attempt of task %s failed", slot.task.id)
        finally:
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
        now = self.clock()
        task, target = slot.task, slot.target
        with self.lock:
            stop_reason = slot.stop_reason  # read once: a heartbeat may set it while we record
        if stop_reason == "lease lost":
            _event(log, "attempt.dropped", task=task.id, reason="lease lost: another coordinator owns the task")
            return
        # Whatever a CLI printed may echo a secret: mask before anything is stored, logged or posted.
        outcome = dataclasses.replace(
            result.outcome, message=result.outcome.message and self.redact(result.outcome.message)
        )
        end = _attempt_end(result, self.redact)
        if stop_reason == "shutdown":
            end = dataclasses.replace(
                end,
                outcome="cancelled",
                error_kind="cancelled",
                error_message="coordinator shut down; task requeued",
            )
            transition = Transition(TaskState.QUEUED, wait_reason="requeued: coordinator shut down mid-attempt")
        elif stop_reason == "cancelled":
            end = dataclasses.replace(
                end, outcome="cancelled", error_kind="cancelled", error_message="cancelled by operator"
            )
            transition = Transition(
                TaskState.CANCELLED, last_error="cancelled by operator", last_error_kind="cancelled"
            )
        else:
            # task.attempt_count was counted at claim time (this attempt included).
            transition = after_attempt(
                task, outcome, target, self.svc.retry, self.svc.max_total_attempts, now, self.rng
            )
        if slot.worktree is not None and stop_reason in (None, "shutdown"):
            self._keep_work(slot, outcome.ok, now)
        if not self.store.finish_attempt(slot.attempt_id, self.owner, end, transition, now):
            _event(log, "attempt.dropped", task=task.id, reason="fenced out: the lease was lost")
            return
        if stop_reason is None:
            self._record_health(slot, result, now)
            slot.health_recorded = True
        message = f"attempt {slot.number} on {target}: {end.outcome}"
        if end.error_message:
            message += f" ({end.error_message})"
        message += f" -> {transition.state}"
        self.store.add_event(
            "attempt.finished",
            message,
            task_id=task.id,
            attempt_id=slot.attempt_id,
            provider=target.provider,
            data={"state": str(transition.state)},
            now=now,
        )
        _event(
            log,
            "attempt.finished",
            task=task.id,
            attempt=slot.number,
            target=str(target),
            outcome=end.outcome,
            error=end.error_message,
            next_state=str(transition.state),
            tokens_in=end.input_tokens,
            tokens_out=end.output_tokens,
            cost_usd=end.cost_usd,
            duration_s=result.to_dict()["duration_s"],
        )

    def _record_health(self, slot: Slot, result: AttemptResult, now: dt.datetime) -> None:
        outcome = result.outcome
        policy = self.config.service.health
        if outcome.ok:
            fn: Callable[[Any], Any] = lambda s: health.on_success(s, now)  # noqa: E731
        else:
            kind = outcome.error_kind or ErrorKind.API_ERROR
            fn = lambda s: health.on_failure(  # noqa: E731
                s,
                kind,
                now,
                policy,
                message=outcome.message,
                retry_after_s=outcome.retry_after_s,
                resets_at=outcome.resets_at,
            )
        before: list[CircuitState] = []

        def update(state: ProviderState) -> ProviderState:
            before.append(state.circuit)  # the locked read: no second query for the old circuit
            return fn(state)

        after = self.store.update_provider_state(slot.target.provider, update)
        if before[-1] != after.circuit:
            self.store.add_event(
                "provider.circuit",
                f"{slot.target.provider}: circuit {after.circuit}"
                + (f" until {after.cooldown_until:%H:%M:%S} ({after.cooldown_reason})" if after.cooldown_until else ""),
                provider=slot.target.provider,
                now=now,
            )
            _event(
                log,
                "provider.circuit",
                provider=slot.target.provider,
                circuit=str(after.circuit),
                cooldown_until=after.cooldown_until,
                reason=after.cooldown_reason,
            )

    # ------------------------------------------------------------ periodic duties
    def heartbeat(self) -> None:
        """Renew leases (self-fencing when that fails too long) and act on cancel requests."""
        now = self.clock()
        with self.lock:
            held = [(tid, s.attempt_id) for tid, s in self.slots.items() if s.stop_reason != "lease lost"]
        try:
            lost = self.store.renew_leases(self.owner, held, now + dt.timedelta(seconds=self.svc.lease_s))
            self.store.heartbeat_coordinator(self.owner, now)
            cancels = self.store.cancel_requested(self.owner)
        except Exception:
            log.exception("heartbeat failed")
            # Fence before the lease runs out, leaving time to kill: another coordinator may claim
            # the task the moment it expires.
            margin = self.svc.heartbeat_s + self.svc.kill_grace_s
            if now - self.last_renewal > dt.timedelta(seconds=max(self.svc.lease_s - margin, self.svc.lease_s / 2)):
                # We can no longer prove we own anything: stop our workers before someone else starts theirs.
                self.stop_all("lease lost")
            return
        self.last_renewal = now
        for tid in lost:
            self._stop(tid, "lease lost")
        for tid in cancels:
            self._stop(tid, "cancelled")
        self._record_progress()

    def _record_progress(self) -> None:
        """Store each running attempt's tokens so far, so `adw status`/`adw top` show live counts."""
        with self.lock:
            slots = [s for s in self.slots.values() if s.stop_reason is None]
        changed = [
            (slot, usage)
            for slot in slots
            if (usage := slot.running.usage_so_far()).total_tokens != slot.reported_tokens
        ]
        try:
            self.store.record_usage(self.owner, {slot.attempt_id: usage for slot, usage in changed})
        except Exception:  # progress is cosmetic: the final counts are written when the attempt ends
            log.exception("recording attempt progress failed")
            return
        for slot, usage in changed:
            slot.reported_tokens = usage.total_tokens

    def reap(self) -> int:
        """Requeue tasks whose owner stopped heartbeating; kill their workers if they run here."""
        now = self.clock()
        reaped = self.store.reap_expired(now)
        for task, att in reaped:
            if att is not None:
                self._kill_local_worker(att)
            self.store.add_event(RECOVERED_EVENT, "lease expired; task requeued", task_id=task.id, now=now)
            _event(log, RECOVERED_EVENT, task=task.id, previous_owner=None if att is None else att.owner)
        return len(reaped)

    def _release_trial(self, provider: str, task_id: int) -> None:
        """Give back a half-open trial slot that no recorded outcome released (cancel, shutdown,
        lost lease, a start that failed): else the provider would wait for that trial forever."""
        try:
            self.store.update_provider_state(
                provider,
                lambda s: dataclasses.replace(s, probe_attempt_id=None) if s.probe_attempt_id == task_id else s,
            )
        except Exception:
            log.exception("releasing the trial slot of %s failed", provider)

    def _kill_local_worker(self, att: Attempt) -> None:
        """Kill an attempt's process tree if it runs on this host (pid + create time, so never a reused pid)."""
        if att.host == self.host and att.pid is not None and att.create_time is not None:
            runner.kill_tree(
                runner.ProcessIdentity(att.pid, att.pgid or att.pid, att.create_time, att.host),
                grace_s=self.svc.kill_grace_s,
            )

    def refresh(self) -> None:
        """Re-check provider availability (a key may have been set, a binary installed)."""
        self.registry.refresh()

    # ------------------------------------------------------------ stopping
    def _stop(self, task_id: int, reason: str) -> None:
        with self.lock:
            slot = self.slots.get(task_id)
            if slot is None or slot.stop_reason is not None:
                return
            slot.stop_reason = reason
        _event(log, "attempt.stopping", task=task_id, reason=reason)
        slot.running.cancel(reason)

    def stop_all(self, reason: str) -> None:
        with self.lock:
            ids = list(self.slots)
        for tid in ids:
            self._stop(tid, reason)

    def stop_claiming(self) -> None:
        with self.lock:
            self.claiming = False

    def running(self) -> int:
        with self.lock:
            return len(self.slots)

    def wait_idle(self, timeout_s: float | None) -> bool:
        """Wait until no attempt runs here; False if the timeout came first."""
        with self.idle:
            return self.idle.wait_for(lambda: not self.slots, timeout=timeout_s)


def _process_alive(coordinator: Mapping[str, Any]) -> bool:
    """Is this coordinator row's process still running here?  (Its pid, started no later than it
    registered: a pid reused by a younger process does not count.)"""
    try:
        proc = psutil.Process(int(coordinator["pid"]))
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        created = proc.create_time()
    except (psutil.Error, ValueError, TypeError):
        return False
    started = coordinator["started_at"].timestamp()
    return created <= started + 1 and started - created < 600


def _attempt_end(result: AttemptResult, redact: Callable[[str], str]) -> AttemptEnd:
    d = result.to_dict()
    text = d["result_text"] and redact(d["result_text"])
    return AttemptEnd(
        outcome=d["outcome"],
        error_kind=d["error_kind"],
        error_message=d["error_message"] and redact(d["error_message"]),
        input_tokens=d["input_tokens"],
        output_tokens=d["output_tokens"],
        cache_read_tokens=d["cache_read_tokens"],
        cache_write_tokens=d["cache_write_tokens"],
        cost_usd=d["cost_usd"],
        cost_source=d["cost_source"],
        log_path=d["log_path"],
        session_id=d["session_id"] and redact(d["session_id"]),
        result_text=None if text is None else text[:20000],
        exit_code=d["exit_code"],
        stderr_tail=d["stderr_tail"] and redact(d["stderr_tail"])[-4000:],
        model_usage=d["model_usage"],
    )


def _event(logger: logging.Logger, event: str, **fields: Any) -> None:
    text = " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
    logger.info(f"{event} {text}", extra={"data": {"event": event, **fields}})


def _ensure_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
