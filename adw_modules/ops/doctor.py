"""``adw doctor``: one preflight of everything the service needs, as data.

Each check is a ``Check`` with a status (ok / warn / fail), what was found, and how to fix
it.  Nothing here changes anything: the store is opened read-only (SQLite) and never
migrated, labels are not created, and secret values are used only to test them — a
``Redactor`` holding every value seen masks them in whatever a child program printed.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import stat
import subprocess
import sys
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, NamedTuple

import sqlalchemy as sa
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from github import GithubException

from adw_modules.config.schema import Config, ConfigError, load_config
from adw_modules.ops.profiles import references
from adw_modules.ops.redact import Redactor
from adw_modules.ops.secrets import SecretError, Secrets
from adw_modules.ops.store_location import store_location_problem
from adw_modules.ops.systemd import ENV_FILE_NAME
from adw_modules.queue.store import alembic_config
from adw_modules.routing.providers import Provider, ProviderRegistry
from adw_modules.sources.github.auth import github_token
from adw_modules.sources.github.client import Backoff, GitHubClient

DISK_WARN_BYTES = 1024**3  # 1 GiB
DISK_FAIL_BYTES = 200 * 1024**2  # 200 MiB
VERSION_TIMEOUT_S = 10.0
PROBE_TIMEOUT_S = 5.0
# What a CLI says when it has no --version flag (it started, so it works).
_NO_VERSION_FLAG = (
    "unrecognized argument",
    "unknown option",
    "no such option",
    "invalid option",
    "unknown flag",
    "usage:",  # it parsed its arguments and asked for others
)
INSTALL_HINTS = {
    "claude": "npm install -g @anthropic-ai/claude-code",
    "codex": "npm install -g @openai/codex",
    "gemini": "npm install -g @google/gemini-cli",
    "opencode": "npm install -g opencode-ai",
}


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


SYMBOLS = {Status.OK: "✓", Status.WARN: "⚠", Status.FAIL: "✗"}


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str | None = None
    items: tuple[str, ...] = ()  # e.g. every config error

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": str(self.status),
            "detail": self.detail,
            "fix": self.fix,
            "items": list(self.items),
        }


class DiskUsage(NamedTuple):
    total: int
    used: int
    free: int


@dataclass
class Probes:
    """The outside world, injectable: environment, disk usage, clock."""

    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    disk_usage: Callable[[Path], DiskUsage] = lambda p: DiskUsage(*shutil.disk_usage(p))
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)
    version_timeout_s: float = VERSION_TIMEOUT_S


def exit_code(checks: list[Check]) -> int:
    return 1 if any(c.status is Status.FAIL for c in checks) else 0


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=value lines as systemd's EnvironmentFile reads them (comments, blank lines, quotes)."""
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")) or "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        out[key.strip()] = value
    return out


def run_doctor(
    config_path: Path, probes: Probes, env_file: Path | None = None, profile: str | None = None
) -> list[Check]:
    """Every check, in order; the environment is the service's: ours plus the env file."""
    env_path = env_file or Path(config_path).resolve().parent / ENV_FILE_NAME
    env_check, extra = _env_file(env_path)
    environ = {**probes.environ, **extra}  # ADW_PROFILE may be set in the env file, as for the unit
    try:
        config = load_config(config_path, profile=profile, environ=environ)
    except ConfigError as exc:
        return [
            Check(
                "config",
                Status.FAIL,
                f"{config_path}: {len(exc.issues)} problem(s)",
                f"fix each problem listed, then: adw config validate --config {config_path}",
                tuple(exc.issues),
            )
        ]
    checks = [
        Check(
            "config", Status.OK, f"{config.path}: {len(config.providers)} providers, {len(config.routing.rules)} rules"
        )
    ]
    checks.append(env_check)
    redact = Redactor(extra.values())
    if config.profiles.profiles:
        checks.append(_profile(config, environ, redact))
    checks += _providers(config, environ, env_path, redact, probes.version_timeout_s)
    checks.append(_store(config, environ, env_path, redact))
    checks += _github(config, environ, env_path, redact)
    checks += _disk(config, environ, probes.disk_usage)
    checks += _clock(config, environ, probes.now())
    return checks


