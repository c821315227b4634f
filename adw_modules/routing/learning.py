"""Routing that learns from history: success statistics per (key, candidate), kept incrementally,
and the pick rules that read them (``model_select.pick = "learned" | "weighted" | "least-busy"``).

``LearningStats`` holds, per learning key (the rule, and optionally the task's labels or repo:
``learn_by``) and candidate target, the successes, failures and summed cost of its attempts.
The coordinator loads it once from the store at start (``load``), adds each attempt's end as
it is recorded (``record``) and reloads it on a slow timer; a decision only reads a few
numbers per candidate, it never aggregates.

``select_learned`` ranks the candidates by their Beta posteriors of P(success), Beta(prior_s +
successes, prior_f + failures), and their cost per attempt.  The exploiting choice: with
``objective = "cost_per_success"``, the lowest expected cost per success (cost / posterior mean)
among the candidates whose optimistic P(success) (mean + ``OPTIMISM`` posterior sds) clears
``min_success``, else the most likely to succeed; with ``objective = "success"``, the most likely.
Exploration is Thompson sampling, bounded by ``explore``: on a share ``explore`` of the decisions
one draw is taken from each posterior and the same ranking made on the draws; its choice is
followed only while the key's explorations stay within ``explore`` of its decisions.  The coin
and the draws come from ``RoutingSignals.rng`` (seeded from ``[learning] seed``), so decisions
are reproducible in tests and simulations.

What is not a success or failure of a model: a provider fault (rate limit, quota, overload,
auth, stall, launch failure) and a cancelled attempt say nothing about how well the model does
the work, so they are left out (provider health handles them).
"""

from __future__ import annotations

import math
import random
import statistics
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from adw_modules.config.routing import ModelSelector, Rule, Target
from adw_modules.outcomes import PROVIDER_FAULTS, ErrorKind, Usage

# Cost per attempt assumed for a candidate that has no costed attempt yet: its price at this usage.
NOMINAL_USAGE = Usage(input_tokens=50_000, output_tokens=5_000)
DURATION_WINDOW = 50  # recent durations kept per provider (the score's latency)
OPTIMISM = 2.0  # posterior sds above the mean an exploiting decision credits a candidate with
NOT_LEARNED = frozenset({*PROVIDER_FAULTS, ErrorKind.CANCELLED})


def counts_for_learning(outcome: str | None, error_kind: str | None) -> bool:
    """Does an attempt's end say something about the model (see the module docstring)?"""
    if outcome in (None, "cancelled"):
        return False
    if error_kind is None:
        return True
    try:
        return ErrorKind(error_kind) not in NOT_LEARNED
    except ValueError:
        return True


def success_of(
    outcome: str | None, error_kind: str | None, followed_up: bool, pr_fate: str | None, mode: str
) -> bool | None:
    """Did an attempt succeed as ``[learning] success`` defines it (config.learning)?  None: it
    does not count (a provider fault, a cancellation, a pull request not decided yet)."""
    if not counts_for_learning(outcome, error_kind):
        return None
    ok = outcome == "success"
    if not ok or mode == "attempt":
        return ok
    if mode == "task":
        return not followed_up
    if pr_fate == "merged":
        return True
    return False if pr_fate == "closed" else None


def learning_key(learn_by: Sequence[str], rule: str | None, labels: Iterable[str], repo: str | None) -> str:
    """The key statistics are kept under: e.g. ``rule=bugs labels=bug,ui``."""
    parts = []
    for what in learn_by:
        if what == "rule":
            parts.append(f"rule={rule or '-'}")
        elif what == "labels":
            parts.append("labels=" + ",".join(sorted(labels)))
        elif what == "repo":
            parts.append(f"repo={repo or '-'}")
    return " ".join(parts) or "all"


def rule_learn_by(rules: Sequence[Rule], rule: str | None) -> tuple[str, ...]:
    """The ``learn_by`` of a rule's learned selector; ("rule",) for any other rule."""
    for r in rules:
        if r.name == rule and r.select is not None and r.select.pick == "learned":
            return r.select.learn_by
    return ("rule",)


