"""``adw routing`` (rules, scenarios, enable/disable), ``adw route`` (one decision) and ``adw models``.

Only the config and the router are imported: ``adw route`` is typed all day.
"""

from __future__ import annotations

import click

from adw_modules.config.schema import TIERS, ConfigError
from adw_modules.routing.conditions import PRIORITIES, WEEKDAYS
from adw_modules.routing.providers import ProviderRegistry
from adw_modules.routing.router import ModelRouter, TaskAttrs
from adws import views
from adws.cli import config_error_exit, context_for, emit, read_options


@click.group("routing", invoke_without_command=True)
@read_options
@click.pass_context
def routing_cmd(ctx: click.Context, config_path: str | None, as_json: bool) -> None:
    """Rules in priority order and the scenario decision tests (= tools/show-routing.py)."""
    if ctx.invoked_subcommand is not None:
        return
    config = context_for(config_path).config()
    emit(as_json, views.routing_data(config, ModelRouter(config)), views.routing_text)


def _set_routing(config_path: str | None, enabled: bool) -> None:
    from adw_modules.config import edit as config_edit

    path = context_for(config_path).config_path
    try:
        config_edit.set_routing_enabled(path, enabled)
    except ConfigError as exc:
        config_error_exit(exc)
    click.echo(f"{path}: routing {'enabled' if enabled else 'disabled'}")


@routing_cmd.command("enable")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None)
def routing_enable(config_path: str | None) -> None:
    """Set [routing] enabled = true (comments and layout kept)."""
    _set_routing(config_path, True)


@routing_cmd.command("disable")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None)
def routing_disable(config_path: str | None) -> None:
    """Set [routing] enabled = false: every task goes to the defaults."""
    _set_routing(config_path, False)


@click.command("route")
@click.option("--priority", type=click.Choice(PRIORITIES), default="normal", show_default=True)
@click.option("--label", "labels", multiple=True, help="Repeatable.")
@click.option("--retry-count", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--hour", type=click.IntRange(0, 23), default=None, help="Default: now, in [routing] timezone.")
@click.option("--weekday", type=click.Choice(WEEKDAYS), default=None)
@click.option("--repo", default=None, help="owner/name")
@click.option("--source", default=None, help="github, local, ...")
@click.option("--prompt-tokens", type=click.IntRange(min=0), default=None)
@click.option("--ignore-availability", is_flag=True, help="Route as if every provider were usable.")
@read_options
def route_cmd(
    priority: str,
    labels: tuple[str, ...],
    retry_count: int,
    hour: int | None,
    weekday: str | None,
    repo: str | None,
    source: str | None,
    prompt_tokens: int | None,
    ignore_availability: bool,
    config_path: str | None,
    as_json: bool,
) -> None:
    """One routing decision, with its explanation."""
    config = context_for(config_path).config()
    router = ModelRouter(config)
    attrs = TaskAttrs(
        priority=priority,
        labels=frozenset(labels),
        retry_count=retry_count,
        repo=repo,
        source=source,
        prompt_tokens=prompt_tokens,
        hour=hour,
        weekday=weekday,
    )
    decision = views.decide(router, attrs, ignore_availability)
    emit(as_json, decision.to_dict(), lambda _: views.decision_text(attrs, decision))


@click.command("models")
@click.option("--capability", default=None)
@click.option("--tier", type=click.Choice(TIERS), default=None)
@click.option("--max-cost", type=float, default=None, help="USD per 1K input tokens.")
@click.option("--provider", default=None)
@click.option("--available", "available_only", is_flag=True, help="Only providers usable now.")
@read_options
def models_cmd(
    capability: str | None,
    tier: str | None,
    max_cost: float | None,
    provider: str | None,
    available_only: bool,
    config_path: str | None,
    as_json: bool,
) -> None:
    """Models by capability / tier / cost, cheapest first (seed 004's cost comparison)."""
    config = context_for(config_path).config()
    if provider is not None and provider not in config.providers:
        raise click.BadParameter(
            f"{provider!r} is not defined (defined: {', '.join(config.providers)})", param_hint="--provider"
        )
    registry = ProviderRegistry(config)
    models = registry.list_models(
        capability=capability, tier=tier, max_cost=max_cost, provider=provider, available_only=available_only
    )
    rows = [views.model_row(m, registry.availability(m.provider).available) for m in models]
    emit(as_json, {"models": rows}, lambda d: views.models_text(d["models"]))
