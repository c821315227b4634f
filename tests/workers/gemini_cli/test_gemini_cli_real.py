"""The real Gemini CLI (pinned, from npm) against the fake Gemini API on loopback.

Its stdout goes through adw's own ``gemini-stream-json`` parser and ``classify``, so the parser is
checked against what the CLI really prints rather than against samples.  Observed with 0.61.0 (see
``tests/workers/gemini_cli/install.py``; environment and settings in ``FakeGeminiAPI.cli_env``):

- One ``POST /v1beta/models/{model}:streamGenerateContent?alt=sse`` per turn with
  ``x-goog-api-key``; nothing else is requested and no other host is contacted once usage
  statistics are off (with them on it tunnels to ``play.googleapis.com``).
- API errors end with one ``result`` line, ``status: "error"``, ``error.type: "unknown"`` and a
  ``[API Error: …]`` message, then exit with the HTTP status modulo 256 (429 -> 173, 503 -> 247,
  400 -> 144) except a 404 (exit 1); the stats are all zero.
- The CLI retries 429/5xx itself (``general.maxAttempts``, default 10, backoff 5 s..30 s or the
  ``RetryInfo`` delay) and cut-off streams (1 s, 2 s, 4 s); stream-json shows no retry event, and
  the text a failed attempt already streamed stays in the output.
- ``stats.output_tokens`` is ``candidatesTokenCount`` only: thinking tokens appear solely in
  ``total_tokens`` (``--output-format json`` reports them as ``tokens.thoughts``); our parser
  adds them to output, where they are billed.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from adw_modules.outcomes import ErrorKind, Usage
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
from tests.workers.gemini_cli.conftest import MODEL, CliRun, record_transcript
from tests.workers.gemini_cli.install import GEMINI_CLI_VERSION

ZERO_STATS = {"total_tokens": 0, "input_tokens": 0, "output_tokens": 0, "cached": 0, "input": 0}


def _only_request(fake: FakeGeminiAPI, prompt: str = "Say hello") -> None:
    """Exactly one generation request reached the fake, carrying the prompt, and nothing else."""
    reqs = fake.requests
    assert [r.is_generation for r in reqs] == [True], fake.dump()
    (req,) = reqs
    assert (req.method, req.path, req.query) == ("POST", f"/v1beta/models/{MODEL}:streamGenerateContent", "alt=sse")
    assert req.prompt_texts()[-1] == prompt
    assert fake.foreign_requests() == []


def _api_error_run(run: CliRun, exit_code: int) -> dict[str, Any]:
    assert run.returncode == exit_code, run.stderr[-2000:]
    types = [e["type"] for e in run.events]
    assert types[:2] == ["init", "message"] and types[-1] == "result", run.stdout
    result = run.result
    assert result["status"] == "error" and result["error"]["type"] == "unknown"
    assert result["stats"]["models"] == {MODEL: ZERO_STATS} and result["stats"]["duration_ms"] == 0
    summary = run.summary()
    assert summary.terminal and summary.is_error and summary.skipped_lines == 0
    assert summary.session_id == run.events[0]["session_id"]
    assert summary.usage == Usage()
    return result


def test_success_reports_the_fake_usage(run_gemini: Any, fake_api: FakeGeminiAPI) -> None:
    usage = UsageMetadata(prompt_tokens=1234, candidates_tokens=56, cached_tokens=700, thoughts_tokens=30)
    fake_api.enqueue(Reply("Hello from the fake Gemini.", usage=usage, chunk_size=12))

    run = run_gemini(relaunch=True)  # the CLI's default process layout, as production runs it
    record_transcript("success", run.stdout)

    assert run.returncode == 0, run.stderr
    init, user, *deltas, result = run.events
    assert init["type"] == "init" and init["model"] == MODEL and init["session_id"]
    assert (user["type"], user["role"], user["content"]) == ("message", "user", "Say hello")
    assert [(d["type"], d["role"], d["delta"]) for d in deltas] == [("message", "assistant", True)] * 3
    assert "".join(d["content"] for d in deltas) == "Hello from the fake Gemini."
    assert result["status"] == "success" and "error" not in result
    stats = result["stats"]
    per_model = {"total_tokens": 1320, "input_tokens": 1234, "output_tokens": 56, "cached": 700, "input": 534}
    assert {k: stats[k] for k in per_model} == per_model
    assert stats["models"] == {MODEL: per_model} and stats["tool_calls"] == 0
    # Thinking tokens (billed as output) are only visible as the rest of total_tokens.
    assert stats["total_tokens"] - stats["input_tokens"] - stats["output_tokens"] == usage.thoughts_tokens

    summary = run.summary()
    assert summary.skipped_lines == 0 and summary.terminal and not summary.is_error
    assert summary.session_id == init["session_id"]
    # Output counts the candidates and the thinking (56 + 30): both are billed as output.
    assert summary.usage == Usage(input_tokens=534, output_tokens=86, cache_read_tokens=700)
    assert summary.per_model == {MODEL: Usage(input_tokens=534, output_tokens=86, cache_read_tokens=700)}
    assert summary.models == [MODEL]
    assert summary.result_text == "Hello from the fake Gemini."
    assert summary.cost_usd is None  # the CLI reports no cost
    assert summary.duration_s is not None and 0 < summary.duration_s < run.duration_s
    assert run.outcome().ok

    _only_request(fake_api)
    (req,) = fake_api.requests
    assert req.headers["x-goog-api-key"] == FAKE_API_KEY
    assert req.headers["user-agent"].startswith(f"GeminiCLI-tui/{GEMINI_CLI_VERSION}/{MODEL} ")
    assert "x-gemini-api-privileged-user-id" not in req.headers  # only sent with usage statistics on
    assert set(req.body) >= {"contents", "systemInstruction", "generationConfig", "tools"}
    assert FAKE_API_KEY not in repr(req) and FAKE_API_KEY not in fake_api.dump()


def test_json_output_counts_thoughts_separately(run_gemini: Any, fake_api: FakeGeminiAPI) -> None:
    usage = UsageMetadata(prompt_tokens=1234, candidates_tokens=56, cached_tokens=700, thoughts_tokens=30)
    fake_api.enqueue(Reply("Hello in JSON.", usage=usage))

    run = run_gemini(output_format="json")

    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    assert doc["response"] == "Hello in JSON." and doc["session_id"]
    tokens = doc["stats"]["models"][MODEL]["tokens"]
    assert tokens == {
        "input": 534,
        "prompt": 1234,
        "candidates": 56,
        "total": 1320,
        "cached": 700,
        "thoughts": 30,
        "tool": 0,
    }
    assert doc["stats"]["models"][MODEL]["api"]["totalRequests"] == 1
    _only_request(fake_api)


def test_json_output_puts_errors_on_stderr(run_gemini: Any, fake_api: FakeGeminiAPI) -> None:
    fake_api.enqueue(ApiError.rate_limit())

    run = run_gemini(output_format="json")

    assert run.returncode == 429 % 256
    assert run.stdout.strip() == ""
    doc = json.loads(run.stderr[run.stderr.rindex("\n{\n") :])
    assert doc["error"]["code"] == 429 and doc["session_id"]
    assert "You exceeded your current quota" in doc["error"]["message"]


def test_per_minute_rate_limit_429_is_rate_limited(run_gemini: Any, fake_api: FakeGeminiAPI) -> None:
    fake_api.enqueue(ApiError.rate_limit(retry_delay_s=22))

    run = run_gemini()
    record_transcript("rate_limit_429", run.stdout)

    result = _api_error_run(run, 429 % 256)
    message = result["error"]["message"]
    # Google words a per-minute limit like an exhausted quota; the CLI's added lines say otherwise.
    assert message.startswith("[API Error: You exceeded your current quota, please check your plan and billing")
    assert "Suggested retry after 22s." in message
    assert "Please wait and try again later. To increase your limits" in message
    outcome = run.outcome()
    assert outcome.error_kind == ErrorKind.RATE_LIMITED
    assert outcome.retry_after_s == 22
    assert run.summary().api_status == 429
    assert "rate limited by the API (HTTP 429), retry after 22 s" in outcome.message
    assert "Max attempts reached" in run.stderr
    _only_request(fake_api)


def test_daily_quota_429_is_quota_exhausted(run_gemini: Any, fake_api: FakeGeminiAPI) -> None:
    fake_api.enqueue(ApiError.daily_quota())

    run = run_gemini()
    record_transcript("daily_quota_429", run.stdout)

    result = _api_error_run(run, 429 % 256)
    assert result["error"]["message"].startswith("[API Error: You have exhausted your daily quota on this model.]")
    outcome = run.outcome()
    assert outcome.error_kind == ErrorKind.QUOTA_EXHAUSTED
    assert outcome.retry_after_s is None
    assert run.summary().api_status == 429
    _only_request(fake_api)


def test_invalid_api_key_is_auth_failed(run_gemini: Any, fake_api: FakeGeminiAPI) -> None:
    # Nothing scripted: the fake rejects the key itself, as Google does (400, not 401).
    run = run_gemini(api_key="AIzaSyWRONG-key-000000000000000000000000")
    record_transcript("api_key_invalid_400", run.stdout)

    result = _api_error_run(run, 400 % 256)
    assert "API key not valid. Please pass a valid API key." in result["error"]["message"]
    assert "API_KEY_INVALID" in result["error"]["message"]
    outcome = run.outcome()
    assert outcome.error_kind == ErrorKind.AUTH_FAILED
    assert run.summary().api_status == 400
    _only_request(fake_api)
    assert fake_api.requests[0].behaviour == "auth-invalid"


def test_missing_api_key_exits_41_before_any_request(run_gemini: Any, fake_api: FakeGeminiAPI) -> None:
    run = run_gemini(api_key=None)

    assert run.returncode == 41
    assert run.stdout == ""  # no init line either: auth is checked first
    assert "you must specify the GEMINI_API_KEY environment variable" in run.stderr
    assert run.outcome().error_kind == ErrorKind.AUTH_FAILED
    assert fake_api.requests == []


@pytest.mark.parametrize(
    ("error", "exit_code", "kind", "status"),
    [
        (ApiError.permission_denied(), 403 % 256, ErrorKind.AUTH_FAILED, 403),
        (ApiError.internal(), 500 % 256, ErrorKind.API_ERROR, 500),
        (ApiError.model_not_found(MODEL), 1, ErrorKind.INVALID_MODEL, None),
    ],
    ids=["403-permission-denied", "500-internal", "404-model-not-found"],
)
def test_other_api_errors(
    run_gemini: Any, fake_api: FakeGeminiAPI, error: ApiError, exit_code: int, kind: ErrorKind, status: int | None
) -> None:
    fake_api.enqueue(error)

    run = run_gemini()

    result = _api_error_run(run, exit_code)
    assert error.message in result["error"]["message"].replace("\\", "")
    assert run.outcome().error_kind == kind
    assert run.summary().api_status == status
    _only_request(fake_api)


def test_overloaded_503_is_overloaded(run_gemini: Any, fake_api: FakeGeminiAPI) -> None:
    fake_api.enqueue(ApiError.unavailable())

    run = run_gemini()
    record_transcript("overloaded_503", run.stdout)

    result = _api_error_run(run, 503 % 256)
    assert result["error"]["message"] == "[API Error: The model is overloaded. Please try again later.]"
    assert run.outcome().error_kind == ErrorKind.OVERLOADED
    _only_request(fake_api)


def test_error_inside_a_200_stream(run_gemini: Any, fake_api: FakeGeminiAPI) -> None:
    fake_api.enqueue(StreamError(ApiError.unavailable()))

    run = run_gemini()

    result = _api_error_run(run, 503 % 256)
    assert result["error"]["message"].startswith("[API Error: got status: UNAVAILABLE. ")
    outcome = run.outcome()
    assert outcome.error_kind == ErrorKind.OVERLOADED
    assert run.summary().api_status == 503
    _only_request(fake_api)


def test_dropped_stream_is_an_api_error_after_partial_text(run_gemini: Any, fake_api: FakeGeminiAPI) -> None:
    fake_api.enqueue(DropMidStream("Partial answer "))

    run = run_gemini()
    record_transcript("dropped_stream", run.stdout)

    result = _api_error_run(run, 1)
    assert result["error"]["message"] == "[API Error: terminated]"  # undici's word for a cut body
    assert run.events[2]["content"] == "Partial answer "
    assert run.summary().result_text == "Partial answer "
    assert run.outcome().error_kind == ErrorKind.API_ERROR
    _only_request(fake_api)


def test_cut_off_stream_is_retried_and_keeps_the_partial_text(run_gemini: Any, fake_api: FakeGeminiAPI) -> None:
    fake_api.enqueue(Truncated("Partial "), Reply("Recovered."))

    run = run_gemini(max_attempts=2)

    assert run.returncode == 0, run.stderr
    contents = [e["content"] for e in run.of_type("message") if e["role"] == "assistant"]
    assert contents == ["Partial ", "Recovered."]  # no event tells the two attempts apart
    assert run.result["status"] == "success"
    summary = run.summary()
    assert summary.result_text == "Partial Recovered."
    assert summary.usage == Usage(input_tokens=25, output_tokens=12)  # the failed attempt counts nothing
    assert run.outcome().ok
    assert [r.behaviour for r in fake_api.requests] == ["Truncated", "Reply"]
    assert fake_api.foreign_requests() == []


def test_the_proxy_tripwire_sees_usage_statistics(run_gemini: Any, fake_api: FakeGeminiAPI) -> None:
    """Proof that ``foreign_requests() == []`` means something: the CLI's default phones home."""
    fake_api.enqueue(Reply("hi"))

    run = run_gemini(settings={"privacy": {"usageStatisticsEnabled": True}}, relaunch=True)

    assert run.returncode == 0, run.stderr
    foreign = fake_api.foreign_requests()
    assert foreign and {(r.method, r.target, r.status) for r in foreign} == {
        ("CONNECT", "play.googleapis.com:443", 403)
    }
    (req,) = fake_api.generation_requests()
    assert "x-gemini-api-privileged-user-id" in req.headers
