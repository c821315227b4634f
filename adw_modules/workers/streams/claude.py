"""Claude Code: ``--output-format stream-json --verbose`` and ``--output-format json``.

Both formats carry the same objects (system/init, assistant, user, result, …);
``json`` prints only the result object, or with ``--verbose`` one array of all of
them.  One ``handle`` serves both.

Token accounting: ``result.modelUsage`` is the breakdown per model, and its sum is what
``total_cost_usd`` covers; ``result.usage`` covers the main model only (haiku side calls,
subagents and title generation are missing from it), so it is used only when there is no
``modelUsage``.  Without a result the assistant messages are summed, counting each
``message.id`` once, because the CLI repeats a message's usage on every content block it
streams as its own line.  The main model is the init event's ``model``.
"""

from __future__ import annotations

import dataclasses
import json
from collections import OrderedDict
from typing import Any

from adw_modules.outcomes import ErrorKind, StreamEvent, Usage
from adw_modules.workers.streams import signals
from adw_modules.workers.streams.base import (
    StreamParser,
    as_dict,
    as_float,
    as_int,
    as_str,
    usage_from,
)

# Assistant messages whose usage may still be repeated by a later line.  Blocks of
# one message arrive together; a few dozen covers sub-agents interleaving.
_OPEN_MESSAGES = 64
_SYNTHETIC_MODEL = "<synthetic>"  # the CLI's stand-in model on locally made error messages

_OWN_REASONS: dict[str, ErrorKind] = {
    "error_max_turns": ErrorKind.MAX_TURNS,
    "max_turns": ErrorKind.MAX_TURNS,
    "error_max_budget_usd": ErrorKind.BUDGET_EXCEEDED,
    "budget_exhausted": ErrorKind.BUDGET_EXCEEDED,
}

# Lines carrying nothing the summary needs: tool results and partial-message deltas.
# They are often the largest lines of a run, so they are not decoded at all.
_UNREAD_PREFIXES = (b'{"type":"user"', b'{"type":"stream_event"')


def _claude_usage(raw: dict[str, Any]) -> Usage:
    return usage_from(
        raw,
        input_key="input_tokens",
        output_key="output_tokens",
        cache_read_key="cache_read_input_tokens",
        cache_write_key="cache_creation_input_tokens",
    )


def _model_usage(raw: dict[str, Any]) -> Usage:
    return usage_from(
        raw,
        input_key="inputTokens",
        output_key="outputTokens",
        cache_read_key="cacheReadInputTokens",
        cache_write_key="cacheCreationInputTokens",
        cost_key="costUSD",
    )


def _message_text(message: dict[str, Any]) -> str | None:
    content = message.get("content")
    if isinstance(content, str):
        return as_str(content)
    if not isinstance(content, list):
        return None
    texts = [b["text"] for b in content if isinstance(b, dict) and isinstance(b.get("text"), str)]
    return "\n".join(texts) or None


