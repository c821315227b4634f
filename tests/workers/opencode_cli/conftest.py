"""Fixtures for running the real OpenCode CLI against ``tests.fakes.openai_api`` on loopback.

``opencode_cli`` installs the pinned CLI (and the config-directory dependencies it would
otherwise fetch at run time, see ``install.py``) once per session and FAILS, not skips, when
that is impossible: a missing CLI is a broken setup, not a reason to test less.

Set ``ADW_RECORD_OPENCODE_TRANSCRIPTS=1`` to (re)write ``tests/fixtures/recorded/opencode-cli/``
from the runs; by default tests leave the recorded files alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from adw_modules.outcomes import Outcome, StreamSummary
from adw_modules.workers.classify import classify
from adw_modules.workers.streams import parser_for
from tests.fakes.loopback import LoopbackServer
from tests.fakes.openai_api import FakeOpenAIServer
from tests.node_tools import installed_or_fail
from tests.paths import FIXTURES
from tests.recording import save_transcript
from tests.workers.opencode_cli.install import (
    ensure_opencode_cli,
    ensure_opencode_config_deps,
    seed_config_dir,
)

RECORD_DIR = FIXTURES / "recorded" / "opencode-cli"
FAKE_API_KEY = "sk-fake-opencode-0000"
PROVIDER = "fakeai"
MODEL = "fake-model"
STREAM_FORMAT = "opencode-json"  # adw's name for `opencode run --format json`
# $ per million tokens, so OpenCode reports a cost (0 without one).
MODEL_COST = {"input": 3.0, "output": 15.0, "cache_read": 0.3, "cache_write": 3.75}


def opencode_argv(cli: Path, prompt: str) -> list[str]:
    """Headless, as production runs it.  ``--title`` keeps the session title non-default, so
    OpenCode sends no extra title-generation request to the model (it would race the real one
    for the fake's scripted answers)."""
    return [str(cli), "run", "--format", "json", "-m", f"{PROVIDER}/{MODEL}", "--title", "adw test", prompt]


class ProxyTripwire(LoopbackServer):
    """The CLI's HTTP(S) proxy: every request reaching it was meant for a non-loopback host.

    It answers 403 (so the attempt fails fast) and records ``(method, target)``."""

    def __init__(self) -> None:
        super().__init__(_TripwireHandler)
        self.hits: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def record(self, method: str, target: str) -> None:
        with self._lock:
            self.hits.append((method, target))


class _TripwireHandler(BaseHTTPRequestHandler):
    fake: ProxyTripwire

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _refuse(self) -> None:
        self.fake.record(self.command, self.path)
        self.send_response(403)
        self.send_header("Content-Length", "0")
        self.send_header("Connection", "close")
        self.end_headers()

    do_CONNECT = do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _refuse


@dataclass
class CliRun:
    returncode: int
    stdout: str
    stderr: str
    duration_s: float
    events: list[dict[str, Any]] = field(default_factory=list)

    def of_type(self, type_: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("type") == type_]

    def summary(self) -> StreamSummary:
        """stdout through adw's own parser, line by line as the runner feeds it."""
        parser = parser_for(STREAM_FORMAT)
        for line in self.stdout.splitlines(keepends=True):
            parser.feed(line)
        return parser.finish()

    def outcome(self) -> Outcome:
        return classify(self.summary(), self.returncode, stderr_tail=self.stderr[-4000:])


@pytest.fixture(scope="session")
def opencode_cli() -> tuple[Path, Path]:
    """(the ``opencode`` binary, the pre-installed config-directory dependency tree)."""
    return installed_or_fail(
        lambda: (ensure_opencode_cli(), ensure_opencode_config_deps()),
        "OpenCode CLI",
        "tests/workers/opencode_cli/install.py",
    )


@pytest.fixture
def fake_api() -> Iterator[FakeOpenAIServer]:
    # No default: a request the test did not script answers 500 ("script ran dry").
    with FakeOpenAIServer(api_key=FAKE_API_KEY) as fake:
        yield fake


@pytest.fixture
def tripwire() -> Iterator[ProxyTripwire]:
    with ProxyTripwire() as proxy:
        yield proxy


def opencode_env(home: Path, proxy_url: str, config_path: Path) -> dict[str, str]:
    """A hermetic environment for ``opencode run``, built from scratch (no key, proxy or user
    config of the machine leaks in).  What each piece is for (opencode-ai 1.18.33):

    - ``HOME`` and all ``XDG_*`` dirs inside ``home``: config (``$XDG_CONFIG_HOME/opencode``),
      the SQLite session store and logs (``$XDG_DATA_HOME/opencode``), cache, state.
    - ``OPENCODE_CONFIG``: the test's config file (custom provider, autoupdate/share off).
    - ``OPENCODE_DISABLE_MODELS_FETCH``: otherwise it fetches the models.dev catalogue
      (``CONNECT models.opencode.ai:443`` at start); the custom provider lists its own model.
    - ``OPENCODE_DISABLE_AUTOUPDATE``, ``OPENCODE_DISABLE_SHARE``, ``OPENCODE_DISABLE_DEFAULT_PLUGINS``,
      ``OPENCODE_DISABLE_LSP_DOWNLOAD``, ``OPENCODE_DISABLE_CLAUDE_CODE`` (do not read ``~/.claude``):
      no update check, no session sharing, no built-in auth plugins, no language-server downloads.
    - ``HTTPS_PROXY``/``HTTP_PROXY`` (both cases) point at the tripwire and ``NO_PROXY`` covers
      loopback only: any request for another host shows up there as ``CONNECT`` and fails.
    """
    dirs = {
        "XDG_CONFIG_HOME": home / ".config",
        "XDG_CACHE_HOME": home / ".cache",
        "XDG_DATA_HOME": home / ".local" / "share",
        "XDG_STATE_HOME": home / ".local" / "state",
        "TMPDIR": home / "tmp",
    }
    for path in dirs.values():
        path.mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        **{name: str(path) for name, path in dirs.items()},
        "NO_COLOR": "1",
        "OPENCODE_CONFIG": str(config_path),
        "OPENCODE_DISABLE_AUTOUPDATE": "1",
        "OPENCODE_DISABLE_MODELS_FETCH": "1",
        "OPENCODE_DISABLE_SHARE": "1",
        "OPENCODE_DISABLE_DEFAULT_PLUGINS": "1",
        "OPENCODE_DISABLE_LSP_DOWNLOAD": "1",
        "OPENCODE_DISABLE_CLAUDE_CODE": "1",
    }
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        env[name] = proxy_url
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


