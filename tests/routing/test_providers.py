from __future__ import annotations

import sys
from pathlib import Path

import pytest

from adw_modules.config.schema import load_config
from adw_modules.outcomes import Usage
from adw_modules.routing.pricing import library_price
from adw_modules.routing.providers import MAX_ARG_BYTES, ProviderRegistry, SecretError, TemplateError


def registry(make_config, text: str = "", env: dict[str, str] | None = None, **kw) -> ProviderRegistry:
    config = load_config(make_config(text, base=True))
    return ProviderRegistry(config, environ=env if env is not None else {"PATH": "/usr/bin:/bin"}, **kw)


def test_availability_reasons(make_config, tmp_path: Path) -> None:
    text = """
    [providers.off]
    enabled = false
    command_template = ["sh"]
    [providers.nobin]
    command_template = ["definitely-not-a-binary-xyz"]
    [providers.notexec]
    command_template = ["./plain-file"]
    [providers.secretcmd]
    command_template = ["sh"]
    requires_api_key = true
    api_key_env = "X_KEY"
    api_key_command = ["false"]
    """
    (tmp_path / "plain-file").write_text("")
    reg = registry(make_config, text)
    assert reg.availability("alpha").available
    assert reg.availability("beta").reason == "BETA_KEY not set"
    assert reg.availability("off").reason == "enabled = false"
    assert reg.availability("nobin").reason == "definitely-not-a-binary-xyz not found on PATH"
    assert "is not executable (chmod +x" in (reg.availability("notexec").reason or "")
    assert reg.availability("secretcmd").reason == "api_key_command failed (exit 1)"
    assert set(reg.unavailable()) == {"beta", "off", "nobin", "notexec", "secretcmd"}
    assert reg.available_names() == ["alpha"]


def test_api_key_from_env_and_command_never_in_reason(make_config) -> None:
    text = """
    [providers.vault]
    command_template = ["sh"]
    requires_api_key = true
    api_key_env = "VAULT_KEY"
    api_key_command = ["printf", "s3cr3t-value"]
    """
    reg = registry(make_config, text, env={"PATH": "/usr/bin:/bin", "BETA_KEY": "beta-secret"})
    assert reg.api_key("beta") == "beta-secret"
    assert reg.api_key("vault") == "s3cr3t-value"
    assert reg.api_key("alpha") is None
    assert reg.availability("vault").available


def test_secret_command_failures_do_not_leak(make_config) -> None:
    text = """
    [providers.v]
    command_template = ["sh"]
    api_key_env = "K"
    api_key_command = ["sh", "-c", "echo leaked-secret; echo 'not logged in' >&2; exit 3"]
    """
    reg = registry(make_config, text)
    reason = reg.availability("v").reason or ""
    assert reason == "api_key_command failed (exit 3): not logged in"
    assert "leaked-secret" not in reason

    empty = registry(
        make_config,
        text.replace('"sh", "-c", "echo leaked-secret; echo \'not logged in\' >&2; exit 3"', '"true"'),
    )
    with pytest.raises(SecretError, match="printed nothing"):
        empty.api_key("v")


def test_build_command_fills_placeholders_without_a_shell(make_config, tmp_path: Path) -> None:
    text = """
    [params]
    max_turns = 7
    [providers.t]
    command_template = ["./agent", "--title", "{prompt}", "--model", "{model}", "-p", "{prompt_file}",
                        "--turns", "{max_turns}", "--cwd={workdir}", "{task_id}", "{{literal}}"]
    """
    reg = registry(make_config, text)
    evil = "$(rm -rf ~); `id` && echo pwned"
    argv = reg.get_provider("t").build_command(
        {
            "prompt": evil,
            "model": "m1",
            "prompt_file": "/tmp/p.md",
            "workdir": "/w",
            "task_id": 42,
            "max_turns": 7,
        }
    )
    assert argv == [
        str(tmp_path / "agent"),
        "--title",
        evil,
        "--model",
        "m1",
        "-p",
        "/tmp/p.md",
        "--turns",
        "7",
        "--cwd=/w",
        "42",
        "{literal}",
    ]


def test_build_command_refuses_oversized_argument_and_missing_value(make_config) -> None:
    text = """
    [providers.t]
    command_template = ["./agent", "{prompt}"]
    """
    provider = registry(make_config, text).get_provider("t")
    with pytest.raises(TemplateError, match="prompt_stdin = true"):
        provider.build_command({"prompt": "x" * (MAX_ARG_BYTES + 1)})
    with pytest.raises(TemplateError, match=r"no value for \{prompt\}"):
        provider.build_command({})


def test_python_tools_run_with_this_interpreter(make_config, tmp_path: Path) -> None:
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "x-cli.py").write_text("print('hi')\n")
    text = """
    [providers.py]
    command_template = ["tools/x-cli.py", "--model", "{model}"]
    """
    argv = registry(make_config, text).get_provider("py").build_command({"model": "m"})
    assert argv == [sys.executable, str(tmp_path / "tools" / "x-cli.py"), "--model", "m"]


def test_model_queries_seed_004(make_config) -> None:
    reg = registry(make_config)
    names = [m.name for m in reg.list_models()]
    assert names == ["a-small", "b-mid", "a-big"]  # cheapest first for 3K in + 1K out
    assert [m.name for m in reg.list_models(capability="docs")] == ["a-small", "b-mid"]
    assert [m.name for m in reg.list_models(tier="advanced")] == ["a-big"]
    assert [m.name for m in reg.list_models(max_cost=0.003)] == ["a-small", "b-mid"]
    assert [m.name for m in reg.list_models(min_context=300000)] == ["a-big"]
    assert [m.name for m in reg.list_models(available_only=True)] == ["a-small", "a-big"]
    cheapest = reg.find_cheapest_model(capability="code")
    best = reg.find_best_model(capability="code")
    assert cheapest is not None and cheapest.name == "a-small"
    assert best is not None and best.name == "a-big"
    assert cheapest.estimated_cost() == pytest.approx((3000 * 1.0 + 1000 * 2.0) / 1e6)


def test_price_override_beats_library_and_library_fills_gaps(make_config) -> None:
    text = """
    [providers.c]
    command_template = ["sh"]
    [providers.c.models.claude-sonnet-4-5]
    tier = "standard"
    [providers.c.models.renamed]
    price_ref = "claude-haiku-4-5"
    [providers.c.models.mystery-model]
    """
    reg = registry(make_config, text)
    assert reg.price_for("alpha", "a-small").input_per_mtok == 1.0  # type: ignore[union-attr]
    sonnet = reg.price_for("c", "claude-sonnet-4-5")
    assert sonnet is not None and sonnet.source == "genai-prices" and sonnet.input_per_mtok == 3.0
    assert reg.price_for("c", "renamed") == library_price("claude-haiku-4-5")
    assert reg.price_for("c", "mystery-model") is None
    assert [m.name for m in reg.list_models(provider="c", max_cost=1.0)] == ["renamed", "claude-sonnet-4-5"]


def test_library_price_uses_tiers_for_long_context() -> None:
    price = library_price("claude-sonnet-4-5")
    assert price is not None
    small = price.cost(Usage(input_tokens=100_000, output_tokens=1000))
    assert small == pytest.approx(100_000 * 3 / 1e6 + 1000 * 15 / 1e6)
    big = price.cost(Usage(input_tokens=300_000, output_tokens=1000))
    assert big > 300_000 * 3 / 1e6 + 1000 * 15 / 1e6  # the >200K tier is dearer
    cached = price.cost(Usage(input_tokens=0, cache_read_tokens=100_000))
    assert cached == pytest.approx(0.03)
