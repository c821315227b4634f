"""One streamed chat completion from OpenRouter or any OpenAI-compatible server, told as Claude stream-JSON.

This is the library behind ``tools/openrouter-cli.py``.  The process contract:

- stdout (and ``--output-file``, truncated first) get NDJSON, one object per line, flushed per
  line, in Claude Code's ``--output-format stream-json`` shapes: one ``system``/``init`` line,
  ``assistant`` lines whose text blocks, concatenated, are the reply (deltas are coalesced),
  and exactly one ``result`` line.  With ``--output-format json`` only the result object is
  written.  On an API failure an ``assistant`` line with ``model: "<synthetic>"`` and an
  ``error`` name precedes the result, as Claude does.
- The result follows Claude: API failures are ``subtype: "success"`` with ``is_error: true``,
  ``api_error_status`` (HTTP status, or the numeric ``error.code`` of an error sent inside a
  200; a non-numeric code goes to ``api_error_code``), ``retry_after_s``/``resets_at`` when the
  server said when to come back.  ``usage.input_tokens`` excludes cache reads and writes.
  ``total_cost_usd`` is the cost the server reported (OpenRouter ``usage.cost``, plus the
  upstream cost under BYOK) and null when it reported none: it is never estimated here.
- Exit 0 iff the result has ``is_error: false``; 1 for any failed attempt (a result line is
  still written); 2 when the invocation itself is wrong (message on stderr, nothing sent);
  143 after SIGTERM (a result with ``error: "cancelled"`` is still written).
- No retries (``max_retries=0``): the coordinator owns retries and failover.
- The API key is read from the environment variable named by ``--api-key-env``; its value is
  never written anywhere, and any echo of it in server text is replaced by ``[REDACTED]``.

Known limit: the openai SDK raises on an in-stream ``{"error": ...}`` chunk without handing
over the rest of that chunk, so usage riding on a mid-stream error chunk is not reported.
"""

from __future__ import annotations

import argparse
import email.utils
import json
import math
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any
from urllib.parse import urlsplit

from openai import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    OpenAI,
    Stream,
    omit,
)
from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam

from adw_modules.outcomes import Usage

DEFAULT_BASE_URL = "https://openrouter.ai/api/v1"
DEFAULT_API_KEY_ENV = "OPENROUTER_API_KEY"
BASE_URL_ENV = "OPENROUTER_BASE_URL"
DEFAULT_TIMEOUT_S = 600.0

# Coalescing: one assistant line per this many characters, or sooner when the stream is slow,
# so a watcher sees progress without one line per token.
FLUSH_CHARS = 2000
FLUSH_SECONDS = 1.0
MAX_MESSAGE_CHARS = 1000
REDACTED = "[REDACTED]"

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_TERMINATED = 143

STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}


class InvocationError(Exception):
    """The command line or its input files are unusable; nothing was sent."""


class Terminated(BaseException):
    """SIGTERM arrived.  A BaseException so the SDK's ``except Exception`` cannot swallow it."""


TERMINATING = threading.Event()


@dataclass
class CompletionRequest:
    model: str
    prompt: str
    system: str | None = None
    base_url: str = DEFAULT_BASE_URL
    api_key_env: str = DEFAULT_API_KEY_ENV
    max_tokens: int | None = None
    temperature: float | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    usage_accounting: bool | None = None  # None: ask for it only from openrouter.ai

    def wants_usage_accounting(self) -> bool:
        if self.usage_accounting is not None:
            return self.usage_accounting
        host = urlsplit(self.base_url).hostname or ""
        return host == "openrouter.ai" or host.endswith(".openrouter.ai")


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


@dataclass
class Completion:
    """What the stream told us so far; also the partial state when it fails."""

    requested_model: str
    generation_id: str | None = None
    model: str | None = None
    provider: str | None = None
    text: list[str] = field(default_factory=list)
    finish_reason: str | None = None
    usage: Usage | None = None

    @property
    def served_model(self) -> str:
        return self.model or self.requested_model


# --------------------------------------------------------------------------------------------
# Usage, cost and error normalisation (pure functions)
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# The transcript: what goes to stdout and the output file
# --------------------------------------------------------------------------------------------