def _env_file(path: Path) -> tuple[Check, dict[str, str]]:
    name = "env file"
    if not path.exists():
        return Check(name, Status.OK, f"none at {path}; keys come from the environment"), {}
    try:
        values = read_env_file(path)
    except (OSError, UnicodeDecodeError) as exc:
        return Check(name, Status.FAIL, f"{path}: cannot read ({exc})", f"chmod 600 {path}; check its owner"), {}
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        fix = f"chmod 600 {path}"
        return Check(name, Status.WARN, f"{path} is readable by others (mode {mode:o})", fix), values
    return Check(name, Status.OK, f"{path}: {len(values)} variable(s), mode {mode:o}"), values


# ---------------------------------------------------------------- providers


def _providers(
    config: Config, environ: dict[str, str], env_path: Path, redact: Redactor, timeout_s: float
) -> list[Check]:
    # Every key the registry fetches is added to ``redact``.
    registry = ProviderRegistry(config, environ=environ, redactor=redact)
    enabled = [name for name, pc in config.providers.items() if pc.enabled]
    # Every key first, so each value seen is masked in whatever the CLIs print below.
    keys = {name: _key(registry, name, env_path, redact) for name in enabled}
    secret_vars = {v for pc in config.providers.values() for v in (pc.api_key_env, pc.pass_api_key_as) if v}
    child_env = {k: v for k, v in environ.items() if k not in secret_vars}
    out: list[Check] = []
    for name in config.providers:
        if name not in keys:
            out.append(Check(name, Status.OK, "disabled (enabled = false): not checked"))
            continue
        provider = registry.get_provider(name)
        out += [_program(provider, environ.get("PATH"), child_env, redact, timeout_s), keys[name]]
    return out


def _profile(config: Config, environ: dict[str, str], redact: Redactor) -> Check:
    """The active credential profile and whether each reference it names resolves."""
    table = config.profiles
    if table.active is None:
        names = ", ".join(table.profiles)
        return Check("profile", Status.OK, f"none active (defined: {names}); each provider's own references")
    refs = [r for r in references(config, Secrets(environ, redact)) if r.profile == table.active]
    bad = [f"{r.target}: {r.key} = {r.shown}: {r.why}" for r in refs if not r.resolves]
    detail = f"{table.active} (from {table.source}): {len(refs) - len(bad)} of {len(refs)} reference(s) resolve"
    if bad:
        fix = "set the variables / fix the commands named, or choose another profile (adw --profile NAME)"
        return Check("profile", Status.FAIL, detail, fix, tuple(bad))
    return Check("profile", Status.OK, detail)


def _key(registry: ProviderRegistry, name: str, env_path: Path, redact: Redactor) -> Check:
    pc = registry.get_provider(name).config
    check = f"{name}: key"
    if pc.api_key_command:
        try:
            registry.api_key(name)
        except SecretError as exc:
            cmd = " ".join(pc.api_key_command)
            return Check(
                check,
                Status.FAIL,
                redact(str(exc)),
                f"run `{cmd}` as the service user: it must print the key on stdout",
            )
        return Check(check, Status.OK, "api_key_command works (value not shown)")
    if pc.api_key_env is None:
        return Check(check, Status.OK, "needs no API key")
    where = f"put {pc.api_key_env}=… in {env_path} (chmod 600; the service reads it) or export it"
    try:
        value = registry.api_key(name)
    except SecretError as exc:
        return Check(check, Status.FAIL, str(exc), where)
    if value is None:
        own = pc.command_template[0]
        return Check(
            check,
            Status.WARN,
            f"{pc.api_key_env} not set: {own} must be logged in by itself",
            f"{where}, or log {own} in as the service user",
        )
    return Check(check, Status.OK, f"{pc.api_key_env} is set (value not shown)")


def _program(
    provider: Provider, path_env: str | None, child_env: dict[str, str], redact: Redactor, timeout_s: float
) -> Check:
    name = f"{provider.name}: program"
    program, why = provider.program(path_env)
    if program is None:
        prog = provider.config.command_template[0]
        hint = INSTALL_HINTS.get(Path(prog).name)
        fix = (f"install it ({hint}) " if hint else "install it ") + "or put its directory on PATH"
        if "not executable" in (why or ""):
            fix = f"chmod +x {provider.base_dir / prog}"
        return Check(name, Status.FAIL, why or "not found", fix)
    argv = [sys.executable, program, "--version"] if program.endswith(".py") else [program, "--version"]
    env = {**child_env, **provider.config.env}
    shown = " ".join(Path(a).name if i == 0 else a for i, a in enumerate(argv))
    try:
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env=env,
            stdin=subprocess.DEVNULL,
            cwd=provider.base_dir,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return Check(
            name,
            Status.FAIL,
            f"{program}: `{shown}` gave no answer within {timeout_s:g} s",
            f"run `{program} --version` by hand as the service user",
        )
    except OSError as exc:
        return Check(
            name,
            Status.FAIL,
            f"{program}: cannot start: {exc.strerror or exc}",
            f"check that {program} is a program for this machine (shebang, architecture)",
        )
    out = redact(proc.stdout.strip())
    err = redact(proc.stderr.strip())
    if proc.returncode == 0:
        first = (out or err).splitlines()[0][:100] if (out or err) else "no output"
        return Check(name, Status.OK, f"{program}: {first}")
    said = (err or out).splitlines()[-1][:160] if (err or out) else "no output"
    if any(s in (err + out).lower() for s in _NO_VERSION_FLAG):
        return Check(name, Status.OK, f"{program}: runs (has no --version flag: {said})")
    return Check(
        name,
        Status.FAIL,
        f"{program}: `{shown}` exited {proc.returncode}: {said}",
        f"run `{program} --version` by hand as the service user and fix what it reports",
    )


