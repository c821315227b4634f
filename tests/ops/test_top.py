"""``adw top`` in a real terminal (tmux), watching a real ``adw run`` whose worker stalls
(it reports some work, then goes silent).

The pane is read with ``tmux capture-pane``; every wait polls it against a deadline.  After
``top`` exits, the same pane runs ``stty -a`` so the test sees whether the terminal mode was
restored (top puts it in cbreak mode to read ``q``).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from adw_modules.queue.store import Store
from adw_modules.queue.tasks import Attempt
from adw_modules.sources.local import enqueue_local
from tests.coordinator.harness import kill_pid, wait_for
from tests.ops.conftest import ADW, provider_toml

TITLE = "Investigate the hanging build"

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux (apt-get install tmux)")


class Tmux:
    """A private tmux server (own socket, no user config); ``kill()`` ends it and its panes."""

    def __init__(self) -> None:
        self.socket = f"adw-test-{uuid.uuid4().hex[:8]}"
        # COLUMNS / LINES (set in pytest-xdist's workers) would override the pane's own size.
        self.env = {k: v for k, v in os.environ.items() if k not in ("ADW_CONFIG", "TMUX", "COLUMNS", "LINES")}
        self.env["TERM"] = "xterm-256color"
        self.path: Path | None = None  # the server's socket file, once started

    def __call__(self, *args: str) -> str:
        out = subprocess.run(
            ["tmux", "-L", self.socket, "-f", "/dev/null", *args],
            capture_output=True,
            text=True,
            timeout=10,
            env=self.env,
            check=True,
        )
        return out.stdout

    def start(self, name: str, command: str) -> None:
        self("new-session", "-d", "-s", name, "-x", "160", "-y", "50", command)
        self.path = Path(self("display-message", "-p", "#{socket_path}").strip())

    def screen(self, name: str) -> str:
        return self("capture-pane", "-p", "-t", name)

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=10, check=False)
        if self.path is not None:
            self.path.unlink(missing_ok=True)


@pytest.fixture
def tmux() -> Iterator[Tmux]:
    t = Tmux()
    yield t
    t.kill()


@pytest.fixture
def hanging_run(tmp_path: Path, write_config: Callable[..., Path]) -> Iterator[tuple[Path, Attempt]]:
    """A real ``adw run`` with one attempt that stays running; (config, that attempt)."""
    url = f"sqlite:///{tmp_path / 'adw.db'}"
    config = write_config(
        provider_toml("a", env='ADW_DRY_RUN_FAIL = "stall"', extra="max_concurrency = 1"),  # the 2nd task waits
        '[routing]\ndefault_provider = "a"\ndefault_model = "m1"\n',
        url,
    )
    store = Store.open(url)
    enqueue_local(store, TITLE, priority="high")
    enqueue_local(store, "waits its turn", priority="low")
    log = open(tmp_path / "run.log", "wb")  # closed below, after the process
    env = {k: v for k, v in os.environ.items() if k != "ADW_CONFIG"}
    proc = subprocess.Popen(
        [str(ADW), "run", "--config", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    att: Attempt | None = None
    try:

        def running() -> Attempt | None:
            assert proc.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
            found = [a for a in store.running_attempts() if a.pid is not None]
            return found[0] if found else None

        att = wait_for(running, 20, "the hanging attempt to run")
        yield config, att
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # drains: kills the hung worker after drain_grace_s
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        log.close()
        if att is not None and att.pid is not None:
            kill_pid(att.pid, att.create_time)
        store.close()


def top_command(config: Path, *extra: str) -> str:
    top = shlex.join([str(ADW), "top", "--config", str(config), *extra])
    # After top: its exit status, then the terminal's mode as top left it; then wait to be killed.
    return f"{top}; echo TOP-EXITED $?; stty -a; exec cat"


def row_of(screen: str, needle: str) -> str | None:
    return next((line for line in screen.splitlines() if needle in line), None)


def cells(row: str) -> list[str]:
    """The cells of a table row drawn with box characters."""
    return [c.strip() for c in row.strip().strip("│").split("│")]


def exited(screen: str) -> str | None:
    """The screen once top has exited and stty has printed the terminal's mode."""
    return screen if "TOP-EXITED" in screen and "icanon" in screen else None


def terminal_restored(screen: str) -> bool:
    words = set(re.split(r"[\s;]+", screen.split("TOP-EXITED", 1)[1]))
    return {"icanon", "echo"} <= words and not {"-icanon", "-echo"} & words


def test_top_shows_the_running_attempt_refreshes_and_quits_on_q(tmux: Tmux, hanging_run: tuple[Path, Attempt]) -> None:
    config, att = hanging_run
    tmux.start("top", top_command(config, "--interval", "0.5"))

    first = wait_for(lambda: row_of(tmux.screen("top"), TITLE), 20, "top to show the running attempt")
    task, title, target, _elapsed, pid, _tokens = cells(first)
    assert (task, title, target, pid) == (f"{att.task_id} #1", TITLE, "a/m1", str(att.pid))
    # The tokens the worker reported so far, stored by the next heartbeat (none before it).
    tokens = wait_for(
        lambda: (row := row_of(tmux.screen("top"), TITLE)) is not None and cells(row)[5] != "-" and cells(row)[5],
        10,
        "top to show the running attempt's tokens so far",
    )
    with Store.open(f"sqlite:///{config.parent / 'adw.db'}") as store:
        (live,) = store.running_attempts()
    assert live.output_tokens == 4 and tokens == f"{live.input_tokens + live.output_tokens:,}"
    screen = tmux.screen("top")
    assert re.search(r"running\s.*\s1\s", screen) and re.search(r"queued\s.*\s1\s", screen), screen
    assert re.search(r"\ba\s.*\bclosed\b", screen), screen  # the provider table

    def elapsed(row: str) -> str:
        return cells(row)[3]

    assert re.fullmatch(r"\d+s", elapsed(first)), first
    before = elapsed(first)
    wait_for(
        lambda: (row := row_of(tmux.screen("top"), TITLE)) is not None and elapsed(row) != before,
        10,
        f"the elapsed time ({before}) to change",
    )

    tmux("send-keys", "-t", "top", "q")
    after = wait_for(lambda: exited(tmux.screen("top")), 10, "top to exit on q")
    assert "TOP-EXITED 0" in after
    assert TITLE not in after  # it left the alternate screen
    assert terminal_restored(after), after


def test_top_exits_cleanly_on_ctrl_c_and_once_prints_one_frame(tmux: Tmux, hanging_run: tuple[Path, Attempt]) -> None:
    config, att = hanging_run
    tmux.start("top", top_command(config))
    wait_for(lambda: row_of(tmux.screen("top"), TITLE), 20, "top to show the running attempt")
    tmux("send-keys", "-t", "top", "C-c")
    after = wait_for(lambda: exited(tmux.screen("top")), 10, "top to exit on Ctrl-C")
    assert "TOP-EXITED 0" in after and "Traceback" not in after
    assert terminal_restored(after), after

    env = {k: v for k, v in os.environ.items() if k != "ADW_CONFIG"} | {"COLUMNS": "160"}
    out = subprocess.run(
        [str(ADW), "top", "--once", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    row = row_of(out.stdout, TITLE)
    assert row is not None and cells(row)[2] == "a/m1" and cells(row)[4] == str(att.pid), out.stdout
    assert "\x1b[?1049h" not in out.stdout  # no alternate screen when printing one frame
