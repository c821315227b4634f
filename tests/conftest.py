from __future__ import annotations

import logging
import os
import socket
import stat
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import settings

# A busy CI machine or a garbage collection can take one example past hypothesis's 200 ms
# deadline; what the property tests check is behaviour, not speed (bench/ measures that).
settings.register_profile("adw", deadline=None)
settings.load_profile("adw")

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


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A loopback port that refuses connections for the whole test: bound but not listening, and
    held, so no other process can take it between the pick and the use."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """The CLI and the service configure the "adw" loggers process-wide; give every test the
    configuration it started with, so one test's log stream never swallows another's records."""
    saved = [
        (lg, lg.handlers[:], lg.filters[:], lg.level, lg.propagate)
        for lg in (logging.getLogger("adw"), logging.getLogger("apscheduler"))
    ]
    yield
    for lg, handlers, filters, level, propagate in saved:
        lg.handlers[:], lg.filters[:] = handlers, filters
        lg.setLevel(level)
        lg.propagate = propagate
