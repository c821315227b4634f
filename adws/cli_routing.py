"""``adw routing`` (rules, scenarios, enable/disable) and ``adw route`` (one decision); ``adw models`` is in cli_models.

Only the config and the router are imported: ``adw route`` is typed all day.
"""

from __future__ import annotations

import click

from adw_modules.config.schema import Config, ConfigError
from adw_modules.routing.conditions import PRIORITIES, WEEKDAYS
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
    history = _read_history(router) if _reads_history(config) else None
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
    data = decision.to_dict() if history is None else {**decision.to_dict(), "history": history}
    emit(as_json, data, lambda _: views.decision_text(attrs, decision, history))


def _reads_history(config: Config) -> bool:
    """Does a rule pick by history (learned statistics, recent latency, provider scores)?"""
    return any(
        r.select is not None and (r.select.pick in ("learned", "least-busy") or r.select.min_score is not None)
        for r in config.routing.rules
        if r.enabled
    )


def _read_history(router: ModelRouter) -> str:
    """Load the store's history into the router as a coordinator would (read-only: an absent
    store is not created, an old one not migrated); what was read, for the output."""
    import datetime as dt

    from adw_modules.ops.stats import load_learning, provider_scores
    from adws.stores import open_existing_store

    config = router.config
    store, where = open_existing_store(config)
    if store is None:
        return f"none ({where}): priors only, as a coordinator with no history would decide"
    try:
        counted = load_learning(store, router.signals.stats, config, dt.datetime.now(dt.UTC))
        scores = provider_scores(store, config)
    finally:
        store.close()
    router.signals.score = scores.get
    return (
        f"{counted} counted attempts of the last {config.learning.history_days} days from {where} "
        f'(read-only; success = "{config.learning.success}")'
    )