# ---------------------------------------------------------------- store


def _store(config: Config, environ: Mapping[str, str], env_path: Path, redact: Redactor) -> Check:
    url = config.service.store_url(environ)
    if not url:
        var = config.service.store.url_env
        return Check(
            "store",
            Status.FAIL,
            f"[store] url_env {var} is not set",
            f"put {var}=postgresql+psycopg://… in {env_path} (chmod 600)",
        )
    parsed = sa.make_url(url)
    if parsed.password:
        redact.add(str(parsed.password))
    shown = parsed.render_as_string(hide_password=True)
    problem = store_location_problem(url)
    if problem is not None:
        return Check("store", Status.FAIL, redact(problem), "point [store] url at a file in a writable directory")
    if parsed.get_backend_name() == "sqlite":
        db = Path(parsed.database or "").expanduser()
        if not db.exists():
            return Check(
                "store",
                Status.WARN,
                f"{shown}: does not exist yet",
                "`adw run` creates it and migrates it to the current schema on start",
            )
        engine = sa.create_engine(f"sqlite:///file:{db}?mode=ro&uri=true")
    else:
        engine = sa.create_engine(parsed, connect_args={"connect_timeout": int(PROBE_TIMEOUT_S)})
    try:
        with engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
    except Exception as exc:  # the drivers raise many types; all mean "cannot use it"
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return Check(
            "store",
            Status.FAIL,
            redact(f"{shown}: unreachable: {first}"),
            "check the URL, the server and the credentials",
        )
    finally:
        engine.dispose()
    script = ScriptDirectory.from_config(alembic_config())
    head = script.get_current_head()
    migrate = "`adw run` migrates it on start; to do it now without running tasks: `adw status`"
    if current == head:
        return Check("store", Status.OK, f"{shown}: reachable, schema at head ({head})")
    if current is None:
        return Check("store", Status.WARN, f"{shown}: reachable, no adw schema yet (head is {head})", migrate)
    try:
        known = script.get_revision(current) is not None
    except CommandError:
        known = False
    if not known:
        return Check(
            "store",
            Status.FAIL,
            f"{shown}: at revision {current}, unknown to this adw (head {head})",
            "a newer adw migrated it: upgrade adw on this host",
        )
    return Check("store", Status.WARN, f"{shown}: schema at {current}, behind head {head}", migrate)


# ---------------------------------------------------------------- GitHub


def _github(config: Config, environ: Mapping[str, str], env_path: Path, redact: Redactor) -> list[Check]:
    gh = config.github
    if gh is None:
        return [Check("github", Status.OK, "not configured (no [github] section)")]
    try:
        token = github_token(gh, environ, redact)
    except SecretError as exc:
        return [
            Check(
                "github: token",
                Status.FAIL,
                str(exc),
                f"put {gh.token_env}=… in {env_path} (chmod 600), or set [github] token_command",
            )
        ]
    client = GitHubClient(gh.base_url, token, timeout_s=PROBE_TIMEOUT_S)
    try:
        login = client.me()
    except (Backoff, GithubException) as exc:
        return [
            Check(
                "github: token",
                Status.FAIL,
                redact(f"{gh.base_url}: {_why(exc)}"),
                "check the token (not expired, issues + pull requests scope) and base_url",
            )
        ]
    wanted = [gh.trigger_label, *gh.labels.values()]
    out = [Check("github: token", Status.OK, f"valid: authenticated as {login}")]
    out += [_github_repo(config, client, repo, wanted, redact) for repo in gh.repositories]
    return out


