"""Seed 004's Python examples run against adw's provider registry, with only config loading adapted.

The seed's registry is built by ``get_configured_registry()`` from ``orchestrator.providers``
(reading .orchestrator/providers.yaml), or by ``ProviderRegistry()`` plus ``register(...)``
calls; adw's is ``adw_modules.providers.get_configured_registry()`` reading config.toml
($ADW_CONFIG).  That import, and the registration lines, are the only edits.  The config below
declares the seed's providers and models (Claude, Gemini, a disabled Ollama) with the seed's
prices, so the snippets' own "# Output:" comments are what they print.

Not run, because they are not registry queries: the abstract interfaces and dataclass shown
as definitions (blocks 0, 1, 9), ``ModelRouterV2`` and the before/after sketch (4-6), and the
examples that call ``provider.generate(...)`` or implement a provider class (13-15): adw runs
agent CLIs through its coordinator, and adds a provider with a ``[providers.NAME]`` table.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import re
from pathlib import Path
from typing import Any

import pytest

from adw_modules.providers import get_configured_registry
from adw_modules.routing.providers import ModelTier
from tests.paths import FIXTURES, REPO

SEED = FIXTURES / "seeds" / "004_provider_agnostic.txt"
SHARED_SEED = REPO.parent / "shared" / "seeds" / "004_23dc15fdb44344b4.txt"
BLOCKS = re.findall(r"```python\n(.*?)```", SEED.read_text(encoding="utf-8"), re.S)
RUN = {2: "key methods", 3: "config usage", 7: "cost optimisation", 8: "resilience"}
RUN |= {10: "example 1", 11: "example 2", 12: "example 3", 16: "quick start 3"}
NOT_RUN = {0, 1, 4, 5, 6, 9, 13, 14, 15}

SEED_IMPORT = "from orchestrator.providers import get_configured_registry"
ADW_IMPORT = "from adw_modules.providers import get_configured_registry"
REGISTRATION = re.compile(r"registry = ProviderRegistry\(\)\n\n# Register providers\n(registry\.register\(.*\)\n)+")


def _model(name: str, display: str, tier: str, caps: list[str], ctx: int, inp: float, out: float) -> str:
    return (
        f'[providers.{name.split("/")[0]}.models."{name.split("/")[1]}"]\n'
        f'display_name = "{display}"\ntier = "{tier}"\ncapabilities = {caps!r}\n'.replace("'", '"')
        + f"context_window = {ctx}\nprice = {{ input_per_mtok = {inp}, output_per_mtok = {out} }}\n"
    )


CONFIG = (
    '[providers.claude]\ncommand_template = ["claude", "-p", "{prompt_file}", "--model", "{model}"]\n'
    'requires_api_key = true\napi_key_env = "ANTHROPIC_API_KEY"\n'
    + _model(
        "claude/claude-sonnet-4-5-20250929",
        "Claude Sonnet 4.5",
        "advanced",
        ["code", "planning", "review"],
        200000,
        3,
        15,
    )
    + _model("claude/claude-opus-4", "Claude Opus 4", "advanced", ["code", "review"], 200000, 15, 75)
    + _model("claude/claude-3-5-sonnet", "Claude Sonnet 3.5", "advanced", ["code", "review"], 200000, 3, 15)
    + _model("claude/claude-3-5-haiku", "Claude Haiku 3.5", "fast", ["code"], 200000, 0.8, 4)
    + '[providers.gemini]\ncommand_template = ["gemini", "-p", "{prompt}", "-m", "{model}"]\n'
    + _model("gemini/gemini-2.0-flash", "Gemini 2.0 Flash", "fast", ["code", "planning"], 1000000, 0.01875, 0.075)
    + _model("gemini/gemini-2.0-pro", "Gemini 2.0 Pro", "standard", ["code", "planning"], 2000000, 0.1, 0.4)
    + _model("gemini/gemini-1.5-pro", "Gemini 1.5 Pro", "standard", ["code"], 2000000, 1.25, 5)
    + _model("gemini/gemini-1.5-flash", "Gemini 1.5 Flash", "fast", ["code"], 1000000, 0.075, 0.3)
    + '[providers.ollama]\nenabled = {ollama}\ncommand_template = ["ollama-agent", "{prompt_file}", "{model}"]\n'
    + 'env = { OLLAMA_HOST = "http://localhost:11434" }\n'
    + "".join(
        _model(f"ollama/{m}", m, tier, ["code"], 8192, 0, 0)
        for m, tier in (("llama3:70b", "advanced"), ("llama3:8b", "fast"), ("codellama:34b", "standard"))
    )
    + _model("ollama/mistral:7b", "Mistral 7B", "fast", ["docs"], 32000, 0, 0)
    + _model("ollama/mixtral:8x7b", "Mixtral 8x7B", "standard", ["docs"], 32000, 0, 0)
    + _model("ollama/codellama:7b", "CodeLlama 7B", "fast", ["code"], 16000, 0, 0)
    + '[routing]\ndefault_provider = "claude"\ndefault_model = "claude-sonnet-4-5-20250929"\n'
)


@pytest.fixture
def seed_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """config.toml as $ADW_CONFIG; claude, gemini and ollama-agent on PATH; Claude's key set."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for program in ("claude", "gemini", "ollama-agent"):
        (bin_dir / program).write_text("#!/bin/sh\n")
        (bin_dir / program).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    path = tmp_path / "config.toml"
    path.write_text(CONFIG.replace("{ollama}", "false"))
    monkeypatch.setenv("ADW_CONFIG", str(path))
    return path


