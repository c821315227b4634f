#!/usr/bin/env python3
"""Router decisions per second with N rules, against a plain loop over pre-sorted parsed rules.

The baseline is the least a router can do: the rules parsed once into (priority, checks)
tuples, sorted once, and a plain ``for`` loop that returns the first rule whose checks all
pass.  adw's ``ModelRouter.decide`` does that and more (fallback chain, availability,
a lazily built trace of why each earlier rule did not match).  Rows, run in turn within each
repeat (adw, baseline, adw + trace, adw, baseline, ...):

- ``adw decide``: the decision alone, the trace never read (what dispatch does);
- ``plain loop``: the baseline;
- ``adw decide + read trace``: the same decision, then ``decision.trace`` read (what
  ``adw route`` and the attempt's routing record pay); its own row, and the trace's cost
  per decision alone (the difference).

Both see the same tasks, and the first 500 decisions are checked to agree.  Medians and
ranges (min-max) over the repeats.

    .venv/bin/python bench/router_decisions.py [--rules 100] [--tasks 20000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import benchlib

from adw_modules.config.schema import load_config
from adw_modules.routing.router import ModelRouter, TaskAttrs

PRIORITIES = ["critical", "high", "normal", "low"]
LABELS = [f"label-{i}" for i in range(40)]


def make_rules(n: int, rng: random.Random) -> list[dict[str, Any]]:
    rules = []
    for i in range(n):
        kind = i % 4
        if kind == 0:
            cond: dict[str, Any] = {"labels": rng.sample(LABELS, 2)}
        elif kind == 1:
            cond = {"retry_count": {"gte": rng.randint(2, 6)}}
        elif kind == 2:
            cond = {"priority": rng.choice(PRIORITIES[:2]), "labels": [rng.choice(LABELS)]}
        else:
            start = rng.randint(0, 23)
            cond = {
                "hour_range": [start, (start + rng.randint(1, 4)) % 24 or 24],
                "labels": [rng.choice(LABELS)],
            }
        rules.append({"name": f"rule-{i}", "priority": rng.randint(1, 1000), "conditions": cond, "model": f"m-{i}"})
    return rules


def to_toml(rules: list[dict[str, Any]]) -> str:
    import tomlkit

    doc = tomlkit.document()
    doc["providers"] = {"p": {"command_template": ["true"]}}
    doc["routing"] = {"enabled": True, "default_provider": "p", "default_model": "default", "rules": rules}
    return tomlkit.dumps(doc)


Check = Callable[[dict[str, Any]], bool]


def parse_condition(key: str, want: Any) -> Check:
    """One condition of a raw rule as a closure over its parsed bound (done once, not per call)."""
    if key == "priority":
        allowed = frozenset([want] if isinstance(want, str) else want)
        return lambda t: t["priority"] in allowed
    if key == "labels":
        wanted = frozenset(want)
        return lambda t: not wanted.isdisjoint(t["labels"])
    if key == "retry_count":
        ops = want if isinstance(want, dict) else {"eq": want}
        tests = [OPS[op](bound) for op, bound in ops.items()]
        return lambda t: all(test(t["retry_count"]) for test in tests)
    if key == "hour_range":
        start, end = want
        if start < end:
            return lambda t: start <= t["hour"] < end
        return lambda t: t["hour"] >= start or t["hour"] < end
    raise ValueError(key)


OPS: dict[str, Callable[[int], Callable[[int], bool]]] = {
    "gte": lambda b: lambda v: v >= b,
    "gt": lambda b: lambda v: v > b,
    "lte": lambda b: lambda v: v <= b,
    "lt": lambda b: lambda v: v < b,
    "eq": lambda b: lambda v: v == b,
}


class PlainLoopRouter:
    """Rules parsed and sorted once; each call is a plain loop to the first match."""

    def __init__(self, rules: list[dict[str, Any]]) -> None:
        ordered = sorted(enumerate(rules), key=lambda ir: (-ir[1]["priority"], ir[0]))  # stable, as adw
        self.rules = [
            (tuple(parse_condition(k, v) for k, v in r["conditions"].items()), r.get("provider", "p"), r["model"])
            for _, r in ordered
        ]

    def route(self, attrs: dict[str, Any]) -> tuple[str, str]:
        for checks, provider, model in self.rules:
            for check in checks:
                if not check(attrs):
                    break
            else:
                return provider, model
        return "p", "default"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rules", type=int, default=100)
    ap.add_argument("--tasks", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()

    rng = random.Random(42)
    rules = make_rules(args.rules, rng)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.toml"
        path.write_text(to_toml(rules))
        router = ModelRouter(load_config(path))
    plain = PlainLoopRouter(rules)
    raw_tasks = [
        {
            "priority": rng.choice(PRIORITIES),
            "labels": rng.sample(LABELS, rng.randint(0, 3)),
            "retry_count": rng.randint(0, 3),
            "hour": rng.randint(0, 23),
            "weekday": "mon",
        }
        for _ in range(args.tasks)
    ]
    tasks = [TaskAttrs.from_mapping(t) for t in raw_tasks]
    for raw, task in zip(raw_tasks[:500], tasks[:500], strict=True):
        assert router.route(task) == plain.route(raw), raw

    def decide_and_trace(task: TaskAttrs) -> None:
        len(router.decide(task).trace)

    sides: dict[str, tuple[Callable[[Any], object], list[Any]]] = {
        "adw decide (trace not read)": (router.decide, tasks),
        "plain loop, pre-sorted parsed rules": (plain.route, raw_tasks),
        "adw decide + read decision.trace": (decide_and_trace, tasks),
    }
    runs: dict[str, list[float]] = {k: [] for k in sides}  # seconds per decision
    for _ in range(args.repeat):
        for name, (fn, items) in sides.items():
            t0 = time.perf_counter()
            for item in items:
                fn(item)
            runs[name].append((time.perf_counter() - t0) / len(items))
    adw, base, traced = (runs[k] for k in sides)
    lat = []
    for task in tasks[:2000]:
        t0 = time.perf_counter()
        router.decide(task)
        lat.append(time.perf_counter() - t0)
    lat.sort()
    s = benchlib.spread
    print(f"rules={args.rules} tasks={args.tasks} repeat={args.repeat}; median (min-max) over the repeats")
    rows = [(k, s([1 / x for x in v], "{:,.0f}"), s([x * 1e6 for x in v], "{:.2f}")) for k, v in runs.items()]
    trace_cost = [(t - a) * 1e6 for t, a in zip(traced, adw, strict=True)]
    rows.append(("trace alone (decide+trace - decide)", "", s(trace_cost, "{:.2f}")))
    print(benchlib.table(["router", "decisions/s", "us/decision"], rows))
    ratio = [a / b for a, b in zip(adw, base, strict=True)]
    tratio = [t / a for t, a in zip(traced, adw, strict=True)]
    print(f"adw decide / plain loop (time per decision): {s(ratio, '{:.2f}')}x")
    print(f"adw decide + trace / adw decide: {s(tratio, '{:.2f}')}x")
    print(f"adw decide latency p50 {lat[len(lat) // 2] * 1e6:.1f} us, p95 {lat[int(len(lat) * 0.95)] * 1e6:.1f} us")
    print(f"FIGURE adw_decide_over_plain_loop {benchlib.median(ratio):.2f}")
    print(f"FIGURE trace_over_decide {benchlib.median(tratio):.2f}")


if __name__ == "__main__":
    main()
