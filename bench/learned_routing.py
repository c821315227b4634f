#!/usr/bin/env python3
"""Routing that learns (issue 16): a simulated workload routed by five policies, and what one
learned decision costs.

**Simulation.** 2,000 tasks in four classes by label (docs, bug, feature, security), with a
priority and an hour of the day each.  Every (class, model) pair has a hidden success
probability (``HIDDEN`` below: invented, ordered as one would expect — stronger models succeed
more, hard classes less — not measured), and every attempt costs the model's real price from
genai-prices (through ``ProviderRegistry.price_for``, as adw prices attempts) for the class's
token usage with log-normal noise.  An in-process stand-in "runs" an attempt: a success with
the hidden probability.  A failed task is tried once more, on the first target the policy
gives that the task has not tried yet (else the same one).  Policies:

- ``static``: seed 003's rules (critical → opus, retry → haiku, high/normal → sonnet, off
  hours → haiku, docs → haiku), through adw's own router;
- ``strongest``: always claude-opus-4-1;  ``cheapest``: always the lowest-priced candidate;
- ``oracle``: knows the hidden probabilities and the mean costs: per class, the lowest
  expected cost per success among the candidates with P(success) ≥ ``min_success``;
- ``learned``: adw's router with ``pick = "learned"`` over the same ten candidates
  (``learn_by = ["labels"]``), fed each attempt's outcome and cost as it ends; the default
  ``strategy = "optimistic"``;
- ``thompson``: the same with ``strategy = "thompson"`` (issue 16's rule as worded: a draw from
  every posterior per decision, the lowest cost / drawn P(success) among the draws clearing
  ``min_success``), a draw against the posterior means' choice followed on ≤ ``explore`` = 0.1 of
  the decisions; ``thompson-1``: the same unbounded (``explore = 1``).

Reported per policy (median and range over ``--seeds`` runs): task success rate, cost per
succeeded task, successes per dollar, over all tasks and over the tasks after the first 500;
then the learned selector's learning curve per 100 tasks.

**Decision cost.** ``router.decide`` for a task routed by ``pick = "learned"`` over 10
candidates with 10,000 attempts of history in the statistics, against the same router's
decision for a rule naming its model (the baseline), run in turn (A B A B ...).

    .venv/bin/python bench/learned_routing.py [--tasks 2000] [--seeds 5] [--decisions 20000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import functools
import math
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import benchlib

from adw_modules.config.schema import Config, Target, load_config
from adw_modules.outcomes import Usage
from adw_modules.routing.learning import Fact
from adw_modules.routing.providers import ProviderRegistry
from adw_modules.routing.router import ModelRouter, TaskAttrs

CLASSES = ("docs", "bug", "feature", "security")
CLASS_SHARE = (0.25, 0.35, 0.30, 0.10)
PRIORITIES = (("critical", 0.05), ("high", 0.20), ("normal", 0.55), ("low", 0.20))
# Tokens per attempt (input excluding cache, output) by class; noise is log-normal (sigma 0.3).
TOKENS = {"docs": (40_000, 4_000), "bug": (120_000, 8_000), "feature": (250_000, 15_000), "security": (180_000, 12_000)}
REASONING = {"gpt-5", "gpt-5-mini", "o4-mini"}  # write 1.5x the output (reasoning tokens)
MODELS = {
    "claude": ("claude-haiku-4-5", "claude-sonnet-4-5", "claude-opus-4-1"),
    "codex": ("gpt-4.1-mini", "gpt-4.1", "gpt-5-mini", "gpt-5", "o4-mini"),
    "gemini": ("gemini-2.5-flash", "gemini-2.5-pro"),
}
# Hidden P(success) per model for docs, bug, feature, security (invented; see the docstring).
HIDDEN = {
    "claude-haiku-4-5": (0.92, 0.75, 0.55, 0.45),
    "claude-sonnet-4-5": (0.96, 0.90, 0.85, 0.80),
    "claude-opus-4-1": (0.97, 0.94, 0.92, 0.92),
    "gpt-4.1-mini": (0.88, 0.62, 0.40, 0.30),
    "gpt-4.1": (0.93, 0.80, 0.70, 0.62),
    "gpt-5-mini": (0.92, 0.78, 0.60, 0.50),
    "gpt-5": (0.96, 0.91, 0.87, 0.86),
    "o4-mini": (0.90, 0.82, 0.68, 0.66),
    "gemini-2.5-flash": (0.91, 0.70, 0.50, 0.40),
    "gemini-2.5-pro": (0.95, 0.87, 0.82, 0.78),
}
MIN_SUCCESS = 0.8
EXPLORE = 0.1
PRIOR = [1, 1]
AFTER = 500  # the goal is measured on the tasks after this many
# The learned policies: model_select.strategy and explore.  "learned" is the default strategy
# (optimistic); "thompson" is issue 16's rule as worded, bounded by explore; "thompson-1" unbounded.
LEARNED = {"learned": ("optimistic", EXPLORE), "thompson": ("thompson", EXPLORE), "thompson-1": ("thompson", 1.0)}


def candidates() -> list[Target]:
    return [Target(p, m) for p, models in MODELS.items() for m in models]


def providers_toml() -> str:
    out = []
    for name in MODELS:
        out.append(f'[providers.{name}]\ncommand_template = ["true", "{{model}}"]\n')
    return "\n".join(out).replace("'", '"')


STATIC = """
[routing]
enabled = true
default_provider = "claude"
default_model = "claude-sonnet-4-5"

