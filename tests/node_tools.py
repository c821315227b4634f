"""Install the real agent CLIs from npm, pinned, into the git-ignored ``<repo>/.cache/node``.

``ensure_claude_cli()`` and ``ensure_codex_cli()`` return the path of a runnable ``claude`` /
``codex`` executable, ``ensure_claude_code_router()`` ccr's script; CI runs
``python tests/node_tools.py`` once before pytest (it installs all three)
so the tests never wait for the download.

Version choice: **@anthropic-ai/claude-code 2.1.330** (the newest release when this was written).

- Since the 2.1.1xx/2.1.2xx line the package is a thin wrapper: ``bin/claude.exe`` is a shell
  stub, and the real program is a native (Bun-compiled) binary shipped in a per-platform npm
  package listed under ``optionalDependencies`` (``@anthropic-ai/claude-code-linux-x64`` here,
  about 380 MB unpacked).  The ``postinstall`` script ``install.cjs`` only copies/hard-links
  that binary over the stub; it fetches nothing, so everything comes from the npm registry
  and the install works where only registry.npmjs.org is reachable.
- ``engines`` says ``node >= 22``; npm 11 only warns (EBADENGINE) because the native binary
  does not run on the machine's Node at all; Node 20 is needed solely to run ``install.cjs``,
  which uses nothing newer.  Older releases that still ship a pure-JS ``cli.js`` (2.1.100 and
  before, ``node >= 18``) would also install offline, but the newest release is preferred so the
  recorded transcripts match what production machines run.
- If a future npm refuses to run install scripts (npm 11 already warns "install scripts not yet
  covered by allowScripts"), the stub is left in place; ``ensure_claude_cli`` then returns the
  platform package's binary directly, which is exactly what ``install.cjs`` would have linked.

**@openai/codex 0.169.0** (the newest release when it was added; ``ensure_codex_cli()``):

- ``@openai/codex`` itself is a ~28 KB Node launcher (``bin/codex.js``).  The program is a
  static (musl) Rust binary shipped in a per-platform package listed under
  ``optionalDependencies`` as an npm *alias* of the same package name with a platform
  prerelease version, e.g. ``"@openai/codex-linux-x64": "npm:@openai/codex@0.169.0-linux-x64"``
  (``os``/``cpu`` fields let npm pick the one for this machine; about 404 MB unpacked: the 294 MB
  ``codex`` binary, ``codex-code-mode-host``, a bundled ``rg`` and ``bwrap``).  There are no
  install scripts, so ``--ignore-scripts`` changes nothing and everything comes from the npm
  registry.  ``--include=optional`` guards against an ``omit=optional`` npm config, which would
  silently leave the binary out.
- ``ensure_codex_cli`` returns the native binary (``vendor/<target>/bin/codex``), not the Node
  launcher: the launcher only re-executes it (``execve`` on Node >= 22, a child process on older
  Node) with ``CODEX_MANAGED_BY_NPM=1`` set; the binary finds its ``rg``/``bwrap`` next to itself.
- It lives in its own prefix (``.cache/node/codex-cli``) so installing it never re-resolves
  Claude Code's tree and vice versa.

**@musistudio/claude-code-router 2.0.0** (``ensure_claude_code_router()``; ``ccr``, an
Anthropic-compatible proxy in front of OpenAI-compatible APIs):

- 2.0.0 is one bundled file (``dist/cli.js``, 12 MB, with ``tiktoken_bg.wasm`` beside it) and no
  dependencies or install scripts, so it installs from the npm registry alone and starts
  without fetching anything (checked: ``ccr start`` with only loopback reachable listens in
  about a second; the one remote URL in it, the preset market list on r2.dev, is fetched only
  when the preset market is asked for).
- The newest release, 3.1.1, cannot be installed here: it depends on
  ``@the-next-ai/ai-gateway``, which the registry answers 404 for, and on ``better-sqlite3``, a
  native addon whose prebuilt binary comes from GitHub (unreachable offline) or a node-gyp
  build.  1.0.73 installs, but with 142 top-level packages (tiktoken, fastify, @google/genai, …)
  and install scripts; 2.0.0, the release between them, reads the same config.json.
- It lives in its own prefix (``.cache/node/claude-code-router``) and runs with ``node``.

Concurrency: an exclusive ``fcntl`` lock on ``<prefix>/.install.lock`` serialises parallel
callers (pytest-xdist workers, CI steps); the version check is repeated under the lock.
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

CLAUDE_CODE_PACKAGE = "@anthropic-ai/claude-code"
CLAUDE_CODE_VERSION = "2.1.330"

CCR_PACKAGE = "@musistudio/claude-code-router"
CCR_VERSION = "2.0.0"

CODEX_PACKAGE = "@openai/codex"
CODEX_VERSION = "0.169.0"

REPO_ROOT = Path(__file__).resolve().parent.parent
NODE_PREFIX = REPO_ROOT / ".cache" / "node"
CODEX_PREFIX = NODE_PREFIX / "codex-cli"
CCR_PREFIX = NODE_PREFIX / "claude-code-router"
_STUB_MAX_BYTES = 64 * 1024  # the placeholder bin/claude.exe is a ~500 byte shell script


class CliInstallError(RuntimeError):
    """The pinned CLI could not be installed (npm missing or registry unreachable)."""


T = TypeVar("T")


def installed_or_fail(ensure: Callable[[], T], what: str, installer: str) -> T:
    """For a session fixture: the pinned CLI, or a FAILED test (not a skip: CI installs the CLIs
    beforehand, so a missing one is a broken set-up) saying how to install it."""
    import pytest  # only the test fixtures call this; the installers run without pytest

    try:
        return ensure()
    except CliInstallError as exc:
        pytest.fail(
            f"the pinned {what} is not available: {exc}\n"
            f"Run `.venv/bin/python {installer}` with access to the npm registry.",
            pytrace=False,
        )


def _package_dir(prefix: Path, name: str) -> Path:
    return prefix / "node_modules" / name


def _installed_version(prefix: Path, name: str) -> str | None:
    try:
        meta = json.loads((_package_dir(prefix, name) / "package.json").read_text())
    except (OSError, ValueError):
        return None
    version = meta.get("version")
    return version if isinstance(version, str) else None


def _platform_package() -> str:
    machine = platform.machine().lower()
    arch = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)
    system = sys.platform
    if system.startswith("linux"):
        libc, _ = platform.libc_ver()
        suffix = "" if libc == "glibc" else "-musl"
        return f"{CLAUDE_CODE_PACKAGE}-linux-{arch}{suffix}"
    if system == "darwin":
        return f"{CLAUDE_CODE_PACKAGE}-darwin-{arch}"
    raise CliInstallError(f"no Claude Code native package for platform {system}/{machine}")


def _runnable(prefix: Path) -> Path | None:
    """The CLI executable if the pinned version is completely installed under ``prefix``."""
    if _installed_version(prefix, CLAUDE_CODE_PACKAGE) != CLAUDE_CODE_VERSION:
        return None
    wrapper_bin = _package_dir(prefix, CLAUDE_CODE_PACKAGE) / "bin" / "claude.exe"
    try:
        if wrapper_bin.stat().st_size > _STUB_MAX_BYTES:
            return wrapper_bin
    except OSError:
        pass
    native_pkg = _platform_package()
    if _installed_version(prefix, native_pkg) != CLAUDE_CODE_VERSION:
        return None
    native = _package_dir(prefix, native_pkg) / "claude"
    return native if native.is_file() else None


def ensure_claude_cli(prefix: Path = NODE_PREFIX) -> Path:
    """Install the pinned Claude Code CLI if needed and return its executable path.

    Raises ``CliInstallError`` with npm's output when the install fails, so a test session
    fails loudly instead of skipping.
    """
    found = _runnable(prefix)
    if found is None:
        _locked_npm_install(
            prefix, f"{CLAUDE_CODE_PACKAGE}@{CLAUDE_CODE_VERSION}", lambda: _runnable(prefix) is not None
        )
        found = _runnable(prefix)
    assert found is not None
    return found


# (system, npm arch) -> (npm alias suffix, Rust target triple), as @openai/codex's bin/codex.js maps them.
_CODEX_TARGETS: dict[tuple[str, str], tuple[str, str]] = {
    ("linux", "x64"): ("linux-x64", "x86_64-unknown-linux-musl"),
    ("linux", "arm64"): ("linux-arm64", "aarch64-unknown-linux-musl"),
    ("darwin", "x64"): ("darwin-x64", "x86_64-apple-darwin"),
    ("darwin", "arm64"): ("darwin-arm64", "aarch64-apple-darwin"),
}


def _codex_target() -> tuple[str, str]:
    machine = platform.machine().lower()
    arch = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)
    system = "linux" if sys.platform.startswith("linux") else sys.platform
    try:
        return _CODEX_TARGETS[(system, arch)]
    except KeyError:
        raise CliInstallError(f"no Codex native package for platform {sys.platform}/{machine}") from None


def _codex_runnable(prefix: Path) -> Path | None:
    """The native ``codex`` binary if the pinned version is completely installed under ``prefix``."""
    if _installed_version(prefix, CODEX_PACKAGE) != CODEX_VERSION:
        return None
    suffix, triple = _codex_target()
    native_pkg = f"{CODEX_PACKAGE}-{suffix}"  # the alias' directory; its package.json says @openai/codex
    if _installed_version(prefix, native_pkg) != f"{CODEX_VERSION}-{suffix}":
        return None
    native = _package_dir(prefix, native_pkg) / "vendor" / triple / "bin" / "codex"
    return native if native.is_file() and os.access(native, os.X_OK) else None


def ensure_codex_cli(prefix: Path = CODEX_PREFIX) -> Path:
    """Install the pinned OpenAI Codex CLI if needed and return its native executable's path.

    Same locking and "fail loudly" contract as ``ensure_claude_cli``.
    """
    found = _codex_runnable(prefix)
    if found is None:
        _locked_npm_install(
            prefix,
            f"{CODEX_PACKAGE}@{CODEX_VERSION}",
            lambda: _codex_runnable(prefix) is not None,
            ("--ignore-scripts", "--include=optional"),
        )
        found = _codex_runnable(prefix)
    assert found is not None
    return found


def ensure_npm_package(name: str, version: str, prefix: Path) -> Path:
    """Install the npm package ``name@version`` (exact) under ``prefix`` and return its directory.

    For data-only packages (no executables), e.g. GitHub's OpenAPI description.  Each package
    gets its own ``prefix`` (a subdirectory of ``NODE_PREFIX``) so npm never re-resolves another
    package's tree while installing this one.  Same locking and "fail loudly" contract as
    ``ensure_claude_cli``: raises ``CliInstallError`` with npm's output when the install fails.
    """
    package_dir = _package_dir(prefix, name)
    if _installed_version(prefix, name) != version:
        _locked_npm_install(
            prefix, f"{name}@{version}", lambda: _installed_version(prefix, name) == version, ("--ignore-scripts",)
        )
    return package_dir


def ensure_claude_code_router(prefix: Path = CCR_PREFIX) -> Path:
    """Install the pinned claude-code-router if needed; returns its ``dist/cli.js`` (run it with node)."""
    cli = ensure_npm_package(CCR_PACKAGE, CCR_VERSION, prefix) / "dist" / "cli.js"
    if not cli.is_file():
        raise CliInstallError(f"{CCR_PACKAGE}@{CCR_VERSION} installed without {cli}")
    return cli


def _locked_npm_install(prefix: Path, spec: str, installed: Callable[[], bool], extra: tuple[str, ...] = ()) -> None:
    """``npm install spec`` into ``prefix`` under a file lock, unless ``installed()`` turns true
    while waiting for it; ``CliInstallError`` with npm's output if it does not end installed."""
    prefix.mkdir(parents=True, exist_ok=True)
    with open(prefix / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if installed():
                return
            npm = shutil.which("npm")
            if npm is None:
                raise CliInstallError(f"npm is not on PATH; install Node.js 20+ with npm to get {spec}")
            argv = [
                npm,
                "install",
                "--prefix",
                str(prefix),
                "--no-audit",
                "--no-fund",
                "--update-notifier=false",
                "--save-exact",
                *extra,
                spec,
            ]
            try:
                proc = subprocess.run(argv, capture_output=True, text=True, timeout=900, check=False)
            except subprocess.TimeoutExpired as exc:
                raise CliInstallError(f"`{' '.join(argv)}` timed out after {exc.timeout}s") from exc
            if proc.returncode != 0 or not installed():
                raise CliInstallError(
                    f"could not install {spec} into {prefix} "
                    f"(npm exit {proc.returncode}); is the npm registry reachable?\n"
                    f"--- npm stderr (tail) ---\n{proc.stderr[-4000:]}"
                )
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _run_version(path: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(path), "--version"], env=env, capture_output=True, text=True, timeout=60, check=False)


def main() -> int:
    """Install the CLIs.  stdout: Claude Code's path and version (two lines, as before);
    Codex's path and version, and claude-code-router's path, go to stderr so existing
    consumers of stdout keep working."""
    try:
        path = ensure_claude_cli()
        codex = ensure_codex_cli()
        ccr = ensure_claude_code_router()
    except CliInstallError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    version = _run_version(path)
    # Any codex invocation, even --version, writes helper links under $CODEX_HOME (~/.codex).
    with tempfile.TemporaryDirectory(prefix="codex-home-") as codex_home:
        codex_version = _run_version(codex, {**os.environ, "CODEX_HOME": codex_home})
    print(f"{path}\n{version.stdout.strip() or version.stderr.strip()}")
    print(f"{codex}\n{codex_version.stdout.strip() or codex_version.stderr.strip()}", file=sys.stderr)
    print(f"{ccr}\n{CCR_PACKAGE} {CCR_VERSION}", file=sys.stderr)
    return 0 if version.returncode == 0 and codex_version.returncode == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
