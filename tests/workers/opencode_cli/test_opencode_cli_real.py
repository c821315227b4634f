"""The real OpenCode CLI (npm ``opencode-ai``, pinned in ``install.py``) against the fake
OpenAI-compatible API on loopback; its stdout goes through adw's parser and classifier.

OpenCode retries 429 and 5xx answers itself (``SessionRetry``: up to 5 retries, exponential
backoff from 2 s, but honouring a ``retry-after-ms`` / ``retry-after`` response header), then
prints one ``error`` line and exits 1.  The error scenarios send ``retry-after-ms: 20`` so the
six attempts take a fraction of a second.  401 is not retried.
"""

from __future__ import annotations

from typing import Any

import pytest

from adw_modules.outcomes import ErrorKind
from tests.fakes.openai_api import FakeOpenAIServer, http_error, openrouter_error, success
from tests.workers.opencode_cli.conftest import (
    FAKE_API_KEY,
    MODEL,
    MODEL_COST,
    ProxyTripwire,
    record_transcript,
)

ATTEMPTS = 6  # the first request and OpenCode's 5 retries
FAST_RETRY = {"retry-after-ms": "20"}


def _chat_requests(fake: FakeOpenAIServer) -> list[Any]:
    return [r for r in fake.requests if r.path == "/v1/chat/completions"]


def test_success_exact_tokens_and_cost(run_opencode: Any, fake_api: FakeOpenAIServer, tripwire: ProxyTripwire) -> None:
    fake_api.script(success("Hello from the fake!", prompt_tokens=1234, completion_tokens=56, cached_tokens=700))

    run = run_opencode()

    assert run.returncode == 0, run.stderr[-3000:]
    assert [e["type"] for e in run.events] == ["step_start", "text", "step_finish"]
    finish = run.of_type("step_finish")[0]["part"]
    assert finish["reason"] == "stop"
    # OpenCode's own accounting: input excludes the cached part.
    assert finish["tokens"] == {
        "total": 1290,
        "input": 534,
        "output": 56,
        "reasoning": 0,
        "cache": {"write": 0, "read": 700},
    }

    summary = run.summary()
    assert summary.skipped_lines == 0 and summary.terminal and not summary.is_error
    assert summary.result_text == "Hello from the fake!"
    assert summary.session_id and summary.session_id.startswith("ses_")
    assert (summary.usage.input_tokens, summary.usage.output_tokens) == (534, 56)
    assert (summary.usage.cache_read_tokens, summary.usage.cache_write_tokens) == (700, 0)
    expected_cost = (534 * MODEL_COST["input"] + 56 * MODEL_COST["output"] + 700 * MODEL_COST["cache_read"]) / 1e6
    assert summary.cost_source == "reported"
    assert summary.cost_usd == pytest.approx(expected_cost, rel=1e-9)
    assert run.outcome().ok

    (request,) = _chat_requests(fake_api)
    assert request.headers["authorization"] == f"Bearer {FAKE_API_KEY}"
    assert request.json["model"] == MODEL and request.json["stream"] is True
    assert request.json["messages"][-1]["role"] == "user"
    assert tripwire.hits == []
    record_transcript("success", run.stdout)


def test_rate_limited_429(run_opencode: Any, fake_api: FakeOpenAIServer, tripwire: ProxyTripwire) -> None:
    error = openrouter_error(429, "Rate limit exceeded: free-models-per-minute", headers=FAST_RETRY)
    fake_api.script(*[error] * ATTEMPTS)

    run = run_opencode()

    assert run.returncode == 1
    assert len(_chat_requests(fake_api)) == ATTEMPTS  # OpenCode's own retries, then it gives up
    (line,) = run.events
    assert line["type"] == "error" and line["error"]["data"]["statusCode"] == 429
    summary = run.summary()
    assert summary.api_status == 429 and summary.retry_after_s == pytest.approx(0.02)
    outcome = run.outcome()
    assert not outcome.ok and outcome.error_kind == ErrorKind.RATE_LIMITED
    assert outcome.retry_after_s == pytest.approx(0.02)
    assert tripwire.hits == []
    record_transcript("error_429", run.stdout)


def test_auth_failed_401(run_opencode: Any, fake_api: FakeOpenAIServer, tripwire: ProxyTripwire) -> None:
    run = run_opencode(api_key="sk-wrong-key")

    assert run.returncode == 1
    assert len(_chat_requests(fake_api)) == 1  # not retried
    (line,) = run.events
    assert line["error"]["data"]["statusCode"] == 401 and line["error"]["data"]["isRetryable"] is False
    outcome = run.outcome()
    assert not outcome.ok and outcome.error_kind == ErrorKind.AUTH_FAILED
    assert run.summary().api_status == 401
    assert "sk-wrong-key" not in run.stdout
    assert tripwire.hits == []


@pytest.mark.parametrize(("status", "kind"), [(500, ErrorKind.API_ERROR), (503, ErrorKind.OVERLOADED)])
def test_server_error_5xx(
    run_opencode: Any, fake_api: FakeOpenAIServer, tripwire: ProxyTripwire, status: int, kind: ErrorKind
) -> None:
    message = "Internal server error" if status == 500 else "The model is overloaded"
    fake_api.script(*[http_error(status, {"error": {"code": status, "message": message}}, FAST_RETRY)] * ATTEMPTS)

    run = run_opencode()

    assert run.returncode == 1
    assert len(_chat_requests(fake_api)) == ATTEMPTS
    summary = run.summary()
    assert summary.api_status == status and summary.error_message == message
    outcome = run.outcome()
    assert not outcome.ok and outcome.error_kind == kind
    assert tripwire.hits == []


def test_no_foreign_host(run_opencode: Any, fake_api: FakeOpenAIServer, tripwire: ProxyTripwire) -> None:
    """The whole run stays on loopback: no models.dev, npm registry, update or share request."""
    fake_api.script(success("ok"))

    run = run_opencode()

    assert run.returncode == 0, run.stderr[-3000:]
    assert tripwire.hits == [], f"OpenCode tried to reach other hosts: {tripwire.hits}"
    assert [r.path for r in fake_api.requests] == ["/v1/chat/completions"]