class Transcript:
    """Writes the Claude-style event lines to every sink, flushed per line, secret redacted."""

    def __init__(
        self,
        sinks: Sequence[IO[bytes]],
        *,
        model: str,
        secret: str | None = None,
        events: bool = True,
        api_key_env: str = DEFAULT_API_KEY_ENV,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sinks = list(sinks)
        self._secret = secret if secret and len(secret) >= 6 else None
        self._events = events  # False: --output-format json, only the result is written
        self._requested_model = model
        self._api_key_env = api_key_env
        self._clock = clock
        self.session_id: str | None = None
        self.model: str | None = None
        self._message_id = f"msg_{uuid.uuid4().hex[:24]}"
        self._buffer: list[str] = []
        self._buffer_kind = "text"
        self._buffered_chars = 0
        self._last_flush = clock()

    def _write(self, event: dict[str, Any]) -> None:
        line = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
        if self._secret:
            line = line.replace(self._secret, REDACTED)
        data = (line + "\n").encode("utf-8", errors="surrogateescape")
        for sink in self._sinks:
            try:
                sink.write(data)
                sink.flush()
            except BrokenPipeError:
                pass  # a reader that went away must not stop the output file

    def start(self, session_id: str | None = None) -> None:
        """Emit ``system/init`` once; the first id offered becomes the session id for all lines."""
        if self.session_id is not None:
            return
        self.session_id = session_id or str(uuid.uuid4())
        if not self._events:
            return
        self._write(
            {
                "type": "system",
                "subtype": "init",
                "cwd": os.getcwd(),
                "session_id": self.session_id,
                "tools": [],
                "mcp_servers": [],
                "model": self._requested_model,
                "permissionMode": "default",
                "apiKeySource": self._api_key_env,
                "uuid": str(uuid.uuid4()),
            }
        )

    def add(self, text: str, kind: str = "text") -> None:
        """Buffer a delta (``text`` or ``thinking``); emit a line when enough has gathered."""
        if not text:
            return
        if kind != self._buffer_kind:
            self.flush()
            self._buffer_kind = kind
        self._buffer.append(text)
        self._buffered_chars += len(text)
        if self._buffered_chars >= FLUSH_CHARS or self._clock() - self._last_flush >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        self._last_flush = self._clock()
        if not self._buffer:
            return
        segment = "".join(self._buffer)
        self._buffer.clear()
        self._buffered_chars = 0
        if not self._events:
            return
        self.start()
        if self._buffer_kind == "thinking":
            block: dict[str, Any] = {"type": "thinking", "thinking": segment, "signature": ""}
        else:
            block = {"type": "text", "text": segment}
        self._write(self._assistant(self.model or self._requested_model, [block]))

    def api_error(self, failure: ApiFailure) -> None:
        """Claude's synthetic assistant line that names the error before the result."""
        self.flush()
        if not self._events:
            return
        self.start()
        event = self._assistant("<synthetic>", [{"type": "text", "text": describe(failure)}])
        event["message"]["id"] = str(uuid.uuid4())  # its own message, not part of the reply
        event["message"]["stop_reason"] = "stop_sequence"
        event["error"] = failure.error
        event["is_api_error_message"] = True
        self._write(event)

    def _assistant(self, model: str, content: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "type": "assistant",
            "message": {
                "id": self._message_id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": content,
                "stop_reason": None,
                "stop_sequence": None,
            },
            "parent_tool_use_id": None,
            "session_id": self.session_id,
            "uuid": str(uuid.uuid4()),
        }

    def result(self, event: dict[str, Any]) -> None:
        self.flush()
        self.start()
        event["session_id"] = self.session_id
        self._write(event)


# --------------------------------------------------------------------------------------------
# The request
# --------------------------------------------------------------------------------------------


def _consume_chunk(chunk: ChatCompletionChunk, state: Completion, transcript: Transcript) -> None:
    if chunk.id and state.generation_id is None:
        state.generation_id = chunk.id
    transcript.start(state.generation_id)
    if chunk.model:
        state.model = chunk.model
        transcript.model = chunk.model
    provider = getattr(chunk, "provider", None)
    if isinstance(provider, str) and provider:
        state.provider = provider
    if chunk.usage is not None:
        state.usage = usage_from_openai(chunk.usage.model_dump())
    for choice in chunk.choices or []:
        delta = choice.delta
        if delta is not None:
            reasoning = getattr(delta, "reasoning", None)
            if isinstance(reasoning, str):
                transcript.add(reasoning, "thinking")
            if delta.content:
                state.text.append(delta.content)
                transcript.add(delta.content)
        if choice.finish_reason:
            state.finish_reason = choice.finish_reason


def _consume_document(document: object, state: Completion, transcript: Transcript) -> ApiFailure | None:
    """A 200 that is one JSON document: an error body, or a non-streamed completion."""
    if not isinstance(document, Mapping):
        return ApiFailure("the server answered 200 with neither an event stream nor a JSON object")
    if isinstance(document.get("id"), str) and state.generation_id is None:
        state.generation_id = document["id"]
    transcript.start(state.generation_id)
    if document.get("error"):
        return failure_from_error_body(document["error"], fallback="error in a 200 response")
    if isinstance(document.get("model"), str):
        state.model = document["model"]
        transcript.model = state.model
    if isinstance(document.get("usage"), Mapping):
        state.usage = usage_from_openai(document["usage"])
    choices = document.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
        return ApiFailure("the server answered 200 without choices")
    choice = choices[0]
    message = choice.get("message")
    content = message.get("content") if isinstance(message, Mapping) else None
    if isinstance(content, str):
        state.text.append(content)
        transcript.add(content)
    finish = choice.get("finish_reason")
    state.finish_reason = finish if isinstance(finish, str) else "stop"
    return None


def _transport_failure(err: APIConnectionError) -> ApiFailure:
    if isinstance(err, APITimeoutError):
        return ApiFailure("Request timed out.", error="timeout")
    cause = err.__cause__
    detail = f" ({type(cause).__name__}: {cause})" if cause is not None and str(cause) else ""
    return ApiFailure(f"Connection error.{detail}", error="connection_error")


def stream_completion(request: CompletionRequest, api_key: str | None, transcript: Transcript) -> dict[str, Any]:
    """Run one streamed completion and return Claude's ``result`` event (also written to the transcript)."""
    started = time.monotonic()
    state = Completion(requested_model=request.model)
    failure: ApiFailure | None = None
    api_started: float | None = None
    api_ended: float | None = None
    if not api_key:
        failure = ApiFailure(
            f"Not logged in · environment variable {request.api_key_env} is not set or empty",
            error="authentication_failed",
            from_api=False,
        )
    else:
        client = OpenAI(
            api_key=api_key,
            base_url=request.base_url,
            max_retries=0,
            timeout=request.timeout_s,
        )
        messages: list[ChatCompletionMessageParam] = []
        if request.system:
            messages.append({"role": "system", "content": request.system})
        messages.append({"role": "user", "content": request.prompt})
        api_started = time.monotonic()
        try:
            with client.chat.completions.with_streaming_response.create(
                model=request.model,
                messages=messages,
                stream=True,
                stream_options={"include_usage": True},
                max_tokens=omit if request.max_tokens is None else request.max_tokens,
                temperature=omit if request.temperature is None else request.temperature,
                extra_body={"usage": {"include": True}} if request.wants_usage_accounting() else None,
            ) as response:
                header_id = response.headers.get("x-generation-id")
                if header_id:
                    state.generation_id = header_id
                    transcript.start(header_id)
                if "text/event-stream" in response.headers.get("content-type", ""):
                    stream = response.parse()
                    if isinstance(stream, Stream):
                        for chunk in stream:
                            _consume_chunk(chunk, state, transcript)
                else:
                    try:
                        document = json.loads(response.read())
                    except ValueError:
                        failure = ApiFailure("the server answered 200 with a body that is not JSON")
                    else:
                        failure = _consume_document(document, state, transcript)
        except APIStatusError as err:
            failure = failure_from_error_body(
                err.body, status=err.status_code, headers=err.response.headers, fallback=err.message
            )
        except APIConnectionError as err:
            failure = _transport_failure(err)
        except APIError as err:  # an {"error": ...} event inside the 200 stream
            failure = failure_from_error_body(err.body, fallback=err.message)
        finally:
            api_ended = time.monotonic()
            client.close()
        if failure is None and state.finish_reason is None:
            failure = ApiFailure("the stream ended before the model finished (no finish_reason)")
        elif failure is None and state.finish_reason == "error":
            failure = ApiFailure("the model stream ended with finish_reason 'error'", error="server_error")

    if TERMINATING.is_set():
        raise Terminated  # whatever the SDK made of the interrupted request, it was a cancellation
    if failure is not None:
        transcript.api_error(failure)
    event = result_event(
        state,
        failure,
        duration_ms=int((time.monotonic() - started) * 1000),
        duration_api_ms=int(((api_ended or 0.0) - (api_started or 0.0)) * 1000),
    )
    transcript.result(event)
    return event


def result_event(
    state: Completion, failure: ApiFailure | None, *, duration_ms: int, duration_api_ms: int
) -> dict[str, Any]:
    """Claude's ``result`` event for this attempt (``session_id`` is filled by the transcript)."""
    usage = state.usage or Usage()
    model_usage: dict[str, Any] = {}
    if state.usage is not None:
        model_usage[state.served_model] = {
            "inputTokens": usage.input_tokens,
            "outputTokens": usage.output_tokens,
            "cacheReadInputTokens": usage.cache_read_tokens,
            "cacheCreationInputTokens": usage.cache_write_tokens,
            "costUSD": usage.cost_usd,
        }
    event: dict[str, Any] = {
        "type": "result",
        "subtype": "success",
        "is_error": failure is not None,
        "api_error_status": failure.status if failure is not None else None,
        "duration_ms": duration_ms,
        "duration_api_ms": duration_api_ms,
        "num_turns": 1,
        "result": describe(failure) if failure is not None else "".join(state.text),
        "stop_reason": STOP_REASONS.get(state.finish_reason or "", state.finish_reason) if failure is None else None,
        "session_id": None,
        "total_cost_usd": usage.cost_usd,
        "usage": {
            "input_tokens": usage.input_tokens,
            "cache_creation_input_tokens": usage.cache_write_tokens,
            "cache_read_input_tokens": usage.cache_read_tokens,
            "output_tokens": usage.output_tokens,
        },
        "modelUsage": model_usage,
        "model": state.served_model,
        "permission_denials": [],
        "terminal_reason": "completed" if failure is None else "api_error",
        "uuid": str(uuid.uuid4()),
    }
    if state.generation_id:
        event["generation_id"] = state.generation_id
    if state.provider:
        event["provider"] = state.provider
    if failure is not None:
        event["error"] = failure.error
        if failure.code is not None:
            event["api_error_code"] = failure.code
        if failure.retry_after_s is not None:
            event["retry_after_s"] = failure.retry_after_s
        if failure.resets_at is not None:
            event["resets_at"] = failure.resets_at
    return event


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError("must be a positive number")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="openrouter-cli.py",
        description="Stream one chat completion from OpenRouter or an OpenAI-compatible server "
        "and print Claude Code compatible stream-JSON.",
    )
    parser.add_argument("--version", action="version", version="openrouter-cli 1.0 (adw)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("-p", "--prompt", metavar="FILE", help="prompt file; '-' or absent: read stdin")
    source.add_argument("--prompt-text", metavar="TEXT", help="the prompt itself")
    parser.add_argument("--model", required=True, help="model id, e.g. anthropic/claude-3.5-haiku")
    parser.add_argument("--output-file", metavar="FILE", help="also write the output stream here")
    parser.add_argument("--output-format", choices=["stream-json", "json"], default="stream-json")
    parser.add_argument(
        "--base-url",
        default=os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL,
        help=f"OpenAI-compatible base URL (default ${BASE_URL_ENV} or {DEFAULT_BASE_URL})",
    )
    parser.add_argument(
        "--api-key-env",
        default=DEFAULT_API_KEY_ENV,
        metavar="NAME",
        help="name of the environment variable holding the API key",
    )
    parser.add_argument("--system-file", metavar="FILE", help="system prompt file")
    parser.add_argument("--max-tokens", type=_positive_int)
    parser.add_argument("--temperature", type=float)
    parser.add_argument(
        "--timeout",
        type=_positive_float,
        default=DEFAULT_TIMEOUT_S,
        help="seconds of silence before giving up",
    )
    parser.add_argument(
        "--usage-accounting",
        choices=["auto", "on", "off"],
        default="auto",
        help="send OpenRouter's usage:{include:true} (auto: only to openrouter.ai)",
    )
    parser.add_argument("--verbose", action="store_true", help="accepted for claude compatibility")
    return parser


def _read_text(path: str | None, what: str, stdin: IO[bytes]) -> str:
    try:
        data = stdin.read() if path in (None, "-") else Path(str(path)).read_bytes()
    except OSError as err:
        raise InvocationError(f"cannot read {what} {path}: {err.strerror or err}") from err
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        source = "stdin" if path in (None, "-") else path
        raise InvocationError(f"{what} {source} is not UTF-8 (bad byte at offset {err.start})") from err


def request_from_args(args: argparse.Namespace, stdin: IO[bytes]) -> CompletionRequest:
    """Validate the parsed arguments and read the prompt; raises InvocationError."""
    if args.system_file == "-" and args.prompt in (None, "-") and args.prompt_text is None:
        raise InvocationError("the prompt and the system file cannot both come from stdin")
    if args.prompt_text is not None:
        prompt = args.prompt_text
    else:
        prompt = _read_text(args.prompt, "prompt", stdin)
    if not prompt.strip():
        raise InvocationError("the prompt is empty")
    system = _read_text(args.system_file, "system file", stdin) if args.system_file else None
    parts = urlsplit(args.base_url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise InvocationError(f"--base-url must be an http(s) URL, got {args.base_url!r}")
    if not args.model.strip():
        raise InvocationError("--model is empty")
    accounting = {"auto": None, "on": True, "off": False}[args.usage_accounting]
    return CompletionRequest(
        model=args.model,
        prompt=prompt,
        system=system,
        base_url=args.base_url,
        api_key_env=args.api_key_env,
        max_tokens=args.max_tokens,
        temperature=args.temperature,
        timeout_s=args.timeout,
        usage_accounting=accounting,
    )


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    # The flag survives code that wraps the exception (pydantic turns it into a SchemaError
    # when it lands mid schema build), so the ending is still reported as a cancellation.
    if TERMINATING.is_set():
        return  # already winding down: a second signal must not break the final result line
    TERMINATING.set()
    raise Terminated


def main(
    argv: Sequence[str] | None = None,
    *,
    stdin: IO[bytes] | None = None,
    stdout: IO[bytes] | None = None,
    stderr: IO[str] | None = None,
) -> int:
    """The CLI entry point; returns the exit code (0 success, 1 failed attempt, 2 bad invocation)."""
    stdin = stdin if stdin is not None else sys.stdin.buffer
    stdout = stdout if stdout is not None else sys.stdout.buffer
    stderr = stderr if stderr is not None else sys.stderr
    args = build_parser().parse_args(argv)
    output: IO[bytes] | None = None
    try:
        request = request_from_args(args, stdin)
        if args.output_file:
            try:
                output = open(args.output_file, "wb")  # closed in the finally below
            except OSError as err:
                raise InvocationError(f"cannot write --output-file {args.output_file}: {err.strerror}") from err
    except InvocationError as err:
        print(f"openrouter-cli: error: {err}", file=stderr)
        return EXIT_USAGE

    api_key = os.environ.get(request.api_key_env) or None
    sinks = [stdout] if output is None else [stdout, output]
    transcript = Transcript(
        sinks,
        model=request.model,
        secret=api_key,
        events=args.output_format == "stream-json",
        api_key_env=request.api_key_env,
    )
    # Only the main thread may install handlers (main() also runs in-process, e.g. in tests).
    in_main_thread = threading.current_thread() is threading.main_thread()
    TERMINATING.clear()
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if in_main_thread else None
    started = time.monotonic()
    try:
        event = stream_completion(request, api_key, transcript)
        return EXIT_FAILED if event["is_error"] else EXIT_OK
    except Exception as err:
        if not TERMINATING.is_set():
            # A bug here must still end the stream with a result line.
            failure = ApiFailure(f"{type(err).__name__}: {err}", error="unknown")
            elapsed = int((time.monotonic() - started) * 1000)
            event = result_event(Completion(request.model), failure, duration_ms=elapsed, duration_api_ms=0)
            event["subtype"] = "error_during_execution"
            transcript.result(event)
            return EXIT_FAILED
        return _cancelled(request, transcript, started)
    except (Terminated, KeyboardInterrupt):
        return _cancelled(request, transcript, started)
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
        if output is not None:
            output.close()


def _cancelled(request: CompletionRequest, transcript: Transcript, started: float) -> int:
    failure = ApiFailure("Request cancelled (terminated).", error="cancelled", from_api=False)
    elapsed = int((time.monotonic() - started) * 1000)
    transcript.api_error(failure)
    event = result_event(Completion(request.model), failure, duration_ms=elapsed, duration_api_ms=0)
    transcript.result(event)
    return EXIT_TERMINATED
