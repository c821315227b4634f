"""Make a tools/ script run from a plain checkout: find the repo and, if needed, its venv.

``#!/usr/bin/env python3`` may be a Python without the project's dependencies; when the
repo's ``.venv`` exists, re-run the script with that interpreter instead.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

_venv_python = REPO / ".venv" / "bin" / "python"
if (
    importlib.util.find_spec("tomlkit") is None
    and _venv_python.exists()
    # Compare prefixes, not executables: a venv's python is a symlink to the base one.
    and Path(sys.prefix).resolve() != (REPO / ".venv").resolve()
):
    os.execv(str(_venv_python), [str(_venv_python), *sys.argv])
