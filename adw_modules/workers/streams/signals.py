"""Failure vocabulary shared by the stream parsers and ``classify``.

The CLIs report the same few failures in many words: an HTTP status, an error
enum (Claude's ``assistant.error``, Gemini's error class names) or free text.
These functions turn each of those into an ``ErrorKind`` so every parser and the
final classification agree on what a 429 or "Credit balance is too low" means.
They never raise and return ``None`` when the input names no specific kind.
"""

from __future__ import annotations

import re

from adw_modules.outcomes import ErrorKind

# Kinds that justify stopping a CLI early rather than letting it retry for minutes.
ABORT_KINDS: frozenset[ErrorKind] = frozenset(
    {ErrorKind.RATE_LIMITED, ErrorKind.OVERLOADED, ErrorKind.AUTH_FAILED, ErrorKind.QUOTA_EXHAUSTED}
)

# When two pieces of evidence disagree, the more permanent one wins: a 429 seen
# after a rejected plan window is still a quota problem, not a short backoff.
_RANK: dict[ErrorKind, int] = {
    ErrorKind.QUOTA_EXHAUSTED: 3,
    ErrorKind.AUTH_FAILED: 3,
    ErrorKind.INVALID_MODEL: 2,
    ErrorKind.CONTEXT_TOO_LONG: 2,
    ErrorKind.MAX_TURNS: 2,
    ErrorKind.BUDGET_EXCEEDED: 2,
}


def rank(kind: ErrorKind | None) -> int:
    """How strongly a kind outranks others as evidence (0 for None)."""
    if kind is None:
        return 0
    return _RANK.get(kind, 1)


# Claude's AssistantMessageError / api_retry ``error`` enum (open-ended upstream).
CLAUDE_ERROR_ENUM: dict[str, ErrorKind] = {
    "authentication_failed": ErrorKind.AUTH_FAILED,
    "billing_error": ErrorKind.QUOTA_EXHAUSTED,
    "rate_limit": ErrorKind.RATE_LIMITED,
    "overloaded": ErrorKind.OVERLOADED,
    "model_not_found": ErrorKind.INVALID_MODEL,
}

# Gemini CLI error class names as they reach ``result.error.type``.
GEMINI_ERROR_TYPES: dict[str, ErrorKind] = {
    "TerminalQuotaError": ErrorKind.QUOTA_EXHAUSTED,
    "RetryableQuotaError": ErrorKind.RATE_LIMITED,
    "FatalAuthenticationError": ErrorKind.AUTH_FAILED,
    "FatalTurnLimitedError": ErrorKind.MAX_TURNS,
    "ModelNotFoundError": ErrorKind.INVALID_MODEL,
}

_STATUS: dict[int, ErrorKind] = {
    401: ErrorKind.AUTH_FAILED,
    402: ErrorKind.QUOTA_EXHAUSTED,
    403: ErrorKind.AUTH_FAILED,
    404: ErrorKind.INVALID_MODEL,
    413: ErrorKind.CONTEXT_TOO_LONG,
    429: ErrorKind.RATE_LIMITED,
    503: ErrorKind.OVERLOADED,
    529: ErrorKind.OVERLOADED,
}

_APOS = "['’]"  # Codex writes "You’ve" with a typographic apostrophe
_PATTERNS: list[tuple[ErrorKind, re.Pattern[str]]] = [
    (
        ErrorKind.QUOTA_EXHAUSTED,
        re.compile(
            rf"you(?:{_APOS}ve| have)? (hit|reached) your\b.*\b(limit|quota)|/usage-credits|/extra-usage|usage limit"
            r"|\b(5-hour|five-hour|weekly|daily|monthly|opus|session) limit (reached|hit)"
            r"|credit balance (is )?too low|insufficient"
            r" (balance|credits?)|insufficient_quota|quota exceeded|exhausted your .*quota|spend cap"
            r"|out of credits|out_of_credits|billing|terminalquotaerror|quota_exhausted"
            r"|insufficient_g1_credits_balance|upgrade to plus|requires more credits",
            re.IGNORECASE,
        ),
    ),
    (
        ErrorKind.CONTEXT_TOO_LONG,
        re.compile(
            r"prompt is too long|context window|context length|context_length_exceeded"
            r"|maximum context|too many tokens|request too large",
            re.IGNORECASE,
        ),
    ),
    (
        ErrorKind.INVALID_MODEL,
        re.compile(
            r"model_not_found|issue with the selected model|requested entity was not found"
            r"|modelnotfounderror|model is not supported|model .{0,60}(does not exist|not found)"
            r"|unknown model|invalid model",
            re.IGNORECASE,
        ),
    ),
    (
        ErrorKind.AUTH_FAILED,
        re.compile(
            r"invalid api key|\bunauthorized\b|failed to authenticate|authentication_failed"
            r"|authentication failed|please run /login|not logged in|oauth token (has expired|revoked)"
            r"|fatalauthenticationerror|organization has been disabled|invalid authentication",
            re.IGNORECASE,
        ),
    ),
    (
        ErrorKind.RATE_LIMITED,
        re.compile(
            r"rate.?limit|too many requests|retryablequotaerror|request rejected \(429\)"
            r"|temporarily limiting requests",
            re.IGNORECASE,
        ),
    ),
    (
        ErrorKind.OVERLOADED,
        re.compile(
            r"overloaded|at capacity|model_capacity_exhausted|model_capacity_exceeded"
            r"|no capacity available|service unavailable",
            re.IGNORECASE,
        ),
    ),
    (
        ErrorKind.MAX_TURNS,
        re.compile(
            r"maximum session turns|max(imum)? (number of )?turns|fatalturnlimitederror|turn limit",
            re.IGNORECASE,
        ),
    ),
    (ErrorKind.BUDGET_EXCEEDED, re.compile(r"max_budget|budget (exceeded|exhausted)", re.IGNORECASE)),
]

