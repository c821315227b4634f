"""``adw providers`` (status, ``test``) and ``adw parse``: the agent CLIs behind the providers."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import click

from adw_modules.config.schema import Target
from adw_modules.routing.providers import ProviderRegistry
from adw_modules.workers import streams
from adws import views
from adws.cli import context_for, emit, read_options


@click.group("providers", invoke_without_command=True)
@read_options
@click.pass_context
def providers_cmd(ctx: click.Context, config_path: str | None, as_json: bool) -> None:
    """Status of each provider, with the reason when unavailable (= tools/show-providers.py)."""
    if ctx.invoked_subcommand is not None:
        return
    config = context_for(config_path).config()
    data = views.providers_data(config, ProviderRegistry(config))
    from adws.cli_stats import stored_scores

    scores = stored_scores(config)  # recent success and latency (issue 16), when a store exists
    for row in data["providers"]:
        row["score"] = None if scores is None else scores.get(row["name"])
    emit(as_json, data, views.providers_text)


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
    config = context_for(config_path).config()
    if name not in config.providers:
        raise click.BadParameter(f"{name!r} is not defined (defined: {', '.join(config.providers)})")
    pc = config.providers[name]
    model = model or pc.default_model or next(iter(pc.models), None)
    if model is None and name == config.routing.default_provider:
        model = config.routing.default_model
    if model is None:
        raise click.BadParameter(f"provider {name} declares no model: pass --model", param_hint="--model")
    from adw_modules.workers.attempt import AttemptRequest, AttemptRunner

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


@click.command("parse")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--format", "fmt", required=True, help=f"One of {', '.join(streams.FORMATS)}, or a plugin's.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def parse_cmd(file: str, fmt: str, as_json: bool) -> None:
    """Summarise a saved transcript: outcome, tokens, cost, model, session (exit_code is null)."""
    from adw_modules.workers.attempt import summarize_file

    if streams.parser_class(fmt) is None:
        raise click.BadParameter(f"{fmt!r} is unknown: known formats are {', '.join(streams.known_formats())}")

    result = summarize_file(Path(file), fmt)
    emit(as_json, result.to_dict(), views.attempt_text)
