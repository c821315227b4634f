"""The CLI-interface registry: api_format and proxy support inherited from the program or declared,
a proxy refused (file and line) for a CLI that cannot use one, and ``adw providers`` showing it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from adw_modules.config.interfaces import KNOWN_CLIS, cli_name
from adw_modules.config.schema import ConfigError, Target, load_config
from adw_modules.routing.providers import ProviderRegistry
from adw_modules.workers.attempt import AttemptRequest, AttemptRunner
from adws import views
from tests.paths import REPO

GOLDEN = REPO / "tests" / "adws" / "golden" / "cli_providers_interfaces.txt"


def write(tmp_path: Path, providers: str, default: str = "p") -> Path:
    path = tmp_path / "config.toml"
    path.write_text(f'{providers}\n[routing]\ndefault_provider = "{default}"\ndefault_model = "m"\n')
    return path


def test_registry_names() -> None:
    assert cli_name("/opt/x/tools/openrouter-cli.py") == "openrouter-cli"
    assert cli_name("claude.exe") == "claude" and cli_name("codex") == "codex"
    assert {c.name: c.api_format for c in KNOWN_CLIS.values()} == {
        "claude": "anthropic",
        "codex": "openai",
        "gemini": "gemini",
        "opencode": "openai",
        "openrouter-cli": "openai",
    }
    assert not KNOWN_CLIS["opencode"].proxy_compatible
    # Codex reads its base URL from its config, not the environment: a proxy adw passed in an
    # environment variable would be ignored and its calls would go to the vendor.
    assert not KNOWN_CLIS["codex"].proxy_compatible and KNOWN_CLIS["codex"].proxy_env is None
    assert KNOWN_CLIS["claude"].proxy_env == "ANTHROPIC_BASE_URL"


def test_a_proxy_for_codex_is_refused_with_file_and_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[providers.p]\ncommand_template = ["codex", "exec", "--json"]\n'
        'output_format = "codex-json"\nproxy = "http://127.0.0.1:4000/v1"\n',
    )
    with pytest.raises(ConfigError) as err:
        load_config(path)
    (issue,) = err.value.issues
    assert issue.startswith(f'{path}:4: providers.p: proxy = "http://127.0.0.1:4000/v1", but codex')
    assert "cannot use a proxy" in issue


def test_a_proxy_for_a_cli_that_cannot_use_one_names_file_and_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[providers.p]\ncommand_template = ["opencode", "run", "--format", "json"]\n'
        'output_format = "opencode-json"\nproxy = "http://127.0.0.1:3456"\n',
    )
    with pytest.raises(ConfigError) as err:
        load_config(path)
    (issue,) = err.value.issues
    assert issue.startswith(f'{path}:4: providers.p: proxy = "http://127.0.0.1:3456", but opencode')
    assert "cannot use a proxy" in issue


def test_an_unknown_cli_needs_a_declared_interface_for_a_proxy(tmp_path: Path) -> None:
    table = '[providers.p]\ncommand_template = ["my-agent"]\nproxy = "http://127.0.0.1:9"\n'
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, table))
    assert "my-agent (not a CLI adw knows) cannot use a proxy" in err.value.issues[0]
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, table + "proxy_compatible = true\n"))
    assert "proxy needs proxy_env" in err.value.issues[0]
    pc = load_config(write(tmp_path, table + 'proxy_compatible = true\nproxy_env = "MY_BASE"\napi_format = "gemini"\n'))
    p = pc.providers["p"]
    assert (p.env["MY_BASE"], p.api_format, p.cli) == ("http://127.0.0.1:9", "gemini", "my-agent")


def test_claude_through_a_proxy_gets_it_in_its_environment(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[providers.p]\ncommand_template = ["claude", "-p"]\nproxy = "http://127.0.0.1:3456"\n'
        'requires_api_key = true\napi_key_env = "CCR_KEY"\npass_api_key_as = "ANTHROPIC_AUTH_TOKEN"\n',
    )
    config = load_config(path)
    pc = config.providers["p"]
    assert (pc.cli, pc.api_format, pc.proxy_compatible, pc.proxy) == ("claude", "anthropic", True, pc.proxy)
    registry = ProviderRegistry(config, environ={"PATH": "/usr/bin", "CCR_KEY": "k"})
    env = AttemptRunner(config, registry, environ=registry.environ).child_env("p")
    assert env["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:3456" and env["ANTHROPIC_AUTH_TOKEN"] == "k"


def test_proxy_and_env_must_agree_and_urls_are_checked(tmp_path: Path) -> None:
    base = '[providers.p]\ncommand_template = ["claude"]\n'
    cases = {
        'proxy = "http://a:1"\nenv = { ANTHROPIC_BASE_URL = "http://b:2" }\n': "disagree",
        'proxy = "http://user:pw@a:1"\n': "holds a password",
        'proxy = "a:1"\n': "is not an http(s) URL",
        'api_format = "cobol"\n': 'api_format "cobol" is unknown',
        'proxy_env = "LD_PRELOAD"\n': "is not a variable adw will set",
        'proxy_env = "A B"\n': "is not a variable adw will set",
    }
    for extra, why in cases.items():
        with pytest.raises(ConfigError) as err:
            load_config(write(tmp_path, base + extra))
        assert why in err.value.issues[0], extra
    # The password is never echoed back: the message shows the URL with it masked.
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, base + 'proxy = "http://user:s3cr3t-pw@a:1"\n'))
    assert "s3cr3t" not in str(err.value) and 'proxy = "http://user:***@a:1" holds a password' in str(err.value)
    # OpenRouter's Anthropic endpoint written as env is shown as the provider's proxy.
    pc = load_config(write(tmp_path, base + 'env = { ANTHROPIC_BASE_URL = "https://openrouter.ai/api" }\n'))
    assert pc.providers["p"].proxy == "https://openrouter.ai/api"


def test_a_proxy_for_the_openai_wrapper_becomes_its_base_url(tmp_path: Path) -> None:
    path = write(tmp_path, '[providers.p]\npreset = "openrouter"\nproxy = "http://127.0.0.1:4000/v1"\n')
    pc = load_config(path).providers["p"]
    assert pc.base_url == pc.params["base_url"] == "http://127.0.0.1:4000/v1"
    assert pc.env["OPENROUTER_BASE_URL"] == "http://127.0.0.1:4000/v1"


def test_the_cli_inject_file_comes_before_the_rules(tmp_path: Path) -> None:
    (tmp_path / "claude-inject.md").write_text("You are Claude Code; CLAUDE.md rules apply.\n")
    (tmp_path / "role.md").write_text("Role: executor.\n")
    path = write(tmp_path, '[providers.p]\ncommand_template = ["claude"]\ninject = "claude-inject.md"\n')
    config = load_config(path)
    runner = AttemptRunner(config, ProviderRegistry(config, environ={}), environ={})
    request = AttemptRequest("t", "Fix it.", Target("p", "m"), tmp_path, tmp_path / "a", inject=tmp_path / "role.md")
    assert runner.prompt_text(request) == "You are Claude Code; CLAUDE.md rules apply.\n\nRole: executor.\n\nFix it."


def test_adw_providers_shows_each_interface(tmp_path: Path) -> None:
    (tmp_path / "inject.md").write_text("x")
    path = write(
        tmp_path,
        """
