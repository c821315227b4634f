"""OpenCode: ``opencode run --format json``.

Every line is ``{type, timestamp, sessionID, …}`` (``packages/opencode/src/cli/cmd/run.ts``):
step_start, text, reasoning, tool_use, step_finish, error, and in newer builds
``done``.  Usage and cost come per step and are summed.  A step finishing with
``part.reason == "stop"`` (or a ``done`` line) ends the run; a step finishing with
"tool-calls" does not.  Older builds write no ``reason`` at all: there the last
step_finish, with no error after it, ends the run.  An ``error`` line is failure evidence but not terminal:
OpenCode is known to hang after one, so the runner's watchdog decides the end.

Tokens: ``tokens.input`` excludes the cache; ``tokens.output`` excludes
reasoning, which is billed as output and so added to ``output_tokens``.

An API error line carries the HTTP answer (``error.data``: ``statusCode``,
``responseHeaders``, ``responseBody``; seen with opencode-ai 1.18.33 against a
fake API, tests/workers/opencode_cli).  Its ``retry-after-ms`` / ``retry-after``
header is the server's own wait, used when the message names none.
"""

from __future__ import annotations

from typing import Any

from adw_modules.outcomes import ErrorKind, StreamEvent, Usage
from adw_modules.workers.streams import signals
from adw_modules.workers.streams.base import StreamParser, as_dict, as_float, as_int, as_str, count


class OpenCodeParser(StreamParser):
    """``opencode run --format json``."""

    format = "opencode-json"

    def __init__(self) -> None:
        super().__init__()
        # Builds before ``part.reason`` existed end every step the same way: the last
        # step_finish of a transcript with no error after it is the end of the run.
        self._ended_without_reason = False

    def handle(self, obj: dict[str, Any]) -> StreamEvent | None:
        self.note_session(obj.get("sessionID"))
        kind = obj.get("type")
        part = as_dict(obj.get("part"))
        if kind == "text":
            text = part.get("text")
            if isinstance(text, str) and text:
                self.summary.result_text = text[-64 * 1024 :]
            return StreamEvent(type=kind)
        if kind == "step_finish":
            return self._step_finish(part)
        if kind == "done":
            self.note_success()
            return StreamEvent(type=kind, terminal=True)
        if kind == "error":
            self._ended_without_reason = False
            return self._error(as_dict(obj.get("error")))
        if isinstance(kind, str):
            return StreamEvent(type=kind)
        return None

    def _step_finish(self, part: dict[str, Any]) -> StreamEvent:
        s = self.summary
        tokens = as_dict(part.get("tokens"))
        cache = as_dict(tokens.get("cache"))
        s.usage.add(
            Usage(
                input_tokens=count(tokens.get("input")),
                output_tokens=count(tokens.get("output")) + count(tokens.get("reasoning")),
                cache_read_tokens=count(cache.get("read")),
                cache_write_tokens=count(cache.get("write")),
            )
        )
        cost = as_float(part.get("cost"))
        if cost is not None:
            s.cost_usd = (s.cost_usd or 0.0) + cost
            s.cost_source = "reported"
            s.usage.cost_usd = s.cost_usd
        reason = as_str(part.get("reason"))
        self._ended_without_reason = "reason" not in part
        if reason == "stop":
            self.note_success()
            return StreamEvent(type="step_finish", subtype=reason, terminal=True)
        return StreamEvent(type="step_finish", subtype=reason)

    def close(self) -> None:
        s = self.summary
        if self._ended_without_reason and not s.terminal and not s.is_error:
            self.note_success()  # the exit code still decides (classify needs 0 for success)

    def _error(self, error: dict[str, Any]) -> StreamEvent:
        data = as_dict(error.get("data"))
        name = as_str(error.get("name")) or "error"
        message = as_str(data.get("message")) or as_str(error.get("message")) or name
        status = as_int(data.get("statusCode"))
        kind = (
            signals.kind_from_status(status, message) or signals.kind_from_text(message) or signals.kind_from_text(name)
        )
        retry_after = signals.retry_after_in_text(message)
        if retry_after is None and kind in (ErrorKind.RATE_LIMITED, ErrorKind.OVERLOADED):
            retry_after = _retry_after_header(as_dict(data.get("responseHeaders")))
        self.note_error(kind, message, status=status, retry_after_s=retry_after)
        return StreamEvent(
            type="error",
            subtype=name,
            signal=kind if kind in signals.ABORT_KINDS else None,
            retry_after_s=retry_after,
            message=signals.short(message),
        )


def _retry_after_header(headers: dict[str, Any]) -> float | None:
    """Seconds from ``retry-after-ms`` or a numeric ``retry-after`` (names as the CLI lower-cases them)."""
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        raw = as_str(headers.get(name))
        if raw is None:
            continue
        try:
            value = float(raw) / scale
        except ValueError:
            continue
        if 0 <= value < 1e7:  # rejects nan/inf and nonsense
            return round(value, 3)
    return None
