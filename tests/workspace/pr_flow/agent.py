"""A tiny agent CLI that edits its working directory, for the workspace/PR tests.

Reads the prompt on stdin; writes ``<model>.txt`` (listing the files it found, so a test can
see what an earlier attempt left) unless AGENT_MODE says otherwise; answers in Claude
stream-json.  AGENT_MODE: ``edit`` (default), ``commit`` (also commits its change),
``none`` (changes nothing), ``rate_limit`` (edits, then reports a 429 retry and hangs),
``fail`` (edits, then crashes).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path


def emit(obj: dict[str, object]) -> None:
    print(json.dumps(obj), flush=True)


def main() -> int:
    model = sys.argv[sys.argv.index("--model") + 1] if "--model" in sys.argv else "m"
    mode = os.environ.get("AGENT_MODE", "edit")
    sys.stdin.read()
    emit({"type": "system", "subtype": "init", "session_id": "s", "model": model, "cwd": os.getcwd()})
    seen = sorted(p.name for p in Path.cwd().iterdir() if p.is_file())
    if mode != "none":
        Path(f"{model}.txt").write_text("seen: " + ", ".join(seen) + "\n")
    if mode == "commit":
        subprocess.run(["git", "add", "-A"], check=True)
        subprocess.run(["git", "commit", "-q", "-m", f"{model} was here"], check=True)
    if mode == "rate_limit":
        emit(
            {
                "type": "system",
                "subtype": "api_retry",
                "attempt": 1,
                "max_retries": 10,
                "retry_delay_ms": 30000,
                "error_status": 429,
                "error": "rate_limit",
                "session_id": "s",
            }
        )
        time.sleep(60)
        return 1
    if mode == "fail":
        sys.stderr.write("Traceback: boom\n")
        return 2
    text = "Nothing to change: the code already does this." if mode == "none" else f"Wrote {model}.txt."
    emit(
        {
            "type": "result",
            "subtype": "success",
            "is_error": False,
            "result": text,
            "session_id": "s",
            "num_turns": 1,
            "duration_ms": 5,
            "usage": {"input_tokens": 100, "output_tokens": 20},
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
