"""The GitHub token: by reference only (an environment variable or a secret-manager command)."""

from __future__ import annotations

from collections.abc import Mapping

from adw_modules.config.github import GitHubConfig
from adw_modules.routing.providers import SecretError, run_secret_command


def github_token(cfg: GitHubConfig, environ: Mapping[str, str]) -> str:
    """The token, from ``token_command`` or ``token_env``; SecretError says why not (never the value)."""
    if cfg.token_command:
        return run_secret_command(list(cfg.token_command), 15.0)
    token = environ.get(cfg.token_env, "")
    if not token:
        raise SecretError(f"{cfg.token_env} is not set (the GitHub token, by reference: [github] token_env)")
    return token