[[routing.rules]]
name = "critical-issues-opus"
priority = 100
conditions = { priority = "critical" }
provider = "claude"
model = "claude-opus-4-1"

[[routing.rules]]
name = "retry-use-haiku"
priority = 95
conditions = { retry_count = { gte = 1 } }
provider = "claude"
model = "claude-haiku-4-5"

[[routing.rules]]
name = "high-priority-sonnet"
priority = 90
conditions = { priority = ["high", "normal"] }
provider = "claude"
model = "claude-sonnet-4-5"

[[routing.rules]]
name = "off-hours-haiku"
priority = 70
conditions = { hour_range = [0, 8] }
provider = "claude"
model = "claude-haiku-4-5"

[[routing.rules]]
name = "docs-haiku"
priority = 60
conditions = { labels = ["docs"] }
provider = "claude"
model = "claude-haiku-4-5"
"""


def learned_toml(seed: int, strategy: str = "optimistic", explore: float = EXPLORE) -> str:
    cands = ", ".join(f'"{t}"' for t in candidates())
    return f"""
[routing]
enabled = true
default_provider = "claude"
default_model = "claude-sonnet-4-5"

[[routing.rules]]
name = "learned"
priority = 10
model_select = {{ pick = "learned", candidates = [{cands}], objective = "cost_per_success", \
min_success = {MIN_SUCCESS}, explore = {explore}, learn_by = ["labels"], prior = {PRIOR}, \
strategy = "{strategy}" }}