class ClaudeStreamParser(StreamParser):
    """``claude -p … --output-format stream-json --verbose``."""

    format = "claude-stream-json"

    def __init__(self) -> None:
        super().__init__()
        self._open: OrderedDict[str, tuple[str | None, Usage]] = OrderedDict()
        self._assistant_total = Usage()
        self._assistant_per_model: dict[str, Usage] = {}
        self._result_usage = False
        self._result_per_model = False

    def _quick_accept(self, data: bytes) -> bool:
        return data.startswith(_UNREAD_PREFIXES) and data.endswith(b"}")

    def handle(self, obj: dict[str, Any]) -> StreamEvent | None:
        self.note_session(obj.get("session_id"))
        kind = obj.get("type")
        if kind == "assistant":
            return self._assistant(obj)
        if kind == "system":
            return self._system(obj)
        if kind == "rate_limit_event":
            return self._rate_limit(obj)
        if kind == "result":
            return self._result(obj)
        if isinstance(kind, str):
            return StreamEvent(type=kind, subtype=as_str(obj.get("subtype")))
        return None

    # -- event kinds -------------------------------------------------------------------

    def _system(self, obj: dict[str, Any]) -> StreamEvent:
        subtype = as_str(obj.get("subtype"))
        if subtype == "init":
            self._note_model(obj.get("model"), main=True)
            return StreamEvent(type="system", subtype=subtype)
        if subtype != "api_retry":
            return StreamEvent(type="system", subtype=subtype)
        self.summary.retry_events += 1
        status = as_int(obj.get("error_status"))
        error = as_str(obj.get("error"))
        # Before CLI 0.3.150 a 529 was reported as error "rate_limit": the status decides.
        kind = signals.kind_from_status(status) if status in (401, 403, 429, 529) else None
        kind = kind or signals.CLAUDE_ERROR_ENUM.get(error or "")
        delay_ms = as_float(obj.get("retry_delay_ms"))
        retry_after = None if delay_ms is None else round(delay_ms / 1000.0, 3)
        attempt, of = as_int(obj.get("attempt")), as_int(obj.get("max_retries"))
        message = f"attempt {attempt or '?'}{f' of {of}' if of else ''} failed ({error or status or 'error'})"
        if kind is not None:
            self.note_error(kind, message, status=status, retry_after_s=retry_after)
        return StreamEvent(
            type="system",
            subtype=subtype,
            signal=kind if kind in signals.ABORT_KINDS else None,
            retry_after_s=retry_after,
            message=message,
        )

    def _rate_limit(self, obj: dict[str, Any]) -> StreamEvent:
        info = as_dict(obj.get("rate_limit_info"))
        status = as_str(info.get("status"))
        if status != "rejected":
            return StreamEvent(type="rate_limit_event", subtype=status)
        resets_at = as_float(info.get("resetsAt"))
        window = as_str(info.get("rateLimitType")) or "plan"
        message = f"{window} usage limit reached"
        self.note_error(ErrorKind.QUOTA_EXHAUSTED, message, resets_at=resets_at)
        return StreamEvent(
            type="rate_limit_event",
            subtype=status,
            signal=ErrorKind.QUOTA_EXHAUSTED,
            resets_at=resets_at,
            message=message,
        )

    def _assistant(self, obj: dict[str, Any]) -> StreamEvent:
        message = as_dict(obj.get("message"))
        model = as_str(message.get("model"))
        if model != _SYNTHETIC_MODEL:
            self._note_model(model)
        usage = message.get("usage")
        msg_id = as_str(message.get("id"))
        if isinstance(usage, dict) and msg_id:
            self._open[msg_id] = (model, _claude_usage(usage))
            self._open.move_to_end(msg_id)
            while len(self._open) > _OPEN_MESSAGES:
                self._commit(*self._open.popitem(last=False)[1])
        error = as_str(obj.get("error"))
        if error is None:
            return StreamEvent(type="assistant")
        text = _message_text(message)
        kind = signals.CLAUDE_ERROR_ENUM.get(error) or signals.kind_from_text(text)
        self.note_error(kind, text or error)
        return StreamEvent(type="assistant", subtype=error, message=signals.short(text))

    def _result(self, obj: dict[str, Any]) -> StreamEvent:
        s = self.summary
        subtype = as_str(obj.get("subtype"))
        result = obj.get("result")
        if isinstance(result, str):
            s.result_text = result
        s.num_turns = as_int(obj.get("num_turns"))
        duration_ms = as_float(obj.get("duration_ms"))
        if duration_ms is not None:
            s.duration_s = duration_ms / 1000.0
        cost = as_float(obj.get("total_cost_usd"))
        if cost is not None:
            s.cost_usd = cost
            s.cost_source = "reported"
        self._result_tokens(obj)
        terminal_reason = as_str(obj.get("terminal_reason"))
        # Old CLIs sent is_error false on error_* subtypes: the subtype is trusted too.
        failed = _is_true(obj.get("is_error")) or (subtype or "").startswith("error")
        if not failed:
            self.note_success()
            return StreamEvent(type="result", subtype=subtype, terminal=True)
        own = _OWN_REASONS.get(subtype or "") or _OWN_REASONS.get(terminal_reason or "")
        errors = obj.get("errors")
        text = as_str(result) or (
            "; ".join(e for e in errors if isinstance(e, str)) if isinstance(errors, list) else None
        )
        self.note_terminal_error(
            status=as_int(obj.get("api_error_status")),
            own_kind=own,
            message=text or s.error_message or subtype,
        )
        return StreamEvent(type="result", subtype=subtype, terminal=True, message=signals.short(s.error_message))

    def _result_tokens(self, obj: dict[str, Any]) -> None:
        """The result's tokens: ``modelUsage`` per model when given (``settle_usage`` sums it),
        else ``usage`` as the run's total."""
        s = self.summary
        model_usage = as_dict(obj.get("modelUsage"))
        usage = as_dict(obj.get("usage"))
        if model_usage:
            s.per_model = {}
            for name, raw in model_usage.items():
                self._note_model(name)
                s.per_model[name] = _model_usage(as_dict(raw))
            self._result_per_model = True
            self._result_usage = True
        elif usage:
            s.usage = _claude_usage(usage)
            self._result_usage = True
        if s.cost_usd is not None:
            s.usage.cost_usd = s.cost_usd

    # -- helpers ---------------------------------------------------------------------

    def _note_model(self, model: Any, *, main: bool = False) -> None:
        if isinstance(model, str) and model and model != _SYNTHETIC_MODEL:
            self.summary.note_model(model, main=main)

    def _commit(self, model: str | None, usage: Usage) -> None:
        self._assistant_total.add(usage)
        if model and model != _SYNTHETIC_MODEL:
            self._assistant_per_model.setdefault(model, Usage()).add(usage)

    def usage_so_far(self) -> Usage:
        if self._result_usage:
            return super().usage_so_far()
        total = dataclasses.replace(self._assistant_total)
        for _, usage in self._open.values():
            total.add(usage)
        return total

    def close(self) -> None:
        while self._open:
            self._commit(*self._open.popitem(last=False)[1])
        if not self._result_usage:
            self.summary.usage = self._assistant_total
            if self.summary.cost_usd is not None:
                self.summary.usage.cost_usd = self.summary.cost_usd
        if self._result_per_model:
            return
        if not self._result_usage:
            self.summary.per_model = self._assistant_per_model
        elif len(self._assistant_per_model) == 1:
            # An old CLI's result.usage is the run's total; streamed messages may undercount it.
            (model,) = self._assistant_per_model
            self.summary.per_model = {model: dataclasses.replace(self.summary.usage)}
        # Several models and no modelUsage: there is no breakdown that adds up to the total.


