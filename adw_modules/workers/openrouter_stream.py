"""The streaming translation: OpenAI-compatible chunks in, Claude Code stream-JSON lines out.

``Completion`` gathers what the stream said; ``Transcript`` writes the Claude-shaped lines
(coalesced, flushed per line, the API key redacted); ``result_event`` is the final line.
The process contract is in ``adw_modules.workers.openrouter``.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from openai.types.chat import ChatCompletionChunk

from adw_modules.outcomes import Usage
from adw_modules.workers.openrouter_errors import ApiFailure, describe, failure_from_error_body, usage_from_openai

# Coalescing: one assistant line per this many characters, or sooner when the stream is slow,
# so a watcher sees progress without one line per token.
FLUSH_CHARS = 2000
FLUSH_SECONDS = 1.0
REDACTED = "[REDACTED]"

STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}


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


class Transcript:
    """Writes the Claude-style event lines to every sink, flushed per line, secret redacted."""

    def __init__(
        self,
        sinks: Sequence[IO[bytes]],
        *,
        model: str,
        secret: str | None = None,
        events: bool = True,
        api_key_env: str,
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


def consume_chunk(chunk: ChatCompletionChunk, state: Completion, transcript: Transcript) -> None:
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


def consume_document(document: object, state: Completion, transcript: Transcript) -> ApiFailure | None:
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
