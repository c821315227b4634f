"""Gemini CLI: ``gemini -p … --output-format stream-json``.

Events (``packages/core/src/output/types.ts``): init, message (assistant text
arrives as ``delta`` pieces), tool_use, tool_result, error (severity warning or
error) and result (status success|error, stats).  No cost is reported.

A run can end with ``result.status == "success"`` after an ``error`` event of
severity ``error`` (e.g. "Maximum session turns exceeded"): the CLI said it
failed, so the run is a failure.  Warnings do not count.

Stats: ``input_tokens`` includes ``cached``; ``input`` is the uncached part.
"""

from __future__ import annotations

from typing import Any

from adw_modules.outcomes import StreamEvent, Usage
from adw_modules.streams import signals
from adw_modules.streams.base import StreamParser, as_dict, as_float, as_str, count

_AUTO_MODEL = "auto"  # init.model when the CLI routes itself; the real names are in stats


def _stats_usage(raw: dict[str, Any]) -> Usage:
    cached = count(raw.get("cached"))
    uncached = raw.get("input")
    return Usage(
        input_tokens=count(uncached) if uncached is not None else max(count(raw.get("input_tokens")) - cached, 0),
        output_tokens=count(raw.get("output_tokens")),
        cache_read_tokens=cached,
    )


class GeminiParser(StreamParser):
    """``gemini -p … --output-format stream-json``."""

    format = "gemini-stream-json"

    def __init__(self) -> None:
        super().__init__()
        self._failed_message: str | None = None  # an error-severity event before the result

    def handle(self, obj: dict[str, Any]) -> StreamEvent | None:
        kind = obj.get("type")
        if kind == "init":
            self.note_session(obj.get("session_id"))
            model = as_str(obj.get("model"))
            if model != _AUTO_MODEL:
                self.summary.note_model(model)
            return StreamEvent(type=kind)
        if kind == "message":
            content = obj.get("content")
            if obj.get("role") == "assistant" and isinstance(content, str):
                self.append_text(content, delta=obj.get("delta") is True)
            return StreamEvent(type=kind)
        if kind == "error":
            return self._error(obj)
        if kind == "result":
            return self._result(obj)
        if isinstance(kind, str):
            return StreamEvent(type=kind)
        return None

    def _error(self, obj: dict[str, Any]) -> StreamEvent:
        message = as_str(obj.get("message")) or "error"
        severity = as_str(obj.get("severity"))
        if severity != "error":
            return StreamEvent(type="error", subtype=severity, message=signals.short(message))
        self._failed_message = message
        error_kind = signals.kind_from_text(message)
        self.note_error(error_kind, message)
        return StreamEvent(
            type="error",
            subtype=severity,
            signal=error_kind if error_kind in signals.ABORT_KINDS else None,
            message=signals.short(message),
        )

    def _result(self, obj: dict[str, Any]) -> StreamEvent:
        s = self.summary
        stats = as_dict(obj.get("stats"))
        if stats:
            s.usage = _stats_usage(stats)
            duration_ms = as_float(stats.get("duration_ms"))
            if duration_ms:  # 0 on fatal errors: unknown rather than instant
                s.duration_s = duration_ms / 1000.0
            models = as_dict(stats.get("models"))
            if models:
                s.per_model = {}
                for name, raw in models.items():
                    s.note_model(name)
                    s.per_model[name] = _stats_usage(as_dict(raw))
        status = as_str(obj.get("status"))
        if status == "success" and self._failed_message is None:
            self.note_success()
            return StreamEvent(type="result", subtype=status, terminal=True)
        error = as_dict(obj.get("error"))
        error_type = as_str(error.get("type"))
        message = as_str(error.get("message")) or self._failed_message or error_type or "error"
        own = signals.GEMINI_ERROR_TYPES.get(error_type or "")
        self.note_terminal_error(status=signals.status_in_text(message), own_kind=own, message=message)
        return StreamEvent(type="result", subtype=status, terminal=True, message=signals.short(message))
