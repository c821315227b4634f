from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adw_modules.config.schema import Target, load_config
from adw_modules.routing.conditions import COMPARISON_OPS, CONDITION_KEYS, Comparison, hour_in_range
from adw_modules.routing.router import ModelRouter, TaskAttrs, estimate_tokens, resolve_params


def router_for(make_config, rules: str, extra: str = "") -> ModelRouter:
    return ModelRouter(load_config(make_config(extra + rules, base=True)))


# ---------------------------------------------------------------- hour_range


@given(st.integers(0, 23), st.integers(0, 24), st.integers(0, 23))
def test_hour_range_is_half_open_and_wraps(start: int, end: int, hour: int) -> None:
    if start == end:
        return
    hours = set(range(start, end)) if start < end else set(range(start, 24)) | set(range(end))
    assert hour_in_range(hour, start, end) == (hour in hours)


@given(st.integers(0, 23), st.integers(0, 23))
def test_wrapping_range_and_its_complement_partition_the_day(start: int, end: int) -> None:
    if start == end:
        return
    for hour in range(24):
        assert hour_in_range(hour, start, end) != hour_in_range(hour, end, start)


def test_hour_range_examples() -> None:
    assert hour_in_range(22, 22, 6) and hour_in_range(5, 22, 6) and not hour_in_range(6, 22, 6)
    assert hour_in_range(0, 0, 8) and hour_in_range(7, 0, 8) and not hour_in_range(8, 0, 8)
    assert all(hour_in_range(h, 0, 24) for h in range(24))


# ---------------------------------------------------------------- comparisons


@given(st.sampled_from(COMPARISON_OPS), st.integers(-5, 5), st.integers(-5, 5))
def test_each_comparison_operator(op: str, bound: int, value: int) -> None:
    expected = {
        "gte": value >= bound,
        "gt": value > bound,
        "lte": value <= bound,
        "lt": value < bound,
        "eq": value == bound,
        "ne": value != bound,
    }[op]
    assert Comparison(((op, float(bound)),)).matches(value) == expected


@given(st.integers(0, 10), st.integers(0, 10), st.integers(0, 12))
def test_comparison_operators_are_anded(lo: int, hi: int, value: int) -> None:
    c = Comparison((("gte", float(lo)), ("lt", float(hi))))
    assert c.matches(value) == (lo <= value < hi)


# ---------------------------------------------------------------- matching

RULES = """
[[routing.rules]]
name = "crit"
priority = 100
conditions = { priority = "critical" }
model = "a-big"

[[routing.rules]]
name = "retry"
priority = 95
conditions = { retry_count = { gte = 1 } }
provider = "beta"
model = "b-mid"

[[routing.rules]]
name = "night"
priority = 70
conditions = { hour_range = [22, 6] }
model = "a-small"

[[routing.rules]]
name = "docs"
priority = 60
conditions = { labels = ["docs", "documentation"] }
provider = "beta"
model = "b-mid"
"""


def test_first_match_by_priority_wins_and_trace_explains(make_config) -> None:
    router = router_for(make_config, RULES)
    d = router.decide({"priority": "critical", "labels": ["docs"], "retry_count": 2, "hour": 23})
    assert (d.provider, d.model, d.rule) == ("alpha", "a-big", "crit")
    assert d.trace[-1].matched

    d = router.decide({"priority": "low", "labels": ["docs"], "retry_count": 0, "hour": 12})
    assert (d.provider, d.model, d.rule) == ("beta", "b-mid", "docs")
    reasons = {c.rule: c.reason for c in d.trace}
    assert reasons["crit"] == "priority is low, rule wants [critical]"
    assert reasons["retry"] == "retry_count 0 fails gte 1"
    assert reasons["night"] == "hour 12 outside [22, 6) UTC"
    assert reasons["docs"] == "all conditions hold"


def test_no_match_uses_defaults_and_disabled_routing_skips_rules(make_config) -> None:
    router = router_for(make_config, RULES)
    d = router.decide({"priority": "normal", "hour": 12})
    assert (d.provider, d.model, d.rule) == ("alpha", "a-small", None)
    assert d.reason == "no rule matched: defaults apply"
    assert len(d.trace) == 4

    text = make_config("", base=True).read_text().replace("enabled = true", "enabled = false")
    off = ModelRouter(load_config(make_config(text + RULES, name="off.toml")))
    d = off.decide({"priority": "critical"})
    assert (d.model, d.rule, d.trace) == ("a-small", None, [])
    assert off.decide({"priority": "critical"}, evaluate_rules=True).rule == "crit"


def test_ties_in_priority_keep_file_order(make_config) -> None:
    router = router_for(
        make_config,
        """
        [[routing.rules]]
        name = "first"
        priority = 5
        conditions = {}
        model = "a-big"
        [[routing.rules]]
        name = "second"
        priority = 5
        conditions = {}
        model = "a-small"
        """,
    )
    assert router.decide({}).rule == "first"


