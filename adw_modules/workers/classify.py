"""Turn how an attempt ended into its single ``Outcome``.

Inputs: the parser's ``StreamSummary``, the exit code, and how the runner saw the
process end (``ended_by``: exit, timeout, idle_timeout, cancelled, aborted,
launch_failed).  Rules, in order:

* launch_failed -> LAUNCH_FAILED; cancelled -> CANCELLED; timeout -> TIMEOUT;
  idle_timeout -> STALLED; aborted on a stream signal -> that signal's kind.
* Success needs both a terminal event reporting success and exit code 0 (Claude
  reports API failures as ``subtype: success`` with ``is_error: true``; Codex has
  exited 0 after ``turn.failed``).  A terminal success with another exit code is
  CRASHED.
* A terminal failure takes the kind the parser classified (API status, then the
  CLI's own reason, then earlier error events, then text), else what stderr
  names, else API_ERROR.
* No terminal event: what the stream or stderr named, else CRASHED.

Messages are short and human: they end up in issue comments.
"""

from __future__ import annotations

import time

from adw_modules.outcomes import ErrorKind, Outcome, StreamEvent, StreamSummary
from adw_modules.workers.streams import signals

ENDINGS = frozenset({"exit", "timeout", "idle_timeout", "cancelled", "aborted", "launch_failed"})

# Gemini CLI's documented exit codes (packages/core/src/utils/exitCodes.ts).
_GEMINI_EXIT_CODES: dict[int, ErrorKind] = {41: ErrorKind.AUTH_FAILED, 53: ErrorKind.MAX_TURNS}

_HEADLINES: dict[ErrorKind, str] = {
    ErrorKind.RATE_LIMITED: "rate limited by the API",
    ErrorKind.OVERLOADED: "the API is overloaded",
    ErrorKind.AUTH_FAILED: "authentication failed",
    ErrorKind.QUOTA_EXHAUSTED: "usage quota or credit exhausted",
    ErrorKind.INVALID_MODEL: "the model does not exist or is not available",
    ErrorKind.CONTEXT_TOO_LONG: "the prompt is too long for the model's context window",
    ErrorKind.MAX_TURNS: "stopped at the maximum number of turns",
    ErrorKind.BUDGET_EXCEEDED: "stopped at the spending cap",
    ErrorKind.TIMEOUT: "timed out",
    ErrorKind.STALLED: "stalled: no output for too long",
    ErrorKind.CRASHED: "the CLI crashed",
    ErrorKind.CANCELLED: "cancelled",
    ErrorKind.API_ERROR: "API error",
    ErrorKind.LAUNCH_FAILED: "the CLI could not be started",
}


def classify(
    summary: StreamSummary | None,
    exit_code: int | None,
    *,
    ended_by: str = "exit",
    abort_signal: StreamEvent | None = None,
    stderr_tail: str = "",
    launch_error: str | None = None,
) -> Outcome:
    """The outcome of one attempt.  ValueError for an unknown ``ended_by``."""
    if ended_by not in ENDINGS:
        raise ValueError(f"unknown ended_by {ended_by!r}; expected one of {', '.join(sorted(ENDINGS))}")
    s = summary
    if ended_by == "launch_failed" or launch_error is not None:
        return _failure(ErrorKind.LAUNCH_FAILED, detail=launch_error or _last_line(stderr_tail))
    if ended_by == "cancelled":
        return _failure(ErrorKind.CANCELLED)
    if ended_by == "timeout":
        return _failure(ErrorKind.TIMEOUT, detail=_seen(s))
    if ended_by == "idle_timeout":
        return _failure(ErrorKind.STALLED, detail=_seen(s))
    if ended_by == "aborted":
        if abort_signal is not None and abort_signal.signal is not None:
            return _failure(
                abort_signal.signal,
                status=s.api_status if s is not None and s.error_kind == abort_signal.signal else None,
                retry_after_s=abort_signal.retry_after_s,
                resets_at=abort_signal.resets_at,
                detail=abort_signal.message,
            )
        # Stopped on purpose without a named reason: keep what the stream said, if anything.
        if s is not None and s.error_kind is not None:
            return _from_summary(s, s.error_kind)
        return _failure(ErrorKind.CANCELLED, detail="stopped by the runner")

    if s is not None and s.terminal and not s.is_error:
        if exit_code == 0:
            return Outcome(ok=True)
        return _failure(ErrorKind.CRASHED, detail=f"reported success but exited with code {exit_code}")
    stderr_kind = signals.kind_from_text(stderr_tail)
    if s is not None and s.terminal:
        return _from_summary(s, s.error_kind or stderr_kind or ErrorKind.API_ERROR, stderr_tail)
    # No terminal event: a crash, unless the stream or stderr named something better.
    kind = (s.error_kind if s is not None else None) or stderr_kind
    if kind is None and s is not None and s.format.startswith("gemini") and exit_code is not None:
        kind = _GEMINI_EXIT_CODES.get(exit_code)
    if kind is not None:
        return _from_summary(s, kind, stderr_tail)
    if s is not None and s.is_error:
        return _from_summary(s, ErrorKind.API_ERROR, stderr_tail)
    code = "without an exit code" if exit_code is None else f"with code {exit_code}"
    detail = f"exited {code} before its final result"
    tail = _last_line(stderr_tail)
    return _failure(ErrorKind.CRASHED, detail=f"{detail}: {tail}" if tail else detail)


def _from_summary(s: StreamSummary | None, kind: ErrorKind, stderr_tail: str = "") -> Outcome:
    if s is None:
        return _failure(kind, detail=_last_line(stderr_tail))
    detail = s.error_message or _last_line(stderr_tail)
    if kind == ErrorKind.BUDGET_EXCEEDED and s.cost_usd is not None:
        detail = f"${s.cost_usd:.2f} spent"
    return _failure(
        kind,
        status=s.api_status,
        retry_after_s=s.retry_after_s if kind in (ErrorKind.RATE_LIMITED, ErrorKind.OVERLOADED) else None,
        resets_at=s.resets_at if kind == ErrorKind.QUOTA_EXHAUSTED else None,
        detail=detail,
    )


def _failure(
    kind: ErrorKind,
    *,
    status: int | None = None,
    retry_after_s: float | None = None,
    resets_at: float | None = None,
    detail: str | None = None,
) -> Outcome:
    return Outcome(
        ok=False,
        error_kind=kind,
        message=describe(kind, status=status, retry_after_s=retry_after_s, resets_at=resets_at, detail=detail),
        retry_after_s=retry_after_s,
        resets_at=resets_at,
    )


def describe(
    kind: ErrorKind,
    *,
    status: int | None = None,
    retry_after_s: float | None = None,
    resets_at: float | None = None,
    detail: str | None = None,
) -> str:
    """One short human line, e.g. "rate limited by the API (HTTP 429), retry after 30 s"."""
    text = _HEADLINES[kind]
    if status is not None:
        text += f" (HTTP {status})"
    if retry_after_s is not None:
        text += f", retry after {retry_after_s:g} s"
    if resets_at is not None:
        text += ", resets " + time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(resets_at))
    short = signals.short(detail, 160)
    if short and short.lower() not in text.lower():
        text += f": {short}"
    return text


def _seen(s: StreamSummary | None) -> str | None:
    """What went wrong before a timeout, if the stream said (a hang after a 429 …)."""
    if s is None or s.error_kind is None:
        return None
    return f"after {_HEADLINES[s.error_kind]}" + (f": {s.error_message}" if s.error_message else "")


def _last_line(text: str) -> str | None:
    for line in reversed(text.splitlines()):
        if line.strip():
            return line.strip()
    return None
