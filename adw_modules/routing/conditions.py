"""The condition registry: every condition a routing rule may test, each defined once.

A condition is one ``Condition`` in ``CONDITIONS``: its key in ``conditions = { ... }``, how
its value is parsed from the TOML (reporting problems through a callback), whether it holds
for a task, and how a mismatch is explained in the decision trace.  Config validation and
the router both loop this registry, so adding a condition means adding one entry here, e.g.::

    Condition(
        "title_words",
        parser=_names(),
        holds=lambda words, task, hour, weekday: not words.isdisjoint(task.title_words),
        explain=lambda words, task, hour, weekday, tz: f"no title word in {_list(words)}",
    ),

That is all for a condition on an attribute tasks already have; a new attribute is also
added to ``TaskView`` here, ``router.TaskAttrs`` and ``config.routing.SCENARIO_ATTRS``.
Registry order is the order conditions are parsed and checked in: the first one that fails
is the one a trace reports.

A condition may read the rule's other conditions through ``bind``: ``weekdays`` does.  A
window that wraps past midnight belongs to the day it starts, so with ``hour_range = [22, 6]``
and ``weekdays = ["fri"]`` the rule holds from Friday 22:00 to Saturday 05:59 (and not on
Friday 02:00, which is Thursday night's window): in the after-midnight part of a wrapping
``hour_range`` the weekday tested is the day before.

This module imports nothing from ``adw_modules.config``: config parses with it.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

PRIORITIES = ("critical", "high", "normal", "low")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
COMPARISON_OPS = ("gte", "gt", "lte", "lt", "eq", "ne")

_OPS: dict[str, Callable[[float, float], bool]] = {
    "gte": lambda v, b: v >= b,
    "gt": lambda v, b: v > b,
    "lte": lambda v, b: v <= b,
    "lt": lambda v, b: v < b,
    "eq": lambda v, b: v == b,
    "ne": lambda v, b: v != b,
}

Report = Callable[[str], None]
"""Called with each problem found in a condition's value (the caller adds file, line, table)."""


class TaskView(Protocol):
    """The task attributes a condition may read (``router.TaskAttrs`` is one)."""

    @property
    def priority(self) -> str: ...
    @property
    def labels(self) -> frozenset[str]: ...
    @property
    def retry_count(self) -> int: ...
    @property
    def repo(self) -> str | None: ...
    @property
    def source(self) -> str | None: ...
    @property
    def prompt_tokens(self) -> int | None: ...


def type_name(value: object) -> str:
    """A TOML value's type as a message names it ("an integer", "a table", ...).

    Defined here, the leaf both share, because condition parsing needs it and may not
    import config; ``config.validation`` exports it to the config sections.
    """
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__


@dataclass(frozen=True)
class Comparison:
    """Numeric test such as ``{ gte = 1, lt = 3 }``; every operator must hold."""

    ops: tuple[tuple[str, float], ...]

    def matches(self, value: float) -> bool:
        for op, bound in self.ops:
            if not _OPS[op](value, bound):
                return False
        return True

    def describe(self) -> str:
        return ", ".join(f"{op} {_fmt_num(bound)}" for op, bound in self.ops)


def _fmt_num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def hour_in_range(hour: int, start: int, end: int) -> bool:
    """[start, end) on a 24-hour clock; start > end wraps past midnight ([22, 6] = 22:00-05:59)."""
    if start < end:
        return start <= hour < end
    return hour >= start or hour < end


def day_before(weekday: str) -> str:
    return WEEKDAYS[(WEEKDAYS.index(weekday) - 1) % len(WEEKDAYS)]


@dataclass(frozen=True)
class WeekdayWindow:
    """``weekdays`` as a rule tests them: ``after_midnight_end`` is the end hour of the rule's
    ``hour_range`` when it wraps past midnight (else None); before that hour the day tested is
    the one the window started on, the day before."""

    days: frozenset[str]
    after_midnight_end: int | None = None

    def window_day(self, hour: int, weekday: str) -> str:
        if self.after_midnight_end is not None and hour < self.after_midnight_end:
            return day_before(weekday)
        return weekday

    def holds(self, hour: int, weekday: str) -> bool:
        return self.window_day(hour, weekday) in self.days

    def explain(self, hour: int, weekday: str) -> str:
        day = self.window_day(hour, weekday)
        if day == weekday:
            return f"weekday {weekday} not in {_list(self.days)}"
        return (
            f"weekday {weekday} {hour:02d}:00 is in the window that started on {day}: {day} not in {_list(self.days)}"
        )


