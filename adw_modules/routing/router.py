"""The rule router: task attributes in, a target and its ordered fallbacks out, with the reasons.

Rules are checked by ``priority`` descending (file order breaks ties); the first rule
whose conditions all hold wins.  With routing disabled, or when no rule matches, the
defaults apply.  Every decision says which rule matched, why each earlier rule did not,
and which targets were skipped as unavailable, so an operator can always answer
"why did this task go there?".
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adw_modules.config.schema import WEEKDAYS, Config, Rule, Target, repo_matches
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
        }


def hour_in_range(hour: int, start: int, end: int) -> bool:
    """[start, end) on a 24-hour clock; start > end wraps past midnight ([22, 6] = 22:00-05:59)."""
    if start < end:
        return start <= hour < end
    return hour >= start or hour < end


class ModelRouter:
    def __init__(self, config: Config, registry: ProviderRegistry | None = None) -> None:
        self.config = config
        self.registry = registry if registry is not None else ProviderRegistry(config)
        self.tz = zoneinfo.ZoneInfo(config.routing.timezone)

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
    ) -> Decision:
        """Route one task.  ``unavailable`` maps provider -> reason; those targets are skipped.

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
        rules = routing.rules
        selector_misses: dict[int, str] = {}

        def trace_upto(end: int, matched: bool) -> Callable[[], list[RuleCheck]]:
            def build() -> list[RuleCheck]:
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

            return build

        for i, rule in enumerate(rules):
            if failed_condition(rule, task, hour, weekday) is not None:
                continue
            primary, why_not = self._primary(rule, down)
            if primary is None:
                selector_misses[i] = why_not or "no target"
                continue
            candidates = [primary, *rule.fallback]
            inject = rule.inject
            if rule.chain is not None:
                chain = routing.chains[rule.chain]
                candidates.extend(chain.targets)
                inject = inject or chain.inject
            return self._finish(
                candidates,
                rule.name,
                f"rule {rule.name} matched",
                trace_upto(i, True),
                dict(rule.params),
                inject or routing.default_inject,
                down,
            )
        return self._finish(
            [default],
            None,
            "no rule matched: defaults apply",
            trace_upto(len(rules), False),
            {},
            routing.default_inject,
            down,
        )

    # -- internals
    def _clock(self, task: TaskAttrs, now: dt.datetime | None) -> tuple[int, str]:
        if task.hour is not None and task.weekday is not None:
            return task.hour, task.weekday
        local = (now or dt.datetime.now(dt.UTC)).astimezone(self.tz)
        hour = task.hour if task.hour is not None else local.hour
        weekday = task.weekday if task.weekday is not None else WEEKDAYS[local.weekday()]
        return hour, weekday

    def _primary(self, rule: Rule, down: Mapping[str, str]) -> tuple[Target | None, str | None]:
        routing = self.config.routing
        if rule.model is not None:
            return Target(rule.provider or routing.default_provider, rule.model), None
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
            pick = pick_model(models, s.pick)
            if pick is None:
                return None, "model_select found no model meeting " + _describe_selector(criteria, s.pick)
            return Target(pick.provider, pick.name), None
        if rule.chain is not None:
            return self.config.routing.chains[rule.chain].targets[0], None
        return None, "rule has no target"

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


def failed_condition(rule: Rule, task: TaskAttrs, hour: int, weekday: str) -> str | None:
    """The name of the first condition that does not hold (conditions are ANDed), or None."""
    if not rule.enabled:
        return "enabled"
    c = rule.conditions
    if c.priority is not None and task.priority not in c.priority:
        return "priority"
    if c.labels is not None and c.labels.isdisjoint(task.labels):
        return "labels"
    if c.labels_all is not None and not c.labels_all <= task.labels:
        return "labels_all"
    if c.not_labels is not None and not c.not_labels.isdisjoint(task.labels):
        return "not_labels"
    if c.retry_count is not None and not c.retry_count.matches(task.retry_count):
        return "retry_count"
    if c.hour_range is not None and not hour_in_range(hour, *c.hour_range):
        return "hour_range"
    if c.weekdays is not None and weekday not in c.weekdays:
        return "weekdays"
    if c.repo is not None and not repo_matches(c.repo, task.repo):
        return "repo"
    if c.source is not None and task.source not in c.source:
        return "source"
    if c.prompt_tokens is not None and (task.prompt_tokens is None or not c.prompt_tokens.matches(task.prompt_tokens)):
        return "prompt_tokens"
    return None


def explain_mismatch(rule: Rule, failed: str, task: TaskAttrs, hour: int, weekday: str, tz: str) -> str:
    c = rule.conditions
    if failed == "enabled":
        return "rule disabled"
    if failed == "priority":
        return f"priority is {task.priority}, rule wants {_list(c.priority or ())}"
    if failed == "labels":
        return f"no label in {_list(c.labels or ())}"
    if failed == "labels_all":
        return f"missing label(s) {_list((c.labels_all or frozenset()) - task.labels)}"
    if failed == "not_labels":
        return f"has excluded label(s) {_list(task.labels & (c.not_labels or frozenset()))}"
    if failed == "retry_count" and c.retry_count is not None:
        return f"retry_count {task.retry_count} fails {c.retry_count.describe()}"
    if failed == "hour_range" and c.hour_range is not None:
        start, end = c.hour_range
        return f"hour {hour} outside [{start}, {end}) {tz}"
    if failed == "weekdays":
        return f"weekday {weekday} not in {_list(c.weekdays or ())}"
    if failed == "repo":
        return f"repo {task.repo or '(none)'} not in {_list(c.repo or ())}"
    if failed == "source":
        return f"source {task.source or '(none)'} not in {_list(c.source or ())}"
    if failed == "prompt_tokens" and c.prompt_tokens is not None:
        if task.prompt_tokens is None:
            return "prompt_tokens unknown"
        return f"prompt_tokens {task.prompt_tokens} fails {c.prompt_tokens.describe()}"
    return f"{failed} does not hold"


def _dedupe(targets: Iterable[Target]) -> list[Target]:
    seen: set[Target] = set()
    out = []
    for t in targets:
        if t not in seen:
            seen.add(t)
            out.append(t)
    return out


def _list(values: Iterable[str]) -> str:
    return "[" + ", ".join(sorted(values)) + "]"


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
