"""The fake Gemini API on its own, through a plain HTTP client (no Node needed)."""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.gemini_api import (
    FAKE_API_KEY,
    ApiError,
    DropMidStream,
    FakeGeminiAPI,
    Reply,
    StreamError,
    Truncated,
    UsageMetadata,
)

STREAM = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
BODY = {"contents": [{"role": "user", "parts": [{"text": "Say hello"}]}]}


@pytest.fixture
def fake() -> Iterator[FakeGeminiAPI]:
    with FakeGeminiAPI(strict_queue=True) as api:
        yield api


def _post(
    fake: FakeGeminiAPI, path: str, body: Any = BODY, key: str | None = FAKE_API_KEY
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=10)
    try:
        headers = {"content-type": "application/json"}
        if key is not None:
            headers["x-goog-api-key"] = key
        conn.request("POST", path, body=json.dumps(body), headers=headers)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def _sse_events(data: bytes) -> list[dict[str, Any]]:
    frames = data.decode().split("\r\n\r\n")
    assert frames[-1] == ""
    return [json.loads(frame.removeprefix("data: ")) for frame in frames[:-1]]


def test_stream_reply_frames_text_and_final_usage(fake: FakeGeminiAPI) -> None:
    usage = UsageMetadata(prompt_tokens=100, candidates_tokens=7, cached_tokens=40, thoughts_tokens=3)
    fake.enqueue(Reply("Hello world", usage=usage, chunk_size=6))

    status, headers, data = _post(fake, STREAM)

    assert status == 200
    assert headers["content-type"] == "text/event-stream" and headers["transfer-encoding"] == "chunked"
    assert headers["server"] == "scaffolding on HTTPServer2"
    first, last = _sse_events(data)
    assert first["candidates"][0]["content"] == {"parts": [{"text": "Hello "}], "role": "model"}
    assert "finishReason" not in first["candidates"][0]
    assert first["usageMetadata"]["totalTokenCount"] == 100 and "candidatesTokenCount" not in first["usageMetadata"]
    assert last["candidates"][0]["finishReason"] == "STOP"
    meta = last["usageMetadata"]
    assert (meta["promptTokenCount"], meta["candidatesTokenCount"], meta["cachedContentTokenCount"]) == (100, 7, 40)
    assert (meta["thoughtsTokenCount"], meta["totalTokenCount"]) == (3, 110)
    assert first["modelVersion"] == "gemini-2.5-flash" and first["responseId"] == last["responseId"]
    (req,) = fake.generation_requests()
    assert (req.model, req.method_name, req.prompt_texts()) == (
        "gemini-2.5-flash",
        "streamGenerateContent",
        ["Say hello"],
    )


def test_generate_content_is_one_object(fake: FakeGeminiAPI) -> None:
    fake.enqueue(Reply("Hi"))

    status, headers, data = _post(fake, "/v1beta/models/gemini-2.5-pro:generateContent")

    assert status == 200 and headers["content-type"] == "application/json; charset=UTF-8"
    obj = json.loads(data)
    assert obj["candidates"][0]["content"]["parts"] == [{"text": "Hi"}]
    assert obj["modelVersion"] == "gemini-2.5-pro" and obj["usageMetadata"]["totalTokenCount"] == 37


def test_rate_limit_body_has_google_shape(fake: FakeGeminiAPI) -> None:
    fake.enqueue(ApiError.rate_limit(retry_delay_s=22))

    status, _, data = _post(fake, STREAM)

    assert status == 429
    error = json.loads(data)["error"]
    assert (error["code"], error["status"]) == (429, "RESOURCE_EXHAUSTED")
    assert error["message"].endswith("Please retry in 22s.")
    by_type = {d["@type"].rsplit(".", 1)[1]: d for d in error["details"]}
    assert by_type["RetryInfo"] == {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "22s"}
    assert by_type["QuotaFailure"]["violations"][0]["quotaId"] == "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"
    daily = ApiError.daily_quota().body()["error"]["details"][1]["violations"][0]
    assert daily["quotaId"] == "GenerateRequestsPerDayPerProjectPerModel-FreeTier"


@pytest.mark.parametrize(
    ("key", "status", "status_name", "reason"),
    [
        ("AIzaSyWRONG", 400, "INVALID_ARGUMENT", "API_KEY_INVALID"),
        (None, 403, "PERMISSION_DENIED", "CONSUMER_INVALID"),
    ],
)
def test_keys_are_checked_before_the_queue(
    fake: FakeGeminiAPI, key: str | None, status: int, status_name: str, reason: str
) -> None:
    fake.enqueue(Reply())

    got, _, data = _post(fake, STREAM, key=key)

    error = json.loads(data)["error"]
    assert (got, error["code"], error["status"], error["details"][0]["reason"]) == (status, status, status_name, reason)
    assert fake.queued == 1  # the scripted reply is still there for the next, authenticated request
    assert _post(fake, STREAM)[0] == 200


