"""``adw route`` with a rule that picks by history (issue 16): it reads the store's history
read-only, as a coordinator would at start, and says so; with no store it decides on the priors
alone, says that, and creates nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from adw_modules.config.schema import Config
from adw_modules.queue.store import Store
from adws.cli import cli
from tests.adws import scene
from tests.adws.test_golden_views import check

# Statistics are kept under the rule that routed each attempt: the learned rule takes the name
# of the scene's "critical-issues-opus", whose task 1 failed on claude-dry (a rate limit: not
# counted) and succeeded on openrouter-dry: one counted success for that candidate.
LEARNED_RULE = """
[[routing.rules]]
name = "critical-issues-opus"
priority = 1000
model_select = { pick = "learned", candidates = ["claude-dry:claude-sonnet-4-5", \
"openrouter-dry:anthropic/claude-sonnet-4.5"], explore = 0, min_success = 0.6 }

[learning]
history_days = 36500
seed = 1
"""
ROUTE = ["route", "--priority", "critical", "--label", "bug", "--label", "security", "--hour", "14"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Config, Store, Path]]:
    tmp = tmp_path_factory.mktemp("route_history")
    config, store = scene.build(tmp)
    learned = config.path.with_name("learned.toml")
    text = config.path.read_text()
    assert 'name = "critical-issues-opus"' in text
    learned.write_text(text.replace('name = "critical-issues-opus"', 'name = "critical-static"') + LEARNED_RULE)
    yield config, store, learned
    store.close()


def test_route_reads_the_history_and_says_so(world: tuple[Config, Store, Path]) -> None:
    _, _, learned = world
    result = CliRunner().invoke(cli, ["--config", str(learned), *ROUTE])
    assert result.exit_code == 0, result.output
    check("cli_route_learned_history", result.output.rstrip("\n"), learned.parent.parent)
    data = json.loads(CliRunner().invoke(cli, ["--config", str(learned), *ROUTE, "--json"]).output)
    assert data["history"].startswith("3 counted attempts of the last 36500 days from sqlite:///")
    # The history's one success (and its real cost) is in the posterior; with the priors alone
    # both candidates read "over 0 attempts" (the next test).
    assert "openrouter-dry:anthropic/claude-sonnet-4.5: P(success) 0.67 ±0.24 over 1 attempts" in data["selection"]


def test_route_without_a_store_uses_the_priors_and_creates_nothing(
    world: tuple[Config, Store, Path], tmp_path: Path
) -> None:
    _, _, learned = world
    elsewhere = tmp_path / "learned.toml"
    elsewhere.write_text(learned.read_text())
    result = CliRunner().invoke(cli, ["--config", str(elsewhere), *ROUTE])
    assert result.exit_code == 0, result.output
    assert f"History: none (no store at sqlite:///{tmp_path}/state/adw.db): priors only" in result.output
    assert "over 0 attempts" in result.output
    assert not (tmp_path / "state").exists()


def test_route_without_a_history_rule_opens_no_store(world: tuple[Config, Store, Path]) -> None:
    config, _, _ = world
    result = CliRunner().invoke(cli, ["--config", str(config.path), *ROUTE])
    assert result.exit_code == 0 and "History:" not in result.output, result.output
