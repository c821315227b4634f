"""Every secret, fetched by reference: a provider's API key and the GitHub token.

The config names where a secret is (an environment variable, or a command that prints it:
an argv, never a shell); it never holds the value.  ``Secrets`` fetches a value on demand
and hands it to its ``Redactor`` before returning it, so every value ever fetched —
including a key a command returns later, rotated — is masked from then on.

A value a command printed is kept for ``cache_ttl_s`` (default 300 s): availability checks and
every attempt ask for the key, and a secret manager should not be run on every dispatch pass.
Once the value is older than that the command runs again, and a rotated value it prints is
registered like the first.  Failures are not cached: the next ask runs the command again (the
provider registry already checks availability only once a refresh).

A secret that cannot be had raises ``SecretError``, whose message says why and never
contains the value.

Imports only ``config`` and ``ops.redact``: every stage uses it.
"""

from __future__ import annotations

import errno
import os
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence

from adw_modules.config.github import GitHubConfig
from adw_modules.config.schema import Config, ProviderConfig
from adw_modules.ops.redact import Redactor

SECRET_TIMEOUT_S = 15.0
SECRET_CACHE_TTL_S = 300.0
STDERR_SHOWN_CHARS = 200


class SecretError(RuntimeError):
    """A secret could not be obtained.  The message never contains the secret."""