def adapted(index: int) -> str:
    """Block ``index`` with config loading adapted to adw, and nothing else."""
    block = BLOCKS[index].replace(SEED_IMPORT, ADW_IMPORT)
    return REGISTRATION.sub(f"{ADW_IMPORT}\nregistry = get_configured_registry()\n", block)


def run(index: int, **names: Any) -> dict[str, Any]:
    """Execute the adapted block (``await`` at top level allowed, as the seed writes it).

    Blocks that use ``registry`` without building it continue an earlier example: they get
    the configured registry, as the one before them built it.
    """
    namespace: dict[str, Any] = {"ModelTier": ModelTier, "registry": get_configured_registry(), **names}
    code = compile(adapted(index), f"{SEED}:block{index}", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    result = eval(code, namespace)
    if inspect.iscoroutine(result):
        asyncio.run(result)
    return namespace


def shown_output(index: int) -> list[str]:
    """What the block's comments say it prints: "# Output: TEXT", or "# Output:" and the comment
    lines right after it."""
    out: list[str] = []
    following = False
    for line in BLOCKS[index].splitlines():
        if line.startswith("# Output:"):
            rest = line.removeprefix("# Output:").strip()
            out += [rest] if rest else []
            following = not rest
        elif following and line.startswith("# "):
            out.append(line[2:])
        else:
            following = False
    return out


def test_the_fixture_is_the_shared_seed_and_every_block_is_accounted_for() -> None:
    if SHARED_SEED.exists():
        assert SEED.read_bytes() == SHARED_SEED.read_bytes()
    assert len(BLOCKS) == 17 and set(RUN) | NOT_RUN == set(range(17))
    assert REGISTRATION.search(BLOCKS[2])
    for index in RUN:
        assert "from orchestrator" not in adapted(index) and "register(" not in adapted(index)


def test_key_methods(seed_config: Path) -> None:
    names = run(2)
    assert [m.model_id for m in names["models"]] == ["claude-3-5-sonnet", "claude-sonnet-4-5-20250929"]
    assert names["cheapest"].model_id == "gemini-2.0-flash"
    assert names["best"].model_id == "claude-3-5-sonnet"  # advanced, 200K; Ollama is disabled: no local one
    # The seed's own comment under check_availability():
    assert names["availability"] == {"claude": True, "gemini": True, "ollama": False}


def test_config_usage_and_example_1(seed_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(3)
    names = run(10)
    assert capsys.readouterr().out.splitlines() == shown_output(10) == ["Available: claude, gemini", "Total models: 8"]
    summary = names["summary"]
    assert summary["by_provider"]["ollama"] == {"enabled": False, "available": False, "local": True, "models": 0}
    assert summary["by_tier"] == {"fast": 3, "standard": 2, "advanced": 3, "none": 0}


def test_cost_optimisation_returns_what_the_seed_says(seed_config: Path) -> None:
    names = run(7)
    shown = re.search(r"# Returns: (\S+)", BLOCKS[7])
    assert shown is not None and names["model"].model_id == shown.group(1) == "gemini-2.0-flash"
    assert names["model"].cost_per_1k_input == pytest.approx(0.00001875)


def test_resilience(seed_config: Path) -> None:
    assert run(8)["enabled_providers"] == ["claude", "gemini"]


def test_example_2_prints_the_seed_output(seed_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(11)
    # adw lists cheapest first (the seed printed in registration order): the same lines.
    assert sorted(capsys.readouterr().out.splitlines()) == sorted(shown_output(11))


def test_example_3_prints_the_seed_output(seed_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(12)
    assert capsys.readouterr().out.splitlines() == shown_output(12)


def test_quick_start_cost_comparison(seed_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(16)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Cost comparison for 3K input + 1K output tokens:"
    assert lines[2] == f"{'Gemini 2.0 Flash':20} $0.000131 (fast tier)"  # 3000 * 0.01875/M + 1000 * 0.075/M
    assert len(lines) == 2 + 8


def test_prefer_local_picks_the_local_provider_when_one_is_usable(seed_config: Path) -> None:
    seed_config.write_text(CONFIG.replace("{ollama}", "true"))
    registry = get_configured_registry()
    assert registry.is_local("ollama") and not registry.is_local("claude")
    best_local = registry.find_best_model(capability="code", prefer_local=True)
    assert best_local is not None and (best_local.provider, best_local.model_id) == ("ollama", "llama3:70b")
    best = registry.find_best_model(capability="code", prefer_local=False)
    assert best is not None and (best.provider, best.model_id) == ("claude", "claude-3-5-sonnet")
    reviewer = registry.find_best_model(capability="review", prefer_local=True)
    assert reviewer is not None and reviewer.provider == "claude"  # no local model reviews


def test_estimated_cost_and_awaitable_availability(seed_config: Path) -> None:
    registry = get_configured_registry()
    (sonnet,) = registry.list_models(provider="claude", tier="advanced", max_cost=0.003, capability="planning")
    assert sonnet.estimated_cost(3000, 1000) == pytest.approx(0.009 + 0.015)
    assert sonnet.tier is ModelTier.ADVANCED and sonnet.tier.value == "advanced" and sonnet.tier == "advanced"
    assert sonnet.cost_per_1k_output == pytest.approx(0.015)

    async def ask() -> dict[str, bool]:
        return await registry.check_availability()

    assert asyncio.run(ask()) == registry.check_availability() == {"claude": True, "gemini": True, "ollama": False}
