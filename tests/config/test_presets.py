"""Presets for OpenAI-compatible endpoints: each one run for real through tools/openrouter-cli.py
against the fake OpenAI-compatible server on loopback (``base_url`` pointed at it)."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from adw_modules.config.presets import BUILTIN_PRESETS, OPENROUTER_CLI
from adw_modules.config.schema import ConfigError, Target, load_config
from adw_modules.routing.providers import ProviderRegistry
from adw_modules.workers.attempt import AttemptRequest, AttemptRunner
from tests.fakes.openai_api import FakeOpenAIServer, success

MODEL = "vendor/model-7b"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAIServer]:
    answer = success("Done.", prompt_tokens=321, completion_tokens=12, cost=0.00042)
    with FakeOpenAIServer(default=answer) as server:
        yield server


def write(tmp_path: Path, provider: str) -> Path:
    path = tmp_path / "config.toml"
    body = f'[providers.p]\n{textwrap.dedent(provider)}\n[routing]\ndefault_provider = "p"\ndefault_model = "{MODEL}"\n'
    path.write_text(body)
    return path


def run_attempt(tmp_path: Path, config_path: Path, environ: dict[str, str]) -> dict:
    config = load_config(config_path)
    registry = ProviderRegistry(config, environ=environ)
    runner = AttemptRunner(config, registry, environ=registry.environ, kill_grace_s=1.0)
    request = AttemptRequest(
        task_id="t1",
        prompt="say done",
        target=Target("p", MODEL),
        workdir=tmp_path,
        attempt_dir=tmp_path / "attempt",
        timeout_s=60,
    )
    return runner.run(request).to_dict()


BASE_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
# preset -> (the fake's base URL to use, the key's variable and value, the Authorization sent)
CASES = {
    "nvidia-nim": ("v1_url", {"NVIDIA_API_KEY": "nvapi-test"}, "Bearer nvapi-test"),
    "openrouter": ("base_url", {"OPENROUTER_API_KEY": "sk-or-test"}, "Bearer sk-or-test"),
    "lmstudio": ("v1_url", {}, "Bearer no-key"),
    "ollama": ("v1_url", {}, "Bearer no-key"),
}


@pytest.mark.parametrize("preset", sorted(CASES))
def test_each_preset_runs_against_an_openai_compatible_server(
    preset: str, fake: FakeOpenAIServer, tmp_path: Path
) -> None:
    url_attr, keys, authorization = CASES[preset]
    url = getattr(fake, url_attr)
    path = write(tmp_path, f'preset = "{preset}"\nbase_url = "{url}"\n')
    seen = len(fake.requests)
    result = run_attempt(tmp_path, path, {**BASE_ENV, **keys})
    assert result["outcome"] == "success", result
    assert (result["input_tokens"], result["output_tokens"], result["cost_usd"]) == (321, 12, 0.00042)
    request = fake.requests[seen]
    assert request.path == {"v1_url": "/v1", "base_url": "/api/v1"}[url_attr] + "/chat/completions"
    assert request.headers["authorization"] == authorization
    assert request.json["model"] == MODEL


def test_presets_fill_url_key_and_limits(tmp_path: Path) -> None:
    expected = {
        "nvidia-nim": ("https://integrate.api.nvidia.com/v1", "NVIDIA_API_KEY", 40, None),
        "lmstudio": ("http://localhost:1234/v1", None, None, 1),
        "ollama": ("http://localhost:11434/v1", None, None, 1),
        "openrouter": ("https://openrouter.ai/api/v1", "OPENROUTER_API_KEY", None, None),
    }
    assert set(expected) == set(BUILTIN_PRESETS)
    for name, (url, key_env, rpm, concurrency) in expected.items():
        pc = load_config(write(tmp_path, f'preset = "{name}"')).providers["p"]
        assert (pc.base_url, pc.api_key_env, pc.rpm, pc.max_concurrency) == (url, key_env, rpm, concurrency)
        assert pc.requires_api_key is (key_env is not None)
        assert pc.command_template[0] == OPENROUTER_CLI and "{base_url}" in pc.command_template
        assert pc.params["base_url"] == url and pc.output_format == "claude-stream-json"
        assert (pc.cli, pc.api_format, pc.preset) == ("openrouter-cli", "openai", name)


def test_an_explicit_key_and_limits_override_the_preset(fake: FakeOpenAIServer, tmp_path: Path) -> None:
    path = write(tmp_path, f'preset = "nvidia-nim"\nbase_url = "{fake.v1_url}"\napi_key_env = "MY_NIM_KEY"\nrpm = 5\n')
    pc = load_config(path).providers["p"]
    assert (pc.api_key_env, pc.rpm) == ("MY_NIM_KEY", 5)
    i = pc.command_template.index("--api-key-env")
    assert pc.command_template[i + 1] == "MY_NIM_KEY"
    seen = len(fake.requests)
    # The preset's own variable is set too, to a wrong key: the explicit reference must win.
    result = run_attempt(tmp_path, path, {**BASE_ENV, "MY_NIM_KEY": "mine", "NVIDIA_API_KEY": "not-this"})
    assert result["outcome"] == "success", result
    assert fake.requests[seen].headers["authorization"] == "Bearer mine"


def test_a_preset_needing_a_key_is_unavailable_without_it(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, 'preset = "nvidia-nim"'))
    availability = ProviderRegistry(config, environ=BASE_ENV).availability("p")
    assert not availability.available and "NVIDIA_API_KEY" in (availability.reason or "")


def test_an_unknown_preset_is_a_config_error_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, 'description = "x"\npreset = "nvidia-nimm"')
    with pytest.raises(ConfigError) as err:
        load_config(path)
    issue = err.value.issues[0]  # then: routing's default provider is not defined
    assert issue.startswith(f'{path}:3: providers.p: preset "nvidia-nimm" is unknown (known: nvidia-nim, lmstudio')


def test_a_bad_base_url_is_refused(tmp_path: Path) -> None:
    for url, why in (("ftp://x", "is not an http(s) URL"), ("http://u:pw@host/v1", "holds a password")):
        with pytest.raises(ConfigError) as err:
            load_config(write(tmp_path, f'preset = "ollama"\nbase_url = "{url}"'))
        assert why in err.value.issues[0] and ":3:" in err.value.issues[0]
