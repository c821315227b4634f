"""The incremental line parser every CLI format shares.

A parser takes one stdout line at a time (``feed``) and folds what it learns into
``summary``, a ``StreamSummary`` that stays the same size however long the run
is: no event list is kept.  Bad input (non-JSON chatter such as
``[SandboxDebug] ...``, a truncated last line, invalid UTF-8, fields of the wrong
type) is counted in ``summary.skipped_lines`` and never raised.

Error evidence arrives in two strengths.  Error events before the end (a Claude
``api_retry``, a Codex ``error``) are *hints*: they set ``summary.error_kind`` so a
run that dies without a terminal event is still classified precisely.  The
terminal event then decides: success clears the hints, failure is classified
with them as supporting evidence.
"""

from __future__ import annotations

import dataclasses
import json
from abc import ABC, abstractmethod
from typing import Any, ClassVar

from adw_modules.outcomes import ErrorKind, StreamEvent, StreamSummary, Usage
from adw_modules.workers.streams import signals

# Assistant text kept for ``result_text`` when a CLI streams it in pieces.
MAX_TEXT_CHARS = 64 * 1024
_WHITESPACE = b" \t\r\n\x00"

# Extraction code reads untrusted shapes; these are the errors a wrong shape can raise.
_SHAPE_ERRORS = (TypeError, ValueError, AttributeError, KeyError, IndexError, OverflowError)


