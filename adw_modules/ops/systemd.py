"""A systemd unit for ``adw run``: rendering only (``adw service install`` writes it).

The unit never holds a secret: keys and tokens come from an ``EnvironmentFile`` (mode 0600)
that the operator fills.  Stopping keeps both promises, the drain and "no agent outlives the
service": ``ExecStop=`` runs ``adw service stop --pid $MAINPID``, which sends SIGTERM to the
coordinator alone and waits while it drains (running attempts get ``drain_grace_s``, then
it kills its own workers); only then does systemd apply ``KillMode=control-group`` to
whatever is left in the unit's cgroup (SIGTERM, and SIGKILL when ``TimeoutStopSec`` runs
out).  ``KillMode=control-group`` alone would SIGTERM every agent at the same moment as the
coordinator and end their attempts before the drain could let them finish.
"""

from __future__ import annotations

import math
import os
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from adw_modules.config.service import CoordinatorConfig

# Seconds systemd waits past drain + kill grace for the store writes and the exit.
STOP_MARGIN_S = 15
RESTART_SEC = 5
# ``adw run`` exits 2 when the config is unusable: restarting cannot fix that.
EXIT_CONFIG = 2
ENV_FILE_NAME = "adw.env"
# systemd's own PATH for services; agent CLIs installed elsewhere are added in front.
SYSTEMD_DEFAULT_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")

# Hardening that leaves agent CLIs working: they keep HOME (logins, git config), write their
# workdir and the state dir, run git and node.  Deliberately absent: ProtectHome (agents read
# ~), ProtectSystem=strict (workdirs anywhere), MemoryDenyWriteExecute (V8's JIT needs it),
# RestrictNamespaces (agent sandboxes such as bubblewrap use namespaces).
SYSTEM_HARDENING = (
    ("NoNewPrivileges", "true"),
    ("PrivateTmp", "true"),
    ("ProtectSystem", "full"),
    ("ProtectKernelTunables", "true"),
    ("ProtectKernelModules", "true"),
    ("ProtectKernelLogs", "true"),
    ("ProtectControlGroups", "true"),
    ("ProtectClock", "true"),
    ("ProtectHostname", "true"),
    ("RestrictSUIDSGID", "true"),
    ("RestrictRealtime", "true"),
    ("LockPersonality", "true"),
)


@dataclass(frozen=True)
class UnitSpec:
    name: str
    exec_argv: tuple[str, ...]  # absolute program first
    stop_argv: tuple[str, ...]  # ExecStop=, before "--pid $MAINPID"
    working_directory: Path
    env_file: Path
    timeout_stop_s: int
    user_mode: bool  # a systemd --user unit
    run_as: str | None = None  # User= of a system unit
    path_dirs: tuple[str, ...] = field(default=SYSTEMD_DEFAULT_PATH)
    description: str = "adw coordinator: labelled issues to AI coding-agent CLIs"


def stop_timeout_s(coordinator: CoordinatorConfig) -> int:
    """TimeoutStopSec: longer than the whole drain (grace + kill grace) plus a margin."""
    return math.ceil(coordinator.drain_grace_s + coordinator.kill_grace_s) + STOP_MARGIN_S


def adw_command(executable: str | None = None) -> list[str]:
    """The absolute argv that starts ``adw`` in this environment.

    The ``adw`` script next to the interpreter (a venv's bin/), else ``python -m adws.cli``.
    The interpreter path is kept as is (not resolved): resolving a venv's python symlink
    would leave the venv and its dependencies behind.
    """
    python = Path(executable or sys.executable).absolute()
    script = python.parent / "adw"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [str(python), "-m", "adws.cli"]


def unit_path(name: str, user_mode: bool, home: Path) -> Path:
    if user_mode:
        return home / ".config" / "systemd" / "user" / f"{name}.service"
    return Path("/etc/systemd/system") / f"{name}.service"


def search_path(program_dirs: Iterable[str]) -> tuple[str, ...]:
    """PATH for the unit: the given directories (venv, agent CLIs) first, then systemd's default."""
    out: list[str] = []
    for d in [*program_dirs, *SYSTEMD_DEFAULT_PATH]:
        if d and d not in out:
            out.append(d)
    return tuple(out)


_NAME = re.compile(r"^[A-Za-z0-9:_.@-]+$")


def valid_unit_name(name: str) -> bool:
    return bool(_NAME.match(name)) and not name.endswith(".service")


def quote_exec_arg(arg: str) -> str:
    """One argv element for ExecStart=: quoted when needed, with specifiers and variables escaped."""
    escaped = arg.replace("%", "%%").replace("$", "$$")
    if escaped and not re.search(r"[\s\"'\\;]", escaped):
        return escaped
    return '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _quote_assignment(name: str, value: str) -> str:
    """NAME=value for Environment=: quoted when it holds blanks or quotes (no $ expansion there)."""
    text = _escape_value(f"{name}={value}")
    if not re.search(r"[\s\"'\\]", text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _escape_value(value: str) -> str:
    return value.replace("%", "%%")


def render_unit(spec: UnitSpec) -> str:
    exec_start = " ".join(quote_exec_arg(a) for a in spec.exec_argv)
    lines = [
        f"# {spec.name}.service, written by `adw service install`.",
        "# Secrets live in EnvironmentFile (KEY=value lines, chmod 600), never in this unit.",
        "[Unit]",
        f"Description={_escape_value(spec.description)}",
        "After=network-online.target",
        "Wants=network-online.target",
        "",
        "[Service]",
        "Type=exec",
    ]
    if not spec.user_mode and spec.run_as:
        lines.append(f"User={spec.run_as}")
    lines += [
        f"WorkingDirectory={_escape_value(str(spec.working_directory))}",
        f"Environment={_quote_assignment('PATH', ':'.join(spec.path_dirs))}",
        f"EnvironmentFile=-{_escape_value(str(spec.env_file))}",
        f"ExecStart={exec_start}",
        # $MAINPID is expanded by systemd; everything else is quoted like ExecStart.
        "ExecStop=" + " ".join(quote_exec_arg(a) for a in spec.stop_argv) + " --pid $MAINPID",
        "ExecReload=kill -HUP $MAINPID",
        "Restart=on-failure",
        f"RestartSec={RESTART_SEC}",
        f"RestartPreventExitStatus={EXIT_CONFIG}",
        "# ExecStop drained the coordinator; then every process left in the cgroup gets",
        "# SIGTERM, and SIGKILL once TimeoutStopSec runs out: no agent outlives the service.",
        "KillMode=control-group",
        "KillSignal=SIGTERM",
        "SendSIGKILL=yes",
        f"TimeoutStopSec={spec.timeout_stop_s}",
    ]
    if spec.user_mode:
        lines.append("NoNewPrivileges=true")
    else:
        lines += [f"{k}={v}" for k, v in SYSTEM_HARDENING]
    lines += [
        "",
        "[Install]",
        f"WantedBy={'default.target' if spec.user_mode else 'multi-user.target'}",
        "",
    ]
    return "\n".join(lines)


def program_dirs(programs: Sequence[str | None]) -> list[str]:
    """Directories of resolved agent programs (so the unit's PATH finds them and their node)."""
    out = []
    for p in programs:
        if p and not p.endswith(".py"):
            out.append(str(Path(p).parent))
    return out