def _github_repo(config: Config, client: GitHubClient, repo: str, wanted: list[str], redact: Redactor) -> Check:
    """Is one configured repository reachable, with adw's labels, and may the token push?"""
    name = f"github: {repo}"
    try:
        info = client.repo_info(repo)
        present = set(client.labels(repo))
    except (Backoff, GithubException) as exc:
        return Check(
            name,
            Status.FAIL,
            redact(f"not reachable: {_why(exc)}"),
            "check the name and that the token can see this repository",
        )
    missing = [label for label in wanted if label not in present]
    if missing:
        return Check(
            name,
            Status.FAIL,
            f"labels missing: {', '.join(missing)}",
            f"adw github check --create-labels --config {config.path}",
        )
    if not (info.get("permissions") or {}).get("push"):
        return Check(
            name,
            Status.FAIL,
            "reachable, but the token cannot push (labels, comments fail)",
            "give the token write access to issues on this repository",
        )
    return Check(name, Status.OK, "reachable, labels present")


def _why(exc: Exception) -> str:
    if isinstance(exc, GithubException):
        message = exc.data.get("message") if isinstance(exc.data, dict) else None
        return f"GitHub answered {exc.status}" + (f": {message}" if message else "")
    return str(exc)


# ---------------------------------------------------------------- disk and clock


def _disk(config: Config, environ: Mapping[str, str], usage: Callable[[Path], DiskUsage]) -> list[Check]:
    """Free space where workspaces, transcripts and (SQLite) the store are written."""
    paths = [config.service.coordinator.state_dir]
    url = config.service.store_url(environ)
    if url.startswith("sqlite:///"):
        paths.append(Path(url.removeprefix("sqlite:///")).expanduser().parent)
    out, seen = [], set()
    for path in paths:
        probe = path
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        if probe in seen:
            continue
        seen.add(probe)
        u = usage(probe)
        detail = f"{path}: {_size(u.free)} free of {_size(u.total)}"
        fix = f"free space on that disk, or move [coordinator] state_dir to a larger one (now {path})"
        if u.free < DISK_FAIL_BYTES:
            out.append(Check("disk", Status.FAIL, f"{detail} (below {_size(DISK_FAIL_BYTES)})", fix))
        elif u.free < DISK_WARN_BYTES:
            out.append(Check("disk", Status.WARN, f"{detail} (below {_size(DISK_WARN_BYTES)})", fix))
        else:
            out.append(Check("disk", Status.OK, detail))
    return out


def _size(n: int) -> str:
    return f"{n / 1024**3:.1f} GiB" if n >= 1024**3 else f"{n / 1024**2:.0f} MiB"


def _clock(config: Config, environ: Mapping[str, str], now: dt.datetime) -> list[Check]:
    tz = config.routing.timezone
    try:
        local = now.astimezone(zoneinfo.ZoneInfo(tz))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        zone = Check(
            "timezone",
            Status.FAIL,
            f'[routing] timezone "{tz}" is not a known IANA zone',
            'use a name such as "UTC" or "Europe/Berlin" (apt-get install tzdata if none is known)',
        )
    else:
        zone = Check(
            "timezone",
            Status.OK,
            f"{tz}: it is {local:%Y-%m-%d %H:%M %Z} there (hour {local.hour} for hour_range rules)",
        )
    return [zone, _ntp(environ)]


def _ntp(environ: Mapping[str, str]) -> Check:
    fix = "run an NTP client (systemd-timesyncd, chrony): hour_range rules and store leases need a right clock"
    tool = shutil.which("timedatectl", path=environ.get("PATH"))
    if tool is None:
        return Check("clock sync", Status.WARN, "could not be checked (no timedatectl)", fix)
    try:
        proc = subprocess.run(
            [tool, "show", "-p", "NTPSynchronized", "--value"],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Check("clock sync", Status.WARN, f"could not be checked ({type(exc).__name__})", fix)
    answer = proc.stdout.strip()
    if proc.returncode == 0 and answer == "yes":
        return Check("clock sync", Status.OK, "NTP-synchronised")
    if proc.returncode == 0 and answer == "no":
        return Check(
            "clock sync",
            Status.WARN,
            "the system clock is not NTP-synchronised",
            "timedatectl set-ntp true (or run chrony)",
        )
    said = (proc.stderr.strip().splitlines() or ["no answer"])[0][:120]
    return Check("clock sync", Status.WARN, f"could not be checked (timedatectl: {said})", fix)
