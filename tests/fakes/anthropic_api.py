"""A fake Anthropic Messages API on 127.0.0.1, good enough for the real Claude Code CLI.

It is a real HTTP/1.1 server (stdlib ``ThreadingHTTPServer`` in a thread, ephemeral port,
keep-alive, chunked ``text/event-stream`` bodies) so the client under test runs its real HTTP,
SSE and retry code.  Point a client at it with ``ANTHROPIC_BASE_URL=fake.base_url``;
``fake.cli_env(home)`` builds a complete, hermetic environment for ``claude -p``.

Usage::

    with FakeAnthropicAPI(default=Reply("Hi!", usage=Usage(input_tokens=10))) as fake:
        fake.enqueue(ApiError.rate_limit(retry_after=30))   # the next /v1/messages only
        subprocess.run([claude, "-p", "hi", ...], env=fake.cli_env(tmp_path / "home"))
        req = fake.message_requests()[0]
        assert req.body["model"] == "claude-sonnet-4-5"
        print(fake.dump())                                  # x-api-key is masked

Endpoints:

- ``POST /v1/messages`` (the CLI appends ``?beta=true``): each request takes the next behaviour
  from the queue (FIFO, ``enqueue``/``script``); when the queue is empty the ``default``
  behaviour answers, or, with ``strict_queue=True``, a 500 saying the queue ran dry (so a test
  that triggers more requests than it scripted notices).  Note that Claude Code follows a
  failed *streaming* request (drop, SSE error, 404) with one non-streaming fallback request.  A body with ``"stream": true`` gets SSE, otherwise one JSON ``message``.
- ``POST /v1/messages/count_tokens``: ``{"input_tokens": N}`` (a rough estimate of the body).
- ``GET /v1/models`` and ``GET /v1/models/{id}``: a small model list in the real shape.
- anything else: 404 ``not_found_error`` in the real error shape.

Behaviours:

- ``Reply(text, usage=Usage(...), stop_reason="end_turn", model=None)``: success.  Streaming
  sends ``message_start`` / ``content_block_start`` / ``ping`` / ``content_block_delta``
  (``text_delta``, a few chunks) / ``content_block_stop`` / ``message_delta`` (``stop_reason``
  and cumulative usage) / ``message_stop``, exactly as the real API frames them.
- ``ApiError(status, error_type, message, retry_after=None)``, with constructors for the real
  cases: ``rate_limit`` (429 + ``retry-after``), ``overloaded`` (529), ``authentication`` (401),
  ``permission`` (403), ``credit_balance_too_low`` and ``prompt_too_long`` (400
  ``invalid_request_error``), ``model_not_found`` (404), ``internal`` (500).  Body:
  ``{"type":"error","error":{"type":...,"message":...},"request_id":"req_..."}``.
- ``StreamError(error_type, message)``: HTTP 200, ``message_start``, then an SSE ``event: error``
  (how the real API reports an overload that happens after the stream began).
- ``DropMidStream(text)``: HTTP 200, ``message_start``, a ``text_delta`` with ``text``, then the
  TCP connection is closed (or reset with ``reset=True``) without finishing the chunked body.
- ``Hang(text)``: HTTP 200, optionally some events, then silence until the server shuts down
  (for idle-timeout tests).

Every response carries the real API's headers: ``request-id``, ``anthropic-organization-id``
and the ``anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,remaining,
reset}`` family; 429/529/500 add ``x-should-retry: true``; 429 adds ``retry-after`` (seconds).

Every request is recorded before it is answered (``fake.requests``; ``message_requests()``
filters ``POST /v1/messages``): method, path, query, lower-cased headers, raw and parsed JSON
body, the behaviour used and the status sent.  Headers are stored verbatim (tests may assert the
key that was sent) but ``repr()`` and ``dump()`` mask ``x-api-key`` and ``authorization``.
``wait_for_message_requests(n, timeout)`` blocks on a condition, not a sleep.  Pass
``log_file=sys.stderr`` to print each request (masked) as it arrives; ``python -m
tests.fakes.anthropic_api`` runs the fake standalone for exploring what a client calls.

Leaving the ``with`` block (or ``close()``) stops the server, releases hanging responses,
closes every open keep-alive connection and joins the handler threads.
"""

