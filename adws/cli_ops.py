"""Operations: ``adw service install`` (a systemd unit) and ``adw doctor`` (one preflight)."""

from __future__ import annotations

import os
import pwd
import select
import signal
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from adw_modules.config.schema import Config
from adw_modules.ops.systemd import (
    ENV_FILE_NAME,
    UnitSpec,
    adw_command,
    program_dirs,
    render_unit,
    search_path,
    stop_timeout_s,
    unit_path,
    valid_unit_name,
)
from adw_modules.routing.providers import ProviderRegistry
from adws.cli import context_for, emit, read_options

if TYPE_CHECKING:
    from adw_modules.ops.doctor import Check


@click.group("service")
def service_group() -> None:
    """Run adw as a systemd service."""


@service_group.command("install")
@click.option("--user", "user_mode", is_flag=True, help="A systemd --user unit (~/.config/systemd/user).")
@click.option("--dry-run", is_flag=True, help="Print the unit that would be written; write nothing.")
@click.option("--name", default="adw", show_default=True, help="Unit name (NAME.service).")
@click.option("--run-as", default=None, help="User= of a system unit (default: the invoking user).")
@click.option(
    "--env-file", type=click.Path(dir_okay=False), default=None, help=f"Default: {ENV_FILE_NAME} by the config."
)
@click.option("--force", is_flag=True, help="Replace an existing unit that differs.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None)
def service_install(
    user_mode: bool,
    dry_run: bool,
    name: str,
    run_as: str | None,
    env_file: str | None,
    force: bool,
    config_path: str | None,
) -> None:
    """Write a systemd unit for `adw run`; prints the systemctl commands to start it."""
    if not valid_unit_name(name):
        raise click.BadParameter(f"{name!r}: letters, digits and :_.@- only, without .service", param_hint="--name")
    config = context_for(config_path).config()
    run_as = None if user_mode else (run_as or invoking_user())
    env_path = Path(env_file).absolute() if env_file else config.base_dir / ENV_FILE_NAME
    text = render_unit(unit_spec(config, name, user_mode, run_as, env_path))
    if run_as == "root":
        click.echo(
            "warning: the service would run as root; claude refuses --dangerously-skip-permissions as root: "
            "use --run-as USER",
            err=True,
        )
    if dry_run:
        click.echo(text, nl=False)
        return
    target = unit_path(name, user_mode, Path.home())
    if target.exists() and target.read_text(encoding="utf-8") != text and not force:
        click.echo(f"error: {target} exists and differs: compare with --dry-run, replace with --force", err=True)
        sys.exit(1)
    unchanged = target.exists() and target.read_text(encoding="utf-8") == text
    if not unchanged:
        _write_atomic(target, text, 0o644)
    created_env = _env_template(env_path, config)
    click.echo(f"{target}: {'unchanged' if unchanged else 'written'}")
    if created_env:
        click.echo(f"{env_path}: created (mode 600); put the API keys there as NAME=value lines")
    else:
        click.echo(f"secrets: {env_path} (KEY=value lines, chmod 600), read by the unit if present")
    ctl, journal = ("systemctl --user", "journalctl --user") if user_mode else ("sudo systemctl", "journalctl")
    click.echo("next:")
    click.echo(f"  adw {''.join(a + ' ' for a in profile_args(config))}doctor --config {config.path.resolve()}")
    click.echo(f"  {ctl} daemon-reload")
    click.echo(f"  {ctl} enable --now {name}")
    if user_mode:
        click.echo(f"  loginctl enable-linger {invoking_user()}   # keep it running without a login session")
    click.echo(f"  {journal} -u {name} -f")


@service_group.command("stop")
@click.option("--pid", type=int, required=True, help="The coordinator's pid (systemd passes $MAINPID).")
@click.option("--timeout", type=float, default=60.0, show_default=True, help="Seconds to wait for the drain.")
def service_stop(pid: int, timeout: float) -> None:
    """SIGTERM the coordinator and wait while it drains (the unit's ExecStop=)."""
    try:
        pidfd = os.pidfd_open(pid)  # readable once the process has exited, child of ours or not
    except ProcessLookupError:
        return
    try:
        os.kill(pid, signal.SIGTERM)
        ready, _, _ = select.select([pidfd], [], [], timeout)
    except ProcessLookupError:
        return
    finally:
        os.close(pidfd)
    if not ready:
        click.echo(f"coordinator {pid} still draining after {timeout:g} s; systemd takes over", err=True)
        sys.exit(1)


def invoking_user() -> str:
    """The user who ran the command (the one behind sudo, if any)."""
    sudo_user = os.environ.get("SUDO_USER")
    if os.geteuid() == 0 and sudo_user:
        return sudo_user
    return pwd.getpwuid(os.geteuid()).pw_name


def unit_spec(config: Config, name: str, user_mode: bool, run_as: str | None, env_path: Path) -> UnitSpec:
    config_file = config.path.resolve()
    registry = ProviderRegistry(config)
    programs = [registry.get_provider(n).program()[0] for n, pc in config.providers.items() if pc.enabled]
    argv = adw_command()
    return UnitSpec(
        name=name,
        exec_argv=(*argv, *profile_args(config), "run", "--config", str(config_file), "--log-format", "json"),
        stop_argv=(*argv, "service", "stop", "--timeout", str(stop_timeout_s(config.service.coordinator) - 5)),
        working_directory=config_file.parent,
        env_file=env_path,
        timeout_stop_s=stop_timeout_s(config.service.coordinator),
        user_mode=user_mode,
        run_as=run_as,
        path_dirs=search_path([str(Path(argv[0]).parent), *program_dirs(programs)]),
    )


def profile_args(config: Config) -> tuple[str, ...]:
    """``--profile NAME`` for the unit when this command's profile was chosen by ``--profile`` or
    ``$ADW_PROFILE`` (neither reaches the service otherwise); a ``default_profile`` needs none,
    the service reads it from the file (and again on reload)."""
    profiles = config.profiles
    if profiles.active is None or profiles.source not in ("--profile", "ADW_PROFILE"):
        return ()
    return ("--profile", profiles.active)


def _write_atomic(path: Path, text: str, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _env_template(path: Path, config: Config) -> bool:
    """Create the secrets file (mode 600) listing the variables this config reads; False if it exists."""
    names = [pc.api_key_env for pc in config.providers.values() if pc.enabled and pc.api_key_env]
    if config.github is not None and not config.github.token_command:
        names.append(config.github.token_env)
    if config.service.store.url_env:
        names.append(config.service.store.url_env)
    lines = ["# Secrets for the adw service: NAME=value, one a line. Keep this file mode 600."]
    lines += [f"#{n}=" for n in dict.fromkeys(names)]
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return True


# ---------------------------------------------------------------- doctor


@click.command("doctor")
@click.option(
    "--env-file", type=click.Path(dir_okay=False), default=None, help=f"Default: {ENV_FILE_NAME} by the config."
)
@read_options
def doctor_cmd(env_file: str | None, config_path: str | None, as_json: bool) -> None:
    """Preflight: config, providers (a real --version run), keys, store, GitHub, disk, clock.  Exit 1 on ✗."""
    from adw_modules.ops.doctor import Probes, exit_code, run_doctor

    context = context_for(config_path)
    checks = run_doctor(Path(context.config_path), Probes(), Path(env_file) if env_file else None, context.profile)
    data = {"ok": exit_code(checks) == 0, "summary": _summary(checks), "checks": [c.to_dict() for c in checks]}
    emit(as_json, data, lambda _: doctor_text(checks))
    sys.exit(exit_code(checks))


def _summary(checks: list[Check]) -> dict[str, Any]:
    from adw_modules.ops.doctor import Status

    return {str(s): sum(1 for c in checks if c.status is s) for s in Status}


def doctor_text(checks: list[Check]) -> str:
    from adw_modules.ops.doctor import SYMBOLS, Status

    lines = []
    for c in checks:
        lines.append(f"{SYMBOLS[c.status]} {c.name}: {c.detail}")
        lines += [f"    - {item}" for item in c.items]
        if c.fix and c.status is not Status.OK:
            lines.append(f"    fix: {c.fix}")
    s = _summary(checks)
    lines.append(f"{s['ok']} ok, {s['warn']} warning(s), {s['fail']} failed")
    return "\n".join(lines)
