"""Seed 003's Python snippets run unchanged, against the seed's own TOML, and do what the seed says."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from adw_modules.config.edit import set_routing_enabled
from adw_modules.config.schema import load_config
from adw_modules.providers import ProviderManager
from tests import test_seed_compat as seed_compat

# The seed's programs: claude on PATH, tools/openrouter-cli.py beside the config.
seed_dir = seed_compat.seed_dir

SNIPPETS = re.findall(r"```python\n(.*?)```", seed_compat.SEED.read_text(), re.S)
PROVIDERS_SNIPPET, ROUTING_SNIPPET = SNIPPETS[:2]


def run_snippet(snippet: str, **names: Any) -> dict[str, Any]:
    """Execute a seed snippet as written, with ``names`` as the variables it takes from its context."""
    namespace = dict(names)
    exec(compile(snippet, str(seed_compat.SEED), "exec"), namespace)
    return namespace


def seed_config_path(seed_dir: Path) -> Path:
    return seed_compat.write(seed_dir, seed_compat.BASIC, seed_compat.RULES)


def test_the_seed_shows_two_adw_snippets_and_a_wrapper_template() -> None:
    assert len(SNIPPETS) == 3
    assert PROVIDERS_SNIPPET.startswith("from adw_modules.providers import ProviderManager\n")
    assert ROUTING_SNIPPET.startswith("from adw_modules.routing import ModelRouter\n")
    assert "def call_myprovider_api" in SNIPPETS[2]  # a tools/ script to write, not an adw API


def test_provider_snippet_builds_the_claude_cli_argv(seed_dir: Path) -> None:
    prompt_file, output_file = seed_dir / "prompt.md", seed_dir / "output.jsonl"
    names = run_snippet(
        PROVIDERS_SNIPPET,
        config=load_config(seed_config_path(seed_dir)),
        prompt_file=str(prompt_file),
        model="claude-sonnet-4-5",
        output_file=str(output_file),
    )
    # The template has no {output_file} (claude writes stream-json to stdout); the program is
    # resolved on PATH so the argv runs without a shell.
    assert names["cmd"] == [
        str(seed_dir / "bin" / "claude"),
        "-p",
        str(prompt_file),
        "--model",
        "claude-sonnet-4-5",
        "--output-format",
        "stream-json",
        "--verbose",
        "--dangerously-skip-permissions",
    ]


def test_openrouter_argv_runs_the_wrapper_with_this_interpreter(seed_dir: Path) -> None:
    provider = ProviderManager(load_config(seed_config_path(seed_dir))).get_provider("openrouter")
    cmd = provider.build_command(seed_dir / "prompt.md", "anthropic/claude-3.5-sonnet", seed_dir / "output.jsonl")
    assert cmd == [
        sys.executable,
        str(seed_dir / "tools" / "openrouter-cli.py"),
        "-p",
        str(seed_dir / "prompt.md"),
        "--model",
        "anthropic/claude-3.5-sonnet",
        "--output-file",
        str(seed_dir / "output.jsonl"),
        "--output-format",
        "stream-json",
    ]


def test_provider_manager_takes_a_config_path_too(seed_dir: Path) -> None:
    path = seed_config_path(seed_dir)
    by_path = ProviderManager(path).get_provider("claude-cli").build_command("p.md", "claude-haiku-4", "o.jsonl")
    by_config = ProviderManager(load_config(path)).get_provider("claude-cli").build_command("p.md", "claude-haiku-4")
    assert by_path == by_config


def test_build_command_fills_parameters_as_an_attempt_does(seed_dir: Path) -> None:
    capped = (
        "[params]\nmax_turns = 30\n"
        '[providers.capped]\ncommand_template = ["claude", "--max-turns", "{max_turns}", "-p", "{prompt_file}"]\n'
    )
    manager = ProviderManager(seed_compat.write(seed_dir, seed_compat.BASIC, capped))
    assert manager.get_provider("capped").build_command("p.md", "m") == [
        str(seed_dir / "bin" / "claude"),
        "--max-turns",
        "30",
        "-p",
        "p.md",
    ]


def test_unknown_provider_names_the_defined_ones(seed_dir: Path) -> None:
    with pytest.raises(KeyError, match="claude-cli, openrouter"):
        ProviderManager(seed_config_path(seed_dir)).get_provider("gemini")


def test_routing_snippet_routes_as_the_seed_says_once_routing_is_enabled(seed_dir: Path) -> None:
    path = seed_config_path(seed_dir)
    set_routing_enabled(path, True)  # the seed's "Enable Routing" step
    names = run_snippet(ROUTING_SNIPPET, config=load_config(path))
    # The snippet ends with its expected result as a comment: "# → ('claude-cli', 'claude-opus-4')".
    shown = re.search(r"^# \S+ (\(.*\))$", ROUTING_SNIPPET, re.M)
    assert shown is not None
    assert ast.literal_eval(shown.group(1)) == ("claude-cli", "claude-opus-4")
    assert (names["provider"], names["model"]) == ("claude-cli", "claude-opus-4")


def test_routing_snippet_gives_the_defaults_while_routing_is_disabled(seed_dir: Path) -> None:
    names = run_snippet(ROUTING_SNIPPET, config=load_config(seed_config_path(seed_dir)))
    assert (names["provider"], names["model"]) == ("claude-cli", "claude-sonnet-4-5")