def _is_true(value: Any) -> bool:
    """``is_error`` as the CLI meant it: a bool, but "yes", "true" or 1 from a proxy mean failure too."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    return isinstance(value, str) and value.strip().lower() in ("true", "yes", "1", "error")


def _starts_document(data: bytes) -> bool:
    """An object, or an array of objects; not chatter such as ``[SandboxDebug] …``."""
    if data[:1] == b"{":
        return True
    return data[:1] == b"[" and data[1:].lstrip()[:1] in (b"", b"{", b"]")


class ClaudeJsonParser(ClaudeStreamParser):
    """``claude -p … --output-format json``: one object, or an array with ``--verbose``.

    The document is buffered (it is one document, usually one line) and handed,
    element by element, to the stream-json handler.
    """

    format = "claude-json"

    def __init__(self) -> None:
        super().__init__()
        self._buffer: list[bytes] = []

    def feed(self, line: str | bytes) -> StreamEvent | None:
        data = line.encode("utf-8", "surrogatepass") if isinstance(line, str) else line
        data = data.strip()
        if not data:
            return None
        if not self._buffer and not _starts_document(data):
            self.summary.skipped_lines += 1  # chatter before the document
            return None
        self._buffer.append(data)
        # Only try to decode when the document may be complete (cheap check first).
        if data[-1:] not in (b"}", b"]"):
            return None
        try:
            doc = json.loads(b"\n".join(self._buffer))
        except ValueError:
            return None
        except RecursionError:
            doc = None
        self._buffer.clear()
        return self._document(doc)

    def _document(self, doc: Any) -> StreamEvent | None:
        items = doc if isinstance(doc, list) else [doc]
        last: StreamEvent | None = None
        for item in items:
            if not isinstance(item, dict):
                self.summary.skipped_lines += 1
                continue
            self.summary.events += 1
            try:
                event = self.handle(item)
            except (TypeError, ValueError, AttributeError, KeyError, IndexError, OverflowError):
                self.summary.events -= 1
                self.summary.skipped_lines += 1
                continue
            if event is not None and (last is None or not last.terminal or event.terminal):
                last = event
        return last

    def close(self) -> None:
        if self._buffer:
            # A document that never completed: truncated output.
            self.summary.skipped_lines += len(self._buffer)
            self._buffer.clear()
        super().close()
