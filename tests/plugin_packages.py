"""Install the example plugin packages of ``tests/fixtures/plugins/`` for a test, really, but not into the venv.

``pip install --target DIR --no-deps --no-index --no-build-isolation`` builds each package
with its own pyproject (setuptools, from the dev dependencies: no network) and installs it
into ``DIR``, dist-info and entry points included, exactly as into site-packages.  A test puts
``DIR`` on ``sys.path`` (``importlib.metadata`` finds the entry points there) for its own
duration, so nothing stays installed for the other tests.  pip builds in the source tree, so
each package is copied to a scratch directory first and the fixtures stay clean.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.paths import FIXTURES

PLUGINS = FIXTURES / "plugins"
EXAMPLE = "adw-example-plugin"
BROKEN = "adw-broken-plugin"
MODULES = ("adw_example_plugin", "adw_broken_plugin", "adw_broken_exit", "adw_broken_hang")
# adw_broken_hang sleeps in its import: these tests give a plugin this long to import
IMPORT_TIMEOUT_S = "0.3"


def install_plugins(target: Path, *names: str) -> Path:
    """Build and install the named fixture packages into ``target``; returns ``target``."""
    with tempfile.TemporaryDirectory(prefix="adw-plugin-src-") as scratch:
        sources = [shutil.copytree(PLUGINS / name, Path(scratch) / name) for name in names]
        argv = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        argv += ["--no-deps", "--no-index", "--no-build-isolation", "--target", str(target), *map(str, sources)]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"installing {names} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return target
