"""The ``[workspace]`` section of config.toml: where per-task git worktrees live and how they are pushed."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adw_modules.config.validation import PASSWORD_IN_URL, Validator

DEFAULT_REMOTE = "https://github.com/{repo}.git"
_KEYS = (
    "root",
    "remote",
    "branch_prefix",
    "push_on_failure",
    "keep_days",
    "max_disk_mb",
    "author_name",
    "author_email",
    "token_env",
    "git_timeout_s",
)
_PREFIX = re.compile(r"^(?:[A-Za-z0-9_-][A-Za-z0-9._-]*/)*[A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class WorkspaceConfig:
    root: Path = Path(".adw/workspaces")
    remote: str = DEFAULT_REMOTE  # "{repo}" -> "owner/name"; a path or file:// URL works too
    branch_prefix: str = "adw/"
    push_on_failure: bool = True
    keep_days: float = 7.0
    max_disk_mb: float = 20000.0
    author_name: str = "adw"
    author_email: str = "adw@localhost"
    token_env: str | None = "GITHUB_TOKEN"
    git_timeout_s: float = 300.0

    def remote_url(self, repo: str) -> str:
        return self.remote.replace("{repo}", repo)

    def should_push(self, succeeded: bool) -> bool:
        """Whether a finished attempt's branch is pushed (a failed one only with push_on_failure)."""
        return succeeded or self.push_on_failure


def default_remote(github: object) -> str:
    """``https://github.com/{repo}.git``, or the GitHub Enterprise host ``[github] base_url`` names
    (``https://HOST/api/v3`` -> ``https://HOST/{repo}.git``)."""
    base = github.get("base_url") if isinstance(github, Mapping) else None
    if not isinstance(base, str) or not base.startswith(("https://", "http://")):
        return DEFAULT_REMOTE
    parts = urllib.parse.urlsplit(base.rstrip("/"))
    if parts.hostname in (None, "api.github.com"):
        return DEFAULT_REMOTE
    return f"{parts.scheme}://{parts.netloc}/{{repo}}.git"


def validate_workspace(v: Validator, data: Mapping[str, Any]) -> WorkspaceConfig | None:
    """``[workspace]``; None when the table is absent.  ``root`` defaults to <state_dir>/workspaces."""
    if "workspace" not in data:
        return None
    w = "workspace"
    t = v.get(data, "workspace", dict, w, {}) or {}
    v.unknown_keys(t, _KEYS, w, "key")
    d = WorkspaceConfig()
    coordinator = data.get("coordinator")
    raw_state = coordinator.get("state_dir") if isinstance(coordinator, Mapping) else None
    state_dir = Path(raw_state if isinstance(raw_state, str) else ".adw").expanduser()
    state_dir = state_dir if state_dir.is_absolute() else v.base / state_dir
    raw_root = v.get(t, "root", str, w)
    root = state_dir / "workspaces" if raw_root is None else Path(raw_root).expanduser()
    root = root if root.is_absolute() else v.base / root
    remote = v.get(t, "remote", str, w, default_remote(data.get("github")))
    if PASSWORD_IN_URL.search(remote):
        v.err(w, "remote contains a password: give the token by reference in token_env")
    if "{" in remote.replace("{repo}", ""):
        v.err(w, f'remote "{remote}" may use only the placeholder {{repo}}')
    prefix = v.get(t, "branch_prefix", str, w, d.branch_prefix)
    if not _PREFIX.match(prefix) or ".." in prefix or prefix.endswith(".lock/"):
        v.err(w, f'branch_prefix "{prefix}" is not a valid start of a git branch name (e.g. "adw/")')
    token_env = v.get(t, "token_env", str, w, d.token_env)
    return WorkspaceConfig(
        root=root,
        remote=remote,
        branch_prefix=prefix,
        push_on_failure=bool(v.get(t, "push_on_failure", bool, w, d.push_on_failure)),
        keep_days=v.positive(t, "keep_days", float, w) or d.keep_days,
        max_disk_mb=v.positive(t, "max_disk_mb", float, w) or d.max_disk_mb,
        author_name=v.get(t, "author_name", str, w, d.author_name),
        author_email=v.get(t, "author_email", str, w, d.author_email),
        token_env=token_env or None,
        git_timeout_s=v.positive(t, "git_timeout_s", float, w) or d.git_timeout_s,
    )
