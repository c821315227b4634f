"""``adw stats``: success rates with 95% intervals, cost per success, durations, failover and
retry rates, from the attempts the store keeps (``adw_modules.ops.stats``)."""

from __future__ import annotations

import datetime as dt
import unicodedata
from typing import Any

import click

from adw_modules.ops.display import format_usd
from adws.cli import emit, read_options


@click.command("stats")
@click.option(
    "--by",
    type=click.Choice(["target", "model", "rule", "label", "repo"]),
    default="target",
    show_default=True,
)
@click.option("--days", type=click.IntRange(min=1, max=36_500), default=30, show_default=True, help="The last N days.")
@read_options
def stats_cmd(by: str, days: int, config_path: str | None, as_json: bool) -> None:
    """Success rate (95% interval), cost per success, durations, failovers and retries, grouped."""
    from adw_modules.ops.stats import stats_data
    from adws.cli_queue import _store

    store, config = _store(config_path)
    try:
        data = stats_data(store, by, days, config.learning.success, dt.datetime.now(dt.UTC))
    finally:
        store.close()
    emit(as_json, data, stats_text)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f}%"


def _secs(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 120:
        return f"{value:.0f}s"
    return f"{value / 60:.1f}m"


KEY_WIDTH = 48  # a longer label, rule or repo is cut (…): the table stays readable


def shown_key(key: object) -> str:
    """A group's key as the table shows it: control and format characters (escape sequences,
    newlines, bidi overrides, zero-width marks: labels and repo names come from outside) as
    visible escapes, cut to ``KEY_WIDTH`` characters."""
    text = "".join(
        (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}") if unicodedata.category(c)[0] == "C" else c
        for c in str(key)
    )
    return text if len(text) <= KEY_WIDTH else text[: KEY_WIDTH - 1] + "…"


def _cells(text: str) -> int:
    """Terminal columns: wide (CJK) characters take two."""
    return sum(2 if unicodedata.east_asian_width(c) in ("W", "F") else 1 for c in text)


def stats_text(d: dict[str, Any]) -> str:
    groups = d["groups"]
    if not groups:
        return f"No finished attempts in the last {d['days']} days."
    keys = [shown_key(g["key"]) for g in groups]
    width = max(len(d["by"]), *(_cells(k) for k in keys))
    head = (
        f"{d['by']:<{width}} {'attempts':>8} {'counted':>7} {'success':>7} {'95% interval':>12} "
        f"{'cost/success':>12} {'median':>7} {'p90':>7} {'failover':>8} {'retry':>6} {'follow-up':>9}"
    )
    lines = [head, "-" * len(head)]
    for g, key in zip(groups, keys, strict=True):
        low, high = g["interval"]
        interval = "-" if not g["counted"] else f"{low * 100:.0f}-{high * 100:.0f}%"
        per_success = "-" if g["cost_per_success"] is None else format_usd(g["cost_per_success"])
        lines.append(
            f"{key}{' ' * (width - _cells(key))} {g['attempts']:>8} {g['counted']:>7} {_pct(g['success_rate']):>7} "
            f"{interval:>12} {per_success:>12} {_secs(g['median_s']):>7} {_secs(g['p90_s']):>7} "
            f"{_pct(g['failover_rate']):>8} {_pct(g['retry_rate']):>6} {_pct(g['follow_up_rate']):>9}"
        )
    lines.append(
        f'success = "{d["success"]}" ([learning] success), last {d["days"]} days; counted: attempts whose success '
        "is decided (not a provider fault, a cancellation or an undecided pull request)"
    )
    if d["by"] == "label":
        lines.append("(an attempt counts under each label of its task: rows overlap)")
    return "\n".join(lines)


def stored_scores(config: Any) -> dict[str, float | None] | None:
    """Each provider's score from the store, if there is a store to read (``adw providers`` must
    not create or migrate one); None when there is none or it cannot be read."""
    from adw_modules.ops.stats import provider_scores
    from adws.stores import open_existing_store

    store, _ = open_existing_store(config)
    if store is None:
        return None
    try:
        scores: dict[str, float | None] = provider_scores(store, config)
    except Exception:  # the providers view stands without scores
        return None
    finally:
        store.close()
    return scores