from __future__ import annotations

import json
import os
import random
import string
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.fakes.loopback import ScriptedServer, StreamingHandler

FAKE_API_KEY = "sk-ant-api03-fake-test-key-0000000000000000000000000000000000000000-AAAAAA"
DEFAULT_MODEL = "claude-sonnet-4-5"
_SECRET_HEADERS = frozenset({"x-api-key", "authorization", "proxy-authorization"})
_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
_B62 = string.ascii_letters + string.digits


@dataclass(frozen=True)
class Usage:
    """Token counts the fake reports; the CLI turns them into ``usage`` and a cost estimate."""

    input_tokens: int = 25
    output_tokens: int = 12
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0

    def as_api(self, *, output_tokens: int | None = None) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "cache_creation_input_tokens": self.cache_creation_input_tokens,
            "cache_read_input_tokens": self.cache_read_input_tokens,
            "cache_creation": {
                "ephemeral_5m_input_tokens": self.cache_creation_input_tokens,
                "ephemeral_1h_input_tokens": 0,
            },
            "output_tokens": self.output_tokens if output_tokens is None else output_tokens,
            "service_tier": "standard",
        }


@dataclass(frozen=True)
class Reply:
    """A successful answer (streamed or not, as the request asks)."""

    text: str = "Hello from the fake Anthropic API."
    usage: Usage = field(default_factory=Usage)
    stop_reason: str = "end_turn"
    model: str | None = None  # None echoes the requested model
    chunk_size: int = 8


@dataclass(frozen=True)
class ApiError:
    """A non-200 JSON error response in the real API's shape."""

    status: int
    error_type: str
    message: str
    retry_after: float | None = None
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def rate_limit(cls, retry_after: float | None = 30, message: str | None = None) -> ApiError:
        return cls(
            429,
            "rate_limit_error",
            message
            or "This request would exceed the rate limit for your organization of 50 requests per "
            "minute. For details, refer to: https://docs.claude.com/en/api/rate-limits.",
            retry_after=retry_after,
        )

    @classmethod
    def overloaded(cls) -> ApiError:
        return cls(529, "overloaded_error", "Overloaded")

    @classmethod
    def internal(cls) -> ApiError:
        return cls(500, "api_error", "Internal server error")

    @classmethod
    def authentication(cls) -> ApiError:
        return cls(401, "authentication_error", "invalid x-api-key")

    @classmethod
    def permission(cls) -> ApiError:
        return cls(403, "permission_error", "Your API key does not have permission to use the specified resource.")

    @classmethod
    def credit_balance_too_low(cls) -> ApiError:
        return cls(
            400,
            "invalid_request_error",
            "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing "
            "to upgrade or purchase credits.",
        )

    @classmethod
    def prompt_too_long(cls, tokens: int = 210_000, limit: int = 200_000) -> ApiError:
        return cls(400, "invalid_request_error", f"prompt is too long: {tokens} tokens > {limit} maximum")

    @classmethod
    def model_not_found(cls, model: str = DEFAULT_MODEL) -> ApiError:
        return cls(404, "not_found_error", f"model: {model}")


@dataclass(frozen=True)
class StreamError:
    """HTTP 200, ``message_start``, then an SSE ``error`` event (e.g. an overload mid-stream)."""

    error_type: str = "overloaded_error"
    message: str = "Overloaded"


@dataclass(frozen=True)
class DropMidStream:
    """HTTP 200, some of the stream, then the connection goes away mid-body."""

    text: str = "Partial answer that never"
    reset: bool = False  # True: RST (SO_LINGER 0) instead of an orderly FIN


@dataclass(frozen=True)
class Hang:
    """HTTP 200 headers (and ``text`` as a first delta if given), then silence until shutdown."""

    text: str = ""


