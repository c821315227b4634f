"""Codex CLI: ``codex exec --json``.

Events (``codex-rs/exec/src/exec_events.rs``): thread.started, turn.started,
item.started/updated/completed, turn.completed (usage), turn.failed, and
top-level ``error``.  ``error`` lines are also the CLI's reconnect chatter
("Reconnecting... 1/5 (unexpected status 429 …)"), so they are hints and signals,
never terminal.  Codex reports no cost and no model name.

Usage: ``input_tokens`` includes ``cached_input_tokens`` (and, in newer builds,
``cache_write_input_tokens``, assumed included the same way), so both are
subtracted to get the uncached input.
"""

from __future__ import annotations

import json
from typing import Any

from adw_modules.outcomes import ErrorKind, StreamEvent, Usage
from adw_modules.workers.streams import signals
from adw_modules.workers.streams.base import StreamParser, as_dict, as_int, as_str, count


def _unwrap_api_error(message: str) -> tuple[int | None, str]:
    """Status and readable text of a message that is an API error body in JSON.

    Codex passes some upstream errors through verbatim, e.g.
    ``{"type":"error","status":400,"error":{"type":"invalid_request_error","message":"…"}}``.
    """
    if message.startswith("{"):
        try:
            body = json.loads(message)
        except ValueError:
            body = None
        if isinstance(body, dict):
            inner = as_str(as_dict(body.get("error")).get("message"))
            status = as_int(body.get("status"))
            if inner:
                return status, inner
    return signals.status_in_text(message), message


class CodexParser(StreamParser):
    """``codex exec --json``."""

    format = "codex-json"

    def handle(self, obj: dict[str, Any]) -> StreamEvent | None:
        kind = obj.get("type")
        if kind == "thread.started":
            self.note_session(obj.get("thread_id"))
            return StreamEvent(type=kind)
        if kind == "item.completed":
            item = as_dict(obj.get("item"))
            text = as_str(item.get("text"))
            if item.get("type") == "agent_message" and text:
                self.summary.result_text = text
            return StreamEvent(type=kind, subtype=as_str(item.get("type")))
        if kind == "turn.completed":
            return self._completed(as_dict(obj.get("usage")))
        if kind == "turn.failed":
            message = as_str(as_dict(obj.get("error")).get("message")) or "turn failed"
            status, message = _unwrap_api_error(message)
            self.note_terminal_error(status=status, own_kind=None, message=message)
            return StreamEvent(type=kind, terminal=True, message=signals.short(message))
        if kind == "error":
            return self._error(as_str(obj.get("message")) or "error")
        if isinstance(kind, str):
            return StreamEvent(type=kind)
        return None

    def _completed(self, raw: dict[str, Any]) -> StreamEvent:
        cached = count(raw.get("cached_input_tokens"))
        written = count(raw.get("cache_write_input_tokens"))
        usage = Usage(
            input_tokens=max(count(raw.get("input_tokens")) - cached - written, 0),
            output_tokens=count(raw.get("output_tokens")),
            cache_read_tokens=cached,
            cache_write_tokens=written,
        )
        # A resumed thread may run several turns in one process: they add up.
        self.summary.usage.add(usage)
        self.note_success()
        return StreamEvent(type="turn.completed", terminal=True)

    def _error(self, message: str) -> StreamEvent:
        if message.startswith("Reconnecting"):
            self.summary.retry_events += 1
        kind = signals.kind_from_text(message)
        status = signals.status_in_text(message)
        retry_after = signals.retry_after_in_text(message) if kind == ErrorKind.RATE_LIMITED else None
        self.note_error(kind, message, status=status, retry_after_s=retry_after)
        return StreamEvent(
            type="error",
            signal=kind if kind in signals.ABORT_KINDS else None,
            retry_after_s=retry_after,
            message=signals.short(message),
        )
