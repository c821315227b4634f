"""Running git: argv lists only, a clean environment, timeouts, secrets by reference.

Contract of ``GitRunner.run(args, cwd=..., timeout=..., remote=...)``:

- ``git`` is started with an argv list (never a shell) in its own session; on timeout the
  whole process group (git and its ``git-remote-https`` / ``ssh`` children) is killed.
- The child environment is built from an allow-list of the caller's ``environ`` (``PATH``,
  ``HOME``, locale, proxies, CA bundles, ``SSH_AUTH_SOCK``); no inherited ``GIT_*`` variable
  survives.  ``GIT_TERMINAL_PROMPT=0`` and ``LC_ALL=C`` are always set, so git never waits
  for a person and its messages are stable English.
- ``remote=True`` marks a command that talks to the remote.  It then runs with
  ``-c credential.helper=`` (no configured helper sees, or stores, the token) and, when a
  token is available for an https URL (or http on loopback), ``GIT_ASKPASS`` pointing at
  a small helper that prints the token from the child's environment (``ADW_GIT_TOKEN``).
  The token is never in any argv, and every error message is masked with ``Redactor``
  (plus any ``user:password@`` in a URL).
- A non-zero exit (or a timeout) raises ``GitError`` naming the command, the exit code and
  the tail of stderr.  ``check=False`` returns the result instead.
- Every argv is appended to ``GitRunner.calls`` (a bounded deque), so tests can prove what
  was, and was not, passed on a command line.
"""

from __future__ import annotations

import ipaddress
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import urllib.parse
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from adw_modules.ops.redact import Redactor

GIT = "git"
TOKEN_VAR = "ADW_GIT_TOKEN"  # the askpass helper reads the token from this child variable
TOKEN_USER = "x-access-token"  # GitHub accepts any user name with a token; this is its convention
STDERR_TAIL = 2000

# Variables a git child may inherit; everything else (every GIT_* in particular) is dropped.
_ALLOWED_ENV = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "TMPDIR",
    "TZ",
    "LANG",
    "SSH_AUTH_SOCK",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
)
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s:]+:[^/@\s]+@", re.IGNORECASE)

_ASKPASS = """\
#!{python}
# Written by adw (adw_modules/gitcmd.py): answers git's credential prompts from the environment.
import os, sys
prompt = sys.argv[1] if len(sys.argv) > 1 else ""
# Only for the host adw meant: a rewritten remote (insteadOf, an edited remote URL) gets nothing.
host = os.environ.get("ADW_GIT_HOST", "")
if not host or ("//" + host + "'" not in prompt and "@" + host + "'" not in prompt and "//" + host + "/" not in prompt):
    print("")
elif prompt.lower().startswith("username"):
    print({user!r})
else:
    print(os.environ.get({var!r}, ""))
"""


class GitError(Exception):
    """A git command failed; ``str()`` is safe to log (secrets masked)."""

    def __init__(self, command: str, returncode: int | None, stderr: str, message: str) -> None:
        super().__init__(message)
        self.command = command
        self.returncode = returncode  # None: timed out
        self.stderr = stderr


@dataclass(frozen=True)
class GitResult:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


def mask_url_credentials(text: str) -> str:
    """``https://user:secret@host`` -> ``https://[REDACTED]@host``."""
    return _URL_PASSWORD.sub(lambda m: f"{m.group('scheme')}[REDACTED]@", text)


def token_allowed(url: str) -> bool:
    """A token may be offered to https remotes, and to plain http only on loopback (tests)."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme == "https":
        return True
    if parsed.scheme != "http" or parsed.hostname is None:
        return False
    if parsed.hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(parsed.hostname).is_loopback
    except ValueError:
        return False


def write_askpass(directory: Path) -> Path:
    """Write (atomically, mode 700) the askpass helper into ``directory``; returns its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "adw-askpass.py"
    text = _ASKPASS.format(python=sys.executable, user=TOKEN_USER, var=TOKEN_VAR)
    if path.is_file() and path.read_text() == text and os.access(path, os.X_OK):
        return path
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".askpass-")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o700)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


