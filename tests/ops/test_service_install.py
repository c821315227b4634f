"""``adw service install``: the unit validates with systemd-analyze and encodes the service contract.

The real ``adw`` executable of this environment runs in a subprocess with HOME pointed at a
temp dir; nothing is ever written under /etc.
"""

from __future__ import annotations

import os
import pwd
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from adw_modules.ops.systemd import STOP_MARGIN_S, adw_command
from tests.ops.system_tools import ensure_systemd_analyze

REPO = Path(__file__).resolve().parent.parent.parent
AGENT = REPO / "tools" / "dry-run-agent.py"
ADW = Path(sys.executable).parent / "adw"
PLANTED = "sk-planted-unit-secret-0123456789"


def write_config(directory: Path, drain: float = 40, kill: float = 7) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "config.toml"
    path.write_text(
        f'[providers.dry]\ncommand_template = ["{AGENT}", "--model", "{{model}}"]\n'
        'requires_api_key = true\napi_key_env = "PLANTED_KEY"\n'
        "[providers.dry.models.m1]\n"
        '[routing]\ndefault_provider = "dry"\ndefault_model = "m1"\n'
        f"[coordinator]\ndrain_grace_s = {drain}\nkill_grace_s = {kill}\n"
        f'state_dir = "{directory / "state"}"\n'
    )
    return path


def adw(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": str(home), "PLANTED_KEY": PLANTED}
    return subprocess.run([str(ADW), *args], capture_output=True, text=True, env=env, timeout=60, check=False)


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key, []).append(value)
    return sections


def unescape(value: str) -> str:
    return value.replace("%%", "%").replace("$$", "$")


def verify(unit_text: str, directory: Path, name: str, user: bool) -> None:
    tool = ensure_systemd_analyze()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.service"
    path.write_text(unit_text)
    runtime = directory / "run"
    runtime.mkdir(mode=0o700, exist_ok=True)
    argv = [tool, *(["--user"] if user else []), "verify", str(path)]
    proc = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)},
    )
    # verify exits 0 on settings it ignores; any line about our unit is a problem.
    about_ours = [line for line in (proc.stdout + proc.stderr).splitlines() if f"{name}.service" in line]
    assert proc.returncode == 0 and not about_ours, proc.stdout + proc.stderr


@pytest.mark.parametrize("user", [False, True], ids=["system", "user"])
def test_dry_run_prints_a_unit_that_verifies_and_encodes_the_drain_contract(tmp_path: Path, user: bool) -> None:
    # A config path with a blank and a % exercises the unit's quoting and specifier escaping.
    config = write_config(tmp_path / "my conf%dir", drain=40, kill=7.5)
    home = tmp_path / "home"
    home.mkdir()
    proc = adw(
        home,
        "service",
        "install",
        "--dry-run",
        *(["--user"] if user else []),
        "--name",
        "adw-test",
        "--config",
        str(config),
    )
    assert proc.returncode == 0, proc.stderr
    unit = proc.stdout
    assert list(home.iterdir()) == [] and sorted(p.name for p in config.parent.iterdir()) == ["config.toml"]
    verify(unit, tmp_path / "verify", "adw-test", user)

    svc = parse_unit(unit)["Service"]
    assert svc["Restart"] == ["on-failure"] and int(svc["RestartSec"][0]) > 0
    # ExecStop drains the coordinator first; then the whole cgroup is killed: no agent outlives it.
    assert svc["KillMode"] == ["control-group"] and svc["KillSignal"] == ["SIGTERM"] and svc["SendSIGKILL"] == ["yes"]
    stop = shlex.split(svc["ExecStop"][0])
    assert [unescape(a) for a in stop[:-2]] == [str(ADW), "service", "stop", "--timeout", str(48 + STOP_MARGIN_S - 5)]
    assert stop[-2:] == ["--pid", "$MAINPID"]
    assert int(svc["TimeoutStopSec"][0]) > 40 + 7.5
    assert int(svc["TimeoutStopSec"][0]) == 48 + STOP_MARGIN_S
    assert svc["RestartPreventExitStatus"] == ["2"]  # a bad config is not fixed by restarting
    assert unescape(svc["WorkingDirectory"][0]) == str(config.parent)
    assert svc["EnvironmentFile"] == ["-" + str(config.parent / "adw.env").replace("%", "%%")]
    argv = [unescape(a) for a in shlex.split(svc["ExecStart"][0])]
    assert argv == [str(ADW), "run", "--config", str(config), "--log-format", "json"]
    assert Path(argv[0]).is_absolute() and os.access(argv[0], os.X_OK)
    unit_sections = parse_unit(unit)
    assert unit_sections["Unit"]["After"] == ["network-online.target"]
    assert unit_sections["Unit"]["Wants"] == ["network-online.target"]
    assert svc["NoNewPrivileges"] == ["true"]
    if user:
        assert "User" not in svc and unit_sections["Install"]["WantedBy"] == ["default.target"]
    else:
        assert svc["User"] == [os.environ.get("SUDO_USER") or _whoami()]
        assert svc["ProtectSystem"] == ["full"] and "ProtectHome" not in svc
        assert unit_sections["Install"]["WantedBy"] == ["multi-user.target"]
    assert PLANTED not in unit


def _whoami() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name


