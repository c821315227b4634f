"""System programs the operations tests need, installed from Debian's apt when missing.

``ensure_systemd_analyze()`` returns the path of ``systemd-analyze`` (Debian package
``systemd``), ``ensure_chromium()`` Debian's ``chromium`` (the web console's browser tests), running ``apt-get install`` only when the program is absent.  An exclusive
``fcntl`` lock on ``.cache/system-tools.lock`` serialises parallel callers, and the check is
repeated under the lock.  CI may run ``python tests/ops/system_tools.py`` once before pytest.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
LOCK = REPO_ROOT / ".cache" / "system-tools.lock"
APT_TIMEOUT_S = 900


class SystemToolError(RuntimeError):
    """A system program is missing and could not be installed."""


def _apt_install(package: str) -> None:
    apt = shutil.which("apt-get")
    if apt is None:
        raise SystemToolError(f"apt-get not found: install the Debian package {package!r} by hand")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in ([apt, "update"], [apt, "install", "-y", "--no-install-recommends", package]):
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=APT_TIMEOUT_S, check=False)
        if proc.returncode != 0:
            tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
            raise SystemToolError(f"{' '.join(argv[1:])} failed (exit {proc.returncode}): {tail}")


def ensure_program(program: str, package: str) -> str:
    found = shutil.which(program)
    if found:
        return found
    LOCK.parent.mkdir(parents=True, exist_ok=True)
    with LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = shutil.which(program)
        if found is None:
            _apt_install(package)
            found = shutil.which(program)
    if found is None:
        raise SystemToolError(f"{program} is still missing after installing {package}")
    return found


def ensure_systemd_analyze() -> str:
    return ensure_program("systemd-analyze", "systemd")


def ensure_tmux() -> str:
    return ensure_program("tmux", "tmux")


def ensure_chromium() -> str:
    """Debian's Chromium, the browser the web console's Playwright tests drive (Playwright's own
    browser download is not used: machines running the suite may reach only Debian's mirrors)."""
    return ensure_program("chromium", "chromium")


if __name__ == "__main__":
    print(ensure_systemd_analyze())
    print(ensure_tmux())
    print(ensure_chromium())
