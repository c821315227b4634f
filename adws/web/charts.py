"""Stacked bar charts as inline SVG, drawn on the server (no script, no CDN, works offline).

Every text in a chart (a label name comes from an issue) is escaped with ``markupsafe``;
the chart is returned as ``Markup`` so the template inserts it as is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from markupsafe import Markup, escape

WIDTH, HEIGHT = 760, 220
LEFT, RIGHT, TOP, BOTTOM = 56, 150, 12, 40
PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f")
OTHER = "#bab0ac"
MAX_SERIES = len(PALETTE)


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    magnitude = 10 ** len(str(int(value))) / 10 if value >= 1 else 1.0
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10 * magnitude


def _money(v: float) -> str:
    return f"${v:,.2f}" if v >= 0.01 or v == 0 else f"${v:.4f}"


def stacked_bars(
    buckets: Sequence[str],
    rows: Sequence[Mapping[str, Any]],
    *,
    metric: str = "cost_usd",
    caps: Mapping[str, float] | None = None,
    title: str = "",
    label_every: int = 1,
) -> Markup:
    """One bar per bucket, stacked by ``key``; a dashed line per cap (the budget line)."""
    totals: dict[str, float] = {}
    for r in rows:
        totals[r["key"]] = totals.get(r["key"], 0.0) + float(r[metric])
    keys = sorted(totals, key=lambda k: -totals[k])
    shown, rest = keys[: MAX_SERIES - 1], keys[MAX_SERIES - 1 :]
    colour = {k: PALETTE[i] for i, k in enumerate(shown)}
    grid: dict[str, dict[str, float]] = {b: {} for b in buckets}
    for r in rows:
        if r["bucket"] in grid:
            key = r["key"] if r["key"] in colour else "other"
            grid[r["bucket"]][key] = grid[r["bucket"]].get(key, 0.0) + float(r[metric])
    peak = max([sum(v.values()) for v in grid.values()] + list((caps or {}).values()) + [0.0])
    top = _nice_max(peak)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    bar_w = plot_w / max(1, len(buckets))
    fmt = _money if metric == "cost_usd" else (lambda v: f"{v:,.0f}")

    def y(v: float) -> float:
        return TOP + plot_h - (v / top) * plot_h

    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>'
    ]
    for i in range(5):
        v = top * i / 4
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y(v):.1f}" y2="{y(v):.1f}"/>')
        parts.append(f'<text class="axis" x="{LEFT - 4}" y="{y(v) + 4:.1f}" text-anchor="end">{escape(fmt(v))}</text>')
    for i, bucket in enumerate(buckets):
        x, base = LEFT + i * bar_w, 0.0
        for key in [*shown, "other"]:
            v = grid[bucket].get(key, 0.0)
            if v <= 0:
                continue
            fill = colour.get(key, OTHER)
            parts.append(
                f'<rect x="{x + 1:.1f}" y="{y(base + v):.1f}" width="{max(1.0, bar_w - 2):.1f}" '
                f'height="{y(base) - y(base + v):.1f}" fill="{fill}"><title>{escape(bucket)} {escape(key)}: '
                f"{escape(fmt(v))}</title></rect>"
            )
            base += v
        if i % label_every == 0:
            parts.append(
                f'<text class="axis" x="{x + bar_w / 2:.1f}" y="{HEIGHT - BOTTOM + 14}" text-anchor="middle">'
                f"{escape(bucket[5:] if len(bucket) == 10 else bucket[11:13] + 'h')}</text>"
            )
    for name, cap in sorted((caps or {}).items()):
        parts.append(
            f'<line class="budget" x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y(cap):.1f}" y2="{y(cap):.1f}"/>'
            f'<text class="budget-label" x="{LEFT + plot_w - 2}" y="{y(cap) - 3:.1f}" text-anchor="end">'
            f"cap {escape(name)} {escape(fmt(cap))}</text>"
        )
    legend = [*shown, *(["other"] if rest else [])]
    for i, key in enumerate(legend):
        ly = TOP + 14 * i + 8
        parts.append(
            f'<rect x="{LEFT + plot_w + 10}" y="{ly - 8}" width="10" height="10" fill="{colour.get(key, OTHER)}"/>'
            f'<text class="legend" x="{LEFT + plot_w + 24}" y="{ly + 1}">{escape(key[:22])}</text>'
        )
    if not rows:
        parts.append(
            f'<text class="empty" x="{LEFT + plot_w / 2}" y="{TOP + plot_h / 2}" text-anchor="middle">no spend</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def table_rows(buckets: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The chart's numbers as a table: one row per (bucket, key) that has any, newest first."""
    order = {b: i for i, b in enumerate(buckets)}
    return sorted((dict(r) for r in rows if r["bucket"] in order), key=lambda r: (-order[r["bucket"]], r["key"]))
