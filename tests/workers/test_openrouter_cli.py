"""tools/openrouter-cli.py, run as a real subprocess against the fake OpenAI-compatible server."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from adw_modules.workers.openrouter import main
from adw_modules.workers.openrouter_errors import parse_reset, parse_retry_after, usage_from_openai
from tests.fakes.openai_api import (
    FakeOpenAIServer,
    drop_connection_after,
    error_in_200,
    http_error,
    midstream_error,
    openrouter_error,
    rate_limited,
    stall,
    success,
)
from tests.paths import REPO

ROOT = REPO
SCRIPT = ROOT / "tools" / "openrouter-cli.py"
KEY = "sk-or-v1-test-9f3c2a7b5d1e4f60a8b2"
MODEL = "vendor/some-model"


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    events: list[dict[str, Any]]

    @property
    def result(self) -> dict[str, Any]:
        return self.events[-1]

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]

    @property
    def streamed_text(self) -> str:
        return "".join(
            block["text"]
            for event in self.of_type("assistant")
            if event["message"]["model"] != "<synthetic>"
            for block in event["message"]["content"]
            if block["type"] == "text"
        )


@pytest.fixture
def server():
    with FakeOpenAIServer(api_key=KEY) as fake:
        yield fake


class Cli:
    """Runs the CLI: as a real subprocess by default; ``in_process=True`` calls ``main()`` directly.

    The scenarios the tool exists for run as subprocesses; extra edge cases run in-process to
    keep the suite quick (the subprocess pays ~1 s importing the openai SDK).  Both check the
    invariants every run must keep: one final result, output file == stdout, no key anywhere.
    """

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.tmp_path = tmp_path
        self.monkeypatch = monkeypatch

    def __call__(
        self,
        base_url: str,
        *args: str,
        key: str | None = KEY,
        stdin: bytes = b"",
        prompt: str | None = "Say hello.",
        output_format: str = "stream-json",
        in_process: bool = False,
    ) -> Run:
        out_file = self.tmp_path / "output.jsonl"
        argv = ["--model", MODEL, "--base-url", base_url, "--output-file", str(out_file)]
        argv += ["--output-format", output_format]
        if prompt is not None:
            argv += ["--prompt-text", prompt]
        argv += list(args)
        if in_process:
            returncode, out, err = self._in_process(argv, key, stdin)
        else:
            returncode, out, err = self._subprocess(argv, key, stdin)
        stdout, stderr = out.decode(), err
        events = [json.loads(line) for line in stdout.splitlines()]
        assert events, f"no output; stderr: {stderr}"
        assert [e["type"] for e in events].count("result") == 1
        assert events[-1]["type"] == "result"
        if output_format == "stream-json":
            assert events[0]["type"] == "system" and events[0]["subtype"] == "init"
            assert {e["session_id"] for e in events} == {events[-1]["session_id"]}
        assert out_file.read_bytes() == out
        for text in (stdout, stderr):
            assert KEY not in text
        assert returncode == (1 if events[-1]["is_error"] else 0)
        return Run(returncode, stdout, stderr, events)

    def _subprocess(self, argv: list[str], key: str | None, stdin: bytes) -> tuple[int, bytes, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENROUTER_", "OPENAI_"))}
        env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
        if key is not None:
            env["OPENROUTER_API_KEY"] = key
        cmd = [sys.executable, str(SCRIPT), *argv]
        proc = subprocess.run(cmd, input=stdin, capture_output=True, env=env, timeout=60, cwd=self.tmp_path)
        return proc.returncode, proc.stdout, proc.stderr.decode()

    def _in_process(self, argv: list[str], key: str | None, stdin: bytes) -> tuple[int, bytes, str]:
        self.monkeypatch.chdir(self.tmp_path)
        if key is None:
            self.monkeypatch.delenv("OPENROUTER_API_KEY", raising=False)
        else:
            self.monkeypatch.setenv("OPENROUTER_API_KEY", key)
        out, err = io.BytesIO(), io.StringIO()
        returncode = main(argv, stdin=io.BytesIO(stdin), stdout=out, stderr=err)
        return returncode, out.getvalue(), err.getvalue()


@pytest.fixture
def run_cli(tmp_path, monkeypatch) -> Cli:
    return Cli(tmp_path, monkeypatch)


def assert_api_error(run: Run, status: int | None, error: str, *fragments: str) -> dict[str, Any]:
    result = run.result
    assert run.returncode == 1
    assert result["subtype"] == "success" and result["is_error"] is True
    assert result["api_error_status"] == status
    assert result["error"] == error
    assert result["terminal_reason"] == "api_error"
    for fragment in fragments:
        assert fragment in result["result"]
    synthetic = [e for e in run.of_type("assistant") if e["message"]["model"] == "<synthetic>"]
    assert len(synthetic) == 1 and synthetic[0]["error"] == error
    return result


# --- success -----------------------------------------------------------------------------------


def test_success_reports_text_tokens_cost_model_and_session(run_cli, server, tmp_path):
    text = "Hello from the fake model. " * 5
    server.script(
        success(
            text,
            model="vendor/some-model-2026-01-01",
            reasoning="Thinking first.",
            prompt_tokens=1200,
            completion_tokens=42,
            cached_tokens=200,
            cache_write_tokens=100,
            cost=0.00158,
        )
    )
    (tmp_path / "prompt.txt").write_text("Write a haiku.")
    (tmp_path / "system.txt").write_text("You are terse.")
    run = run_cli(
        server.base_url,
        "-p",
        "prompt.txt",
        "--system-file",
        "system.txt",
        "--max-tokens",
        "256",
        "--temperature",
        "0.2",
        "--usage-accounting",
        "on",
        "--verbose",
        prompt=None,
    )
    result = run.result
    assert run.returncode == 0
    assert result["subtype"] == "success" and result["is_error"] is False
    assert result["api_error_status"] is None
    assert result["result"] == text
    assert run.streamed_text == text
    assert result["session_id"] == "gen-fake-000001"
    assert result["num_turns"] == 1 and result["stop_reason"] == "end_turn"
    assert result["total_cost_usd"] == pytest.approx(0.00158)
    assert result["usage"] == {
        "input_tokens": 900,
        "cache_creation_input_tokens": 100,
        "cache_read_input_tokens": 200,
        "output_tokens": 42,
    }
    assert result["modelUsage"] == {
        "vendor/some-model-2026-01-01": {
            "inputTokens": 900,
            "outputTokens": 42,
            "cacheReadInputTokens": 200,
            "cacheCreationInputTokens": 100,
            "costUSD": pytest.approx(0.00158),
        }
    }
    init = run.events[0]
    assert init["model"] == MODEL and init["tools"] == [] and init["cwd"] == str(tmp_path)
    thinking = [
        block["thinking"]
        for event in run.of_type("assistant")
        for block in event["message"]["content"]
        if block["type"] == "thinking"
    ]
    assert "".join(thinking) == "Thinking first."

    (request,) = server.requests
    body = request.json
    assert request.path == "/api/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert body["model"] == MODEL
    assert body["messages"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Write a haiku."},
    ]
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["usage"] == {"include": True}
    assert body["max_tokens"] == 256 and body["temperature"] == 0.2


def test_long_reply_is_coalesced_into_few_assistant_events(run_cli, server, tmp_path):
    text = "".join(f"word{i} " for i in range(1500))  # ~11 KB in 7-char deltas
    server.script(success(text, cost=0.01))
    run = run_cli(server.base_url, in_process=True)
    assert run.streamed_text == text == run.result["result"]
    assert 1 <= len(run.of_type("assistant")) <= 12  # not one line per delta (~1600 of them)


def test_plain_openai_compatible_server_without_cost(run_cli, server, tmp_path):
    server.script(success("ok", cost=None, usage_on_finish_chunk=True, prompt_tokens=10, completion_tokens=1))
    run = run_cli(server.v1_url, in_process=True)
    result = run.result
    assert result["is_error"] is False and result["result"] == "ok"
    assert result["total_cost_usd"] is None  # unknown, never guessed
    assert result["modelUsage"][MODEL]["costUSD"] is None
    assert result["usage"]["input_tokens"] == 10
    (request,) = server.requests
    assert request.path == "/v1/chat/completions"
    assert "usage" not in request.json  # OpenRouter's extension only goes to openrouter.ai


def test_json_output_format_prints_only_the_result(run_cli, server, tmp_path):
    server.script(success("just the result", cost=0.002))
    run = run_cli(server.base_url, output_format="json", in_process=True)
    assert len(run.events) == 1
    assert run.result["result"] == "just the result"
    assert run.result["total_cost_usd"] == pytest.approx(0.002)


@pytest.mark.parametrize("source", ["file", "stdin", "dash"])
def test_large_prompt_arrives_intact(run_cli, server, tmp_path, source):
    prompt = "".join(f"line {i}: ünïcödé ✓ {'x' * 20}\n" for i in range(9000))
    assert len(prompt.encode()) > 300_000
    server.script(success("read it"))
    args: list[str] = []
    stdin = b""
    if source == "file":
        (tmp_path / "big.txt").write_text(prompt, encoding="utf-8")
        args = ["-p", "big.txt"]
    else:
        stdin = prompt.encode()
        args = ["-p", "-"] if source == "dash" else []
    # "-" goes through the same stdin path as "no -p", so it runs in-process.
    run = run_cli(server.base_url, *args, stdin=stdin, prompt=None, in_process=source == "dash")
    assert run.result["is_error"] is False
    assert server.requests[0].json["messages"] == [{"role": "user", "content": prompt}]


# --- HTTP errors -------------------------------------------------------------------------------


def test_402_out_of_credits(run_cli, server, tmp_path):
    server.script(
        openrouter_error(
            402,
            "This request requires more credits, or fewer max_tokens.",
            {"limit_source": "openrouter_credits"},
        )
    )
    run = run_cli(server.base_url)
    result = assert_api_error(run, 402, "billing_error", "API Error: 402", "requires more credits")
    assert "retry_after_s" not in result
    assert result["usage"]["output_tokens"] == 0 and result["total_cost_usd"] is None


def test_429_carries_retry_after_and_reset(run_cli, server, tmp_path):
    server.script(rate_limited(retry_after_s=30, reset_ms=1788825600000))
    run = run_cli(server.base_url)
    result = assert_api_error(run, 429, "rate_limit", "Rate limit exceeded", "retry after 30s")
    assert result["retry_after_s"] == 30
    assert result["resets_at"] == 1788825600.0
    assert len(server.requests) == 1  # no retry inside the CLI: the coordinator owns retries


def test_401_wrong_key_is_an_auth_error(run_cli, tmp_path):
    wrong = "sk-or-v1-wrong-key-0000000000000"
    with FakeOpenAIServer(api_key=KEY) as fake:
        run = run_cli(fake.base_url, key=wrong)
        assert fake.requests[0].headers["authorization"] == f"Bearer {wrong}"
    assert_api_error(run, 401, "authentication_failed", "User not found.")
    assert wrong not in run.stdout + run.stderr


def test_key_echoed_by_the_server_is_redacted(run_cli, server, tmp_path):
    server.script(http_error(401, {"error": {"code": 401, "message": f"Invalid key {KEY} for this account"}}))
    run = run_cli(server.base_url, in_process=True)  # run_cli asserts KEY is absent everywhere
    assert_api_error(run, 401, "authentication_failed", "Invalid key [REDACTED] for this account")


def test_404_unknown_model(run_cli, server, tmp_path):
    server.script(openrouter_error(404, "No allowed providers are available for the selected model."))
    run = run_cli(server.base_url, in_process=True)
    assert_api_error(run, 404, "model_not_found", "No allowed providers")


def test_503_no_provider_with_retry_after(run_cli, server, tmp_path):
    server.script(
        openrouter_error(
            503, "No available model provider meets your routing requirements", headers={"Retry-After": "5"}
        )
    )
    run = run_cli(server.base_url)
    result = assert_api_error(run, 503, "overloaded", "No available model provider")
    assert result["retry_after_s"] == 5


def test_upstream_reason_from_metadata_raw(run_cli, server, tmp_path):
    raw = "z-ai/glm-5.2:free is temporarily rate-limited upstream."
    server.script(openrouter_error(429, "Provider returned error", {"raw": raw, "provider_name": "Decart"}))
    run = run_cli(server.base_url, in_process=True)
    result = assert_api_error(run, 429, "rate_limit", "Provider returned error", raw)
    assert "retry_after_s" not in result


def test_non_json_error_body(run_cli, server, tmp_path):
    server.script(http_error(502, "<html>Bad Gateway</html>"))
    run = run_cli(server.base_url, in_process=True)
    assert_api_error(run, 502, "overloaded", "Bad Gateway")


# --- errors inside a 200 -----------------------------------------------------------------------


@pytest.mark.parametrize("as_json_body", [False, True], ids=["sse-event", "json-body"])
def test_error_inside_a_200(run_cli, server, tmp_path, as_json_body):
    server.script(
        error_in_200(
            503,
            "Upstream error from Nvidia: Service temporarily overloaded",
            as_json_body=as_json_body,
            error_type="provider_overloaded",
        )
    )
    run = run_cli(server.base_url, in_process=as_json_body)
    result = assert_api_error(run, 503, "overloaded", "Service temporarily overloaded")
    assert result["session_id"] == "gen-fake-000001"


def test_midstream_error_keeps_partial_text(run_cli, server, tmp_path):
    server.script(midstream_error("The answer is forty", "server_error", "Provider disconnected unexpectedly"))
    run = run_cli(server.base_url)
    result = assert_api_error(run, None, "server_error", "API Error: server_error Provider disconnected")
    assert result["api_error_code"] == "server_error"
    assert run.streamed_text == "The answer is forty"


def test_midstream_error_with_numeric_code(run_cli, server, tmp_path):
    server.script(midstream_error("partial", 502, "Upstream went away"))
    run = run_cli(server.base_url, in_process=True)
    result = assert_api_error(run, 502, "overloaded", "Upstream went away")
    assert "api_error_code" not in result


# --- transport failures ------------------------------------------------------------------------


def test_dropped_connection_is_an_error(run_cli, server, tmp_path):
    server.script(drop_connection_after(3, "This answer will be cut short by a reset."))
    run = run_cli(server.base_url)
    assert_api_error(run, None, "connection_error", "Connection error")
    assert run.streamed_text == "This answer will be cut short by a reset."[:21]


def test_stream_ending_without_finish_is_an_error(run_cli, server, tmp_path):
    server.script(success("half an answ", finish_reason=None, send_usage=False, send_done=False))
    run = run_cli(server.base_url, in_process=True)
    assert_api_error(run, None, "unknown", "ended before the model finished")
    assert run.streamed_text == "half an answ"


def test_silent_server_times_out(run_cli, server, tmp_path):
    server.script(stall("still thinking"))
    run = run_cli(server.base_url, "--timeout", "0.5", in_process=True)
    assert_api_error(run, None, "timeout", "timed out")
    assert run.streamed_text == "still thinking"


def test_unreachable_server(run_cli, refused_port):
    run = run_cli(f"http://127.0.0.1:{refused_port}/api/v1", in_process=True)  # nothing listens there
    assert_api_error(run, None, "connection_error", "Connection error")


def test_sigterm_still_ends_with_a_result(server, tmp_path):
    server.script(stall("still thinking"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENROUTER_", "OPENAI_"))}
    env["OPENROUTER_API_KEY"] = KEY
    cmd = [
        sys.executable,
        str(SCRIPT),
        "--model",
        MODEL,
        "--base-url",
        server.base_url,
        "--prompt-text",
        "hi",
    ]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=tmp_path) as proc:
        assert proc.stdout is not None
        init = json.loads(proc.stdout.readline())  # the response headers are in: the request is live
        assert init["subtype"] == "init"
        proc.send_signal(signal.SIGTERM)
        rest, stderr = proc.communicate(timeout=30)
    events = [json.loads(line) for line in rest.decode().splitlines()]
    assert proc.returncode == 143
    assert events[-1]["type"] == "result" and events[-1]["is_error"] is True
    assert events[-1]["error"] == "cancelled"
    assert stderr == b""


# --- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize("env_name", [None, "CUSTOM_ROUTER_KEY"])
def test_missing_api_key_sends_nothing(run_cli, server, tmp_path, env_name):
    args = ["--api-key-env", env_name] if env_name else []
    run = run_cli(server.base_url, *args, key=None, in_process=env_name is not None)
    name = env_name or "OPENROUTER_API_KEY"
    result = assert_api_error(run, None, "authentication_failed", name, "not set")
    assert result["result"].startswith("Not logged in")
    assert server.requests == []
    assert result["total_cost_usd"] is None


def test_bad_invocation_exits_2_and_sends_nothing(server, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENROUTER_", "OPENAI_"))}
    env["OPENROUTER_API_KEY"] = KEY
    cmd = [sys.executable, str(SCRIPT), "--model", MODEL, "--base-url", server.base_url, "-p", "missing.txt"]
    proc = subprocess.run(cmd, capture_output=True, env=env, timeout=60, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stdout == b""
    assert "missing.txt" in proc.stderr.decode()
    assert server.requests == []
    assert not (tmp_path / "output.jsonl").exists()


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["-p", "-"], b"  \n", "prompt is empty"),
        (["-p", "-"], b"\xff\xfe bad", "not UTF-8"),
        (["--prompt-text", "hi", "--base-url", "ftp://example"], b"", "--base-url"),
        (["--prompt-text", "hi", "--system-file", "nope.txt"], b"", "nope.txt"),
        (["--prompt-text", "hi", "--output-file", "no/such/dir/out.jsonl"], b"", "--output-file"),
    ],
)
def test_bad_input_is_refused_before_sending(server, tmp_path, monkeypatch, args, stdin, message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENROUTER_API_KEY", KEY)
    out, err = io.BytesIO(), io.StringIO()
    code = main(
        ["--model", MODEL, "--base-url", server.base_url, *args],
        stdin=io.BytesIO(stdin),
        stdout=out,
        stderr=err,
    )
    assert code == 2
    assert out.getvalue() == b""
    assert message in err.getvalue()
    assert server.requests == []


# --- normalisation (pure functions) ------------------------------------------------------------


def test_usage_excludes_cache_and_adds_byok_upstream_cost():
    usage = usage_from_openai(
        {
            "prompt_tokens": 194,
            "completion_tokens": 2,
            "cost": 0.95,
            "is_byok": True,
            "cost_details": {"upstream_inference_cost": 19},
            "prompt_tokens_details": {"cached_tokens": 50, "cache_write_tokens": 100},
        }
    )
    assert (usage.input_tokens, usage.cache_read_tokens, usage.cache_write_tokens) == (44, 50, 100)
    assert usage.output_tokens == 2
    assert usage.cost_usd == pytest.approx(19.95)
    without_byok = usage_from_openai(
        {"prompt_tokens": 5, "cost": 0.5, "cost_details": {"upstream_inference_cost": 0.5}}
    )
    assert without_byok.cost_usd == 0.5  # upstream repeats cost: not added
    assert usage_from_openai({"prompt_tokens": 5}).cost_usd is None


def test_retry_after_forms():
    assert parse_retry_after({"Retry-After": "12"}) == 12
    assert parse_retry_after({"retry-after-ms": "1500", "Retry-After": "9"}) == 1.5
    assert parse_retry_after({"Retry-After": "Wed, 21 Oct 2015 07:28:30 GMT"}, now=1445412500.0) == 10
    assert parse_retry_after({"Retry-After": "soon"}) is None
    assert parse_retry_after({}) is None
    assert parse_reset("1788825600000") == 1788825600.0
    assert parse_reset("1788825600") == 1788825600.0
    assert parse_reset("nope") is None
