"""Plugins: the example plugin package really installed (pip, its own pyproject) on a path of its own.

``tests/fixtures/plugins/adw-example-plugin`` adds the ``tally-jsonl`` stream format and the
``tally-local`` preset; ``adw-broken-plugin`` fails in each way adw must survive (an import that
raises, an object of the wrong kind, a built-in's name, a bad preset).  Both are installed once
for this module into a temporary directory that only these tests put on ``sys.path`` (and on
``PYTHONPATH`` for the ``adw`` processes), so no other test sees them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from adw_modules.config import presets
from adw_modules.config.schema import ConfigError, load_config
from adw_modules.ops import plugins
from adw_modules.workers import streams
from adws.cli import cli
from tests.paths import REPO
from tests.plugin_packages import BROKEN, EXAMPLE, IMPORT_TIMEOUT_S, MODULES, PLUGINS, install_plugins

GOLDEN = REPO / "tests" / "adws" / "golden"
TALLY_AGENT = PLUGINS / "tally_agent.py"
ADW = Path(sys.executable).parent / "adw"


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install_plugins(tmp_path_factory.mktemp("site"), EXAMPLE, BROKEN)


@pytest.fixture
def installed(plugin_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The plugins on sys.path for one test; afterwards gone, and forgotten."""
    plugins.forget()
    monkeypatch.syspath_prepend(str(plugin_dir))
    monkeypatch.setenv("ADW_PLUGIN_IMPORT_TIMEOUT_S", IMPORT_TIMEOUT_S)
    yield plugin_dir
    plugins.forget()
    for name in MODULES:
        sys.modules.pop(name, None)


def tally_config(tmp_path: Path, output_format: str = "tally-jsonl", extra: str = "", default: str = "tally") -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        textwrap.dedent(
            f"""\
            [providers.tally]
            command_template = ["{TALLY_AGENT}", "--model", "{{model}}"]
            prompt_stdin = true
            output_format = "{output_format}"
            timeout = 30
            [providers.tally.models.tally-1]
            tier = "fast"
            [routing]
            enabled = true
            default_provider = "{default}"
            default_model = "tally-1"
            [coordinator]
            state_dir = "{tmp_path / "state"}"
            dispatch_interval_s = 0.2
            [store]
            url = "sqlite:///{tmp_path / "adw.db"}"
            """
        )
        + textwrap.dedent(extra)
    )
    return path


def test_no_plugin_is_read_for_a_config_that_names_only_built_ins(installed: Path) -> None:
    config = load_config(REPO / "config.toml")
    assert "openrouter" in config.providers
    assert plugins.loaded_groups() == []  # lazily: nothing asked for an unknown format or preset


def test_each_failing_plugin_is_reported_and_skipped(installed: Path) -> None:
    parsers = streams.plugin_formats()
    assert list(parsers.loaded) == ["tally-jsonl"]
    failed = {f.entry.name: f.error for f in parsers.failed}
    assert set(failed) == {
        "raises-on-import",
        "exits-on-import",
        "hangs-on-import",
        "not-a-parser",
        "claude-stream-json",
    }
    assert failed["hangs-on-import"].endswith("ImportTimeout: its import did not finish within 0.3 s")
    assert "ModuleNotFoundError" in failed["raises-on-import"]
    assert failed["exits-on-import"].endswith("SystemExit: ?[2Jbye from a plugin")  # no escape reaches a terminal
    assert "not a StreamParser subclass" in failed["not-a-parser"]
    assert "built-in format" in failed["claude-stream-json"]
    assert streams.parser_for("claude-stream-json").__class__ is streams.FORMATS["claude-stream-json"]

    provided = presets.plugin_presets()
    assert list(provided.loaded) == ["tally-local"]
    assert {f.entry.name for f in provided.failed} == {"bad-preset", "ollama"}
    assert presets.preset_named("ollama") is presets.BUILTIN_PRESETS["ollama"]