[learning]
seed = {seed}
"""


def load(tmp: Path, name: str, routing: str) -> Config:
    path = tmp / f"{name}.toml"
    path.write_text(providers_toml() + routing)
    return load_config(path)


@dataclass(frozen=True)
class SimTask:
    cls: int
    priority: str
    hour: int
    tokens: tuple[int, int]


def workload(n: int, rng: random.Random) -> list[SimTask]:
    out = []
    for _ in range(n):
        cls = rng.choices(range(len(CLASSES)), weights=CLASS_SHARE)[0]
        priority = rng.choices([p for p, _ in PRIORITIES], weights=[w for _, w in PRIORITIES])[0]
        base_in, base_out = TOKENS[CLASSES[cls]]
        noise = math.exp(rng.gauss(0, 0.3))
        out.append(SimTask(cls, priority, rng.randrange(24), (int(base_in * noise), int(base_out * noise))))
    return out


class World:
    """The hidden truth: attempt outcomes and real prices."""

    def __init__(self, config: Config, seed: int) -> None:
        registry = ProviderRegistry(config)
        self.prices = {t: registry.price_for(t.provider, t.model) for t in candidates()}
        self.rng = random.Random(seed * 7919 + 1)
        self._costs: dict[tuple[Target, tuple[int, int]], float] = {}

    def cost(self, target: Target, tokens: tuple[int, int]) -> float:
        key = (target, tokens)
        if key not in self._costs:
            out = tokens[1] * (1.5 if target.model in REASONING else 1)
            price = self.prices[target]
            assert price is not None, f"genai-prices knows no price for {target}"
            self._costs[key] = price.cost(Usage(input_tokens=tokens[0], output_tokens=int(out)))
        return self._costs[key]

    def attempt(self, target: Target, task: SimTask) -> tuple[bool, float]:
        return self.rng.random() < HIDDEN[target.model][task.cls], self.cost(target, task.tokens)


Policy = Callable[[SimTask, int, list[Target]], Target]


def router_policy(router: ModelRouter) -> Policy:
    def choose(task: SimTask, retry: int, tried: list[Target]) -> Target:
        attrs = TaskAttrs(
            priority=task.priority,
            labels=frozenset({CLASSES[task.cls]}),
            retry_count=retry,
            hour=task.hour,
            weekday="mon",
        )
        targets = router.decide(attrs).targets
        return next((t for t in targets if t not in tried), targets[0])

    return choose


def _swap(fn: Callable[[Target, int], tuple[int, float]], cls: int, t: Target) -> tuple[int, float]:
    return fn(t, cls)


def always(target: Target) -> Policy:
    def choose(task: SimTask, retry: int, tried: list[Target]) -> Target:
        return target

    return choose


def oracle_policy(world: World) -> Policy:
    mean_tokens = {c: TOKENS[c] for c in CLASSES}

    def value(t: Target, cls: int) -> tuple[int, float]:
        p = HIDDEN[t.model][cls]
        cost = world.cost(t, mean_tokens[CLASSES[cls]]) * math.exp(0.3**2 / 2)  # the log-normal mean
        return (0 if p >= MIN_SUCCESS else 1, cost / p if p >= MIN_SUCCESS else -p)

    ranked = {cls: sorted(candidates(), key=functools.partial(_swap, value, cls)) for cls in range(len(CLASSES))}

    def choose(task: SimTask, retry: int, tried: list[Target]) -> Target:
        return next(t for t in ranked[task.cls] if t not in tried)

    return choose


@dataclass
class Tally:
    tasks: int = 0
    succeeded: int = 0
    cost: float = 0.0

    def rate(self) -> float:
        return self.succeeded / self.tasks if self.tasks else float("nan")

    def per_success(self) -> float:
        return self.cost / self.succeeded if self.succeeded else float("inf")

    def per_dollar(self) -> float:
        return self.succeeded / self.cost if self.cost else float("nan")


def simulate(policy: Policy, world: World, tasks: list[SimTask], learn: ModelRouter | None) -> list[Tally]:
    """One Tally per 100 tasks."""
    windows = [Tally() for _ in range((len(tasks) + 99) // 100)]
    for n, task in enumerate(tasks):
        tally = windows[n // 100]
        tally.tasks += 1
        tried: list[Target] = []
        for retry in range(2):
            target = policy(task, retry, tried)
            tried.append(target)
            ok, cost = world.attempt(target, task)
            tally.cost += cost
            if learn is not None:
                key = f"labels={CLASSES[task.cls]}"
                learn.signals.stats.record(Fact(key, str(target), ok, cost))
            if ok:
                tally.succeeded += 1
                break
    return windows


def total(windows: list[Tally]) -> Tally:
    return Tally(sum(w.tasks for w in windows), sum(w.succeeded for w in windows), sum(w.cost for w in windows))


def run_simulation(tmp: Path, n_tasks: int, seeds: int) -> None:
    names = ("static", "strongest", "cheapest", "oracle", *LEARNED)
    results: dict[str, list[tuple[Tally, Tally]]] = {name: [] for name in names}
    curves: list[list[Tally]] = []
    static_router = ModelRouter(load(tmp, "static", STATIC))
    for seed in range(seeds):
        learners = {
            name: ModelRouter(load(tmp, f"{name}{seed}", learned_toml(seed, strategy, explore)))
            for name, (strategy, explore) in LEARNED.items()
        }
        world = World(learners["learned"].config, seed)
        cheapest = min(candidates(), key=lambda t: world.cost(t, (100_000, 10_000)))
        tasks = workload(n_tasks, random.Random(seed))
        policies: dict[str, tuple[Policy, ModelRouter | None]] = {
            "static": (router_policy(static_router), None),
            "strongest": (always(Target("claude", "claude-opus-4-1")), None),
            "cheapest": (always(cheapest), None),
            "oracle": (oracle_policy(world), None),
            **{name: (router_policy(router), router) for name, router in learners.items()},
        }
        for name, (policy, learn) in policies.items():
            world.rng = random.Random(seed * 7919 + 1)  # every policy meets the same luck
            windows = simulate(policy, world, tasks, learn)
            results[name].append((total(windows), total(windows[AFTER // 100 :])))
            if name == "learned":
                curves.append(windows)
    report(results, curves, n_tasks, seeds)


def report(results: dict[str, list[tuple[Tally, Tally]]], curves: list[list[Tally]], n_tasks: int, seeds: int) -> None:
    print(f"{n_tasks} tasks, {seeds} seeds; medians (min-max) over seeds; 'after' = tasks {AFTER + 1}-{n_tasks}")
    print(f"{'policy':<10} {'success':>20} {'$/success':>24} {'success/$ after':>22} {'success after':>20}")
    for name, runs in results.items():
        print(
            f"{name:<10} {benchlib.spread([a.rate() for a, _ in runs], '{:.3f}'):>20} "
            f"{benchlib.spread([a.per_success() for a, _ in runs], '{:.3f}'):>24} "
            f"{benchlib.spread([b.per_dollar() for _, b in runs], '{:.2f}'):>22} "
            f"{benchlib.spread([b.rate() for _, b in runs], '{:.3f}'):>20}"
        )
    oracle_ratio = [
        lb.per_dollar() / ob.per_dollar()
        for (_, lb), (_, ob) in zip(results["learned"], results["oracle"], strict=True)
    ]
    saving = [
        1 - la.per_success() / sa.per_success()
        for (la, _), (sa, _) in zip(results["learned"], results["static"], strict=True)
    ]
    saving_after = [
        1 - lb.per_success() / sb.per_success()
        for (_, lb), (_, sb) in zip(results["learned"], results["static"], strict=True)
    ]
    rate_gap = [la.rate() - sa.rate() for (la, _), (sa, _) in zip(results["learned"], results["static"], strict=True)]
    print("\nlearning curve of 'learned' (per 100 tasks, median over seeds): success rate, $/success")
    for i in range(len(curves[0])):
        rates = [c[i].rate() for c in curves]
        costs = [c[i].per_success() for c in curves]
        span = f"{i * 100 + 1:>5}-{(i + 1) * 100:<5}"
        print(f"  tasks {span} {statistics.median(rates):.3f}  ${statistics.median(costs):.3f}")
    print()
    for name in ("thompson", "thompson-1"):
        ratio = [
            tb.per_dollar() / ob.per_dollar() for (_, tb), (_, ob) in zip(results[name], results["oracle"], strict=True)
        ]
        save = [
            1 - ta.per_success() / sa.per_success()
            for (ta, _), (sa, _) in zip(results[name], results["static"], strict=True)
        ]
        gap = [ta.rate() - sa.rate() for (ta, _), (sa, _) in zip(results[name], results["static"], strict=True)]
        tag = name.replace("-", "_")
        print(f"FIGURE {tag}_over_oracle_success_per_dollar_after_{AFTER} {benchlib.spread(ratio, '{:.3f}')}")
        print(f"FIGURE {tag}_cost_per_success_saving_vs_static {benchlib.spread(save, '{:.3f}')}")
        print(f"FIGURE {tag}_minus_static_success_rate {benchlib.spread(gap, '{:+.3f}')}")
    print(f"FIGURE learned_over_oracle_success_per_dollar_after_{AFTER} {benchlib.spread(oracle_ratio, '{:.3f}')}")
    print(f"FIGURE learned_cost_per_success_saving_vs_static {benchlib.spread(saving, '{:.3f}')}")
    print(f"FIGURE learned_cost_per_success_saving_vs_static_after_{AFTER} {benchlib.spread(saving_after, '{:.3f}')}")
    print(f"FIGURE learned_minus_static_success_rate {benchlib.spread(rate_gap, '{:+.3f}')}")


# ---------------------------------------------------------------- decision cost
DECISION = """
[routing]
enabled = true
default_provider = "claude"
default_model = "claude-sonnet-4-5"

