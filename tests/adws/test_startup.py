"""The CLI answers at once: what each command imports, by module name (never by timing).

Each command runs in a fresh interpreter as ``python -m adws.cli ARGV``, and the modules it
loaded are read from ``sys.modules`` as it exits.  ``adw --help`` loads click and the command table only;
``adw route`` the config and the router; ``adw enqueue`` and ``adw status`` the store, and on a
store already at head not Alembic.  The listing in ``--help`` comes from ``COMMANDS`` without
importing any command: it must say what the commands themselves say.
"""

from __future__ import annotations

import os
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from adws.cli import COMMANDS, LazyGroup, cli
from adws.demo import write_demo
from tests.paths import REPO

# Heavy, and needed by none of the commands tested here.
NEVER_AT_START = (
    "github",
    "sqlalchemy",
    "alembic",
    "openai",
    "rich",
    "prometheus_client",
    "psutil",
    "apscheduler",
    "adw_modules.ops.doctor",
    "adw_modules.coordinator",
    "adws.service",
    "starlette",
    "jinja2",
    "uvicorn",
    "adws.web",
)
# What a command that opens the store still must not load.
NEVER_WITH_THE_STORE = tuple(m for m in NEVER_AT_START if m != "sqlalchemy")


# ``python -m adws.cli ARGV`` that, on its way out (sys.exit included), lists every module loaded.
# sys.modules, not ``-X importtime``: importtime does not report a module imported through
# importlib.import_module (which is how the command table loads a command).
PROBE = """
import atexit, runpy, sys
atexit.register(lambda: print("\\n".join(["--modules--", *sys.modules]), file=sys.stderr))
runpy.run_module(sys.argv.pop(1), run_name="__main__", alter_sys=True)
"""
MARK = "--modules--\n"


def modules_loaded(module: str, *argv: str) -> set[str]:
    """Every module ``python -m MODULE ARGV`` loaded; it must exit 0."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["ADW_CONFIG"] = str(REPO / "config.toml")
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, module, *argv],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and MARK in proc.stderr, proc.stderr[-2000:]
    names = set(proc.stderr.rpartition(MARK)[2].split())
    assert "click" in names or module != "adws.cli", "the probe saw nothing: the check would pass vacuously"
    return names


def imported(*argv: str) -> set[str]:
    """Every module ``adw ARGV`` loads."""
    return modules_loaded("adws.cli", *argv)


def loaded(names: set[str], packages: tuple[str, ...]) -> list[str]:
    return sorted(n for n in names if any(n == p or n.startswith(p + ".") for p in packages))


def test_help_imports_no_command() -> None:
    names = imported("--help")
    assert loaded(names, NEVER_AT_START) == []
    # Not even the config or the router: --help needs neither.
    assert loaded(names, ("adw_modules", "tomlkit")) == []


def test_route_loads_the_config_and_the_router_only() -> None:
    names = imported("route", "--priority", "high", "--label", "bug")
    assert "adw_modules.routing.router" in names
    assert loaded(names, NEVER_AT_START) == []
    assert loaded(names, ("adw_modules.queue.store", "adw_modules.workers.attempt")) == []


@pytest.fixture(scope="module")
def demo_config(tmp_path_factory: pytest.TempPathFactory) -> str:
    config = str(write_demo(tmp_path_factory.mktemp("startup") / "demo"))
    first = imported("enqueue", "creates and migrates the store", "--config", config)
    assert "alembic.command" in first  # a new store is migrated: the slow path, once
    return config


def test_enqueue_on_a_current_store_skips_alembic(demo_config: str) -> None:
    names = imported("enqueue", "a task", "--config", demo_config)
    assert "adw_modules.queue.store" in names
    assert loaded(names, NEVER_WITH_THE_STORE) == []


def test_status_on_a_current_store_skips_alembic(demo_config: str) -> None:
    names = imported("status", "--config", demo_config)
    assert "adw_modules.queue.store" in names
    assert loaded(names, NEVER_WITH_THE_STORE) == []


def test_a_command_s_own_help_loads_its_module_only() -> None:
    names = imported("doctor", "--help")
    assert "adws.cli_ops" in names
    assert loaded(names, ("adws.cli_queue", "adws.cli_github", "adws.top", "adw_modules.ops.doctor")) == []


def test_the_idle_coordinator_does_not_import_what_it_does_not_use() -> None:
    """Without [github], [metrics] and [web] listen: no PyGithub (~30 MB), no prometheus_client (~20 MB),
    no Starlette / uvicorn."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    code = "import sys, adws.service\nprint('\\n'.join(sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True, timeout=120
    )
    names = set(out.stdout.split())
    assert "adws.service" in names
    assert (
        loaded(
            names,
            (
                "adw_modules.ops.doctor",
                "alembic",
                "rich",
                "openai",
                "adw_modules.workers.openrouter",
                "github",
                "prometheus_client",
                "starlette",
                "uvicorn",
                "adws.web",
            ),
        )
        == []
    )


# ---------------------------------------------------------------- the command table


def test_the_table_names_every_command_under_its_own_name() -> None:
    for name, (target, _) in COMMANDS.items():
        command = cli.load(name)
        assert command.name == name, target


@pytest.mark.parametrize("limit", [20, 45, 60, 74, 100, 200])
def test_each_listed_help_is_the_command_s_own(limit: int) -> None:
    for name, (_, listed) in COMMANDS.items():
        stand_in = click.Command(name, help=listed)
        assert stand_in.get_short_help_str(limit) == cli.load(name).get_short_help_str(limit), name


def fresh_group() -> LazyGroup:
    """The ``adw`` group as a new process sees it: no command loaded yet."""
    assert cli.callback is not None
    return LazyGroup("cli", callback=cli.callback, params=cli.params, help=cli.help, lazy=COMMANDS)


@pytest.mark.parametrize("width", [60, 80, 120])
def test_help_lists_what_loading_every_command_would(width: int) -> None:
    eager = click.Group("cli", callback=cli.callback, params=cli.params, help=cli.help)
    for name in COMMANDS:
        eager.add_command(cli.load(name), name)
    lazy = fresh_group()
    runner = CliRunner()
    shown = runner.invoke(lazy, ["--help"], prog_name="adw", terminal_width=width)
    expected = runner.invoke(eager, ["--help"], prog_name="adw", terminal_width=width)
    assert shown.exit_code == expected.exit_code == 0
    assert shown.output == expected.output
    assert lazy.commands == {}, "listing the commands imported some"


def test_an_unknown_command_is_still_a_usage_error() -> None:
    result = CliRunner().invoke(fresh_group(), ["nosuch"], prog_name="adw")
    assert result.exit_code == 2 and "No such command 'nosuch'" in result.output


def test_every_command_module_is_importable_on_its_own() -> None:
    """A module that only worked after another had registered something would fail here."""
    modules = sorted({target.partition(":")[0] for target, _ in COMMANDS.values()})
    code = "import importlib, sys\nfor m in sys.argv[1:]:\n    importlib.import_module(m)\n"
    for module in modules:
        subprocess.run([sys.executable, "-c", code, module], cwd=REPO, check=True, timeout=120)