@pytest.mark.parametrize(
    ("conditions", "attrs", "matches"),
    [
        ('priority = ["high", "normal"]', {"priority": "normal"}, True),
        ('priority = ["high", "normal"]', {"priority": "low"}, False),
        ('labels = ["a", "b"]', {"labels": ["b", "z"]}, True),
        ('labels = ["a", "b"]', {"labels": ["z"]}, False),
        ('labels = ["a", "b"]', {"labels": []}, False),
        ('labels_all = ["a", "b"]', {"labels": ["a", "b", "c"]}, True),
        ('labels_all = ["a", "b"]', {"labels": ["a"]}, False),
        ('not_labels = ["wip"]', {"labels": ["wip"]}, False),
        ('not_labels = ["wip"]', {"labels": ["bug"]}, True),
        ("retry_count = 2", {"retry_count": 2}, True),
        ("retry_count = 2", {"retry_count": 1}, False),
        ("retry_count = { gt = 0, lte = 2 }", {"retry_count": 3}, False),
        ('repo = "acme/*"', {"repo": "acme/api"}, True),
        ('repo = "acme/*"', {"repo": "other/api"}, False),
        ('repo = "acme/*"', {}, False),
        ('source = "github"', {"source": "github"}, True),
        ('source = "github"', {"source": "local"}, False),
        ("prompt_tokens = { gt = 1000 }", {"prompt_tokens": 5000}, True),
        ("prompt_tokens = { gt = 1000 }", {"prompt_tokens": 10}, False),
        ("prompt_tokens = { gt = 1000 }", {}, False),
        ('weekdays = ["sat", "sun"]', {"weekday": "sun", "hour": 1}, True),
        ('weekdays = ["sat", "sun"]', {"weekday": "mon", "hour": 1}, False),
        ('priority = "high", labels = ["x"]', {"priority": "high", "labels": ["y"]}, False),
        ("", {"priority": "low"}, True),
    ],
)
def test_each_condition(make_config, conditions: str, attrs: dict, matches: bool) -> None:
    router = router_for(
        make_config,
        f"""
        [[routing.rules]]
        name = "r"
        priority = 1
        conditions = {{ {conditions} }}
        model = "a-big"
        """,
    )
    assert (router.decide(attrs).rule == "r") is matches


@pytest.mark.parametrize(
    ("conditions", "attrs", "reason"),
    [
        ('priority = ["normal", "high"]', {"priority": "low"}, "priority is low, rule wants [high, normal]"),
        ('labels = ["b", "a"]', {"labels": ["z"]}, "no label in [a, b]"),
        ('labels_all = ["c", "a", "b"]', {"labels": ["a"]}, "missing label(s) [b, c]"),
        ('not_labels = ["wip", "x"]', {"labels": ["wip", "bug"]}, "has excluded label(s) [wip]"),
        ("retry_count = { gt = 0, lte = 2 }", {"retry_count": 3}, "retry_count 3 fails gt 0, lte 2"),
        ("retry_count = { lt = 2.5 }", {"retry_count": 3}, "retry_count 3 fails lt 2.5"),
        ("hour_range = [9, 17]", {"hour": 20}, "hour 20 outside [9, 17) UTC"),
        ('weekdays = ["sun", "sat"]', {"weekday": "mon", "hour": 1}, "weekday mon not in [sat, sun]"),
        ('repo = ["acme/*"]', {}, "repo (none) not in [acme/*]"),
        ('repo = "acme/*"', {"repo": "other/api"}, "repo other/api not in [acme/*]"),
        ('source = "github"', {"source": "local"}, "source local not in [github]"),
        ('source = "github"', {}, "source (none) not in [github]"),
        ("prompt_tokens = { gt = 1000 }", {}, "prompt_tokens unknown"),
        ("prompt_tokens = { gt = 1000 }", {"prompt_tokens": 10}, "prompt_tokens 10 fails gt 1000"),
        # Several fail: the first in registry order is the one reported.
        (
            'weekdays = ["sat"], priority = "high"',
            {"weekday": "mon", "hour": 1},
            "priority is normal, rule wants [high]",
        ),
        ('prompt_tokens = { gt = 1 }, labels = ["x"], hour_range = [1, 2]', {"hour": 5}, "no label in [x]"),
    ],
)
def test_each_mismatch_is_explained(make_config, conditions: str, attrs: dict, reason: str) -> None:
    router = router_for(
        make_config,
        f"""
        [[routing.rules]]
        name = "r"
        priority = 1
        conditions = {{ {conditions} }}
        model = "a-big"
        """,
    )
    d = router.decide(attrs)
    assert d.rule is None and [(c.rule, c.matched, c.reason) for c in d.trace] == [("r", False, reason)]


def test_disabled_rule_never_matches_and_says_so(make_config) -> None:
    rules = """
    [[routing.rules]]
    name = "off"
    priority = 2
    enabled = false
    conditions = {}
    model = "a-big"
    [[routing.rules]]
    name = "on"
    priority = 1
    conditions = {}
    model = "a-small"
    """
    d = router_for(make_config, rules).decide({})
    assert d.rule == "on" and [(c.rule, c.reason) for c in d.trace] == [
        ("off", "rule disabled"),
        ("on", "all conditions hold"),
    ]


