"""``weekdays`` with an ``hour_range`` that wraps past midnight: the window belongs to the day it starts."""

from __future__ import annotations

import datetime as dt
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from adw_modules.config.schema import load_config
from adw_modules.routing.conditions import WEEKDAYS, Conditions, parse_conditions
from adw_modules.routing.router import ModelRouter, TaskAttrs

MONDAY = dt.datetime(2026, 1, 5)  # a Monday, local time
WEEK_HOURS = [MONDAY + dt.timedelta(hours=h) for h in range(7 * 24)]


def conditions(raw: dict[str, Any]) -> Conditions:
    problems: list[str] = []
    parsed = parse_conditions(raw, problems.append)
    assert problems == []
    return parsed


def holds(c: Conditions, when: dt.datetime) -> bool:
    task = TaskAttrs()
    weekday = WEEKDAYS[when.weekday()]
    return all(check(value, task, when.hour, weekday) for _key, check, value in c.checks)


def window_starts_on(when: dt.datetime, start: int, end: int, days: set[str]) -> bool:
    """The reference: ``when`` lies in a window [start, end) that opened on one of ``days``."""
    length = (end - start) if start < end else (24 - start + end)
    for days_back in (0, 1):
        opened = (when - dt.timedelta(days=days_back)).replace(hour=start)
        if opened <= when < opened + dt.timedelta(hours=length) and WEEKDAYS[opened.weekday()] in days:
            return True
    return False


@given(
    st.integers(0, 23),
    st.integers(0, 24),
    st.sets(st.sampled_from(WEEKDAYS), min_size=1),
)
def test_a_window_belongs_to_the_day_it_starts(start: int, end: int, days: set[str]) -> None:
    if start == end:
        return
    c = conditions({"hour_range": [start, end], "weekdays": sorted(days)})
    for when in WEEK_HOURS:  # every hour of every weekday
        assert holds(c, when) == window_starts_on(when, start, end, days), (when, start, end, days)


@given(st.sets(st.sampled_from(WEEKDAYS), min_size=1))
def test_weekdays_alone_test_the_calendar_day(days: set[str]) -> None:
    c = conditions({"weekdays": sorted(days)})
    for when in WEEK_HOURS:
        assert holds(c, when) == (WEEKDAYS[when.weekday()] in days)


NIGHT = """
[[routing.rules]]
name = "friday-night"
priority = 10
conditions = { hour_range = [22, 6], weekdays = ["fri"] }
model = "a-big"
"""


def test_friday_night_rule_runs_until_saturday_morning(make_config) -> None:
    router = ModelRouter(load_config(make_config(NIGHT, base=True)))
    saturday_2am = dt.datetime(2026, 1, 10, 2, 0, tzinfo=dt.UTC)
    friday_2am = dt.datetime(2026, 1, 9, 2, 0, tzinfo=dt.UTC)
    friday_11pm = dt.datetime(2026, 1, 9, 23, 0, tzinfo=dt.UTC)
    assert router.decide({}, now=saturday_2am).rule == "friday-night"
    assert router.decide({}, now=friday_11pm).rule == "friday-night"
    miss = router.decide({}, now=friday_2am)  # Thursday night's window
    assert miss.rule is None
    (why,) = [c.reason for c in miss.trace if c.rule == "friday-night"]
    assert "window that started on thu" in why and "not in [fri]" in why, why
