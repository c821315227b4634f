"""A fake Gemini API (``generativelanguage.googleapis.com``) on 127.0.0.1 for the real Gemini CLI.

A real HTTP/1.1 server (stdlib ``ThreadingHTTPServer`` in a thread, ephemeral port, keep-alive,
chunked ``text/event-stream`` bodies) so the client under test runs its real HTTP, SSE, error and
retry code.  ``fake.cli_env(home)`` builds a complete, hermetic environment for ``gemini -p``
(see its docstring for why each variable and setting is there).

Usage::

    with FakeGeminiAPI() as fake:
        fake.enqueue(ApiError.rate_limit(retry_delay_s=22))    # the next generation request only
        subprocess.run([gemini, "-p", "hi", "-m", "gemini-2.5-flash", "-o", "stream-json"],
                       env=fake.cli_env(tmp_path / "home"), cwd=workdir)
        (req,) = fake.generation_requests()
        assert req.model == "gemini-2.5-flash" and req.method_name == "streamGenerateContent"
        print(fake.dump())                                     # x-goog-api-key is masked

Endpoints (``/v1beta`` and ``/v1``):

- ``POST /{v}/models/{model}:streamGenerateContent?alt=sse`` and ``POST …:generateContent``
  ("generation requests"): each takes the next behaviour from the FIFO queue (``enqueue`` /
  ``script``); when the queue is empty the ``default`` answers, or with ``strict_queue=True`` a
  500 ``INTERNAL`` saying the queue ran dry, so a test that triggers more requests than it
  scripted notices.
- ``POST …:countTokens``: ``{"totalTokens": N}`` (a rough estimate of the body).
- ``GET /{v}/models`` and ``GET /{v}/models/{model}``: model metadata in the real shape.
- anything else: 404 ``NOT_FOUND`` in Google's error shape.

Authentication is checked first, as Google does, before any behaviour is consumed: the key comes
from ``x-goog-api-key`` (what the CLI's SDK sends) or ``?key=``.  A missing key answers 403
``PERMISSION_DENIED`` ("unregistered callers"); a key other than ``api_key`` answers 400
``INVALID_ARGUMENT`` with ``ErrorInfo.reason: API_KEY_INVALID``, which is what the real API
returns for a bad key (not 401).  ``api_key=None`` accepts any key.

Behaviours:

- ``Reply(text, usage=UsageMetadata(...), finish_reason="STOP")``: success.  Streaming sends the
  text in a few ``data: {candidates:[{content:{parts:[{text}],role:"model"}}], usageMetadata,
  modelVersion, responseId}`` SSE events separated by ``\\r\\n\\r\\n`` like the real API; the
  intermediate chunks carry only ``promptTokenCount``/``totalTokenCount``, the last one
  ``finishReason`` and the complete ``usageMetadata`` (``candidatesTokenCount``,
  ``cachedContentTokenCount``, ``thoughtsTokenCount``, details).  Non-streaming: one object.
- ``ApiError(status, status_name, message, details)`` with constructors for the real bodies:
  ``rate_limit`` (429 per-minute quota, ``RetryInfo.retryDelay``), ``daily_quota`` (429 per-day
  quota), ``api_key_invalid`` (400), ``permission_denied`` (403), ``unauthenticated`` (401),
  ``unavailable`` (503 "The model is overloaded"), ``internal`` (500), ``model_not_found`` (404).
  Body: ``{"error": {"code", "message", "status", "details": [...]}}``.
- ``StreamError(error, text="")``: HTTP 200, then a bare JSON ``{"error": …}`` body chunk (after
  an SSE chunk of ``text`` if given), which is how the real API reports a failure inside a 200
  stream; the SDK recognises it only when it arrives in a read of its own.
- ``DropMidStream(text)``: HTTP 200, one SSE text chunk, then the connection is closed (or reset
  with ``reset=True``) without finishing the chunked body.
- ``Truncated(text)``: HTTP 200, one SSE text chunk, then half an event and a clean end of the
  chunked body (what a cut-off proxy response looks like).
- ``Hang(text)``: HTTP 200, optionally one chunk, then silence until the server shuts down.

Responses carry Google's headers (``content-type: application/json; charset=UTF-8``, ``vary``,
``server: scaffolding on HTTPServer2``, ``server-timing``, ``x-content-type-options`` …).

The fake also serves as the HTTP(S) proxy of the CLI under test (``cli_env`` points
``HTTPS_PROXY``/``HTTP_PROXY`` at it with ``NO_PROXY`` covering loopback only): a ``CONNECT`` or
absolute-URI request for any other host is recorded with ``proxied=True`` and refused with 403,
so ``foreign_requests()`` lists every attempt to reach the internet and the attempt fails fast.

Every request is recorded before it is answered (``fake.requests``): method, path, query,
lower-cased headers, raw and parsed JSON body, the behaviour used and the status sent.  Headers
are kept verbatim (tests may assert the key that was sent) but ``repr()``/``dump()`` mask
``x-goog-api-key``, ``authorization`` and ``key=``.  ``wait_for_generation_requests(n)`` blocks on
a condition, never a sleep.  ``python -m tests.fakes.gemini_api`` runs the fake standalone and
prints each request, for exploring what a client calls.
"""

