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

import datetime as dt
import functools
import logging
import os
import random
import socket
import threading
import uuid
import zoneinfo
from collections.abc import Callable, Mapping
from typing import Any

import psutil

from adw_modules.config.schema import Config, Target
from adw_modules.dispatch import (
    Gates,
    Load,
    Plan,
    Prepared,
    Progress,
    Release,
    Slot,
    ensure_dir,
    failover_source,
    remaining_budget,
    render_prompt,
    short_error,
    task_attrs,
)
from adw_modules.dispatch import log_event as _event
from adw_modules.finishing import Finishing
from adw_modules.outcomes import NotReady, StreamEvent
from adw_modules.queue import health
from adw_modules.queue.store import RECOVERED_EVENT, Store
from adw_modules.queue.tasks import (
    Attempt,
    AttemptStart,
    Task,
    TaskState,
)
from adw_modules.routing.providers import ProviderRegistry
from adw_modules.routing.router import Decision, ModelRouter
from adw_modules.workers import runner
from adw_modules.workers.attempt import AttemptRequest, AttemptRunner
from adw_modules.workspace.worktrees import WorkspaceError, Workspaces, Worktree

log = logging.getLogger("adw.coordinator")

Clock = Callable[[], dt.datetime]
NO_TARGET_RECHECK = dt.timedelta(seconds=60)
CANDIDATES_PER_READ = 100  # tasks a dispatch pass reads at a time, in claim order
ORPHAN_MESSAGE = "crashed: coordinator restarted, its orphan worker killed"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def local_day(now: dt.datetime, timezone: str) -> tuple[dt.datetime, dt.datetime]:
    """The start of ``now``'s day and of the next one in ``timezone`` (the routing timezone), as
    UTC: daily spend caps reset at local midnight, the day the operator's rules speak of."""
    zone = zoneinfo.ZoneInfo(timezone)
    today = now.astimezone(zone).date()
    start = dt.datetime.combine(today, dt.time(), zone)
    following = dt.datetime.combine(today + dt.timedelta(days=1), dt.time(), zone)
    return start.astimezone(dt.UTC), following.astimezone(dt.UTC)


