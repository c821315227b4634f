from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from adw_modules.config.schema import load_config
from adws.cli import cli

REPO = Path(__file__).resolve().parent.parent

RULES = """
# keep this comment
[[routing.rules]]
name = "crit"   # inline comment
priority = 100
conditions = { priority = "critical" }
model = "a-big"
fallback = ["beta:b-mid"]
"""


def run(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, list(args), env=env)


def test_validate_ok_and_json(make_config) -> None:
    path = make_config(RULES, base=True)
    r = run("config", "validate", "--config", str(path))
    assert r.exit_code == 0 and "OK (2 providers, 1 rules, 0 chains)" in r.output
    data = json.loads(run("--config", str(path), "config", "validate", "--json").output)
    assert data["valid"] is True and data["rules"] == 1


def test_validate_reports_all_errors_with_exit_2(make_config) -> None:
    path = make_config(
        RULES.replace('model = "a-big"', 'provider = "gama"\nmodel = "a-big"') + "[llm]\nmodle = 1\n",
        base=True,
    )
    r = run("config", "validate", "--config", str(path))
    assert r.exit_code == 2
    assert 'routing.rules[0] "crit": provider "gama" is not defined (defined: alpha, beta)' in r.output
    assert 'llm: unknown key "modle"' in r.output
    assert "2 problem(s) found" in r.output
    data = json.loads(run("config", "validate", "--config", str(path), "--json").output)
    assert data["valid"] is False and len(data["errors"]) == 2


def test_config_from_env_var(make_config) -> None:
    path = make_config(RULES, base=True)
    r = run("route", "--priority", "critical", "--json", env={"ADW_CONFIG": str(path)})
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["rule"] == "crit"


def test_every_read_command_fails_cleanly_on_bad_config(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[routing\n")
    for args in (["providers"], ["routing"], ["route"], ["models"]):
        r = run(*args, "--config", str(bad))
        assert r.exit_code == 2, args
        assert f"{bad}:1:" in r.output and "TOML syntax error" in r.output


def test_route_json_contract(make_config) -> None:
    path = make_config(RULES, base=True)
    r = run(
        "route",
        "--config",
        str(path),
        "--priority",
        "critical",
        "--label",
        "security",
        "--label",
        "x",
        "--retry-count",
        "0",
        "--hour",
        "3",
        "--json",
        env={"BETA_KEY": "k"},
    )
    data = json.loads(r.output)
    assert data["provider"] == "alpha" and data["model"] == "a-big" and data["rule"] == "crit"
    assert data["fallbacks"] == ["beta:b-mid"]

    r = run("route", "--config", str(path), "--priority", "low", "--json")
    data = json.loads(r.output)
    assert data["rule"] is None and data["provider"] == "alpha" and data["model"] == "a-small"
    assert data["trace"][0]["reason"] == "priority is low, rule wants [critical]"


def test_route_text_explains_and_skips_unavailable(make_config) -> None:
    path = make_config(RULES, base=True)
    r = run("route", "--config", str(path), "--priority", "critical")
    assert "→ alpha / a-big   (rule crit matched)" in r.output
    assert "Skipped beta:b-mid: BETA_KEY not set" in r.output
    r = run("route", "--config", str(path), "--priority", "critical", "--ignore-availability")
    assert "Fallbacks: beta:b-mid" in r.output
    assert run("route", "--config", str(path), "--priority", "urgent").exit_code == 2  # click usage error


def test_models_filters_and_json(make_config) -> None:
    path = make_config("", base=True)
    data = json.loads(run("models", "--config", str(path), "--json", "--capability", "docs").output)
    assert [(m["provider"], m["model"]) for m in data["models"]] == [("alpha", "a-small"), ("beta", "b-mid")]
    assert data["models"][0]["cost_3k_in_1k_out"] == pytest.approx(0.005)
    text = run("models", "--config", str(path), "--max-cost", "0.002").output
    assert "alpha/a-small" in text and "a-big" not in text
    assert "beta/b-mid ✗" in run("models", "--config", str(path)).output


def test_routing_enable_disable_keeps_comments(make_config) -> None:
    path = make_config(RULES, base=True)
    before = path.read_text()
    assert run("routing", "disable", "--config", str(path)).exit_code == 0
    assert load_config(path).routing.enabled is False
    assert run("routing", "enable", "--config", str(path)).exit_code == 0
    assert path.read_text() == before


def test_rules_add_and_remove_in_place(make_config) -> None:
    path = make_config(RULES, base=True)
    before = path.read_text()
    r = run(
        "rules",
        "add",
        "docs",
        "--config",
        str(path),
        "--priority",
        "60",
        "--conditions",
        '{ labels = ["docs"] }',
        "--provider",
        "beta",
        "--model",
        "b-mid",
        "--fallback",
        "alpha:a-small",
    )
    assert r.exit_code == 0, r.output
    text = path.read_text()
    assert text.startswith(before) and "# keep this comment" in text and "# inline comment" in text
    rule = next(x for x in load_config(path).routing.rules if x.name == "docs")
    assert rule.conditions.labels == frozenset({"docs"}) and str(rule.fallback[0]) == "alpha:a-small"
    assert (
        json.loads(run("route", "--config", str(path), "--label", "docs", "--json", "--ignore-availability").output)[
            "rule"
        ]
        == "docs"
    )

    assert run("rules", "remove", "docs", "--config", str(path)).exit_code == 0
    assert path.read_text() == before


def test_rules_add_refuses_invalid_result_and_leaves_file(make_config) -> None:
    path = make_config(RULES, base=True)
    before = path.read_text()
    r = run(
        "rules",
        "add",
        "bad",
        "--config",
        str(path),
        "--priority",
        "1",
        "--conditions",
        "{ colour = 1 }",
        "--model",
        "m",
    )
    assert r.exit_code == 2 and 'unknown condition "colour"' in r.output
    r = run("rules", "add", "crit", "--config", str(path), "--priority", "1", "--model", "m")
    assert r.exit_code == 2 and 'a rule named "crit" already exists' in r.output
    r = run("rules", "remove", "nope", "--config", str(path))
    assert r.exit_code == 2 and "no rule named" in r.output
    r = run("rules", "add", "x", "--config", str(path), "--priority", "1", "--conditions", "not toml")
    assert r.exit_code == 2 and "--conditions" in r.output
    assert path.read_text() == before


@pytest.mark.parametrize(("tool", "command"), [("show-providers.py", "providers"), ("show-routing.py", "routing")])
def test_tools_scripts_equal_cli(tool: str, command: str) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}
    tool_out = subprocess.run(
        [sys.executable, str(REPO / "tools" / tool), "--config", str(REPO / "config.toml"), "--json"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=REPO,
    ).stdout
    cli_out = run(command, "--config", str(REPO / "config.toml"), "--json", env={"PATH": env["PATH"]}).output
    assert json.loads(tool_out) == json.loads(cli_out)


def test_example_config_scenarios_route_as_expected() -> None:
    data = json.loads(run("routing", "--config", str(REPO / "config.toml"), "--json").output)
    assert data["scenarios_source"] == "config"
    assert all(s["expect_ok"] for s in data["scenarios"]), [s for s in data["scenarios"] if not s["expect_ok"]]
