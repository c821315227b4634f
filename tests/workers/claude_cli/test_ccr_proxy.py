"""The real Claude Code CLI through the real claude-code-router (npm, pinned) in front of the fake
OpenAI-compatible API: an adw provider with ``proxy = "http://127.0.0.1:PORT"``.

    claude -p ──Anthropic /v1/messages──► ccr (HOME = a temp dir) ──/v1/chat/completions──► fake

ccr reads ``$HOME/.claude-code-router/config.json`` (``Providers``/``Router``, ``$VAR``
interpolation for keys) and listens on its ``PORT``; ``ccr start`` serves in the foreground.
Its ``APIKEY`` is the secret adw hands Claude Code as ``ANTHROPIC_AUTH_TOKEN``; the upstream
key reaches ccr only through its environment.

ccr 2.0.0 ends the Anthropic message at the chunk carrying ``finish_reason`` and reads usage
from that chunk only: an upstream that sends usage in a later chunk with ``choices: []``
(OpenAI's ``stream_options.include_usage`` shape, OpenRouter's) reaches Claude Code as zero
tokens.  The fake therefore sends usage on the finish chunk, as DeepSeek, Groq and vLLM do.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adw_modules.config.schema import Target, load_config
from adw_modules.routing.providers import ProviderRegistry
from adw_modules.workers.attempt import AttemptRequest, AttemptRunner
from tests.coordinator.harness import wait_for
from tests.fakes.openai_api import FakeOpenAIServer, success
from tests.node_tools import ensure_claude_code_router, installed_or_fail

pytestmark = pytest.mark.claude_cli

UPSTREAM_KEY = "sk-upstream-test"
CCR_KEY = "ccr-apikey-test"
UPSTREAM_MODEL = "vendor/coder-32b"
CLAUDE_MODEL = "claude-sonnet-4-5"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def accepting(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAIServer]:
    answer = success("Hello through the router.", prompt_tokens=1200, completion_tokens=34, usage_on_finish_chunk=True)
    with FakeOpenAIServer(api_key=UPSTREAM_KEY, default=answer) as fake:
        yield fake


@pytest.fixture(scope="module")
def ccr(upstream: FakeOpenAIServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A running ``ccr start`` on a free loopback port; its port."""
    cli = installed_or_fail(ensure_claude_code_router, "claude-code-router", "tests/node_tools.py")
    node = shutil.which("node")
    assert node is not None, "node is needed to run claude-code-router"
    home = tmp_path_factory.mktemp("ccr-home")
    port = free_port()
    settings = {
        "APIKEY": CCR_KEY,
        "HOST": "127.0.0.1",
        "PORT": port,
        "LOG": False,
        "NON_INTERACTIVE_MODE": True,
        "API_TIMEOUT_MS": 30000,
        "Providers": [
            {
                "name": "fake",
                "api_base_url": f"{upstream.v1_url}/chat/completions",
                "api_key": "$UPSTREAM_KEY",
                "models": [UPSTREAM_MODEL],
            }
        ],
        "Router": {"default": f"fake,{UPSTREAM_MODEL}", "background": f"fake,{UPSTREAM_MODEL}"},
    }
    (home / ".claude-code-router").mkdir()
    (home / ".claude-code-router" / "config.json").write_text(json.dumps(settings))
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "UPSTREAM_KEY": UPSTREAM_KEY}
    log = open(home / "ccr.out", "wb")
    proc = subprocess.Popen(
        [node, str(cli), "start"], env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        wait_for(lambda: proc.poll() is not None or accepting(port), 30, f"ccr to listen on {port}")
        assert proc.poll() is None, (home / "ccr.out").read_text()
        yield port
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
        log.close()


def test_ccr_refuses_a_request_without_its_key(ccr: int) -> None:
    body = json.dumps({"model": CLAUDE_MODEL, "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]})
    request = urllib.request.Request(
        f"http://127.0.0.1:{ccr}/v1/messages", body.encode(), {"content-type": "application/json"}
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=10)
    err.value.close()
    assert err.value.code == 401


def run_through_ccr(claude_cli: Path, port: int, tmp_path: Path) -> dict[str, Any]:
    """One adw attempt of the real claude CLI with ``proxy`` = the running ccr."""
    home = tmp_path / "home"
    (home / ".claude").mkdir(parents=True)
    config_path = tmp_path / "config.toml"
    config_path.write_text(
        f"""
[providers.claude-ccr]
command_template = ["{claude_cli}", "-p", "--model", "{{model}}", "--output-format", "stream-json",
                    "--verbose", "--max-turns", "1"]
prompt_stdin = true
proxy = "http://127.0.0.1:{port}"
requires_api_key = true
api_key_env = "CCR_APIKEY"
pass_api_key_as = "ANTHROPIC_AUTH_TOKEN"
timeout = 120
env = {{ HOME = "{home}", CLAUDE_CONFIG_DIR = "{home / ".claude"}", DISABLE_TELEMETRY = "1",
        DISABLE_AUTOUPDATER = "1", DISABLE_ERROR_REPORTING = "1",
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC = "1", CLAUDE_CODE_MAX_RETRIES = "0" }}
[providers.claude-ccr.models.{CLAUDE_MODEL}]
tier = "standard"
[routing]
default_provider = "claude-ccr"
default_model = "{CLAUDE_MODEL}"
"""
    )
    config = load_config(config_path)
    environ = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "CCR_APIKEY": CCR_KEY}
    registry = ProviderRegistry(config, environ=environ)
    runner = AttemptRunner(config, registry, environ=registry.environ, kill_grace_s=2.0)
    workdir = tmp_path / "work"
    workdir.mkdir()
    request = AttemptRequest(
        task_id="ccr-1",
        prompt="Say hello",
        target=Target("claude-ccr", CLAUDE_MODEL),
        workdir=workdir,
        attempt_dir=tmp_path / "attempt",
        timeout_s=120,
    )
    return runner.run(request).to_dict()


def test_claude_code_through_ccr_succeeds_with_tokens_and_cost(
    claude_cli: Path, ccr: int, upstream: FakeOpenAIServer, tmp_path: Path
) -> None:
    seen = len(upstream.requests)
    result = run_through_ccr(claude_cli, ccr, tmp_path)
    assert result["outcome"] == "success", result
    assert (result["input_tokens"], result["output_tokens"]) == (1200, 34)
    # Claude Code prices the tokens as the model it asked for (Sonnet 4.5: $3 / $15 per MTok).
    assert result["cost_source"] == "reported"
    assert result["cost_usd"] == pytest.approx((1200 * 3 + 34 * 15) / 1e6)
    assert "Hello through the router." in (result["result_text"] or "")
    chat = [r for r in upstream.requests[seen:] if r.json.get("model") == UPSTREAM_MODEL]
    assert chat, "ccr sent nothing upstream"
    assert chat[-1].path == "/v1/chat/completions"
    assert chat[-1].headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert CCR_KEY not in json.dumps([r.headers for r in upstream.requests])


def test_ccr_loses_usage_sent_after_the_finish_chunk(
    claude_cli: Path, ccr: int, upstream: FakeOpenAIServer, tmp_path: Path
) -> None:
    """The known limit of ccr 2.0.0 (module docstring), pinned so an upgrade that fixes it shows."""
    late_usage = success("Hello again.", prompt_tokens=1200, completion_tokens=34, usage_on_finish_chunk=False)
    upstream.enqueue(late_usage)  # claude -p "Say hello" makes one request (nonessential traffic off)
    result = run_through_ccr(claude_cli, ccr, tmp_path)
    assert upstream.pending == 0
    assert result["outcome"] == "success", result
    assert (result["input_tokens"], result["output_tokens"]) == (0, 0)
