"""Prometheus metrics read from the STORE at scrape time.

Nothing is counted in process memory: every scrape asks the store, so several coordinators
on one PostgreSQL store all report the same numbers, and those numbers are the store's own
totals (``adw usage``, ``adw status``).  Counters are sums over the attempts and events
tables plus what retention folded into ``retired_counts`` before deleting rows, so a counter
never goes down (a drop would read as a reset and a false spike in ``rate()``).

Labels are only names from the config and the store's vocabularies (provider, model, state,
priority, outcome, circuit state): never a message, URL or secret.

    adw_store_up                                   1 if the scrape could read the store
    adw_queue_depth{state,priority}                tasks (every state x priority, zeros included)
    adw_attempts_total{provider,model,outcome}     finished attempts
    adw_attempts_running{provider,model}           running attempts
    adw_attempt_duration_seconds{provider}         histogram of finished attempts' wall time
    adw_tokens_total{provider,model,kind}          finished attempts; kind: input | output | cache_read | cache_write
    adw_cost_usd_total{provider,model}             known cost (unknown costs count 0)
    adw_failovers_total{from_provider,provider}    attempts started because another target failed
    adw_lease_recoveries_total                     tasks requeued after a lost lease or an orphan
    adw_provider_circuit_state{provider,state}     1 for the provider's current circuit state
    adw_provider_cooldown_until_seconds{provider}  unix time the cooldown ends (0: none)
    adw_provider_disabled{provider}                1 while an operator must fix something
    adw_coordinators                               coordinators registered on the store
    adw_github_rate_limit_remaining                GitHub API calls left (when a GitHub source runs)
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from sqlalchemy.exc import SQLAlchemyError

from adw_modules.queue.store import DURATION_BUCKETS_S, TOKEN_KINDS, Store
from adw_modules.queue.tasks import PRIORITY_RANK, CircuitState, TaskState

log = logging.getLogger("adw.metrics")


@dataclass
class Snapshot:
    """What one scrape read from the store (aggregates only)."""

    queue: dict[str, dict[str, int]]
    # (provider, model, outcome) -> finished attempts; outcome "running" for live ones
    attempts: dict[tuple[str, str, str], int] = field(default_factory=dict)
    # (provider, model) -> [input, output, cache_read, cache_write]
    tokens: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    cost: dict[tuple[str, str], float] = field(default_factory=dict)
    # provider -> (cumulative counts per DURATION_BUCKETS_S, count, sum)
    durations: dict[str, tuple[list[int], int, float]] = field(default_factory=dict)
    failovers: dict[tuple[str, str], int] = field(default_factory=dict)
    recoveries: int = 0
    coordinators: int = 0


def read_snapshot(store: Store) -> Snapshot:
    """The aggregates behind every metric.  Raises SQLAlchemyError if the store is unreachable."""
    agg = store.attempt_aggregates()
    snap = Snapshot(queue=store.counts_by_state_priority(), coordinators=len(store.coordinators()))
    for r in agg["by_target"]:
        key = (r["provider"], r["model"])
        snap.attempts[(*key, r["outcome"])] = int(r.get("n") or 0)
        toks = snap.tokens.setdefault(key, [0, 0, 0, 0])
        for i, k in enumerate(TOKEN_KINDS):
            toks[i] += int(r.get(k) or 0)
        snap.cost[key] = snap.cost.get(key, 0.0) + float(r.get("cost") or 0.0)
    for r in agg["by_duration"]:
        buckets = [int(r.get(f"le{i}") or 0) for i in range(len(DURATION_BUCKETS_S))]
        snap.durations[r["provider"]] = (buckets, int(r.get("n") or 0), max(0.0, float(r.get("total") or 0.0)))
    failovers: dict[tuple[str, str], int] = defaultdict(int)
    for r in agg["by_failover"]:
        failovers[(str(r["failover_from"]).split(":", 1)[0], r["provider"])] += int(r.get("n") or 0)
    snap.failovers = dict(failovers)
    snap.recoveries = int(agg["recoveries"])
    return snap


class StoreCollector(Collector):
    """A prometheus_client collector answering every scrape from the store.

    ``providers``: configured provider names (so a provider with no stored health yet still
    reports a closed circuit).  ``github_remaining``: GitHub rate-limit calls left, or None.
    """

    def __init__(
        self,
        store: Store,
        *,
        providers: Callable[[], Iterable[str]] | None = None,
        github_remaining: Callable[[], int | None] | None = None,
    ) -> None:
        self.store = store
        self.providers = providers
        self.github_remaining = github_remaining

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("adw_store_up", "1 if this scrape could read the store, else 0.")
        try:
            snap = read_snapshot(self.store)
            states = self.store.provider_states()
        except SQLAlchemyError as exc:
            log.warning(f"metrics: store unreachable ({type(exc).__name__})")
            up.add_metric([], 0)
            yield up
            yield from self._github()
            return
        up.add_metric([], 1)
        yield up
        yield from self._queue(snap)
        yield from self._attempts(snap)
        yield from self._providers(snap, states)
        yield from self._github()

    def _queue(self, snap: Snapshot) -> Iterator[Metric]:
        g = GaugeMetricFamily("adw_queue_depth", "Tasks by state and priority.", labels=["state", "priority"])
        prios = list(PRIORITY_RANK) + sorted({p for row in snap.queue.values() for p in row} - set(PRIORITY_RANK))
        for state in [str(s) for s in TaskState] + sorted(set(snap.queue) - {str(s) for s in TaskState}):
            for prio in prios:
                g.add_metric([state, prio], snap.queue.get(state, {}).get(prio, 0))
        yield g
        c = GaugeMetricFamily("adw_coordinators", "Coordinators registered on the store.")
        c.add_metric([], snap.coordinators)
        yield c

    def _attempts(self, snap: Snapshot) -> Iterator[Metric]:
        total = CounterMetricFamily(
            "adw_attempts", "Finished attempts by target and outcome.", labels=["provider", "model", "outcome"]
        )
        running = GaugeMetricFamily("adw_attempts_running", "Running attempts.", labels=["provider", "model"])
        for (provider, model, outcome), n in sorted(snap.attempts.items()):
            if outcome == "running":
                running.add_metric([provider, model], n)
            else:
                total.add_metric([provider, model, outcome], n)
        yield total
        yield running
        hist = HistogramMetricFamily(
            "adw_attempt_duration_seconds", "Wall time of finished attempts.", labels=["provider"]
        )
        for provider, (buckets, count, seconds) in sorted(snap.durations.items()):
            pairs = [(floatToGoString(b), float(n)) for b, n in zip(DURATION_BUCKETS_S, buckets, strict=True)]
            hist.add_metric([provider], [*pairs, ("+Inf", float(count))], sum_value=seconds)
        yield hist
        tokens = CounterMetricFamily("adw_tokens", "Tokens by target and kind.", labels=["provider", "model", "kind"])
        cost = CounterMetricFamily("adw_cost_usd", "Known cost in US dollars.", labels=["provider", "model"])
        for (provider, model), toks in sorted(snap.tokens.items()):
            for kind, n in zip(TOKEN_KINDS, toks, strict=True):
                tokens.add_metric([provider, model, kind], n)
            cost.add_metric([provider, model], snap.cost.get((provider, model), 0.0))
        yield tokens
        yield cost
        fo = CounterMetricFamily(
            "adw_failovers", "Attempts started because another target failed.", labels=["from_provider", "provider"]
        )
        for (src, dst), n in sorted(snap.failovers.items()):
            fo.add_metric([src, dst], n)
        yield fo
        rec = CounterMetricFamily("adw_lease_recoveries", "Tasks requeued after a lost lease or an orphaned worker.")
        rec.add_metric([], snap.recoveries)
        yield rec

    def _providers(self, snap: Snapshot, states: dict[str, Any]) -> Iterator[Metric]:
        names = set(states) | set(self.providers() if self.providers is not None else ())
        circuit = GaugeMetricFamily(
            "adw_provider_circuit_state", "1 for the provider's current circuit state.", labels=["provider", "state"]
        )
        until = GaugeMetricFamily(
            "adw_provider_cooldown_until_seconds",
            "Unix time the provider's cooldown ends (0: not cooling down).",
            labels=["provider"],
        )
        disabled = GaugeMetricFamily(
            "adw_provider_disabled", "1 while the provider is disabled until an operator fixes it.", labels=["provider"]
        )
        for name in sorted(names):
            st = states.get(name)
            current = CircuitState.CLOSED if st is None else st.circuit
            for s in CircuitState:
                circuit.add_metric([name, str(s)], 1 if s is current else 0)
            ts = st.cooldown_until.timestamp() if st is not None and st.cooldown_until is not None else 0.0
            until.add_metric([name], ts)
            disabled.add_metric([name], 1 if st is not None and st.disabled_reason else 0)
        yield circuit
        yield until
        yield disabled

    def _github(self) -> Iterator[Metric]:
        if self.github_remaining is None:
            return
        try:
            remaining = self.github_remaining()
        except Exception as exc:  # a metrics scrape must not fail because of GitHub
            log.warning(f"metrics: GitHub quota unknown ({type(exc).__name__})")
            return
        if remaining is None or remaining < 0:  # no response seen yet
            return
        g = GaugeMetricFamily("adw_github_rate_limit_remaining", "GitHub API calls left in the current window.")
        g.add_metric([], remaining)
        yield g
