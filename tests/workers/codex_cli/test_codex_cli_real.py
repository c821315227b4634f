"""The real OpenAI Codex CLI (pinned, from npm) against the fake Responses API on loopback.

Every run's stdout goes through adw's own ``codex-json`` parser and ``classify``, so these tests
pin both what the CLI really prints and what adw makes of it.  Observed with 0.169.0 (see
``tests/node_tools.py``):

- One ``POST /v1/responses`` (``stream: true``, ``store: false``, ``Authorization: Bearer``)
  per model request; nothing else is called with the flags in ``conftest.OFFLINE_ARGS``.
- JSONL on stdout only: ``thread.started``, ``turn.started``, ``item.*``, then ``turn.completed``
  with ``usage {input_tokens, cached_input_tokens, cache_write_input_tokens, output_tokens,
  reasoning_output_tokens}`` copied from the API's ``response.completed`` usage (summed over the
  requests of the turn), or ``error`` + ``turn.failed`` and exit 1.  stderr carries only a
  warning about helper aliases under /tmp and "Reading additional input from stdin...".
- Only 5xx/transport errors are retried at the request level (``request_max_retries``, silently:
  no JSONL line).  Stream-level retries (``stream_max_retries``) print
  ``{"type":"error","message":"Reconnecting... n/N (<reason>)"}`` *before* waiting; they cover a
  dropped stream, ``response.failed`` and even a 401, and a 429 only when it has ``retry-after``:
  Codex then waits exactly that long, but the value never reaches the JSONL.
- What the messages say: 429 "exceeded retry limit, last status: 429 Too Many Requests, request
  id: …"; 401/other statuses "unexpected status 401 Unauthorized: <API message>, url: …,
  request id: …"; 500 "We’re currently experiencing high demand, …" (no status!); 503
  ``server_is_overloaded`` "Selected model is at capacity. …"; ``insufficient_quota`` "Quota
  exceeded. …"; ``context_length_exceeded`` "Codex ran out of room in the model's context
  window. …"; a 404 passes the API's message through; ``response.failed`` "stream disconnected
  before completion: <message>" ("rate limit exceeded: <message>" for ``rate_limit_exceeded``);
  a dropped body "stream disconnected before completion: Transport error: network error: error
  decoding response body".
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from adw_modules.outcomes import ErrorKind, Usage
from tests.fakes.openai_responses import (
    FAKE_API_KEY,
    ApiError,
    Behaviour,
    DropMidStream,
    FakeResponsesAPI,
    Reply,
    StreamErrorEvent,
    StreamFailed,
    ToolCall,
)
from tests.fakes.openai_responses import Usage as ApiUsage
from tests.node_tools import CODEX_VERSION
from tests.workers.codex_cli.conftest import MODEL, CodexRun, codex_argv, record_transcript

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def _assert_clean(run: CodexRun) -> None:
    """Every stdout line is JSON the parser understood; stderr has nothing alarming."""
    assert run.summary.skipped_lines == 0, run.stdout
    assert len(run.events) == len(run.stdout.splitlines())
    assert FAKE_API_KEY not in run.stdout + run.stderr
    assert "panicked" not in run.stderr, run.stderr


def _assert_failed(run: CodexRun, message: str) -> None:
    """The failure shape every API error has: ``error`` then ``turn.failed``, exit 1."""
    _assert_clean(run)
    assert run.returncode == 1, run.stderr
    assert run.types == ["thread.started", "turn.started", "error", "turn.failed"], run.stdout
    error, failed = run.events[2:]
    assert error["message"] == failed["error"]["message"]
    assert re.fullmatch(message, failed["error"]["message"]), failed["error"]["message"]
    assert run.summary.terminal and run.summary.is_error
    assert run.summary.usage == Usage()


def test_success_reports_the_fake_usage_exactly(run_codex: Any, fake_api: FakeResponsesAPI) -> None:
    fake_api.enqueue(
        Reply(
            "Hello from the fake.",
            usage=ApiUsage(input_tokens=1234, cached_tokens=700, output_tokens=56, reasoning_tokens=20),
            reasoning="Greeting the user",
        )
    )

    run = run_codex()
    record_transcript("success", run.stdout)

    _assert_clean(run)
    assert run.returncode == 0, run.stderr
    assert run.types == ["thread.started", "turn.started", "item.completed", "item.completed", "turn.completed"]
    assert run.items("reasoning")[0]["text"] == "Greeting the user"
    assert run.items("agent_message")[0]["text"] == "Hello from the fake."
    assert run.of_type("turn.completed")[0]["usage"] == {
        "input_tokens": 1234,
        "cached_input_tokens": 700,
        "cache_write_input_tokens": 0,
        "output_tokens": 56,
        "reasoning_output_tokens": 20,
    }
    thread_id = run.events[0]["thread_id"]
    assert UUID.match(thread_id)

    # adw's view: cached tokens are split off the input; reasoning stays inside the output.
    s = run.summary
    assert s.terminal and not s.is_error
    assert s.usage == Usage(input_tokens=1234 - 700, output_tokens=56, cache_read_tokens=700, cache_write_tokens=0)
    assert (s.cost_usd, s.models) == (None, [])  # Codex reports neither
    assert (s.session_id, s.result_text, s.retry_events) == (thread_id, "Hello from the fake.", 0)
    assert run.outcome.ok, run.outcome

    # What the CLI sent: exactly one streaming request, authenticated with the fake key.
    (req,) = fake_api.requests
    assert (req.method, req.path, req.status) == ("POST", "/v1/responses", 200)
    assert req.headers["authorization"] == f"Bearer {FAKE_API_KEY}"
    assert req.headers["accept"] == "text/event-stream"
    assert req.headers["user-agent"].startswith(f"codex_exec/{CODEX_VERSION} ")
    assert req.headers["originator"] == "codex_exec"
    assert req.headers["session-id"] == thread_id
    body = req.body
    assert (body["model"], body["stream"], body["store"]) == (MODEL, True, False)
    assert body["input"][-1] == {
        "type": "message",
        "id": body["input"][-1]["id"],
        "role": "user",
        "content": [{"type": "input_text", "text": "Say hello"}],
    }
    assert "exec_command" in {t.get("name") for t in body["tools"]}
    assert FAKE_API_KEY not in repr(req) and FAKE_API_KEY not in fake_api.dump()


def test_a_tool_call_turn_reports_usage_summed_over_its_requests(run_codex: Any, fake_api: FakeResponsesAPI) -> None:
    fake_api.enqueue(
        ToolCall("exec_command", {"cmd": "echo adw-fixture"}, usage=ApiUsage(1000, 800, 30, 10)),
        Reply("The command printed adw-fixture.", usage=ApiUsage(1100, 1000, 12, 0)),
    )

    run = run_codex(prompt="Run echo adw-fixture")
    record_transcript("tool_call", run.stdout)

    _assert_clean(run)
    assert run.returncode == 0, run.stderr
    started = [e["item"] for e in run.of_type("item.started")]
    assert [i["type"] for i in started] == ["command_execution"]
    (command,) = run.items("command_execution")
    assert command["command"] == "/bin/bash -lc 'echo adw-fixture'"  # ran in the read-only sandbox
    assert (command["aggregated_output"], command["exit_code"], command["status"]) == ("adw-fixture\n", 0, "completed")
    # turn.completed adds up both API responses of the turn.
    assert run.of_type("turn.completed")[0]["usage"] == {
        "input_tokens": 2100,
        "cached_input_tokens": 1800,
        "cache_write_input_tokens": 0,
        "output_tokens": 42,
        "reasoning_output_tokens": 10,
    }
    assert run.summary.usage == Usage(input_tokens=300, output_tokens=42, cache_read_tokens=1800)
    assert run.summary.result_text == "The command printed adw-fixture."
    assert run.outcome.ok

    _, second = fake_api.response_requests()
    call, output = second.body["input"][-2:]
    assert (call["type"], call["name"]) == ("function_call", "exec_command")
    assert output["type"] == "function_call_output" and output["call_id"] == call["call_id"]
    assert "adw-fixture" in output["output"]


def test_cache_write_tokens_are_passed_through_and_not_counted_as_input(
    run_codex: Any, fake_api: FakeResponsesAPI
) -> None:
    fake_api.enqueue(Reply("Cached.", usage=ApiUsage(input_tokens=5000, cached_tokens=3000, cache_write_tokens=1500)))

    run = run_codex()

    assert run.returncode == 0, run.stderr
    usage = run.of_type("turn.completed")[0]["usage"]
    assert (usage["input_tokens"], usage["cached_input_tokens"], usage["cache_write_input_tokens"]) == (
        5000,
        3000,
        1500,
    )
    assert run.summary.usage == Usage(
        input_tokens=500, output_tokens=24, cache_read_tokens=3000, cache_write_tokens=1500
    )


def test_a_model_missing_from_codexs_catalog_only_warns(run_codex: Any, fake_api: FakeResponsesAPI) -> None:
    fake_api.enqueue(Reply("Fine anyway."))

    run = run_codex(model="fake-model-not-in-the-catalog")

    assert run.returncode == 0, run.stderr
    (warning,) = run.items("error")  # a non-fatal item, before turn.started
    assert warning["message"].startswith("Model metadata for `fake-model-not-in-the-catalog` not found.")
    assert run.types[:3] == ["thread.started", "item.completed", "turn.started"]
    assert run.outcome.ok and not run.summary.is_error
    assert fake_api.response_requests()[0].body["model"] == "fake-model-not-in-the-catalog"


def test_rate_limit_429_is_reported_with_its_status(run_codex: Any, fake_api: FakeResponsesAPI) -> None:
    fake_api.enqueue(ApiError.rate_limit(retry_after=2))

    run = run_codex()
    record_transcript("rate_limit_429", run.stdout)

    (req,) = fake_api.response_requests()
    _assert_failed(run, rf"exceeded retry limit, last status: 429 Too Many Requests, request id: {req.request_id}")
    assert run.summary.api_status == 429
    assert run.outcome.error_kind == ErrorKind.RATE_LIMITED
    # Codex drops the API's message and retry-after: there is nothing to recover a delay from.
    assert run.outcome.retry_after_s is None
    assert run.signals and run.signals[0].signal == ErrorKind.RATE_LIMITED  # the error line, before turn.failed


def test_rate_limit_429_with_retry_after_is_waited_out_and_retried(run_codex: Any, fake_api: FakeResponsesAPI) -> None:
    fake_api.enqueue(ApiError.rate_limit(retry_after=1), Reply("Second time lucky."))

    run = run_codex(stream_max_retries=1)
    record_transcript("rate_limit_429_retried", run.stdout)

    _assert_clean(run)
    assert run.returncode == 0, run.stderr
    (reconnect,) = run.of_type("error")
    assert re.fullmatch(
        r"Reconnecting\.\.\. 1/1 \(exceeded retry limit, last status: 429 Too Many Requests, request id: req_\w+\)",
        reconnect["message"],
    )
    assert run.duration_s >= 1.0  # it honoured retry-after: 1
    assert [r.status for r in fake_api.response_requests()] == [429, 200]
    assert run.summary.retry_events == 1
    assert run.signals[0].signal == ErrorKind.RATE_LIMITED  # a supervisor could stop here instead
    assert run.outcome.ok and run.summary.result_text == "Second time lucky."


def test_rate_limit_429_without_retry_after_is_not_retried(run_codex: Any, fake_api: FakeResponsesAPI) -> None:
    fake_api.enqueue(ApiError.rate_limit(retry_after=None), Reply("never sent"))

    run = run_codex(stream_max_retries=3)

    _assert_failed(run, r"exceeded retry limit, last status: 429 Too Many Requests, request id: req_\w+")
    assert len(fake_api.response_requests()) == 1
    assert run.outcome.error_kind == ErrorKind.RATE_LIMITED
    assert fake_api.pending == 1  # the Reply was never asked for


def test_rate_limit_reported_in_the_stream_keeps_its_try_again_delay(
    run_codex: Any, fake_api: FakeResponsesAPI
) -> None:
    fake_api.enqueue(
        StreamFailed(
            "rate_limit_exceeded", "Rate limit reached for gpt-5.5 on tokens per min. Please try again in 1.5s."
        )
    )

    run = run_codex()

    _assert_failed(
        run, r"rate limit exceeded: Rate limit reached for gpt-5\.5 on tokens per min\. Please try again in 1\.5s\."
    )
    assert run.outcome.error_kind == ErrorKind.RATE_LIMITED
    assert run.outcome.retry_after_s == 1.5
    assert run.summary.api_status is None


WRONG_KEY = "sk-proj-wrong-key-for-the-fake-0000000000000000001234"
AUTH_401 = r"unexpected status 401 Unauthorized: Incorrect API key provided: sk-\*+1234\. You can find your API key at https://platform\.openai\.com/account/api-keys\., url: http://127\.0\.0\.1:\d+/v1/responses, request id: req_\w+"


def test_invalid_api_key_401_is_auth_failed(run_codex: Any, fake_api: FakeResponsesAPI) -> None:
    run = run_codex(api_key=WRONG_KEY, request_max_retries=2)
    record_transcript("auth_401", run.stdout)

    _assert_failed(run, AUTH_401)
    assert WRONG_KEY not in run.stdout
    (req,) = fake_api.response_requests()  # not retried at the request level
    assert (req.behaviour, req.headers["authorization"]) == ("wrong-key", f"Bearer {WRONG_KEY}")
    assert run.summary.api_status == 401
    assert run.outcome.error_kind == ErrorKind.AUTH_FAILED
    assert run.outcome.policy is not None and run.outcome.policy.value == "disable"


def test_401_is_stream_retried_and_every_retry_line_signals_it(run_codex: Any, fake_api: FakeResponsesAPI) -> None:
    run = run_codex(api_key=WRONG_KEY, stream_max_retries=2)

    _assert_clean(run)
    assert run.returncode == 1
    assert run.types == ["thread.started", "turn.started", "error", "error", "error", "turn.failed"]
    first, second = (e["message"] for e in run.of_type("error")[:2])
    assert re.fullmatch(rf"Reconnecting\.\.\. 1/2 \({AUTH_401}\)", first)
    assert second.startswith("Reconnecting... 2/2 (unexpected status 401 Unauthorized: ")
    assert len(fake_api.response_requests()) == 3
    assert [e.signal for e in run.signals] == [ErrorKind.AUTH_FAILED] * 3  # a supervisor stops at the first
    assert run.summary.retry_events == 2
    assert (run.outcome.error_kind, run.summary.api_status) == (ErrorKind.AUTH_FAILED, 401)


@pytest.mark.parametrize(
    ("behaviour", "message", "kind", "status"),
    [
        pytest.param(
            ApiError.internal(),
            r"We’re currently experiencing high demand, which may cause temporary errors\.",
            ErrorKind.API_ERROR,
            None,
            id="500",
        ),
        pytest.param(
            ApiError.overloaded(),
            r"Selected model is at capacity\. Please try a different model\.",
            ErrorKind.OVERLOADED,
            None,
            id="503-server_is_overloaded",
        ),
        pytest.param(
            ApiError.service_unavailable(),
            r"unexpected status 503 Service Unavailable: The service is temporarily unavailable\. Please try again "
            r"later\., url: http://127\.0\.0\.1:\d+/v1/responses, request id: req_\w+",
            ErrorKind.OVERLOADED,
            503,
            id="503",
        ),
        pytest.param(
            StreamFailed(),
            r"stream disconnected before completion: The server had an error while processing your request\. Sorry "
            r"about that!",
            ErrorKind.API_ERROR,
            None,
            id="response.failed-server_error",
        ),
        pytest.param(
            StreamErrorEvent(),
            r"stream disconnected before completion: stream closed before response\.completed",
            ErrorKind.API_ERROR,
            None,
            id="sse-error-event",
        ),
        pytest.param(
            ApiError.insufficient_quota(),
            r"Quota exceeded\. Check your plan and billing details\.",
            ErrorKind.QUOTA_EXHAUSTED,
            None,
            id="429-insufficient_quota",
        ),
        pytest.param(
            ApiError.context_length_exceeded(),
            r"Codex ran out of room in the model's context window\. Start a new thread or clear earlier history "
            r"before retrying\.",
            ErrorKind.CONTEXT_TOO_LONG,
            None,
            id="400-context_length_exceeded",
        ),
        pytest.param(
            ApiError.model_not_found(MODEL),
            r"The model `gpt-5\.5` does not exist or you do not have access to it\.",
            ErrorKind.INVALID_MODEL,
            None,
            id="404-model_not_found",
        ),
    ],
)
def test_api_errors_are_classified(
    run_codex: Any,
    fake_api: FakeResponsesAPI,
    behaviour: Behaviour,
    message: str,
    kind: ErrorKind,
    status: int | None,
) -> None:
    fake_api.enqueue(behaviour)

    run = run_codex()
    if isinstance(behaviour, ApiError) and behaviour.status == 500:
        record_transcript("server_error_500", run.stdout)

    _assert_failed(run, message)
    assert len(fake_api.response_requests()) == 1
    assert run.summary.api_status == status
    assert run.outcome.error_kind == kind, run.outcome


def test_a_5xx_is_retried_silently_at_the_request_level(run_codex: Any, fake_api: FakeResponsesAPI) -> None:
    fake_api.enqueue(ApiError.internal(), Reply("Recovered."))

    run = run_codex(request_max_retries=1)

    _assert_clean(run)
    assert run.returncode == 0
    assert "error" not in run.types  # no trace of the 500 in the JSONL
    assert [r.status for r in fake_api.response_requests()] == [500, 200]
    assert run.outcome.ok and run.summary.retry_events == 0


@pytest.mark.parametrize("reset", [False, True], ids=["fin", "rst"])
def test_a_dropped_stream_is_an_api_error(run_codex: Any, fake_api: FakeResponsesAPI, reset: bool) -> None:
    fake_api.enqueue(DropMidStream("Partial answer", reset=reset))

    run = run_codex()
    if not reset:
        record_transcript("dropped_stream", run.stdout)

    _assert_failed(
        run,
        r"stream disconnected before completion: Transport error: network error: error decoding response body",
    )
    assert "agent_message" not in run.stdout  # the partial text is never printed
    assert run.summary.api_status is None and run.signals == []
    assert run.outcome.error_kind == ErrorKind.API_ERROR
    assert run.outcome.policy is not None and run.outcome.policy.value == "retry"


def test_a_dropped_stream_is_reconnected_when_stream_retries_are_allowed(
    run_codex: Any, fake_api: FakeResponsesAPI
) -> None:
    fake_api.enqueue(DropMidStream(), Reply("Reconnected.", usage=ApiUsage(input_tokens=300, output_tokens=7)))

    run = run_codex(stream_max_retries=1)

    _assert_clean(run)
    assert run.returncode == 0
    (reconnect,) = run.of_type("error")
    assert reconnect["message"] == (
        "Reconnecting... 1/1 (stream disconnected before completion: Transport error: network error: error "
        "decoding response body)"
    )
    assert run.summary.retry_events == 1 and run.signals == []
    assert run.summary.usage == Usage(input_tokens=300, output_tokens=7)  # the dropped attempt reported nothing
    assert run.outcome.ok


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_the_cli_reaches_only_the_fake_on_loopback(
    codex_cli: Path, fake_api: FakeResponsesAPI, codex_home: Path, tmp_path: Path
) -> None:
    """Without the proxy safety net: every inet connect() and sendto() (DNS included) of the
    CLI and its children goes to the fake."""
    fake_api.enqueue(ToolCall("exec_command", {"cmd": "echo hi"}), Reply())
    env = fake_api.cli_env(codex_home)
    for var in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        env.pop(var)
        env.pop(var.upper())
    trace = tmp_path / "net.trace"
    proc = subprocess.run(
        [
            "strace",
            "-f",
            "-qq",
            "-e",
            "trace=connect,sendto,sendmsg",
            "-o",
            str(trace),
            *codex_argv(codex_cli, fake_api),
        ],
        env=env,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = trace.read_text()
    inet = re.findall(r"\{sa_family=(AF_INET6?), ([^}]*)\}", text)
    assert inet, "strace saw no inet socket call at all; the trace is not working"
    for family, addr in inet:
        assert f"htons({fake_api.port})" in addr, f"unexpected destination: {family} {addr}"
        assert "127.0.0.1" in addr or "::1" in addr, addr
    assert len(fake_api.response_requests()) == 2


def test_codex_home_is_the_only_state_directory(run_codex: Any, fake_api: FakeResponsesAPI, codex_home: Path) -> None:
    fake_api.enqueue(Reply())

    run = run_codex()

    assert run.returncode == 0
    # Session rollouts and state databases land in the test's CODEX_HOME, not in ~/.codex.
    assert list(codex_home.glob("sessions/**/rollout-*.jsonl"))
    rollout = next(codex_home.glob("sessions/**/rollout-*.jsonl")).read_text()
    thread_id = run.events[0]["thread_id"]
    assert thread_id in rollout and FAKE_API_KEY not in rollout
    assert json.loads(rollout.splitlines()[0])  # a JSONL file of its own
