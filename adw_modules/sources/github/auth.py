"""The GitHub token: by reference only (an environment variable or a secret-manager command)."""

from __future__ import annotations

from collections.abc import Mapping

from adw_modules.config.github import GitHubConfig
from adw_modules.ops.redact import Redactor
from adw_modules.ops.secrets import Secrets


def github_token(cfg: GitHubConfig, environ: Mapping[str, str], redactor: Redactor | None = None) -> str:
    """The token, from ``token_command`` or ``token_env``; SecretError says why not (never the value).

    The value is registered with ``redactor`` (if given) before it is returned.
    """
    return Secrets(environ, redactor).github_token(cfg)
