"""Fixtures for the operations tests: configs on the dry-run agent, free ports, HTTP gets.

Each test writes its own config next to its own store (SQLite in its tmp dir, or a scratch
PostgreSQL database that is dropped afterwards; the PostgreSQL cases fail, not skip, when
the server is down, like the store's contract suite).
"""

from __future__ import annotations

import json
import socket
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.coordinator.harness import require_postgres, scratch_pg_database

REPO = Path(__file__).resolve().parent.parent.parent
AGENT = REPO / "tools" / "dry-run-agent.py"
ADW = Path(sys.executable).parent / "adw"


def provider_toml(name: str, *, env: str = "", args: tuple[str, ...] = (), extra: str = "") -> str:
    argv = [str(AGENT), "--model", "{model}", "--output-format", "stream-json", "--verbose", *args]
    out = (
        f"[providers.{name}]\ncommand_template = {json.dumps(argv)}\nprompt_stdin = true\n"
        f"env = {{ {env} }}\ntimeout = 60\nidle_timeout = 30\n{extra}\n"
        f'[providers.{name}.models.m1]\ntier = "fast"\ncapabilities = ["code"]\n'
        "price = { input_per_mtok = 3.0, output_per_mtok = 15.0 }\n"
    )
    return out


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    """``write_config(providers, routing, store_url, **coordinator)``: a config.toml path."""

    def write(providers: str, routing: str, store_url: str, metrics: str | None = None, **coordinator: object) -> Path:
        settings: dict[str, object] = {
            "name": "ops-test",
            "max_concurrency": 4,
            "heartbeat_s": 0.5,
            "lease_s": 15,
            "dispatch_interval_s": 0.2,
            "reap_interval_s": 1,
            "kill_grace_s": 1,
            "drain_grace_s": 1,
            "retry_base_s": 1,
            "retry_max_s": 1,
            "retry_jitter": 0,
            "state_dir": str(tmp_path / "state"),
            **coordinator,
        }
        body = providers + "\n" + routing + "\n[coordinator]\n"
        body += "".join(f"{k} = {json.dumps(v)}\n" for k, v in settings.items())
        body += f"\n[store]\nurl = {json.dumps(store_url)}\n"
        if metrics is not None:
            body += f"\n[metrics]\nlisten = {json.dumps(metrics)}\n"
        path = tmp_path / "config.toml"
        path.write_text(body)
        return path

    return write


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test, dropped (WITH FORCE) afterwards."""
    require_postgres()
    with scratch_pg_database() as url:
        yield url


@pytest.fixture
def free_port() -> int:
    """A loopback port nothing listens on now (the kernel's pick; closed before use)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def http_get(url: str, timeout_s: float = 10) -> tuple[int, str]:
    """(status, body) of a GET; error statuses are answers too."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read().decode()
