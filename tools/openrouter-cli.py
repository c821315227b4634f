#!/usr/bin/env python3
"""Claude-compatible stream-JSON over OpenRouter / OpenAI-compatible chat completions.

Thin wrapper; the behaviour and its contract live in ``adw_modules.workers.openrouter``.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Runs from a checkout without the package installed.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adw_modules.workers.openrouter import main

if __name__ == "__main__":
    sys.exit(main())
