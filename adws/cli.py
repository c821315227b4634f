"""The ``adw`` command line: thin over adw_modules.  Exit code 2 means the config is unusable."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
import tomlkit

from adw_modules.config import edit as config_edit
from adw_modules.config.schema import TIERS, Config, ConfigError, Target, load_config
from adw_modules.routing.conditions import PRIORITIES, WEEKDAYS
from adw_modules.routing.providers import ProviderRegistry
from adw_modules.routing.router import ModelRouter, TaskAttrs
from adw_modules.workers import streams
from adw_modules.workers.attempt import AttemptRequest, AttemptRunner, summarize_file
from adws import views

F = TypeVar("F", bound=Callable[..., Any])
EXIT_CONFIG = 2


def default_config_path() -> str:
    return os.environ.get("ADW_CONFIG") or "config.toml"


def config_error_exit(exc: ConfigError) -> NoReturn:
    for issue in exc.issues:
        click.echo(f"error: {issue}", err=True)
    if len(exc.issues) > 1:  # one problem is one line
        click.echo(f"{len(exc.issues)} problem(s) found", err=True)
    sys.exit(EXIT_CONFIG)


class Context:
    def __init__(self, config_path: str) -> None:
        self.config_path = config_path
        self._config: Config | None = None

    def config(self) -> Config:
        if self._config is None:
            try:
                self._config = load_config(self.config_path)
            except ConfigError as exc:
                config_error_exit(exc)
        return self._config


def read_options(fn: F) -> F:
    """--config and --json on every read command (also accepted before the command name)."""
    fn = click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")(fn)
    fn = click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False),
        default=None,
        help="Config file (default: $ADW_CONFIG, else ./config.toml).",
    )(fn)
    return fn


def _ctx(config_path: str | None) -> Context:
    obj = click.get_current_context().find_object(Context)
    path = config_path or (obj.config_path if obj else default_config_path())
    return obj if obj is not None and obj.config_path == path else Context(path)


def emit(as_json: bool, data: Any, text: Callable[[Any], str]) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
    else:
        click.echo(text(data))


@click.group()
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Config file (default: $ADW_CONFIG, else ./config.toml).",
)
@click.pass_context
def cli(ctx: click.Context, config_path: str | None) -> None:
    """adw: route labelled issues to AI coding-agent CLIs, with failover and cost accounting."""
    ctx.obj = Context(config_path or default_config_path())


# ---------------------------------------------------------------- config


@cli.group("config")
def config_group() -> None:
    """Check the configuration."""


@config_group.command("validate")
@read_options
def config_validate(config_path: str | None, as_json: bool) -> None:
    """Validate config.toml: every problem at once, exit code 2 if there are any."""
    path = _ctx(config_path).config_path
    try:
        config = load_config(path)
    except ConfigError as exc:
        if as_json:
            click.echo(json.dumps({"config": path, "valid": False, "errors": exc.issues}, indent=2))
            sys.exit(EXIT_CONFIG)
        config_error_exit(exc)
    data = {
        "config": path,
        "valid": True,
        "providers": len(config.providers),
        "rules": len(config.routing.rules),
        "chains": len(config.routing.chains),
        "fingerprint": config.fingerprint,
    }
    emit(
        as_json,
        data,
        lambda d: f"{d['config']}: OK ({d['providers']} providers, {d['rules']} rules, {d['chains']} chains)",
    )


# ---------------------------------------------------------------- providers


@cli.group("providers", invoke_without_command=True)
@read_options
@click.pass_context
def providers_cmd(ctx: click.Context, config_path: str | None, as_json: bool) -> None:
    """Status of each provider, with the reason when unavailable (= tools/show-providers.py)."""
    if ctx.invoked_subcommand is not None:
        return
    config = _ctx(config_path).config()
    emit(as_json, views.providers_data(config, ProviderRegistry(config)), views.providers_text)


@providers_cmd.command("test")
@click.argument("name")
@click.option("--model", default=None, help="Default: the provider's default_model, else its first model.")
@click.option("--prompt", default="Reply with the single word: ok", show_default=True)
@click.option("--timeout", type=float, default=None, help="Seconds; default: the provider's timeout.")
@read_options
def providers_test(
    name: str, model: str | None, prompt: str, timeout: float | None, config_path: str | None, as_json: bool
) -> None:
    """Run one real attempt on a provider (the seed's "test directly" step).  Exit 1 if it fails."""
    config = _ctx(config_path).config()
    if name not in config.providers:
        raise click.BadParameter(f"{name!r} is not defined (defined: {', '.join(config.providers)})")
    pc = config.providers[name]
    model = model or pc.default_model or next(iter(pc.models), None)
    if model is None and name == config.routing.default_provider:
        model = config.routing.default_model
    if model is None:
        raise click.BadParameter(f"provider {name} declares no model: pass --model", param_hint="--model")
    registry = ProviderRegistry(config)
    with tempfile.TemporaryDirectory(prefix="adw-provider-test-") as tmp:
        request = AttemptRequest(
            task_id="provider-test",
            prompt=prompt,
            target=Target(name, model),
            workdir=Path(tmp),
            attempt_dir=Path(tmp) / ".attempt",
            timeout_s=timeout,
        )
        result = AttemptRunner(config, registry).run(request)
        data = result.to_dict()
        data["log_path"] = None  # the temp dir is gone when we return
    emit(as_json, data, views.attempt_text)
    sys.exit(0 if result.ok else 1)


@cli.command("parse")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(sorted(streams.FORMATS)), required=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def parse_cmd(file: str, fmt: str, as_json: bool) -> None:
    """Summarise a saved transcript: outcome, tokens, cost, model, session (exit_code is null)."""
    result = summarize_file(Path(file), fmt)
    emit(as_json, result.to_dict(), views.attempt_text)


# ---------------------------------------------------------------- routing


@cli.group("routing", invoke_without_command=True)
@read_options
@click.pass_context
def routing_cmd(ctx: click.Context, config_path: str | None, as_json: bool) -> None:
    """Rules in priority order and the scenario decision tests (= tools/show-routing.py)."""
    if ctx.invoked_subcommand is not None:
        return
    config = _ctx(config_path).config()
    emit(as_json, views.routing_data(config, ModelRouter(config)), views.routing_text)


def _set_routing(config_path: str | None, enabled: bool) -> None:
    path = _ctx(config_path).config_path
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


@cli.command("route")
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
    config = _ctx(config_path).config()
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
    unavailable = {} if ignore_availability else router.registry.unavailable()
    decision = router.decide(attrs, unavailable=unavailable)
    emit(as_json, decision.to_dict(), lambda _: views.decision_text(attrs, decision))


# ---------------------------------------------------------------- models


@cli.command("models")
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
    config = _ctx(config_path).config()
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


# ---------------------------------------------------------------- rules


@cli.group("rules")
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
    path = _ctx(config_path).config_path
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
    path = _ctx(config_path).config_path
    try:
        config_edit.remove_rule(path, name)
    except ConfigError as exc:
        config_error_exit(exc)
    click.echo(f'{path}: rule "{name}" removed')


def main(argv: list[str] | None = None) -> None:
    cli.main(args=argv, prog_name="adw")


def run_tool(command: list[str]) -> None:
    """Entry for tools/*.py: ``show-providers.py --json`` == ``adw providers --json``."""
    main([*command, *sys.argv[1:]])


# The queue and service commands register themselves on ``cli``.
from adws import cli_github, cli_ops, cli_queue, top  # noqa: E402, F401

if __name__ == "__main__":  # pragma: no cover
    # Run as ``python -m adws.cli`` this file is ``__main__``, and the commands above registered
    # themselves on the ``adws.cli`` module's group, not this copy's: run that one.
    from adws.cli import main as registered_main

    registered_main()
