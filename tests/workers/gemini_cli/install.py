"""Install the real Gemini CLI from npm, pinned, into the git-ignored ``<repo>/.cache/node-gemini``.

``ensure_gemini_cli()`` returns the path of a runnable ``gemini`` executable; CI can run
``python tests/workers/gemini_cli/install.py`` once before pytest so the tests never wait for npm.

Version choice: **@google/gemini-cli 0.61.0** (``latest`` on the npm registry when this was
written).

- The package is one esbuild bundle (``bundle/gemini.js`` plus chunks, ~96 MB unpacked, no
  regular ``dependencies``).  Its ``optionalDependencies`` are native helpers only:
  ``@github/keytar`` (OS keychain) and ``node-pty``/``@lydell/node-pty*`` (pseudo-terminals for
  the interactive shell tool); ~100 MB for the whole prefix.  Installing takes ~5 s from the
  registry.
- ``engines`` says ``node >= 20``; the bundle runs on the machine's Node 20, which is checked
  here so a too-old Node fails with a clear message rather than a syntax error.
- ``--ignore-scripts``: the only install scripts are ``node-gyp rebuild`` (``node-pty``) and
  keytar's prebuild download, both of which would fetch from outside the npm registry (Node
  headers, GitHub releases).  Headless runs need neither: without keytar the CLI keeps no
  credentials (the tests pass the key in the environment) and ``@lydell/node-pty`` ships
  prebuilt binaries.  npm 11 skips these scripts by default anyway ("not yet covered by
  allowScripts"), so the flag only makes older npm behave the same.
- It has its own prefix, separate from ``tests/node_tools.py``'s ``.cache/node``, so the two
  installers never re-resolve each other's tree or contend for one lock.

Concurrency: the same exclusive ``fcntl`` lock on ``<prefix>/.install.lock`` as
``tests/node_tools.py`` (whose helper is reused) serialises parallel callers; the version check is
repeated under the lock.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):  # run as `python tests/workers/gemini_cli/install.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from tests.node_tools import REPO_ROOT, CliInstallError, _installed_version, _locked_npm_install, _package_dir

GEMINI_CLI_PACKAGE = "@google/gemini-cli"
GEMINI_CLI_VERSION = "0.61.0"
GEMINI_PREFIX = REPO_ROOT / ".cache" / "node-gemini"
MIN_NODE_MAJOR = 20  # package.json "engines": {"node": ">=20"}

__all__ = [
    "GEMINI_CLI_PACKAGE",
    "GEMINI_CLI_VERSION",
    "GEMINI_PREFIX",
    "CliInstallError",
    "ensure_gemini_cli",
]


def _runnable(prefix: Path) -> Path | None:
    """The ``gemini`` executable if the pinned version is completely installed under ``prefix``."""
    if _installed_version(prefix, GEMINI_CLI_PACKAGE) != GEMINI_CLI_VERSION:
        return None
    bundle = _package_dir(prefix, GEMINI_CLI_PACKAGE) / "bundle" / "gemini.js"
    link = prefix / "node_modules" / ".bin" / "gemini"  # what `npm install -g` puts on PATH
    if bundle.is_file() and link.resolve() == bundle.resolve() and os.access(link, os.X_OK):
        return link
    return None


def _check_node() -> None:
    node = shutil.which("node")
    if node is None:
        raise CliInstallError(f"node is not on PATH; {GEMINI_CLI_PACKAGE} needs Node.js >= {MIN_NODE_MAJOR}")
    out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30, check=False).stdout
    match = re.match(r"v(\d+)\.", out.strip())
    if match is None or int(match.group(1)) < MIN_NODE_MAJOR:
        raise CliInstallError(f"{GEMINI_CLI_PACKAGE} needs Node.js >= {MIN_NODE_MAJOR}; `node --version` says {out!r}")


def ensure_gemini_cli(prefix: Path = GEMINI_PREFIX) -> Path:
    """Install the pinned Gemini CLI if needed and return its executable's path.

    Raises ``CliInstallError`` (with npm's output when npm failed) so a test session fails
    loudly instead of skipping.
    """
    _check_node()
    found = _runnable(prefix)
    if found is None:
        _locked_npm_install(
            prefix,
            f"{GEMINI_CLI_PACKAGE}@{GEMINI_CLI_VERSION}",
            lambda: _runnable(prefix) is not None,
            ("--ignore-scripts",),
        )
        found = _runnable(prefix)
    assert found is not None
    return found


def main() -> int:
    try:
        path = ensure_gemini_cli()
    except CliInstallError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as home:  # the CLI creates ~/.gemini even for --version
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home, "NO_COLOR": "1"}
        version = subprocess.run(
            [str(path), "--version"], env=env, capture_output=True, text=True, timeout=60, check=False
        )
    print(f"{path}\n{version.stdout.strip() or version.stderr.strip()}")
    return 0 if version.returncode == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
