"""What an OpenAI-compatible server said, normalised: usage and cost, retry hints, failures.

Pure functions behind ``adw_modules.workers.openrouter``: HTTP errors, error bodies (also inside
a 200), and transport errors become one ``ApiFailure`` in Claude's ``assistant.error`` vocabulary.
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from openai import APIConnectionError, APITimeoutError

from adw_modules.outcomes import Usage

MAX_MESSAGE_CHARS = 1000


@dataclass
class ApiFailure:
    """Why an attempt failed, normalised from HTTP errors, error bodies and transport errors."""

    message: str
    error: str = "unknown"  # Claude's assistant.error vocabulary, extended (see error_name)
    status: int | None = None
    code: str | None = None  # a non-numeric error code from the body, e.g. "server_error"
    retry_after_s: float | None = None
    resets_at: float | None = None  # unix seconds
    from_api: bool = True  # False: decided locally (no key, cancelled), no "API Error:" prefix


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _count(value: object) -> int:
    number = _number(value)
    return int(number) if number is not None and number > 0 else 0


def usage_from_openai(raw: Mapping[str, Any]) -> Usage:
    """Normalise an OpenAI/OpenRouter ``usage`` object.

    ``prompt_tokens`` includes cache reads (``cached_tokens``) and writes
    (``cache_write_tokens``); the returned ``input_tokens`` excludes both.  ``cost_usd`` is
    OpenRouter's ``cost`` (plus ``cost_details.upstream_inference_cost`` when ``is_byok``, since
    then ``cost`` is only OpenRouter's fee), or None when the server reported no cost.
    """
    details = raw.get("prompt_tokens_details")
    details = details if isinstance(details, Mapping) else {}
    cache_read = _count(details.get("cached_tokens"))
    cache_write = _count(details.get("cache_write_tokens"))
    prompt = _count(raw.get("prompt_tokens"))
    cost = _number(raw.get("cost"))
    if cost is not None and raw.get("is_byok") is True:
        cost_details = raw.get("cost_details")
        if isinstance(cost_details, Mapping):
            cost += _number(cost_details.get("upstream_inference_cost")) or 0.0
    return Usage(
        input_tokens=max(prompt - cache_read - cache_write, 0),
        output_tokens=_count(raw.get("completion_tokens")),
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        cost_usd=cost,
    )


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait from ``Retry-After-Ms`` / ``Retry-After`` (seconds or an HTTP date)."""
    lowered = {name.lower(): value for name, value in headers.items()}
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = lowered.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) / divisor
        except ValueError:
            if name == "retry-after-ms":
                continue
            try:
                when = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError):
                return None
            seconds = when.timestamp() - (time.time() if now is None else now)
        if math.isfinite(seconds):
            return max(seconds, 0.0)
    return None


def parse_reset(value: object) -> float | None:
    """Unix seconds from an ``X-RateLimit-Reset`` value (OpenRouter sends epoch milliseconds)."""
    try:
        number = float(str(value))
    except ValueError:
        return None
    if not math.isfinite(number) or number <= 0:
        return None
    return number / 1000.0 if number > 1e11 else number


def error_name(status: int | None, code: str | None = None) -> str:
    """Claude's ``assistant.error`` names where one fits, else a plain descriptive name."""
    if status is None:
        if code in {"timeout", "request_timeout"}:
            return "timeout"
        if code == "rate_limit_exceeded":
            return "rate_limit"
        return "server_error" if code else "unknown"
    if status == 401:
        return "authentication_failed"
    if status == 402:
        return "billing_error"
    if status == 404:
        return "model_not_found"
    if status == 408:
        return "timeout"
    if status == 429:
        return "rate_limit"
    if status in {502, 503, 529}:
        return "overloaded"
    if status >= 500:
        return "server_error"
    if status >= 400:
        return "invalid_request"
    return "unknown"


def _status_of(code: object) -> tuple[int | None, str | None]:
    """Split an error ``code`` into an HTTP-like status and a textual code."""
    if isinstance(code, bool) or code is None:
        return None, None
    if isinstance(code, int):
        return code, None
    text = str(code).strip()
    if text.isdigit():
        return int(text), None
    return None, text or None


def failure_from_error_body(
    error: object,
    *,
    status: int | None = None,
    headers: Mapping[str, str] | None = None,
    fallback: str = "",
) -> ApiFailure:
    """Build a failure from an OpenRouter-style ``error`` object (``{code, message, metadata}``).

    ``status`` is the HTTP status when the error came as a non-200 response; an error inside a
    200 takes its status from ``error.code``.
    """
    if isinstance(error, Mapping) and isinstance(error.get("error"), Mapping):
        error = error["error"]  # a whole body rather than its ``error`` member
    message, code_status, code = fallback, None, None
    metadata: Mapping[str, Any] = {}
    if isinstance(error, Mapping):
        if isinstance(error.get("message"), str) and error["message"]:
            message = error["message"]
        code_status, code = _status_of(error.get("code"))
        if isinstance(error.get("metadata"), Mapping):
            metadata = error["metadata"]
    elif isinstance(error, str) and error.strip():
        message = error.strip()
    # OpenRouter's generic "Provider returned error" hides the real reason in metadata.raw.
    raw = metadata.get("raw")
    if isinstance(raw, str) and raw and raw not in message:
        message = f"{message}: {raw}" if message else raw
    status = status if status is not None else code_status
    header_map = dict(headers or {})
    meta_headers = metadata.get("headers")
    if isinstance(meta_headers, Mapping):
        for name, value in meta_headers.items():
            header_map.setdefault(str(name), str(value))
    lowered = {name.lower(): value for name, value in header_map.items()}
    retry_after = parse_retry_after(lowered)
    resets_at = parse_reset(lowered["x-ratelimit-reset"]) if "x-ratelimit-reset" in lowered else None
    if not message:
        message = f"HTTP {status}" if status is not None else "unknown error"
    return ApiFailure(
        message=message,
        error=error_name(status, code),
        status=status,
        code=code,
        retry_after_s=retry_after,
        resets_at=resets_at,
    )


def describe(failure: ApiFailure) -> str:
    """The one-line result text, shaped like Claude's ``API Error: 429 ...``."""
    label = failure.status if failure.status is not None else failure.code
    prefix = f"API Error: {label} " if label is not None else "API Error: "
    text = prefix + failure.message if failure.from_api else failure.message
    if failure.retry_after_s is not None:
        text += f" (retry after {failure.retry_after_s:g}s)"
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[: MAX_MESSAGE_CHARS - 1] + "…"
    return text


def transport_failure(err: APIConnectionError) -> ApiFailure:
    if isinstance(err, APITimeoutError):
        return ApiFailure("Request timed out.", error="timeout")
    cause = err.__cause__
    detail = f" ({type(cause).__name__}: {cause})" if cause is not None and str(cause) else ""
    return ApiFailure(f"Connection error.{detail}", error="connection_error")
