"""The pinned Codex installer: reuse what is there, notice a half install, fail loudly when npm cannot help."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from tests import node_tools
from tests.node_tools import (
    CCR_PACKAGE,
    CCR_VERSION,
    CLAUDE_CODE_VERSION,
    CODEX_PACKAGE,
    CODEX_PREFIX,
    CODEX_VERSION,
    NODE_PREFIX,
    REPO_ROOT,
    CliInstallError,
    ensure_codex_cli,
)


def test_codex_has_its_own_prefix_in_the_git_ignored_cache() -> None:
    assert CODEX_PREFIX == REPO_ROOT / ".cache" / "node" / "codex-cli"
    assert CODEX_PREFIX.parent == NODE_PREFIX


def test_the_installed_binary_is_the_native_one_at_the_pinned_version(codex_cli: Path, tmp_path: Path) -> None:
    assert codex_cli.name == "codex" and codex_cli.parent.name == "bin"
    assert codex_cli.stat().st_size > 50_000_000  # the Rust binary, not the 28 KB Node launcher
    assert codex_cli.read_bytes()[:4] in (b"\x7fELF", b"\xcf\xfa\xed\xfe")  # ELF or Mach-O
    env = {**os.environ, "CODEX_HOME": str(tmp_path)}  # even --version writes helper links there
    proc = subprocess.run(
        [str(codex_cli), "--version"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert (proc.returncode, proc.stdout.strip()) == (0, f"codex-cli {CODEX_VERSION}")
    launcher = json.loads((CODEX_PREFIX / "node_modules" / CODEX_PACKAGE / "package.json").read_text())
    assert launcher["version"] == CODEX_VERSION and launcher["bin"] == {"codex": "bin/codex.js"}


def test_an_installed_pinned_version_is_reused_without_npm(codex_cli: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # With npm unreachable a reinstall would raise; getting the same path back proves none ran.
    monkeypatch.setenv("PATH", "")
    assert ensure_codex_cli() == codex_cli


def test_a_launcher_without_its_platform_package_is_not_an_install(tmp_path: Path) -> None:
    # What an ``omit=optional`` npm config leaves behind: the launcher alone.
    launcher = tmp_path / "node_modules" / CODEX_PACKAGE
    launcher.mkdir(parents=True)
    (launcher / "package.json").write_text(json.dumps({"name": CODEX_PACKAGE, "version": CODEX_VERSION}))
    assert node_tools._codex_runnable(tmp_path) is None


@pytest.mark.parametrize(
    ("system", "machine", "expected"),
    [
        ("linux", "x86_64", ("linux-x64", "x86_64-unknown-linux-musl")),
        ("linux", "aarch64", ("linux-arm64", "aarch64-unknown-linux-musl")),
        ("darwin", "arm64", ("darwin-arm64", "aarch64-apple-darwin")),
        ("darwin", "x86_64", ("darwin-x64", "x86_64-apple-darwin")),
    ],
)
def test_the_platform_package_matches_the_launchers_table(
    monkeypatch: pytest.MonkeyPatch, system: str, machine: str, expected: tuple[str, str]
) -> None:
    monkeypatch.setattr(sys, "platform", system)
    monkeypatch.setattr(platform, "machine", lambda: machine)
    assert node_tools._codex_target() == expected


def test_an_unsupported_platform_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "sunos5")
    with pytest.raises(CliInstallError, match="no Codex native package"):
        node_tools._codex_target()


def test_an_unreachable_registry_raises_with_npms_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("npm_config_registry", "http://127.0.0.1:9/")  # discard port: refused
    monkeypatch.setenv("npm_config_cache", str(tmp_path / "npm-cache"))  # no cached tarball to fall back on
    monkeypatch.setenv("npm_config_fetch_retries", "0")

    with pytest.raises(CliInstallError) as info:
        ensure_codex_cli(tmp_path / "prefix")

    message = str(info.value)
    assert f"{CODEX_PACKAGE}@{CODEX_VERSION}" in message
    assert "ECONNREFUSED" in message


def test_main_installs_both_clis(codex_cli: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "tests" / "node_tools.py")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    # stdout is unchanged (Claude Code's path and version); Codex's pair, then
    # claude-code-router's path and pin, go to stderr.
    assert proc.stdout.splitlines()[1] == f"{CLAUDE_CODE_VERSION} (Claude Code)"
    lines = proc.stderr.splitlines()
    assert lines[-4:-2] == [str(codex_cli), f"codex-cli {CODEX_VERSION}"]
    assert lines[-2].endswith("/dist/cli.js") and lines[-1] == f"{CCR_PACKAGE} {CCR_VERSION}"
