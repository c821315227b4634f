"""Where things are, for tests at any depth of tests/ (so moving a test never breaks a path)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TESTS = REPO / "tests"
FIXTURES = TESTS / "fixtures"
TOOLS = REPO / "tools"
