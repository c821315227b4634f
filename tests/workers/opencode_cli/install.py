"""Install the real OpenCode CLI from npm, pinned, into the git-ignored ``<repo>/.cache/node-opencode``.

``ensure_opencode_cli()`` returns the path of a runnable ``opencode`` executable and
``ensure_opencode_config_deps()`` the pre-installed dependency tree of OpenCode's config
directories (below); CI can run ``python tests/workers/opencode_cli/install.py`` once before pytest so
the tests never wait for npm.

Version choice: **opencode-ai 1.18.33** (``latest`` on the npm registry when this was written).

- ``opencode-ai`` is a thin wrapper: ``bin/opencode.exe`` is only a placeholder until its
  ``postinstall.mjs`` hard-links the real program over it.  The program is a Bun-compiled native
  binary (~185 MB) in a per-platform package listed under ``optionalDependencies``
  (``opencode-linux-x64``, ``opencode-linux-x64-baseline`` for CPUs without AVX2, ``-musl``
  variants, darwin, windows).  We install with ``--ignore-scripts --include=optional`` and
  return the platform binary directly, picked in the same order as ``postinstall.mjs``, so
  nothing depends on whether npm runs install scripts.  Two x64 binaries land (~354 MB prefix);
  the install takes ~7 s from the registry.
- The binary does not need Node at all.

Config-directory dependencies: at every start OpenCode "installs" ``@opencode-ai/plugin@<its
version>`` into each config directory it reads (the global ``$XDG_CONFIG_HOME/opencode``
included), in the background, via npm's Arborist against registry.npmjs.org (seen through the
proxy tripwire: ``CONNECT registry.npmjs.org:443``; the log says "background dependency install
failed").  It skips that when the directory already has ``node_modules`` and every dependency in
its ``package.json`` (plus the plugin) is in ``package-lock.json``'s root entry.  So set-up
installs that package for real into ``<prefix>/config-deps`` (27 packages, ~63 MB, ~4 s), and
the tests give each fresh config directory a copy of its ``package.json``/``package-lock.json``
and a symlink to its ``node_modules``: the run itself then needs only loopback.

The provider SDK needs no install: 1.18.33 bundles ``@ai-sdk/openai-compatible`` (the log says
``llm.runtime=ai-sdk``; ``$XDG_CACHE_HOME/opencode`` stays empty apart from ``bin/``).

Concurrency: the same exclusive ``fcntl`` lock on ``<prefix>/.install.lock`` as
``tests/node_tools.py`` (whose helper is reused) serialises parallel callers.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):  # run as `python tests/workers/opencode_cli/install.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from tests.node_tools import REPO_ROOT, CliInstallError, _installed_version, _locked_npm_install, _package_dir

OPENCODE_PACKAGE = "opencode-ai"
OPENCODE_VERSION = "1.18.33"
PLUGIN_PACKAGE = "@opencode-ai/plugin"  # what OpenCode installs into its config directories
OPENCODE_PREFIX = REPO_ROOT / ".cache" / "node-opencode"
CONFIG_DEPS_PREFIX = OPENCODE_PREFIX / "config-deps"

__all__ = [
    "CONFIG_DEPS_PREFIX",
    "OPENCODE_PACKAGE",
    "OPENCODE_PREFIX",
    "OPENCODE_VERSION",
    "CliInstallError",
    "ensure_opencode_cli",
    "ensure_opencode_config_deps",
    "seed_config_dir",
]


def _has_avx2() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(line.startswith("flags") and " avx2" in line for line in flags.splitlines())


def _candidates() -> list[str]:
    """Platform packages in ``postinstall.mjs``'s order of preference."""
    machine = platform.machine().lower()
    arch = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)
    if sys.platform.startswith("linux"):
        base = f"opencode-linux-{arch}"
        musl = platform.libc_ver()[0] != "glibc"
        if arch != "x64":
            return [f"{base}-musl", base] if musl else [base, f"{base}-musl"]
        variants = (
            ["-musl", "-baseline-musl", "", "-baseline"] if musl else ["", "-baseline", "-musl", "-baseline-musl"]
        )
        if not _has_avx2():
            variants = [v for v in variants if "baseline" in v] + [v for v in variants if "baseline" not in v]
        return [base + v for v in variants]
    if sys.platform == "darwin":
        return [f"opencode-darwin-{arch}"] + ([f"opencode-darwin-{arch}-baseline"] if arch == "x64" else [])
    raise CliInstallError(f"no OpenCode native package for platform {sys.platform}/{machine}")


def _runnable(prefix: Path) -> Path | None:
    """The native ``opencode`` binary if the pinned version is completely installed under ``prefix``."""
    if _installed_version(prefix, OPENCODE_PACKAGE) != OPENCODE_VERSION:
        return None
    for name in _candidates():
        if _installed_version(prefix, name) != OPENCODE_VERSION:
            continue
        binary = _package_dir(prefix, name) / "bin" / "opencode"
        if binary.is_file() and os.access(binary, os.X_OK):
            return binary
    return None


def ensure_opencode_cli(prefix: Path = OPENCODE_PREFIX) -> Path:
    """Install the pinned OpenCode CLI if needed and return its native executable's path.

    Raises ``CliInstallError`` (with npm's output when npm failed) so a test session fails
    loudly instead of skipping.
    """
    found = _runnable(prefix)
    if found is None:
        _locked_npm_install(
            prefix,
            f"{OPENCODE_PACKAGE}@{OPENCODE_VERSION}",
            lambda: _runnable(prefix) is not None,
            ("--ignore-scripts", "--include=optional"),
        )
        found = _runnable(prefix)
    assert found is not None
    return found


def _config_deps_ready(prefix: Path) -> bool:
    return _installed_version(prefix, PLUGIN_PACKAGE) == OPENCODE_VERSION and (prefix / "package-lock.json").is_file()


def ensure_opencode_config_deps(prefix: Path = CONFIG_DEPS_PREFIX) -> Path:
    """Install ``@opencode-ai/plugin`` at the CLI's version under ``prefix``; return ``prefix``."""
    if not _config_deps_ready(prefix):
        _locked_npm_install(
            prefix,
            f"{PLUGIN_PACKAGE}@{OPENCODE_VERSION}",
            lambda: _config_deps_ready(prefix),
            ("--ignore-scripts",),
        )
    return prefix


def seed_config_dir(config_dir: Path, deps: Path) -> None:
    """Make ``config_dir`` look installed to OpenCode: its manifest and lock, and ``node_modules``
    as a symlink to the tree in ``deps`` (shared read-only; OpenCode only checks that it exists)."""
    config_dir.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "package-lock.json"):
        (config_dir / name).write_bytes((deps / name).read_bytes())
    (config_dir / "node_modules").symlink_to(deps / "node_modules", target_is_directory=True)


def main() -> int:
    try:
        path = ensure_opencode_cli()
        deps = ensure_opencode_config_deps()
    except CliInstallError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as home:  # the CLI creates ~/.cache, ~/.config, ... even for --version
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home, "NO_COLOR": "1"}
        version = subprocess.run(
            [str(path), "--version"], env=env, capture_output=True, text=True, timeout=60, check=False
        )
    print(f"{path}\n{version.stdout.strip() or version.stderr.strip()}\n{deps}")
    return 0 if version.returncode == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
