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
from collections.abc import Callable, Mapping
from typing import Any

import psutil

from adw_modules.claiming import NO_TARGET_RECHECK, Claiming, FastStart
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
    started_message,
)
from adw_modules.dispatch import log_event as _event
from adw_modules.finishing import Finishing
from adw_modules.outcomes import NotReady, StreamEvent
from adw_modules.queue import health
from adw_modules.queue.provider_view import ProviderView, append_recent
from adw_modules.queue.store import RECOVERED_EVENT, Store
from adw_modules.queue.tasks import Attempt, ClaimDecision, Claimed, Task, TaskState
from adw_modules.routing.learning import LearningStats, RoutingSignals
from adw_modules.routing.providers import ProviderRegistry
from adw_modules.routing.router import ModelRouter
from adw_modules.workers import runner
from adw_modules.workers.attempt import AttemptRequest, AttemptRunner
from adw_modules.workspace.worktrees import WorkspaceError, Workspaces, Worktree

log = logging.getLogger("adw.coordinator")

Clock = Callable[[], dt.datetime]
ORPHAN_MESSAGE = "crashed: coordinator restarted, its orphan worker killed"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Coordinator(Claiming, Finishing):
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
        self.view = ProviderView()
        self.learning = LearningStats()  # what attempts did per (rule key, target): routing learns from it
        self.learning_loaded_at: dt.datetime | None = None
        self.learning_full_at: dt.datetime | None = None
        self.learning_rng = random.Random(config.learning.seed)
        self._passing = threading.Lock()  # held by the dispatch pass that runs
        self._pass_again = False  # a dispatch was asked for while a pass ran
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
            # One random source for the coordinator's life: [learning] seed is read at start.
            self.router.signals = RoutingSignals(self.learning, self.learning_rng, self.provider_score)
            self.attempts = AttemptRunner(
                config, registry, environ=self.environ, kill_grace_s=self.svc.kill_grace_s, redact=redact
            )

    # ------------------------------------------------------------ lifecycle
    def startup(self) -> None:
        # Real time, not the injectable clock: orphan checks compare it with the process start time.
        self.store.register_coordinator(self.owner, self.name, self.host, os.getpid(), utcnow())
        self.recover_orphans()
        self.reconcile(self.clock())
        self.reload_learning(self.clock())
        try:
            self.store.optimize()
        except Exception:  # statistics only make claims faster; the coordinator runs without them
            log.exception("refreshing the store's query statistics failed")
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
        self._flush_recent()  # successes kept in memory would be lost with the process
        self.store.unregister_coordinator(self.owner)

    # ------------------------------------------------------------ dispatch
    def dispatch(self) -> int:
        """Claim and start as many tasks as there is room for; returns how many started.

        Each claim is one transaction that, for a task with nothing to prepare, also starts its
        attempt (``Claiming._decide``); provider health and load come from memory.

        One pass at a time: a call while another thread's pass runs returns 0 at once and makes
        that pass run once more (so room freed, or work announced, meanwhile is not missed).
        Any thread may call it: the service's tick, a wake-up, a watcher whose attempt ended.
        """
        started = 0
        while True:
            if not self._passing.acquire(blocking=False):
                self._pass_again = True
                return started
            try:
                self._pass_again = False
                started += self._dispatch_pass()
            finally:
                self._passing.release()
            # Asked for while the pass ran (even just before the release): run it again, unless
            # the asker got the lock meanwhile and runs it itself.
            if not self._pass_again:
                return started

    def _dispatch_pass(self) -> int:
        with self.lock:
            if not self.claiming:
                return 0
            room = self.svc.max_concurrency - len(self.slots)
        if room <= 0:
            return 0
        now = self.clock()
        self.reconcile_if_due(now)
        load = self.load(now)
        seen: set[int] = set()
        started = 0
        try:
            for task_id in self._next_ids(now, load, seen):
                if room <= 0 or not self.claiming:
                    break
                took = self._claim_one(task_id, seen, load)
                if took is None:
                    if task_id is None:
                        break  # nothing claimable left
                    continue  # another coordinator took that candidate
                if took:
                    started += 1
                    room -= 1
        finally:
            if started:
                self._record_processes()
        return started

    def _record_processes(self) -> None:
        """Store the pids of the workers this pass started, in one transaction, so orphan
        recovery can kill them if this process dies; the heartbeat retries what fails here."""
        with self.lock:
            fresh = {
                s.attempt_id: ident
                for s in self.slots.values()
                if not s.process_recorded and (ident := s.process()) is not None
            }
        try:
            recorded = self.store.record_processes(self.owner, fresh)
        except Exception:
            log.exception("recording the worker processes of this dispatch pass failed")
            return
        with self.lock:
            for slot in self.slots.values():
                slot.process_recorded = slot.process_recorded or slot.attempt_id in recorded

    def _claim_one(self, task_id: int | None, seen: set[int], load: Load) -> bool | None:
        """Claim one task (``task_id``, or the next claimable) and start it; True if it started,
        False if not, None if there was no such task to claim."""
        now = self.clock()  # per claim: preparing the previous one (git, GitHub) may have taken long
        lease = now + dt.timedelta(seconds=self.svc.lease_s)
        fast: list[FastStart] = []

        def decide(task: Task, prior: int) -> ClaimDecision:
            try:
                return self._decide(task, prior, load, fast)
            except Exception:  # a bug in deciding: the guarded pipeline plans again, reports and bounds it
                log.exception("deciding how to start task %s failed", task.id)
                fast.clear()
                return None

        claimed = self.store.claim_and_start(self.owner, lease, now, decide, task_id=task_id, exclude_ids=seen)
        if claimed is None:
            return None
        seen.add(claimed.task.id)
        if claimed.waiting is not None:
            if claimed.announced:
                _event(log, "task.waiting", task=claimed.task.id, state=str(claimed.task.state), reason=claimed.waiting)
            return False
        if claimed.attempt is None:
            return self._start(claimed.task, now, self.unavailable(now), load)
        (start,) = fast  # StartNow came with what its launch needs
        return self._start_claimed(claimed, start, load)

    def _start_claimed(self, claimed: Claimed, fast: FastStart, load: Load) -> bool:
        """Launch the worker of an attempt the claim already recorded as started."""
        assert claimed.attempt is not None
        task, attempt = claimed.task, claimed.attempt
        progress = Progress(attempt_id=attempt.id)
        budget = self.svc.task_budget_usd  # a first attempt: nothing spent yet
        plan = Plan(fast.decision, fast.target, lambda: [], budget)
        ready = Prepared(fast.prompt, None, attempt.started_at)
        try:
            slot = self._spawn(task, plan, ready, attempt.id, attempt.number, False, None, load)
            self._record_start(slot, progress)
        except Exception as exc:
            log.exception("starting task %s failed", task.id)
            self._start_failed(task, progress, exc)
        return progress.supervised

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
        self._record_start(slot, progress)
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
        routed = self._route(task, now, gates, load)
        if isinstance(routed, Release):
            return routed
        decision, target = routed
        waiting = self.waiting_reason(target.provider, load)
        if waiting is not None:
            return Release(TaskState.QUEUED, waiting)
        history = functools.cache(lambda: self.store.attempts_for(task.id))  # read once, only if needed
        budget = remaining_budget(task, self.svc.task_budget_usd, history)
        if budget is not None and budget <= 0:
            return Release(TaskState.FAILED, "task budget spent")
        return Plan(decision, target, history, budget)

    def _prepare(self, task: Task, now: dt.datetime) -> Prepared | Release:
        """Render the prompt and prepare the worktree."""
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
        # Preparing (prompt from GitHub, git fetch) may have outlasted part of the claim's lease:
        # the start renews it, fenced (a task reaped meanwhile is no longer ours to start).
        return Prepared(prompt, worktree, self.clock())

    def _take_trial(
        self, task: Task, provider: str, gates: Gates, now: dt.datetime, progress: Progress
    ) -> bool | Release:
        """A half-open provider runs one trial attempt at a time: take its slot (True), or wait."""
        if provider not in gates.trials:
            return False
        progress.trial_provider = provider  # from here on a failed start gives the slot back
        state = self.store.update_provider_state(provider, lambda s: health.start_trial(s, task.id, now) or s)
        self.view.stored(state)
        if state.probe_attempt_id != task.id:
            progress.trial_provider = None  # not ours
            return Release(TaskState.QUEUED, f"{provider}: another trial attempt is running")
        return True

    def _launch(
        self, task: Task, plan: Plan, ready: Prepared, trial: bool, load: Load, progress: Progress
    ) -> Slot | None:
        """Record the attempt as started (and the claim's lease renewed), then start its worker;
        None when the task was lost meanwhile."""
        previous = failover_source(task, plan.history)
        start = self._attempt_start(task, plan.decision, plan.target, previous)
        what = started_message(plan.target, previous)
        lease = ready.now + dt.timedelta(seconds=self.svc.lease_s)
        attempt = self.store.start_attempt(task.id, self.owner, start, ready.now, lease_until=lease, started_event=what)
        if attempt is None:
            if trial:
                self._release_trial(plan.target.provider, task.id)
            return None
        progress.attempt_id = attempt.id
        return self._spawn(task, plan, ready, attempt.id, attempt.number, trial, previous, load)

    def _spawn(
        self,
        task: Task,
        plan: Plan,
        ready: Prepared,
        attempt_id: int,
        number: int,
        trial: bool,
        previous: str | None,
        load: Load,
    ) -> Slot:
        """Start the worker of a recorded attempt; counted in this pass's load and the provider view."""
        target = plan.target
        load.running[target.provider] = load.running.get(target.provider, 0) + 1
        load.started[target.provider] = load.started.get(target.provider, 0) + 1
        self.view.started(target.provider, ready.now)
        try:
            request = self._request(task, plan, ready, number)
            running = self.attempts.start(request, on_event=functools.partial(self._on_event, task.id))
        except BaseException:
            self.view.ended(target.provider, None, None)
            raise
        return Slot(
            task,
            attempt_id,
            number,
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

    def _record_start(self, slot: Slot, progress: Progress) -> None:
        """Supervise a started worker: watched, its lease renewed, its outcome recorded.  Its
        pid goes to the store at the end of the dispatch pass (with its end, if that comes first)."""
        self._supervise(slot)
        progress.supervised = True
        ident = slot.running.identity
        _event(
            log,
            "attempt.started",
            task=slot.task.id,
            attempt=slot.number,
            target=str(slot.target),
            rule=slot.rule,
            failover_from=slot.failover_from,
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
        self.reload_learning_if_due(now)
        with self.lock:
            live = [s for s in self.slots.values() if s.stop_reason != "lease lost"]
        held = [(s.task.id, s.attempt_id) for s in live]
        processes = {s.attempt_id: ident for s in live if not s.process_recorded and (ident := s.process()) is not None}
        try:
            lease = now + dt.timedelta(seconds=self.svc.lease_s)
            lost = self.store.renew_leases(self.owner, held, lease, now, processes=processes)
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
        for slot in live:
            slot.process_recorded = slot.process_recorded or slot.attempt_id in processes
        for tid in lost:
            self._stop(tid, "lease lost")
        for tid in cancels:
            self._stop(tid, "cancelled")
        self._record_progress()
        self._flush_recent()
        self.reconcile_if_due(now)

    def _flush_recent(self) -> None:
        """Write the recent-window outcomes that successes on clean providers left in memory."""
        pending = self.view.take_pending()
        for provider, outcomes in pending.items():
            try:
                state = self.store.update_provider_state(provider, functools.partial(append_recent, outcomes))
                self.view.stored(state)
            except Exception:
                log.exception("recording recent outcomes of %s failed", provider)
                self.view.give_back({provider: outcomes})

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
