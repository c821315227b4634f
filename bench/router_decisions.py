#!/usr/bin/env python3
"""Router decisions per second with N rules, against a naive seed-style router in the same run.

The baseline is what seed 003 describes: rules kept as raw TOML dicts, sorted by priority
on every call, conditions interpreted from the dicts each time.  Both routers see the
same tasks, and the first decision of each is checked to agree, so the ratio compares
equal work.

    .venv/bin/python bench/router_decisions.py [--rules 100] [--tasks 20000]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

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


class NaiveRouter:
    """Seed 003's shape: re-sorts and re-interprets raw dict rules on every call."""

    def __init__(self, rules: list[dict[str, Any]]) -> None:
        self.rules = rules

    def route(self, attrs: dict[str, Any]) -> tuple[str, str]:
        for rule in sorted(self.rules, key=lambda r: r["priority"], reverse=True):
            if self.matches(rule["conditions"], attrs):
                return rule.get("provider", "p"), rule["model"]
        return "p", "default"

    @staticmethod
    def matches(cond: dict[str, Any], attrs: dict[str, Any]) -> bool:
        for key, want in cond.items():
            if key == "priority":
                allowed = [want] if isinstance(want, str) else want
                if attrs["priority"] not in allowed:
                    return False
            elif key == "labels":
                if not any(label in attrs["labels"] for label in want):
                    return False
            elif key == "retry_count":
                value = attrs["retry_count"]
                ops = want if isinstance(want, dict) else {"eq": want}
                for op, bound in ops.items():
                    ok = {
                        "gte": value >= bound,
                        "gt": value > bound,
                        "lte": value <= bound,
                        "lt": value < bound,
                        "eq": value == bound,
                    }[op]
                    if not ok:
                        return False
            elif key == "hour_range":
                start, end = want
                hour = attrs["hour"]
                inside = start <= hour < end if start < end else (hour >= start or hour < end)
                if not inside:
                    return False
        return True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rules", type=int, default=100)
    ap.add_argument("--tasks", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()

    rng = random.Random(42)
    rules = make_rules(args.rules, rng)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.toml"
        path.write_text(to_toml(rules))
        router = ModelRouter(load_config(path))
    naive = NaiveRouter(rules)
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
        assert router.route(task) == naive.route(raw), raw

    def rate(fn: Any, items: list[Any]) -> float:
        runs = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            for item in items:
                fn(item)
            runs.append(len(items) / (time.perf_counter() - t0))
        return statistics.median(runs)

    ours = rate(router.decide, tasks)
    base = rate(naive.route, raw_tasks)
    lat = []
    for task in tasks[:2000]:
        t0 = time.perf_counter()
        router.decide(task)
        lat.append(time.perf_counter() - t0)
    lat.sort()
    print(f"rules={args.rules} tasks={args.tasks} repeat={args.repeat} (median of repeats)")
    print(f"{'router':<34}{'decisions/s':>14}")
    print(f"{'adw ModelRouter.decide (+trace)':<34}{ours:>14,.0f}")
    print(f"{'naive seed-style router':<34}{base:>14,.0f}")
    print(f"ratio adw/naive: {ours / base:.2f}x")
    print(f"adw decide latency p50 {lat[len(lat) // 2] * 1e6:.1f} us, p95 {lat[int(len(lat) * 0.95)] * 1e6:.1f} us")


if __name__ == "__main__":
    main()
