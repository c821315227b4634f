"""``adw models`` views: the curated models (config.toml) and the discovered pool (OpenRouter).

Each price says where it came from: ``config`` (a ``price`` table), ``genai-prices`` (the
maintained library) or ``openrouter-catalog`` (the discovered pool, used when the library
lacks the model).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from adw_modules.catalog.cache import Catalog
from adw_modules.catalog.openrouter import DiscoveredModel
from adw_modules.ops.display import ago, parse_time
from adw_modules.routing.providers import REFERENCE_INPUT, REFERENCE_OUTPUT, ModelInfo

DISCOVERED_SHOWN = 15  # in the combined view; --discovered shows every match


def model_row(m: ModelInfo, available: bool) -> dict[str, Any]:
    return {
        "provider": m.provider,
        "model": m.name,
        "display_name": m.spec.display_name,
        "tier": m.spec.tier,
        "capabilities": list(m.spec.capabilities),
        "context_window": m.spec.context_window,
        "input_per_mtok": None if m.price is None else m.price.input_per_mtok,
        "output_per_mtok": None if m.price is None else m.price.output_per_mtok,
        "cost_per_1k_input": m.cost_per_1k_input,
        "cost_3k_in_1k_out": m.estimated_cost(),
        "price_source": None if m.price is None else m.price.source,
        "available": available,
    }


def discovered_row(m: DiscoveredModel) -> dict[str, Any]:
    priced = m.input_per_mtok is not None and m.output_per_mtok is not None
    cost = None
    if priced:
        assert m.input_per_mtok is not None and m.output_per_mtok is not None
        cost = round((REFERENCE_INPUT * m.input_per_mtok + REFERENCE_OUTPUT * m.output_per_mtok) / 1_000_000, 6)
    return {
        **m.to_dict(),
        "capabilities": list(m.capabilities),
        "cost_per_1k_input": None if m.input_per_mtok is None else m.input_per_mtok / 1000,
        "cost_3k_in_1k_out": cost,
        "price_source": "openrouter-catalog" if priced else None,
    }


def _money(value: float | None) -> str:
    return "?" if value is None else f"{value:.5f}"


def _ctx(value: int | None) -> str:
    return "" if value is None else f"{value:,}"


def curated_text(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "Curated models (config.toml): none match."
    header = (
        f"{'provider/model':<44} {'tier':<9} {'$/1K in':>9} {'$/3K+1K':>9}  {'ctx':>9}  {'price from':<19} capabilities"
    )
    lines = [
        "Curated models (config.toml), cost for 3K input + 1K output tokens, cheapest first:",
        "",
        header,
        "-" * len(header),
    ]
    for r in rows:
        name = f"{r['provider']}/{r['model']}" + ("" if r["available"] else " ✗")
        lines.append(
            f"{name:<44} {r['tier'] or '-':<9} {_money(r['cost_per_1k_input']):>9} "
            f"{_money(r['cost_3k_in_1k_out']):>9}  {_ctx(r['context_window']):>9}  "
            f"{r['price_source'] or '-':<19} {', '.join(r['capabilities'])}"
        )
    lines += ["", "✗ = provider unavailable now (see `adw providers`); ? = no known price"]
    return "\n".join(lines)


def catalog_line(summary: dict[str, Any], now: dt.datetime) -> str:
    """Where the pool came from, when, and how many."""
    if summary.get("problem"):
        return f"Discovered pool: {summary['problem']}"
    if summary.get("fetched_at") is None:
        return "Discovered pool: not fetched yet (run: adw models discover --refresh)"
    when = parse_time(summary["fetched_at"])
    assert when is not None
    refreshed = f"refreshed {ago(when, now)} ago ({when.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC)"
    parts = [f"{summary['count']} models from {summary['source']}", refreshed]
    skipped = sum(summary.get("skipped", {}).values())
    if skipped:
        parts.append(f"{skipped} {'entry' if skipped == 1 else 'entries'} skipped")
    if summary.get("unknown_prices"):
        parts.append(f"{summary['unknown_prices']} without a usable price")
    return "Discovered pool: " + "; ".join(parts)


def discovered_text(
    summary: dict[str, Any],
    rows: list[dict[str, Any]],
    now: dt.datetime,
    limit: int | None,
) -> str:
    lines = [catalog_line(summary, now)]
    if summary.get("fetched_at") is None:
        return "\n".join(lines)
    if not rows:
        return "\n".join([*lines, "", "No discovered model matches."])
    shown = rows if limit is None else rows[:limit]
    header = f"{'model':<44} {'$/1K in':>9} {'$/3K+1K':>9}  {'ctx':>9}  {'max out':>8}  features"
    lines += ["", header, "-" * len(header)]
    for r in shown:
        features = [c for c in r["capabilities"] if c in ("tools", "reasoning", "vision")]
        lines.append(
            f"{r['id']:<44} {_money(r['cost_per_1k_input']):>9} {_money(r['cost_3k_in_1k_out']):>9}  "
            f"{_ctx(r['context_length']):>9}  {_ctx(r['max_completion_tokens']):>8}  {', '.join(features)}"
        )
    if len(rows) > len(shown):
        lines.append(f"… {len(rows) - len(shown)} more (adw models --discovered lists every match)")
    lines += ["", "Promote one into config.toml: adw models promote ID [--provider P] [--tier T] [--capability C]"]
    return "\n".join(lines)


def discover_text(summary: dict[str, Any], now: dt.datetime, refreshed: bool, error: str | None) -> str:
    """What ``adw models discover`` says: the refresh's result, then the pool as cached."""
    lines = []
    if error is not None:
        lines.append(f"✗ refresh failed: {error}")
        lines.append("  the cache was not changed")
    elif refreshed:
        lines.append("✓ refreshed")
    lines.append(catalog_line(summary, now))
    for reason, n in sorted(summary.get("skipped", {}).items()):
        lines.append(f"  skipped {n}: {reason}")
    return "\n".join(lines)


def catalog_rows(catalog: Catalog, matches: list[DiscoveredModel]) -> dict[str, Any]:
    return {"catalog": catalog.summary(), "models": [discovered_row(m) for m in matches]}