def test_run_as_sets_the_user_of_a_system_unit(tmp_path: Path) -> None:
    config = write_config(tmp_path / "cfg")
    proc = adw(tmp_path, "service", "install", "--dry-run", "--run-as", "adwbot", "--config", str(config))
    assert proc.returncode == 0, proc.stderr
    assert parse_unit(proc.stdout)["Service"]["User"] == ["adwbot"]


def test_a_profile_chosen_by_option_or_environment_is_carried_into_the_unit(tmp_path: Path) -> None:
    config = write_config(tmp_path / "cfg")
    with config.open("a") as f:
        f.write('[profiles]\ndefault_profile = "work"\n[profiles.work.providers.dry]\napi_key_env = "W"\n')
        f.write('[profiles.personal.providers.dry]\napi_key_env = "P"\n')

    base = {k: v for k, v in os.environ.items() if k != "ADW_PROFILE"}

    def exec_start(*args: str, env: dict[str, str] | None = None) -> list[str]:
        argv = [str(ADW), *args, "service", "install", "--user", "--dry-run", "--config", str(config)]
        proc = subprocess.run(
            argv, capture_output=True, text=True, env={**base, "HOME": str(tmp_path), **(env or {})}, check=False
        )
        assert proc.returncode == 0, proc.stderr
        (line,) = parse_unit(proc.stdout)["Service"]["ExecStart"]
        return shlex.split(line)

    by_option = exec_start("--profile", "personal")
    assert by_option[by_option.index("run") - 2 :][:3] == ["--profile", "personal", "run"]
    by_env = exec_start(env={"ADW_PROFILE": "personal"})
    assert by_env[by_env.index("run") - 2 :][:3] == ["--profile", "personal", "run"]
    # default_profile is the file's: the service reads it (and again on reload), so no option.
    assert "--profile" not in exec_start()


def test_user_install_writes_into_home_and_refuses_to_overwrite_a_different_unit(tmp_path: Path) -> None:
    config = write_config(tmp_path / "cfg")
    home = tmp_path / "home"
    home.mkdir()
    expected = adw(home, "service", "install", "--user", "--dry-run", "--config", str(config)).stdout

    first = adw(home, "service", "install", "--user", "--config", str(config))
    assert first.returncode == 0, first.stderr
    unit = home / ".config" / "systemd" / "user" / "adw.service"
    assert unit.read_text() == expected
    assert "systemctl --user daemon-reload" in first.stdout and "systemctl --user enable --now adw" in first.stdout
    env_file = config.parent / "adw.env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert "#PLANTED_KEY=" in env_file.read_text() and PLANTED not in env_file.read_text() + first.stdout

    unit.write_text(expected.replace("RestartSec=5", "RestartSec=99"))
    refused = adw(home, "service", "install", "--user", "--config", str(config))
    assert refused.returncode == 1 and "--force" in refused.stderr
    assert "RestartSec=99" in unit.read_text()

    forced = adw(home, "service", "install", "--user", "--force", "--config", str(config))
    assert forced.returncode == 0, forced.stderr
    assert unit.read_text() == expected

    again = adw(home, "service", "install", "--user", "--config", str(config))
    assert again.returncode == 0 and "unchanged" in again.stdout


def test_adw_command_prefers_the_sibling_script_else_runs_the_module(tmp_path: Path) -> None:
    bare = tmp_path / "bare" / "python"
    bare.parent.mkdir()
    assert adw_command(str(bare)) == [str(bare), "-m", "adws.cli"]
    script = bare.parent / "adw"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    assert adw_command(str(bare)) == [str(script)]


def test_service_stop_drains_the_coordinator_then_returns(tmp_path: Path) -> None:
    """`adw service stop --pid P` (the unit's ExecStop) sends SIGTERM and waits for the process to exit."""
    import signal as _signal
    import subprocess as _sp
    import sys as _sys

    marker = tmp_path / "got-term"
    child = _sp.Popen(
        [
            _sys.executable,
            "-c",
            "import signal, sys, time, pathlib\n"
            f"def drain(*_):\n    time.sleep(0.3)\n    pathlib.Path({str(marker)!r}).write_text('x')\n    sys.exit(0)\n"
            "signal.signal(signal.SIGTERM, drain)\nprint('ready', flush=True)\ntime.sleep(60)\n",
        ],
        stdout=_sp.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    proc = _sp.run(
        [str(ADW), "service", "stop", "--pid", str(child.pid), "--timeout", "20"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    assert marker.exists()  # it returned only after the drain finished
    assert child.wait(5) == 0
    child.stdout.close()
    # A process that ignores SIGTERM: stop gives up after the timeout and says so (systemd kills next).
    stubborn = _sp.Popen(
        [
            _sys.executable,
            "-c",
            "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('ready', flush=True)\n"
            "time.sleep(60)\n",
        ],
        stdout=_sp.PIPE,
        text=True,
    )
    assert stubborn.stdout is not None and stubborn.stdout.readline().strip() == "ready"
    proc = _sp.run(
        [str(ADW), "service", "stop", "--pid", str(stubborn.pid), "--timeout", "0.5"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 1 and "still draining" in proc.stderr
    stubborn.send_signal(_signal.SIGKILL)
    stubborn.wait(5)
    stubborn.stdout.close()
