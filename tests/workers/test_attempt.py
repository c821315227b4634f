"""One attempt end to end: real subprocesses (the dry-run agent and small scripts), no mocks."""

from __future__ import annotations

import hashlib
import json
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from adw_modules.config.schema import Target, load_config
from adw_modules.outcomes import ErrorKind
from adw_modules.routing.providers import ProviderRegistry
from adw_modules.workers.attempt import AttemptRequest, AttemptRunner, summarize_file
from adws.cli import cli
from tests.paths import REPO

DRY_RUN = REPO / "tools" / "dry-run-agent.py"


def config_file(tmp_path: Path, extra_env: str = "", extra: str = "", name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(
        textwrap.dedent(
            f"""
            [params]
            max_turns = 3
            [providers.dry]
            command_template = ["{DRY_RUN}", "--model", "{{model}}", "--output-format", "stream-json",
                                "--verbose", "--max-turns", "{{max_turns}}"]
            prompt_stdin = true
            env = {{ {extra_env} }}
            timeout = 20
            idle_timeout = 10
            default_model = "claude-haiku-4-5"
            [providers.dry.models.claude-haiku-4-5]
            tier = "fast"
            [routing]
            default_provider = "dry"
            default_model = "claude-haiku-4-5"
            """
        )
        + textwrap.dedent(extra)
    )
    return path


def attempt(tmp_path: Path, config_path: Path, prompt: str = "fix the bug", provider: str = "dry", **kw):
    config = load_config(config_path)
    registry = ProviderRegistry(config, environ=kw.pop("environ", None))
    runner = AttemptRunner(config, registry, environ=registry.environ, kill_grace_s=1.0)
    request = AttemptRequest(
        task_id="t1",
        prompt=prompt,
        target=Target(provider, kw.pop("model", "claude-haiku-4-5")),
        workdir=tmp_path,
        attempt_dir=tmp_path / "attempt-1",
        **kw,
    )
    return runner.run(request)


def test_success_with_estimated_cost(tmp_path: Path) -> None:
    result = attempt(tmp_path, config_file(tmp_path))
    assert result.ok, result.outcome
    d = result.to_dict()
    assert d["outcome"] == "success" and d["exit_code"] == 0 and d["error_kind"] is None
    assert d["input_tokens"] > 0 and d["output_tokens"] > 0
    assert d["cost_source"] == "estimated from genai-prices"
    expected = (d["input_tokens"] * 1.0 + d["output_tokens"] * 5.0) / 1e6  # Haiku 4.5 prices
    assert d["cost_usd"] == pytest.approx(expected, rel=1e-3)
    assert d["model"] == "claude-haiku-4-5" and d["session_id"]
    log = (tmp_path / "attempt-1" / "stdout.jsonl").read_text().splitlines()
    assert json.loads(log[-1])["type"] == "result"
    assert (tmp_path / "attempt-1" / "prompt.md").read_text() == "fix the bug"


def test_reported_cost_wins(tmp_path: Path) -> None:
    path = config_file(tmp_path)
    path.write_text(path.read_text().replace('"--verbose",', '"--verbose", "--report-cost", "0.25",'))
    result = attempt(tmp_path, path)
    assert result.cost_usd == 0.25 and result.cost_source == "reported"


def test_rate_limit_aborts_early_with_retry_after(tmp_path: Path) -> None:
    env = 'ADW_DRY_RUN_FAIL = "rate_limit", ADW_DRY_RUN_RETRY_AFTER = "42", ADW_DRY_RUN_RETRY_DELAY_MS = "5000"'
    result = attempt(tmp_path, config_file(tmp_path, env))
    assert result.outcome.error_kind is ErrorKind.RATE_LIMITED
    assert result.outcome.retry_after_s == 42
    assert result.run is not None and result.run.ended_by == "aborted"
    assert result.aborted_on is not None and result.aborted_on.signal is ErrorKind.RATE_LIMITED
    # the CLI would have waited 5 s between its retries; the early abort did not
    assert result.run.duration_s < 4


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("auth", ErrorKind.AUTH_FAILED),
        ("quota", ErrorKind.QUOTA_EXHAUSTED),
        ("overloaded", ErrorKind.OVERLOADED),
        ("max_turns", ErrorKind.MAX_TURNS),
        ("budget", ErrorKind.BUDGET_EXCEEDED),
        ("crash", ErrorKind.CRASHED),
    ],
)
def test_injected_failures_are_classified(tmp_path: Path, kind: str, expected: ErrorKind) -> None:
    result = attempt(tmp_path, config_file(tmp_path, f'ADW_DRY_RUN_FAIL = "{kind}", ADW_DRY_RUN_RETRY_DELAY_MS = "1"'))
    assert result.outcome.error_kind is expected, result.outcome


