"""A fake OpenAI Responses API (``POST /v1/responses``) on 127.0.0.1, good enough for the real Codex CLI.

It is a real HTTP/1.1 server (stdlib ``ThreadingHTTPServer`` in a thread, ephemeral port,
keep-alive, chunked ``text/event-stream`` bodies) so the client under test runs its real HTTP,
SSE and retry code.  Point Codex at it with a custom model provider (``fake.codex_config()``
gives the ``-c`` overrides) and ``fake.cli_env(codex_home)`` (a hermetic environment).

Usage::

    with FakeResponsesAPI(default=Reply("Hi!", usage=Usage(input_tokens=10))) as fake:
        fake.enqueue(ApiError.rate_limit(retry_after=2))   # the next /v1/responses only
        subprocess.run([codex, *fake.codex_config(), "exec", "--json", "hi"], env=fake.cli_env(home))
        req = fake.response_requests()[0]
        assert req.body["model"] == "gpt-5.2-codex"
        print(fake.dump())                                  # the bearer key is masked

Endpoints (shapes from the API reference, platform.openai.com/docs/api-reference/responses):

- ``POST /v1/responses``: the key is checked first (``Authorization: Bearer <api_key>``; a
  missing or wrong key answers 401 like the real API and consumes nothing); then each request
  takes the next behaviour from the queue (FIFO, ``enqueue``/``script``).  When the queue is
  empty the ``default`` behaviour answers, or, with ``strict_queue=True``, a 500 saying the queue
  ran dry, so a test that triggers more requests than it scripted notices.  A body with
  ``"stream": true`` gets SSE, otherwise one JSON ``response`` object.
- ``GET /v1/models`` and ``GET /v1/models/{id}``: a small model list in the real shape.
- anything else: 404 ``{"error": {"message": "Invalid URL (POST /v1/x)", ...}}`` as the API says.
- a proxy request (``CONNECT host:443`` or an absolute URL): recorded in ``proxy_requests`` and
  refused with 403.  ``cli_env`` routes every proxied request here, so a CLI that tries to reach
  anything but the fake shows up there instead of on the network.

Behaviours:

- ``Reply(text, usage=Usage(...), reasoning=None, model=None)``: success.  Streaming sends
  ``response.created`` / ``response.in_progress``, an optional reasoning item (``reasoning``
  is its summary text: ``response.reasoning_summary_part.added``, ``…_text.delta``/``done``,
  ``…_part.done``), then the message item: ``response.output_item.added``,
  ``response.content_part.added``, ``response.output_text.delta`` (a few chunks),
  ``response.output_text.done``, ``response.content_part.done``, ``response.output_item.done``,
  and ``response.completed`` whose ``response.usage`` is ``{input_tokens,
  input_tokens_details: {cached_tokens}, output_tokens, output_tokens_details:
  {reasoning_tokens}, total_tokens}``.  Every event carries ``sequence_number``.
- ``ToolCall(name, arguments, usage=...)``: success whose output is one ``function_call`` item
  (``response.function_call_arguments.delta``/``done``); the client runs the tool and sends a
  follow-up request with the ``function_call_output``.
- ``ApiError(status, message, error_type, code, retry_after=None)``: a non-200 JSON error in the
  real shape ``{"error": {"message", "type", "param", "code"}}``, with constructors for the real
  cases: ``rate_limit`` (429 ``rate_limit_exceeded``, "Please try again in Ns", ``retry-after``),
  ``insufficient_quota`` (429), ``invalid_api_key`` (401), ``model_not_found`` (404),
  ``context_length_exceeded`` (400), ``internal`` (500), ``overloaded`` (503
  ``server_is_overloaded``) and ``service_unavailable`` (503, no code).
- ``StreamFailed(code, message)``: HTTP 200, ``response.created``, ``response.in_progress``,
  then ``response.failed`` whose ``response.error`` is ``{code, message}`` (how the API reports a
  failure after the stream began, e.g. ``server_error`` or ``rate_limit_exceeded``).
- ``StreamErrorEvent(code, message)``: HTTP 200, ``response.created``/``in_progress``, then the
  top-level SSE ``error`` event ``{"type": "error", "code", "message", "param", "sequence_number"}``.
- ``DropMidStream(text, reset=False)``: HTTP 200, the message item begins, a delta with
  ``text``, then the TCP connection is closed (RST with ``reset=True``) without finishing the
  chunked body.
- ``Hang(text)``: HTTP 200, ``response.created`` (and ``text`` as a first delta if given), then
  silence until the server shuts down (for idle-timeout tests).

Every response carries the real API's headers: ``x-request-id`` (``req_`` + 32 hex),
``openai-organization``, ``openai-processing-ms``, ``openai-version: 2020-10-01`` and the
``x-ratelimit-{limit,remaining,reset}-{requests,tokens}`` family; a 429 also has
``retry-after`` (seconds) and zero remaining requests.

Every request is recorded before it is answered (``fake.requests``; ``response_requests()``
filters ``POST /v1/responses``): method, path, query, lower-cased headers, raw and parsed JSON
body, the behaviour used and the status sent.  Headers are stored verbatim (tests may assert the
key that was sent) but ``repr()`` and ``dump()`` mask ``authorization``.
``wait_for_response_requests(n, timeout)`` blocks on a condition, not a sleep.  Pass
``log_file=sys.stderr`` to print each request (masked) as it arrives; ``python -m
tests.fakes.openai_responses`` runs the fake standalone for exploring what a client calls.

Leaving the ``with`` block (or ``close()``) stops the server, releases hanging responses,
closes every open keep-alive connection and joins the handler threads.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.fakes.loopback import ScriptedServer, StreamingHandler

FAKE_API_KEY = "sk-proj-fake-test-key-0000000000000000000000000000000000000000000000AAAA"
FAKE_KEY_ENV = "ADW_FAKE_OPENAI_API_KEY"  # the variable Codex's provider ``env_key`` names
DEFAULT_MODEL = "gpt-5.5"  # in Codex 0.169's bundled model catalog: no "metadata not found" warning
PROVIDER_ID = "adwfake"
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "openai-api-key"})
_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
_MODELS = ("gpt-5.5", "gpt-6.1-sol", "gpt-6.1-terra")


@dataclass(frozen=True)
class Usage:
    """Token counts as the Responses API reports them.

    ``input_tokens`` *includes* ``cached_tokens`` (and, by this fake's assumption, the newer
    ``cache_write_tokens``) and ``output_tokens`` *includes* ``reasoning_tokens``, as on the real
    API; ``total_tokens`` is input + output.  ``input_tokens_details.cache_write_tokens`` is a
    required field in the current openai SDK's ``ResponseUsage``, so it is always sent.
    """

    input_tokens: int = 120
    cached_tokens: int = 0
    output_tokens: int = 24
    reasoning_tokens: int = 0
    cache_write_tokens: int = 0

    def as_api(self) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "input_tokens_details": {
                "cached_tokens": self.cached_tokens,
                "cache_write_tokens": self.cache_write_tokens,
            },
            "output_tokens": self.output_tokens,
            "output_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
            "total_tokens": self.input_tokens + self.output_tokens,
        }


@dataclass(frozen=True)
class Reply:
    """A successful answer (streamed or not, as the request asks)."""

    text: str = "Hello from the fake OpenAI API."
    usage: Usage = field(default_factory=Usage)
    reasoning: str | None = None  # summary text of a reasoning item sent before the message
    model: str | None = None  # None echoes the requested model
    chunk_size: int = 8


@dataclass(frozen=True)
class ToolCall:
    """A successful answer whose only output is a ``function_call`` item."""

    name: str
    arguments: Mapping[str, Any]
    usage: Usage = field(default_factory=Usage)
    model: str | None = None


@dataclass(frozen=True)
class ApiError:
    """A non-200 JSON error response in the real API's shape."""

    status: int
    message: str
    error_type: str
    code: str | None = None
    param: str | None = None
    retry_after: float | None = None
    headers: tuple[tuple[str, str], ...] = ()

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.error_type, "param": self.param, "code": self.code}}

    @classmethod
    def rate_limit(cls, retry_after: float | None = 2, model: str = DEFAULT_MODEL) -> ApiError:
        wait = 2 if retry_after is None else retry_after
        return cls(
            429,
            f"Rate limit reached for {model} in organization org-fake0000000000000000000000 on tokens per min "
            f"(TPM): Limit 30000, Used 30000, Requested 1200. Please try again in {wait:g}s. Visit "
            "https://platform.openai.com/account/rate-limits to learn more.",
            "tokens",
            "rate_limit_exceeded",
            retry_after=retry_after,
        )

    @classmethod
    def insufficient_quota(cls) -> ApiError:
        return cls(
            429,
            "You exceeded your current quota, please check your plan and billing details. For more information "
            "on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.",
            "insufficient_quota",
            "insufficient_quota",
        )

    @classmethod
    def invalid_api_key(cls, key: str = "sk-wrong") -> ApiError:
        return cls(
            401,
            f"Incorrect API key provided: {_redact_key(key)}. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            "invalid_api_key",
        )

    @classmethod
    def model_not_found(cls, model: str = "gpt-nonexistent") -> ApiError:
        return cls(
            404,
            f"The model `{model}` does not exist or you do not have access to it.",
            "invalid_request_error",
            "model_not_found",
        )

    @classmethod
    def context_length_exceeded(cls, tokens: int = 410_000, limit: int = 400_000) -> ApiError:
        return cls(
            400,
            f"Your input exceeds the context window of this model. Input tokens: {tokens}, maximum: {limit}.",
            "invalid_request_error",
            "context_length_exceeded",
            param="input",
        )

    @classmethod
    def internal(cls) -> ApiError:
        return cls(
            500,
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
        )

    @classmethod
    def overloaded(cls) -> ApiError:
        return cls(503, "The server is overloaded or not ready yet.", "server_error", "server_is_overloaded")

    @classmethod
    def service_unavailable(cls) -> ApiError:
        return cls(503, "The service is temporarily unavailable. Please try again later.", "server_error")


