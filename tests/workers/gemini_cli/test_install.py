"""``tests/workers/gemini_cli/install.py``: what counts as installed, and the pinned install itself."""

from __future__ import annotations

import json
from pathlib import Path

from tests.workers.gemini_cli.install import GEMINI_CLI_PACKAGE, GEMINI_CLI_VERSION, GEMINI_PREFIX, _runnable


def _fake_install(prefix: Path, version: str, *, link: bool = True) -> Path:
    pkg = prefix / "node_modules" / GEMINI_CLI_PACKAGE
    (pkg / "bundle").mkdir(parents=True)
    (pkg / "package.json").write_text(json.dumps({"name": GEMINI_CLI_PACKAGE, "version": version}))
    bundle = pkg / "bundle" / "gemini.js"
    bundle.write_text("#!/usr/bin/env node\n")
    bundle.chmod(0o755)
    bin_dir = prefix / "node_modules" / ".bin"
    bin_dir.mkdir()
    if link:
        (bin_dir / "gemini").symlink_to(Path("..") / "@google" / "gemini-cli" / "bundle" / "gemini.js")
    return bin_dir / "gemini"


def test_runnable_needs_the_pinned_version_and_the_bin_link(tmp_path: Path) -> None:
    assert _runnable(tmp_path / "empty") is None
    _fake_install(tmp_path / "old", "0.60.0")
    assert _runnable(tmp_path / "old") is None
    _fake_install(tmp_path / "nolink", GEMINI_CLI_VERSION, link=False)
    assert _runnable(tmp_path / "nolink") is None
    good = _fake_install(tmp_path / "good", GEMINI_CLI_VERSION)
    assert _runnable(tmp_path / "good") == good


def test_pinned_cli_is_installed_in_its_own_prefix(gemini_cli: Path) -> None:
    assert gemini_cli == GEMINI_PREFIX / "node_modules" / ".bin" / "gemini"
    assert GEMINI_PREFIX.name == "node-gemini" and GEMINI_PREFIX.parent.name == ".cache"
    meta = json.loads((GEMINI_PREFIX / "node_modules" / GEMINI_CLI_PACKAGE / "package.json").read_text())
    assert meta["version"] == GEMINI_CLI_VERSION
    assert meta["engines"] == {"node": ">=20"}