Behaviour = Reply | ApiError | StreamError | DropMidStream | Hang


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    raw_body: bytes
    body: Any  # parsed JSON, or None when the body was empty or not JSON
    behaviour: str = ""
    status: int = 0

    def masked_headers(self) -> dict[str, str]:
        return {k: (_mask(v) if k in _SECRET_HEADERS else v) for k, v in self.headers.items()}

    def __repr__(self) -> str:
        return (
            f"RecordedRequest({self.method} {self.path}{'?' + self.query if self.query else ''} -> "
            f"{self.status} [{self.behaviour}], headers={self.masked_headers()!r}, "
            f"body_keys={sorted(self.body) if isinstance(self.body, dict) else None})"
        )


def _mask(value: str) -> str:
    return value[:7] + "***" if len(value) > 12 else "***"


def _rand(n: int) -> str:
    return "".join(random.choices(_B62, k=n))


def _iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeAnthropicAPI(ScriptedServer[RecordedRequest, Behaviour]):
    """See the module docstring."""

    default: Behaviour

    def __init__(
        self,
        default: Behaviour | None = None,
        *,
        strict_queue: bool = False,
        log_file: Any = None,
    ) -> None:
        super().__init__(_Handler, default if default is not None else Reply(), strict_queue=strict_queue)
        self._log_file = log_file
        self.org_id = "00000000-0000-4000-8000-000000000000"

    @property
    def base_url(self) -> str:
        return self.url()

    # scripting and inspection -------------------------------------------------------------------

    def message_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == "POST" and r.path == "/v1/messages"]

    def wait_for_message_requests(self, n: int, timeout: float = 10.0) -> list[RecordedRequest]:
        return self._wait_for(lambda r: r.method == "POST" and r.path == "/v1/messages", n, timeout)

    def dump(self) -> str:
        return "\n".join(repr(r) for r in self.requests)

    def cli_env(self, home: Path, *, max_retries: int | None = 0, **extra: str) -> dict[str, str]:
        """A hermetic environment for ``claude -p`` against this fake.

        Built from scratch rather than from ``os.environ`` so no real key, proxy setting or
        user config of the machine running the tests can leak into the CLI.
        """
        home.mkdir(parents=True, exist_ok=True)
        config_dir = home / ".claude"
        config_dir.mkdir(exist_ok=True)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "CLAUDE_CONFIG_DIR": str(config_dir),
            "LANG": "C.UTF-8",
            "ANTHROPIC_BASE_URL": self.base_url,
            "ANTHROPIC_API_KEY": FAKE_API_KEY,
            "DISABLE_TELEMETRY": "1",
            "DISABLE_AUTOUPDATER": "1",
            "DISABLE_ERROR_REPORTING": "1",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        }
        if max_retries is not None:
            env["CLAUDE_CODE_MAX_RETRIES"] = str(max_retries)
        env.update(extra)
        for var in _PROXY_VARS:
            env.pop(var, None)
            env.pop(var.upper(), None)
        return env

    # internals used by the handler ------------------------------------------------------------

    def _record(self, req: RecordedRequest) -> None:
        super()._record(req)
        if self._log_file is not None:
            print(
                f"[fake-anthropic] {req.method} {req.path} {req.masked_headers()!r}",
                file=self._log_file,
                flush=True,
            )


