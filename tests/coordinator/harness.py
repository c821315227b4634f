"""Real ``adw run`` processes for the coordinator's process-level tests and benchmarks.

No pytest in here (bench/ imports it too).  Every wait polls a file or the store against a
deadline and fails with a message saying what it waited for; nothing sleeps for a fixed time.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

import psutil
import pytest
import sqlalchemy as sa

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
WORKER = HERE / "worker.py"
ADW = Path(sys.executable).parent / "adw"
PG_ADMIN_URL = os.environ.get("ADW_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")

T = TypeVar("T")


class WaitTimeout(AssertionError):
    pass


def wait_for(check: Callable[[], T | None], timeout_s: float, what: str, interval_s: float = 0.05) -> T:
    """Poll ``check`` until it returns something truthy; its value.  AssertionError on timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(interval_s)


# ---------------------------------------------------------------- processes


def process_gone(pid: int, create_time: float | None = None) -> bool:
    """The process no longer runs: no such pid, the pid was reused, or only a zombie is left.

    A zombie counts as gone: it has exited and holds nothing but its exit status.  Orphans
    (workers of a kill -9'd coordinator) are reparented to PID 1, which reaps when it likes.
    """
    try:
        p = psutil.Process(pid)
        if create_time is not None and abs(p.create_time() - create_time) > 0.01:
            return True
        return p.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def kill_pid(pid: int, create_time: float | None = None) -> None:
    """SIGKILL one process we started (cleanup), unless it already went away."""
    if process_gone(pid, create_time):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


# ---------------------------------------------------------------- worker-side record


@dataclass
class WorkerLog:
    """The append-only file the workers write ``start|done <task_id> <pid>`` lines to."""

    path: Path
    state: Path  # pid files and first-run markers

    def lines(self) -> list[tuple[str, int, int]]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return []
        out = []
        for line in text.splitlines():
            kind, task, pid = line.split()
            out.append((kind, int(task), int(pid)))
        return out

    def done(self) -> Counter[int]:
        return Counter(task for kind, task, _ in self.lines() if kind == "done")

    def started(self) -> Counter[int]:
        return Counter(task for kind, task, _ in self.lines() if kind == "start")

    def pid_of(self, task_id: int) -> int | None:
        f = self.state / f"{task_id}.pid"
        try:
            return int(f.read_text())
        except FileNotFoundError:
            return None

    def all_pids(self) -> set[int]:
        return {pid for _, _, pid in self.lines()}


# ---------------------------------------------------------------- config


@dataclass
class Setup:
    """A shared store and a worker provider; configs for as many coordinators as a test wants."""

    root: Path
    store_url: str
    mode: str = "ok"
    log: WorkerLog = field(init=False)

    def __post_init__(self) -> None:
        state = self.root / "worker-state"
        state.mkdir(parents=True, exist_ok=True)
        self.log = WorkerLog(self.root / "worker.log", state)

    def provider_toml(self, name: str = "w", mode: str | None = None) -> str:
        argv = [
            sys.executable,
            "-I",
            "-S",
            str(WORKER),
            "--log",
            str(self.log.path),
            "--mode",
            mode or self.mode,
            "--state",
            str(self.log.state),
            "{task_id}",
        ]
        return (
            f"[providers.{name}]\n"
            f"command_template = {json.dumps(argv)}\n"
            "timeout = 600\n"
            "idle_timeout = 600\n"
            f"[providers.{name}.models.m]\n"
            'tier = "fast"\n'
            'capabilities = ["code"]\n'
        )

    def config(self, name: str, *, providers: str | None = None, default: str = "w", **coordinator: Any) -> Path:
        """Write ``<root>/<name>/config.toml`` for a coordinator called ``name``; returns its path."""
        settings: dict[str, Any] = {
            "name": name,
            "max_concurrency": 4,
            "heartbeat_s": 0.5,
            "lease_s": 15,
            "dispatch_interval_s": 0.2,
            "reap_interval_s": 1,
            "kill_grace_s": 2,
            "drain_grace_s": 10,
            "retry_base_s": 1,
            "retry_max_s": 1,
            "state_dir": str(self.root / name / "state"),
        }
        settings.update(coordinator)
        body = providers if providers is not None else self.provider_toml()
        body += f'\n[routing]\ndefault_provider = "{default}"\ndefault_model = "m"\n\n[coordinator]\n'
        body += "".join(f"{k} = {json.dumps(v)}\n" for k, v in settings.items())
        body += f"\n[store]\nurl = {json.dumps(self.store_url)}\n"
        path = self.root / name / "config.toml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body)
        return path