class Coordinator(Finishing):
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
            if self.store.abandon_attempt(att.id, att.owner, now, ORPHAN_MESSAGE, self.svc.max_total_attempts):
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
        day, next_day = local_day(now, self.config.routing.timezone)
        spend = self.store.spend_since(day)
        for name, pc in self.config.providers.items():
            cap = pc.daily_budget_usd
            if name not in down and cap is not None and spend.get(name, 0.0) >= cap:
                down[name] = f"daily spend ${spend[name]:.2f} reached its cap of ${cap:.2f}"
                until[name] = next_day
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
        """Claim and start as many tasks as there is room for; returns how many started.

        Candidates are read first, in claim order; one whose target is busy (max_concurrency,
        rpm) is left unclaimed, its wait reason stored and announced only when it changes, so a
        pass over many waiting tasks writes nothing (no claim, release and event per task).
        """
        with self.lock:
            if not self.claiming:
                return 0
            room = self.svc.max_concurrency - len(self.slots)
        if room <= 0:
            return 0
        now = self.clock()
        gates_at, gates = now, self.unavailable(now)
        load = self.load(now)
        seen: set[int] = set()
        started = 0
        while room > 0 and self.claiming:
            batch = self.store.claimable_tasks(now, CANDIDATES_PER_READ, exclude_ids=seen)
            if not batch:
                break
            for candidate in batch:
                seen.add(candidate.id)
                if room <= 0 or not self.claiming:
                    break
                if candidate.updated_at > gates_at:
                    # It ended an attempt after this pass looked at provider health (a failover
                    # requeued at once): look again, or it goes straight back where it failed.
                    gates_at = self.clock()
                    gates = self.unavailable(gates_at)
                if self._waits_for_busy(candidate, now, gates, load):
                    continue
                now = self.clock()  # per claim: preparing the previous one (git, GitHub) may have taken long
                lease = now + dt.timedelta(seconds=self.svc.lease_s)
                task = self.store.claim_task(self.owner, lease, now, task_id=candidate.id)
                if task is not None and self._start(task, now, gates, load, candidate.wait_reason):
                    started += 1
                    room -= 1
        return started

    def _waits_for_busy(self, task: Task, now: dt.datetime, gates: Gates, load: Load) -> bool:
        """Is an unclaimed task's target busy?  Then it stays unclaimed; its reason is stored and
        announced once (not once per pass).  Anything else is for the claimed pipeline to decide."""
        if task.cancel_requested:
            return False
        try:
            routed = self._route(task, now, gates)
        except Exception:  # the guarded pipeline reports it, once the task is claimed
            return False
        if isinstance(routed, Release):
            return False
        busy = self.busy_reason(routed[1].provider, load)
        if busy is None:
            return False
        reason = f"waiting for {routed[1].provider}: {busy}"
        if task.wait_reason != reason and self.store.note_waiting(task.id, reason, now):
            self.store.add_event("task.waiting", reason, task_id=task.id, now=now)
            _event(log, "task.waiting", task=task.id, state=str(task.state), reason=reason)
        return True

    def _release(self, task: Task, now: dt.datetime, release: Release | None, previous: str | None = None) -> bool:
        """Give a claimed task back as ``release`` says (None: it is no longer ours, nothing to give
        back); announced unless it waits for the same reason as before its claim (``previous``).
        Always False: the task did not start."""
        if release is None:
            return False
        if self.store.release_task(
            task.id, self.owner, release.state, release.not_before, release.reason, counted=release.counted
        ):
            if release.state is not TaskState.FAILED and release.reason == previous:
                return False
            kind = "task.failed" if release.state is TaskState.FAILED else "task.waiting"
            self.store.add_event(kind, release.reason, task_id=task.id, now=now)
            _event(log, kind, task=task.id, state=str(release.state), reason=release.reason)
        return False

    def _start(
        self, task: Task, now: dt.datetime, gates: Gates, load: Load, previous_reason: str | None = None
    ) -> bool:
        """Start an attempt of a claimed task; False when it did not start.  An exception in any
        step gives the task back to wait a backoff (counted: a start that always fails ends)
        and gives back the trial slot it took; if even that fails, the lease runs out and the
        reaper requeues it."""
        progress = Progress()
        try:
            return self._start_steps(task, now, gates, load, previous_reason, progress)
        except Exception as exc:
            log.exception("starting task %s failed", task.id)
            self._start_failed(task, progress, exc)
            return progress.supervised

    def _start_steps(
        self, task: Task, now: dt.datetime, gates: Gates, load: Load, previous: str | None, progress: Progress
    ) -> bool:
        """The pipeline: plan -> prepare -> take the trial slot -> launch -> record."""
        plan = self._plan(task, now, gates, load)
        if not isinstance(plan, Plan):
            return self._release(task, now, plan, previous)
        ready = self._prepare(task, now)
        if not isinstance(ready, Prepared):
            return self._release(task, now, ready, previous)
        trial = self._take_trial(task, plan.target.provider, gates, ready.now, progress)
        if isinstance(trial, Release):
            return self._release(task, ready.now, trial, previous)
        slot = self._launch(task, plan, ready, trial, load, progress)
        if slot is None:
            return False  # lost the task between claim and start; whoever has it now runs it
        self._record_start(slot, ready.now, progress)
        return True

    def _start_failed(self, task: Task, progress: Progress, exc: Exception) -> None:
        """Undo what a failed start took: the trial slot, then the claim (or the attempt row)."""
        if progress.supervised:
            return  # the watcher records the attempt as usual
        if progress.trial_provider is not None:
            self._release_trial(progress.trial_provider, task.id)
        now = self.clock()
        detail = f"could not start: {self.redact(short_error(exc))}"
        not_before = now + dt.timedelta(seconds=self._backoff_s(task))
        try:
            if progress.attempt_id is not None:
                self.store.abandon_attempt(
                    progress.attempt_id, self.owner, now, detail, self.svc.max_total_attempts, not_before
                )
                return
            if task.attempt_count >= self.svc.max_total_attempts:
                why = f"gave up after {task.attempt_count} attempts; last: {detail}"
                release = Release(TaskState.FAILED, why, counted=True)
            else:
                release = Release(TaskState.RETRY_WAIT, detail, not_before, counted=True)
            self._release(task, now, release)
        except Exception:  # bounded all the same: the lease expires and the reaper counts it
            log.exception("giving back task %s after a failed start failed", task.id)

    def _plan(self, task: Task, now: dt.datetime, gates: Gates, load: Load) -> Plan | Release:
        """Route the task, then check its target is not busy and the task's budget not spent."""
        if task.cancel_requested:
            return Release(
                TaskState.CANCELLED, f"cancelled before it could start: {task.cancel_reason or 'cancel requested'}"
            )
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
        except NotReady as exc:  # the source knows until when (e.g. GitHub's rate-limit reset)
            return Release(TaskState.RETRY_WAIT, str(exc), exc.until)
        except Exception as exc:  # e.g. GitHub unreachable while fetching comments: try again later
            # Not counted as an attempt (no agent ran; an outage must not fail tasks), but waits.
            wait = dt.timedelta(seconds=self._backoff_s(task))
            return Release(
                TaskState.RETRY_WAIT, f"could not build the prompt: {self.redact(short_error(exc))}", now + wait
            )
        try:
            worktree = self._worktree(task)
        except WorkspaceError as exc:
            return Release(TaskState.RETRY_WAIT, f"workspace: {exc}", now + NO_TARGET_RECHECK)
        # Preparing (prompt from GitHub, git fetch) may have outlasted part of the claim's lease.
        now = self.clock()
        if self.store.renew_leases(self.owner, [(task.id, None)], now + dt.timedelta(seconds=self.svc.lease_s), now):
            return None  # reaped meanwhile: whoever holds it now runs it
        return Prepared(prompt, worktree, now)

    def _take_trial(
        self, task: Task, provider: str, gates: Gates, now: dt.datetime, progress: Progress
    ) -> bool | Release:
        """A half-open provider runs one trial attempt at a time: take its slot (True), or wait."""
        if provider not in gates.trials:
            return False
        progress.trial_provider = provider  # from here on a failed start gives the slot back
        state = self.store.update_provider_state(provider, lambda s: health.start_trial(s, task.id, now) or s)
        if state.probe_attempt_id != task.id:
            progress.trial_provider = None  # not ours
            return Release(TaskState.QUEUED, f"{provider}: another trial attempt is running")
        return True

    def _launch(
        self, task: Task, plan: Plan, ready: Prepared, trial: bool, load: Load, progress: Progress
    ) -> Slot | None:
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
        progress.attempt_id = attempt.id
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

    def _record_start(self, slot: Slot, now: dt.datetime, progress: Progress) -> None:
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
            progress.supervised = True
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

    def _on_event(self, task_id: int, event: StreamEvent) -> None:
        if event.signal is not None:
            _event(log, "attempt.signal", task=task_id, signal=str(event.signal), message=event.message)

    # ------------------------------------------------------------ periodic duties
    def heartbeat(self) -> None:
        """Renew leases (self-fencing when that fails too long) and act on cancel requests."""
        now = self.clock()
        with self.lock:
            held = [(tid, s.attempt_id) for tid, s in self.slots.items() if s.stop_reason != "lease lost"]
        try:
            lost = self.store.renew_leases(self.owner, held, now + dt.timedelta(seconds=self.svc.lease_s), now)
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
        reaped = self.store.reap_expired(now, self.svc.max_total_attempts)
        for task, att in reaped:
            if att is not None:
                self._kill_local_worker(att)
            what = f"lease expired; task {task.state}" + (
                f": {task.last_error}" if task.state is TaskState.FAILED else ""
            )
            self.store.add_event(RECOVERED_EVENT, what, task_id=task.id, now=now)
            _event(log, RECOVERED_EVENT, task=task.id, previous_owner=None if att is None else att.owner)
        return len(reaped)

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