[providers.claude-ccr]
command_template = ["/nonexistent/claude", "-p"]
proxy = "http://127.0.0.1:3456"
inject = "inject.md"
[providers.claude-openrouter]
command_template = ["/nonexistent/claude", "-p"]
env = { ANTHROPIC_BASE_URL = "https://openrouter.ai/api" }
[providers.nim]
preset = "nvidia-nim"
[providers.local]
preset = "ollama"
[providers.codex]
command_template = ["/nonexistent/codex", "exec"]
output_format = "codex-json"
[providers.opencode]
command_template = ["/nonexistent/opencode", "run"]
output_format = "opencode-json"
[providers.gemini]
command_template = ["/nonexistent/gemini"]
output_format = "gemini-stream-json"
[providers.mine]
command_template = ["/nonexistent/my-agent"]
""",
        default="claude-ccr",
    )
    config = load_config(path)
    data = views.providers_data(config, ProviderRegistry(config, environ={"PATH": "/nonexistent"}))
    text = views.providers_text(data).replace(str(tmp_path), "<tmp>")
    if os.environ.get("ADW_UPDATE_GOLDEN"):
        GOLDEN.write_text(text + "\n")
    assert text + "\n" == GOLDEN.read_text()
    row = next(r for r in data["providers"] if r["name"] == "nim")
    assert (row["preset"], row["api_format"], row["proxy_compatible"], row["rpm"]) == ("nvidia-nim", "openai", True, 40)