from __future__ import annotations

import json
import os
import random
import re
import string
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tests.fakes.loopback import ScriptedServer, StreamingHandler

# Shaped like a real key (AIza + 35 characters) so secret scrubbers treat it as one.
FAKE_API_KEY = "AIzaSyFAKE-test-key-0000000000000000000"
DEFAULT_MODEL = "gemini-2.5-flash"
_SECRET_HEADERS = frozenset({"x-goog-api-key", "authorization", "proxy-authorization"})
_MODEL_PATH = re.compile(r"^/(v1beta|v1|v1alpha)/models/([^/:]+):([A-Za-z]+)$")
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "[::1]", "::1"})
_TYPE = "type.googleapis.com/google.rpc."
_B64 = string.ascii_letters + string.digits + "-_"


@dataclass(frozen=True)
class UsageMetadata:
    """Token counts as the API reports them; ``promptTokenCount`` includes the cached part."""

    prompt_tokens: int = 25
    candidates_tokens: int = 12
    cached_tokens: int = 0
    thoughts_tokens: int = 0
    tool_use_prompt_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.candidates_tokens + self.thoughts_tokens + self.tool_use_prompt_tokens

    def as_api(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "promptTokenCount": self.prompt_tokens,
            "candidatesTokenCount": self.candidates_tokens,
            "totalTokenCount": self.total_tokens,
        }
        if self.cached_tokens:
            out["cachedContentTokenCount"] = self.cached_tokens
        out["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": self.prompt_tokens}]
        if self.cached_tokens:
            out["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": self.cached_tokens}]
        if self.thoughts_tokens:
            out["thoughtsTokenCount"] = self.thoughts_tokens
        if self.tool_use_prompt_tokens:
            out["toolUsePromptTokenCount"] = self.tool_use_prompt_tokens
        return out

    def partial(self) -> dict[str, Any]:
        """What intermediate stream chunks carry: the prompt side only."""
        return {
            "promptTokenCount": self.prompt_tokens,
            "totalTokenCount": self.prompt_tokens,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": self.prompt_tokens}],
        }


@dataclass(frozen=True)
class Reply:
    """A successful answer (streamed or not, as the request's method asks)."""

    text: str = "Hello from the fake Gemini API."
    usage: UsageMetadata = field(default_factory=UsageMetadata)
    finish_reason: str = "STOP"
    model_version: str | None = None  # None echoes the requested model
    chunk_size: int = 12


