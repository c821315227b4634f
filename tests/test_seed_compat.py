"""Every TOML snippet of seed 003 loads unchanged and routes as the seed's show-routing says."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from adw_modules.config.edit import set_routing_enabled
from adw_modules.config.schema import load_config
from adw_modules.routing.providers import ProviderRegistry
from adw_modules.routing.router import ModelRouter
from adws.cli import cli

SEED = Path(__file__).parent / "fixtures" / "seeds" / "003_multi_provider_routing.txt"
BLOCKS = re.findall(r"```toml\n(.*?)```", SEED.read_text(), re.S)
BASIC, RULES, ENABLE, OPENROUTER_RULE, RETRY, OFF_HOURS, DOCS, MYPROVIDER, MYPROVIDER_RULE = BLOCKS


@pytest.fixture
def seed_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory with the seed's programs: claude on PATH, tools/openrouter-cli.py beside the config."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    claude = bin_dir / "claude"
    claude.write_text("#!/bin/sh\n")
    claude.chmod(0o755)
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "openrouter-cli.py").write_text("")
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    return tmp_path


def write(dir_: Path, *blocks: str) -> Path:
    path = dir_ / "config.toml"
    path.write_text("\n".join(blocks))
    return path


def test_there_are_nine_snippets() -> None:
    assert len(BLOCKS) == 9


def test_basic_setup_and_rules_load_unchanged(seed_dir: Path) -> None:
    config = load_config(write(seed_dir, BASIC, RULES))
    assert list(config.providers) == ["claude-cli", "openrouter"]
    assert config.routing.enabled is False
    assert (config.routing.default_provider, config.routing.default_model) == (
        "claude-cli",
        "claude-sonnet-4-5",
    )
    assert [r.name for r in config.routing.rules] == [
        "critical-issues-opus",
        "retry-use-haiku",
        "high-priority-sonnet",
        "off-hours-haiku",
        "docs-haiku",
    ]
    assert config.providers["openrouter"].command_template[-1] == "stream-json"


@pytest.mark.parametrize("snippet", [OPENROUTER_RULE, RETRY, OFF_HOURS, DOCS, MYPROVIDER, MYPROVIDER + MYPROVIDER_RULE])
def test_each_example_snippet_loads_on_the_basic_setup(seed_dir: Path, snippet: str) -> None:
    config = load_config(write(seed_dir, BASIC, snippet))
    for rule in config.routing.rules:
        assert rule.model  # the seed's rules name their model; provider defaults to claude-cli


def test_enable_routing_snippet(seed_dir: Path) -> None:
    path = write(seed_dir, BASIC, RULES)
    set_routing_enabled(path, True)
    assert ENABLE.strip() in path.read_text()
    assert load_config(path).routing.enabled is True


def test_rule_without_provider_uses_default_provider(seed_dir: Path) -> None:
    router = ModelRouter(load_config(write(seed_dir, BASIC, RETRY)))
    assert router.decide({"retry_count": 1}, evaluate_rules=True).target is not None
    assert router.route({"retry_count": 0}) == ("claude-cli", "claude-sonnet-4-5")  # routing disabled


def test_seed_routing_decisions(seed_dir: Path) -> None:
    config = load_config(write(seed_dir, BASIC, RULES))
    router = ModelRouter(config)
    critical = {"priority": "critical", "labels": ["security"], "retry_count": 0}
    docs = {"priority": "low", "labels": ["documentation"], "retry_count": 0}
    assert router.decide(critical, evaluate_rules=True).target.__str__() == "claude-cli:claude-opus-4"
    for hour in (3, 14):  # off-hours or docs rule: haiku either way, as the seed shows
        d = router.decide({**docs, "hour": hour}, evaluate_rules=True)
        assert (d.provider, d.model) == ("claude-cli", "claude-haiku-4")
    # seed 003's example: router.route(...) -> ('claude-cli', 'claude-opus-4') once routing is enabled
    set_routing_enabled(config.path, True)
    assert ModelRouter(load_config(config.path)).route(critical) == ("claude-cli", "claude-opus-4")


def test_seed_show_routing_output(seed_dir: Path) -> None:
    path = write(seed_dir, BASIC, RULES)
    result = CliRunner().invoke(cli, ["--config", str(path), "routing"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Router enabled: False" in out
    assert "Default: claude-cli/claude-sonnet-4-5" in out
    assert (
        "  [100] critical-issues-opus\n      Conditions: {'priority': 'critical'}\n      Target: claude-cli/claude-opus-4"
        in out
    )
    assert (
        "  [95] retry-use-haiku\n      Conditions: {'retry_count': {'gte': 1}}\n      Target: claude-cli/claude-haiku-4"
        in out
    )
    assert "Scenario: Critical security issue" in out
    assert "→ Routed to: claude-cli / claude-opus-4" in out
    assert "Scenario: Documentation update" in out
    assert "→ Routed to: claude-cli / claude-haiku-4" in out


def test_seed_show_providers_output(seed_dir: Path) -> None:
    path = write(seed_dir, BASIC, RULES)
    result = CliRunner().invoke(cli, ["providers", "--config", str(path)])
    assert result.exit_code == 0, result.output
    assert re.search(r"✓ claude-cli\s*\n", result.output)
    assert re.search(r"✗ openrouter\s+\(OPENROUTER_API_KEY not set\)", result.output)
    assert "Available Providers:\n  ✓ claude-cli\n" in result.output
    assert "Provider: claude-cli\n  Model: claude-sonnet-4-5" in result.output
    data = json.loads(CliRunner().invoke(cli, ["providers", "--config", str(path), "--json"]).output)
    assert data["available"] == ["claude-cli"]


def test_openrouter_available_once_key_is_set(seed_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = load_config(write(seed_dir, BASIC))
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-test-not-real")
    assert ProviderRegistry(config).availability("openrouter").available
    (seed_dir / "tools" / "openrouter-cli.py").unlink()
    assert "not found" in (ProviderRegistry(config).availability("openrouter").reason or "")
