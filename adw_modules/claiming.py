"""How the coordinator decides what to claim and where it runs, without asking the store
(``Claiming``, a part of ``Coordinator``).

A dispatch pass asks the store for the next claimable task with ``Store.claim_and_start``,
which calls ``_decide`` while it holds the claim: route the task, and either start its attempt
in that same transaction (the hot path: nothing to prepare, a first attempt, a closed circuit),
leave it unclaimed because its target is busy, or claim it for the full pipeline
(``Coordinator._start``: a prompt from GitHub, a worktree, a half-open trial, a retry whose
history decides its budget and failover source).

Provider health, load and spend come from ``ProviderView`` (memory), reconciled with the store
every ``RECONCILE_INTERVAL`` by ``reconcile``; the pass itself runs no provider query.  What
learned routing reads (``routing.learning.LearningStats``) is memory too: loaded from the store
at start and every ``[learning] reload_s`` (``reload_learning``), fed by each attempt's end.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import threading
import zoneinfo
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from adw_modules.config.schema import Config, Target
from adw_modules.config.service import CoordinatorConfig
from adw_modules.dispatch import Gates, Load, Release, Slot, render_prompt, started_message, task_attrs
from adw_modules.dispatch import log_event as _event
from adw_modules.queue import health
from adw_modules.queue.provider_view import ProviderView
from adw_modules.queue.store import Store
from adw_modules.queue.tasks import AttemptStart, LeaveQueued, StartNow, Task, TaskState
from adw_modules.routing.learning import LearningStats, LoadView, provider_score
from adw_modules.routing.providers import ProviderRegistry
from adw_modules.routing.router import Decision, ModelRouter
from adw_modules.workspace.worktrees import Workspaces

FULL_RELOAD_S = 3600.0  # a full reload of the learned statistics at least this often

log = logging.getLogger("adw.coordinator")

NO_TARGET_RECHECK = dt.timedelta(seconds=60)
# how the wait_reason of a task released for want of a usable target starts (a reload wakes them)
NO_TARGET_REASON = "no usable target:"
CANDIDATES_PER_READ = 100  # tasks a pass reads at a time when some provider is at its limit
# How stale this coordinator's picture of other coordinators' load and health may get.
RECONCILE_INTERVAL = dt.timedelta(seconds=2)


def local_day(now: dt.datetime, timezone: str) -> tuple[dt.datetime, dt.datetime]:
    """The start of ``now``'s day and of the next one in ``timezone`` (the routing timezone), as
    UTC: daily spend caps reset at local midnight, the day the operator's rules speak of."""
    zone = zoneinfo.ZoneInfo(timezone)
    today = now.astimezone(zone).date()
    start = dt.datetime.combine(today, dt.time(), zone)
    following = dt.datetime.combine(today + dt.timedelta(days=1), dt.time(), zone)
    return start.astimezone(dt.UTC), following.astimezone(dt.UTC)


@dataclass
class FastStart:
    """What ``_decide`` worked out for a task it starts at once, for the launch after the commit."""

    decision: Decision
    target: Target
    prompt: str