class _Handler(StreamingHandler):
    fake: FakeAnthropicAPI
    server_version = "fake-anthropic"

    # routing ------------------------------------------------------------------------------------

    def _dispatch(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        rec = RecordedRequest(
            method=self.command,
            path=parts.path,
            query=parts.query,
            headers={k.lower(): v for k, v in self.headers.items()},
            raw_body=raw,
            body=body,
        )
        # Recorded before answering so a test can await a request whose answer hangs; the
        # behaviour and status fields are filled in before any response byte is sent.
        self.fake._record(rec)
        self._route(rec)

    def _route(self, rec: RecordedRequest) -> None:
        path, method = rec.path, rec.method
        if method == "POST" and path == "/v1/messages":
            behaviour = self.fake._next_behaviour()
            if behaviour is None:
                rec.behaviour = "queue-empty"
                self._error(rec, ApiError(500, "api_error", "fake: the behaviour queue ran dry"))
                return
            rec.behaviour = type(behaviour).__name__
            self._messages(rec, behaviour)
        elif method == "POST" and path == "/v1/messages/count_tokens":
            rec.behaviour = "count_tokens"
            self._json(rec, 200, {"input_tokens": max(1, len(rec.raw_body) // 4)})
        elif method == "GET" and path == "/v1/models":
            rec.behaviour = "models"
            data = [_model_info(m) for m in ("claude-sonnet-4-5-20250929", "claude-haiku-4-5-20251001")]
            self._json(
                rec,
                200,
                {"data": data, "has_more": False, "first_id": data[0]["id"], "last_id": data[-1]["id"]},
            )
        elif method == "GET" and path.startswith("/v1/models/"):
            rec.behaviour = "model"
            self._json(rec, 200, _model_info(path.rsplit("/", 1)[1]))
        else:
            rec.behaviour = "unknown-path"
            self._error(rec, ApiError(404, "not_found_error", "Not Found"))

    # responses ----------------------------------------------------------------------------------

    def _common_headers(self) -> list[tuple[str, str]]:
        now = datetime.now(UTC)
        reset = _iso(now + timedelta(seconds=1))
        headers = [
            ("request-id", f"req_011C{_rand(20)}"),
            ("anthropic-organization-id", self.fake.org_id),
            ("anthropic-ratelimit-requests-limit", "4000"),
            ("anthropic-ratelimit-requests-remaining", "3999"),
            ("anthropic-ratelimit-requests-reset", reset),
        ]
        for kind, limit in (("tokens", 2_800_000), ("input-tokens", 2_000_000), ("output-tokens", 800_000)):
            headers += [
                (f"anthropic-ratelimit-{kind}-limit", str(limit)),
                (f"anthropic-ratelimit-{kind}-remaining", str(limit)),
                (f"anthropic-ratelimit-{kind}-reset", reset),
            ]
        return headers

    def _send_head(self, status: int, headers: list[tuple[str, str]]) -> None:
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()

    def _json(self, rec: RecordedRequest, status: int, obj: Any, extra: list[tuple[str, str]] | None = None) -> None:
        data = json.dumps(obj).encode()
        rec.status = status
        headers = [("content-type", "application/json"), ("content-length", str(len(data)))]
        self._send_head(status, headers + self._common_headers() + (extra or []))
        if self.command != "HEAD":
            self.wfile.write(data)
        self.wfile.flush()

    def _error(self, rec: RecordedRequest, err: ApiError) -> None:
        request_id = f"req_011C{_rand(20)}"
        extra: list[tuple[str, str]] = list(err.headers)
        if err.status in (429, 500, 529):
            extra.append(("x-should-retry", "true"))
        if err.retry_after is not None:
            ra = err.retry_after
            extra.append(("retry-after", str(int(ra)) if float(ra).is_integer() else str(ra)))
        body = {
            "type": "error",
            "error": {"type": err.error_type, "message": err.message},
            "request_id": request_id,
        }
        data = json.dumps(body).encode()
        rec.status = err.status
        headers = [("content-type", "application/json"), ("content-length", str(len(data)))]
        common = [(k, v) for k, v in self._common_headers() if k != "request-id"]
        self._send_head(err.status, [*headers, ("request-id", request_id), *common, *extra])
        self.wfile.write(data)
        self.wfile.flush()

    def _messages(self, rec: RecordedRequest, behaviour: Behaviour) -> None:
        body = rec.body if isinstance(rec.body, dict) else {}
        model = str(body.get("model") or DEFAULT_MODEL)
        stream = bool(body.get("stream"))
        if isinstance(behaviour, ApiError):
            self._error(rec, behaviour)
            return
        if not stream:
            self._non_streaming(rec, behaviour, model)
            return
        rec.status = 200
        self._send_head(
            200,
            [
                ("content-type", "text/event-stream; charset=utf-8"),
                ("cache-control", "no-cache"),
                ("transfer-encoding", "chunked"),
                *self._common_headers(),
            ],
        )
        usage = behaviour.usage if isinstance(behaviour, Reply) else Usage()
        reply_model = behaviour.model if isinstance(behaviour, Reply) and behaviour.model else model
        self._event(
            "message_start",
            {"type": "message_start", "message": _message_obj(reply_model, usage.as_api(output_tokens=1))},
        )
        if isinstance(behaviour, StreamError):
            self._event(
                "error",
                {"type": "error", "error": {"type": behaviour.error_type, "message": behaviour.message}},
            )
            self._end_chunks()
            return
        self._event(
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        )
        self._event("ping", {"type": "ping"})
        if isinstance(behaviour, DropMidStream):
            self._delta(behaviour.text)
            self._drop(reset=behaviour.reset)
            return
        if isinstance(behaviour, Hang):
            if behaviour.text:
                self._delta(behaviour.text)
            self.fake._stopping.wait()
            self.close_connection = True
            return
        assert isinstance(behaviour, Reply)
        text, n = behaviour.text, max(1, behaviour.chunk_size)
        for i in range(0, len(text), n):
            self._delta(text[i : i + n])
        self._event("content_block_stop", {"type": "content_block_stop", "index": 0})
        delta_usage = {k: v for k, v in usage.as_api().items() if k not in ("cache_creation", "service_tier")}
        self._event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": behaviour.stop_reason, "stop_sequence": None},
                "usage": delta_usage,
            },
        )
        self._event("message_stop", {"type": "message_stop"})
        self._end_chunks()

    def _non_streaming(self, rec: RecordedRequest, behaviour: Behaviour, model: str) -> None:
        # A non-streaming request cannot receive an SSE error event; the real API answers such
        # failures with the matching HTTP error instead.
        if isinstance(behaviour, StreamError):
            status = {"overloaded_error": 529, "rate_limit_error": 429}.get(behaviour.error_type, 500)
            self._error(rec, ApiError(status, behaviour.error_type, behaviour.message))
            return
        if isinstance(behaviour, Hang):
            rec.status = 0
            self.fake._stopping.wait()
            self.close_connection = True
            return
        reply = behaviour if isinstance(behaviour, Reply) else Reply(getattr(behaviour, "text", ""))
        msg = _message_obj(reply.model or model, reply.usage.as_api())
        msg["content"] = [{"type": "text", "text": reply.text}]
        msg["stop_reason"] = reply.stop_reason
        if isinstance(behaviour, DropMidStream):
            data = json.dumps(msg).encode()
            rec.status = 200
            headers = [("content-type", "application/json"), ("content-length", str(len(data)))]
            self._send_head(200, headers + self._common_headers())
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self._drop(reset=behaviour.reset)
            return
        self._json(rec, 200, msg)

    def _delta(self, text: str) -> None:
        self._event(
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}},
        )

    def _event(self, name: str, data: Mapping[str, Any]) -> None:
        payload = f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()
        self._write_chunk(payload)


def _message_obj(model: str, usage: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": f"msg_01{_rand(22)}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": usage,
    }


def _model_info(model_id: str) -> dict[str, Any]:
    return {"type": "model", "id": model_id, "display_name": model_id, "created_at": "2025-09-29T00:00:00Z"}


def iter_stream_json(stdout: str) -> Iterator[dict[str, Any]]:
    """Parse the CLI's stream-json stdout, skipping non-JSON lines as the reference advises."""
    for line in stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            yield json.loads(line)


if __name__ == "__main__":
    # Manual exploration: run the fake and print every request it gets (key masked).
    with FakeAnthropicAPI(log_file=sys.stderr) as _fake:
        print(f"ANTHROPIC_BASE_URL={_fake.base_url}", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
