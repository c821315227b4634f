"""``adw doctor``: every check reported with how to fix it, real CLI runs, no secret in any output."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command

from adw_modules.ops.doctor import (
    DISK_FAIL_BYTES,
    DISK_WARN_BYTES,
    Check,
    DiskUsage,
    Probes,
    Status,
    exit_code,
    run_doctor,
)
from adw_modules.queue.store import Store, alembic_config

REPO = Path(__file__).resolve().parent.parent.parent
AGENT = REPO / "tools" / "dry-run-agent.py"
ADW = Path(sys.executable).parent / "adw"
PLANTED_ENV = "sk-planted-env-key-0123456789abcdef"
PLANTED_CMD = "sk-planted-cmd-key-fedcba9876543210"
PLANTED_GH = "ghp_plantedGitHubToken0123456789"
GIB = 1024**3
PLENTY = DiskUsage(total=100 * GIB, used=10 * GIB, free=90 * GIB)


def write_config(tmp_path: Path, extra: str = "", providers: str | None = None, timezone: str = "UTC") -> Path:
    dry = f'[providers.dry]\ncommand_template = ["{AGENT}", "--model", "{{model}}"]\n[providers.dry.models.m1]\n'
    path = tmp_path / "config.toml"
    path.write_text(
        (providers if providers is not None else dry)
        + f'[routing]\ndefault_provider = "dry"\ndefault_model = "m1"\ntimezone = "{timezone}"\n'
        + f'[coordinator]\nstate_dir = "{tmp_path / "state"}"\n'
        + f'[store]\nurl = "sqlite:///{tmp_path / "adw.db"}"\n'
        + extra
    )
    return path


def probes(**kw: object) -> Probes:
    base: dict[str, object] = {"environ": {"PATH": os.environ["PATH"]}, "disk_usage": lambda p: PLENTY}
    base.update(kw)
    return Probes(**base)  # type: ignore[arg-type]


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


def script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


# ---------------------------------------------------------------- the example config, through the CLI


def test_example_config_reports_missing_claude_and_keys_and_runs_the_dry_run_agent(tmp_path: Path) -> None:
    path_env = f"{ADW.parent}:/usr/bin:/bin"
    assert shutil.which("claude", path=path_env) is None  # precondition: claude is not installed there
    env = {"PATH": path_env, "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    proc = subprocess.run(
        [str(ADW), "doctor", "--json", "--config", str(REPO / "config.toml")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    data = json.loads(proc.stdout)
    checks = {c["name"]: c for c in data["checks"]}
    assert data["ok"] is False and data["summary"]["fail"] >= 2

    claude = checks["claude-cli: program"]
    assert claude["status"] == "fail" and "not found" in claude["detail"]
    assert "npm install -g @anthropic-ai/claude-code" in claude["fix"]
    key = checks["openrouter: key"]
    assert key["status"] == "fail" and "OPENROUTER_API_KEY" in key["detail"]
    assert "OPENROUTER_API_KEY=" in key["fix"] and "adw.env" in key["fix"]
    # A real `dry-run-agent.py --version` run.
    dry = checks["dry-run: program"]
    assert dry["status"] == "ok" and "dry-run-agent 1.0" in dry["detail"]
    assert checks["dry-run: key"]["status"] == "ok"
    assert checks["claude-openrouter"]["status"] == "ok" and "disabled" in checks["claude-openrouter"]["detail"]

    text = subprocess.run(
        [str(ADW), "doctor", "--config", str(REPO / "config.toml")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    ).stdout
    assert "✓ dry-run: program" in text and "✗ claude-cli: program" in text and "✗ openrouter: key" in text
    assert "    fix: install it (npm install -g @anthropic-ai/claude-code)" in text


def test_a_broken_config_exits_1_with_every_error_listed(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[providers.a]\nenabled = true\n[routing]\ndefault_provider = "zz"\ntimezone = "Mars/Base"\n')
    proc = subprocess.run(
        [str(ADW), "doctor", "--config", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("✗ config:")
    errors = [line for line in lines if line.startswith("    - ")]
    assert any("command_template" in e for e in errors) and any("Mars/Base" in e for e in errors)
    assert any("adw config validate" in line for line in lines)


# ---------------------------------------------------------------- secrets


def test_no_secret_reaches_any_output(tmp_path: Path, refused_port: int) -> None:
    # --version prints the key variable as the agent sees it: doctor must not hand keys to it.
    agent = script(tmp_path / "agent", 'echo "agent 1.0 key=${PLANTED_KEY:-absent}"\n')
    # A CLI that prints a key it knows by other means (its own login): masked in the report.
    chatty = script(tmp_path / "chatty", f'echo "chatty 2.0 logged in with {PLANTED_CMD}"\n')
    secret_cmd = json.dumps([sys.executable, "-c", f"print({PLANTED_CMD!r})"])
    providers = (
        f'[providers.dry]\ncommand_template = ["{agent}"]\nrequires_api_key = true\napi_key_env = "PLANTED_KEY"\n'
        "[providers.dry.models.m1]\n"
        f'[providers.vault]\ncommand_template = ["{chatty}"]\napi_key_command = {secret_cmd}\n'
    )
    github = f'[github]\nrepositories = ["acme/app"]\ntoken_env = "PLANTED_GH"\nbase_url = "http://127.0.0.1:{refused_port}"\n'
    config = write_config(tmp_path, extra=github, providers=providers)
    env_file = tmp_path / "adw.env"
    env_file.write_text(f"# keys\nPLANTED_KEY={PLANTED_ENV}\nPLANTED_GH='{PLANTED_GH}'\n")
    env_file.chmod(0o644)
    runs = [
        subprocess.run(
            [str(ADW), "doctor", *args, "--config", str(config)],
            capture_output=True,
            text=True,
            env={**os.environ, "HOME": str(tmp_path)},
            timeout=60,
            check=False,
        )
        for args in (["--json"], [])
    ]
    data = json.loads(runs[0].stdout)
    checks = {c["name"]: c for c in data["checks"]}
    assert checks["env file"]["status"] == "warn" and checks["env file"]["fix"] == f"chmod 600 {env_file}"
    assert checks["dry: key"]["status"] == "ok" and "PLANTED_KEY is set" in checks["dry: key"]["detail"]
    assert checks["vault: key"]["status"] == "ok" and "api_key_command works" in checks["vault: key"]["detail"]
    assert checks["dry: program"]["detail"].endswith("agent 1.0 key=absent")
    assert checks["vault: program"]["detail"].endswith("chatty 2.0 logged in with [REDACTED]")
    token = checks["github: token"]
    assert token["status"] == "fail" and "unreachable" in token["detail"]
    for out in [r.stdout + r.stderr for r in runs]:
        for planted in (PLANTED_ENV, PLANTED_CMD, PLANTED_GH):
            assert planted not in out


# ---------------------------------------------------------------- store


def _revision(db: Path) -> str | None:
    with sqlite3.connect(db) as conn:
        try:
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        except sqlite3.OperationalError:
            return None
    return None if row is None else str(row[0])


def test_store_states_are_reported_without_migrating(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    db = tmp_path / "adw.db"
    url = f"sqlite:///{db}"
    missing = by_name(run_doctor(config, probes()))["store"]
    assert missing.status is Status.WARN and "does not exist yet" in missing.detail and not db.exists()

    db.touch()  # an empty SQLite file: reachable, no schema
    empty = by_name(run_doctor(config, probes()))["store"]
    assert empty.status is Status.WARN and "no adw schema yet" in empty.detail
    assert empty.fix is not None and "adw run" in empty.fix
    assert db.stat().st_size == 0

    Store.open(url).close()
    at_head = _revision(db)
    ok = by_name(run_doctor(config, probes()))["store"]
    assert ok.status is Status.OK and f"schema at head ({at_head})" in ok.detail

    command.downgrade(alembic_config(url), "0001")
    behind = by_name(run_doctor(config, probes()))["store"]
    assert behind.status is Status.WARN and f"at 0001, behind head {at_head}" in behind.detail
    assert _revision(db) == "0001"  # doctor did not migrate

    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    checks = run_doctor(config, probes())
    newer = by_name(checks)["store"]
    assert newer.status is Status.FAIL and "unknown to this adw" in newer.detail


def test_store_url_env_unset_fails_with_the_fix(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    config.write_text(config.read_text().replace(f'url = "sqlite:///{tmp_path / "adw.db"}"', 'url_env = "ADW_PG"'))
    store = by_name(run_doctor(config, probes()))["store"]
    assert store.status is Status.FAIL and "ADW_PG" in store.detail
    assert store.fix is not None and "ADW_PG=postgresql+psycopg://" in store.fix


# ---------------------------------------------------------------- disk, clock, programs, GitHub


@pytest.mark.parametrize(
    ("free", "status"),
    [(DISK_FAIL_BYTES - 1, Status.FAIL), (DISK_WARN_BYTES - 1, Status.WARN), (DISK_WARN_BYTES, Status.OK)],
)
def test_disk_thresholds(tmp_path: Path, free: int, status: Status) -> None:
    config = write_config(tmp_path)
    asked: list[Path] = []

    def usage(p: Path) -> DiskUsage:
        asked.append(p)
        return DiskUsage(total=100 * GIB, used=100 * GIB - free, free=free)

    checks = run_doctor(config, probes(disk_usage=usage))
    disk = by_name(checks)["disk"]
    assert disk.status is status
    assert asked == [tmp_path]  # state dir (not created yet) and the store's dir share that filesystem
    assert (disk.fix is None) == (status is Status.OK)
    assert exit_code(checks) == (1 if status is Status.FAIL else 0)


def test_timezone_shows_the_local_time_and_ntp_state_from_timedatectl(tmp_path: Path) -> None:
    config = write_config(tmp_path, timezone="Asia/Tokyo")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    now = dt.datetime(2025, 1, 15, 12, 0, tzinfo=dt.UTC)
    path = f"{bin_dir}:/usr/bin:/bin"

    def clock(answer: str | None) -> dict[str, Check]:
        if answer is not None:
            script(bin_dir / "timedatectl", f'[ "$*" = "show -p NTPSynchronized --value" ] && echo {answer}\n')
        return by_name(run_doctor(config, probes(environ={"PATH": path}, now=lambda: now)))

    checks = clock("no")
    assert checks["timezone"].status is Status.OK and "2025-01-15 21:00 JST" in checks["timezone"].detail
    assert "hour 21" in checks["timezone"].detail
    assert checks["clock sync"].status is Status.WARN and "not NTP-synchronised" in checks["clock sync"].detail
    assert clock("yes")["clock sync"].status is Status.OK
    script(bin_dir / "timedatectl", "echo 'System has not been booted with systemd' >&2; exit 1\n")
    unknown = clock(None)["clock sync"]
    assert unknown.status is Status.WARN and "could not be checked" in unknown.detail


def test_a_program_that_fails_or_hangs_on_version_is_a_failure(tmp_path: Path) -> None:
    broken = script(tmp_path / "broken", "echo 'Error: cannot find module xyz' >&2; exit 3\n")
    hangs = script(tmp_path / "hangs", "exec sleep 30\n")
    no_flag = script(tmp_path / "no-flag", "echo 'error: unrecognized arguments: --version' >&2; exit 2\n")
    plain = tmp_path / "plain"
    plain.write_text("#!/bin/sh\n")
    providers = "".join(
        f'[providers.{n}]\ncommand_template = ["{p}"]\n[providers.{n}.models.m1]\n'
        for n, p in (("dry", broken), ("hangs", hangs), ("plain", plain), ("noflag", no_flag))
    )
    checks = by_name(run_doctor(write_config(tmp_path, providers=providers), probes(version_timeout_s=3.0)))
    assert checks["dry: program"].status is Status.FAIL
    assert "exited 3: Error: cannot find module xyz" in checks["dry: program"].detail
    assert checks["hangs: program"].status is Status.FAIL and "within 3 s" in checks["hangs: program"].detail
    assert checks["plain: program"].status is Status.FAIL and checks["plain: program"].fix == f"chmod +x {plain}"
    # A CLI without a --version flag started and answered: it runs, and doctor says so calmly.
    assert checks["noflag: program"].status is Status.OK and "no --version flag" in checks["noflag: program"].detail


def test_github_token_missing_and_server_unreachable(tmp_path: Path, refused_port: int) -> None:
    gh = f'[github]\nrepositories = ["acme/app"]\nbase_url = "http://127.0.0.1:{refused_port}"\n'
    config = write_config(tmp_path, extra=gh)
    missing = by_name(run_doctor(config, probes()))["github: token"]
    assert missing.status is Status.FAIL and "GITHUB_TOKEN is not set" in missing.detail
    assert missing.fix is not None and "GITHUB_TOKEN=" in missing.fix and "token_command" in missing.fix

    env = {"PATH": os.environ["PATH"], "GITHUB_TOKEN": PLANTED_GH}
    down = by_name(run_doctor(config, probes(environ=env)))["github: token"]
    assert down.status is Status.FAIL and "unreachable" in down.detail and PLANTED_GH not in down.detail