class StreamParser(ABC):
    """One transcript's parser.  Feed lines in order, then call ``finish`` once."""

    format: ClassVar[str]

    def __init__(self) -> None:
        self.summary = StreamSummary(format=self.format)
        self._finished = False

    def feed(self, line: str | bytes) -> StreamEvent | None:
        """Parse one line (trailing newline optional).  Returns the event, or None.

        None means the line was blank, unreadable (counted in ``skipped_lines``) or
        carried nothing a caller would act on.  Never raises on bad input.
        """
        data = line.encode("utf-8", "surrogatepass") if isinstance(line, str) else line
        data = data.strip(_WHITESPACE)
        if not data:
            return None
        if data[:1] == b"{" and self._quick_accept(data):
            self.summary.events += 1
            return None
        obj = self._decode(data)
        if obj is None:
            self.summary.skipped_lines += 1
            return None
        self.summary.events += 1
        try:
            return self.handle(obj)
        except _SHAPE_ERRORS:
            # The line was JSON but not the shape this CLI writes: count it, carry on.
            self.summary.events -= 1
            self.summary.skipped_lines += 1
            return None

    def finish(self) -> StreamSummary:
        """Close the transcript (idempotent) and return the summary."""
        if not self._finished:
            self._finished = True
            try:
                self.close()
            except _SHAPE_ERRORS:
                self.summary.skipped_lines += 1
            self.summary.settle_usage()
        return self.summary

    # -- hooks for the format modules ------------------------------------------------

    @abstractmethod
    def handle(self, obj: dict[str, Any]) -> StreamEvent | None:
        """Fold one decoded JSON object into the summary."""

    def usage_so_far(self) -> Usage:
        """The tokens the transcript has reported up to now (a copy), for live progress.

        Formats that only learn their totals at the end (or hold usage back) override this.
        """
        return dataclasses.replace(self.summary.usage)

    def close(self) -> None:  # noqa: B027 - optional hook, most formats need nothing
        """Fold any state held back until the end (e.g. buffered usage) into the summary."""

    def _quick_accept(self, data: bytes) -> bool:
        """True for lines this format need not decode at all (counted as events unread)."""
        return False

    # -- shared helpers ------------------------------------------------------------

    @staticmethod
    def _decode(data: bytes) -> dict[str, Any] | None:
        if data[:1] != b"{":
            return None
        try:
            obj = json.loads(data)
        except ValueError:  # includes JSONDecodeError and UnicodeDecodeError
            return None
        except RecursionError:
            return None
        return obj if isinstance(obj, dict) else None

    def note_session(self, session_id: Any) -> None:
        if isinstance(session_id, str) and session_id:
            self.summary.session_id = session_id

    def note_error(
        self,
        kind: ErrorKind | None,
        message: str | None = None,
        *,
        status: int | None = None,
        retry_after_s: float | None = None,
        resets_at: float | None = None,
    ) -> None:
        """Record failure evidence seen before (or without) a terminal event.

        Stronger evidence is not replaced by weaker (see ``signals.rank``), so a
        rejected plan window stays QUOTA_EXHAUSTED when plain 429 retries follow.
        """
        s = self.summary
        s.is_error = True
        if signals.rank(kind) >= signals.rank(s.error_kind):
            if kind is not None:
                s.error_kind = kind
            if message:
                s.error_message = message
            if status is not None:
                s.api_status = status
            if retry_after_s is not None:
                s.retry_after_s = retry_after_s
            if resets_at is not None:
                s.resets_at = resets_at
        elif s.error_message is None and message:
            s.error_message = message

    def note_success(self) -> None:
        """A terminal success: earlier retries and warnings did not decide the run."""
        s = self.summary
        s.terminal = True
        s.is_error = False
        s.error_kind = None
        s.error_message = None
        s.api_status = None
        s.retry_after_s = None
        s.resets_at = None

    def note_terminal_error(
        self,
        *,
        status: int | None,
        own_kind: ErrorKind | None,
        message: str | None,
    ) -> ErrorKind | None:
        """A terminal failure, classified in the contract's order.

        API status first, then the CLI's own reason (``own_kind``: max turns,
        budget, an error class name), then earlier error events, then the text.
        Returns the kind (None: nothing specific, i.e. a generic API error).
        """
        s = self.summary
        hint = s.error_kind
        kind = signals.kind_from_status(status, message, hint) or own_kind or hint or signals.kind_from_text(message)
        s.terminal = True
        s.is_error = True
        s.error_kind = kind
        if status is not None:
            s.api_status = status
        elif s.api_status is None:
            s.api_status = signals.status_in_text(message)
        if message:
            s.error_message = message
        if kind == ErrorKind.RATE_LIMITED and s.retry_after_s is None:
            s.retry_after_s = signals.retry_after_in_text(message)
        if kind == ErrorKind.QUOTA_EXHAUSTED and s.resets_at is None:
            s.resets_at = signals.resets_at_in_text(message)
        if kind not in (ErrorKind.RATE_LIMITED, ErrorKind.OVERLOADED):
            s.retry_after_s = None
        if kind != ErrorKind.QUOTA_EXHAUSTED:
            s.resets_at = None
        return kind

    def append_text(self, text: str, *, delta: bool) -> None:
        """Set or extend ``result_text``, keeping only the last MAX_TEXT_CHARS."""
        if delta and self.summary.result_text:
            text = self.summary.result_text + text
        self.summary.result_text = text[-MAX_TEXT_CHARS:]


# -- tolerant field readers (JSON from a CLI may hold any type anywhere) -------------


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def as_float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if value == value else None  # drop NaN


def count(value: Any) -> int:
    """A token count: a non-negative int, 0 when absent or malformed."""
    number = as_int(value)
    return number if number is not None and number > 0 else 0


def usage_from(
    raw: dict[str, Any],
    *,
    input_key: str,
    output_key: str,
    cache_read_key: str,
    cache_write_key: str,
    cost_key: str | None = None,
) -> Usage:
    """A ``Usage`` from a CLI's usage dict whose input already excludes the cache."""
    usage = Usage(
        input_tokens=count(raw.get(input_key)),
        output_tokens=count(raw.get(output_key)),
        cache_read_tokens=count(raw.get(cache_read_key)),
        cache_write_tokens=count(raw.get(cache_write_key)),
    )
    if cost_key is not None:
        usage.cost_usd = as_float(raw.get(cost_key))
    return usage
