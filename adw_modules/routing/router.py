"""The rule router: task attributes in, a target and its ordered fallbacks out, with the reasons.

Rules are checked by ``priority`` descending (file order breaks ties); the first rule
whose conditions all hold wins.  With routing disabled, or when no rule matches, the
defaults apply.  Every decision says which rule matched, why each earlier rule did not,
and which targets were skipped as unavailable, so an operator can always answer
"why did this task go there?".
"""

from __future__ import annotations

import datetime as dt
import random
import zoneinfo
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from adw_modules.config.routing import CANDIDATE_PICKS, ModelSelector
from adw_modules.config.schema import Config, RoutingConfig, Rule, Target
from adw_modules.routing.conditions import WEEKDAYS
from adw_modules.routing.learning import (
    NOMINAL_USAGE,
    LoadView,
    RoutingSignals,
    Selection,
    idle_load,
    learning_key,
    select_learned,
    select_least_busy,
    select_weighted,
)
from adw_modules.routing.pricing import estimate_cost
from adw_modules.routing.providers import ProviderRegistry, pick_model

CHARS_PER_TOKEN = 4  # rough, model-independent; good enough for long-context routing


def estimate_tokens(text: str) -> int:
    return (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


@dataclass(frozen=True)
class TaskAttrs:
    """What the router may look at.  ``hour``/``weekday`` override the clock (scenarios, tests)."""

    priority: str = "normal"
    labels: frozenset[str] = frozenset()
    retry_count: int = 0
    repo: str | None = None
    source: str | None = None
    prompt_tokens: int | None = None
    hour: int | None = None
    weekday: str | None = None

    @classmethod
    def from_mapping(cls, attrs: Mapping[str, Any]) -> TaskAttrs:
        labels = attrs.get("labels") or ()
        if isinstance(labels, str):
            labels = (labels,)
        return cls(
            priority=str(attrs.get("priority") or "normal"),
            labels=frozenset(str(x) for x in labels),
            retry_count=int(attrs.get("retry_count") or 0),
            repo=attrs.get("repo"),
            source=attrs.get("source"),
            prompt_tokens=attrs.get("prompt_tokens"),
            hour=attrs.get("hour"),
            weekday=attrs.get("weekday"),
        )

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "priority": self.priority,
            "labels": sorted(self.labels),
            "retry_count": self.retry_count,
        }
        for key in ("repo", "source", "prompt_tokens", "hour", "weekday"):
            if getattr(self, key) is not None:
                d[key] = getattr(self, key)
        return d


@dataclass(frozen=True)
class RuleCheck:
    rule: str
    priority: int
    matched: bool
    reason: str


@dataclass
class Decision:
    target: Target | None
    rule: str | None
    fallbacks: list[Target]
    reason: str
    trace_source: Callable[[], list[RuleCheck]] | list[RuleCheck] = field(default_factory=list, repr=False)
    skipped: list[tuple[Target, str]] = field(default_factory=list)
    inject: Path | None = None
    params: dict[str, Any] = field(default_factory=dict)
    selection: Selection | None = None  # a candidate pick's ranking (learned, weighted, least-busy)

    @property
    def learn_key(self) -> str | None:
        """The statistics a learned pick read (routing.learning)."""
        return None if self.selection is None else self.selection.key

    @property
    def trace(self) -> list[RuleCheck]:
        """Why each rule checked before the winner did not match (built on first read:
        the router checks every earlier rule on every decision, most traces are never shown)."""
        if callable(self.trace_source):
            self.trace_source = self.trace_source()
        return self.trace_source

    @property
    def provider(self) -> str | None:
        return None if self.target is None else self.target.provider

    @property
    def model(self) -> str | None:
        return None if self.target is None else self.target.model

    @property
    def targets(self) -> list[Target]:
        return ([self.target] if self.target else []) + self.fallbacks

    def to_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "model": self.model,
            "rule": self.rule,
            "fallbacks": [str(t) for t in self.fallbacks],
            "reason": self.reason,
            "trace": [c.__dict__ for c in self.trace],
            "skipped": [{"target": str(t), "reason": why} for t, why in self.skipped],
            "inject": None if self.inject is None else str(self.inject),
            "params": self.params,
            **({} if self.selection is None else {"selection": self.selection.explain()}),
            **({} if self.learn_key is None else {"learn_key": self.learn_key}),
        }


