"""The ``[routing]`` table of config.toml: defaults, rules, chains, model selectors, scenarios.

Rule conditions are parsed by the condition registry (``routing.conditions``), which the
router tests them with, so a condition is defined in one place.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adw_modules.config.providers import TIERS, ProviderConfig, undefined_provider
from adw_modules.config.validation import Validator, type_name
from adw_modules.routing.conditions import Conditions, parse_conditions

PICKS = ("cheapest", "best", "learned", "weighted", "least-busy")
CANDIDATE_PICKS = ("learned", "weighted", "least-busy")  # picks among listed candidates
OBJECTIVES = ("cost_per_success", "success")
STRATEGIES = ("optimistic", "thompson")  # how pick = "learned" holds candidates to min_success
LEARN_BY = ("rule", "labels", "repo")
SCENARIO_ATTRS = ("priority", "labels", "retry_count", "hour", "weekday", "repo", "source", "prompt_tokens")

_ROUTING_KEYS = (
    "enabled",
    "default_provider",
    "default_model",
    "timezone",
    "rules",
    "chains",
    "fallback",
    "max_fallbacks",
    "scenarios",
    "inject",
)
_RULE_KEYS = (
    "name",
    "priority",
    "conditions",
    "provider",
    "model",
    "model_select",
    "fallback",
    "chain",
    "inject",
    "params",
    "enabled",
    "description",
)
_SELECT_KEYS = (
    "capability",
    "tier",
    "max_cost",
    "min_context",
    "pick",
    "candidates",
    "objective",
    "strategy",
    "min_success",
    "explore",
    "learn_by",
    "prior",
    "weights",
    "min_score",
)
_CHAIN_KEYS = ("targets", "inject")
_SCENARIO_KEYS = ("name", "attrs", "expect")


@dataclass(frozen=True, order=True)
class Target:
    provider: str
    model: str

    def __str__(self) -> str:
        return f"{self.provider}:{self.model}"

    @classmethod
    def parse(cls, text: str) -> Target:
        provider, sep, model = text.partition(":")
        if not sep or not provider or not model:
            raise ValueError(f'"{text}" is not a target: write "provider:model"')
        return cls(provider.strip(), model.strip())


@dataclass(frozen=True)
class ModelSelector:
    """Pick the model at routing time instead of naming it (seed 003's cost-based routing)."""

    capability: str | None = None
    tier: str | None = None
    max_cost: float | None = None  # USD per 1K input tokens, as in seed 004
    min_context: int | None = None
    pick: str = "cheapest"
    # pick = "learned" / "weighted" / "least-busy" choose among these (routing.learning)
    candidates: tuple[Target, ...] = ()
    objective: str = "cost_per_success"
    # "optimistic": mean + 2 sd must clear min_success, lowest cost / mean wins, Thompson draws
    # only on an ``explore`` share; "thompson": issue 16's rule as worded, a draw per decision.
    strategy: str = "optimistic"
    min_success: float = 0.8
    explore: float = 0.1
    learn_by: tuple[str, ...] = ("rule",)
    prior: tuple[float, float] = (1.0, 1.0)  # Beta prior: (successes, failures)
    weights: tuple[float, ...] = ()
    min_score: float | None = None  # skip providers whose score (routing.learning) is lower


@dataclass(frozen=True)
class Rule:
    name: str
    priority: int
    conditions: Conditions
    provider: str | None = None
    model: str | None = None
    select: ModelSelector | None = None
    fallback: tuple[Target, ...] = ()
    chain: str | None = None
    inject: Path | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    enabled: bool = True
    index: int = 0  # position in the file, breaks priority ties (earlier wins)


@dataclass(frozen=True)
class Chain:
    name: str
    targets: tuple[Target, ...]
    inject: Path | None = None


@dataclass(frozen=True)
class Scenario:
    name: str
    attrs: Mapping[str, Any]
    expect: str | None = None  # "provider/model" or "provider:model"


@dataclass(frozen=True)
class RoutingConfig:
    enabled: bool
    default_provider: str
    default_model: str
    timezone: str = "UTC"
    rules: tuple[Rule, ...] = ()  # sorted: priority descending, then file order
    chains: Mapping[str, Chain] = field(default_factory=dict)
    fallback: tuple[Target, ...] = ()  # appended to every decision's fallbacks
    max_fallbacks: int = 5
    scenarios: tuple[Scenario, ...] = ()
    default_inject: Path | None = None


def validate_routing(
    v: Validator,
    raw: Mapping[str, Any],
    providers: Mapping[str, ProviderConfig],
    llm_provider: str | None,
    llm_model: str | None,
) -> RoutingConfig | None:
    """``[routing]``; None (reported) when no default target can be worked out."""
    where = "routing"
    v.unknown_keys(raw, _ROUTING_KEYS, where, "key")
    enabled = bool(v.get(raw, "enabled", bool, where, False))
    default_provider, default_model = _defaults(v, raw, providers, llm_provider, llm_model)
    tz = v.get(raw, "timezone", str, where, "UTC")
    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        v.err(where, f'timezone "{tz}" is not a known IANA zone (e.g. "UTC", "Europe/Berlin")')
    max_fallbacks = v.get(raw, "max_fallbacks", int, where, 5)
    if max_fallbacks < 0:
        v.err(where, "max_fallbacks must not be negative")
    chains = _chains(v, v.get(raw, "chains", dict, where, {}) or {}, providers)
    fallback = _targets(v, raw.get("fallback"), where, "fallback", providers)
    rules = _rules(v, raw.get("rules", []), providers, chains)
    scenarios = _scenarios(v, raw.get("scenarios", []))
    if default_provider is None or default_model is None:
        return None
    return RoutingConfig(
        enabled=enabled,
        default_provider=default_provider,
        default_model=default_model,
        timezone=tz,
        rules=tuple(sorted(rules, key=lambda r: (-r.priority, r.index))),
        chains=chains,
        fallback=fallback,
        max_fallbacks=max_fallbacks,
        scenarios=tuple(scenarios),
        default_inject=v.file_ref(v.get(raw, "inject", str, where), where, "inject"),
    )


def _defaults(
    v: Validator,
    raw: Mapping[str, Any],
    providers: Mapping[str, ProviderConfig],
    llm_provider: str | None,
    llm_model: str | None,
) -> tuple[str | None, str | None]:
    """The default (provider, model): [routing], else [llm], else the first provider and its model."""
    where = "routing"
    default_provider = v.get(raw, "default_provider", str, where) or llm_provider
    default_model = v.get(raw, "default_model", str, where) or llm_model
    if default_provider is None:
        if providers:
            default_provider = next(iter(providers))
        else:
            v.err(where, "no providers are defined: add a [providers.NAME] table with a command_template")
    elif default_provider not in providers:
        v.err(where, "default_provider: " + undefined_provider(default_provider, providers))
    if default_model is None and default_provider is not None and default_provider in providers:
        default_model = providers[default_provider].default_model
    if default_model is None and default_provider is not None:
        v.err(
            where,
            "default_model is not set (set routing.default_model, llm.model_default or "
            f"providers.{default_provider}.default_model)",
        )
    return default_provider, default_model


def _target(v: Validator, text: Any, where: str, providers: Mapping[str, ProviderConfig]) -> Target | None:
    if not isinstance(text, str):
        v.err(where, f'a target must be a string "provider:model", not {type_name(text)}')
        return None
    try:
        t = Target.parse(text)
    except ValueError as exc:
        v.err(where, str(exc))
        return None
    if t.provider not in providers:
        v.err(where, f'target "{text}": ' + undefined_provider(t.provider, providers))
        return None
    return t


def _targets(
    v: Validator, raw: Any, where: str, key: str, providers: Mapping[str, ProviderConfig]
) -> tuple[Target, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        v.err(where, f'{key} must be an array of "provider:model" strings')
        return ()
    out = [_target(v, item, f"{where} {key}[{i}]", providers) for i, item in enumerate(raw)]
    return tuple(t for t in out if t is not None)


def _chains(v: Validator, raw: Mapping[str, Any], providers: Mapping[str, ProviderConfig]) -> dict[str, Chain]:
    out: dict[str, Chain] = {}
    for name, c in raw.items():
        where = f"routing.chains.{name}"
        if isinstance(c, list):  # short form: architect = ["a:b", "c:d"]
            c = {"targets": c}
        if not isinstance(c, dict):
            v.err(where, 'must be an array of "provider:model" targets or a table with targets')
            continue
        v.unknown_keys(c, _CHAIN_KEYS, where, "key")
        targets = _targets(v, c.get("targets"), where, "targets", providers)
        if not targets and "targets" in c and isinstance(c["targets"], list) and not c["targets"]:
            v.err(where, "targets must not be empty")
        if "targets" not in c:
            v.err(where, "targets is required")
        out[name] = Chain(name, targets, v.file_ref(v.get(c, "inject", str, where), where, "inject"))
    return out


def _rules(v: Validator, raw: Any, providers: Mapping[str, ProviderConfig], chains: Mapping[str, Chain]) -> list[Rule]:
    if not isinstance(raw, list):
        v.err("routing.rules", "must be an array of tables ([[routing.rules]])")
        return []
    out: list[Rule] = []
    seen: dict[str, int] = {}
    for i, r in enumerate(raw):
        where = f"routing.rules[{i}]"
        if not isinstance(r, dict):
            v.err(where, f"must be a table, not {type_name(r)}")
            continue
        name = r.get("name")
        if isinstance(name, str):
            where = f'{where} "{name}"'
            if name in seen:
                v.err(where, f"duplicate rule name (also routing.rules[{seen[name]}])")
            seen[name] = i
        else:
            v.err(where, "name is required (a string)")
            name = f"rule-{i}"
        rule = _rule(v, r, i, name, where, providers, chains)
        if rule is not None:
            out.append(rule)
    return out


def _rule(
    v: Validator,
    r: Mapping[str, Any],
    index: int,
    name: str,
    where: str,
    providers: Mapping[str, ProviderConfig],
    chains: Mapping[str, Chain],
) -> Rule | None:
    v.unknown_keys(r, _RULE_KEYS, where, "key")
    priority = v.get(r, "priority", int, where)
    if "priority" not in r:
        v.err(where, "priority is required (an integer; higher is checked first)")
    conditions = _conditions(v, r.get("conditions", {}), where)
    provider, model, select, chain = _rule_target(v, r, where, providers, chains)
    fallback = _targets(v, r.get("fallback"), where, "fallback", providers)
    params = v.get(r, "params", dict, where, {}) or {}
    if priority is None:
        return None
    return Rule(
        name=name,
        priority=priority,
        conditions=conditions,
        provider=provider,
        model=model,
        select=select,
        fallback=fallback,
        chain=chain,
        inject=v.file_ref(v.get(r, "inject", str, where), where, "inject"),
        params=dict(params),
        enabled=bool(v.get(r, "enabled", bool, where, True)),
        index=index,
    )


def _rule_target(
    v: Validator,
    r: Mapping[str, Any],
    where: str,
    providers: Mapping[str, ProviderConfig],
    chains: Mapping[str, Chain],
) -> tuple[str | None, str | None, ModelSelector | None, str | None]:
    """A rule's (provider, model, model_select, chain): what it routes to, at least one of them."""
    provider = v.get(r, "provider", str, where)
    if provider is not None and provider not in providers:
        v.err(where, undefined_provider(provider, providers))
    model = v.get(r, "model", str, where)
    select = None
    if "model_select" in r:
        select = _selector(v, r["model_select"], f"{where}.model_select", providers)
        if model is not None:
            v.err(where, "give either model or model_select, not both")
    chain = v.get(r, "chain", str, where)
    if chain is not None and chain not in chains:
        defined = ", ".join(chains) or "none"
        v.err(where, f'chain "{chain}" is not defined in [routing.chains] (defined: {defined})')
    if model is None and select is None and chain is None:
        v.err(where, "needs a model, a model_select or a chain")
    if provider is None and model is not None and ":" in model and model.split(":", 1)[0] in providers:
        v.err(where, f'model "{model}" looks like a target: set provider and model separately')
    return provider, model, select, chain


def _selector(v: Validator, raw: Any, where: str, providers: Mapping[str, ProviderConfig]) -> ModelSelector | None:
    if not isinstance(raw, dict):
        v.err(where, f"must be a table, not {type_name(raw)}")
        return None
    v.unknown_keys(raw, _SELECT_KEYS, where, "key")
    tier = v.get(raw, "tier", str, where)
    if tier is not None and tier not in TIERS:
        v.err(where, f'tier "{tier}" is unknown (known: {", ".join(TIERS)})')
    pick = v.get(raw, "pick", str, where, "cheapest")
    if pick not in PICKS:
        v.err(where, f'pick "{pick}" is unknown (known: {", ".join(PICKS)})')
    candidates = _targets(v, raw.get("candidates"), where, "candidates", providers)
    if pick in CANDIDATE_PICKS and not candidates and not raw.get("candidates"):  # (bad ones: reported above)
        v.err(where, f'pick "{pick}" needs candidates = ["provider:model", ...]')
    if candidates and pick not in CANDIDATE_PICKS:
        v.err(where, f'candidates are for pick = {" / ".join(CANDIDATE_PICKS)}, not "{pick}"')
    objective = v.get(raw, "objective", str, where, "cost_per_success")
    if objective not in OBJECTIVES:
        v.err(where, f'objective "{objective}" is unknown (known: {", ".join(OBJECTIVES)})')
    strategy = v.get(raw, "strategy", str, where, "optimistic")
    if strategy not in STRATEGIES:
        v.err(where, f'strategy "{strategy}" is unknown (known: {", ".join(STRATEGIES)})')
    if "strategy" in raw and pick != "learned":
        v.err(where, f'strategy is for pick = "learned", not "{pick}"')
    return ModelSelector(
        capability=v.get(raw, "capability", str, where),
        tier=tier,
        max_cost=v.get(raw, "max_cost", float, where),
        min_context=v.positive(raw, "min_context", int, where),
        pick=pick,
        candidates=candidates,
        objective=objective,
        strategy=strategy if strategy in STRATEGIES else "optimistic",
        min_success=_fraction(v, raw, "min_success", where, 0.8) or 0.0,
        explore=_fraction(v, raw, "explore", where, 0.1) or 0.0,
        learn_by=_learn_by(v, raw, where),
        prior=_prior(v, raw, where),
        weights=_weights(v, raw, where, pick, len(candidates)),
        min_score=_fraction(v, raw, "min_score", where, None),
    )


def _fraction(v: Validator, raw: Mapping[str, Any], key: str, where: str, default: float | None) -> float | None:
    value = v.get(raw, key, float, where)
    if value is None:
        return default
    if not 0.0 <= value <= 1.0:
        v.err(where, f"{key} must be between 0 and 1, not {value}")
        return default
    return float(value)


def _learn_by(v: Validator, raw: Mapping[str, Any], where: str) -> tuple[str, ...]:
    keys = v.str_list(raw, "learn_by", where)
    if keys is None:
        return ("rule",)
    for key in keys:
        if key not in LEARN_BY:
            v.err(where, f'learn_by "{key}" is unknown (known: {", ".join(LEARN_BY)})')
    return tuple(k for k in LEARN_BY if k in keys)  # a fixed order: the same key however written


def _prior(v: Validator, raw: Mapping[str, Any], where: str) -> tuple[float, float]:
    value = raw.get("prior")
    if value is None:
        return (1.0, 1.0)
    ok = isinstance(value, list) and len(value) == 2
    ok = ok and all(isinstance(x, int | float) and not isinstance(x, bool) and x > 0 for x in value)
    if not ok:
        v.err(where, "prior must be [successes, failures], two numbers greater than 0")
        return (1.0, 1.0)
    return (float(value[0]), float(value[1]))


def _weights(v: Validator, raw: Mapping[str, Any], where: str, pick: str, n: int) -> tuple[float, ...]:
    value = raw.get("weights")
    if value is None:
        if pick == "weighted":
            v.err(where, 'pick "weighted" needs weights = [...], one per candidate')
        return ()
    ok = isinstance(value, list) and all(
        isinstance(x, int | float) and not isinstance(x, bool) and x >= 0 for x in value
    )
    if not ok or not any(value):
        v.err(where, "weights must be an array of numbers, none negative, not all 0")
        return ()
    if pick != "weighted":
        v.err(where, f'weights are for pick = "weighted", not "{pick}"')
    if len(value) != n:
        v.err(where, f"weights has {len(value)} numbers for {n} candidates: give one per candidate")
    return tuple(float(x) for x in value)


def _conditions(v: Validator, raw: Any, rule_where: str) -> Conditions:
    where = f"{rule_where}.conditions"
    if not isinstance(raw, dict):
        v.err(where, f"must be a table, not {type_name(raw)}")
        return Conditions()
    return parse_conditions(raw, lambda message: v.err(where, message))


def _scenarios(v: Validator, raw: Any) -> list[Scenario]:
    if not isinstance(raw, list):
        v.err("routing.scenarios", "must be an array of tables ([[routing.scenarios]])")
        return []
    out = []
    for i, s in enumerate(raw):
        where = f"routing.scenarios[{i}]"
        if not isinstance(s, dict):
            v.err(where, f"must be a table, not {type_name(s)}")
            continue
        v.unknown_keys(s, _SCENARIO_KEYS, where, "key")
        name = v.get(s, "name", str, where, f"scenario {i}")
        attrs = v.get(s, "attrs", dict, where, {}) or {}
        v.unknown_keys(attrs, SCENARIO_ATTRS, f"{where}.attrs", "attribute")
        out.append(Scenario(name=name, attrs=dict(attrs), expect=v.get(s, "expect", str, where)))
    return out
