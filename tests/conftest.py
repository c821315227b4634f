from __future__ import annotations

import os
import stat
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# A minimal valid config: one provider whose program is a real executable in the temp dir.
BASE_CONFIG = """
[providers.alpha]
command_template = ["./agent", "--model", "{model}"]
[providers.alpha.models.a-small]
tier = "fast"
capabilities = ["code", "docs"]
price = { input_per_mtok = 1.0, output_per_mtok = 2.0 }
[providers.alpha.models.a-big]
tier = "advanced"
capabilities = ["code"]
context_window = 400000
price = { input_per_mtok = 10.0, output_per_mtok = 40.0 }

[providers.beta]
command_template = ["./agent", "--model", "{model}"]
requires_api_key = true
api_key_env = "BETA_KEY"
[providers.beta.models.b-mid]
tier = "standard"
capabilities = ["code", "docs"]
context_window = 200000
price = { input_per_mtok = 3.0, output_per_mtok = 6.0 }

[routing]
enabled = true
default_provider = "alpha"
default_model = "a-small"
"""


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., Path]:
    """Write a config (dedented) next to an executable ./agent and return its path."""
    agent = tmp_path / "agent"
    agent.write_text("#!/bin/sh\nexit 0\n")
    agent.chmod(agent.stat().st_mode | stat.S_IXUSR)

    def make(text: str, *, base: bool = False, name: str = "config.toml") -> Path:
        body = (BASE_CONFIG if base else "") + textwrap.dedent(text)
        path = tmp_path / name
        path.write_text(body)
        return path

    return make


@pytest.fixture(autouse=True)
def _no_stray_config_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ADW_CONFIG", raising=False)
    for key in list(os.environ):
        if key.endswith("_API_KEY") or key == "BETA_KEY":
            monkeypatch.delenv(key, raising=False)