class ModelRouter:
    def __init__(self, config: Config, registry: ProviderRegistry | None = None) -> None:
        self.config = config
        self.registry = registry if registry is not None else ProviderRegistry(config)
        self.tz = zoneinfo.ZoneInfo(config.routing.timezone)
        # (position, rule, its condition checks) of each enabled rule, in priority order: what
        # every decision loops over, read once here (config is frozen) rather than per rule.
        self._active = [
            (i, rule, rule.conditions.checks) for i, rule in enumerate(config.routing.rules) if rule.enabled
        ]
        # Learned statistics, the random source and provider scores: the coordinator replaces
        # this with its own (fed by attempt ends); standalone (adw route) it starts empty.
        self.signals = RoutingSignals(rng=random.Random(config.learning.seed))
        self._nominal_costs: dict[Target, float | None] = {}

    def route(self, attrs: Mapping[str, Any] | TaskAttrs) -> tuple[str | None, str | None]:
        """Seed 003's API: (provider, model)."""
        d = self.decide(attrs)
        return d.provider, d.model

    def decide(
        self,
        attrs: Mapping[str, Any] | TaskAttrs,
        unavailable: Mapping[str, str] | None = None,
        now: dt.datetime | None = None,
        evaluate_rules: bool = False,
        load: LoadView | None = None,
    ) -> Decision:
        """Route one task.  ``unavailable`` maps provider -> reason; those targets are skipped.
        ``load`` (running attempts, busy providers) is what candidate picks balance by.

        ``evaluate_rules`` checks the rules even with routing disabled (what they *would* do),
        as seed 003's show-routing does.
        """
        task = attrs if isinstance(attrs, TaskAttrs) else TaskAttrs.from_mapping(attrs)
        routing = self.config.routing
        down = dict(unavailable or {})
        default = Target(routing.default_provider, routing.default_model)
        if not routing.enabled and not evaluate_rules:
            return self._finish(
                [default], None, "routing disabled: defaults apply", [], {}, routing.default_inject, down
            )
        hour, weekday = self._clock(task, now)
        selector_misses: dict[int, str] = {}  # position -> why its model_select found nothing
        for i, rule in self._matching(task, hour, weekday):
            primary, why_not, selection = self._primary(rule, down, task, load)
            if not primary:
                selector_misses[i] = why_not or "no target"
                continue
            trace = partial(_trace, routing, task, hour, weekday, selector_misses, i, True)
            decision = self._rule_decision(rule, primary, trace, down)
            decision.selection = selection
            return decision
        return self._finish(
            [default],
            None,
            "no rule matched: defaults apply",
            partial(_trace, routing, task, hour, weekday, selector_misses, len(routing.rules), False),
            {},
            routing.default_inject,
            down,
        )

    # -- internals
    def _matching(self, task: TaskAttrs, hour: int, weekday: str) -> Iterator[tuple[int, Rule]]:
        """The enabled rules whose conditions all hold, in priority order, with their positions.

        The hot path: rules are checked on every decision until one yields a target.  It is
        ``failed_condition`` inlined, because a call per rule costs as much as its checks.
        """
        for i, rule, checks in self._active:
            for _key, holds, want in checks:
                if not holds(want, task, hour, weekday):
                    break
            else:
                yield i, rule

    def _rule_decision(
        self, rule: Rule, primary: Sequence[Target], trace: Callable[[], list[RuleCheck]], down: Mapping[str, str]
    ) -> Decision:
        """The decision of a matching rule: its target (a candidate pick: its ranking), then its
        fallbacks, then its chain's."""
        routing = self.config.routing
        candidates = [*primary, *rule.fallback]
        inject = rule.inject
        if rule.chain is not None:
            chain = routing.chains[rule.chain]
            candidates.extend(chain.targets)
            inject = inject or chain.inject
        return self._finish(
            candidates,
            rule.name,
            f"rule {rule.name} matched",
            trace,
            dict(rule.params),
            inject or routing.default_inject,
            down,
        )

    def _clock(self, task: TaskAttrs, now: dt.datetime | None) -> tuple[int, str]:
        if task.hour is not None and task.weekday is not None:
            return task.hour, task.weekday
        local = (now or dt.datetime.now(dt.UTC)).astimezone(self.tz)
        hour = task.hour if task.hour is not None else local.hour
        weekday = task.weekday if task.weekday is not None else WEEKDAYS[local.weekday()]
        return hour, weekday

    def _primary(
        self, rule: Rule, down: Mapping[str, str], task: TaskAttrs, load: LoadView | None
    ) -> tuple[list[Target], str | None, Selection | None]:
        """The rule's target(s) first in line, or why it has none; a candidate pick gives its
        whole ranking and its Selection."""
        routing = self.config.routing
        if rule.model is not None:
            return [Target(rule.provider or routing.default_provider, rule.model)], None, None
        if rule.select is not None and rule.select.pick in CANDIDATE_PICKS:
            return self._candidate_pick(rule, rule.select, down, task, load or idle_load())
        if rule.select is not None:
            s = rule.select
            criteria: dict[str, Any] = {
                "capability": s.capability,
                "tier": s.tier,
                "max_cost": s.max_cost,
                "min_context": s.min_context,
                "provider": rule.provider,
            }
            models = [m for m in self.registry.list_models(**criteria) if m.provider not in down]
            models = [m for m in models if self._score_ok(m.provider, s)]
            pick = pick_model(models, s.pick)
            if pick is None:
                return [], "model_select found no model meeting " + _describe_selector(criteria, s.pick), None
            return [Target(pick.provider, pick.name)], None, None
        if rule.chain is not None:
            return [self.config.routing.chains[rule.chain].targets[0]], None, None
        return [], "rule has no target", None

    def _score_ok(self, provider: str, s: ModelSelector) -> bool:
        if s.min_score is None:
            return True
        score = self.signals.score(provider)
        return score is None or score >= s.min_score  # no recent outcome: not held against it

    def _candidate_pick(
        self, rule: Rule, s: ModelSelector, down: Mapping[str, str], task: TaskAttrs, load: LoadView
    ) -> tuple[list[Target], str | None, Selection | None]:
        """``pick = "learned" | "weighted" | "least-busy"`` over the available candidates."""
        usable = [
            (i, t) for i, t in enumerate(s.candidates) if t.provider not in down and self._score_ok(t.provider, s)
        ]
        if not usable:
            return [], "model_select: every candidate is unavailable or below min_score", None
        targets = [t for _, t in usable]
        if s.pick == "weighted":
            selection = select_weighted(targets, [s.weights[i] for i, _ in usable], self.signals.rng, load)
            return selection.order, None, selection
        if s.pick == "least-busy":
            selection = select_least_busy(targets, self.signals.stats, load)
            return selection.order, None, selection
        key = learning_key(s.learn_by, rule.name, task.labels, task.repo)
        selection = select_learned(s, targets, key, self.signals, self._nominal_cost, load)
        return selection.order, None, selection

    def _nominal_cost(self, target: Target) -> float | None:
        """A candidate's cost per attempt before any was costed: its price at NOMINAL_USAGE (cached)."""
        if target not in self._nominal_costs:
            price = self.registry.price_for(target.provider, target.model)
            self._nominal_costs[target] = estimate_cost(NOMINAL_USAGE, price)
        return self._nominal_costs[target]

    def _finish(
        self,
        candidates: Sequence[Target],
        rule: str | None,
        reason: str,
        trace: Callable[[], list[RuleCheck]] | list[RuleCheck],
        params: dict[str, Any],
        inject: Path | None,
        down: Mapping[str, str],
    ) -> Decision:
        routing = self.config.routing
        ordered = _dedupe([*candidates, *routing.fallback])
        usable: list[Target] = []
        skipped: list[tuple[Target, str]] = []
        for t in ordered:
            if t.provider in down:
                skipped.append((t, down[t.provider]))
            else:
                usable.append(t)
        if not usable:
            reason = f"{reason}; every target is unavailable"
            return Decision(None, rule, [], reason, trace, skipped, inject, params)
        return Decision(usable[0], rule, usable[1 : 1 + routing.max_fallbacks], reason, trace, skipped, inject, params)