class Cell:
    """One (key, candidate): what its attempts did."""

    __slots__ = ("cost", "costed", "failures", "successes")

    def __init__(self) -> None:
        self.successes = 0
        self.failures = 0
        self.cost = 0.0  # summed over the costed attempts
        self.costed = 0

    @property
    def attempts(self) -> int:
        return self.successes + self.failures

    def mean_cost(self) -> float | None:
        return self.cost / self.costed if self.costed else None


@dataclass(frozen=True)
class Fact:
    """One attempt as learning counts it (from the store, or as it ends)."""

    key: str
    target: str
    ok: bool
    cost_usd: float | None
    attempt_id: int | None = None  # counted once: by record() as it ends, or by a reload


class LearningStats:
    """Thread-safe: attempt watchers record, the claim reads.  Reads take no lock: a dict lookup
    and a few int reads are atomic under the GIL, and a decision tolerates a count one behind."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cells: dict[tuple[str, str], Cell] = {}
        self._decisions: dict[str, int] = {}
        self._explored: dict[str, int] = {}
        self._durations: dict[str, deque[float]] = {}
        # Incremental reloads: every attempt with an id at or below the watermark is counted;
        # above it, the ids counted so far (by record() or a reload), so none counts twice.
        self.watermark: int | None = None
        self._counted: set[int] = set()
        # Facts recorded while a full load reads the store (begin_load .. load): kept, so an
        # attempt ending during a reload is not lost when the new statistics replace the old.
        self._during_load: list[Fact] | None = None

    def record(self, fact: Fact) -> None:
        with self._lock:
            if fact.attempt_id is not None:
                if fact.attempt_id in self._counted or (
                    self.watermark is not None and fact.attempt_id <= self.watermark
                ):
                    return
                self._counted.add(fact.attempt_id)
            if self._during_load is not None:
                self._during_load.append(fact)
            self._add(self._cells, fact)

    def begin_load(self) -> None:
        """A full load is about to read the store: keep what is recorded meanwhile."""
        with self._lock:
            self._during_load = []

    def merge(self, facts: Iterable[Fact], watermark: int) -> int:
        """An incremental reload: add the facts not counted yet (ids above the last watermark);
        then everything at or below ``watermark`` is counted.  The facts added."""
        added = 0
        with self._lock:
            for fact in facts:
                if fact.attempt_id is not None and fact.attempt_id in self._counted:
                    continue
                if fact.attempt_id is not None:
                    self._counted.add(fact.attempt_id)
                self._add(self._cells, fact)
                added += 1
            self._set_watermark(watermark)
        return added

    def _set_watermark(self, watermark: int) -> None:
        self.watermark = watermark
        self._counted = {i for i in self._counted if i > watermark}

    @staticmethod
    def _add(cells: dict[tuple[str, str], Cell], fact: Fact) -> None:
        cell = cells.get((fact.key, fact.target))
        if cell is None:
            cell = cells[(fact.key, fact.target)] = Cell()
        if fact.ok:
            cell.successes += 1
        else:
            cell.failures += 1
        if fact.cost_usd is not None:
            cell.cost += fact.cost_usd
            cell.costed += 1

    def load(
        self,
        facts: Iterable[Fact],
        durations: Mapping[str, Sequence[float]] | None = None,
        watermark: int | None = None,
    ) -> None:
        """Replace every statistic with these (the store's history, read after ``begin_load``
        with ``watermark`` read before it); facts recorded since ``begin_load`` that the read
        missed are kept."""
        cells: dict[tuple[str, str], Cell] = {}
        seen: set[int] = set()
        for fact in facts:
            self._add(cells, fact)
            if fact.attempt_id is not None:
                seen.add(fact.attempt_id)
        with self._lock:
            for fact in self._during_load or ():
                if fact.attempt_id is None or fact.attempt_id not in seen:
                    self._add(cells, fact)
                    if fact.attempt_id is not None:
                        seen.add(fact.attempt_id)
            self._during_load = None
            self._cells = cells
            self._counted = seen
            if watermark is None:
                self.watermark = None
            else:
                self._set_watermark(watermark)
            if durations is not None:
                self._durations = {p: deque(d[-DURATION_WINDOW:], DURATION_WINDOW) for p, d in durations.items()}

    def cell(self, key: str, target: str) -> Cell | None:
        return self._cells.get((key, target))

    def cell_map(self) -> Mapping[tuple[str, str], Cell]:
        """The live (key, target) -> Cell map, for reading without a lock (``load`` swaps it whole)."""
        return self._cells

    def cells(self) -> dict[tuple[str, str], Cell]:
        with self._lock:
            return dict(self._cells)

    def record_duration(self, provider: str, seconds: float) -> None:
        with self._lock:
            self._durations.setdefault(provider, deque(maxlen=DURATION_WINDOW)).append(seconds)

    def set_durations(self, durations: Mapping[str, Sequence[float]]) -> None:
        with self._lock:
            self._durations = {p: deque(d[-DURATION_WINDOW:], DURATION_WINDOW) for p, d in durations.items()}

    def durations(self, provider: str) -> list[float]:
        d = self._durations.get(provider)
        return list(d) if d else []

    def median_duration(self, provider: str) -> float | None:
        d = self.durations(provider)
        return statistics.median(d) if d else None

    def may_explore(self, key: str, explore: float) -> bool:
        """Count a decision for ``key``; may it explore (explorations stay ≤ ``explore`` of them)?
        Only decisions of selectors that explore are counted."""
        with self._lock:
            n = self._decisions[key] = self._decisions.get(key, 0) + 1
            return self._explored.get(key, 0) < explore * n

    def explored(self, key: str) -> None:
        with self._lock:
            self._explored[key] = self._explored.get(key, 0) + 1


def provider_score(recent: Sequence[bool], durations: Sequence[float], latency_target_s: float) -> float | None:
    """A provider's score in [0, 1]: its recent success rate, reduced in proportion when its
    median recent duration exceeds ``latency_target_s``; None with no recent outcome."""
    if not recent:
        return None
    rate = sum(1 for ok in recent if ok) / len(recent)
    median = statistics.median(durations) if durations else None
    speed = 1.0 if median is None or median <= latency_target_s else latency_target_s / median
    return round(rate * speed, 3)


@dataclass
class RoutingSignals:
    """What the router reads besides the config: the statistics, the random source, scores."""

    stats: LearningStats = field(default_factory=LearningStats)
    rng: random.Random = field(default_factory=random.Random)
    score: Callable[[str], float | None] = lambda provider: None


@dataclass(frozen=True)
class LoadView:
    """Load as the decision sees it: running attempts per provider, and why one is busy."""

    running: Mapping[str, int]
    busy: Callable[[str], str | None]


def idle_load() -> LoadView:
    return LoadView({}, lambda provider: None)


@dataclass(slots=True)
class Option:
    """One candidate's numbers in one decision."""

    target: Target
    attempts: int
    a: float  # the Beta posterior's parameters: prior + successes, prior + failures
    b: float
    mean: float
    sd: float
    cost: float | None  # per attempt
    busy: str | None = None


