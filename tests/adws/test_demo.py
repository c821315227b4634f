"""``adw demo`` tells the truth: its 429 is a real 429 from the dry-run agent (with a retry-after),
failovers and skipped rule targets are marked, and it says how to look further."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from adw_modules.config.schema import load_config
from adw_modules.queue.store import Store
from tests.paths import REPO


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """One demo run, with the default relative --dir, as a new user runs it."""
    tmp_path = tmp_path_factory.mktemp("demo")
    # A process of its own, as a user runs it (the demo installs signal handlers and logging).
    done = subprocess.run(
        [sys.executable, "-m", "adws.cli", "demo"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout, tmp_path / ".adw" / "demo"


def test_the_demo_rate_limit_is_a_real_429_and_is_marked_as_a_failover(demo: tuple[str, Path]) -> None:
    text, directory = demo
    config = load_config(directory / "config.toml")
    store = Store.open(config.service.store_url({}))
    try:
        attempts = [a for t in store.list_tasks(limit=100) for a in store.attempts_for(t.id)]
    finally:
        store.close()
    limited = [a for a in attempts if a.outcome == "rate_limited"]
    assert limited, "no attempt was rate limited"
    for a in limited:
        assert a.provider == "claude-dry"
        assert "HTTP 429" in (a.error_message or "") and "retry after 300 s" in (a.error_message or "")
        assert "No such file" not in (a.stderr_tail or "")
    # The counter the agent keeps is where the demo said, whatever the agent's working directory.
    assert (directory / "claude-dry-calls.count").resolve().exists()
    assert "↳ failover claude-dry -> openrouter-dry: rate limited" in text
    assert re.search(r"↳ rule target claude-dry:\S+ skipped: cooling down", text)
    assert not any(a.outcome == "crashed" and a.provider == "claude-dry" for a in attempts)


def test_the_demo_ends_with_the_commands_to_look_further(demo: tuple[str, Path]) -> None:
    text, _ = demo
    tail = text.rstrip().splitlines()[-6:]
    assert tail[0] == "Look further (the demo has its own config and store):"
    assert tail[1] == f"  adw --config {Path('.adw/demo/config.toml')} status"
    assert any(line.strip().startswith("adw --config") and "task log 1" in line for line in tail)


def test_titles_are_not_cut(demo: tuple[str, Path]) -> None:
    text, _ = demo
    assert "Rotate the leaked staging token and add a pre-commit secret scan" in text
    assert "Explain the cache invalidation strategy in ARCHITECTURE.md" in text
    assert os.environ.get("ADW_DRY_RUN_STATE") is None  # the demo's agent state never leaks into ours


def test_python_dash_m_adws_cli_has_every_command() -> None:
    """The systemd unit falls back to ``python -m adws.cli``: it must know ``run`` and the rest."""
    done = subprocess.run(
        [sys.executable, "-m", "adws.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=True,
    )
    for command in ("run", "enqueue", "status", "demo", "doctor", "service", "task"):
        assert re.search(rf"^\s+{command}\s", done.stdout, re.M), command