class GitRunner:
    """Runs git for one set of settings (environment, token, timeout); thread-safe."""

    def __init__(
        self,
        environ: Mapping[str, str],
        *,
        token: str | Callable[[], str | None] | None = None,
        askpass: Path | None = None,
        timeout_s: float = 300.0,
        record: int = 1000,
    ) -> None:
        # ``token``: the push token, or a function giving the current one (a GitHub App's
        # installation token, renewed before it expires): asked again for every remote command.
        if token and askpass is None:
            raise ValueError("a token needs the askpass helper path")
        self._base_env = {k: environ[k] for k in _ALLOWED_ENV if k in environ}
        self._base_env.setdefault("PATH", os.defpath)
        self._base_env.update({"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", "GCM_INTERACTIVE": "never"})
        self._token_source = token if callable(token) else None
        self._token = None if callable(token) else (token or None)
        self._askpass = askpass
        self.timeout_s = timeout_s
        self.redact = Redactor([self._token])
        self.calls: deque[tuple[str, ...]] = deque(maxlen=record)
        self._calls_lock = threading.Lock()

    def env(self, *, url: str | None) -> dict[str, str]:
        """The child environment; with a token only for a URL it may be offered to."""
        env = dict(self._base_env)
        token = self.current_token() if url is not None else None
        if url is not None and token and self._askpass is not None and token_allowed(url):
            env["GIT_ASKPASS"] = str(self._askpass)
            env[TOKEN_VAR] = token
            parsed = urllib.parse.urlsplit(url)
            env["ADW_GIT_HOST"] = (
                parsed.hostname + (f":{parsed.port}" if parsed.port else "") if parsed.hostname else ""
            )
        return env

    def current_token(self) -> str | None:
        """The token to offer now (a token function's answer is masked from then on)."""
        if self._token_source is None:
            return self._token
        try:
            token = self._token_source()
        except Exception:  # no token to be had: git runs without one and says why it failed
            return None
        self.redact.add(token)
        return token or None

    def mask(self, text: str) -> str:
        return mask_url_credentials(self.redact(text))

    def run(
        self,
        args: Sequence[str],
        *,
        cwd: Path | None = None,
        remote_url: str | None = None,
        input: str | None = None,
        timeout_s: float | None = None,
        check: bool = True,
    ) -> GitResult:
        """Run ``git <args>``; ``remote_url`` set means the command talks to that remote."""
        argv: list[str] = [GIT]
        if remote_url is not None:
            # No stored credentials, no askpass from config, and no hooks: the agent could have
            # written the repository's config or hooks, and they would run with the token in reach.
            argv += ["-c", "credential.helper=", "-c", "core.askPass=", "-c", "core.hooksPath=/dev/null"]
        argv += list(args)
        with self._calls_lock:
            self.calls.append(tuple(argv))
        timeout = self.timeout_s if timeout_s is None else timeout_s
        command = self.mask(" ".join(argv))
        try:
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env=self.env(url=remote_url),
                stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                encoding="utf-8",
                errors="replace",
                start_new_session=True,
            )
        except OSError as exc:
            raise GitError(command, None, "", f"{command}: cannot start git: {exc}") from None
        try:
            out, err = proc.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid)
            out, err = proc.communicate()
            tail = self.mask(err[-STDERR_TAIL:].strip())
            raise GitError(command, None, tail, f"{command}: timed out after {timeout:g} s; stderr: {tail}") from None
        result = GitResult(tuple(argv), proc.returncode, out, err)
        if check and proc.returncode != 0:
            tail = self.mask(err[-STDERR_TAIL:].strip())
            raise GitError(
                command, proc.returncode, tail, f"{command}: exit code {proc.returncode}; stderr: {tail or '(empty)'}"
            )
        return result

    def ok(self, args: Sequence[str], *, cwd: Path | None = None) -> bool:
        """True when ``git <args>`` exits 0 (for questions such as ``rev-parse --verify``)."""
        return self.run(args, cwd=cwd, check=False).returncode == 0

    def out(self, args: Sequence[str], *, cwd: Path | None = None, remote_url: str | None = None) -> str:
        return self.run(args, cwd=cwd, remote_url=remote_url).stdout.strip()


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
