"""GitHub App identity: installation tokens minted through PyGithub's App auth, refreshed early.

A team's bot is a GitHub App rather than someone's personal token: it acts as ``<slug>[bot]``,
with the permissions the App was granted, on the repositories it is installed on.  The App
signs a short JWT (RS256, with its private key, fetched by reference) to mint an installation
token (valid one hour); every REST call and every ``git push`` uses that token.

PyGithub's ``AppInstallationAuth`` mints the token and mints a new one once the old is about
to expire, but its margin is 20 s by the wall clock: a push that starts 25 s before expiry
would fail half-way.  ``InstallationAuth`` keeps PyGithub's minting and moves the margin to
``REFRESH_MARGIN`` (5 min), measured by the client's clock (a test's fake clock).

One installation serves a coordinator: ``installation_id`` if configured, else the one of the
first repository (``GET /repos/{owner}/{repo}/installation``); ``adw github check`` says when a
repository belongs to another installation.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from github import Auth, GithubIntegration

from adw_modules.config.github import GitHubConfig
from adw_modules.sources.github.client import GitHubClient

REFRESH_MARGIN = dt.timedelta(minutes=5)


class InstallationAuth(Auth.AppInstallationAuth):
    """PyGithub's installation auth, renewed ``REFRESH_MARGIN`` before expiry by ``clock``."""

    def __init__(
        self,
        app_auth: Auth.AppAuth,
        installation_id: int,
        clock: Callable[[], dt.datetime],
        on_token: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(app_auth, installation_id)
        self._clock = clock
        self._on_token = on_token  # each new token is masked (the redactor) before it is used
        self.minted = 0  # how many tokens were minted (for tests and the check)

    @property
    def _is_expired(self) -> bool:
        # PyGithub keeps the current token in a name-mangled attribute of its class.
        current = getattr(self, "_AppInstallationAuth__installation_authorization", None)
        if current is None:
            return True
        return bool(current.expires_at - REFRESH_MARGIN <= self._clock())

    def _get_installation_authorization(self):  # type: ignore[no-untyped-def]
        self.minted += 1
        authorization = super()._get_installation_authorization()
        if self._on_token is not None:
            self._on_token(authorization.token)
        return authorization


def app_auth(app_id: str, private_key: str) -> Auth.AppAuth:
    return Auth.AppAuth(app_id, private_key)


def integration(base_url: str, auth: Auth.AppAuth, timeout_s: float = 15.0) -> GithubIntegration:
    """PyGithub's view of the App itself (JWT-authenticated): its slug, its installations."""
    return GithubIntegration(auth=auth, base_url=base_url, retry=None, timeout=int(timeout_s), lazy=True)


def bot_login(gi: GithubIntegration) -> str:
    """The App's identity on GitHub: ``<slug>[bot]`` (``GET /app``)."""
    return f"{gi.get_app().slug}[bot]"


def installation_for(gi: GithubIntegration, repo: str) -> int:
    """The App's installation on ``repo`` (404 if the App is not installed there)."""
    owner, name = repo.split("/", 1)
    return int(gi.get_repo_installation(owner, name).id)


def app_client(
    gh: GitHubConfig,
    private_key: str,
    *,
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    pace_s: tuple[float, float] = (0.25, 1.0),
    on_token: Callable[[str], None] | None = None,
) -> GitHubClient:
    """A ``GitHubClient`` acting as the App's installation; GithubException / Backoff say why not.
    ``on_token`` sees every installation token minted (to register it with the redactor)."""
    auth = app_auth(str(gh.app_id), private_key)
    probe = GitHubClient(gh.base_url, "unused", clock=clock, pace_s=(0, 0))  # only for its error mapping
    gi = integration(gh.base_url, auth)
    login = probe.call(lambda: bot_login(gi))
    installation = gh.installation_id or probe.call(lambda: installation_for(gi, gh.repositories[0]))
    return GitHubClient(
        gh.base_url, InstallationAuth(auth, installation, clock, on_token), clock=clock, pace_s=pace_s, login=login
    )


def app_hook_status(gh: GitHubConfig, private_key: str, path: str) -> str:
    """The App's own webhook as GitHub has it (``GET /app/hook/config``, the latest of
    ``GET /app/hook/deliveries``), in one line; GithubException says why it could not be read."""
    gi = integration(gh.base_url, app_auth(str(gh.app_id), private_key))
    _, config = gi.requester.requestJsonAndCheck("GET", "/app/hook/config")
    _, deliveries = gi.requester.requestJsonAndCheck("GET", "/app/hook/deliveries", {"per_page": 1})
    url = str((config or {}).get("url") or "")
    if not url:
        return "App webhook: none configured (the App's settings: Webhook URL)"
    aimed = "" if url.split("?", 1)[0].endswith(path) else f"; does not point at …{path}"
    last = deliveries[0] if deliveries else None
    if last is None:
        state = "never delivered"
    else:
        what = f"{last.get('event')}.{last.get('action')}" if last.get("action") else str(last.get("event"))
        state = f"last delivery ({what}) answered {last.get('status_code')} ({last.get('status')})"
    return f"App webhook: {url} ({(config or {}).get('content_type')}; {state}{aimed})"