def test_registry_order_is_the_documented_condition_order() -> None:
    # The order decides which failed condition a trace reports; changing it changes traces.
    assert CONDITION_KEYS == (
        "priority",
        "labels",
        "labels_all",
        "not_labels",
        "retry_count",
        "hour_range",
        "weekdays",
        "repo",
        "source",
        "prompt_tokens",
    )


def test_hour_range_uses_configured_timezone_and_clock(make_config) -> None:
    cfg_text = (make_config("", base=True).read_text()).replace(
        "enabled = true", 'enabled = true\ntimezone = "Asia/Tokyo"'
    )
    path = make_config(cfg_text + RULES)
    router = ModelRouter(load_config(path))
    # 14:00 UTC is 23:00 in Tokyo: inside [22, 6)
    now = dt.datetime(2026, 1, 5, 14, 0, tzinfo=dt.UTC)
    assert router.decide({"priority": "low"}, now=now).rule == "night"
    assert router.decide({"priority": "low"}, now=now.replace(hour=3)).rule is None  # 12:00 Tokyo


def test_fallbacks_dedupe_chain_and_global_and_cap(make_config) -> None:
    extra = """
    [routing.chains]
    main = ["alpha:a-big", "beta:b-mid", "alpha:a-small"]
    """
    text = (
        make_config("", base=True)
        .read_text()
        .replace(
            'default_model = "a-small"',
            'default_model = "a-small"\nfallback = ["beta:b-mid", "alpha:a-small"]\nmax_fallbacks = 2',
        )
    )
    path = make_config(
        text
        + extra
        + """
        [[routing.rules]]
        name = "r"
        priority = 1
        conditions = {}
        model = "a-big"
        fallback = ["beta:b-mid"]
        chain = "main"
        """
    )
    d = ModelRouter(load_config(path)).decide({})
    assert d.target == Target("alpha", "a-big")
    assert d.fallbacks == [Target("beta", "b-mid"), Target("alpha", "a-small")]


def test_unavailable_providers_are_skipped_with_reason(make_config) -> None:
    router = router_for(make_config, RULES)
    d = router.decide({"priority": "low", "labels": ["docs"], "hour": 12}, unavailable={"beta": "BETA_KEY not set"})
    assert d.rule == "docs"
    assert d.target is None
    assert d.skipped == [(Target("beta", "b-mid"), "BETA_KEY not set")]
    assert "every target is unavailable" in d.reason

    d = router.decide({"priority": "critical"}, unavailable={"alpha": "enabled = false"})
    assert d.target is None and d.skipped[0][1] == "enabled = false"


def test_model_selector_cheapest_best_and_availability(make_config) -> None:
    router = router_for(
        make_config,
        """
        [[routing.rules]]
        name = "cheap-docs"
        priority = 10
        conditions = { labels = ["docs"] }
        model_select = { capability = "docs", pick = "cheapest" }
        [[routing.rules]]
        name = "best-code"
        priority = 5
        conditions = { labels = ["hard"] }
        model_select = { capability = "code", pick = "best" }
        [[routing.rules]]
        name = "cap"
        priority = 4
        conditions = { labels = ["capped"] }
        model_select = { capability = "code", max_cost = 0.002, pick = "best" }
        """,
    )
    assert router.decide({"labels": ["docs"]}).target == Target("alpha", "a-small")
    assert router.decide({"labels": ["hard"]}).target == Target("alpha", "a-big")
    # a-big costs 0.01/1K input: over the cap; b-mid (0.003) too; a-small (0.001) fits
    assert router.decide({"labels": ["capped"]}).target == Target("alpha", "a-small")
    d = router.decide({"labels": ["docs"]}, unavailable={"alpha": "down"})
    assert d.target == Target("beta", "b-mid")
    d = router.decide({"labels": ["capped"]}, unavailable={"alpha": "down"})
    assert d.rule is None
    assert "model_select found no model" in d.trace[-1].reason


def test_params_inherit_global_provider_rule(make_config) -> None:
    text = (
        make_config("", base=True)
        .read_text()
        .replace("[providers.beta]\n", '[providers.beta]\nparams = { max_turns = 5, effort = "high" }\n')
    )
    path = make_config("[params]\nmax_turns = 30\nbudget = 1.0\n" + text)
    config = load_config(path)
    assert resolve_params(config, "alpha") == {"max_turns": 30, "budget": 1.0}
    assert resolve_params(config, "beta", {"effort": "low"}) == {
        "max_turns": 5,
        "budget": 1.0,
        "effort": "low",
    }


def test_seed_api_route_returns_pair(make_config) -> None:
    router = router_for(make_config, RULES)
    assert router.route({"priority": "critical", "labels": ["security"], "retry_count": 0}) == (
        "alpha",
        "a-big",
    )


def test_task_attrs_and_token_estimate() -> None:
    attrs = TaskAttrs.from_mapping({"labels": "docs", "retry_count": None})
    assert attrs.labels == frozenset({"docs"}) and attrs.retry_count == 0 and attrs.priority == "normal"
    assert estimate_tokens("x" * 400_000) == 100_000
