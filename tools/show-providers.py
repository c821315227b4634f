#!/usr/bin/env python3
"""Same as `adw providers`: takes --config and --json."""

from __future__ import annotations

import _bootstrap  # noqa: F401  (repo on sys.path, project venv)

from adws.cli import run_tool

run_tool(["providers"])
