"""``adw github check``: is the GitHub side ready (token, scopes, repositories, labels)?"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from adws.cli import context_for, emit, read_options

LABEL_COLORS = {
    "trigger": "5319e7",
    "queued": "fbca04",
    "running": "1d76db",
    "done": "0e8a16",
    "failed": "d93f0b",
    "cancelled": "bfbfbf",
    "pr_open": "6f42c1",
}


@click.group("github")
def github_group() -> None:
    """The GitHub task source."""


@github_group.command("check")
@click.option("--create-labels", is_flag=True, help="Create missing labels without asking.")
@read_options
def github_check(create_labels: bool, config_path: str | None, as_json: bool) -> None:
    """Token valid, its scopes, each repository reachable, labels present (offers to create missing ones)."""
    from github import GithubException  # PyGithub: only this command talks to GitHub

    from adw_modules.ops.secrets import SecretError
    from adw_modules.sources.github.auth import github_token
    from adw_modules.sources.github.client import Backoff, GitHubClient

    config = context_for(config_path).config()
    gh = config.github
    if gh is None:
        raise click.UsageError(f"{config.path} has no [github] section")
    key = ""
    data: dict[str, Any] = {"ok": True, "base_url": gh.base_url, "login": None, "scopes": None, "repositories": []}
    try:
        if gh.app_id is not None:  # a GitHub App: its installation token, its "<slug>[bot]" identity
            from adw_modules.ops.secrets import Secrets, github_app_key
            from adw_modules.sources.github.app import app_client

            key = github_app_key(Secrets(os.environ), gh)
            client = app_client(gh, key)
            client.push_token()  # mint the installation token now: the App line is true only if it can
            data["login"] = client.me()
            data["app"] = {"id": gh.app_id, "installation": getattr(client.auth, "installation_id", None)}
            data["app"]["webhook"] = _app_hook(gh, key)
        else:
            client = GitHubClient(gh.base_url, github_token(gh, os.environ))
            data["login"] = client.me()
            data["scopes"] = client.scopes()
    except (SecretError, Backoff, GithubException) as exc:
        data.update(ok=False, error=_why(exc))
        emit(as_json, data, check_text)
        sys.exit(1)
    wanted = {"trigger": gh.trigger_label, **gh.labels}
    interactive = not as_json and sys.stdin.isatty()
    for repo in gh.repositories:
        row: dict[str, Any] = {"repo": repo, "reachable": False, "push": None, "missing_labels": [], "created": []}
        try:
            other = _other_installation(gh, key, repo, data["app"]["installation"]) if data.get("app") else None
            if other is not None:
                row["error"] = other
            info = client.repo_info(repo)
            row["reachable"] = True
            row["push"] = bool((info.get("permissions") or {}).get("push"))
            present = set(client.labels(repo))
            row["missing_labels"] = [name for name in wanted.values() if name not in present]
            for kind, name in wanted.items():
                if name in row["missing_labels"] and (
                    create_labels or (interactive and click.confirm(f"{repo}: create label {name!r}?", default=True))
                ):
                    client.create_label(repo, name, LABEL_COLORS.get(kind, "ededed"), f"adw: {kind}")
                    row["created"].append(name)
            row["missing_labels"] = [n for n in row["missing_labels"] if n not in row["created"]]
            if gh.webhook is not None:
                row["webhook"] = _hook_status(client, repo, gh.webhook.path)
        except (Backoff, GithubException) as exc:
            row["error"] = _why(exc)
            if data.get("app") and isinstance(exc, GithubException) and exc.status == 404:
                row["error"] += f" — the App is not installed on {repo} (its settings: Install App)"
        if not row["reachable"] or row["missing_labels"] or row.get("error") or row["push"] is False:
            data["ok"] = False
        data["repositories"].append(row)
    emit(as_json, data, check_text)
    sys.exit(0 if data["ok"] else 1)


def _other_installation(gh: Any, key: str, repo: str, installation: int) -> str | None:
    """Why ``repo`` cannot work when the App reaches it through another installation (one
    coordinator serves one installation); None when it is the same one."""
    from adw_modules.sources.github.app import app_auth, installation_for, integration

    found = installation_for(integration(gh.base_url, app_auth(str(gh.app_id), key)), repo)
    if found == installation:
        return None
    return f"the App reaches it through installation {found}, not {installation}: list one installation's repositories"


def _app_hook(gh: Any, key: str) -> str:
    from github import GithubException

    from adw_modules.sources.github.app import app_hook_status

    path = gh.webhook.path if gh.webhook is not None else "/github/webhook"
    try:
        return app_hook_status(gh, key, path)
    except Exception as exc:  # whatever stops this read, the rest of the check goes on
        why = _why(exc) if isinstance(exc, GithubException) else type(exc).__name__
        return f"App webhook: cannot read it ({why})"


def _hook_status(client: Any, repo: str, path: str) -> str:
    """The repository's webhook pointing at ``path``: active?, its events, GitHub's last delivery status."""
    from github import GithubException

    from adw_modules.sources.github.client import Backoff

    try:
        hooks = client.hooks(repo)
    except (Backoff, GithubException) as exc:
        return f"webhook: cannot read the repository's hooks ({_why(exc)}; needs admin or Webhooks: read)"
    for hook in hooks:
        url = str((hook.get("config") or {}).get("url") or "")
        if url.split("?", 1)[0].endswith(path):
            last = hook.get("last_response") or {}
            code = last.get("code")
            state = "never delivered" if code is None else f"last delivery answered {code} ({last.get('status')})"
            active = "active" if hook.get("active") else "inactive"
            events = list(hook.get("events") or [])
            line = f"webhook: {url} ({active}; events {', '.join(events)}; {state})"
            return line + "".join(f" — {hint}" for hint in _hook_hints(events, code))
    return f"webhook: no hook of this repository points at …{path} (an App's webhook is set in the App's settings)"


def _hook_hints(events: list[str], code: object) -> list[str]:
    """What to fix in the hook's settings: events adw acts on that it does not send, and a last
    delivery refused for its signature (the hook's secret is not the one adw has)."""
    from adw_modules.sources.github.webhook import ACTIONS

    hints = []
    missing = [] if "*" in events else [e for e in ACTIONS if e not in events]
    if missing:
        hints.append(f"not subscribed to {', '.join(missing)}")
    if code == 401:
        hints.append("adw refused its signature: the hook's secret is not [github.webhook]'s")
    elif isinstance(code, int) and not 200 <= code < 300:
        hints.append("its last delivery failed (the hook's Recent Deliveries say why)")
    return hints


def _why(exc: Exception) -> str:
    from github import GithubException

    if isinstance(exc, GithubException):
        message = exc.data.get("message") if isinstance(exc.data, dict) else None
        return f"GitHub answered {exc.status}" + (f": {message}" if message else "")
    return str(exc)


def check_text(d: dict[str, Any]) -> str:
    lines = [f"GitHub at {d['base_url']}"]
    if d.get("error"):
        return "\n".join([*lines, f"  ✗ token: {d['error']}"])
    if d.get("app"):
        app = d["app"]
        lines += [f"  ✓ GitHub App {app['id']}: installation {app['installation']}, acting as {d['login']}"]
        if app.get("webhook"):
            lines.append(f"    {app['webhook']}")
    else:
        scopes = "fine-grained token (no scope list)" if d["scopes"] is None else (", ".join(d["scopes"]) or "none")
        lines += [f"  ✓ token valid: authenticated as {d['login']}", f"    scopes: {scopes}"]
    for r in d["repositories"]:
        if not r["reachable"]:
            lines.append(f"  ✗ {r['repo']}: not reachable ({r.get('error', 'unknown error')})")
            continue
        push = (
            ", pushable" if r["push"] else ", not pushable (the token cannot push: branches, labels and comments fail)"
        )
        lines.append(f"  {'✓' if r['push'] else '✗'} {r['repo']}: reachable{push}")
        if r.get("webhook"):
            lines.append(f"    {r['webhook']}")
        for name in r["created"]:
            lines.append(f"    + created label {name}")
        for name in r["missing_labels"]:
            lines.append(f"    ✗ label {name} is missing (adw github check --create-labels)")
        if r.get("error"):
            lines.append(f"    ✗ {r['error']}")
    lines.append("All good." if d["ok"] else "Problems found.")
    return "\n".join(lines)
