"""Reading an attempt's stored transcript back: where it is, as readable lines, and following it.

The transcript is the CLI's stdout as the runner wrote it, line by line, with every known
secret already masked (attempt.py).  ``render`` turns Claude Code stream-json lines into what
an operator wants to read (text, tool calls and their results, retries, the result); other
formats, and lines that are not JSON, are shown as they are.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from adw_modules.ops.display import format_usd, relative
from adw_modules.queue.tasks import Attempt

_CLIP = 300  # characters of a tool's input or result shown on one line


def transcript_path(state_dir: Path, attempt: Attempt) -> Path:
    """Where the attempt's transcript is (or was) on the host that ran it."""
    if attempt.log_path:
        return Path(attempt.log_path)
    return state_dir / "attempts" / f"task-{attempt.task_id}" / f"attempt-{attempt.number}" / "stdout.jsonl"


def _clip(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _CLIP else flat[: _CLIP - 1] + "…"


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(b.get("text", "")) for b in content if isinstance(b, dict))
    return ""


def _rate_limit(info: dict[str, Any], now: dt.datetime) -> str:
    """Claude's plan-window state: a warning only when the window rejects or nears its end."""
    status = str(info.get("status", "?"))
    window = str(info.get("rateLimitType") or "plan").replace("_", "-")
    resets = info.get("resetsAt")
    when = f", resets {relative(resets, now)}" if resets is not None else ""
    if status == "allowed":
        return f"· {window} limit: allowed{when}"
    mark = "✗" if status == "rejected" else "⚠"
    return f"{mark} {window} limit: {status.replace('_', ' ')}{when}"


def _claude(obj: dict[str, Any], now: dt.datetime) -> list[str]:
    kind, subtype = obj.get("type"), obj.get("subtype")
    if kind == "system" and subtype == "init":
        return [f"── session {obj.get('session_id', '?')} · model {obj.get('model', '?')} · {obj.get('cwd', '')}"]
    if kind == "system" and subtype == "api_retry":
        delay = obj.get("retry_delay_ms")
        wait = f"{delay / 1000:g} s" if isinstance(delay, int | float) else "?"
        return [
            f"⚠ API retry {obj.get('attempt', '?')}/{obj.get('max_retries', '?')} in {wait} "
            f"(HTTP {obj.get('error_status', '?')}: {obj.get('error', '')})"
        ]
    if kind == "rate_limit_event":
        return [_rate_limit(obj.get("rate_limit_info") or {}, now)]
    if kind in ("assistant", "user"):
        out = []
        message = obj.get("message") or {}
        if obj.get("error"):
            out.append(f"✗ {obj['error']}: {_clip(_content_text(message.get('content')))}")
            return out
        for block in message.get("content") or []:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "text" and kind == "assistant":
                out.append(str(block.get("text", "")).rstrip())
            elif block.get("type") == "tool_use":
                out.append(
                    f"→ {block.get('name', '?')} {_clip(json.dumps(block.get('input', {}), ensure_ascii=False))}"
                )
            elif block.get("type") == "tool_result":
                mark = "✗" if block.get("is_error") else "←"
                out.append(f"{mark} {_clip(_content_text(block.get('content')))}")
        return out
    if kind == "result":
        cost = obj.get("total_cost_usd")
        head = (
            f"── {subtype}{' (error)' if obj.get('is_error') else ''}: {obj.get('num_turns', '?')} turn(s), "
            f"{(obj.get('duration_ms') or 0) / 1000:.1f} s"
            + (f", {format_usd(cost)}" if isinstance(cost, int | float) else "")
        )
        text = obj.get("result")
        return [head, *([str(text).rstrip()] if text else [])]
    return []  # stream_event deltas and the rest: the complete messages carry the same text


