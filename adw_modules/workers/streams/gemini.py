"""Gemini CLI: ``gemini -p … --output-format stream-json``.

Events (``packages/core/src/output/types.ts``): init, message (assistant text
arrives as ``delta`` pieces), tool_use, tool_result, error (severity warning or
error) and result (status success|error, stats).  No cost is reported.

A run can end with ``result.status == "success"`` after an ``error`` event of
severity ``error`` (e.g. "Maximum session turns exceeded"): the CLI said it
failed, so the run is a failure.  Warnings do not count.

Stats: ``input_tokens`` includes ``cached``; ``input`` is the uncached part.

API failures (observed with the real CLI 0.61 against a fake API, ``tests/workers/gemini_cli/``) end with
``result.error.type == "unknown"`` and a message ``[API Error: …]`` that has lost the HTTP
status of the errors the CLI classified itself (429, 503, 404).  Two things in that text are the
CLI's own verdict and decide over the generic keyword rules: ``Suggested retry after Ns.``, which
it appends to quota errors it retries (Google words even a per-minute limit "You exceeded your
current quota … billing", which alone reads as an exhausted quota), and the hint it appends to
every 429 ("Please wait and try again later. To increase your limits …").  A bad API key is a
400 ``INVALID_ARGUMENT`` whose only auth evidence is ``API_KEY_INVALID``/"API key not valid".
"""

from __future__ import annotations

import re
from typing import Any

from adw_modules.outcomes import ErrorKind, StreamEvent, Usage
from adw_modules.workers.streams import signals
from adw_modules.workers.streams.base import StreamParser, as_dict, as_float, as_str, count

_AUTO_MODEL = "auto"  # init.model when the CLI routes itself; the real names are in stats

# packages/core/src/utils/errorParsing.ts: appended to every HTTP 429 the CLI reports (API key
# and Vertex wording; the Google-login wording announces a model switch instead).
_CLI_429_HINT = "Please wait and try again later. To increase your limits, request a quota increase through"
# googleQuotaErrors.ts: RetryableQuotaError text (TerminalQuotaError above 300 s).
_CLI_SUGGESTED_RETRY = re.compile(r"Suggested retry after (\d+(?:\.\d+)?)s\b")
_CLI_MAX_RETRYABLE_S = 300.0
_GOOGLE_BAD_KEY = re.compile(r"API_KEY_INVALID|API key not valid|API key expired", re.IGNORECASE)


def _stats_usage(raw: dict[str, Any]) -> Usage:
    cached = count(raw.get("cached"))
    uncached = raw.get("input")
    prompt = count(raw.get("input_tokens")) if raw.get("input_tokens") is not None else count(uncached) + cached
    output = count(raw.get("output_tokens"))
    # output_tokens is the candidates' count only; thinking tokens, billed as output, show up
    # only in the total.
    total = raw.get("total_tokens")
    thoughts = max(count(total) - prompt - output, 0) if total is not None else 0
    return Usage(
        input_tokens=count(uncached) if uncached is not None else max(prompt - cached, 0),
        output_tokens=output + thoughts,
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
                self.summary.note_model(model, main=True)
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
                for name in models:
                    s.note_model(name)
                s.per_model = _per_model_stats(stats, models)
        status = as_str(obj.get("status"))
        if status == "success" and self._failed_message is None:
            self.note_success()
            return StreamEvent(type="result", subtype=status, terminal=True)
        error = as_dict(obj.get("error"))
        error_type = as_str(error.get("type"))
        message = as_str(error.get("message")) or self._failed_message or error_type or "error"
        api_status = signals.status_in_text(message)
        if api_status is None and _CLI_429_HINT in message:
            api_status = 429
        verdict = _cli_verdict(message)
        if verdict is not None:
            # The CLI's own verdict outranks what the status plus Google's wording would suggest.
            self.note_terminal_error(status=None, own_kind=verdict, message=message)
            if api_status is not None:
                s.api_status = api_status
        else:
            own = signals.GEMINI_ERROR_TYPES.get(error_type or "")
            self.note_terminal_error(status=api_status, own_kind=own, message=message)
        return StreamEvent(type="result", subtype=status, terminal=True, message=signals.short(message))


def _per_model_stats(stats: dict[str, Any], models: dict[str, Any]) -> dict[str, Usage]:
    """Each model's usage.  Builds whose per-model entries carry no ``cached`` split still give
    it in the totals: the cached tokens are then shared out in proportion to each model's
    prompt, so an estimate prices them as cache reads, not as fresh input."""
    per_model = {name: _stats_usage(as_dict(raw)) for name, raw in models.items()}
    cached = count(stats.get("cached"))
    if not cached or any("cached" in as_dict(raw) for raw in models.values()):
        return per_model
    prompts = {name: u.input_tokens for name, u in per_model.items()}
    total_prompt = sum(prompts.values())
    if total_prompt < cached:
        return per_model  # inconsistent totals: leave the models as reported
    left = cached
    names = sorted(prompts, key=prompts.__getitem__)
    for i, name in enumerate(names):
        share = left if i == len(names) - 1 else round(cached * prompts[name] / total_prompt)
        share = min(share, per_model[name].input_tokens, left)
        per_model[name].input_tokens -= share
        per_model[name].cache_read_tokens += share
        left -= share
    return per_model


def _cli_verdict(message: str) -> ErrorKind | None:
    """What the Gemini CLI's wording of a failure settles on its own (see the module docstring)."""
    if _GOOGLE_BAD_KEY.search(message):
        return ErrorKind.AUTH_FAILED
    match = _CLI_SUGGESTED_RETRY.search(message)
    if match:
        retryable = float(match.group(1)) <= _CLI_MAX_RETRYABLE_S
        return ErrorKind.RATE_LIMITED if retryable else ErrorKind.QUOTA_EXHAUSTED
    return None