@dataclass(frozen=True)
class ApiError:
    """A non-200 response in Google's JSON error shape."""

    status: int
    status_name: str
    message: str
    details: tuple[Mapping[str, Any], ...] = ()

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.status, "message": self.message, "status": self.status_name}
        if self.details:
            error["details"] = [dict(d) for d in self.details]
        return {"error": error}

    @classmethod
    def rate_limit(cls, retry_delay_s: float = 22, model: str = DEFAULT_MODEL, limit: int = 10) -> ApiError:
        """429 for a per-minute request quota, as the real API words it (the CLI retries it)."""
        delay = f"{retry_delay_s:g}s"
        return cls(
            429,
            "RESOURCE_EXHAUSTED",
            "You exceeded your current quota, please check your plan and billing details. For more "
            "information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits. "
            "To monitor your current usage, head to: https://ai.dev/usage?tab=rate-limit. \n"
            "* Quota exceeded for metric: generativelanguage.googleapis.com/generate_content_free_tier_requests, "
            f"limit: {limit}, model: {model}\nPlease retry in {retry_delay_s}s.",
            (
                _help("Learn more about Gemini API quotas", "https://ai.google.dev/gemini-api/docs/rate-limits"),
                _quota_failure(
                    "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                    "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                    model,
                    limit,
                ),
                {"@type": _TYPE + "RetryInfo", "retryDelay": delay},
            ),
        )

    @classmethod
    def daily_quota(cls, model: str = DEFAULT_MODEL, limit: int = 250, retry_delay_s: float = 43) -> ApiError:
        """429 for an exhausted per-day quota: the same words, a ``PerDay`` quota id."""
        return cls(
            429,
            "RESOURCE_EXHAUSTED",
            "You exceeded your current quota, please check your plan and billing details. For more "
            "information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits. "
            "To monitor your current usage, head to: https://ai.dev/usage?tab=rate-limit. \n"
            "* Quota exceeded for metric: generativelanguage.googleapis.com/generate_content_free_tier_requests, "
            f"limit: {limit}, model: {model}\nPlease retry in {retry_delay_s}s.",
            (
                _help("Learn more about Gemini API quotas", "https://ai.google.dev/gemini-api/docs/rate-limits"),
                _quota_failure(
                    "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                    "GenerateRequestsPerDayPerProjectPerModel-FreeTier",
                    model,
                    limit,
                ),
                {"@type": _TYPE + "RetryInfo", "retryDelay": f"{retry_delay_s:g}s"},
            ),
        )

    @classmethod
    def api_key_invalid(cls) -> ApiError:
        message = "API key not valid. Please pass a valid API key."
        return cls(
            400,
            "INVALID_ARGUMENT",
            message,
            (
                {
                    "@type": _TYPE + "ErrorInfo",
                    "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com",
                    "metadata": {"service": "generativelanguage.googleapis.com"},
                },
                {"@type": _TYPE + "LocalizedMessage", "locale": "en-US", "message": message},
            ),
        )

    @classmethod
    def permission_denied(cls) -> ApiError:
        """403 for a request without any key."""
        return cls(
            403,
            "PERMISSION_DENIED",
            "Method doesn't allow unregistered callers (callers without established identity). "
            "Please use API Key or other form of API consumer identity to call this API.",
            (
                {
                    "@type": _TYPE + "ErrorInfo",
                    "reason": "CONSUMER_INVALID",
                    "domain": "googleapis.com",
                    "metadata": {"service": "generativelanguage.googleapis.com"},
                },
            ),
        )

    @classmethod
    def unauthenticated(cls) -> ApiError:
        """401, what an expired or wrong OAuth bearer token gets."""
        return cls(
            401,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
            "cookie or other valid authentication credential. See "
            "https://developers.google.com/identity/sign-in/web/devconsole-project.",
            (
                {
                    "@type": _TYPE + "ErrorInfo",
                    "reason": "ACCESS_TOKEN_TYPE_UNSUPPORTED",
                    "metadata": {"service": "generativelanguage.googleapis.com"},
                },
            ),
        )

    @classmethod
    def unavailable(cls) -> ApiError:
        return cls(503, "UNAVAILABLE", "The model is overloaded. Please try again later.")

    @classmethod
    def internal(cls) -> ApiError:
        return cls(
            500,
            "INTERNAL",
            "An internal error has occurred. Please retry or report in "
            "https://developers.generativeai.google/guide/troubleshooting",
        )

    @classmethod
    def model_not_found(cls, model: str = "gemini-9-ultra", method: str = "generateContent") -> ApiError:
        return cls(
            404,
            "NOT_FOUND",
            f"models/{model} is not found for API version v1beta, or is not supported for {method}. "
            "Call ListModels to see the list of available models and their supported methods.",
        )