# ---------------------------------------------------------------- one coordinator process


class Coord:
    """One ``adw run --log-format json`` process; its JSON log goes to a file next to its config."""

    def __init__(self, config: Path, *, mode: str = "forever", tag: str = "") -> None:
        self.config = config
        self.log_path = config.parent / f"run{tag}-{uuid.uuid4().hex[:6]}.log"
        argv = [str(ADW), "run", "--log-format", "json", "--config", str(config)]
        if mode == "until_idle":
            argv += ["--until-idle", "--idle-wait", "0"]
        elif mode == "once":
            argv.append("--once")
        self._log: IO[bytes] = open(self.log_path, "wb")  # closed in wait() / kill9() / cleanup()
        env = {k: v for k, v in os.environ.items() if k != "ADW_CONFIG"}
        self.proc = subprocess.Popen(
            argv,
            cwd=config.parent,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # a test's signals reach only this process
        )
        self.pid = self.proc.pid
        self.started_at = time.monotonic()

    # -- log
    def records(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                rec = json.loads(line)
                if isinstance(rec, dict):
                    out.append(rec)
        return out

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def find(self, event: str, where: Callable[[dict[str, Any]], bool] = lambda r: True) -> list[dict[str, Any]]:
        return [r for r in self.records() if r.get("event") == event and where(r)]

    def wait_event(
        self,
        event: str,
        timeout_s: float = 20,
        where: Callable[[dict[str, Any]], bool] = lambda r: True,
        count: int = 1,
    ) -> list[dict[str, Any]]:
        def check() -> list[dict[str, Any]] | None:
            found = self.find(event, where)
            if len(found) >= count:
                return found
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"adw run exited ({self.proc.returncode}) before logging {event}:\n{self.output()[-4000:]}"
                )
            return None

        try:
            return wait_for(check, timeout_s, f"{count} x {event} in {self.log_path}")
        except WaitTimeout as exc:
            raise AssertionError(f"{exc}\n--- log tail ---\n{self.output()[-4000:]}") from None

    # -- signals / exit
    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout_s: float) -> int:
        try:
            rc = self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"adw run (pid {self.pid}) still running after {timeout_s:g} s:\n{self.output()[-4000:]}"
            ) from None
        self._log.close()
        return rc

    def kill9(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        self._log.close()

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


@contextmanager
def coordinators() -> Iterator[list[Coord]]:
    """A list to append started coordinators to; on exit, kill any still running."""
    started: list[Coord] = []
    try:
        yield started
    finally:
        for c in started:
            c.cleanup()


def adw(config: Path, *args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "ADW_CONFIG"}
    return subprocess.run(
        [str(ADW), *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env=env,
        check=False,
    )


# ---------------------------------------------------------------- PostgreSQL


def require_postgres(admin_url: str = PG_ADMIN_URL) -> None:
    """Fail the test, saying how to fix it, when the PostgreSQL server is not reachable."""
    admin = sa.create_engine(admin_url, connect_args={"connect_timeout": 5})
    try:
        with admin.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as exc:
        pytest.fail(f"PostgreSQL is not reachable ({exc.orig}); set ADW_TEST_PG_URL", pytrace=False)
    finally:
        admin.dispose()


@contextmanager
def scratch_pg_database(admin_url: str = PG_ADMIN_URL) -> Iterator[str]:
    """A fresh, empty database; yields its URL and drops it (WITH FORCE) afterwards."""
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"adw_coord_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        try:
            yield sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()
