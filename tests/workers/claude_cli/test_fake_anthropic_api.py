"""The fake Anthropic API speaks the real wire format (checked with a plain HTTP client).

No CLI needed: these pin the fake's own behaviour so other tests can rely on it.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.fakes.anthropic_api import (
    FAKE_API_KEY,
    ApiError,
    DropMidStream,
    FakeAnthropicAPI,
    Hang,
    Reply,
    StreamError,
    Usage,
)


@contextlib.contextmanager
def _open(fake: FakeAnthropicAPI, body: dict[str, Any], path: str) -> Iterator[http.client.HTTPResponse]:
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=10)
    try:
        conn.request(
            "POST",
            path,
            body=json.dumps(body),
            headers={
                "x-api-key": FAKE_API_KEY,
                "anthropic-version": "2023-06-01",
                "content-type": "application/json",
            },
        )
        yield conn.getresponse()
    finally:
        conn.close()


@dataclass
class Resp:
    status: int
    headers: Any
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def _post(fake: FakeAnthropicAPI, body: dict[str, Any], path: str = "/v1/messages?beta=true") -> Resp:
    with _open(fake, body, path) as resp:
        return Resp(resp.status, resp.headers, resp.read())


def _sse(raw: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in raw.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


REQ = {"model": "claude-sonnet-4-5", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}


def test_streaming_reply_has_the_real_event_sequence_and_headers() -> None:
    usage = Usage(input_tokens=11, output_tokens=22, cache_read_input_tokens=33, cache_creation_input_tokens=44)
    with FakeAnthropicAPI(default=Reply("Hello, world!", usage=usage, chunk_size=5)) as fake:
        resp = _post(fake, {**REQ, "stream": True})
        raw = resp.body.decode()
    assert resp.status == 200
    assert resp.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert resp.headers["request-id"].startswith("req_")
    assert resp.headers["anthropic-ratelimit-requests-remaining"].isdigit()
    assert resp.headers["anthropic-ratelimit-tokens-reset"].endswith("Z")
    events = _sse(raw)
    assert [name for name, _ in events] == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert all(data["type"] == name for name, data in events)
    start = events[0][1]["message"]
    assert start["id"].startswith("msg_") and start["model"] == "claude-sonnet-4-5"
    assert start["usage"]["input_tokens"] == 11 and start["usage"]["cache_read_input_tokens"] == 33
    assert "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta") == "Hello, world!"
    delta = events[-2][1]
    assert delta["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert delta["usage"]["output_tokens"] == 22 and delta["usage"]["cache_creation_input_tokens"] == 44


def test_non_streaming_reply_is_one_message_document() -> None:
    with FakeAnthropicAPI(default=Reply("Plain.", usage=Usage(5, 6))) as fake:
        resp = _post(fake, REQ)
        doc = resp.json()
    assert resp.status == 200 and resp.headers["content-type"] == "application/json"
    assert doc["type"] == "message" and doc["content"] == [{"type": "text", "text": "Plain."}]
    assert (doc["usage"]["input_tokens"], doc["usage"]["output_tokens"], doc["stop_reason"]) == (
        5,
        6,
        "end_turn",
    )


@pytest.mark.parametrize(
    ("error", "status", "error_type"),
    [
        (ApiError.rate_limit(retry_after=7), 429, "rate_limit_error"),
        (ApiError.overloaded(), 529, "overloaded_error"),
        (ApiError.authentication(), 401, "authentication_error"),
        (ApiError.credit_balance_too_low(), 400, "invalid_request_error"),
        (ApiError.prompt_too_long(), 400, "invalid_request_error"),
        (ApiError.model_not_found("nope"), 404, "not_found_error"),
    ],
)
def test_errors_have_the_real_shape(error: ApiError, status: int, error_type: str) -> None:
    with FakeAnthropicAPI() as fake:
        fake.enqueue(error)
        resp = _post(fake, {**REQ, "stream": True})
        body = resp.json()
        follow_up = _post(fake, REQ)  # the queue held one behaviour; the default answers next
    assert resp.status == status
    assert body["type"] == "error" and body["error"]["type"] == error_type and body["error"]["message"]
    assert body["request_id"] == resp.headers["request-id"]
    assert resp.headers.get("retry-after") == ("7" if status == 429 else None)
    assert resp.headers.get("x-should-retry") == ("true" if status in (429, 529) else None)
    assert follow_up.status == 200


def test_stream_error_event_and_its_non_streaming_equivalent() -> None:
    with FakeAnthropicAPI(default=StreamError()) as fake:
        streamed = _post(fake, {**REQ, "stream": True})
        events = _sse(streamed.body.decode())
        plain = _post(fake, REQ)
    assert streamed.status == 200
    assert [n for n, _ in events] == ["message_start", "error"]
    assert events[1][1] == {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    assert plain.status == 529


@pytest.mark.parametrize("reset", [False, True])
def test_drop_mid_stream_breaks_the_chunked_body(reset: bool) -> None:
    with FakeAnthropicAPI(default=DropMidStream("part", reset=reset)) as fake:
        with _open(fake, {**REQ, "stream": True}, "/v1/messages") as resp:
            assert resp.status == 200
            with pytest.raises((http.client.IncompleteRead, ConnectionError)):
                resp.read()


def test_hang_is_released_when_the_server_closes() -> None:
    fake = FakeAnthropicAPI(default=Hang("first words")).start()
    got: list[bytes | BaseException] = []
    with _open(fake, {**REQ, "stream": True}, "/v1/messages") as resp:
        assert resp.status == 200

        def read() -> None:
            try:
                got.append(resp.read())
            except Exception as exc:  # the hang ends in an incomplete body, which is the point
                got.append(exc)

        reader = threading.Thread(target=read)
        reader.start()
        assert fake.wait_for_message_requests(1, timeout=5)
        start = time.monotonic()
        fake.close()
        reader.join(timeout=5)
    assert not reader.is_alive() and got
    assert isinstance(got[0], http.client.IncompleteRead | ConnectionError)
    assert time.monotonic() - start < 5


def test_other_endpoints_and_request_recording() -> None:
    with FakeAnthropicAPI(strict_queue=True) as fake:
        count = _post(fake, REQ, path="/v1/messages/count_tokens")
        count_body = count.json()
        unknown = _post(fake, {}, path="/api/oauth/whatever")
        unknown_body = unknown.json()
        dry = _post(fake, REQ)
        recorded = fake.requests
        dump = fake.dump()
    assert count.status == 200 and count_body["input_tokens"] > 0
    assert unknown.status == 404 and unknown_body["error"]["type"] == "not_found_error"
    assert dry.status == 500  # strict queue ran dry: loud, not silently answered
    assert [(r.path, r.status) for r in recorded] == [
        ("/v1/messages/count_tokens", 200),
        ("/api/oauth/whatever", 404),
        ("/v1/messages", 500),
    ]
    assert recorded[2].query == "beta=true" and recorded[2].body == REQ
    assert recorded[0].headers["x-api-key"] == FAKE_API_KEY  # stored verbatim for assertions
    assert FAKE_API_KEY not in dump and FAKE_API_KEY not in repr(recorded[0])
    assert "sk-ant-***" in dump


def test_cli_env_is_hermetic(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("ANTHROPIC_AUTH_TOKEN", "real-looking-token")
    with FakeAnthropicAPI() as fake:
        env = fake.cli_env(tmp_path / "home", max_retries=2)
        assert env["ANTHROPIC_BASE_URL"] == f"http://127.0.0.1:{fake.port}"
    assert env["ANTHROPIC_API_KEY"] == FAKE_API_KEY
    assert env["CLAUDE_CONFIG_DIR"] == str(tmp_path / "home" / ".claude")
    assert env["CLAUDE_CODE_MAX_RETRIES"] == "2"
    assert env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] == "1" and env["DISABLE_TELEMETRY"] == "1"
    assert "HTTPS_PROXY" not in env and "ANTHROPIC_AUTH_TOKEN" not in env