@dataclass
class Selection:
    """A candidate pick's ordering (first = the choice, the rest = fallbacks) and why."""

    order: list[Target]
    options_source: Callable[[], list[Option]] | list[Option]
    how: str
    pick: str
    key: str | None = None  # the learning key whose statistics a learned pick read

    @property
    def options(self) -> list[Option]:
        """Each candidate's numbers (built on first read: most decisions are never explained)."""
        if callable(self.options_source):
            self.options_source = self.options_source()
        return self.options_source

    def explain(self) -> str:
        if self.pick != "learned":
            return f"{self.pick}: {self.how} → {self.order[0]}"
        parts = []
        for o in self.options:
            per_success = "cost unknown" if o.cost is None else f"${o.cost / max(o.mean, 1e-9):.3f} per success"
            text = f"{o.target}: P(success) {o.mean:.2f} ±{o.sd:.2f} over {o.attempts} attempts, {per_success}"
            parts.append(text + (f" (busy: {o.busy})" if o.busy else ""))
        return "; ".join(parts) + f" → {self.order[0]} ({self.how})"


def _beta_sd(a: float, b: float) -> float:
    return math.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))


def _rank(costs: list[float | None], clears: list[float], estimates: list[float], sel: ModelSelector) -> list[int]:
    """Candidate positions, best first: ``clears`` decide who reaches ``min_success``,
    ``estimates`` the expected cost per success (cost per attempt / P(success))."""
    n = len(costs)
    known = [math.inf if c is None else c for c in costs]
    if sel.objective == "success":
        return sorted(range(n), key=lambda i: (-estimates[i], known[i]))
    floor = sel.min_success
    eligible = sorted((known[i] / max(estimates[i], 1e-9), -clears[i], i) for i in range(n) if clears[i] >= floor)
    rest = sorted((-clears[i], known[i], i) for i in range(n) if clears[i] < floor)
    return [e[2] for e in eligible] + [r[2] for r in rest]


