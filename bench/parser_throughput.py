"""Throughput and peak memory of ``parse_file`` against a streaming ``json.loads`` baseline.

Generates a synthetic Claude Code stream-json transcript (init, many assistant
messages streamed block by block with repeated usage, tool results of varied
size, partial-message events, an api_retry, rate_limit_event lines, a result with
modelUsage), then parses it with each method in its own child process, so every peak RSS
(``ru_maxrss`` read by the child that parsed, interpreter and imports included) belongs to
one method only.  Methods, run in turn (A B C A B C ...) ``--pairs`` times:

* ``json_loads_stream`` (the baseline): ``json.loads`` on every line, keeping only what the
  parser keeps (the latest usage per message id, the event count, the session id, the final
  result event), so memory compares like with like;
* ``parse_file``: ``adw_modules.workers.streams.parse_file`` as shipped;
* ``parse_file_decode_all``: the same with the undecoded fast path for user /
  stream_event lines switched off, to show what that shortcut is worth.

Usage: ``.venv/bin/python bench/parser_throughput.py`` (``--mb 200 --pairs 5`` for a bigger run).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import benchlib

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("json_loads_stream", "parse_file", "parse_file_decode_all")
SESSION = "ab4694a7-7cfd-41d4-9f9b-fac26ce2930d"


def _assistant(msg_id: str, block: Mapping[str, object], rng: random.Random) -> str:
    usage = {
        "input_tokens": rng.randint(1, 50),
        "cache_creation_input_tokens": rng.randint(0, 5000),
        "cache_read_input_tokens": rng.randint(10000, 90000),
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
        "output_tokens": rng.randint(1, 800),
        "service_tier": "standard",
    }
    message = {
        "model": "claude-sonnet-4-6",
        "id": msg_id,
        "type": "message",
        "role": "assistant",
        "content": [block],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": usage,
        "context_management": None,
    }
    return json.dumps(
        {
            "type": "assistant",
            "message": message,
            "parent_tool_use_id": None,
            "session_id": SESSION,
            "uuid": f"u-{rng.getrandbits(64):016x}",
        },
        separators=(",", ":"),
    )


def generate(path: Path, megabytes: float, seed: int = 7) -> int:
    """Write a transcript of about ``megabytes`` MB; returns its size in bytes."""
    rng = random.Random(seed)
    words = "the a parser stream token cache model result file test error line value".split()
    limit = int(megabytes * 1024 * 1024)
    size = 0
    with open(path, "w", encoding="utf-8", newline="\n") as out:

        def write(line: str) -> None:
            nonlocal size
            out.write(line + "\n")
            size += len(line.encode("utf-8")) + 1

        write(
            json.dumps(
                {
                    "type": "system",
                    "subtype": "init",
                    "cwd": "/work",
                    "session_id": SESSION,
                    "tools": ["Bash", "Read", "Edit", "Write"],
                    "model": "claude-sonnet-4-6",
                    "permissionMode": "bypassPermissions",
                    "claude_code_version": "2.1.200",
                },
                separators=(",", ":"),
            )
        )
        n = 0
        while size < limit:
            n += 1
            msg_id = f"msg_{n:012d}"
            text = " ".join(rng.choices(words, k=rng.randint(5, 120)))
            write(_assistant(msg_id, {"type": "text", "text": text}, rng))
            tool_id = f"toolu_{n:012d}"
            body = " ".join(rng.choices(words, k=rng.randint(10, 400)))
            edit = {"file_path": "a.py", "new": body}
            tool = {"type": "tool_use", "id": tool_id, "name": "Edit", "input": edit}
            write(_assistant(msg_id, tool, rng))  # same message id: usage repeated
            output = "\n".join(" ".join(rng.choices(words, k=12)) for _ in range(rng.randint(1, 300)))
            result = {"tool_use_id": tool_id, "type": "tool_result", "content": output}
            write(
                json.dumps(
                    {
                        "type": "user",
                        "message": {"role": "user", "content": [result]},
                        "parent_tool_use_id": None,
                        "session_id": SESSION,
                        "uuid": f"u-{n}",
                    },
                    separators=(",", ":"),
                )
            )
            for word in rng.choices(words, k=rng.randint(0, 4)):
                text_delta = {"type": "text_delta", "text": word}
                delta = {"type": "content_block_delta", "index": 0, "delta": text_delta}
                event = {"type": "stream_event", "event": delta, "session_id": SESSION}
                write(json.dumps(event, separators=(",", ":")))
            if n % 500 == 0:
                write(
                    '{"type":"rate_limit_event","rate_limit_info":{"status":"allowed","resetsAt":1783159800,'
                    f'"rateLimitType":"five_hour"}},"uuid":"r-{n}","session_id":"{SESSION}"}}'
                )
            if n == 1000:
                write(
                    '{"type":"system","subtype":"api_retry","attempt":1,"max_retries":10,"retry_delay_ms":520.9,'
                    f'"error_status":529,"error":"overloaded","session_id":"{SESSION}","uuid":"y"}}'
                )
        model_usage = {
            "claude-sonnet-4-6": {
                "inputTokens": 9388,
                "outputTokens": 184,
                "cacheReadInputTokens": 34904,
                "cacheCreationInputTokens": 14392,
                "webSearchRequests": 0,
                "costUSD": 0.42,
                "contextWindow": 1000000,
                "maxOutputTokens": 64000,
            }
        }
        write(
            json.dumps(
                {
                    "type": "result",
                    "subtype": "success",
                    "is_error": False,
                    "duration_ms": 8660,
                    "num_turns": n,
                    "result": "done",
                    "session_id": SESSION,
                    "total_cost_usd": 0.42,
                    "usage": {
                        "input_tokens": 9388,
                        "cache_creation_input_tokens": 14392,
                        "cache_read_input_tokens": 34904,
                        "output_tokens": 184,
                    },
                    "modelUsage": model_usage,
                    "terminal_reason": "completed",
                },
                separators=(",", ":"),
            )
        )
    return size


def worker(method: str, path: Path) -> dict[str, float]:
    """Run one method in this process and report its time and this process's peak RSS."""
    sys.path.insert(0, str(ROOT))
    from adw_modules.workers.streams import parse_file
    from adw_modules.workers.streams.claude import ClaudeStreamParser

    start = time.perf_counter()
    if method == "json_loads_stream":
        usage: dict[str, object] = {}
        final: object = None
        session = None
        count = 0
        with open(path, "rb") as handle:
            for line in handle:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                count += 1
                session = event.get("session_id", session)
                if event.get("type") == "assistant":
                    message = event["message"]
                    usage[message["id"]] = message.get("usage")
                elif event.get("type") == "result":
                    final = event
        assert final is not None and session is not None
    else:
        if method == "parse_file_decode_all":
            ClaudeStreamParser._quick_accept = lambda self, data: False  # type: ignore[method-assign]
        summary = parse_file(path, "claude-stream-json")
        assert summary.terminal and not summary.is_error, summary
        count = summary.events
    seconds = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"seconds": seconds, "peak_rss_mb": peak_kb / 1024.0, "events": count}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=100.0, help="transcript size in MiB (default 100)")
    parser.add_argument("--pairs", type=int, default=3, help="runs per method, alternating (default 3)")
    parser.add_argument("--dir", type=Path, default=None, help="where to write it (default: a temp dir)")
    parser.add_argument("--worker", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--path", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        print(json.dumps(worker(args.worker, args.path)))
        return

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = Path(tmp) / "claude-stream.jsonl"
        t0 = time.perf_counter()
        size = generate(path, args.mb)
        print(f"generated {size / 1e6:.1f} MB ({size / 2**20:.1f} MiB) in {time.perf_counter() - t0:.1f} s")
        results: dict[str, list[dict[str, float]]] = {m: [] for m in METHODS}
        for _ in range(args.pairs):
            for method in METHODS:
                proc = subprocess.run(
                    [sys.executable, __file__, "--worker", method, "--path", str(path)],
                    check=True,
                    capture_output=True,
                    text=True,
                )
                results[method].append(json.loads(proc.stdout))
    mib = size / 2**20
    base = results["json_loads_stream"]
    s = benchlib.spread
    print(f"{args.pairs} runs per method, alternating; median (min-max)\n")
    rows = []
    for method in METHODS:
        rs = results[method]
        speed = [mib / r["seconds"] for r in rs]
        speed_x = [b["seconds"] / r["seconds"] for r, b in zip(rs, base, strict=True)]
        rss = [r["peak_rss_mb"] for r in rs]
        rss_x = [r["peak_rss_mb"] / b["peak_rss_mb"] for r, b in zip(rs, base, strict=True)]
        rows.append((method, s(speed), s(rss), s(speed_x, "{:.2f}"), s(rss_x, "{:.2f}"), int(rs[0]["events"])))
    heads = ["method", "MiB/s", "peak RSS MiB (child)", "speed x baseline", "RSS x baseline", "events"]
    print(benchlib.table(heads, rows))


if __name__ == "__main__":
    main()
