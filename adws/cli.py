"""The ``adw`` command line: thin over adw_modules.  Exit code 2 means the config is unusable.

Each command lives in a ``cli_*`` module (or ``top``) that is imported only when that command
runs or shows its own help: ``adw --help`` lists every command from ``COMMANDS`` below without
importing any of them, and nothing here imports more than click.  A module's own imports are
placed the same way (what only one command uses is imported inside it), so ``adw route`` loads
the config and the router, ``adw enqueue`` the store, and neither the doctor, PyGithub or Alembic.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

if TYPE_CHECKING:
    from adw_modules.config.schema import Config, ConfigError

F = TypeVar("F", bound=Callable[..., Any])
EXIT_CONFIG = 2

# name -> ("module:attribute", the first paragraph of its help).  tests/adws/test_startup.py
# checks each help against the command's own, so the listing cannot drift from the commands.
COMMANDS: dict[str, tuple[str, str]] = {
    "cancel": (
        "adws.cli_queue:cancel_cmd",
        "Cancel a task; a running worker is killed by the coordinator that owns it.",
    ),
    "config": ("adws.cli_config:config_group", "Check the configuration."),
    "demo": (
        "adws.cli_queue:demo_cmd",
        "Enqueue a realistic mix of tasks and run them on the local dry-run agent, with a rate limit to fail over.",
    ),
    "doctor": (
        "adws.cli_ops:doctor_cmd",
        "Preflight: config, providers (a real --version run), keys, store, GitHub, disk, clock.  Exit 1 on ✗.",
    ),
    "enqueue": ("adws.cli_queue:enqueue_cmd", "Add a task to the local queue; prints its id."),
    "github": ("adws.cli_github:github_group", "The GitHub task source."),
    "models": (
        "adws.cli_models:models_group",
        "Curated models and the discovered pool, by capability / tier / cost, cheapest first (seed 004).",
    ),
    "parse": (
        "adws.cli_providers:parse_cmd",
        "Summarise a saved transcript: outcome, tokens, cost, model, session (exit_code is null).",
    ),
    "plugins": (
        "adws.cli_plugins:plugins_cmd",
        "Installed plugins (stream formats, provider presets): loaded, or failed and skipped.",
    ),
    "profiles": (
        "adws.cli_profiles:profiles_cmd",
        "Credential profiles: which is active and why, and whether each reference resolves (never values).",
    ),
    "providers": (
        "adws.cli_providers:providers_cmd",
        "Status of each provider, with the reason when unavailable (= tools/show-providers.py).",
    ),
    "retry": ("adws.cli_queue:retry_cmd", "Queue a finished (or waiting) task again."),
    "route": ("adws.cli_routing:route_cmd", "One routing decision, with its explanation."),
    "routing": (
        "adws.cli_routing:routing_cmd",
        "Rules in priority order and the scenario decision tests (= tools/show-routing.py).",
    ),
    "rules": ("adws.cli_config:rules_group", "Add or remove routing rules in config.toml (comments and layout kept)."),
    "run": (
        "adws.cli_queue:run_cmd",
        "Run the coordinator (foreground service).  SIGTERM drains, SIGHUP reloads config.",
    ),
    "service": ("adws.cli_ops:service_group", "Run adw as a systemd service."),
    "stats": (
        "adws.cli_stats:stats_cmd",
        "Success rate (95% interval), cost per success, durations, failovers and retries, grouped.",
    ),
    "status": ("adws.cli_queue:status_cmd", "Queue depth, running attempts, provider health and spend."),
    "task": ("adws.cli_queue:task_group", "One task."),
    "tasks": ("adws.cli_queue:tasks_cmd", "Tasks, newest first."),
    "top": ("adws.top:top_cmd", "Live view: running attempts, queue, provider health.  q or Ctrl-C quits."),
    "usage": ("adws.cli_queue:usage_cmd", "Tokens and cost, grouped."),
    "web": (
        "adws.cli_web:web_cmd",
        "Serve the web console from the store (read-only while no coordinator runs).  Ctrl-C stops.",
    ),
    "workspace": ("adws.cli_queue:workspace_group", "Per-task git worktrees."),
}


class LazyGroup(click.Group):
    """A group whose commands are imported by name when one is used.

    ``lazy`` maps each name to ``("module:attribute", help)``.  Listing the commands (the
    group's ``--help``) shows each one through a stand-in carrying that help, so click's own
    layout and shortening apply and nothing is imported; running one, or asking for its own
    help or completion, imports its module.
    """

    def __init__(self, *args: Any, lazy: Mapping[str, tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy)
        self.listing = False

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy and cmd_name not in self.commands:
            if self.listing:
                return click.Command(cmd_name, help=self.lazy[cmd_name][1])
            self.add_command(self.load(cmd_name), cmd_name)
        return super().get_command(ctx, cmd_name)

    def load(self, cmd_name: str) -> click.Command:
        """The command itself, importing its module."""
        module, _, attribute = self.lazy[cmd_name][0].partition(":")
        command = getattr(importlib.import_module(module), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{self.lazy[cmd_name][0]} is not a click command")
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        self.listing = True
        try:
            super().format_commands(ctx, formatter)
        finally:
            self.listing = False


def default_config_path() -> str:
    return os.environ.get("ADW_CONFIG") or "config.toml"


def config_error_exit(exc: ConfigError) -> NoReturn:
    for issue in exc.issues:
        click.echo(f"error: {issue}", err=True)
    if len(exc.issues) > 1:  # one problem is one line
        click.echo(f"{len(exc.issues)} problem(s) found", err=True)
    sys.exit(EXIT_CONFIG)


class Context:
    def __init__(self, config_path: str, profile: str | None = None) -> None:
        self.config_path = config_path
        self.profile = profile  # --profile; else $ADW_PROFILE, else [profiles] default_profile
        self._config: Config | None = None

    def config(self) -> Config:
        from adw_modules.config.schema import ConfigError, load_config

        if self._config is None:
            try:
                self._config = load_config(self.config_path, profile=self.profile)
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


def context_for(config_path: str | None) -> Context:
    """The command's Context: the group's, unless this command's own --config names another file."""
    obj = click.get_current_context().find_object(Context)
    path = config_path or (obj.config_path if obj else default_config_path())
    return obj if obj is not None and obj.config_path == path else Context(path, obj.profile if obj else None)


def emit(as_json: bool, data: Any, text: Callable[[Any], str]) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
    else:
        click.echo(text(data))


@click.group(cls=LazyGroup, lazy=COMMANDS)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Config file (default: $ADW_CONFIG, else ./config.toml).",
)
@click.option(
    "--profile",
    default=None,
    help="Credential profile from [profiles] (default: $ADW_PROFILE, else default_profile).",
)
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, profile: str | None) -> None:
    """adw: route labelled issues to AI coding-agent CLIs, with failover and cost accounting."""
    ctx.obj = Context(config_path or default_config_path(), profile)


def main(argv: list[str] | None = None) -> None:
    cli.main(args=argv, prog_name="adw")


def run_tool(command: list[str]) -> None:
    """Entry for tools/*.py: ``show-providers.py --json`` == ``adw providers --json``."""
    main([*command, *sys.argv[1:]])


if __name__ == "__main__":  # pragma: no cover
    # Run as ``python -m adws.cli`` this file is ``__main__``, while the command modules import
    # ``adws.cli`` (its Context, its helpers): run that module's group, not this copy's.
    from adws.cli import main as registered_main

    registered_main()