def _idle_first(order: list[int], busy: list[str | None]) -> list[int]:
    if not any(busy):
        return order
    return [i for i in order if busy[i] is None] + [i for i in order if busy[i] is not None]


def select_learned(
    sel: ModelSelector,
    candidates: Sequence[Target],
    key: str,
    signals: RoutingSignals,
    cost_prior: Callable[[Target], float | None],
    load: LoadView,
) -> Selection:
    """The exploiting choice, or (within the ``explore`` budget) Thompson sampling's; busy
    candidates last.  Draws are made only when the budget allows an exploration.

    The hot path of a learned decision: a few numbers per candidate in parallel lists; the
    ``Option`` records the trace shows are built only if someone reads it."""
    cells = signals.stats.cell_map()
    prior_s, prior_f = sel.prior
    alphas, betas, costs, busy = [], [], [], []
    for t in candidates:
        cell = cells.get((key, f"{t.provider}:{t.model}"))
        if cell is None:
            alphas.append(prior_s)
            betas.append(prior_f)
            costs.append(cost_prior(t))
        else:
            alphas.append(prior_s + cell.successes)
            betas.append(prior_f + cell.failures)
            costs.append(cell.cost / cell.costed if cell.costed else cost_prior(t))
        busy.append(load.busy(t.provider))
    means = [a / (a + b) for a, b in zip(alphas, betas, strict=True)]
    if sel.strategy == "thompson":
        order, how = _thompson(sel, key, signals, alphas, betas, means, costs, busy)
    else:
        order, how = _optimistic(sel, key, signals, alphas, betas, means, costs, busy)
    prior = sel.prior

    def options() -> list[Option]:
        return [
            Option(t, int(a + b - prior[0] - prior[1]), a, b, m, _beta_sd(a, b), c, why)
            for t, a, b, m, c, why in zip(candidates, alphas, betas, means, costs, busy, strict=True)
        ]

    return Selection([candidates[i] for i in order], options, how, "learned", key)


def _optimistic(
    sel: ModelSelector,
    key: str,
    signals: RoutingSignals,
    alphas: list[float],
    betas: list[float],
    means: list[float],
    costs: list[float | None],
    busy: list[str | None],
) -> tuple[list[int], str]:
    """The default: exploit on an optimistic estimate, explore by Thompson draws on a share."""
    # A candidate is held to min_success by an optimistic estimate (OPTIMISM posterior sds above
    # its mean), so a cheap one seen a few times is tried before a dear one is settled on.
    optimistic = [m + OPTIMISM * _beta_sd(a, b) for m, a, b in zip(means, alphas, betas, strict=True)]
    order = _idle_first(_rank(costs, optimistic, means, sel), busy)
    how = "optimistic: " + _objective_text(sel, f"P(success) + {OPTIMISM:g} sd")
    # Thompson sampling is consulted on a share ``explore`` of decisions (a coin from the seeded
    # source), and followed only while explorations stay within that share: most decisions
    # draw nothing.
    allowed = sel.explore > 0 and signals.stats.may_explore(key, sel.explore)
    if allowed and signals.rng.random() < sel.explore:
        draws = [signals.rng.betavariate(a, b) for a, b in zip(alphas, betas, strict=True)]
        sampled = _idle_first(_rank(costs, draws, draws, sel), busy)
        if sampled[0] != order[0]:
            signals.stats.explored(key)
            how = f"optimistic, exploring: a draw of P(success) ranks it first (≤ {sel.explore:.0%} of decisions)"
            order = sampled
    return order, how


