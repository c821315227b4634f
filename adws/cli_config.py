"""``adw config validate`` and ``adw rules add|remove``: check config.toml, edit its rules in place."""

from __future__ import annotations

import json
import sys
from typing import Any

import click
import tomlkit

from adw_modules.config import edit as config_edit
from adw_modules.config.schema import ConfigError
from adws import views
from adws.cli import EXIT_CONFIG, config_error_exit, context_for, emit, read_options


@click.group("config")
def config_group() -> None:
    """Check the configuration."""


@config_group.command("validate")
@read_options
def config_validate(config_path: str | None, as_json: bool) -> None:
    """Validate config.toml: every problem at once, exit code 2 if there are any."""
    path = context_for(config_path).config_path
    data = views.validation_data(path)
    if not data["valid"]:
        if as_json:
            click.echo(json.dumps(data, indent=2))
            sys.exit(EXIT_CONFIG)
        config_error_exit(ConfigError(data["errors"]))
    emit(
        as_json,
        data,
        lambda d: f"{d['config']}: OK ({d['providers']} providers, {d['rules']} rules, {d['chains']} chains)",
    )


@click.group("rules")
def rules_group() -> None:
    """Add or remove routing rules in config.toml (comments and layout kept)."""


def _inline_table(text: str, option: str) -> dict[str, Any]:
    try:
        value = tomlkit.parse(f"x = {text}")["x"]
    except Exception as exc:  # tomlkit raises several parse error types
        raise click.BadParameter(f"not a TOML inline table: {exc}", param_hint=option) from None
    if not isinstance(value, dict):
        raise click.BadParameter('must be a TOML inline table like { priority = "low" }', param_hint=option)
    unwrapped: dict[str, Any] = value.unwrap() if hasattr(value, "unwrap") else dict(value)
    return unwrapped


@rules_group.command("add")
@click.argument("name")
@click.option("--priority", type=int, required=True, help="Higher is checked first.")
@click.option("--conditions", default="{}", help="TOML inline table, e.g. '{ labels = [\"docs\"] }'.")
@click.option("--provider", default=None)
@click.option("--model", default=None)
@click.option(
    "--model-select",
    default=None,
    help='TOML inline table, e.g. \'{ capability = "code", pick = "cheapest" }\'.',
)
@click.option("--chain", default=None)
@click.option("--fallback", multiple=True, help="provider:model, repeatable.")
@click.option("--params", default=None, help="TOML inline table of template parameters.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None)
def rules_add(
    name: str,
    priority: int,
    conditions: str,
    provider: str | None,
    model: str | None,
    model_select: str | None,
    chain: str | None,
    fallback: tuple[str, ...],
    params: str | None,
    config_path: str | None,
) -> None:
    """Append a rule; the file is only written if the whole config stays valid."""
    path = context_for(config_path).config_path
    try:
        config_edit.add_rule(
            path,
            name,
            priority,
            _inline_table(conditions, "--conditions"),
            provider=provider,
            model=model,
            model_select=_inline_table(model_select, "--model-select") if model_select else None,
            chain=chain,
            fallback=fallback,
            params=_inline_table(params, "--params") if params else None,
        )
    except ConfigError as exc:
        config_error_exit(exc)
    click.echo(f'{path}: rule "{name}" added')


@rules_group.command("remove")
@click.argument("name")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None)
def rules_remove(name: str, config_path: str | None) -> None:
    """Remove the rule with this name."""
    path = context_for(config_path).config_path
    try:
        config_edit.remove_rule(path, name)
    except ConfigError as exc:
        config_error_exit(exc)
    click.echo(f'{path}: rule "{name}" removed')