[[routing.rules]]
name = "static"
priority = 20
conditions = {{ labels = ["static"] }}
provider = "claude"
model = "claude-sonnet-4-5"

[[routing.rules]]
name = "thompson"
priority = 15
conditions = {{ labels = ["thompson"] }}
model_select = {{ pick = "learned", strategy = "thompson", explore = 1, candidates = [{cands}], learn_by = ["rule"] }}

[[routing.rules]]
name = "learned"
priority = 10
model_select = {{ pick = "learned", candidates = [{cands}], learn_by = ["rule"] }}

[learning]
seed = 1
"""


def run_decisions(tmp: Path, n: int, repeat: int) -> None:
    cands = ", ".join(f'"{t}"' for t in candidates())
    router = ModelRouter(load(tmp, "decision", DECISION.format(cands=cands)))
    rng = random.Random(3)
    for _ in range(10_000):  # 10,000 attempts of history over the 10 candidates, for each rule
        t = rng.choice(candidates())
        ok, cost = rng.random() < HIDDEN[t.model][1], rng.uniform(0.01, 2)
        router.signals.stats.record(Fact("rule=learned", str(t), ok, cost))
        router.signals.stats.record(Fact("rule=thompson", str(t), ok, cost))
    learned_task = TaskAttrs(labels=frozenset({"bug"}), hour=12, weekday="mon")
    static_task = TaskAttrs(labels=frozenset({"static"}), hour=12, weekday="mon")
    assert router.decide(learned_task).rule == "learned" and router.decide(static_task).rule == "static"

    def timed(task: TaskAttrs) -> Callable[[int], tuple[float, float]]:
        def run(_: int) -> tuple[float, float]:
            decide = router.decide
            wall, cpu = time.perf_counter(), time.thread_time()
            for _ in range(n):
                decide(task)
            return ((time.perf_counter() - wall) / n * 1e6, (time.thread_time() - cpu) / n * 1e6)

        return run

    learned, static = benchlib.alternate(repeat, timed(learned_task), timed(static_task))
    print(f"\ndecision cost, {n} decisions x {repeat} repeats, alternating (A B A B); wall and this thread's CPU")
    for name, runs in (("pick = learned, 10 candidates, 10,000 attempts", learned), ("rule naming its model", static)):
        wall = benchlib.spread([w for w, _ in runs], "{:.1f}")
        cpu = benchlib.spread([c for _, c in runs], "{:.1f}")
        print(f"  {name:<48} wall {wall} µs, CPU {cpu} µs")
    ratios = [a[1] / b[1] for a, b in zip(learned, static, strict=True)]
    print(f"FIGURE learned_decision_cpu_us {benchlib.spread([c for _, c in learned], '{:.1f}')}")
    print(f"FIGURE learned_decision_wall_us {benchlib.spread([w for w, _ in learned], '{:.1f}')}")
    print(f"FIGURE learned_decision_over_static_rule_cpu {benchlib.spread(ratios, '{:.1f}')}")
    thompson_task = TaskAttrs(labels=frozenset({"thompson"}), hour=12, weekday="mon")
    assert router.decide(thompson_task).rule == "thompson"
    thompson, static = benchlib.alternate(repeat, timed(thompson_task), timed(static_task))
    wall = benchlib.spread([w for w, _ in thompson], "{:.1f}")
    cpu = benchlib.spread([c for _, c in thompson], "{:.1f}")
    print(f"  {'strategy = thompson (10 draws per decision)':<48} wall {wall} µs, CPU {cpu} µs")
    print(f"FIGURE thompson_decision_cpu_us {cpu}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=2000)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--decisions", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run_simulation(Path(tmp), args.tasks, args.seeds)
        run_decisions(Path(tmp), args.decisions, args.repeat)


if __name__ == "__main__":
    main()