def _thompson(
    sel: ModelSelector,
    key: str,
    signals: RoutingSignals,
    alphas: list[float],
    betas: list[float],
    means: list[float],
    costs: list[float | None],
    busy: list[str | None],
) -> tuple[list[int], str]:
    """Issue 16's rule as worded: one draw from each candidate's posterior per decision; among
    the candidates whose draw clears ``min_success``, the lowest cost / drawn P(success) (or the
    highest draw for ``objective = "success"``).  Exploration is bounded by ``explore``: a draw
    whose first choice differs from the posterior means' is followed only while such decisions
    stay within ``explore`` of the key's decisions (``explore = 1``: unbounded Thompson sampling)."""
    allowed = sel.explore > 0 and signals.stats.may_explore(key, sel.explore)  # counts the decision
    draws = [signals.rng.betavariate(a, b) for a, b in zip(alphas, betas, strict=True)]
    sampled = _idle_first(_rank(costs, draws, draws, sel), busy)
    greedy = _idle_first(_rank(costs, means, means, sel), busy)
    if sampled[0] == greedy[0]:
        return sampled, "thompson: " + _objective_text(sel, "drawn P(success)")
    if sel.explore >= 1.0 or allowed:
        signals.stats.explored(key)
        bound = "explore = 1: unbounded" if sel.explore >= 1.0 else f"≤ {sel.explore:.0%} of decisions"
        return sampled, f"thompson, exploring: a draw ranks it above the means' choice ({bound})"
    return greedy, "thompson, over the explore bound: " + _objective_text(sel, "mean P(success)")


def _objective_text(sel: ModelSelector, clears_on: str) -> str:
    if sel.objective == "success":
        return f"highest {clears_on}"
    return f"lowest expected cost per success with {clears_on} ≥ {sel.min_success:.2f}"


def select_weighted(
    candidates: Sequence[Target], weights: Sequence[float], rng: random.Random, load: LoadView
) -> Selection:
    """A weighted random choice among the candidates not at their limit; the rest by weight."""
    busy = [load.busy(t.provider) for t in candidates]
    idle = [i for i in range(len(candidates)) if busy[i] is None and weights[i] > 0]
    if idle:
        first = rng.choices(idle, weights=[weights[i] for i in idle])[0]
        how = f"weight {weights[first]:g} of {sum(weights[i] for i in idle):g} among candidates not at their limit"
    else:
        first = max(range(len(candidates)), key=lambda i: weights[i])
        how = "every candidate is at its limit: the heaviest waits"
    rest = sorted((i for i in range(len(candidates)) if i != first), key=lambda i: (busy[i] is not None, -weights[i]))
    return Selection([candidates[i] for i in [first, *rest]], [], how, "weighted")


def select_least_busy(candidates: Sequence[Target], stats: LearningStats, load: LoadView) -> Selection:
    """Fewest running attempts, then the lowest recent median duration; busy candidates last."""

    def key(i: int) -> tuple[bool, int, float, int]:
        t = candidates[i]
        latency = stats.median_duration(t.provider)
        return (load.busy(t.provider) is not None, load.running.get(t.provider, 0), latency or 0.0, i)

    order = sorted(range(len(candidates)), key=key)
    t = candidates[order[0]]
    latency = stats.median_duration(t.provider)
    how = f"{load.running.get(t.provider, 0)} running on {t.provider}" + (
        "" if latency is None else f", median {latency:.0f}s recently"
    )
    return Selection([candidates[i] for i in order], [], how, "least-busy")