def _trace(
    routing: RoutingConfig,
    task: TaskAttrs,
    hour: int,
    weekday: str,
    selector_misses: Mapping[int, str],
    end: int,
    matched: bool,
) -> list[RuleCheck]:
    """Why each rule before position ``end`` did not match, then the winner when ``matched``.

    Built only when a trace is read (``Decision.trace``): most decisions are never explained.
    """
    rules = routing.rules
    out = []
    for i, rule in enumerate(rules[:end]):
        failed = failed_condition(rule, task, hour, weekday)
        why = (
            selector_misses.get(i, "no target")
            if failed is None
            else explain_mismatch(rule, failed, task, hour, weekday, routing.timezone)
        )
        out.append(RuleCheck(rule.name, rule.priority, False, why))
    if matched:
        out.append(RuleCheck(rules[end].name, rules[end].priority, True, "all conditions hold"))
    return out


def failed_condition(rule: Rule, task: TaskAttrs, hour: int, weekday: str) -> str | None:
    """The key of the first condition that does not hold (conditions are ANDed), or None.

    Conditions are checked in the registry's order (``routing.conditions.CONDITIONS``): it
    decides which failed condition a trace reports.  The trace calls this; a decision runs
    the same loop inlined (``ModelRouter._matching``).
    """
    if not rule.enabled:
        return "enabled"
    for key, holds, value in rule.conditions.checks:
        if not holds(value, task, hour, weekday):
            return key
    return None


def explain_mismatch(rule: Rule, failed: str, task: TaskAttrs, hour: int, weekday: str, tz: str) -> str:
    """Why ``failed`` (as ``failed_condition`` named it) does not hold, as the decision trace shows it."""
    if failed == "enabled":
        return "rule disabled"
    return rule.conditions.explain(failed, task, hour, weekday, tz)


def _dedupe(targets: Iterable[Target]) -> list[Target]:
    seen: set[Target] = set()
    out = []
    for t in targets:
        if t not in seen:
            seen.add(t)
            out.append(t)
    return out


def _describe_selector(criteria: Mapping[str, Any], pick: str) -> str:
    parts = [f"{k}={v}" for k, v in criteria.items() if v is not None]
    return (", ".join(parts) or "no criteria") + f" (pick {pick})"


def resolve_params(config: Config, provider: str, rule_params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Template parameters inherit global -> provider -> rule (seed 002 E)."""
    out = dict(config.params)
    pc = config.providers.get(provider)
    if pc is not None:
        out.update(pc.params)
    out.update(rule_params or {})
    return out