class Secrets:
    """Fetches secrets from ``environ`` or their commands; registers each value with ``redactor``."""

    def __init__(
        self,
        environ: Mapping[str, str],
        redactor: Redactor | None = None,
        timeout_s: float = SECRET_TIMEOUT_S,
        cache_ttl_s: float = SECRET_CACHE_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.environ = environ
        self.redactor = redactor if redactor is not None else Redactor()
        self.timeout_s = timeout_s
        self.cache_ttl_s = cache_ttl_s
        self.clock = clock
        # argv -> (value, when fetched); the dispatch thread and heartbeats may both ask.
        self._cache: dict[tuple[str, ...], tuple[str, float]] = {}
        self._caching = threading.Lock()

    def provider_key(self, provider: ProviderConfig) -> str | None:
        """The provider's key, or None if it needs none.  Raises SecretError saying why not."""
        if provider.api_key_command:
            return self._from_command(provider.api_key_command, "api_key_command")
        if provider.api_key_env is None:
            return None
        value = self.environ.get(provider.api_key_env, "")
        if not value:
            if provider.requires_api_key:
                raise SecretError(f"{provider.api_key_env} not set")
            return None
        return self._registered(value)

    def github_token(self, github: GitHubConfig) -> str:
        """The token, from ``token_command`` or ``token_env``.  Raises SecretError saying why not."""
        missing = f"{github.token_env} is not set (the GitHub token, by reference: [github] token_env)"
        return self.required(github.token_env, github.token_command, "token_command", missing)

    def by_reference(
        self, env_name: str | None, command: Sequence[str] | None, setting: str, missing: str
    ) -> str | None:
        """A secret given by reference: what ``command`` prints if one is set (``setting`` names it
        in every reason), else the variable ``env_name``'s value; None if neither is configured.
        Raises SecretError(``missing``) for a variable that is not set or empty."""
        if command:
            return self._from_command(command, setting)
        if env_name is None:
            return None
        value = self.environ.get(env_name, "")
        if not value:
            raise SecretError(missing)
        return self._registered(value)

    def required(self, env_name: str | None, command: Sequence[str] | None, setting: str, missing: str) -> str:
        """``by_reference`` for a secret that must be configured: SecretError(``missing``) if not."""
        value = self.by_reference(env_name, command, setting, missing)
        if value is None:
            raise SecretError(missing)
        return value

    def fetch_all(self, config: Config) -> Redactor:
        """Fetch every secret ``config`` references, so each is masked from the start.

        One that cannot be had is skipped: its provider is unavailable and says why when asked.
        """
        for provider in config.providers.values():
            try:
                self.provider_key(provider)
            except SecretError:
                pass
        if config.github is not None:
            try:
                self.github_token(config.github)
            except SecretError:
                pass
        return self.redactor

    def _from_command(self, argv: Sequence[str], what: str) -> str:
        """What ``argv`` prints, run again only once the cached value is ``cache_ttl_s`` old."""
        key = tuple(argv)
        now = self.clock()
        with self._caching:
            cached = self._cache.get(key)
        if cached is not None and now - cached[1] < self.cache_ttl_s:
            return cached[0]
        value = self._registered(run_secret_command(argv, self.timeout_s, what=what))
        with self._caching:
            self._cache[key] = (value, now)
        return value

    def _registered(self, value: str) -> str:
        self.redactor.add(value)
        return value


def secrets_of(config: Config, environ: Mapping[str, str]) -> Redactor:
    """A redactor masking every secret value ``config`` references (provider keys, the GitHub token)."""
    return Secrets(environ).fetch_all(config)


def run_secret_command(argv: Sequence[str], timeout_s: float, what: str = "api_key_command") -> str:
    """What ``argv`` prints on stdout, stripped.  ``what`` names the setting in every reason."""
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise SecretError(f"{what} timed out after {timeout_s:g} s") from None
    except OSError as exc:
        raise SecretError(f"{what}: {_why_not_started(argv[0], exc)}") from None
    except UnicodeDecodeError:
        raise SecretError(f"{what} printed something that is not text") from None
    if proc.returncode != 0:
        # stderr of a secret manager may echo what it was asked for, never the secret itself;
        # keep just its first line so the operator sees e.g. "not logged in".
        first = (proc.stderr.strip().splitlines() or [""])[0][:STDERR_SHOWN_CHARS]
        raise SecretError(f"{what} failed (exit {proc.returncode})" + (f": {first}" if first else ""))
    value = proc.stdout.strip()
    if not value:
        raise SecretError(f"{what} printed nothing")
    return value


def _why_not_started(program: str, exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        if "/" in program and os.path.exists(program):
            # exec reports a missing #! interpreter as the script itself not being found.
            return f"{program} could not be started (its #! interpreter was not found)"
        return f"{program} not found"
    if isinstance(exc, PermissionError):
        return f"{program} could not be started: permission denied (is it executable? chmod +x {program})"
    reason = exc.strerror or errno.errorcode.get(exc.errno or 0) or type(exc).__name__
    return f"{program} could not be started: {reason}"


def web_token(
    env_name: str | None, command: Sequence[str] | None, environ: Mapping[str, str], redactor: Redactor, what: str
) -> str | None:
    """A web console token ([web] ``token_*`` or ``readonly_token_*``), by reference: the command's
    output if a command is set, else the variable's value; None if neither is configured.
    Raises SecretError (naming ``what``, never the value) when configured but unobtainable.
    The value is registered with ``redactor``, so no page or log can show it."""
    missing = f"{env_name} is not set (the console's {what}, by reference: [web] {what}_env)"
    return Secrets(environ, redactor).by_reference(env_name or None, command, f"{what}_command", missing)


# -- GitHub App private key and webhook secret (added for [github] app_id / [github.webhook]) ----------
def github_app_key(secrets: Secrets, github: GitHubConfig) -> str:
    """The GitHub App's private key (PEM), from ``private_key_command`` or the ``private_key_path``
    file; registered with the redactor (every line of it, so no part of it is shown either)."""
    if github.private_key_command:
        where = "private_key_command"
        value = secrets.required(None, github.private_key_command, where, "")
    elif github.private_key_path:
        where = f"private_key_path {github.private_key_path}"
        try:
            with open(github.private_key_path, encoding="ascii") as key_file:
                value = key_file.read().strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            raise SecretError(f"{where}: {reason}") from None
        if not value:
            raise SecretError(f"{where} is empty")
    else:
        raise SecretError("app_id needs private_key_path or private_key_command")
    _check_rsa_private_key(value, where)
    for line in value.splitlines():
        if len(line.strip()) >= 16 and not line.startswith("-----"):
            secrets.redactor.add(line.strip())
    secrets.redactor.add(value)
    return value


def webhook_secret(secrets: Secrets, secret_env: str | None, secret_command: Sequence[str] | None) -> str:
    """The ``[github.webhook]`` secret GitHub signs deliveries with, by reference."""
    missing = f"{secret_env} is not set (the webhook secret, by reference: [github.webhook] secret_env)"
    return secrets.required(secret_env or "", secret_command, "secret_command", missing)


def _check_rsa_private_key(value: str, where: str) -> None:
    """A clear error, naming where the key came from and never showing it, for what is not the
    App's RSA private key in PEM form (a public key, a truncated file, another file)."""
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(value.encode("utf-8", "replace"), password=None)
    except (ValueError, TypeError):  # not PEM, not a private key, encrypted, or damaged
        key = None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise SecretError(
            f"{where}: not an unencrypted RSA private key in PEM form (use the .pem file the App's "
            'settings give under "Private keys" → "Generate a private key")'
        )