# A status code only counts in text when something says it is one.
_STATUS_IN_TEXT = re.compile(
    r"(?:status(?:code)?|api error|http|error|code)[\"':= ]{0,4}\(?(\d{3})\b|\((\d{3})\)|\b(\d{3}) "
    r"(?:too many requests|unauthorized|forbidden|not found|overloaded|service unavailable"
    r"|payment required)",
    re.IGNORECASE,
)
_RETRY_IN_TEXT = re.compile(r"(?:retry|try again) (?:after|in) (\d+(?:\.\d+)?) ?(s|sec|seconds?|ms)\b", re.IGNORECASE)
_CLAUDE_LIMIT_EPOCH = re.compile(r"usage limit reached\|(\d{9,11})", re.IGNORECASE)

_SECRET = re.compile(
    r"(sk-[A-Za-z0-9_-]{8,}|AIza[0-9A-Za-z_-]{20,}|(?i:bearer)\s+[A-Za-z0-9._~+/=-]{8,}"
    r"|(?i:(?:api[_-]?key|token|secret|password)\s*[=:]\s*)[^\s,;\"']{6,})"
)


# What free text may not be read by: file paths and file names ("rate-limit.count" is not a
# rate limit).  A path has two segments or more; a lone "/login" or "/usage-credits" is a
# CLI command the message tells the user to run, and stays.
_PATHS = re.compile(
    r"(?:[A-Za-z]:)?(?:~|\.{1,2})?(?:[/\\][\w.@+-]+){2,}[/\\]?"
    r"|[\w.@+-]+(?:[/\\][\w.@+-]+)+[/\\]?"
    r"|\b[\w-]+\.(?:count|json|jsonl|txt|md|py|js|ts|log|lock|toml|ya?ml|sh|cfg|ini|state|tmp|pid)\b",
    re.IGNORECASE,
)


def without_paths(text: str) -> str:
    """The message with file paths and file names taken out, for keyword matching."""
    return _PATHS.sub(" ", text)


def kind_from_text(text: str | None) -> ErrorKind | None:
    """The kind an error message names, by keyword, else by an explicit status code.

    Only the words of the message count: paths and file names in it are ignored.
    """
    if not text:
        return None
    text = without_paths(text)
    for kind, pattern in _PATTERNS:
        if pattern.search(text):
            return kind
    status = status_in_text(text)
    return None if status is None else _STATUS.get(status)


def status_in_text(text: str | None) -> int | None:
    """An HTTP status the text states explicitly ("status 429", "API Error: 529", "(429)")."""
    if not text:
        return None
    for match in _STATUS_IN_TEXT.finditer(text):
        value = int(next(g for g in match.groups() if g))
        if 400 <= value <= 599:
            return value
    return None


def kind_from_status(status: int | None, text: str | None = None, hint: ErrorKind | None = None) -> ErrorKind | None:
    """The kind an HTTP status means, refined by the message and earlier evidence.

    A 429 is a plan-window exhaustion (not a short backoff) when the text or an
    earlier event says so; an empty balance arrives as 400 (Claude) or 401
    (OpenCode Zen) with billing words; a 400 may carry a context or model error.
    """
    if status is None:
        return None
    text_kind = kind_from_text(text)
    if status in (400, 401, 403, 429) and ErrorKind.QUOTA_EXHAUSTED in (text_kind, hint):
        return ErrorKind.QUOTA_EXHAUSTED
    if status == 400 and text_kind in (ErrorKind.CONTEXT_TOO_LONG, ErrorKind.INVALID_MODEL):
        return text_kind
    if status == 529 or (status == 503 and text_kind != ErrorKind.RATE_LIMITED):
        return ErrorKind.OVERLOADED
    return _STATUS.get(status)


def retry_after_in_text(text: str | None) -> float | None:
    """Seconds a message asks to wait ("Please retry in 12.5s", "retry after 30 seconds")."""
    if not text:
        return None
    match = _RETRY_IN_TEXT.search(text)
    if not match:
        return None
    value = float(match.group(1))
    return value / 1000.0 if match.group(2).lower() == "ms" else value


def resets_at_in_text(text: str | None) -> float | None:
    """The epoch of old Claude CLIs' ``Claude AI usage limit reached|<epoch>`` result text."""
    if not text:
        return None
    match = _CLAUDE_LIMIT_EPOCH.search(text)
    return float(match.group(1)) if match else None


def scrub(text: str) -> str:
    """Hide anything that looks like a credential before text reaches logs or comments."""
    return _SECRET.sub("[redacted]", text)


def short(text: str | None, limit: int = 200) -> str | None:
    """One line, at most ``limit`` characters, credentials hidden; None for empty text."""
    if not text:
        return None
    line = " ".join(text.split())
    if not line:
        return None
    line = scrub(line)
    return line if len(line) <= limit else line[: limit - 1] + "…"