def _help(description: str, url: str) -> dict[str, Any]:
    return {"@type": _TYPE + "Help", "links": [{"description": description, "url": url}]}


def _quota_failure(metric: str, quota_id: str, model: str, limit: int) -> dict[str, Any]:
    return {
        "@type": _TYPE + "QuotaFailure",
        "violations": [
            {
                "quotaMetric": metric,
                "quotaId": quota_id,
                "quotaDimensions": {"location": "global", "model": model},
                "quotaValue": str(limit),
            }
        ],
    }


@dataclass(frozen=True)
class StreamError:
    """HTTP 200, then a bare ``{"error": …}`` body chunk (a failure inside a 200 stream)."""

    error: ApiError = field(default_factory=ApiError.unavailable)
    # With text, the error may reach the client in the same read as the text chunk; the SDK then
    # fails with "Incomplete JSON segment at the end" instead of the error.  Empty is deterministic.
    text: str = ""


@dataclass(frozen=True)
class DropMidStream:
    """HTTP 200, one SSE chunk of ``text``, then the connection goes away mid-body."""

    text: str = "Partial answer that never"
    reset: bool = False  # True: RST (SO_LINGER 0) instead of an orderly FIN


@dataclass(frozen=True)
class Truncated:
    """HTTP 200, one SSE chunk of ``text``, then half an event and a clean end of the body.

    The SDK fails with "Incomplete JSON segment at the end", which the CLI retries mid-stream
    after 1 s (2 s, 4 s …) when ``general.maxAttempts`` allows, unlike an HTTP error (5 s..30 s).
    """

    text: str = "Partial "


@dataclass(frozen=True)
class Hang:
    """HTTP 200 headers (and ``text`` as a first chunk if given), then silence until shutdown."""

    text: str = ""


Behaviour = Reply | ApiError | StreamError | DropMidStream | Truncated | Hang


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    raw_body: bytes
    body: Any  # parsed JSON, or None when the body was empty or not JSON
    proxied: bool = False  # a CONNECT or absolute-URI request: the client used us as its proxy
    target: str = ""  # for proxied requests: the host[:port] the client wanted
    behaviour: str = ""
    status: int = 0

    @property
    def model(self) -> str | None:
        match = _MODEL_PATH.match(self.path)
        return match.group(2) if match else None

    @property
    def method_name(self) -> str | None:
        """``streamGenerateContent``, ``generateContent``, ``countTokens`` … (None for other paths)."""
        match = _MODEL_PATH.match(self.path)
        return match.group(3) if match else None

    @property
    def is_generation(self) -> bool:
        return self.method == "POST" and self.method_name in ("streamGenerateContent", "generateContent")

    def prompt_texts(self) -> list[str]:
        """Every text part of the request's ``contents`` (user turns and history)."""
        body = self.body if isinstance(self.body, dict) else {}
        texts: list[str] = []
        for content in body.get("contents") or []:
            for part in content.get("parts") or [] if isinstance(content, dict) else []:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    texts.append(part["text"])
        return texts

    def masked_headers(self) -> dict[str, str]:
        return {k: (_mask(v) if k in _SECRET_HEADERS else v) for k, v in self.headers.items()}

    def masked_query(self) -> str:
        return re.sub(r"(^|&)key=[^&]*", lambda m: f"{m.group(1)}key=***", self.query)

    def __repr__(self) -> str:
        query = self.masked_query()
        return (
            f"RecordedRequest({self.method} {self.target or ''}{self.path}{'?' + query if query else ''} -> "
            f"{self.status} [{self.behaviour}], headers={self.masked_headers()!r}, "
            f"body_keys={sorted(self.body) if isinstance(self.body, dict) else None})"
        )