def test_key_query_parameter_is_accepted_and_masked(fake: FakeGeminiAPI) -> None:
    fake.enqueue(Reply())

    status, _, _ = _post(fake, f"/v1beta/models/m:generateContent?key={FAKE_API_KEY}", key=None)

    assert status == 200
    assert FAKE_API_KEY not in fake.dump() and "key=***" in fake.dump()


def test_strict_queue_answers_500_when_dry(fake: FakeGeminiAPI) -> None:
    status, _, data = _post(fake, STREAM)

    assert status == 500 and json.loads(data)["error"]["status"] == "INTERNAL"
    assert fake.requests[0].behaviour == "queue-empty"


def test_count_tokens_models_and_unknown_paths(fake: FakeGeminiAPI) -> None:
    status, _, data = _post(fake, "/v1beta/models/gemini-2.5-flash:countTokens")
    assert status == 200 and json.loads(data)["totalTokens"] > 0

    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=10)
    try:
        conn.request("GET", "/v1beta/models", headers={"x-goog-api-key": FAKE_API_KEY})
        resp = conn.getresponse()
        names = [m["name"] for m in json.loads(resp.read())["models"]]
        assert resp.status == 200 and "models/gemini-2.5-flash" in names
        conn.request("GET", "/v1beta/files")
        resp = conn.getresponse()
        error = json.loads(resp.read())["error"]
        assert (resp.status, error["code"], error["status"]) == (404, 404, "NOT_FOUND")
    finally:
        conn.close()
    assert [r.behaviour for r in fake.requests] == ["countTokens", "models", "unknown-path"]
    assert fake.generation_requests() == []


def test_stream_error_and_cut_bodies(fake: FakeGeminiAPI) -> None:
    fake.enqueue(StreamError(ApiError.unavailable()), Truncated("Part"), DropMidStream("Part"))

    status, _, data = _post(fake, STREAM)
    assert status == 200 and json.loads(data)["error"]["code"] == 503

    status, _, data = _post(fake, STREAM)
    assert status == 200 and data.endswith(b'"parts":[{"te') and b"Part" in data

    with pytest.raises(http.client.IncompleteRead):
        _post(fake, STREAM)


def test_connect_through_the_fake_is_refused_and_recorded(fake: FakeGeminiAPI) -> None:
    with socket.create_connection(("127.0.0.1", fake.port), timeout=10) as sock:
        sock.sendall(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
        reply = sock.recv(4096)
    assert reply.startswith(b"HTTP/1.1 403 ")

    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=10)
    try:
        conn.request("GET", "http://example.org/x")  # absolute form: a plain-HTTP proxy request
        assert conn.getresponse().status == 403
    finally:
        conn.close()
    assert [(r.method, r.target) for r in fake.foreign_requests()] == [
        ("CONNECT", "example.com:443"),
        ("GET", "example.org"),
    ]


def test_cli_env_is_hermetic(fake: FakeGeminiAPI, tmp_path: Path) -> None:
    env = fake.cli_env(tmp_path / "home", max_attempts=3, settings={"general": {"vimMode": True}})

    settings = json.loads((tmp_path / "home" / ".gemini" / "settings.json").read_text())
    assert settings["security"]["auth"]["selectedType"] == "gemini-api-key"
    assert settings["privacy"]["usageStatisticsEnabled"] is False
    assert settings["general"] == {
        "enableAutoUpdate": False,
        "enableAutoUpdateNotification": False,
        "maxAttempts": 3,
        "vimMode": True,
    }
    assert env["GEMINI_API_KEY"] == FAKE_API_KEY and env["GOOGLE_GEMINI_BASE_URL"] == fake.base_url
    assert env["HTTPS_PROXY"] == env["HTTP_PROXY"] == fake.base_url and env["NO_PROXY"] == "127.0.0.1,localhost"
    assert env["HOME"] == env["GEMINI_CLI_HOME"] == str(tmp_path / "home")
    assert env["TMPDIR"].startswith(str(tmp_path))
    assert not any(k.startswith(("GOOGLE_API", "GOOGLE_CLOUD", "GOOGLE_APPLICATION")) for k in env)
