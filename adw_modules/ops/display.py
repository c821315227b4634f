"""How operators are shown times and money: local, relative, never a raw epoch or "$0.0000".

Used by every text view (adws), transcripts and the GitHub progress comment; imports nothing
from adw_modules."""

from __future__ import annotations

import datetime as dt
import math

__all__ = ["ago", "clock", "format_usd", "parse_time", "relative"]

TimeLike = dt.datetime | str | float | int | None


def parse_time(value: TimeLike) -> dt.datetime | None:
    """A datetime from a datetime, an ISO string or unix seconds; None for anything else."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if isinstance(value, int | float):
        try:
            return dt.datetime.fromtimestamp(float(value), dt.UTC)
        except (OverflowError, OSError, ValueError):
            return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _span(seconds: float) -> str:
    seconds = abs(seconds)
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def ago(value: TimeLike, now: dt.datetime) -> str:
    """How long ago ("42s", "3 min", "2.5 h"); "-" when unknown."""
    when = parse_time(value)
    return "-" if when is None else _span((now - when).total_seconds())


def clock(value: TimeLike, now: dt.datetime, tz: dt.tzinfo | None = None) -> str:
    """The local wall-clock time, "14:32", with the date when it is not the day of ``now``."""
    when = parse_time(value)
    if when is None:
        return "-"
    local = when.astimezone(tz)
    return f"{local:%H:%M}" if local.date() == now.astimezone(tz).date() else f"{local:%Y-%m-%d %H:%M}"


def relative(value: TimeLike, now: dt.datetime, tz: dt.tzinfo | None = None) -> str:
    """ "in 4 min (14:32)" or "3 min ago (14:24)"; "-" when unknown."""
    when = parse_time(value)
    if when is None:
        return "-"
    shown = clock(when, now, tz)
    seconds = (when - now).total_seconds()
    return f"in {_span(seconds)} ({shown})" if seconds >= 0 else f"{_span(seconds)} ago ({shown})"


def format_usd(amount: float | None) -> str:
    """Money as people read it: cents for dollars, and small amounts with two significant
    digits ("$0.000045", never "$0.0000"); "-" when unknown."""
    if amount is None or amount != amount:
        return "-"
    if amount == 0:
        return "$0.00"
    sign, value = ("-", -amount) if amount < 0 else ("", amount)
    if value >= 1:
        return f"{sign}${value:,.2f}"
    decimals = max(4, 1 - math.floor(math.log10(value)))
    return f"{sign}${value:.{decimals}f}"