def test_a_config_naming_a_failed_plugin_says_why_with_the_line(installed: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(tally_config(tmp_path, output_format="raises-on-import"))
    (issue,) = err.value.issues
    assert f"{tmp_path / 'config.toml'}:4: providers.tally: " in issue
    assert "its plugin failed: cannot load adw_broken_plugin_missing:Parser: ModuleNotFoundError" in issue
    assert "tally-jsonl" in issue  # the known formats include the plugin's


def test_a_plugin_preset_fills_the_provider(installed: Path, tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        '[providers.local]\npreset = "tally-local"\n[routing]\ndefault_provider = "local"\ndefault_model = "m"\n'
    )
    pc = load_config(path).providers["local"]
    assert pc.base_url == "http://localhost:8765/v1" and pc.max_concurrency == 2
    assert pc.preset == "tally-local" and pc.cli == "openrouter-cli" and pc.api_format == "openai"
    assert "--no-api-key" in pc.command_template


def test_adw_plugins_lists_loaded_and_failed(installed: Path) -> None:
    result = CliRunner().invoke(cli, ["plugins"])
    assert result.exit_code == 0, result.output
    golden = GOLDEN / "cli_plugins.txt"
    if os.environ.get("ADW_UPDATE_GOLDEN"):
        golden.write_text(result.stdout)
    assert result.stdout == golden.read_text()

    plugins.forget()
    data = json.loads(CliRunner().invoke(cli, ["plugins", "--json"]).stdout)
    assert (data["loaded"], data["failed"]) == (2, 7)
    tally = next(p for p in data["plugins"] if p["name"] == "tally-local")
    assert tally["preset"]["source"] == "plugin adw-example-plugin 0.1.0"


def test_adw_parse_reads_a_transcript_with_a_plugin_format(installed: Path, tmp_path: Path) -> None:
    transcript = tmp_path / "t.jsonl"
    transcript.write_text('{"say": "hi"}\n{"done": true, "ok": true, "in": 5, "out": 2, "cost": 0.5, "model": "m"}\n')
    result = CliRunner().invoke(cli, ["parse", str(transcript), "--format", "tally-jsonl", "--json"])
    data = json.loads(result.stdout)
    assert (data["outcome"], data["input_tokens"], data["cost_usd"]) == ("success", 5, 0.5)
    unknown = CliRunner().invoke(cli, ["parse", str(transcript), "--format", "nope"])
    assert unknown.exit_code == 2 and "tally-jsonl" in unknown.output


def _adw(config: Path, plugin_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "ADW_CONFIG"}
    env["PYTHONPATH"] = str(plugin_dir)
    env["ADW_PLUGIN_IMPORT_TIMEOUT_S"] = IMPORT_TIMEOUT_S
    return subprocess.run(
        [str(ADW), *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=config.parent,
        check=False,
    )


def test_a_task_is_routed_through_the_plugin_parser(plugin_dir: Path, tmp_path: Path) -> None:
    """The real ``adw`` processes: enqueue, run until idle, and the task succeeded with the
    tokens and cost only the plugin's parser could read."""
    config = tally_config(
        tmp_path,
        extra=f"""
        [providers.failing]
        command_template = ["{TALLY_AGENT}", "--model", "{{model}}", "--fail"]
        prompt_stdin = true
        output_format = "tally-jsonl"
        [providers.failing.models.tally-1]
        [[routing.rules]]
        name = "tallies"
        priority = 10
        conditions = {{ labels = ["tally"] }}
        provider = "tally"
        model = "tally-1"
        """,
        default="failing",  # only the rule sends a task to the plugin's format
    )
    enqueued = _adw(config, plugin_dir, "enqueue", "count these five words please", "--label", "tally")
    assert enqueued.returncode == 0, enqueued.stderr
    run = _adw(config, plugin_dir, "run", "--until-idle", "--idle-wait", "0")
    assert run.returncode == 0, run.stderr[-3000:]
    shown = _adw(config, plugin_dir, "task", "show", enqueued.stdout.strip(), "--json")
    assert shown.returncode == 0, shown.stderr
    task = json.loads(shown.stdout)
    assert task["task"]["state"] == "succeeded", shown.stdout
    (attempt,) = task["attempts"]
    assert attempt["provider"] == "tally" and attempt["rule"] == "tallies"
    prompt = Path(attempt["log_path"]).with_name("prompt.md").read_text()
    assert attempt["input_tokens"] == len(prompt.split()) and attempt["output_tokens"] == 7
    assert attempt["cost_usd"] == pytest.approx(0.0042)


def test_the_readme_shows_the_example_plugin_complete_in_under_50_lines() -> None:
    readme = (REPO / "README.md").read_text()
    package = PLUGINS / EXAMPLE
    pyproject = (package / "pyproject.toml").read_text()
    module = (package / "adw_example_plugin.py").read_text()
    assert f"```toml\n# pyproject.toml\n{pyproject}```" in readme
    assert f"```python\n{module}```" in readme
    assert len(pyproject.splitlines()) + len(module.splitlines()) < 50


def test_a_plugin_asking_for_a_group_while_imported_does_not_deadlock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The import runs in a thread of its own while the loader holds the lock: the plugin's own
    call to load_group must go on without it, not wait out the import timeout."""
    from importlib import metadata

    (tmp_path / "adw_reentrant_plugin.py").write_text(
        "from adw_modules.ops import plugins\nINNER = plugins.load_group('adw.providers')\nOBJ = 1\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("ADW_PLUGIN_IMPORT_TIMEOUT_S", "20")
    points = {
        plugins.PARSERS: [metadata.EntryPoint("reentrant", "adw_reentrant_plugin:OBJ", plugins.PARSERS)],
        plugins.PROVIDERS: [],
    }
    monkeypatch.setattr(plugins, "_entry_points", lambda group: points[group])
    plugins.forget()
    try:
        result = plugins.load_group(plugins.PARSERS)
    finally:
        plugins.forget()
        sys.modules.pop("adw_reentrant_plugin", None)
    assert list(result.loaded) == ["reentrant"] and result.failed == []
