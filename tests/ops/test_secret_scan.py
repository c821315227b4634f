"""Plant a key, let an agent CLI leak it every way it can, then scan everything adw wrote."""

from __future__ import annotations

import dataclasses
import io
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from adw_modules.config.schema import load_config
from adw_modules.config.web import WebConfig
from adw_modules.ops.logs import setup_logging
from adw_modules.ops.metrics_http import serve_metrics
from adw_modules.queue.store import Store
from adw_modules.sources.local import enqueue_local
from adws.cli import cli
from adws.service import Service
from tests.fakes.github_api import FAKE_TOKEN, FakeGitHub
from tests.ops.conftest import http_get

PLANTED = "sk-planted-SECRET-9f8e7d6c5b4a3210"

LEAKY_AGENT = """
import json, os, sys
key = os.environ["LEAKY_KEY"]
state = os.environ["LEAKY_STATE"] + "." + sys.argv[2]  # per task: two tasks run, in either order
first = not os.path.exists(state)
open(state, "a").write("x")
print(json.dumps({"type": "system", "subtype": "init", "session_id": "s-" + key, "model": "m"}), flush=True)
print(json.dumps({"type": "assistant", "message": {"id": "msg", "model": "m", "role": "assistant",
      "content": [{"type": "text", "text": "my key is " + key}],
      "usage": {"input_tokens": 3, "output_tokens": 4}}}), flush=True)
print("debug: using " + key, flush=True)
sys.stderr.write("Error: authentication with " + key + " failed\\n")
if first:
    sys.exit(3)
print(json.dumps({"type": "result", "subtype": "success", "is_error": False, "result": "done, key=" + key,
      "session_id": "s", "num_turns": 1, "duration_ms": 5,
      "usage": {"input_tokens": 3, "output_tokens": 4}}), flush=True)
"""


def test_planted_key_never_lands_anywhere(tmp_path: Path) -> None:
    with FakeGitHub() as fake:
        fake.add_repo("acme/app")
        fake.set_permission("acme/app", "maintainer", "write")
        issue = fake.add_issue("acme/app", "Leak it too", user="someone")
        fake.label_issue("acme/app", issue, "adw", actor="maintainer")
        scan(tmp_path, fake, issue)


def scan(tmp_path: Path, fake: FakeGitHub, issue: int) -> None:
    agent = tmp_path / "leaky_agent.py"
    agent.write_text(LEAKY_AGENT)
    config_path = tmp_path / "config.toml"
    config_path.write_text(
        textwrap.dedent(
            f"""
            [providers.leaky]
            command_template = ["{sys.executable}", "{agent}", "{{model}}", "{{task_id}}"]
            requires_api_key = true
            api_key_env = "PLANTED_KEY"
            pass_api_key_as = "LEAKY_KEY"
            env = {{ LEAKY_STATE = "{tmp_path / "leaky.state"}" }}
            [routing]
            default_provider = "leaky"
            default_model = "m"
            [coordinator]
            retry_base_s = 0.1
            retry_max_s = 0.1
            dispatch_interval_s = 0.2
            state_dir = "state"
            [health]
            failure_threshold = 5
            [github]
            repositories = ["acme/app"]
            base_url = "{fake.base_url}"
            read_spacing_s = 0
            write_spacing_s = 0
            """
        )
    )
    environ = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PLANTED_KEY": PLANTED, "GITHUB_TOKEN": FAKE_TOKEN}
    logs = io.StringIO()
    setup_logging("json", stream=logs)
    service = Service(load_config(config_path), environ=environ)
    task = enqueue_local(service.store, "leak it", "please")
    assert service.github is not None and service.github.poll()  # the labelled issue becomes a task too
    service.run("until_idle", idle_wait_s=5)

    store_url = f"sqlite:///{tmp_path / 'state' / 'adw.db'}"
    assert store_url  # the store lives under state/, scanned below with every other file
    store = Store.open(store_url)
    server = serve_metrics(store, ("127.0.0.1", 0))
    try:
        status, scraped = http_get(f"http://127.0.0.1:{server.address[1]}/metrics")
        console_pages = console_bodies(load_config(config_path), store, environ, task.id)
    finally:
        server.stop()
        store.close()
    assert status == 200 and "adw_attempts_total" in scraped
    comments = [c.body for c in fake.comments("acme/app", issue)]
    assert any("✅ done" in c for c in comments)  # the issue's task ran and reported back
    runner = CliRunner()
    outputs = [
        scraped,
        *comments,
        runner.invoke(cli, ["task", "show", str(task.id), "--json", "--config", str(config_path)]).output,
        runner.invoke(cli, ["status", "--json", "--config", str(config_path)]).output,
        runner.invoke(cli, ["tasks", "--json", "--config", str(config_path)]).output,
        logs.getvalue(),
        *console_pages,
    ]
    shown = json.loads(outputs[len(comments) + 1])
    assert [a["outcome"] for a in shown["attempts"]] == ["crashed", "success"]  # it really ran, twice
    assert "[REDACTED]" in shown["attempts"][1]["result_text"]

    leaks = [f"output {i}" for i, text in enumerate(outputs) if PLANTED in text or FAKE_TOKEN in text]
    scanned = 0
    for path in tmp_path.rglob("*"):
        if path.is_file() and path != agent and path != config_path:
            scanned += 1
            if PLANTED.encode() in path.read_bytes():
                leaks.append(str(path.relative_to(tmp_path)))
    assert any("[REDACTED]" in page for page in console_pages)  # the transcript and result were there, masked
    assert scanned >= 5  # transcripts, prompts, the database and its WAL
    transcript = next((tmp_path / "state" / "attempts").rglob("stdout.jsonl")).read_text()
    assert "[REDACTED]" in transcript
    assert leaks == []


def console_bodies(config: Any, store: Store, environ: dict[str, str], task_id: int) -> list[str]:
    """Every page and JSON endpoint of the web console over this store (with an admin token)."""
    from starlette.testclient import TestClient

    from adws.web.app import create_app
    from adws.web.server import make_console

    web_config = dataclasses.replace(config, web=WebConfig(token_env="WEB_TOKEN"))
    console = make_console(web_config, store, {**environ, "WEB_TOKEN": "web-admin-token"}, in_coordinator=True)
    paths = ["/", "/tasks", f"/tasks/{task_id}", f"/tasks/{task_id}?attempt=1", "/spend", "/routing", "/config"]
    paths += ["/api/v1/status", "/api/v1/tasks", f"/api/v1/tasks/{task_id}", "/api/v1/usage", "/api/v1/routing"]
    with TestClient(create_app(console), base_url="http://127.0.0.1") as client:
        client.headers["Authorization"] = "Bearer web-admin-token"
        bodies = []
        for path in paths:
            r = client.get(path)
            assert r.status_code == 200, path
            bodies.append(r.text)
    console.watcher.stop()
    return bodies
