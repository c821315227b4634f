"""A fake OpenAI-compatible chat-completions server (OpenRouter flavoured) on 127.0.0.1.

It is a real HTTP/1.1 server (stdlib ``ThreadingHTTPServer`` in a thread, ephemeral port) so
the client under test runs its real HTTP and SSE code: status codes, headers, chunked
``text/event-stream`` bodies, ``: OPENROUTER PROCESSING`` comment lines, ``data: [DONE]``, and
OpenRouter's JSON error bodies ``{"error": {"code": 429, "message": ..., "metadata": {...}}}``.

Usage::

    with FakeOpenAIServer(api_key="sk-test") as server:
        server.script(success("Hello!", cost=0.0012), rate_limited(retry_after_s=30))
        run_client(base_url=server.base_url)          # http://127.0.0.1:PORT/api/v1
        req = server.requests[0]
        assert req.json["model"] == "vendor/model"
        assert req.headers["authorization"] == "Bearer sk-test"

Endpoints: ``POST /api/v1/chat/completions`` and ``POST /v1/chat/completions``
(``server.v1_url`` is the ``/v1`` base).  Anything else answers 404 (405 for other methods).

Each chat request takes the next behaviour from the script queue (FIFO).  When the queue is
empty the ``default`` behaviour given to the constructor is used, else the server answers 500
with a body saying the script ran dry, so a test that sends more requests than it scripted
fails loudly.  Behaviours (build them with the factory functions):

- ``success(text, ...)``: streams ``text`` in small content chunks after ``comments`` SSE
  comment lines, a ``finish_reason`` chunk, a usage chunk with ``choices: []`` and ``usage.cost``
  (or usage on the finish chunk), then ``data: [DONE]``.  ``finish_reason=None`` with
  ``send_usage=False, send_done=False`` gives a stream that just ends (truncated).
  A request without ``"stream": true`` gets one ``chat.completion`` JSON document instead.
- ``http_error(status, body, headers)`` / ``openrouter_error(status, message, metadata)`` /
  ``rate_limited(retry_after_s, ...)``: a non-200 JSON error response.
- ``error_in_200(code, message)``: HTTP 200 whose first SSE event is ``{"error": {...}}``
  (``as_json_body=True``: a plain ``application/json`` 200 body with a top-level ``error``).
- ``midstream_error(text_before, code, message)``: some content, then OpenRouter's documented
  error chunk ``{"error": {...}, "choices": [{"finish_reason": "error", ...}]}``, then the
  stream ends (no ``[DONE]``).
- ``drop_connection_after(n_chunks, text)``: sends ``n_chunks`` content chunks and then resets
  the TCP connection without finishing the chunked body.
- ``stall(text_before)``: sends headers (and optional content) and then goes silent until the
  server shuts down, for read-timeout tests.

Every request that reached a chat endpoint is recorded in ``server.requests`` (method, path,
lower-cased headers, raw body, parsed JSON) before it is answered, including requests rejected
for a wrong key.  With ``api_key=...`` the server checks ``Authorization: Bearer <key>`` like
OpenRouter and answers 401 without consuming a scripted behaviour.  Generation ids are
deterministic (``gen-fake-000001``, ...) and sent in the ``X-Generation-Id`` header.
Leaving the ``with`` block stops the server and joins its handler threads.
"""

from __future__ import annotations

import json
import socket
import struct
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.fakes.loopback import ScriptedServer

CHAT_PATHS = frozenset({"/v1/chat/completions", "/api/v1/chat/completions"})


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Success:
    text: str
    model: str | None = None  # None: echo the requested model
    provider: str = "FakeProvider"
    prompt_tokens: int | None = None  # None: derived from the request size
    completion_tokens: int | None = None  # None: derived from len(text)
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cost: float | None = None  # None: usage carries no ``cost`` key
    is_byok: bool = False
    upstream_inference_cost: float | None = None
    reasoning: str = ""  # streamed as ``delta.reasoning`` before the content
    chunk_chars: int = 7
    comments: int = 1
    finish_reason: str | None = "stop"
    send_usage: bool = True
    usage_on_finish_chunk: bool = False
    send_done: bool = True
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class HttpError:
    status: int
    body: Any = None  # dict → JSON; str → sent as is (text/plain); None → empty body
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class ErrorIn200:
    error: dict[str, Any]
    as_json_body: bool = False