def _weekdays_in_window(days: frozenset[str], others: Mapping[str, Any]) -> WeekdayWindow:
    hours: tuple[int, int] | None = others.get("hour_range")
    if hours is None or hours[0] < hours[1]:
        return WeekdayWindow(days)
    return WeekdayWindow(days, hours[1])


def repo_matches(patterns: Iterable[str], repo: str | None) -> bool:
    return repo is not None and any(fnmatch.fnmatchcase(repo, p) for p in patterns)


def _list(values: Iterable[str]) -> str:
    return "[" + ", ".join(sorted(values)) + "]"


# ---------------------------------------------------------------- parsers
# Each takes (key, raw value, report) and returns the parsed value, or None when unusable.

Parser = Callable[[str, Any, Report], Any]


def _strings(key: str, value: Any, report: Report) -> list[str] | None:
    """A string or an array of strings, as a list."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        report(f"{key} must be a string or an array of strings")
        return None
    return list(value)


def _names(allowed: tuple[str, ...] | None = None) -> Parser:
    """A non-empty set of names, each one of ``allowed`` when given."""

    def parse(key: str, value: Any, report: Report) -> frozenset[str] | None:
        values = _strings(key, value, report)
        if values is None:
            return None
        if not values:
            report(f"{key} must not be empty (it would never match)")
        if allowed is not None:
            for v in values:
                if v not in allowed:
                    report(f'{key} "{v}" is unknown (known: {", ".join(allowed)})')
        return frozenset(values)

    return parse


def _patterns(key: str, value: Any, report: Report) -> tuple[str, ...] | None:
    values = _strings(key, value, report)
    return tuple(values) if values is not None else None


def _comparison(key: str, value: Any, report: Report) -> Comparison | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return Comparison((("eq", float(value)),))
    if not isinstance(value, dict) or not value:
        report(
            f"{key} must be an integer or a table of comparisons like {{ gte = 1 }} "
            f"(operators: {', '.join(COMPARISON_OPS)})"
        )
        return None
    ops: list[tuple[str, float]] = []
    for op, bound in value.items():
        if op not in COMPARISON_OPS:
            hint = difflib.get_close_matches(op, COMPARISON_OPS, n=1)
            extra = f' (did you mean "{hint[0]}"?)' if hint else f" (operators: {', '.join(COMPARISON_OPS)})"
            report(f'{key}: unknown operator "{op}"{extra}')
            continue
        if isinstance(bound, bool) or not isinstance(bound, int | float):
            report(f"{key}.{op} must be a number, not {type_name(bound)}")
            continue
        ops.append((op, float(bound)))
    return Comparison(tuple(ops)) if ops else None


def _hour_range(key: str, value: Any, report: Report) -> tuple[int, int] | None:
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        report(f"{key} must be [start, end] with whole hours, e.g. [22, 6]")
        return None
    start, end = value
    if not (0 <= start <= 23 and 0 <= end <= 24):
        report(f"{key} [{start}, {end}]: start must be 0-23 and end 0-24")
        return None
    if start == end:
        report(f"{key} [{start}, {end}] is empty; use [0, 24] for the whole day")
        return None
    return (start, end)


# ---------------------------------------------------------------- the registry


@dataclass(frozen=True)
class Condition:
    key: str
    parser: Parser
    holds: Callable[[Any, TaskView, int, str], bool]
    """(parsed value, task, local hour, local weekday) -> whether the condition holds."""
    explain: Callable[[Any, TaskView, int, str, str], str]
    """(parsed value, task, hour, weekday, time zone) -> why it does not hold, for the trace."""
    bind: Callable[[Any, Mapping[str, Any]], Any] | None = None
    """(parsed value, the rule's parsed values) -> the value ``holds``/``explain`` get, for a
    condition whose meaning depends on the rule's other conditions; None: the parsed value."""

    def bound(self, value: Any, values: Mapping[str, Any]) -> Any:
        return value if self.bind is None else self.bind(value, values)

    def parse(self, value: Any, report: Report) -> Any:
        """The parsed value of ``value`` as written, or None (each problem passed to ``report``)."""
        return self.parser(self.key, value, report)


def _tokens_fail(want: Comparison, task: TaskView) -> str:
    if task.prompt_tokens is None:
        return "prompt_tokens unknown"
    return f"prompt_tokens {task.prompt_tokens} fails {want.describe()}"


CONDITIONS: tuple[Condition, ...] = (
    Condition(
        "priority",
        _names(PRIORITIES),
        holds=lambda want, task, hour, weekday: task.priority in want,
        explain=lambda want, task, hour, weekday, tz: f"priority is {task.priority}, rule wants {_list(want)}",
    ),
    Condition(
        "labels",  # any of
        _names(),
        holds=lambda want, task, hour, weekday: not want.isdisjoint(task.labels),
        explain=lambda want, task, hour, weekday, tz: f"no label in {_list(want)}",
    ),
    Condition(
        "labels_all",
        _names(),
        holds=lambda want, task, hour, weekday: want <= task.labels,
        explain=lambda want, task, hour, weekday, tz: f"missing label(s) {_list(want - task.labels)}",
    ),
    Condition(
        "not_labels",
        _names(),
        holds=lambda want, task, hour, weekday: want.isdisjoint(task.labels),
        explain=lambda want, task, hour, weekday, tz: f"has excluded label(s) {_list(task.labels & want)}",
    ),
    Condition(
        "retry_count",
        _comparison,
        holds=lambda want, task, hour, weekday: want.matches(task.retry_count),
        explain=lambda want, task, hour, weekday, tz: f"retry_count {task.retry_count} fails {want.describe()}",
    ),
    Condition(
        "hour_range",  # [start, end), wraps past midnight
        _hour_range,
        holds=lambda want, task, hour, weekday: hour_in_range(hour, *want),
        explain=lambda want, task, hour, weekday, tz: f"hour {hour} outside [{want[0]}, {want[1]}) {tz}",
    ),
    Condition(
        "weekdays",  # of the window's start when hour_range wraps past midnight
        _names(WEEKDAYS),
        holds=lambda want, task, hour, weekday: want.holds(hour, weekday),
        explain=lambda want, task, hour, weekday, tz: want.explain(hour, weekday),
        bind=_weekdays_in_window,
    ),
    Condition(
        "repo",  # glob patterns, e.g. "acme/*"
        _patterns,
        holds=lambda want, task, hour, weekday: repo_matches(want, task.repo),
        explain=lambda want, task, hour, weekday, tz: f"repo {task.repo or '(none)'} not in {_list(want)}",
    ),
    Condition(
        "source",
        _names(),
        holds=lambda want, task, hour, weekday: task.source in want,
        explain=lambda want, task, hour, weekday, tz: f"source {task.source or '(none)'} not in {_list(want)}",
    ),
    Condition(
        "prompt_tokens",
        _comparison,
        holds=lambda want, task, hour, weekday: task.prompt_tokens is not None and want.matches(task.prompt_tokens),
        explain=lambda want, task, hour, weekday, tz: _tokens_fail(want, task),
    ),
)
CONDITIONS_BY_KEY: Mapping[str, Condition] = {c.key: c for c in CONDITIONS}
CONDITION_KEYS = tuple(CONDITIONS_BY_KEY)


def parse_conditions(raw: Mapping[str, Any], report: Report) -> Conditions:
    """Every condition of a rule's ``conditions`` table, in registry order; unknown keys reported."""
    for key in raw:
        if key not in CONDITIONS_BY_KEY:
            hint = difflib.get_close_matches(key, CONDITION_KEYS, n=1)
            extra = f' (did you mean "{hint[0]}"?)' if hint else f" (known: {', '.join(CONDITION_KEYS)})"
            report(f'unknown condition "{key}"{extra}')
    values = {}
    for condition in CONDITIONS:
        if condition.key in raw:
            parsed = condition.parse(raw[condition.key], report)
            if parsed is not None:
                values[condition.key] = parsed
    return Conditions(values, raw=dict(raw))


Check = tuple[str, Callable[[Any, TaskView, int, str], bool], Any]


@dataclass(frozen=True)
class Conditions:
    """A rule's parsed conditions (all must hold).  ``conditions.labels`` etc. read one by key
    (None when the rule does not set it); ``raw`` is the table as written, for display."""

    values: Mapping[str, Any] = field(default_factory=dict)  # key -> parsed value, only those set
    raw: Mapping[str, Any] = field(default_factory=dict)
    # (key, holds, value) of each set condition in registry order: the router's hot loop.
    checks: tuple[Check, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        checks = tuple(
            (c.key, c.holds, c.bound(self.values[c.key], self.values))
            for c in CONDITIONS
            if self.values.get(c.key) is not None
        )
        object.__setattr__(self, "checks", checks)

    def __getattr__(self, key: str) -> Any:
        # Only reached for names that are not fields: a condition key reads its parsed value.
        if key in CONDITIONS_BY_KEY:
            return self.values.get(key)
        raise AttributeError(f"{type(self).__name__!r} has no attribute {key!r}")

    def explain(self, key: str, task: TaskView, hour: int, weekday: str, tz: str) -> str:
        """Why condition ``key`` does not hold for ``task`` (as the decision trace shows it)."""
        value = self.values.get(key)
        if value is None:
            return f"{key} does not hold"
        condition = CONDITIONS_BY_KEY[key]
        return condition.explain(condition.bound(value, self.values), task, hour, weekday, tz)
