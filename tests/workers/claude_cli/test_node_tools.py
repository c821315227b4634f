"""The pinned Claude Code installer: reuse what is there, fail loudly when npm cannot help."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.node_tools import CLAUDE_CODE_VERSION, NODE_PREFIX, REPO_ROOT, CliInstallError, ensure_claude_cli


def test_prefix_is_the_git_ignored_cache_of_this_repo() -> None:
    assert NODE_PREFIX == REPO_ROOT / ".cache" / "node"
    assert (REPO_ROOT / "pyproject.toml").is_file()


def test_an_installed_pinned_version_is_reused_without_npm(claude_cli: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # With npm unreachable a reinstall would raise; getting the same path back proves none ran.
    monkeypatch.setenv("PATH", "")
    assert ensure_claude_cli() == claude_cli
    assert claude_cli.is_file() and claude_cli.stat().st_size > 1_000_000  # the native binary, not the stub


def test_an_unreachable_registry_raises_with_npms_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("npm_config_registry", "http://127.0.0.1:9/")  # discard port: refused
    monkeypatch.setenv("npm_config_cache", str(tmp_path / "npm-cache"))  # no cached tarball to fall back on
    monkeypatch.setenv("npm_config_fetch_retries", "0")

    with pytest.raises(CliInstallError) as info:
        ensure_claude_cli(tmp_path / "prefix")

    message = str(info.value)
    assert f"@anthropic-ai/claude-code@{CLAUDE_CODE_VERSION}" in message
    assert "ECONNREFUSED" in message


@pytest.mark.claude_cli
def test_main_installs_and_prints_the_version(claude_cli: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "tests" / "node_tools.py")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [str(claude_cli), f"{CLAUDE_CODE_VERSION} (Claude Code)"]