def _mask(value: str) -> str:
    return value[:6] + "***" if len(value) > 12 else "***"


def _response_id() -> str:
    return "".join(random.choices(_B64, k=22))


class FakeGeminiAPI(ScriptedServer[RecordedRequest, Behaviour]):
    """See the module docstring."""

    default: Behaviour

    def __init__(
        self,
        default: Behaviour | None = None,
        *,
        strict_queue: bool = False,
        api_key: str | None = FAKE_API_KEY,
        log_file: Any = None,
    ) -> None:
        super().__init__(_Handler, default if default is not None else Reply(), strict_queue=strict_queue)
        self.api_key = api_key
        self._log_file = log_file

    @property
    def base_url(self) -> str:
        return self.url()

    # scripting and inspection -------------------------------------------------------------------

    @property
    def queued(self) -> int:
        with self._cond:
            return len(self._queue)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._cond:
            return list(self._requests)

    def generation_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.is_generation]

    def foreign_requests(self) -> list[RecordedRequest]:
        """Requests meant for another host (sent through us as a proxy): should be none."""
        return [r for r in self.requests if r.proxied]

    def wait_for_generation_requests(self, n: int, timeout: float = 10.0) -> list[RecordedRequest]:
        return self._wait_for(lambda r: r.is_generation, n, timeout)

    def dump(self) -> str:
        return "\n".join(repr(r) for r in self.requests)

    def cli_env(
        self,
        home: Path,
        *,
        max_attempts: int | None = 1,
        settings: Mapping[str, Any] | None = None,
        api_key: str | None = FAKE_API_KEY,
        **extra: str,
    ) -> dict[str, str]:
        """A hermetic environment for ``gemini -p`` against this fake; writes ``home/.gemini``.

        Built from scratch rather than from ``os.environ`` so no real key, proxy or user config of
        the machine can leak in.  What each piece is for (Gemini CLI 0.61):

        - ``HOME`` and ``GEMINI_CLI_HOME`` (``~/.gemini`` lives there), and
          ``GEMINI_CLI_SYSTEM_SETTINGS_PATH`` / ``GEMINI_CLI_SYSTEM_DEFAULTS_PATH`` pointed into
          ``home`` so ``/etc/gemini-cli/*.json`` of the machine is never read.
        - ``GEMINI_API_KEY`` + ``GOOGLE_GEMINI_BASE_URL``.  The base URL alone makes the CLI pick
          the ``gateway`` auth type, which headless mode rejects ("Invalid auth method selected.",
          exit 41), so ``settings.json`` pins ``security.auth.selectedType: "gemini-api-key"``;
          the SDK then still takes its base URL from ``GOOGLE_GEMINI_BASE_URL``.
        - ``privacy.usageStatisticsEnabled: false``: otherwise the CLI resolves
          ``play.googleapis.com`` to upload usage statistics (seen with strace).
          ``telemetry.enabled: false`` and ``general.enableAutoUpdate*: false`` keep OpenTelemetry
          export and the npm update check off too.
        - ``general.maxAttempts`` caps the CLI's own retries (default 10, with 5 s..30 s backoff):
          1 means "no retry", so an error scenario takes one request and no waiting.
        - ``GEMINI_CLI_TRUST_WORKSPACE=true``: headless runs in an untrusted folder exit 55.
        - ``TMPDIR`` inside ``home``: on an API error the CLI writes a
          ``gemini-client-error-*.json`` report (with the full request) to ``os.tmpdir()``.
        - ``HTTPS_PROXY``/``HTTP_PROXY`` point at this fake and ``NO_PROXY`` covers loopback only:
          any request for another host arrives here as ``CONNECT`` and is refused and recorded.
        """
        home.mkdir(parents=True, exist_ok=True)
        gemini_dir = home / ".gemini"
        gemini_dir.mkdir(exist_ok=True)
        merged: dict[str, Any] = {
            "security": {"auth": {"selectedType": "gemini-api-key"}},
            "privacy": {"usageStatisticsEnabled": False},
            "telemetry": {"enabled": False},
            "general": {"enableAutoUpdate": False, "enableAutoUpdateNotification": False},
        }
        if max_attempts is not None:
            merged["general"]["maxAttempts"] = max_attempts
        for key, value in (settings or {}).items():
            if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = value
        (gemini_dir / "settings.json").write_text(json.dumps(merged, indent=2) + "\n")
        system_dir = home / "system"
        system_dir.mkdir(exist_ok=True)
        tmp_dir = home / "tmp"
        tmp_dir.mkdir(exist_ok=True)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "GEMINI_CLI_HOME": str(home),
            "GEMINI_CLI_SYSTEM_SETTINGS_PATH": str(system_dir / "settings.json"),
            "GEMINI_CLI_SYSTEM_DEFAULTS_PATH": str(system_dir / "system-defaults.json"),
            "TMPDIR": str(tmp_dir),
            "LANG": "C.UTF-8",
            "NO_COLOR": "1",
            "GOOGLE_GEMINI_BASE_URL": self.base_url,
            "GEMINI_CLI_TRUST_WORKSPACE": "true",
            "HTTPS_PROXY": self.base_url,
            "HTTP_PROXY": self.base_url,
            "NO_PROXY": "127.0.0.1,localhost",
        }
        if api_key is not None:
            env["GEMINI_API_KEY"] = api_key
        env.update(extra)
        return env

    # internals used by the handler ------------------------------------------------------------

    def _record(self, req: RecordedRequest) -> None:
        super()._record(req)
        if self._log_file is not None:
            print(f"[fake-gemini] {req!r}", file=self._log_file, flush=True)