class Claiming:
    """The claiming half of ``Coordinator`` (which sets these attributes)."""

    store: Store
    owner: str
    host: str
    config: Config
    svc: CoordinatorConfig
    registry: ProviderRegistry
    router: ModelRouter
    workspaces: Workspaces | None
    view: ProviderView
    lock: threading.RLock
    slots: dict[int, Slot]
    clock: Callable[[], dt.datetime]
    prompt_renderers: dict[str, Callable[[Task], str]]
    learning: LearningStats
    learning_loaded_at: dt.datetime | None
    learning_full_at: dt.datetime | None

    # ------------------------------------------------------------ the provider picture
    def reconcile(self, now: dt.datetime) -> None:
        """Refresh the in-memory provider picture from the store (what other coordinators did)."""
        day, _ = local_day(now, self.config.routing.timezone)
        limited = [name for name, pc in self.config.providers.items() if pc.rpm is not None]
        snap = self.store.provider_snapshot(now - dt.timedelta(seconds=60), day, started_of=limited)
        with self.lock:
            own: dict[str, int] = {}
            for slot in self.slots.values():
                own[slot.target.provider] = own.get(slot.target.provider, 0) + 1
        self.view.reconcile(snap, own, day, now)

    def reconcile_if_due(self, now: dt.datetime) -> None:
        if not self.view.due(now, RECONCILE_INTERVAL):
            return
        try:
            self.reconcile(now)
        except Exception:  # the old picture stays; the next pass tries again
            log.exception("reconciling the provider picture with the store failed")

    def unavailable(self, now: dt.datetime) -> Gates:
        """Providers the router must skip now, with reasons, and when each may come back."""
        down = dict(self.registry.unavailable())
        until: dict[str, dt.datetime] = {}
        trials: set[str] = set()
        for name in self.config.providers:
            if name in down:
                continue
            g = health.gate(self.view.state(name), now)
            if not g.open:
                down[name] = g.reason or "circuit open"
                if g.until is not None:
                    until[name] = g.until
            elif g.trial:
                trials.add(name)
        day, next_day = local_day(now, self.config.routing.timezone)
        spend = self.view.spent_today(day)
        for name, pc in self.config.providers.items():
            cap = pc.daily_budget_usd
            if name not in down and cap is not None and spend.get(name, 0.0) >= cap:
                down[name] = f"daily spend ${spend[name]:.2f} reached its cap of ${cap:.2f}"
                until[name] = next_day
        return Gates(down, until, trials)

    def load(self, now: dt.datetime) -> Load:
        return Load(running=self.view.running(), started=self.view.started_last_minute(now))

    def busy_reason(self, provider: str, load: Load) -> str | None:
        """At its concurrency or rpm limit: tasks for it wait, they do not fail over."""
        pc = self.config.providers[provider]
        if pc.max_concurrency is not None and load.running.get(provider, 0) >= pc.max_concurrency:
            return f"at max_concurrency {pc.max_concurrency}"
        if pc.rpm is not None and load.started.get(provider, 0) >= pc.rpm:
            return f"at {pc.rpm} attempts per minute"
        return None

    def waiting_reason(self, provider: str, load: Load) -> str | None:
        """Why a task for ``provider`` waits unclaimed ("waiting for P: …"), or None if it need not."""
        busy = self.busy_reason(provider, load)
        return None if busy is None else f"waiting for {provider}: {busy}"

    def _any_busy(self, load: Load) -> bool:
        return any(self.busy_reason(name, load) is not None for name in self.config.providers)

    # ------------------------------------------------------------ learning
    def reload_learning(self, now: dt.datetime) -> None:
        """Fill the learned statistics from the store (at start, then every [learning] reload_s:
        pull request fates, follow-ups and other coordinators' attempts arrive this way).  With
        success = "attempt" a reload reads only the attempts above the last watermark; a full
        one, every FULL_RELOAD_S, drops those older than history_days (bench/learning_reload.py:
        a full load of 100,000 attempts takes ~2 s)."""
        from adw_modules.ops.stats import load_learning

        full_at = self.learning_full_at
        incremental = full_at is not None and now >= full_at and (now - full_at).total_seconds() < FULL_RELOAD_S
        try:
            n = load_learning(self.store, self.learning, self.config, now, incremental=incremental)
        except Exception:  # the statistics so far stay; the next heartbeat tries again
            log.exception("loading the learned routing statistics failed")
            return
        self.learning_loaded_at = now
        if not incremental:
            self.learning_full_at = now
        _event(log, "learning.loaded", attempts=n, success=self.config.learning.success, incremental=incremental)

    def reload_learning_if_due(self, now: dt.datetime) -> None:
        last = self.learning_loaded_at
        if last is None or (now - last).total_seconds() >= self.config.learning.reload_s or now < last:
            self.reload_learning(now)

    def provider_score(self, provider: str) -> float | None:
        """Recent success rate, reduced when slow (routing.learning.provider_score); for min_score."""
        state = self.view.state(provider)
        recent = state.recent if state is not None else []
        return provider_score(recent, self.learning.durations(provider), self.config.learning.latency_target_s)

    # ------------------------------------------------------------ which task next
    def _next_ids(self, now: dt.datetime, load: Load, seen: set[int]) -> Iterator[int | None]:
        """The tasks a pass tries, in claim order: None means "the next claimable one" (the store
        picks it).  While a provider is at its limit, candidates are read first and those waiting
        for it are skipped unclaimed (their reason stored once), so a pass over many waiting tasks
        writes nothing."""
        if not self._any_busy(load):
            while True:
                yield None
        while True:
            batch = self.store.claimable_tasks(now, CANDIDATES_PER_READ, exclude_ids=seen)
            if not batch:
                return
            for candidate in batch:
                seen.add(candidate.id)
                if not self._waits_for_busy(candidate, now, load):
                    yield candidate.id

    def _waits_for_busy(self, task: Task, now: dt.datetime, load: Load) -> bool:
        """Is an unclaimed task's target busy?  Then it stays unclaimed; its reason is stored and
        announced once (not once per pass).  Anything else is for the claim to decide."""
        reason = self._busy_wait(task, now, load)
        if reason is None:
            return False
        if task.wait_reason != reason and self.store.note_waiting(task.id, reason, now):
            self.store.add_event("task.waiting", reason, task_id=task.id, now=now)
            _event(log, "task.waiting", task=task.id, state=str(task.state), reason=reason)
        return True

    def _busy_wait(self, task: Task, now: dt.datetime, load: Load) -> str | None:
        """ "waiting for P: …" if the task's target P is at its limit, else None."""
        if task.cancel_requested:
            return None
        try:
            routed = self._route(task, now, self.unavailable(now), load)
        except Exception:  # the guarded pipeline reports it, once the task is claimed
            return None
        if isinstance(routed, Release):
            return None
        return self.waiting_reason(routed[1].provider, load)

    def _route(self, task: Task, now: dt.datetime, gates: Gates, load: Load) -> tuple[Decision, Target] | Release:
        """The router's decision and its first target the task has not excluded.  ``load`` is
        what candidate picks balance by (busy providers go last)."""
        view = LoadView(load.running, functools.partial(self.busy_reason, load=load))
        decision = self.router.decide(task_attrs(task), unavailable=gates.down, now=now, load=view)
        candidates = [t for t in decision.targets if str(t) not in task.excluded_targets]
        if not candidates:
            skipped = "; ".join(f"{t} ({why})" for t, why in decision.skipped) or "all targets excluded"
            recover = [gates.until[t.provider] for t, _ in decision.skipped if t.provider in gates.until]
            not_before = min(recover) if recover else now + NO_TARGET_RECHECK
            return Release(TaskState.RETRY_WAIT, f"{NO_TARGET_REASON} {skipped}", not_before)
        return decision, candidates[0]

    # ------------------------------------------------------------ the decision under the claim
    def _decide(
        self, task: Task, prior_attempts: int, load: Load, out: list[FastStart]
    ) -> StartNow | LeaveQueued | None:
        """``Store.claim_and_start``'s callback: start at once (``out`` gets what the launch needs),
        leave the task waiting for a busy target, or claim it for the full pipeline (None)."""
        now = task.updated_at
        if task.cancel_requested or prior_attempts or self._needs_preparing(task):
            return None
        gates = self.unavailable(now)
        routed = self._route(task, now, gates, load)
        if isinstance(routed, Release):
            return None  # the pipeline releases it and says why
        decision, target = routed
        waiting = self.waiting_reason(target.provider, load)
        if waiting is not None:
            return LeaveQueued(waiting)
        if target.provider in gates.trials:
            return None  # a half-open trial takes the provider's single slot first
        prompt = render_prompt(task)
        out.append(FastStart(decision, target, prompt))
        return StartNow(self._attempt_start(task, decision, target, None), started_message(target, None)(1))

    def _needs_preparing(self, task: Task) -> bool:
        """A prompt its source builds (GitHub: comments), or a worktree: not under a claim's lock."""
        return task.source in self.prompt_renderers or (self.workspaces is not None and bool(task.repo))

    def _attempt_start(self, task: Task, decision: Decision, target: Target, previous: str | None) -> AttemptStart:
        routing = {**decision.to_dict(), "chosen": str(target), "excluded": task.excluded_targets}
        return AttemptStart(
            provider=target.provider,
            model=target.model,
            rule=decision.rule,
            routing=routing,
            config_fingerprint=self.config.fingerprint,
            host=self.host,
            failover_from=previous,
        )
