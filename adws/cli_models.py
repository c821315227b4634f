"""``adw models`` (curated and discovered models), ``adw models discover`` and ``adw models promote``.

Only the config, the registry and the catalog cache are imported; ``discover --refresh`` is the
one network call (``[catalog] openrouter_url``).
"""

from __future__ import annotations

import datetime as dt
import sys
from typing import Any

import click

from adw_modules.catalog import cache as catalog_cache
from adw_modules.catalog.openrouter import CatalogError
from adw_modules.config.schema import TIERS, ConfigError
from adw_modules.routing.providers import ProviderRegistry
from adws import catalog_views
from adws.cli import config_error_exit, context_for, emit, read_options


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@click.group("models", invoke_without_command=True)
@click.option("--capability", default=None, help="e.g. code (curated), tools / reasoning / vision (discovered).")
@click.option("--tier", type=click.Choice(TIERS), default=None, help="Curated models only.")
@click.option("--max-cost", type=float, default=None, help="USD per 1K input tokens.")
@click.option("--min-context", type=click.IntRange(min=1), default=None, help="At least this many tokens.")
@click.option("--text", default=None, help="In the id, name or description (case-insensitive).")
@click.option("--provider", default=None, help="Curated models of this provider only.")
@click.option("--available", "available_only", is_flag=True, help="Only providers usable now.")
@click.option("--discovered", "discovered_only", is_flag=True, help="Only the discovered pool, every match.")
@read_options
@click.pass_context
def models_group(
    ctx: click.Context,
    capability: str | None,
    tier: str | None,
    max_cost: float | None,
    min_context: int | None,
    text: str | None,
    provider: str | None,
    available_only: bool,
    discovered_only: bool,
    config_path: str | None,
    as_json: bool,
) -> None:
    """Curated models and the discovered pool, by capability / tier / cost, cheapest first (seed 004)."""
    if ctx.invoked_subcommand is not None:
        return
    config = context_for(config_path).config()
    if provider is not None and provider not in config.providers:
        raise click.BadParameter(
            f"{provider!r} is not defined (defined: {', '.join(config.providers)})", param_hint="--provider"
        )
    data: dict[str, Any] = {}
    parts = []
    if not discovered_only:
        registry = ProviderRegistry(config)
        models = registry.list_models(
            capability=capability,
            tier=tier,
            max_cost=max_cost,
            provider=provider,
            min_context=min_context,
            available_only=available_only,
            include_disabled=True,
        )
        if text:
            needle = text.casefold()
            models = [m for m in models if needle in m.name.casefold() or needle in m.display_name.casefold()]
        rows = [catalog_views.model_row(m, registry.availability(m.provider).available) for m in models]
        data["models"] = rows
        parts.append(catalog_views.curated_text(rows))
    catalog = catalog_cache.load(config.catalog)
    # Tiers and providers are the config's: a discovered model has neither until promoted.
    matches = [] if tier or provider else catalog.search(capability, min_context, max_cost, text)
    discovered = data["discovered"] = catalog_views.catalog_rows(catalog, matches)
    limit = None if discovered_only else catalog_views.DISCOVERED_SHOWN
    parts.append(catalog_views.discovered_text(discovered["catalog"], discovered["models"], _now(), limit))
    emit(as_json, data, lambda _: "\n\n".join(parts))


@models_group.command("discover")
@click.option("--refresh", is_flag=True, help="Fetch the list now (else: the cache as it is).")
@read_options
def discover_cmd(refresh: bool, config_path: str | None, as_json: bool) -> None:
    """The discovered pool: OpenRouter's public models list, cached with its refresh time and count."""
    config = context_for(config_path).config()
    error = None
    if refresh:
        try:
            catalog_cache.refresh(config.catalog, now=_now)
        except CatalogError as exc:
            error = str(exc)
    summary = catalog_cache.load(config.catalog).summary()
    data = {"refreshed": refresh and error is None, "error": error, "catalog": summary}
    emit(as_json, data, lambda d: catalog_views.discover_text(d["catalog"], _now(), d["refreshed"], d["error"]))
    if error is not None:
        sys.exit(1)


@models_group.command("promote")
@click.argument("model_id")
@click.option("--provider", default="openrouter", show_default=True, help="The provider that will run it.")
@click.option("--tier", type=click.Choice(TIERS), default=None)
@click.option(
    "--capability",
    "capabilities",
    multiple=True,
    help="Repeatable.  Default: what the pool says (tools, reasoning, vision).",
)
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None)
def promote_cmd(
    model_id: str, provider: str, tier: str | None, capabilities: tuple[str, ...], config_path: str | None
) -> None:
    """Write a discovered model into config.toml under a provider (comments and layout kept)."""
    from adw_modules.config import edit as config_edit

    context = context_for(config_path)
    config = context.config()
    model = catalog_cache.load(config.catalog).get(model_id)
    if model is None:
        click.echo(
            f"error: {model_id!r} is not in the discovered pool (adw models discover --refresh; "
            "adw models --discovered --text WORD)",
            err=True,
        )
        sys.exit(1)
    derived = [c for c in model.capabilities if c in ("tools", "reasoning", "vision")]
    try:
        config_edit.add_model(
            context.config_path,
            provider,
            model.id,
            display_name=model.name,
            tier=tier,
            capabilities=list(capabilities) or derived,
            context_window=model.context_length,
        )
    except ConfigError as exc:
        click.echo(f"{context.config_path}: not changed", err=True)
        config_error_exit(exc)
    click.echo(f"{context.config_path}: added providers.{provider}.models.{model.id!r}")
