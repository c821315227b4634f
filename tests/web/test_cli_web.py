"""``adw web`` and ``adw run`` with ``[web] listen`` as processes: they serve, refuse, and say why."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import urllib.request
from pathlib import Path

from click.testing import CliRunner

from adws.cli import cli
from tests.coordinator.harness import ADW
from tests.web.conftest import ADMIN_TOKEN, ENVIRON, WEB_SECTION, scene_config


def env() -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if k != "ADW_CONFIG"}, **ENVIRON, "PATH": os.environ["PATH"]}


def test_adw_web_serves_the_store_read_only_and_stops_on_sigterm(tmp_path: Path) -> None:
    config, store = scene_config(tmp_path)
    store.close()
    proc = subprocess.Popen(
        [str(ADW), "web", "--listen", "127.0.0.1:0", "--config", str(config.path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        first = proc.stdout.readline()  # printed once the socket is bound
        assert first.startswith("adw web console on http://127.0.0.1:"), first + proc.stderr.read()
        url = first.split()[-1]
        request = urllib.request.Request(f"{url}/api/v1/tasks/5", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        with urllib.request.urlopen(request, timeout=10) as r:
            assert json.loads(r.read())["task"]["id"] == 5
        retry = urllib.request.Request(f"{url}/tasks/5/retry", method="POST", headers=request.headers)
        try:
            urllib.request.urlopen(retry, timeout=10)
            raise AssertionError("retry was accepted without a coordinator")
        except urllib.error.HTTPError as exc:
            assert exc.code == 409  # no coordinator runs: read-only
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(15)
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]
    assert code == 0


def test_refusals_exit_2_with_one_line(tmp_path: Path) -> None:
    config, store = scene_config(tmp_path, web="")
    store.close()
    web = ["web", "--config", str(config.path), "--listen"]
    out = CliRunner().invoke(cli, [*web, "0.0.0.0:8484"])
    assert out.exit_code == 2 and "is not a loopback address" in out.output, out.output
    out = CliRunner().invoke(cli, [*web, "nowhere"])
    assert out.exit_code == 2 and '"nowhere" is not HOST:PORT' in out.output, out.output

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with config.path.open("a") as f:
            f.write(WEB_SECTION + f'listen = "127.0.0.1:{port}"\n')
        ran = subprocess.run(
            [str(ADW), "run", "--once", "--config", str(config.path)],
            capture_output=True,
            text=True,
            env=env(),
            timeout=60,
        )
    assert ran.returncode == 2 and f"web: cannot listen on 127.0.0.1:{port}" in ran.stderr, ran.stderr[-2000:]