def test_hung_cli_is_stalled_by_idle_timeout(tmp_path: Path) -> None:
    result = attempt(tmp_path, config_file(tmp_path, 'ADW_DRY_RUN_FAIL = "hang"'), idle_timeout_s=0.5)
    assert result.outcome.error_kind is ErrorKind.STALLED
    assert result.run is not None and result.run.ended_by == "idle_timeout"


def test_missing_binary_is_a_launch_failure(tmp_path: Path) -> None:
    path = config_file(tmp_path, extra='[providers.ghost]\ncommand_template = ["adw-no-such-agent-cli"]\n')
    result = attempt(tmp_path, path, provider="ghost")
    assert result.outcome.error_kind is ErrorKind.LAUNCH_FAILED
    assert "adw-no-such-agent-cli not found on PATH" in (result.outcome.message or "")


def test_env_allowlist_key_only_for_its_provider_and_big_prompt_on_stdin(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        textwrap.dedent(
            """
            import hashlib, json, os, sys
            data = sys.stdin.buffer.read()
            out = {"env": dict(os.environ), "sha": hashlib.sha256(data).hexdigest(), "argv": sys.argv[1:]}
            open(os.environ["PROBE_OUT"], "w").write(json.dumps(out))
            print(json.dumps({"type": "result", "subtype": "success", "is_error": False, "result": "ok",
                              "session_id": "s", "usage": {"input_tokens": 1, "output_tokens": 1}}))
            """
        )
    )
    out = tmp_path / "probe.json"
    extra = f"""
    [providers.probe]
    command_template = ["{sys.executable}", "{probe}", "{{model}}", "{{task_id}}"]
    prompt_stdin = true
    requires_api_key = true
    api_key_env = "PROBE_KEY"
    pass_api_key_as = "ANTHROPIC_AUTH_TOKEN"
    env = {{ PROBE_OUT = "{out}", ANTHROPIC_BASE_URL = "http://127.0.0.1:9" }}
    """
    environ = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "PROBE_KEY": "probe-secret",
        "OTHER_API_KEY": "must-not-leak",
        "GITHUB_TOKEN": "must-not-leak-either",
    }
    prompt = "title: $(rm -rf ~)\n" + "x" * 300_000
    result = attempt(
        tmp_path,
        config_file(tmp_path, extra=extra),
        prompt=prompt,
        provider="probe",
        model="m",
        environ=environ,
    )
    assert result.ok, result.outcome
    seen = json.loads(out.read_text())
    assert seen["sha"] == hashlib.sha256(prompt.encode()).hexdigest()
    assert seen["argv"] == ["m", "t1"]
    assert seen["env"]["ANTHROPIC_AUTH_TOKEN"] == "probe-secret"
    assert seen["env"]["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:9"
    assert "PROBE_KEY" not in seen["env"] and "OTHER_API_KEY" not in seen["env"] and "GITHUB_TOKEN" not in seen["env"]
    assert seen["env"]["HOME"] == str(tmp_path)


def test_inject_preamble_precedes_prompt(tmp_path: Path) -> None:
    preamble = tmp_path / "role.md"
    preamble.write_text("You are the architect.\n")
    result = attempt(tmp_path, config_file(tmp_path), inject=preamble)
    assert result.ok
    assert (tmp_path / "attempt-1" / "prompt.md").read_text() == "You are the architect.\n\nfix the bug"


def test_cli_providers_test_and_parse(tmp_path: Path) -> None:
    path = config_file(tmp_path)
    r = CliRunner().invoke(cli, ["providers", "test", "dry", "--config", str(path), "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    keys = {
        "outcome",
        "error_kind",
        "exit_code",
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
        "cost_usd",
        "cost_source",
        "model",
        "session_id",
        "num_turns",
        "duration_s",
        "result_text",
    }
    assert keys <= set(data) and data["outcome"] == "success"

    bad = config_file(tmp_path, 'ADW_DRY_RUN_FAIL = "auth"', name="bad.toml")
    r = CliRunner().invoke(cli, ["providers", "test", "dry", "--config", str(bad)])
    assert r.exit_code == 1 and "✗ dry / claude-haiku-4-5: auth_failed" in r.output

    result = attempt(tmp_path, path)
    r = CliRunner().invoke(cli, ["parse", "--format", "claude-stream-json", str(result.log_path), "--json"])
    parsed = json.loads(r.output)
    assert parsed["exit_code"] is None and parsed["outcome"] == "success"
    assert parsed["input_tokens"] == result.summary.usage.input_tokens
    assert parsed["cost_source"] == "estimated from genai-prices"
    assert parsed["cost_usd"] == pytest.approx(result.cost_usd)
    assert summarize_file(result.log_path, "claude-stream-json").summary.session_id == result.summary.session_id