@dataclass(frozen=True)
class StreamFailed:
    """HTTP 200, the response starts, then ``response.failed`` with ``response.error``."""

    code: str = "server_error"
    message: str = "The server had an error while processing your request. Sorry about that!"


@dataclass(frozen=True)
class StreamErrorEvent:
    """HTTP 200, ``response.created``, then a top-level SSE ``error`` event."""

    code: str = "server_error"
    message: str = "The server had an error while processing your request. Sorry about that!"


@dataclass(frozen=True)
class DropMidStream:
    """HTTP 200, some of the stream, then the connection goes away mid-body."""

    text: str = "Partial answer that never"
    reset: bool = False  # True: RST (SO_LINGER 0) instead of an orderly FIN


@dataclass(frozen=True)
class Hang:
    """HTTP 200 headers and ``response.created`` (``text`` as a first delta if given), then silence."""

    text: str = ""


Behaviour = Reply | ToolCall | ApiError | StreamFailed | StreamErrorEvent | DropMidStream | Hang


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
    request_id: str = ""  # the x-request-id the fake answered with

    def masked_headers(self) -> dict[str, str]:
        return {k: (_mask(v) if k in _SECRET_HEADERS else v) for k, v in self.headers.items()}

    def __repr__(self) -> str:
        return (
            f"RecordedRequest({self.method} {self.path}{'?' + self.query if self.query else ''} -> "
            f"{self.status} [{self.behaviour}], headers={self.masked_headers()!r}, "
            f"body_keys={sorted(self.body) if isinstance(self.body, dict) else None})"
        )