class Renderer:
    """Renders one transcript line by line, remembering what it already showed.

    Text that streams in pieces (Claude's ``stream_event`` text deltas, written with
    partial messages on) is shown as it arrives, marked ``…``; the complete message that
    follows with the same text is then not shown again, nor a result that repeats the
    agent's last message.
    """

    def __init__(self, fmt: str, now: dt.datetime | None = None) -> None:
        self.fmt = fmt
        self.now = now
        self._streamed = ""
        self._last_text = ""

    def lines(self, line: str) -> list[str]:
        text, obj = _decoded(line, self.fmt)
        if obj is None:
            return _as_is(text)
        kind = obj.get("type")
        delta = _text_delta(obj) if kind == "stream_event" else None
        if delta is not None:
            self._streamed += delta
            return [f"… {delta.strip()}"] if delta.strip() else []
        shown = _render(obj, text, self.now)
        if kind == "assistant":
            if self._streamed:
                streamed, self._streamed = self._streamed.strip(), ""
                shown = [s for s in shown if s.strip() != streamed]
            if shown:
                self._last_text = shown[-1].strip()
        elif kind == "result" and len(shown) > 1 and shown[1].strip() == self._last_text:
            shown = shown[:1]  # the result repeats the agent's last message, shown just above
        return shown


def _text_delta(obj: dict[str, Any]) -> str | None:
    event = obj.get("event")
    delta = event.get("delta") if isinstance(event, dict) else None
    if isinstance(delta, dict) and delta.get("type") == "text_delta" and isinstance(delta.get("text"), str):
        return str(delta["text"])
    return None


def _decoded(line: str, fmt: str) -> tuple[str, dict[str, Any] | None]:
    """The line without its line end, and its JSON object when it is a Claude line that has one."""
    text = line.rstrip("\r\n")
    if not fmt.startswith("claude"):
        return text, None
    try:
        obj = json.loads(text)
    except ValueError:
        return text, None
    return text, obj if isinstance(obj, dict) else None


def _as_is(text: str) -> list[str]:
    return [text] if text.strip() else []


def _render(obj: dict[str, Any], text: str, now: dt.datetime | None) -> list[str]:
    try:
        return _claude(obj, now or dt.datetime.now(dt.UTC))
    except (TypeError, ValueError, AttributeError):  # an odd shape: show it as it is
        return [text]


def render(line: str, fmt: str, now: dt.datetime | None = None) -> list[str]:
    """What to show for one transcript line (maybe nothing); ``now`` for relative times."""
    text, obj = _decoded(line, fmt)
    return _as_is(text) if obj is None else _render(obj, text, now)


STDERR_LINES = 20


def ending(attempt: Attempt) -> list[str]:
    """How a finished attempt ended, for the foot of its log: the outcome, the error, the exit
    code and the CLI's last stderr lines (a failed run often says why only there)."""
    if attempt.state != "finished":
        return []
    exit_code = "" if attempt.exit_code is None else f" (exit {attempt.exit_code})"
    head = f"══ attempt {attempt.number} ended: {attempt.outcome or '?'}{exit_code}"
    lines = [head + (f": {attempt.error_message}" if attempt.error_message and attempt.outcome != "success" else "")]
    if attempt.outcome != "success" and attempt.stderr_tail:
        tail = attempt.stderr_tail.rstrip("\n").splitlines()[-STDERR_LINES:]
        lines += ["── stderr (last lines):", *(f"  {line}" for line in tail)]
    return lines


def follow(
    path: Path, still_running: Callable[[], bool], poll_s: float = 0.5, sleep: Callable[[float], None] = time.sleep
) -> Iterator[str]:
    """Every line of the transcript, then new ones as they are written, until the attempt has
    ended and everything it wrote was read.  Waits for the file if it does not exist yet."""
    handle = None
    pending = ""
    try:
        while True:
            running = still_running()  # asked before reading: lines written before the end are read
            if handle is None and path.exists():
                handle = path.open(encoding="utf-8", errors="replace")
            if handle is not None:
                while chunk := handle.readline():
                    pending += chunk
                    if pending.endswith("\n"):
                        yield pending
                        pending = ""
            if not running:
                if pending:
                    yield pending
                return
            sleep(poll_s)
    finally:
        if handle is not None:
            handle.close()
