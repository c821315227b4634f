"""``adw stats`` (issue 16): the text view against golden files, and the command itself in text
and --json mode on the scene store (every kind of attempt: successes, provider faults, crashes,
failovers, retries)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from adw_modules.config.schema import Config
from adw_modules.ops.stats import outcome_stats
from adw_modules.queue.store import Store
from adws.cli import cli
from adws.cli_stats import stats_text
from tests.adws import scene
from tests.adws.test_golden_views import check


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Config, Store, Path]]:
    tmp = tmp_path_factory.mktemp("stats")
    config, store = scene.build(tmp)
    yield config, store, tmp
    store.close()


@pytest.mark.parametrize("by", ["target", "label", "rule"])
def test_stats_text(world: tuple[Config, Store, Path], by: str) -> None:
    _, store, tmp = world
    groups = outcome_stats(store, by=by, days=30, now=scene.NOW)
    data = {"by": by, "days": 30, "success": "attempt", "groups": [g.to_dict() for g in groups]}
    check(f"stats_{by}", stats_text(data), tmp)


def test_stats_text_with_nothing_to_show() -> None:
    assert stats_text({"by": "target", "days": 7, "success": "attempt", "groups": []}) == (
        "No finished attempts in the last 7 days."
    )


def test_stats_command_json_and_text(world: tuple[Config, Store, Path]) -> None:
    config, _, _ = world
    runner = CliRunner()
    shown = runner.invoke(cli, ["--config", str(config.path), "stats", "--days", "36500", "--json"])
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.output)
    assert data["by"] == "target" and data["success"] == "attempt"
    for g in data["groups"]:
        low, high = g["interval"]
        assert 0 <= low <= high <= 1
        assert g["successes"] <= g["counted"] <= g["attempts"]
    text = runner.invoke(cli, ["--config", str(config.path), "stats", "--by", "model", "--days", "36500"])
    assert text.exit_code == 0 and "95% interval" in text.output, text.output
    huge = runner.invoke(cli, ["--config", str(config.path), "stats", "--days", "99999999"])
    assert huge.exit_code == 2 and "Invalid value for '--days'" in huge.output  # not an OverflowError
    bad = runner.invoke(cli, ["--config", str(config.path), "stats", "--by", "colour"])
    assert bad.exit_code == 2 and "Invalid value for '--by'" in bad.output


def test_stats_text_shows_hostile_keys_escaped_and_cut(world: tuple[Config, Store, Path]) -> None:
    """Labels and repo names come from outside: escape sequences (colour, clear screen, a
    window-title OSC), newlines and bidi overrides are shown as escapes, long keys cut."""
    _, store, tmp = world
    template = outcome_stats(store, by="target", days=30, now=scene.NOW)[0].to_dict()
    keys = ["\x1b[31mred\x1b[0m", "evil/\x1b]0;pwn\x07", "a\nb", "ö/r\u202eexe.txt", "标签", "x" * 300]
    groups = [{**template, "key": k} for k in keys]
    text = stats_text({"by": "repo", "days": 30, "success": "attempt", "groups": groups})
    assert "\x1b" not in text and "\u202e" not in text and "\x07" not in text
    assert len(text.splitlines()) == 2 + len(keys) + 1  # no key breaks a row
    check("stats_hostile_keys", text, tmp)