class _Handler(StreamingHandler):
    fake: FakeGeminiAPI
    server_version = "scaffolding on HTTPServer2"
    _response_id = ""  # set per generation response; every chunk of one stream repeats it

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_CONNECT(self) -> None:
        # A tunnel request: the client used us as its HTTPS proxy for some other host.
        rec = RecordedRequest(
            method="CONNECT",
            path="",
            query="",
            headers={k.lower(): v for k, v in self.headers.items()},
            raw_body=b"",
            body=None,
            proxied=True,
            target=self.path,
            behaviour="proxy-refused",
            status=403,
        )
        self.fake._record(rec)
        self.close_connection = True
        self._send_head(403, [("content-length", "0"), ("connection", "close")])
        self.wfile.flush()

    # routing ------------------------------------------------------------------------------------

    def _dispatch(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        headers = {k.lower(): v for k, v in self.headers.items()}
        # Absolute-form target ("GET http://host/path"): a plain-HTTP proxy request.
        proxied = bool(parts.scheme) and (parts.hostname or "") not in _LOOPBACK
        rec = RecordedRequest(
            method=self.command,
            path=parts.path,
            query=parts.query,
            headers=headers,
            raw_body=raw,
            body=body,
            proxied=proxied,
            target=parts.netloc if parts.scheme else "",
        )
        if proxied:
            rec.behaviour, rec.status = "proxy-refused", 403
            self.fake._record(rec)
            self.close_connection = True
            self._send_head(403, [("content-length", "0"), ("connection", "close")])
            self.wfile.flush()
            return
        # Recorded before answering so a test can await a request whose answer hangs; behaviour
        # and status are filled in before any response byte is sent.
        self.fake._record(rec)
        self._route(rec)

    def _route(self, rec: RecordedRequest) -> None:
        match = _MODEL_PATH.match(rec.path)
        if match is None:
            if rec.method == "GET" and re.fullmatch(r"/(v1beta|v1|v1alpha)/models/?", rec.path):
                if self._auth_failed(rec):
                    return
                rec.behaviour = "models"
                self._json(rec, 200, {"models": [_model_info(m) for m in (DEFAULT_MODEL, "gemini-2.5-pro")]})
                return
            model_get = re.fullmatch(r"/(v1beta|v1|v1alpha)/models/([^/:]+)", rec.path)
            if rec.method == "GET" and model_get:
                if self._auth_failed(rec):
                    return
                rec.behaviour = "model"
                self._json(rec, 200, _model_info(model_get.group(2)))
                return
            rec.behaviour = "unknown-path"
            self._error(rec, ApiError(404, "NOT_FOUND", f"Method not found: {rec.method} {rec.path}"))
            return
        _, model, method = match.groups()
        if rec.method != "POST":
            rec.behaviour = "unknown-path"
            self._error(rec, ApiError(404, "NOT_FOUND", f"Method not found: {rec.method} {rec.path}"))
            return
        if self._auth_failed(rec):
            return
        if method == "countTokens":
            rec.behaviour = "countTokens"
            self._json(rec, 200, {"totalTokens": max(1, len(rec.raw_body) // 4)})
            return
        if method not in ("streamGenerateContent", "generateContent"):
            rec.behaviour = "unknown-path"
            self._error(rec, ApiError(404, "NOT_FOUND", f"Method not found: {method}"))
            return
        behaviour = self.fake._next_behaviour()
        if behaviour is None:
            rec.behaviour = "queue-empty"
            self._error(rec, ApiError(500, "INTERNAL", "fake: the behaviour queue ran dry"))
            return
        rec.behaviour = type(behaviour).__name__
        if isinstance(behaviour, ApiError):
            self._error(rec, behaviour)
        elif method == "streamGenerateContent":
            self._stream(rec, behaviour, model)
        else:
            self._non_streaming(rec, behaviour, model)

    def _auth_failed(self, rec: RecordedRequest) -> bool:
        expected = self.fake.api_key
        if expected is None:
            return False
        sent = rec.headers.get("x-goog-api-key") or dict(parse_qsl(rec.query)).get("key")
        if sent == expected:
            return False
        rec.behaviour = "auth-missing" if not sent else "auth-invalid"
        self._error(rec, ApiError.permission_denied() if not sent else ApiError.api_key_invalid())
        return True

    # responses ----------------------------------------------------------------------------------

    def _common_headers(self) -> list[tuple[str, str]]:
        return [
            ("vary", "Origin"),
            ("vary", "X-Origin"),
            ("vary", "Referer"),
            ("server", "scaffolding on HTTPServer2"),
            ("x-xss-protection", "0"),
            ("x-frame-options", "SAMEORIGIN"),
            ("x-content-type-options", "nosniff"),
            ("server-timing", f"gfet4t7; dur={random.randint(150, 900)}"),
            ("alt-svc", 'h3=":443"; ma=2592000,h3-29=":443"; ma=2592000'),
        ]

    def _send_head(self, status: int, headers: Sequence[tuple[str, str]]) -> None:
        # send_response would add its own Server header; the real one is in _common_headers.
        self.log_request(status)
        self.send_response_only(status)
        self.send_header("date", self.date_time_string())
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()

    def _json(self, rec: RecordedRequest, status: int, obj: Any) -> None:
        data = json.dumps(obj, indent=2).encode()
        rec.status = status
        headers = [("content-type", "application/json; charset=UTF-8"), ("content-length", str(len(data)))]
        self._send_head(status, headers + self._common_headers())
        if self.command != "HEAD":
            self.wfile.write(data)
        self.wfile.flush()

    def _error(self, rec: RecordedRequest, err: ApiError) -> None:
        self._json(rec, err.status, err.body())

    def _chunk_obj(self, model: str, behaviour: Reply, text: str, *, last: bool) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"parts": [{"text": text}], "role": "model"}}
        if last:
            candidate["finishReason"] = behaviour.finish_reason
        candidate["index"] = 0
        return {
            "candidates": [candidate],
            "usageMetadata": behaviour.usage.as_api() if last else behaviour.usage.partial(),
            "modelVersion": behaviour.model_version or model,
            "responseId": self._response_id,
        }

    def _stream(self, rec: RecordedRequest, behaviour: Behaviour, model: str) -> None:
        rec.status = 200
        self._response_id = _response_id()
        self._send_head(
            200,
            [
                ("content-type", "text/event-stream"),
                ("content-disposition", "attachment"),
                ("transfer-encoding", "chunked"),
                *self._common_headers(),
            ],
        )
        if isinstance(behaviour, Reply):
            text, n = behaviour.text, max(1, behaviour.chunk_size)
            pieces = [text[i : i + n] for i in range(0, len(text), n)] or [""]
            for i, piece in enumerate(pieces):
                self._sse(self._chunk_obj(model, behaviour, piece, last=i == len(pieces) - 1))
            self._end_chunks()
            return
        partial = Reply(getattr(behaviour, "text", ""))
        if partial.text:
            self._sse(self._chunk_obj(model, partial, partial.text, last=False))
        if isinstance(behaviour, StreamError):
            self._write_chunk(json.dumps(behaviour.error.body(), indent=2).encode())
            self._end_chunks()
        elif isinstance(behaviour, DropMidStream):
            self._drop(reset=behaviour.reset)
        elif isinstance(behaviour, Truncated):
            self._write_chunk(b'data: {"candidates":[{"content":{"parts":[{"te')
            self._end_chunks()
        elif isinstance(behaviour, Hang):
            self.fake._stopping.wait()
            self.close_connection = True

    def _non_streaming(self, rec: RecordedRequest, behaviour: Behaviour, model: str) -> None:
        self._response_id = _response_id()
        if isinstance(behaviour, StreamError):
            self._error(rec, behaviour.error)
            return
        if isinstance(behaviour, Hang):
            self.fake._stopping.wait()
            self.close_connection = True
            return
        reply = behaviour if isinstance(behaviour, Reply) else Reply(getattr(behaviour, "text", ""))
        obj = self._chunk_obj(model, reply, reply.text, last=True)
        if isinstance(behaviour, DropMidStream | Truncated):
            data = json.dumps(obj).encode()
            rec.status = 200
            headers = [("content-type", "application/json; charset=UTF-8"), ("content-length", str(len(data)))]
            self._send_head(200, headers + self._common_headers())
            self.wfile.write(data[: len(data) // 2])  # short of the promised content-length
            self.wfile.flush()
            self._drop(reset=isinstance(behaviour, DropMidStream) and behaviour.reset)
            return
        self._json(rec, 200, obj)

    def _sse(self, data: Mapping[str, Any]) -> None:
        self._write_chunk(f"data: {json.dumps(data, separators=(',', ':'))}\r\n\r\n".encode())


def _model_info(model: str) -> dict[str, Any]:
    return {
        "name": f"models/{model}",
        "version": "001",
        "displayName": model,
        "inputTokenLimit": 1048576,
        "outputTokenLimit": 65536,
        "supportedGenerationMethods": ["generateContent", "countTokens", "createCachedContent", "batchGenerateContent"],
        "temperature": 1,
        "topP": 0.95,
        "topK": 64,
        "maxTemperature": 2,
        "thinking": True,
    }


def iter_stream_json(stdout: str) -> Iterator[dict[str, Any]]:
    """The CLI's JSONL stdout as objects, skipping non-JSON lines as the reference advises."""
    for line in stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            yield json.loads(line)


if __name__ == "__main__":
    # Manual exploration: run the fake and print every request it gets (key masked).
    with FakeGeminiAPI(log_file=sys.stderr, api_key=None) as _fake:
        print(f"GOOGLE_GEMINI_BASE_URL={_fake.base_url}", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
