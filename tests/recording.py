"""Saving a real agent CLI's output as a recorded transcript for the offline parser tests."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path


def save_transcript(directory: Path, switch: str, scenario: str, stdout: str, secrets: Iterable[str]) -> list[str]:
    """Write ``directory/<scenario>.jsonl`` when the environment variable ``switch`` is "1" (by
    default a test run changes no tracked file); returns the non-blank lines either way."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    if os.environ.get(switch) != "1":
        return lines
    assert not any(s in stdout for s in secrets), "a key leaked into the CLI output"
    for line in lines:
        json.loads(line)  # a recorded transcript must be what the CLI really printed: JSON lines
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{scenario}.jsonl").write_text("\n".join(lines) + "\n")
    return lines
