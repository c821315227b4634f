"""What history says about each target, model, rule, label or repo (``adw stats``, the web
console), and the history the learned selector starts from.

Everything here reads ``Store.attempt_facts`` (one query) and counts in Python: success as
``[learning] success`` defines it (``routing.learning.success_of``), a 95% Wilson interval,
cost per success, median and p90 duration, how often an attempt was followed by a failover
or a retry of its task, and how often a successful one was followed by a new round (a
follow-up asked for on the issue or its pull request).
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from adw_modules.config.schema import Config
from adw_modules.queue.store import AttemptFact, Store
from adw_modules.queue.tasks import ProviderState
from adw_modules.routing.learning import Fact, LearningStats, learning_key, provider_score, rule_learn_by, success_of

STATS_GROUPS = ("target", "model", "rule", "label", "repo")
Z95 = 1.959964


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a success rate (95% by default); (0, 1) with no data."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (0-1) by linear interpolation; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


@dataclass(frozen=True)
class StatGroup:
    key: str
    attempts: int
    counted: int  # attempts whose success is decided (see routing.learning.success_of)
    successes: int
    success_rate: float | None
    interval: tuple[float, float]
    cost_usd: float
    cost_per_success: float | None
    median_s: float | None
    p90_s: float | None
    failover_rate: float | None
    retry_rate: float | None
    follow_up_rate: float | None  # of the successful attempts, those after which a new round was asked for

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["interval"] = list(self.interval)
        return d


def _keys(fact: AttemptFact, by: str) -> list[str]:
    if by == "target":
        return [fact.target]
    if by == "model":
        return [fact.model]
    if by == "rule":
        return [fact.rule or "(no rule)"]
    if by == "repo":
        return [fact.repo or "(no repo)"]
    return list(fact.labels) or ["(unlabelled)"]


def _next_step(facts: Sequence[AttemptFact]) -> dict[tuple[int, int], str]:
    """(task, attempt number) -> "failover" | "retry": what followed that attempt."""
    by_task: dict[int, list[AttemptFact]] = {}
    for f in facts:
        by_task.setdefault(f.task_id, []).append(f)
    out = {}
    for task_id, items in by_task.items():
        items.sort(key=lambda f: f.number)
        for before, after in itertools.pairwise(items):
            out[(task_id, before.number)] = "failover" if after.failover_from else "retry"
    return out


def group_stats(facts: Sequence[AttemptFact], by: str, mode: str) -> list[StatGroup]:
    """Per group (``by``: one of STATS_GROUPS), sorted by key."""
    if by not in STATS_GROUPS:
        raise ValueError(f"stats: by must be one of {', '.join(STATS_GROUPS)}, not {by!r}")
    steps = _next_step(facts)
    groups: dict[str, list[AttemptFact]] = {}
    for f in facts:
        for key in _keys(f, by):
            groups.setdefault(key, []).append(f)
    return [_group(key, items, steps, mode) for key, items in sorted(groups.items())]


def _group(key: str, items: list[AttemptFact], steps: Mapping[tuple[int, int], str], mode: str) -> StatGroup:
    decided = [
        ok for f in items if (ok := success_of(f.outcome, f.error_kind, f.followed_up, f.pr_fate, mode)) is not None
    ]
    successes = sum(decided)
    cost = sum(f.cost_usd or 0.0 for f in items)
    durations = [d for f in items if (d := f.duration_s) is not None]
    n = len(items)
    after = [steps.get((f.task_id, f.number)) for f in items]
    succeeded = [f for f in items if f.outcome == "success"]
    return StatGroup(
        key=key,
        attempts=n,
        counted=len(decided),
        successes=successes,
        success_rate=successes / len(decided) if decided else None,
        interval=wilson(successes, len(decided)),
        cost_usd=round(cost, 6),
        cost_per_success=round(cost / successes, 6) if successes else None,
        median_s=percentile(durations, 0.5),
        p90_s=percentile(durations, 0.9),
        failover_rate=after.count("failover") / n if n else None,
        retry_rate=after.count("retry") / n if n else None,
        follow_up_rate=sum(f.followed_up for f in succeeded) / len(succeeded) if succeeded else None,
    )


def outcome_stats(
    store: Store, by: str = "target", days: float = 30, now: dt.datetime | None = None, mode: str = "attempt"
) -> list[StatGroup]:
    """``adw stats``: the attempts of the last ``days`` days, grouped ``by``."""
    if days <= 0:
        raise ValueError(f"stats: days must be greater than 0, not {days}")
    now = now or dt.datetime.now(dt.UTC)
    return group_stats(store.attempt_facts(now - dt.timedelta(days=days)), by, mode)


def stats_data(store: Store, by: str, days: int, mode: str, now: dt.datetime) -> dict[str, Any]:
    """``adw stats --json`` (and the console's ``/api/v1/stats``): the groups with what they count."""
    if by not in STATS_GROUPS:
        raise ValueError(f"stats: by must be one of {', '.join(STATS_GROUPS)}, not {by!r}")
    groups = outcome_stats(store, by=by, days=days, now=now, mode=mode)
    return {"by": by, "days": days, "success": mode, "groups": [g.to_dict() for g in groups]}


def learning_facts(facts: Iterable[AttemptFact], config: Config) -> list[Fact]:
    """The store's history as the learned selector counts it: keyed by each attempt's rule's
    ``learn_by``, success as ``[learning] success`` says; undecided attempts left out."""
    rules, mode = config.routing.rules, config.learning.success
    out = []
    for f in facts:
        ok = success_of(f.outcome, f.error_kind, f.followed_up, f.pr_fate, mode)
        if ok is None:
            continue
        key = learning_key(rule_learn_by(rules, f.rule), f.rule, f.labels, f.repo)
        out.append(Fact(key, f.target, ok, f.cost_usd, f.attempt_id))
    return out


def load_learning(
    store: Store, stats: LearningStats, config: Config, now: dt.datetime, *, incremental: bool = False
) -> int:
    """Fill ``stats`` from the store's last ``[learning] history_days``; the attempts counted.

    ``incremental`` (ignored before a first full load, and unless ``[learning] success =
    "attempt"``, whose outcomes never change once recorded): read only the attempts above the
    last watermark and add them.  A full load is still needed now and then: it drops attempts
    older than ``history_days`` and, for "task" / "merged", reads the fates decided since."""
    since = now - dt.timedelta(days=config.learning.history_days)
    watermark = store.learning_watermark()  # before the facts: see Store.learning_watermark
    if incremental and stats.watermark is not None and config.learning.success == "attempt":
        facts = learning_facts(store.attempt_facts(since, after_id=stats.watermark), config)
        added = stats.merge(facts, watermark)
        stats.set_durations(store.recent_durations())
        return added
    stats.begin_load()
    facts = learning_facts(store.attempt_facts(since), config)
    stats.load(facts, store.recent_durations(), watermark)
    return len(facts)


def provider_scores(
    store: Store, config: Config, states: Mapping[str, ProviderState] | None = None
) -> dict[str, float | None]:
    """Each provider's score (``routing.learning.provider_score``) from the store's recent outcome
    window (``states``, if the caller read them already) and recent durations: what
    ``adw providers`` / ``adw status`` show."""
    states = store.provider_states() if states is None else states
    durations = store.recent_durations()
    out: dict[str, float | None] = {}
    for name in config.providers:
        recent = states[name].recent if name in states else []
        out[name] = provider_score(recent, durations.get(name, []), config.learning.latency_target_s)
    return out
