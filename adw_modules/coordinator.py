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
from typing import Any

import psutil

from adw_modules.config.schema import Config, Target
from adw_modules.dispatch import (
    Ending,
    Gates,
    Load,
    Plan,
    Prepared,
    Release,
    Slot,
    attempt_end,
    ensure_dir,
    failover_source,
    health_update,
    remaining_budget,
    render_prompt,
    task_attrs,
    workspace_state,
)
from adw_modules.outcomes import StreamEvent
from adw_modules.queue import health
from adw_modules.queue.store import RECOVERED_EVENT, Store
from adw_modules.queue.tasks import (
    Attempt,
    AttemptStart,
    CircuitState,
    ProviderState,
    Task,
    TaskState,
    Transition,
)
from adw_modules.queue.transitions import after_attempt
from adw_modules.routing.providers import ProviderRegistry
from adw_modules.routing.router import Decision, ModelRouter
from adw_modules.workers import runner
from adw_modules.workers.attempt import AttemptRequest, AttemptResult, AttemptRunner
from adw_modules.workspace.worktrees import WorkspaceError, Workspaces, Worktree

log = logging.getLogger("adw.coordinator")

Clock = Callable[[], dt.datetime]
NO_TARGET_RECHECK = dt.timedelta(seconds=60)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


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

    def _release(self, task: Task, now: dt.datetime, release: Release | None) -> bool:
        """Give a claimed task back as ``release`` says (None: it is no longer ours, nothing to give
        back).  Always False: the task did not start."""
        if release is None:
            return False
        if self.store.release_task(task.id, self.owner, release.state, release.not_before, release.reason):
            kind = "task.failed" if release.state is TaskState.FAILED else "task.waiting"
            self.store.add_event(kind, release.reason, task_id=task.id, now=now)
            _event(log, kind, task=task.id, state=str(release.state), reason=release.reason)
        return False

    def _start(self, task: Task, now: dt.datetime, gates: Gates, load: Load) -> bool:
        """Start an attempt of a claimed task, step by step; False when the task did not start."""
        plan = self._plan(task, now, gates, load)
        if not isinstance(plan, Plan):
            return self._release(task, now, plan)
        ready = self._prepare(task, now)
        if not isinstance(ready, Prepared):
            return self._release(task, now, ready)
        trial = self._take_trial(task, plan.target.provider, gates, ready.now)
        if isinstance(trial, Release):
            return self._release(task, ready.now, trial)
        slot = self._launch(task, plan, ready, trial, load)
        if slot is None:
            return False  # lost the task between claim and start; whoever has it now runs it
        self._record_start(slot, ready.now)
        return True

    def _plan(self, task: Task, now: dt.datetime, gates: Gates, load: Load) -> Plan | Release:
        """Route the task, then check its target is not busy and the task's budget not spent."""
        if task.cancel_requested:
            return Release(TaskState.CANCELLED, "cancelled before it could start")
        routed = self._route(task, now, gates)
        if isinstance(routed, Release):
            return routed
        decision, target = routed
        busy = self.busy_reason(target.provider, load)
        if busy is not None:
            return Release(TaskState.QUEUED, f"waiting for {target.provider}: {busy}")
        history = functools.cache(lambda: self.store.attempts_for(task.id))  # read once, only if needed
        budget = remaining_budget(task, self.svc.task_budget_usd, history)
        if budget is not None and budget <= 0:
            return Release(TaskState.FAILED, "task budget spent")
        return Plan(decision, target, history, budget)

    def _route(self, task: Task, now: dt.datetime, gates: Gates) -> tuple[Decision, Target] | Release:
        """The router's decision and its first target the task has not excluded."""
        decision = self.router.decide(task_attrs(task), unavailable=gates.down, now=now)
        candidates = [t for t in decision.targets if str(t) not in task.excluded_targets]
        if not candidates:
            skipped = "; ".join(f"{t} ({why})" for t, why in decision.skipped) or "all targets excluded"
            recover = [gates.until[t.provider] for t, _ in decision.skipped if t.provider in gates.until]
            not_before = min(recover) if recover else now + NO_TARGET_RECHECK
            return Release(TaskState.RETRY_WAIT, f"no usable target: {skipped}", not_before)
        return decision, candidates[0]

    def _prepare(self, task: Task, now: dt.datetime) -> Prepared | Release | None:
        """Render the prompt, prepare the worktree, then re-check the claim's lease."""
        try:
            prompt = self.prompt_renderers.get(task.source, render_prompt)(task)
        except Exception as exc:  # e.g. GitHub unreachable while fetching comments: try again later
            return Release(TaskState.QUEUED, f"could not build the prompt: {exc}")
        try:
            worktree = self._worktree(task)
        except WorkspaceError as exc:
            return Release(TaskState.RETRY_WAIT, f"workspace: {exc}", now + NO_TARGET_RECHECK)
        # Preparing (prompt from GitHub, git fetch) may have outlasted part of the claim's lease.
        now = self.clock()
        if self.store.renew_leases(self.owner, [(task.id, None)], now + dt.timedelta(seconds=self.svc.lease_s)):
            return None  # reaped meanwhile: whoever holds it now runs it
        return Prepared(prompt, worktree, now)

    def _take_trial(self, task: Task, provider: str, gates: Gates, now: dt.datetime) -> bool | Release:
        """A half-open provider runs one trial attempt at a time: take its slot (True), or wait."""
        if provider not in gates.trials:
            return False
        state = self.store.update_provider_state(provider, lambda s: health.start_trial(s, task.id, now) or s)
        if state.probe_attempt_id != task.id:
            return Release(TaskState.QUEUED, f"{provider}: another trial attempt is running")
        return True

    def _launch(self, task: Task, plan: Plan, ready: Prepared, trial: bool, load: Load) -> Slot | None:
        """Record the attempt as started and start its worker; None when the task was lost meanwhile."""
        previous = failover_source(task, plan.history)
        target = plan.target
        routing = {**plan.decision.to_dict(), "chosen": str(target), "excluded": task.excluded_targets}
        start = AttemptStart(
            provider=target.provider,
            model=target.model,
            rule=plan.decision.rule,
            routing=routing,
            config_fingerprint=self.config.fingerprint,
            host=self.host,
            failover_from=previous,
        )
        attempt = self.store.start_attempt(task.id, self.owner, start, ready.now)
        if attempt is None:
            if trial:
                self._release_trial(target.provider, task.id)
            return None
        load.running[target.provider] = load.running.get(target.provider, 0) + 1
        load.started[target.provider] = load.started.get(target.provider, 0) + 1
        request = self._request(task, plan, ready, attempt.number)
        running = self.attempts.start(request, on_event=functools.partial(self._on_event, task.id))
        return Slot(
            task,
            attempt.id,
            attempt.number,
            target,
            plan.decision.rule,
            running,
            trial=trial,
            worktree=ready.worktree,
            failover_from=previous,
        )

    def _request(self, task: Task, plan: Plan, ready: Prepared, number: int) -> AttemptRequest:
        params = dict(plan.decision.params)
        if plan.budget is not None:
            params.setdefault("max_budget_usd", round(plan.budget, 4))
        state_dir = self.svc.state_dir
        return AttemptRequest(
            task_id=str(task.id),
            prompt=ready.prompt,
            target=plan.target,
            workdir=ready.worktree.path if ready.worktree else ensure_dir(state_dir / "work" / f"task-{task.id}"),
            attempt_dir=state_dir / "attempts" / f"task-{task.id}" / f"attempt-{number}",
            rule_params=params,
            inject=plan.decision.inject,
        )

    def _record_start(self, slot: Slot, now: dt.datetime) -> None:
        """Store the worker's pid and the start event, then supervise the worker whatever failed."""
        task, target, ident = slot.task, slot.target, slot.running.identity
        previous = slot.failover_from
        what = f"attempt {slot.number} on {target}" + (f" (failover from {previous})" if previous else "")
        try:
            # Recorded before the watcher starts, so even a worker that ends at once keeps its pid.
            if ident is not None:
                self.store.set_attempt_process(slot.attempt_id, self.owner, ident.pid, ident.pgid, ident.create_time)
            self.store.add_event(
                "attempt.started", what, task_id=task.id, attempt_id=slot.attempt_id, provider=target.provider, now=now
            )
        except Exception:  # the store hiccuped: the attempt runs on; only orphan recovery data is missing
            log.exception("recording the start of task %s attempt %s failed", task.id, slot.number)
        finally:
            # Whatever failed above, a started worker is supervised: watched, its lease renewed,
            # its outcome recorded (else it would run unsupervised, and the task twice).
            self._supervise(slot)
        _event(
            log,
            "attempt.started",
            task=task.id,
            attempt=slot.number,
            target=str(target),
            rule=slot.rule,
            failover_from=previous,
            pid=None if ident is None else ident.pid,
        )

    def _supervise(self, slot: Slot) -> None:
        """Take the slot and start the thread that waits for the worker and records its outcome."""
        slot.thread = threading.Thread(target=self._watch, args=(slot,), name=f"task-{slot.task.id}", daemon=True)
        with self.lock:
            self.slots[slot.task.id] = slot
        slot.thread.start()

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
        self.store.update_source_state(task.id, {"workspace": workspace_state(wt, changes)}, now)
        _event(
            log, "workspace.kept", task=task.id, branch=wt.branch, commits=changes.commits_ahead, pushed=changes.pushed
        )

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
        """Record a finished attempt, step by step: decide its end, keep its work, store it, then
        the provider's health and the events.  A lost lease or fenced write records nothing more."""
        now = self.clock()
        with self.lock:
            stop_reason = slot.stop_reason  # read once: a heartbeat may set it while we record
        if stop_reason == "lease lost":
            _event(log, "attempt.dropped", task=slot.task.id, reason="lease lost: another coordinator owns the task")
            return
        ending = self._ending(slot, result, stop_reason, now)
        if slot.worktree is not None and stop_reason in (None, "shutdown"):
            self._keep_work(slot, ending.outcome.ok, now)
        if not self.store.finish_attempt(slot.attempt_id, self.owner, ending.end, ending.transition, now):
            _event(log, "attempt.dropped", task=slot.task.id, reason="fenced out: the lease was lost")
            return
        if stop_reason is None:
            self._record_health(slot, result, now)
            slot.health_recorded = True
        self._report_finish(slot, result, ending, now)

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
            end = dataclasses.replace(
                end, outcome="cancelled", error_kind="cancelled", error_message="cancelled by operator"
            )
            transition = Transition(
                TaskState.CANCELLED, last_error="cancelled by operator", last_error_kind="cancelled"
            )
        else:
            # task.attempt_count was counted at claim time (this attempt included).
            transition = after_attempt(
                slot.task, outcome, slot.target, self.svc.retry, self.svc.max_total_attempts, now, self.rng
            )
        return Ending(outcome, end, transition)

    def _report_finish(self, slot: Slot, result: AttemptResult, ending: Ending, now: dt.datetime) -> None:
        """The attempt.finished event (store and log)."""
        task, target, end, transition = slot.task, slot.target, ending.end, ending.transition
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
        """Update the provider's circuit with this outcome; announce a change of circuit."""
        fn = health_update(result.outcome, now, self.config.service.health)
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
    registered: a pid reused by a younger process does not count.)

    No bound on how long before registering the process started: a pid is reused only after
    its process ended, so a live process older than the registration is the one that
    registered, however long it ran first (a service that waited for its database, a test
    process that has run for ten minutes)."""
    try:
        proc = psutil.Process(int(coordinator["pid"]))
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        created = proc.create_time()
    except (psutil.Error, ValueError, TypeError):
        return False
    started = coordinator["started_at"].timestamp()
    return created <= started + 1  # 1 s: create_time's boot-time base is whole seconds


def _event(logger: logging.Logger, event: str, **fields: Any) -> None:
    text = " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
    logger.info(f"{event} {text}", extra={"data": {"event": event, **fields}})
