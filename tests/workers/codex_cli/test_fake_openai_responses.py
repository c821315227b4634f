"""The fake Responses API is faithful enough to trust: OpenAI's own Python SDK (and its typed
models, validated strictly) accepts what it sends, errors surface as the SDK's own exception
classes with the real codes and headers, and the scripting/recording contract holds.

No CLI needed: these run wherever the test suite runs.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import openai
import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from tests.fakes.openai_responses import (
    DEFAULT_MODEL,
    FAKE_API_KEY,
    ApiError,
    DropMidStream,
    FakeResponsesAPI,
    Hang,
    Reply,
    StreamErrorEvent,
    StreamFailed,
    ToolCall,
    Usage,
)

EVENT = TypeAdapter(ResponseStreamEvent)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
        monkeypatch.delenv(var.upper(), raising=False)


@pytest.fixture
def fake() -> Iterator[FakeResponsesAPI]:
    with FakeResponsesAPI(strict_queue=True) as server:
        yield server


def _client(fake: FakeResponsesAPI, key: str = FAKE_API_KEY) -> openai.OpenAI:
    return openai.OpenAI(api_key=key, base_url=fake.base_url, max_retries=0, timeout=10)


@contextmanager
def _post(
    fake: FakeResponsesAPI, body: dict[str, Any], key: str = FAKE_API_KEY, path: str = "/v1/responses"
) -> Iterator[http.client.HTTPResponse]:
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=10)
    try:
        conn.request(
            "POST",
            path,
            body=json.dumps(body),
            headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
        )
        yield conn.getresponse()
    finally:
        conn.close()


def _sse(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in raw.decode().split("\n\n"):
        if not block.strip():
            continue
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((fields["event"], json.loads(fields["data"])))
    return events


def test_the_sdk_streams_a_reply_and_sees_the_exact_usage(fake: FakeResponsesAPI) -> None:
    usage = Usage(input_tokens=1234, cached_tokens=700, output_tokens=56, reasoning_tokens=20, cache_write_tokens=30)
    fake.enqueue(Reply("Hello from the fake.", usage=usage, reasoning="Thinking", chunk_size=5))

    with (
        _client(fake) as client,
        client.responses.create(model=DEFAULT_MODEL, input="Say hello", stream=True) as stream,
    ):
        events = list(stream)

    types = [e.type for e in events]
    assert types[:2] == ["response.created", "response.in_progress"]
    assert types[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert "".join(deltas) == "Hello from the fake." and len(deltas) == 4
    assert [e.delta for e in events if e.type == "response.reasoning_summary_text.delta"] == ["Think", "ing"]
    final = events[-1].response  # type: ignore[union-attr]
    assert final.status == "completed" and final.model == DEFAULT_MODEL
    assert final.output_text == "Hello from the fake."
    assert final.usage is not None
    assert (final.usage.input_tokens, final.usage.output_tokens, final.usage.total_tokens) == (1234, 56, 1290)
    assert final.usage.input_tokens_details.cached_tokens == 700
    assert final.usage.input_tokens_details.cache_write_tokens == 30
    assert final.usage.output_tokens_details.reasoning_tokens == 20
    (req,) = fake.response_requests()
    assert req.body["stream"] is True and req.headers["authorization"] == f"Bearer {FAKE_API_KEY}"


@pytest.mark.parametrize(
    "behaviour",
    [
        Reply("Strictly valid.", reasoning="Summary", usage=Usage(reasoning_tokens=3)),
        ToolCall("exec_command", {"cmd": "echo hi"}),
        StreamFailed(),
        StreamErrorEvent(),
    ],
    ids=["reply", "tool-call", "response.failed", "error-event"],
)
def test_every_streamed_event_validates_strictly_against_the_sdk_types(fake: FakeResponsesAPI, behaviour: Any) -> None:
    fake.enqueue(behaviour)

    with _post(fake, {"model": DEFAULT_MODEL, "input": "hi", "stream": True}) as resp:
        assert resp.status == 200
        assert resp.getheader("content-type") == "text/event-stream; charset=utf-8"
        assert resp.getheader("transfer-encoding") == "chunked"
        events = _sse(resp.read())
    for name, doc in events:
        assert name == doc["type"]
        EVENT.validate_python(doc, strict=True)
    assert [doc["sequence_number"] for _, doc in events] == list(range(len(events)))
    last = events[-1][1]
    if isinstance(behaviour, StreamFailed):
        assert last["type"] == "response.failed"
        assert last["response"]["error"] == {"code": "server_error", "message": behaviour.message}
    elif isinstance(behaviour, StreamErrorEvent):
        assert last == {"type": "error", "code": "server_error", "message": behaviour.message, "param": None,
                        "sequence_number": 2}  # fmt: skip
    else:
        assert last["type"] == "response.completed"
        Response.model_validate(last["response"], strict=True)


def test_a_non_streaming_request_gets_one_response_object(fake: FakeResponsesAPI) -> None:
    fake.enqueue(Reply("Plain JSON.", usage=Usage(input_tokens=10, output_tokens=3)))

    with _client(fake) as client:
        response = client.responses.create(model=DEFAULT_MODEL, input="hi")

    assert response.output_text == "Plain JSON."
    assert response.usage is not None and response.usage.total_tokens == 13
    assert response.id.startswith("resp_") and len(response.id) == 5 + 48


def test_rate_limit_is_the_sdks_rate_limit_error_with_retry_after(fake: FakeResponsesAPI) -> None:
    fake.enqueue(ApiError.rate_limit(retry_after=7))

    with _client(fake) as client, pytest.raises(openai.RateLimitError) as info:
        client.responses.create(model=DEFAULT_MODEL, input="hi", stream=True)

    err = info.value
    assert (err.status_code, err.code, err.type) == (429, "rate_limit_exceeded", "tokens")
    assert "Please try again in 7s." in err.message
    assert err.response.headers["retry-after"] == "7"
    assert err.response.headers["x-ratelimit-remaining-requests"] == "0"
    assert err.request_id == fake.response_requests()[0].request_id
    assert err.request_id is not None and err.request_id.startswith("req_")


@pytest.mark.parametrize(
    ("behaviour", "exc", "code"),
    [
        (ApiError.invalid_api_key(), openai.AuthenticationError, "invalid_api_key"),
        (ApiError.insufficient_quota(), openai.RateLimitError, "insufficient_quota"),
        (ApiError.model_not_found(), openai.NotFoundError, "model_not_found"),
        (ApiError.context_length_exceeded(), openai.BadRequestError, "context_length_exceeded"),
        (ApiError.internal(), openai.InternalServerError, None),
        (ApiError.overloaded(), openai.InternalServerError, "server_is_overloaded"),
        (ApiError.service_unavailable(), openai.InternalServerError, None),
    ],
)
def test_http_errors_map_to_the_sdks_exceptions(
    fake: FakeResponsesAPI, behaviour: ApiError, exc: type[openai.APIStatusError], code: str | None
) -> None:
    fake.enqueue(behaviour)

    with _client(fake) as client, pytest.raises(exc) as info:
        client.responses.create(model=DEFAULT_MODEL, input="hi", stream=True)

    assert info.value.status_code == behaviour.status
    assert info.value.code == code
    assert info.value.body == behaviour.body()["error"]


def test_the_key_is_checked_before_the_queue(fake: FakeResponsesAPI) -> None:
    fake.enqueue(Reply("for the right key only"))

    with (
        _client(fake, key="sk-proj-not-the-fake-key-9876") as client,
        pytest.raises(openai.AuthenticationError) as info,
    ):
        client.responses.create(model=DEFAULT_MODEL, input="hi")

    assert info.value.code == "invalid_api_key"
    assert re.search(r"Incorrect API key provided: sk-\*+9876\.", info.value.message)
    assert "not-the-fake" not in info.value.message
    assert fake.pending == 1
    with _post(fake, {"model": DEFAULT_MODEL, "input": "hi"}, key="") as resp:
        assert resp.status == 401 and "You didn't provide an API key" in json.loads(resp.read())["error"]["message"]
    assert [r.behaviour for r in fake.requests] == ["wrong-key", "no-key"]
    assert "not-the-fake" not in fake.dump()  # the bearer token is masked in dumps


def test_a_dropped_stream_ends_without_the_terminating_chunk(fake: FakeResponsesAPI) -> None:
    fake.enqueue(DropMidStream("Partial"), DropMidStream("Partial", reset=True))

    for _ in range(2):
        with _post(fake, {"model": DEFAULT_MODEL, "input": "hi", "stream": True}) as resp:
            assert resp.status == 200
            with pytest.raises((http.client.IncompleteRead, ConnectionResetError)):
                resp.read()


def test_a_hanging_stream_is_released_on_close() -> None:
    fake = FakeResponsesAPI(default=Hang("Still think"), strict_queue=False).start()
    with _post(fake, {"model": DEFAULT_MODEL, "input": "hi", "stream": True}) as resp:
        assert resp.status == 200 and resp.fp.readline().strip()  # the first chunk's size line
        assert fake.wait_for_response_requests(1, timeout=5)[0].behaviour == "Hang"
        fake.close()  # must not block on the hanging handler
        with pytest.raises((http.client.IncompleteRead, ConnectionError)):
            resp.read()


def test_proxy_requests_are_recorded_and_refused(fake: FakeResponsesAPI) -> None:
    with socket.create_connection(("127.0.0.1", fake.port), timeout=5) as sock:
        sock.sendall(b"CONNECT chatgpt.com:443 HTTP/1.1\r\nHost: chatgpt.com:443\r\n\r\n")
        reply = sock.recv(4096)
    assert reply.startswith(b"HTTP/1.1 403")
    (proxied,) = fake.proxy_requests
    assert (proxied.method, proxied.path, proxied.status) == ("CONNECT", "chatgpt.com:443", 403)
    assert fake.requests == []


def test_strict_queue_ran_dry_and_unknown_paths(fake: FakeResponsesAPI) -> None:
    with _client(fake) as client:
        with pytest.raises(openai.InternalServerError, match="queue ran dry"):
            client.responses.create(model=DEFAULT_MODEL, input="hi")
        assert DEFAULT_MODEL in [m.id for m in client.models.list()]
    with _post(fake, {}, path="/v1/chat/completions") as resp:
        assert resp.status == 404
        assert json.loads(resp.read())["error"]["message"] == "Invalid URL (POST /v1/chat/completions)"


def test_codex_config_names_a_responses_provider_on_loopback(fake: FakeResponsesAPI, tmp_path: Any) -> None:
    args = fake.codex_config(request_max_retries=1)
    assert args[:2] == ["-c", 'model_provider="adwfake"']
    assert f'base_url = "{fake.base_url}"' in args[3] and 'wire_api = "responses"' in args[3]
    assert "request_max_retries = 1" in args[3] and "stream_max_retries = 0" in args[3]
    env = fake.cli_env(tmp_path / "home")
    assert env["CODEX_HOME"] == env["HOME"] == str(tmp_path / "home")
    assert env["HTTPS_PROXY"] == env["https_proxy"] == fake.origin
    assert env["NO_PROXY"] == "127.0.0.1,localhost,::1"
    assert env["ADW_FAKE_OPENAI_API_KEY"] == FAKE_API_KEY
    assert not {k for k in env if k.startswith(("OPENAI", "CODEX_API"))}
