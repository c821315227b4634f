"""Issue 16: the learned selector's statistics and pick rules, and their config.

Posterior updates (``LearningStats``), the selection rule (``select_learned`` through the real
router: cost per success under ``min_success``, ``objective = "success"``, bounded exploration,
determinism under a seed, the decision trace), ``weighted`` and ``least-busy`` honouring busy
providers, ``min_score``, and config errors naming file and line.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from adw_modules.config.schema import ConfigError, Target, load_config
from adw_modules.routing.learning import (
    Fact,
    LearningStats,
    LoadView,
    counts_for_learning,
    learning_key,
    provider_score,
)
from adw_modules.routing.router import ModelRouter, TaskAttrs

SMALL, BIG, MID = "alpha:a-small", "alpha:a-big", "beta:b-mid"
TASK = TaskAttrs(labels=frozenset({"bug"}), hour=12, weekday="mon")


def learned_router(make_config, select: str, seed: int = 7) -> ModelRouter:
    path = make_config(
        f"""
        [[routing.rules]]
        name = "learn"
        priority = 1
        model_select = {{ {select} }}

        [learning]
        seed = {seed}
        """,
        base=True,
    )
    return ModelRouter(load_config(path))


def feed(router: ModelRouter, key: str, target: str, ok: int, failed: int, cost: float) -> None:
    for i in range(ok + failed):
        router.signals.stats.record(Fact(key, target, i < ok, cost))


# ---------------------------------------------------------------- posterior updates
def test_a_cell_counts_successes_failures_and_mean_cost() -> None:
    stats = LearningStats()
    for ok, cost in [(True, 0.1), (False, 0.3), (True, None), (True, 0.2)]:
        stats.record(Fact("k", SMALL, ok, cost))
    cell = stats.cell("k", SMALL)
    assert cell is not None
    assert (cell.successes, cell.failures, cell.attempts) == (3, 1, 4)
    assert cell.mean_cost() == pytest.approx(0.2)  # over the three costed attempts
    assert stats.cell("k", BIG) is None and stats.cell("other", SMALL) is None


def test_load_replaces_everything_with_the_history() -> None:
    stats = LearningStats()
    stats.record(Fact("k", SMALL, False, 1.0))
    stats.load([Fact("k", BIG, True, 0.5)] * 3, {"alpha": [10.0, 30.0, 20.0]})
    assert stats.cell("k", SMALL) is None
    big = stats.cell("k", BIG)
    assert big is not None and (big.successes, big.failures) == (3, 0)
    assert stats.median_duration("alpha") == 20.0


def test_the_posterior_in_the_trace_is_the_beta_of_prior_plus_counts(make_config) -> None:
    router = learned_router(make_config, f'pick = "learned", candidates = ["{SMALL}"], prior = [2, 3]')
    feed(router, "rule=learn", SMALL, ok=8, failed=2, cost=0.01)
    d = router.decide(TASK)
    assert d.learn_key == "rule=learn"
    option = d.selection.options[0]  # type: ignore[union-attr]
    a, b = 2 + 8, 3 + 2
    assert option.mean == pytest.approx(a / (a + b))
    assert option.sd == pytest.approx((a * b / ((a + b) ** 2 * (a + b + 1))) ** 0.5)
    assert option.attempts == 10


def test_provider_faults_and_cancellations_are_not_counted() -> None:
    assert counts_for_learning("success", None)
    assert counts_for_learning("failed", "max_turns")
    assert not counts_for_learning("failed", "rate_limited")
    assert not counts_for_learning("cancelled", "cancelled")
    assert not counts_for_learning(None, None)


def test_learning_keys_follow_learn_by() -> None:
    assert learning_key(("rule",), "r", {"b", "a"}, "o/x") == "rule=r"
    assert learning_key(("rule", "labels", "repo"), "r", {"b", "a"}, "o/x") == "rule=r labels=a,b repo=o/x"
    assert learning_key(("labels",), None, (), None) == "labels="


def test_provider_score_is_success_rate_reduced_by_slowness() -> None:
    assert provider_score([], [], 600) is None
    assert provider_score([True, True, False, True], [100, 200], 600) == 0.75
    assert provider_score([True] * 4, [1200, 1200, 1200], 600) == 0.5


# ---------------------------------------------------------------- the selection rule
def test_cheapest_candidate_clearing_min_success_wins(make_config) -> None:
    router = learned_router(
        make_config, f'pick = "learned", candidates = ["{BIG}", "{SMALL}", "{MID}"], min_success = 0.8, explore = 0'
    )
    feed(router, "rule=learn", BIG, ok=190, failed=10, cost=1.00)
    feed(router, "rule=learn", MID, ok=180, failed=20, cost=0.30)
    feed(router, "rule=learn", SMALL, ok=100, failed=100, cost=0.01)  # cheap, but 0.5 < 0.8
    d = router.decide(TASK)
    assert [str(t) for t in d.targets] == [MID, BIG, SMALL]  # fallbacks in order of value
    text = d.selection.explain()  # type: ignore[union-attr]
    assert f"{MID}: P(success) 0.90 ±0.02 over 200 attempts, $0.335 per success" in text
    assert text.endswith(f"→ {MID} (optimistic: lowest expected cost per success with P(success) + 2 sd ≥ 0.80)")
    assert d.to_dict()["selection"] == text


def test_traffic_shifts_when_the_cheap_candidate_starts_failing(make_config) -> None:
    router = learned_router(make_config, f'pick = "learned", candidates = ["{SMALL}", "{BIG}"], explore = 0')
    feed(router, "rule=learn", SMALL, ok=30, failed=0, cost=0.01)
    feed(router, "rule=learn", BIG, ok=30, failed=0, cost=1.0)
    assert router.decide(TASK).target == Target.parse(SMALL)
    feed(router, "rule=learn", SMALL, ok=0, failed=30, cost=0.01)
    assert router.decide(TASK).target == Target.parse(BIG)


def test_objective_success_takes_the_most_likely(make_config) -> None:
    router = learned_router(
        make_config, f'pick = "learned", candidates = ["{SMALL}", "{BIG}"], objective = "success", explore = 0'
    )
    feed(router, "rule=learn", SMALL, ok=90, failed=10, cost=0.01)
    feed(router, "rule=learn", BIG, ok=98, failed=2, cost=5.0)
    d = router.decide(TASK)
    assert d.target == Target.parse(BIG)
    assert "highest P(success)" in d.selection.explain()  # type: ignore[union-attr]


def test_nothing_clears_min_success_then_the_most_likely(make_config) -> None:
    router = learned_router(
        make_config, f'pick = "learned", candidates = ["{SMALL}", "{BIG}"], min_success = 0.99, explore = 0'
    )
    feed(router, "rule=learn", SMALL, ok=50, failed=50, cost=0.01)
    feed(router, "rule=learn", BIG, ok=80, failed=20, cost=1.0)
    assert router.decide(TASK).target == Target.parse(BIG)


def test_statistics_are_kept_per_learn_by_key(make_config) -> None:
    router = learned_router(
        make_config, f'pick = "learned", candidates = ["{SMALL}", "{BIG}"], learn_by = ["labels"], explore = 0'
    )
    feed(router, "labels=docs", SMALL, ok=50, failed=0, cost=0.01)
    feed(router, "labels=docs", BIG, ok=50, failed=0, cost=1.0)
    feed(router, "labels=bug", SMALL, ok=0, failed=50, cost=0.01)
    feed(router, "labels=bug", BIG, ok=50, failed=0, cost=1.0)
    docs = router.decide(TaskAttrs(labels=frozenset({"docs"}), hour=12, weekday="mon"))
    bug = router.decide(TASK)
    assert (docs.learn_key, docs.target) == ("labels=docs", Target.parse(SMALL))
    assert (bug.learn_key, bug.target) == ("labels=bug", Target.parse(BIG))


def test_exploration_stays_within_explore(make_config) -> None:
    """Two untried candidates: Thompson sampling is consulted on about ``explore`` of the
    decisions, its draw disagrees with the exploiting choice about half the time, and never more
    than ``explore`` of the decisions follow it (the hard bound)."""
    select = f'pick = "learned", candidates = ["{SMALL}", "{MID}"], min_success = 0.5, explore = 0.2'
    router = learned_router(make_config, select)
    picks = Counter(str(router.decide(TASK).target) for _ in range(1000))
    explored = picks[MID]  # the exploiting choice is the cheaper a-small every time (no outcomes fed)
    assert 50 <= explored <= 200


def test_draws_are_deterministic_under_the_seed(make_config) -> None:
    select = f'pick = "learned", candidates = ["{SMALL}", "{MID}", "{BIG}"], explore = 0.5'

    def run(seed: int) -> list[str]:
        router = learned_router(make_config, select, seed=seed)
        return [str(router.decide(TASK).target) for _ in range(200)]

    assert run(1) == run(1)
    assert run(1) != run(2)


# ---------------------------------------------------------------- strategy = "thompson"
NEAR = f'candidates = ["{SMALL}", "{BIG}"], min_success = 0.8'


def near_threshold(make_config, select: str, seed: int = 7) -> ModelRouter:
    """a-small: mean P(success) 81/102 = 0.794, just under min_success, for $0.01; a-big 0.995 for $1."""
    router = learned_router(make_config, select, seed=seed)
    feed(router, "rule=learn", SMALL, ok=80, failed=20, cost=0.01)
    feed(router, "rule=learn", BIG, ok=199, failed=1, cost=1.0)
    return router


def test_thompson_picks_a_candidate_as_often_as_its_draw_clears_min_success(make_config) -> None:
    """Unbounded (explore = 1): a-small is chosen exactly when its Beta(81, 21) draw is ≥ 0.8,
    P = 0.45; the optimistic default (0.794 + 2 sd = 0.874 ≥ 0.8) takes it every time."""
    router = near_threshold(make_config, f'pick = "learned", strategy = "thompson", {NEAR}, explore = 1')
    small = sum(str(router.decide(TASK).target) == SMALL for _ in range(1000))
    rng = random.Random(1)
    expected = sum(rng.betavariate(81, 21) >= 0.8 for _ in range(20_000)) / 20
    assert abs(small - expected) < 60, (small, expected)
    optimistic = near_threshold(make_config, f'pick = "learned", {NEAR}, explore = 0')
    assert all(optimistic.decide(TASK).target == Target.parse(SMALL) for _ in range(100))


def test_thompson_ranks_by_cost_over_the_drawn_success(make_config) -> None:
    """Both clear any draw's floor (min_success = 0): the cheaper per drawn success wins, and the
    trace names the strategy."""
    router = learned_router(
        make_config, f'pick = "learned", strategy = "thompson", candidates = ["{BIG}", "{SMALL}"], min_success = 0'
    )
    feed(router, "rule=learn", BIG, ok=500, failed=0, cost=1.0)
    feed(router, "rule=learn", SMALL, ok=500, failed=500, cost=0.1)  # 0.1 / 0.5 = 0.2 < 1.0
    d = router.decide(TASK)
    assert d.target == Target.parse(SMALL)
    assert d.selection.explain().endswith(  # type: ignore[union-attr]
        f"→ {SMALL} (thompson: lowest expected cost per success with drawn P(success) ≥ 0.00)"
    )


def test_thompson_follows_a_draw_against_the_means_within_explore_only(make_config) -> None:
    """The means choose a-big (a-small's 0.794 < 0.8); a-small's draws clear 0.8 on 45% of the
    decisions, but at most ``explore`` = 10% of them may follow a draw against the means."""
    router = near_threshold(make_config, f'pick = "learned", strategy = "thompson", {NEAR}, explore = 0.1')
    decisions = [router.decide(TASK) for _ in range(1000)]
    small = [d for d in decisions if str(d.target) == SMALL]
    assert 80 <= len(small) <= 100
    assert all("thompson, exploring" in d.selection.explain() for d in small)  # type: ignore[union-attr]
    held = [d for d in decisions if str(d.target) == BIG and "over the explore bound" in d.selection.explain()]  # type: ignore[union-attr]
    assert held, "some draws for a-small were held back by the bound"


def test_thompson_posterior_takes_failures(make_config) -> None:
    router = learned_router(make_config, f'pick = "learned", strategy = "thompson", {NEAR}, explore = 1', seed=3)
    feed(router, "rule=learn", BIG, ok=199, failed=1, cost=1.0)
    before = sum(str(router.decide(TASK).target) == SMALL for _ in range(200))  # Beta(1, 1): 20% clear 0.8
    feed(router, "rule=learn", SMALL, ok=0, failed=30, cost=0.01)
    after = sum(str(router.decide(TASK).target) == SMALL for _ in range(200))  # Beta(1, 31): never
    assert before >= 20 and after == 0


def test_thompson_is_deterministic_under_the_seed(make_config) -> None:
    select = f'pick = "learned", strategy = "thompson", candidates = ["{SMALL}", "{MID}", "{BIG}"], explore = 1'

    def run(seed: int) -> list[str]:
        router = learned_router(make_config, select, seed=seed)
        return [str(router.decide(TASK).target) for _ in range(200)]

    assert run(1) == run(1)
    assert run(1) != run(2)


def test_unavailable_candidates_are_skipped(make_config) -> None:
    router = learned_router(make_config, f'pick = "learned", candidates = ["{MID}", "{SMALL}"], explore = 0')
    d = router.decide(TASK, unavailable={"beta": "no key"})
    assert d.targets == [Target.parse(SMALL)]
    everything = router.decide(TASK, unavailable={"beta": "no key", "alpha": "down"})
    assert everything.target is None


def test_busy_candidates_go_last(make_config) -> None:
    router = learned_router(make_config, f'pick = "learned", candidates = ["{SMALL}", "{MID}"], explore = 0')
    load = LoadView({"alpha": 3}, lambda p: "at max_concurrency 3" if p == "alpha" else None)
    d = router.decide(TASK, load=load)
    assert d.targets[:2] == [Target.parse(MID), Target.parse(SMALL)]
    assert "(busy: at max_concurrency 3)" in d.selection.explain()  # type: ignore[union-attr]


# ---------------------------------------------------------------- weighted, least-busy, min_score
def test_weighted_splits_by_weight_and_skips_busy(make_config) -> None:
    router = learned_router(make_config, f'pick = "weighted", candidates = ["{SMALL}", "{MID}"], weights = [3, 1]')
    picks = Counter(str(router.decide(TASK).target) for _ in range(2000))
    assert 0.70 < picks[SMALL] / 2000 < 0.80
    busy = LoadView({}, lambda p: "at 5 attempts per minute" if p == "alpha" else None)
    assert {str(router.decide(TASK, load=busy).target) for _ in range(50)} == {MID}


def test_least_busy_takes_fewest_running_then_fastest(make_config) -> None:
    router = learned_router(make_config, f'pick = "least-busy", candidates = ["{SMALL}", "{MID}"]')
    idle = LoadView({"alpha": 2, "beta": 1}, lambda p: None)
    assert router.decide(TASK, load=idle).target == Target.parse(MID)
    even = LoadView({"alpha": 1, "beta": 1}, lambda p: None)
    router.signals.stats.load([], {"alpha": [30.0], "beta": [90.0]})
    d = router.decide(TASK, load=even)
    assert d.target == Target.parse(SMALL)
    assert d.selection.explain() == f"least-busy: 1 running on alpha, median 30s recently → {SMALL}"  # type: ignore[union-attr]
    limited = LoadView({"alpha": 0, "beta": 5}, lambda p: "at max_concurrency 1" if p == "alpha" else None)
    assert router.decide(TASK, load=limited).target == Target.parse(MID)


def test_min_score_skips_low_scoring_providers(make_config) -> None:
    router = learned_router(make_config, f'pick = "least-busy", candidates = ["{SMALL}", "{MID}"], min_score = 0.5')
    router.signals.score = lambda p: 0.2 if p == "alpha" else None
    assert router.decide(TASK).targets == [Target.parse(MID)]


# ---------------------------------------------------------------- config
@pytest.mark.parametrize(
    ("select", "message"),
    [
        ('pick = "learned"', 'pick "learned" needs candidates'),
        (f'pick = "learned", candidates = ["{SMALL}"], min_success = 1.5', "min_success must be between 0 and 1"),
        (f'pick = "learned", candidates = ["{SMALL}"], objective = "speed"', 'objective "speed" is unknown'),
        (f'pick = "learned", candidates = ["{SMALL}"], learn_by = ["colour"]', 'learn_by "colour" is unknown'),
        (f'pick = "learned", candidates = ["{SMALL}"], prior = [1]', "prior must be [successes, failures]"),
        (f'pick = "weighted", candidates = ["{SMALL}", "{MID}"]', 'pick "weighted" needs weights'),
        (f'pick = "weighted", candidates = ["{SMALL}", "{MID}"], weights = [1]', "weights has 1 numbers for 2"),
        ('pick = "learned", candidates = ["nope:x"]', 'provider "nope" is not defined'),
        (f'pick = "cheapest", candidates = ["{SMALL}"]', "candidates are for pick"),
        (f'pick = "learned", candidates = ["{SMALL}"], strategy = "greedy"', 'strategy "greedy" is unknown'),
        (f'pick = "weighted", candidates = ["{SMALL}"], weights = [1], strategy = "thompson"', "strategy is for pick"),
        (f'pick = "learned", candidates = ["{SMALL}"], explore = 1.5', "explore must be between 0 and 1"),
        (f'pick = "learned", candidates = ["{SMALL}"], prior = [-1, 1]', "prior must be [successes, failures]"),
        (f'pick = "learned", candidates = ["{SMALL}"], min_score = -0.1', "min_score must be between 0 and 1"),
        (f'pick = "weighted", candidates = ["{SMALL}", "{MID}"], weights = [1, 2, 3]', "weights has 3 numbers for 2"),
        ('pick = "learned", candidates = ["alpha"]', "is not a target"),
    ],
)
def test_bad_selectors_name_file_and_line(make_config, select: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        learned_router(make_config, select)
    issue = next(i for i in err.value.issues if message in i)
    path, line = issue.split(":")[:2]
    assert path.endswith("config.toml")
    text = Path(path).read_text().splitlines()
    assert "model_select" in text[int(line) - 1]  # the selector's line (a bad candidate inside it too)


def test_a_bad_candidate_is_one_error_not_also_missing_candidates(make_config) -> None:
    with pytest.raises(ConfigError) as err:
        learned_router(make_config, 'pick = "learned", candidates = ["nope:x"]')
    assert len(err.value.issues) == 1 and 'provider "nope" is not defined' in err.value.issues[0]


def test_learning_table_is_validated(make_config) -> None:
    path = make_config('[learning]\nsuccess = "vibes"\n', base=True)
    with pytest.raises(ConfigError, match=r'config.toml:\d+: learning: success "vibes" is unknown'):
        load_config(path)
    path = make_config("[learning]\nhistory_days = 99999999\n", base=True)
    with pytest.raises(ConfigError, match=r"config.toml:\d+: learning: history_days must be at most 36500"):
        load_config(path)
    ok = load_config(make_config('[learning]\nsuccess = "merged"\nseed = 3\n', base=True))
    assert (ok.learning.success, ok.learning.seed) == ("merged", 3)


def test_seeded_rng_is_independent_of_the_global_one(make_config) -> None:
    select = f'pick = "weighted", candidates = ["{SMALL}", "{MID}"], weights = [1, 1]'
    a = learned_router(make_config, select)
    first = [str(a.decide(TASK).target) for _ in range(50)]
    random.seed(99)
    b = learned_router(make_config, select)
    assert [str(b.decide(TASK).target) for _ in range(50)] == first