def _mask(value: str) -> str:
    return value[:10] + "***" if len(value) > 16 else "***"


def _redact_key(key: str) -> str:
    # The real API echoes a wrong key as its first 3 and last 4 characters: "sk-wro*****-key".
    return key[:3] + "*" * max(len(key) - 7, 0) + key[-4:] if len(key) > 8 else key


def _hex(n: int) -> str:
    return secrets.token_hex(n // 2 + 1)[:n]


class FakeResponsesAPI(ScriptedServer[RecordedRequest, Behaviour]):
    """See the module docstring."""

    default: Behaviour

    def __init__(
        self,
        default: Behaviour | None = None,
        *,
        api_key: str | None = FAKE_API_KEY,
        strict_queue: bool = False,
        log_file: Any = None,
    ) -> None:
        # api_key None accepts any key.
        super().__init__(_Handler, default if default is not None else Reply(), strict_queue=strict_queue)
        self.api_key = api_key
        self._log_file = log_file
        self._proxy_requests: list[RecordedRequest] = []
        self.org_id = "org-fake0000000000000000000000"

    @property
    def origin(self) -> str:
        return self.url()

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL (clients append ``/responses``)."""
        return self.url("/v1")

    # scripting and inspection -------------------------------------------------------------------

    @property
    def pending(self) -> int:
        with self._cond:
            return len(self._queue)

    @property
    def proxy_requests(self) -> list[RecordedRequest]:
        """Requests that arrived as proxy requests: the client tried to reach another host."""
        with self._cond:
            return list(self._proxy_requests)

    def response_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == "POST" and r.path == "/v1/responses"]

    def wait_for_response_requests(self, n: int, timeout: float = 10.0) -> list[RecordedRequest]:
        return self._wait_for(lambda r: r.method == "POST" and r.path == "/v1/responses", n, timeout)

    def dump(self) -> str:
        return "\n".join(repr(r) for r in [*self.requests, *self.proxy_requests])

    def codex_config(
        self,
        *,
        model: str = DEFAULT_MODEL,
        request_max_retries: int = 0,
        stream_max_retries: int = 0,
        stream_idle_timeout_ms: int | None = None,
    ) -> list[str]:
        """``-c`` overrides that make ``codex`` use this fake as its only model provider.

        A custom provider (not the built-in ``openai`` one, whose base URL config ignores) with
        ``wire_api = "responses"`` and the key read from ``FAKE_KEY_ENV``.  Retries default to 0
        so an error surfaces after one request instead of after Codex's backoff.
        """
        provider = {
            "name": "adw fake OpenAI",
            "base_url": self.base_url,
            "env_key": FAKE_KEY_ENV,
            "wire_api": "responses",
            "request_max_retries": request_max_retries,
            "stream_max_retries": stream_max_retries,
        }
        if stream_idle_timeout_ms is not None:
            provider["stream_idle_timeout_ms"] = stream_idle_timeout_ms
        inline = ", ".join(f"{k} = {json.dumps(v)}" for k, v in provider.items())
        return [
            "-c",
            f"model_provider={json.dumps(PROVIDER_ID)}",
            "-c",
            f"model_providers.{PROVIDER_ID}={{ {inline} }}",
            "-c",
            f"model={json.dumps(model)}",
        ]

    def cli_env(self, codex_home: Path, *, api_key: str | None = FAKE_API_KEY, **extra: str) -> dict[str, str]:
        """A hermetic environment for ``codex exec`` against this fake.

        Built from scratch rather than from ``os.environ`` so no real key or user config of the
        machine running the tests can leak into the CLI: ``CODEX_HOME`` (and ``HOME``) point at
        ``codex_home``; ``TMPDIR`` and ``XDG_RUNTIME_DIR`` at ``codex_home/run``, because Codex
        otherwise creates ``/tmp/codex-daemon-<uid>`` and ``/tmp/codex-bwrap-synthetic-mount-
        targets-<uid>``.  Every proxy variable points at this fake and ``NO_PROXY`` exempts only
        loopback, so a request for any other host arrives here as a proxy request (recorded in
        ``proxy_requests`` and refused) instead of leaving the machine.
        """
        codex_home.mkdir(parents=True, exist_ok=True)
        runtime = codex_home / "run"
        runtime.mkdir(mode=0o700, exist_ok=True)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(codex_home),
            "CODEX_HOME": str(codex_home),
            "TMPDIR": str(runtime),
            "XDG_RUNTIME_DIR": str(runtime),
            "LANG": "C.UTF-8",
            "NO_COLOR": "1",
        }
        for var in _PROXY_VARS:
            env.pop(var, None)
            env.pop(var.upper(), None)
        for var in ("http_proxy", "https_proxy", "all_proxy"):
            env[var] = env[var.upper()] = self.origin
        env["no_proxy"] = env["NO_PROXY"] = "127.0.0.1,localhost,::1"
        if api_key is not None:
            env[FAKE_KEY_ENV] = api_key
        env.update(extra)
        return env

    # internals used by the handler ------------------------------------------------------------

    def _record(self, req: RecordedRequest, *, proxy: bool = False) -> None:
        if proxy:
            with self._cond:
                self._proxy_requests.append(req)
                self._cond.notify_all()
        else:
            super()._record(req)
        if self._log_file is not None:
            kind = "PROXY " if proxy else ""
            print(
                f"[fake-openai] {kind}{req.method} {req.path} {req.masked_headers()!r}",
                file=self._log_file,
                flush=True,
            )


class _Handler(StreamingHandler):
    fake: FakeResponsesAPI
    server_version = "fake-openai"
    timeout = 30  # a client that never sends its request cannot pin a thread forever

    def do_CONNECT(self) -> None:
        self._dispatch()

    # routing ------------------------------------------------------------------------------------

    def _read_body(self) -> bytes:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            parts: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    def _dispatch(self) -> None:
        proxy = self.command == "CONNECT" or "://" in self.path.split("?", 1)[0]
        parts = urlsplit(self.path)
        raw = b"" if self.command == "CONNECT" else self._read_body()
        body: Any = None
        if raw and not self.headers.get("content-encoding"):
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
        rec = RecordedRequest(
            method=self.command,
            path=self.path if proxy else parts.path,
            query="" if proxy else parts.query,
            headers={k.lower(): v for k, v in self.headers.items()},
            raw_body=raw,
            body=body,
        )
        # Recorded before answering so a test can await a request whose answer hangs; the
        # behaviour and status fields are filled in before any response byte is sent.
        self.fake._record(rec, proxy=proxy)
        if proxy:
            rec.behaviour = "proxy-refused"
            self.close_connection = True
            self._json(rec, 403, {"error": {"message": "fake: no network beyond loopback", "type": "proxy_refused"}})
            return
        self._route(rec)

    def _route(self, rec: RecordedRequest) -> None:
        path, method = rec.path, rec.method
        if method == "POST" and path == "/v1/responses":
            if not self._authorized(rec):
                return
            behaviour = self.fake._next_behaviour()
            if behaviour is None:
                rec.behaviour = "queue-empty"
                self._error(rec, ApiError(500, "fake: the behaviour queue ran dry", "server_error"))
                return
            rec.behaviour = type(behaviour).__name__
            self._responses(rec, behaviour)
        elif method == "GET" and path == "/v1/models":
            if not self._authorized(rec):
                return
            rec.behaviour = "models"
            self._json(rec, 200, {"object": "list", "data": [_model_info(m) for m in _MODELS]})
        elif method == "GET" and path.startswith("/v1/models/"):
            if not self._authorized(rec):
                return
            rec.behaviour = "model"
            self._json(rec, 200, _model_info(path.rsplit("/", 1)[1]))
        else:
            rec.behaviour = "unknown-path"
            self._error(rec, ApiError(404, f"Invalid URL ({method} {path})", "invalid_request_error"))

    def _authorized(self, rec: RecordedRequest) -> bool:
        expected = self.fake.api_key
        if expected is None:
            return True
        auth = rec.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or not auth[7:].strip():
            rec.behaviour = "no-key"
            self._error(
                rec,
                ApiError(
                    401,
                    "You didn't provide an API key. You need to provide your API key in an Authorization header "
                    "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with "
                    "blank username) if you're accessing the API from your browser and are prompted for a "
                    "username and password. You can obtain an API key from "
                    "https://platform.openai.com/account/api-keys.",
                    "invalid_request_error",
                ),
            )
            return False
        if auth[7:].strip() != expected:
            rec.behaviour = "wrong-key"
            self._error(rec, ApiError.invalid_api_key(auth[7:].strip()))
            return False
        return True

    # responses ----------------------------------------------------------------------------------

    def _common_headers(self, rec: RecordedRequest, *, limited: bool = False) -> list[tuple[str, str]]:
        rec.request_id = f"req_{_hex(32)}"
        return [
            ("x-request-id", rec.request_id),
            ("openai-organization", self.fake.org_id),
            ("openai-processing-ms", "42"),
            ("openai-version", "2020-10-01"),
            ("x-ratelimit-limit-requests", "10000"),
            ("x-ratelimit-limit-tokens", "30000000"),
            ("x-ratelimit-remaining-requests", "0" if limited else "9999"),
            ("x-ratelimit-remaining-tokens", "0" if limited else "29998800"),
            ("x-ratelimit-reset-requests", "6ms"),
            ("x-ratelimit-reset-tokens", "2s" if limited else "2ms"),
        ]

    def _send_head(self, status: int, headers: list[tuple[str, str]]) -> None:
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()

    def _json(self, rec: RecordedRequest, status: int, obj: Any, extra: list[tuple[str, str]] | None = None) -> None:
        data = json.dumps(obj, indent=2).encode()
        rec.status = status
        headers = [("content-type", "application/json"), ("content-length", str(len(data)))]
        self._send_head(status, headers + self._common_headers(rec) + (extra or []))
        if self.command != "HEAD":
            self.wfile.write(data)
        self.wfile.flush()

    def _error(self, rec: RecordedRequest, err: ApiError) -> None:
        extra: list[tuple[str, str]] = list(err.headers)
        if err.retry_after is not None:
            ra = err.retry_after
            extra.append(("retry-after", str(int(ra)) if float(ra).is_integer() else str(ra)))
        data = json.dumps(err.body(), indent=2).encode()
        rec.status = err.status
        headers = [("content-type", "application/json; charset=utf-8"), ("content-length", str(len(data)))]
        self._send_head(err.status, headers + self._common_headers(rec, limited=err.status == 429) + extra)
        if self.command != "HEAD":
            self.wfile.write(data)
        self.wfile.flush()

    def _responses(self, rec: RecordedRequest, behaviour: Behaviour) -> None:
        body = rec.body if isinstance(rec.body, dict) else {}
        if isinstance(behaviour, ApiError):
            self._error(rec, behaviour)
            return
        model = str(body.get("model") or DEFAULT_MODEL)
        if isinstance(behaviour, Reply | ToolCall) and behaviour.model:
            model = behaviour.model
        if not body.get("stream"):
            self._non_streaming(rec, behaviour, body, model)
            return
        rec.status = 200
        self._send_head(
            200,
            [
                ("content-type", "text/event-stream; charset=utf-8"),
                ("cache-control", "no-cache"),
                ("transfer-encoding", "chunked"),
                *self._common_headers(rec),
            ],
        )
        stream = _SseWriter(self, _response_obj(body, model))
        stream.begin()
        if isinstance(behaviour, StreamFailed):
            stream.failed(behaviour.code, behaviour.message)
            self._end_chunks()
        elif isinstance(behaviour, StreamErrorEvent):
            stream.event("error", {"code": behaviour.code, "message": behaviour.message, "param": None})
            self._end_chunks()
        elif isinstance(behaviour, DropMidStream):
            stream.message_begin()
            stream.text_delta(behaviour.text)
            self._drop(reset=behaviour.reset)
        elif isinstance(behaviour, Hang):
            if behaviour.text:
                stream.message_begin()
                stream.text_delta(behaviour.text)
            self.fake._stopping.wait()
            self.close_connection = True
        elif isinstance(behaviour, ToolCall):
            stream.function_call(behaviour.name, json.dumps(dict(behaviour.arguments)))
            stream.completed(behaviour.usage)
            self._end_chunks()
        else:
            assert isinstance(behaviour, Reply)
            if behaviour.reasoning is not None:
                stream.reasoning(behaviour.reasoning, behaviour.chunk_size)
            stream.message(behaviour.text, behaviour.chunk_size)
            stream.completed(behaviour.usage)
            self._end_chunks()

    def _non_streaming(self, rec: RecordedRequest, behaviour: Behaviour, body: dict[str, Any], model: str) -> None:
        # Without streaming the failures a stream reports in-band become the matching HTTP error.
        if isinstance(behaviour, StreamFailed | StreamErrorEvent):
            status = 429 if behaviour.code == "rate_limit_exceeded" else 500
            self._error(rec, ApiError(status, behaviour.message, "server_error", behaviour.code))
            return
        if isinstance(behaviour, Hang):
            self.fake._stopping.wait()
            self.close_connection = True
            return
        resp = _response_obj(body, model)
        usage = behaviour.usage if isinstance(behaviour, Reply | ToolCall) else Usage()
        if isinstance(behaviour, ToolCall):
            resp["output"] = [_function_call_item(behaviour.name, json.dumps(dict(behaviour.arguments)))]
        else:
            resp["output"] = [_message_item(f"msg_{_hex(48)}", getattr(behaviour, "text", ""), "completed")]
        resp.update(status="completed", usage=usage.as_api())
        if isinstance(behaviour, DropMidStream):
            data = json.dumps(resp).encode()
            rec.status = 200
            headers = [("content-type", "application/json"), ("content-length", str(len(data)))]
            self._send_head(200, headers + self._common_headers(rec))
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self._drop(reset=behaviour.reset)
            return
        self._json(rec, 200, resp)


class _SseWriter:
    """Writes one response's events in the real order, numbering them (``sequence_number``)."""

    def __init__(self, handler: _Handler, response: dict[str, Any]) -> None:
        self.h = handler
        self.response = response
        self.seq = 0
        self.output: list[dict[str, Any]] = []
        self._msg_id = f"msg_{_hex(48)}"

    def event(self, name: str, data: Mapping[str, Any]) -> None:
        doc = {"type": name, **data, "sequence_number": self.seq}
        self.seq += 1
        payload = f"event: {name}\ndata: {json.dumps(doc, separators=(',', ':'))}\n\n".encode()
        self.h._write_chunk(payload)

    def begin(self) -> None:
        self.event("response.created", {"response": self.response})
        self.event("response.in_progress", {"response": self.response})

    def reasoning(self, summary: str, chunk: int) -> None:
        index = len(self.output)
        item_id = f"rs_{_hex(48)}"
        self.event(
            "response.output_item.added",
            {"output_index": index, "item": {"id": item_id, "type": "reasoning", "summary": []}},
        )
        ref = {"item_id": item_id, "output_index": index, "summary_index": 0}
        self.event("response.reasoning_summary_part.added", {**ref, "part": {"type": "summary_text", "text": ""}})
        for piece in _pieces(summary, chunk):
            self.event("response.reasoning_summary_text.delta", {**ref, "delta": piece})
        self.event("response.reasoning_summary_text.done", {**ref, "text": summary})
        self.event("response.reasoning_summary_part.done", {**ref, "part": {"type": "summary_text", "text": summary}})
        item = {"id": item_id, "type": "reasoning", "summary": [{"type": "summary_text", "text": summary}]}
        self.event("response.output_item.done", {"output_index": index, "item": item})
        self.output.append(item)

    def message_begin(self) -> None:
        self.event(
            "response.output_item.added",
            {"output_index": len(self.output), "item": _message_item(self._msg_id, None, "in_progress")},
        )
        self.event(
            "response.content_part.added",
            {
                "item_id": self._msg_id,
                "output_index": len(self.output),
                "content_index": 0,
                "part": {"type": "output_text", "annotations": [], "logprobs": [], "text": ""},
            },
        )

    def text_delta(self, piece: str) -> None:
        self.event(
            "response.output_text.delta",
            {
                "item_id": self._msg_id,
                "output_index": len(self.output),
                "content_index": 0,
                "delta": piece,
                "logprobs": [],
            },
        )

    def message(self, text: str, chunk: int) -> None:
        self.message_begin()
        for piece in _pieces(text, chunk):
            self.text_delta(piece)
        ref = {"item_id": self._msg_id, "output_index": len(self.output), "content_index": 0}
        self.event("response.output_text.done", {**ref, "text": text, "logprobs": []})
        self.event(
            "response.content_part.done",
            {**ref, "part": {"type": "output_text", "annotations": [], "logprobs": [], "text": text}},
        )
        item = _message_item(self._msg_id, text, "completed")
        self.event("response.output_item.done", {"output_index": len(self.output), "item": item})
        self.output.append(item)

    def function_call(self, name: str, arguments: str) -> None:
        index = len(self.output)
        item = _function_call_item(name, arguments)
        self.event(
            "response.output_item.added",
            {"output_index": index, "item": {**item, "arguments": "", "status": "in_progress"}},
        )
        for piece in _pieces(arguments, 16):
            self.event(
                "response.function_call_arguments.delta", {"item_id": item["id"], "output_index": index, "delta": piece}
            )
        self.event(
            "response.function_call_arguments.done",
            {"item_id": item["id"], "output_index": index, "arguments": arguments},
        )
        self.event("response.output_item.done", {"output_index": index, "item": item})
        self.output.append(item)

    def completed(self, usage: Usage) -> None:
        done = {
            **self.response,
            "status": "completed",
            "completed_at": int(time.time()),
            "output": self.output,
            "usage": usage.as_api(),
        }
        self.event("response.completed", {"response": done})

    def failed(self, code: str, message: str) -> None:
        failed = {**self.response, "status": "failed", "error": {"code": code, "message": message}}
        self.event("response.failed", {"response": failed})


def _pieces(text: str, size: int) -> list[str]:
    size = max(1, size)
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _response_obj(body: Mapping[str, Any], model: str) -> dict[str, Any]:
    """The ``response`` object as ``response.created`` shows it (request fields echoed back)."""
    return {
        "id": f"resp_{_hex(48)}",
        "object": "response",
        "created_at": int(time.time()),
        "status": "in_progress",
        "background": False,
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": model,
        "output": [],
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "prompt_cache_key": body.get("prompt_cache_key"),
        "reasoning": body.get("reasoning") or {"effort": None, "summary": None},
        "service_tier": body.get("service_tier") or "auto",
        "store": body.get("store", True),
        "temperature": 1.0,
        "text": body.get("text") or {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": None,
        "user": None,
        "metadata": {},
    }


def _message_item(item_id: str, text: str | None, status: str) -> dict[str, Any]:
    content = [] if text is None else [{"type": "output_text", "annotations": [], "logprobs": [], "text": text}]
    return {"id": item_id, "type": "message", "status": status, "content": content, "role": "assistant"}


def _function_call_item(name: str, arguments: str) -> dict[str, Any]:
    return {
        "id": f"fc_{_hex(48)}",
        "type": "function_call",
        "status": "completed",
        "arguments": arguments,
        "call_id": f"call_{_hex(24)}",
        "name": name,
    }


def _model_info(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": 1765000000, "owned_by": "system"}


def iter_jsonl(stdout: str) -> Iterator[dict[str, Any]]:
    """Parse a CLI's JSONL stdout, skipping non-JSON lines as the reference advises."""
    for line in stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            yield json.loads(line)


if __name__ == "__main__":
    # Manual exploration: run the fake and print every request it gets (key masked).
    with FakeResponsesAPI(log_file=sys.stderr, api_key=None) as _fake:
        print(f"base_url={_fake.base_url}  (any bearer key is accepted)", flush=True)
        _offline = ["--disable", "plugins", "-c", "analytics.enabled=false"]  # see tests/workers/codex_cli/conftest.py
        _argv = ["codex", "exec", "--json", "--skip-git-repo-check", *_fake.codex_config(), *_offline, "Say hello"]
        print(f"{FAKE_KEY_ENV}=x CODEX_HOME=$(mktemp -d) {shlex.join(_argv)}", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