def opencode_config(base_url: str, api_key: str) -> dict[str, Any]:
    return {
        "$schema": "https://opencode.ai/config.json",
        "autoupdate": False,
        "share": "disabled",
        "provider": {
            PROVIDER: {
                "npm": "@ai-sdk/openai-compatible",
                "name": "Fake OpenAI-compatible API",
                "options": {"baseURL": base_url, "apiKey": api_key},
                "models": {
                    MODEL: {"name": "Fake Model", "cost": MODEL_COST, "limit": {"context": 128000, "output": 4096}}
                },
            }
        },
    }


@pytest.fixture
def run_opencode(
    opencode_cli: tuple[Path, Path], fake_api: FakeOpenAIServer, tripwire: ProxyTripwire, tmp_path: Path
) -> Any:
    cli, deps = opencode_cli
    workdir = tmp_path / "work"
    workdir.mkdir()
    home = tmp_path / "home"

    def run(*, prompt: str = "Say hello", api_key: str = FAKE_API_KEY, timeout: float = 90) -> CliRun:
        config_path = tmp_path / "opencode.json"
        config_path.write_text(json.dumps(opencode_config(fake_api.v1_url, api_key), indent=2) + "\n")
        env = opencode_env(home, tripwire.url(), config_path)
        config_dir = home / ".config" / "opencode"
        if not (config_dir / "node_modules").exists():
            seed_config_dir(config_dir, deps)
        start = time.monotonic()
        proc = subprocess.run(
            opencode_argv(cli, prompt),
            env=env,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        duration = time.monotonic() - start
        events = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
        return CliRun(proc.returncode, proc.stdout, proc.stderr, duration, events)

    return run


def record_transcript(scenario: str, stdout: str) -> None:
    """Save a genuine transcript for the parser tests when ADW_RECORD_OPENCODE_TRANSCRIPTS=1."""
    save_transcript(RECORD_DIR, "ADW_RECORD_OPENCODE_TRANSCRIPTS", scenario, stdout, (FAKE_API_KEY,))