@dataclass
class MidstreamError:
    text_before: str
    error: dict[str, Any]
    chunk_chars: int = 7


@dataclass
class DropConnection:
    n_chunks: int
    text: str
    chunk_chars: int = 7


@dataclass
class Stall:
    text_before: str = ""


Behaviour = Success | HttpError | ErrorIn200 | MidstreamError | DropConnection | Stall


def success(text: str, **options: Any) -> Success:
    """A complete streamed answer; see ``Success`` for the options (usage, cost, model...)."""
    return Success(text, **options)


def http_error(status: int, body: Any = None, headers: dict[str, str] | None = None) -> HttpError:
    return HttpError(status, body, dict(headers or {}))


def openrouter_error(
    status: int,
    message: str,
    metadata: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> HttpError:
    """An error response shaped like OpenRouter's: ``{"error": {"code", "message", "metadata"}}``."""
    error: dict[str, Any] = {"message": message, "code": status}
    if metadata is not None:
        error["metadata"] = metadata
    return HttpError(status, {"error": error, "user_id": "user_fake"}, dict(headers or {}))


def rate_limited(
    retry_after_s: int | None = 30,
    *,
    message: str = "Rate limit exceeded: free-models-per-minute",
    limit: int = 20,
    reset_ms: int | None = None,
) -> HttpError:
    """OpenRouter's 429: Retry-After and X-RateLimit-* headers, the same values in metadata."""
    reset = str(reset_ms if reset_ms is not None else int(time.time() * 1000) + 60_000)
    rate_headers = {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset}
    headers = dict(rate_headers)
    if retry_after_s is not None:
        headers["Retry-After"] = str(retry_after_s)
    metadata = {"headers": rate_headers, "limit_source": "openrouter_rate_limit"}
    return openrouter_error(429, message, metadata, headers)


def error_in_200(code: int | str, message: str, *, as_json_body: bool = False, **metadata: Any) -> ErrorIn200:
    error: dict[str, Any] = {"code": code, "message": message}
    if metadata:
        error["metadata"] = metadata
    return ErrorIn200(error, as_json_body)


def midstream_error(text_before: str, code: int | str, message: str) -> MidstreamError:
    return MidstreamError(text_before, {"code": code, "message": message})


def drop_connection_after(n_chunks: int, text: str = "partial answer that never ends") -> DropConnection:
    return DropConnection(n_chunks, text)


def stall(text_before: str = "") -> Stall:
    return Stall(text_before)


class FakeOpenAIServer(ScriptedServer[RecordedRequest, Behaviour]):
    """Scriptable OpenAI-compatible server on an ephemeral loopback port (a context manager)."""

    # Every response closes its connection; close() waits for the requests in flight to finish.
    drain_on_close = True
    poll_interval = 0.5
    thread_name = "fake-openai-api"

    def __init__(self, *, api_key: str | None = None, default: Behaviour | None = None) -> None:
        super().__init__(_Handler, default)
        self.api_key = api_key
        self._generations = 0

    # -- addresses ---------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        """OpenRouter-style base URL (``.../api/v1``)."""
        return self.url("/api/v1")

    @property
    def v1_url(self) -> str:
        """OpenAI-style base URL (``.../v1``), as LM Studio, Ollama and NIM use."""
        return self.url("/v1")

    # -- scripting and inspection ------------------------------------------------------------
    @property
    def pending(self) -> int:
        with self._cond:
            return len(self._queue)

    def _generation_id(self) -> str:
        with self._cond:
            self._generations += 1
            return f"gen-fake-{self._generations:06d}"


class _Handler(BaseHTTPRequestHandler):
    fake: FakeOpenAIServer
    protocol_version = "HTTP/1.1"
    timeout = 10  # a client that never sends its request cannot pin a thread forever

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean

    # -- routing -----------------------------------------------------------------------------
    def do_GET(self) -> None:
        self._reject_method()

    def do_PUT(self) -> None:
        self._reject_method()

    def do_DELETE(self) -> None:
        self._reject_method()

    def _reject_method(self) -> None:
        self._send_json(405, {"error": {"code": 405, "message": "Method Not Allowed"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path = self.path.split("?", 1)[0]
        if path not in CHAT_PATHS:
            self._send_json(404, {"error": {"code": 404, "message": f"Not Found: {path}"}})
            return
        headers = {name.lower(): value for name, value in self.headers.items()}
        self.fake._record(RecordedRequest("POST", path, headers, body))

        if self.fake.api_key is not None:
            auth = headers.get("authorization")
            if auth is None:
                self._send_json(401, {"error": {"code": 401, "message": "No auth credentials found"}})
                return
            if auth != f"Bearer {self.fake.api_key}":
                self._send_json(401, {"error": {"code": 401, "message": "User not found."}})
                return
        try:
            payload = json.loads(body)
            if not isinstance(payload, dict) or not payload.get("model") or not payload.get("messages"):
                raise ValueError("model and messages are required")
        except ValueError as err:
            self._send_json(400, {"error": {"code": 400, "message": f"Invalid request: {err}"}})
            return

        behaviour = self.fake._next_behaviour()
        if behaviour is None:
            self._send_json(500, {"error": {"code": 500, "message": "fake server: script ran dry"}})
            return
        self._serve(behaviour, payload)

    def _serve(self, behaviour: Behaviour, payload: dict[str, Any]) -> None:
        model = str(payload["model"])
        streaming = payload.get("stream") is True
        if isinstance(behaviour, HttpError):
            self._send_error_response(behaviour)
        elif isinstance(behaviour, ErrorIn200):
            gen = self.fake._generation_id()
            if behaviour.as_json_body or not streaming:
                self._send_json(200, {"id": gen, "error": behaviour.error}, {"X-Generation-Id": gen})
            else:
                self._start_sse(gen)
                self._comment()
                self._event({"id": gen, "object": "chat.completion.chunk", "error": behaviour.error})
                self._end_chunked()
        elif isinstance(behaviour, Success):
            if streaming:
                self._stream_success(behaviour, model, payload)
            else:
                self._send_completion(behaviour, model, payload)
        elif isinstance(behaviour, MidstreamError):
            gen = self.fake._generation_id()
            self._start_sse(gen)
            for piece in _pieces(behaviour.text_before, behaviour.chunk_chars):
                self._event(_chunk(gen, model, "FakeProvider", {"content": piece}))
            error_chunk = _chunk(gen, model, "FakeProvider", {"content": ""}, "error")
            error_chunk["error"] = behaviour.error
            self._event(error_chunk)
            self._end_chunked()
        elif isinstance(behaviour, DropConnection):
            gen = self.fake._generation_id()
            self._start_sse(gen)
            for piece in _pieces(behaviour.text, behaviour.chunk_chars)[: behaviour.n_chunks]:
                self._event(_chunk(gen, model, "FakeProvider", {"content": piece}))
            self._reset_connection()
        elif isinstance(behaviour, Stall):
            gen = self.fake._generation_id()
            self._start_sse(gen)
            if behaviour.text_before:
                self._event(_chunk(gen, model, "FakeProvider", {"content": behaviour.text_before}))
            self.fake._stopping.wait()
            self._reset_connection()

    # -- success -----------------------------------------------------------------------------
    def _stream_success(self, spec: Success, requested: str, payload: dict[str, Any]) -> None:
        gen = self.fake._generation_id()
        model = spec.model or requested
        self._start_sse(gen, spec.headers)
        for _ in range(spec.comments):
            self._comment()
        first = True
        for piece in _pieces(spec.reasoning, spec.chunk_chars):
            delta: dict[str, Any] = {"role": "assistant", "content": "", "reasoning": piece}
            self._event(_chunk(gen, model, spec.provider, delta if first else {"reasoning": piece}))
            first = False
        for piece in _pieces(spec.text, spec.chunk_chars):
            delta = {"role": "assistant", "content": piece} if first else {"content": piece}
            self._event(_chunk(gen, model, spec.provider, delta))
            first = False
        usage = _usage(spec, payload) if spec.send_usage else None
        if spec.finish_reason is not None:
            finish = _chunk(gen, model, spec.provider, {"content": ""}, spec.finish_reason)
            if usage is not None and spec.usage_on_finish_chunk:
                finish["usage"] = usage
            self._event(finish)
        if usage is not None and not spec.usage_on_finish_chunk:
            self._event(
                {
                    "id": gen,
                    "provider": spec.provider,
                    "model": model,
                    "object": "chat.completion.chunk",
                    "created": int(time.time()),
                    "choices": [],
                    "usage": usage,
                }
            )
        if spec.send_done:
            self._write_chunk(b"data: [DONE]\n\n")
        self._end_chunked()

    def _send_completion(self, spec: Success, requested: str, payload: dict[str, Any]) -> None:
        gen = self.fake._generation_id()
        document: dict[str, Any] = {
            "id": gen,
            "provider": spec.provider,
            "model": spec.model or requested,
            "object": "chat.completion",
            "created": int(time.time()),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": spec.text},
                    "finish_reason": spec.finish_reason,
                }
            ],
        }
        if spec.send_usage:
            document["usage"] = _usage(spec, payload)
        self._send_json(200, document, {"X-Generation-Id": gen, **spec.headers})

    # -- wire helpers ------------------------------------------------------------------------
    def _send_error_response(self, spec: HttpError) -> None:
        if spec.body is None:
            data, ctype = b"", "text/plain"
        elif isinstance(spec.body, str):
            data, ctype = spec.body.encode(), "text/plain; charset=utf-8"
        else:
            data, ctype = json.dumps(spec.body).encode(), "application/json"
        self._send_bytes(spec.status, data, ctype, spec.headers)

    def _send_json(self, status: int, document: Any, headers: dict[str, str] | None = None) -> None:
        self._send_bytes(status, json.dumps(document).encode(), "application/json", headers or {})

    def _send_bytes(self, status: int, data: bytes, ctype: str, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
        self.close_connection = True

    def _start_sse(self, gen: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("X-Generation-Id", gen)
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%X\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _comment(self) -> None:
        self._write_chunk(b": OPENROUTER PROCESSING\n\n")

    def _event(self, document: dict[str, Any]) -> None:
        self._write_chunk(b"data: " + json.dumps(document).encode() + b"\n\n")

    def _end_chunked(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _reset_connection(self) -> None:
        # SO_LINGER 0 makes close() send RST: the client sees the body end mid-chunk.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True


def _pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), max(size, 1))]


def _chunk(gen: str, model: str, provider: str, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": gen,
        "provider": provider,
        "model": model,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "native_finish_reason": finish}],
    }


def _usage(spec: Success, payload: dict[str, Any]) -> dict[str, Any]:
    prompt_chars = sum(len(str(m.get("content", ""))) for m in payload.get("messages", []))
    prompt = spec.prompt_tokens if spec.prompt_tokens is not None else prompt_chars // 4 + 1
    completion = spec.completion_tokens if spec.completion_tokens is not None else len(spec.text) // 4 + 1
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if spec.cost is not None:
        usage["cost"] = spec.cost
    usage["is_byok"] = spec.is_byok
    usage["prompt_tokens_details"] = {
        "cached_tokens": spec.cached_tokens,
        "cache_write_tokens": spec.cache_write_tokens,
        "audio_tokens": 0,
    }
    upstream = spec.upstream_inference_cost if spec.upstream_inference_cost is not None else spec.cost
    if upstream is not None:
        usage["cost_details"] = {"upstream_inference_cost": upstream}
    usage["completion_tokens_details"] = {"reasoning_tokens": spec.reasoning_tokens, "image_tokens": 0}
    return usage
