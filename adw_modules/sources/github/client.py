"""A frugal GitHub client over PyGithub: conditional listing, rate-limit awareness, typed failures.

Listing labelled issues is the only call an idle coordinator makes, and it is conditional
(``If-None-Match``): GitHub answers ``304`` without charging the rate limit, so polling ten
idle repositories every minute costs nothing.  Everything else (events, permissions,
comments, labels) happens only when something changed.

PyGithub is built with ``retry=None``: its own retry sleeps inside the call for up to an
hour on a rate limit, which would stall the poller; instead a rate limit or outage becomes
``Backoff`` with the time to come back.  The client remembers it: until then every call
raises the same ``Backoff`` without a request, whoever makes it (the poller, the sync, a
prompt being built on the dispatch thread), so nothing keeps asking a GitHub that said no.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import github
from github import Auth, Github, GithubException

T = TypeVar("T")
PERMISSION_TTL_S = 600.0
# Below this many remaining points, stretch polling until the window resets.
LOW_REMAINING = 100


class Backoff(Exception):
    """GitHub asked us (or failed in a way that tells us) to come back later."""

    def __init__(self, until: dt.datetime, reason: str) -> None:
        super().__init__(reason)
        self.until = until
        self.reason = reason


@dataclass(frozen=True)
class LabelEvent:
    event_id: int
    actor: str
    actor_type: str  # "User" | "Bot" | "Organization" …


class GitHubClient:
    def __init__(
        self,
        base_url: str,
        token: str | Auth.Auth,
        *,
        timeout_s: float = 15.0,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        pace_s: tuple[float, float] = (0.25, 1.0),
        login: str | None = None,
    ) -> None:
        # pace_s: PyGithub's spacing between requests and between writes, which GitHub's
        # secondary-rate-limit guidance asks for; tests against the loopback fake pass (0, 0).
        # ``token``: a personal token, or an App's installation auth (``app.InstallationAuth``)
        # whose ``login`` ("<slug>[bot]") is given, since an installation token cannot read /user.
        self.auth: Auth.Auth = Auth.Token(token) if isinstance(token, str) else token
        self.gh = Github(
            base_url=base_url,
            auth=self.auth,
            retry=None,
            timeout=int(timeout_s),
            per_page=100,
            lazy=True,
            seconds_between_requests=pace_s[0],
            seconds_between_writes=pace_s[1],
        )
        self.clock = clock
        self._etags: dict[str, tuple[str, list[Any]]] = {}
        self._permissions: dict[tuple[str, str], tuple[float, str]] = {}
        self._me: str | None = login
        self._default_branches: dict[str, str] = {}
        self.failures = 0  # consecutive transient failures, for backoff growth
        self.requests = 0
        # The last Backoff GitHub gave us, in force until its time: calls before then make no request.
        self.backoff: Backoff | None = None

    # ------------------------------------------------------------ plumbing
    def backoff_in_force(self) -> Backoff | None:
        """The Backoff GitHub asked for, while it lasts."""
        backoff = self.backoff
        return backoff if backoff is not None and self.clock() < backoff.until else None

    def inherit_backoff(self, other: GitHubClient) -> None:
        """Take over what GitHub told ``other`` (a client this one replaces): its backoff, and how
        many transient failures in a row it had (the next delay grows from there)."""
        self.backoff, self.failures = other.backoff, other.failures

    def _backing_off(self, backoff: Backoff) -> Backoff:
        self.backoff = backoff
        return backoff

    def _call(self, fn: Callable[[], T]) -> T:
        """Run one PyGithub call; rate limits, 5xx and network errors become ``Backoff``."""
        if (backoff := self.backoff_in_force()) is not None:
            raise Backoff(backoff.until, backoff.reason)  # a fresh exception: no shared traceback
        self.requests += 1
        try:
            result = fn()
        except GithubException as exc:
            if exc.status in (403, 429) and self._is_rate_limit(exc):
                raise self._rate_limit_backoff(exc) from None
            if exc.status >= 500:
                raise self._transient(f"GitHub answered {exc.status}") from None
            raise
        except OSError as exc:  # connection refused/reset, timeouts
            raise self._transient(f"GitHub unreachable: {type(exc).__name__}") from None
        except Exception as exc:  # requests' ConnectionError/ReadTimeout are not OSError subclasses
            if type(exc).__module__.startswith(("requests", "urllib3")):
                raise self._transient(f"GitHub unreachable: {type(exc).__name__}") from None
            raise
        self.failures = 0
        self.backoff = None
        return result

    def call(self, fn: Callable[[], T]) -> T:
        """``fn`` (a PyGithub call) with this client's failure rules: rate limits and outages raise ``Backoff``."""
        return self._call(fn)

    @staticmethod
    def _is_rate_limit(exc: GithubException) -> bool:
        headers = {k.lower(): v for k, v in (exc.headers or {}).items()}
        message = str((exc.data or {}).get("message", "")).lower() if isinstance(exc.data, dict) else ""
        return "rate limit" in message or headers.get("x-ratelimit-remaining") == "0" or "retry-after" in headers

    def _rate_limit_backoff(self, exc: GithubException) -> Backoff:
        headers = {k.lower(): v for k, v in (exc.headers or {}).items()}
        now = self.clock()
        if "retry-after" in headers:  # secondary rate limit
            until = now + dt.timedelta(seconds=float(headers["retry-after"]))
            return self._backing_off(Backoff(until, f"secondary rate limit: retry after {headers['retry-after']} s"))
        if headers.get("x-ratelimit-remaining") == "0" and "x-ratelimit-reset" in headers:
            until = dt.datetime.fromtimestamp(int(headers["x-ratelimit-reset"]), dt.UTC)
            return self._backing_off(Backoff(max(until, now), f"rate limit exhausted until {until:%H:%M:%S} UTC"))
        # A secondary limit without retry-after: GitHub asks for at least a minute.
        self.failures += 1
        delay = min(900, 60 * 2 ** (self.failures - 1))
        return self._backing_off(Backoff(now + dt.timedelta(seconds=delay), "secondary rate limit"))

    def _transient(self, reason: str) -> Backoff:
        self.failures += 1
        delay = min(600.0, 5.0 * 2 ** (self.failures - 1))
        until = self.clock() + dt.timedelta(seconds=delay)
        return self._backing_off(Backoff(until, f"{reason}; retrying in {delay:.0f} s"))

    def push_token(self) -> str:
        """The token ``git push`` uses: the personal token, or the App's current installation
        token (a fresh one minted first when it is about to expire)."""
        return self._call(lambda: str(self.auth.token))

    def quota(self) -> tuple[int, int, dt.datetime | None]:
        """(remaining, limit, reset) as of the last response."""
        remaining, limit = self.gh.rate_limiting
        reset = self.gh.rate_limiting_resettime
        return remaining, limit, (dt.datetime.fromtimestamp(reset, dt.UTC) if reset else None)

    def low_quota_until(self) -> dt.datetime | None:
        remaining, _limit, reset = self.quota()
        if 0 <= remaining < LOW_REMAINING and reset is not None and reset > self.clock():
            return reset
        return None

    # ------------------------------------------------------------ reads
    def me(self) -> str:
        if self._me is None:
            self._me = self._call(lambda: self.gh.get_user().login)
        return self._me

    def open_issues_with_label(self, repo: str, label: str) -> list[dict[str, Any]] | None:
        """Every open issue (and PR: GitHub lists both) carrying ``label``; None if nothing changed."""
        params = {"state": "open", "labels": label, "per_page": 100, "sort": "created", "direction": "asc"}
        return self.list_if_changed(f"/repos/{repo}/issues", params)

    def forget_changes(self, path_prefix: str) -> None:
        """Drop cached ETags under ``path_prefix``: the next read fetches in full.  Called when a
        page was read but not fully processed, so its change is not skipped as "already seen"."""
        for key in [k for k in self._etags if k.startswith(path_prefix)]:
            del self._etags[key]

    def comments_if_changed(self, repo: str, number: int) -> list[dict[str, Any]] | None:
        """An issue's or pull request's comments; None if unchanged since the last call."""
        return self.list_if_changed(f"/repos/{repo}/issues/{number}/comments", {"per_page": 100})

    def repo_comments_if_changed(self, repo: str, since: str) -> list[dict[str, Any]] | None:
        """The repository's issue and pull-request comments updated at or after ``since`` (oldest
        first); None if unchanged since the last call with the same ``since``."""
        params = {"since": since, "sort": "updated", "direction": "asc", "per_page": 100}
        return self.list_if_changed(f"/repos/{repo}/issues/comments", params)

    def list_if_changed(self, path: str, params: dict[str, Any]) -> list[dict[str, Any]] | None:
        """Every item of a paginated list, or None if nothing changed since the last call.

        Each page is fetched with its last ETag; if every page answers 304 the list is
        unchanged and costs no rate-limit points.
        """
        query: dict[str, Any] | None = params
        items: list[Any] = []
        changed = False
        url: str | None = path
        while url:
            key = url + "?" + urllib.parse.urlencode(query or {})
            cached = self._etags.get(key)
            headers = {"If-None-Match": cached[0]} if cached else {}
            status, resp_headers, body = self._call(
                lambda u=url, p=query, h=headers: self.gh.requester.requestJson("GET", u, p, h)  # type: ignore[misc]
            )
            resp_headers = {k.lower(): v for k, v in resp_headers.items()}
            if status == 304 and cached is not None:
                page = cached[1]
            elif status == 200:
                page = json.loads(body)
                changed = True
                if "etag" in resp_headers:
                    self._etags[key] = (resp_headers["etag"], page)
            else:
                data = json.loads(body) if body else {}
                raise self._check(status, resp_headers, data)
            items.extend(page)
            url, query = _next_link(resp_headers.get("link", "")), None
        return items if changed else None

    def pull_if_changed(self, repo: str, number: int) -> dict[str, Any] | None:
        """A pull request (its state, ``merged_at``), or None if unchanged since the last call:
        a conditional GET, so an unchanged pull request costs no rate-limit points."""
        path = f"/repos/{repo}/pulls/{number}"
        cached = self._etags.get(path)
        headers = {"If-None-Match": cached[0]} if cached else {}
        status, resp_headers, body = self._call(lambda: self.gh.requester.requestJson("GET", path, None, headers))
        resp_headers = {k.lower(): v for k, v in resp_headers.items()}
        if status == 304 and cached is not None:
            return None
        if status != 200:
            raise self._check(status, resp_headers, json.loads(body) if body else {})
        pull: dict[str, Any] = json.loads(body)
        if "etag" in resp_headers:
            self._etags[path] = (resp_headers["etag"], [pull])
        return pull

    def _check(self, status: int, headers: dict[str, Any], data: dict[str, Any]) -> Exception:
        exc = self.gh.requester.createException(status, headers, data)
        if status in (403, 429) and self._is_rate_limit(exc):
            return self._rate_limit_backoff(exc)
        if status >= 500:
            return self._transient(f"GitHub answered {status}")
        return exc

    def issue(self, repo: str, number: int) -> dict[str, Any]:
        return self._call(lambda: self.gh.get_repo(repo).get_issue(number).raw_data)

    def _get_all(self, path: str, params: dict[str, Any] | None = None) -> list[Any]:
        """Every item of a paginated list, as plain JSON.  (PyGithub objects built from a list
        fetch themselves again when ``raw_data`` is read: one extra request per item.)"""
        items: list[Any] = []
        url: str | None = path
        query: dict[str, Any] | None = {"per_page": 100, **(params or {})}
        while url:
            headers, page = self.gh.requester.requestJsonAndCheck("GET", url, query)
            items.extend(page or [])
            url, query = _next_link({k.lower(): v for k, v in headers.items()}.get("link", "")), None
        return items

    def latest_label_event(self, repo: str, number: int, label: str) -> LabelEvent | None:
        """Who applied ``label`` most recently (the events API lists oldest first)."""
        return self._latest_event(repo, number, "labeled", lambda ev: (ev.get("label") or {}).get("name") == label)

    def _latest_event(
        self, repo: str, number: int, kind: str, matches: Callable[[dict[str, Any]], bool]
    ) -> LabelEvent | None:
        """The issue's latest ``kind`` event that ``matches`` (the events API lists oldest first)."""

        def fetch() -> LabelEvent | None:
            latest = None
            for ev in self._get_all(f"/repos/{repo}/issues/{number}/events"):
                if ev.get("event") == kind and matches(ev):
                    actor = ev.get("actor") or {}
                    latest = LabelEvent(int(ev["id"]), actor.get("login", ""), actor.get("type", "User"))
            return latest

        return self._call(fetch)

    def permission(self, repo: str, login: str) -> str:
        """The user's role on the repo: admin, maintain, write, triage, read or none (cached 10 min)."""
        key = (repo, login)
        hit = self._permissions.get(key)
        if hit is not None and time.monotonic() - hit[0] < PERMISSION_TTL_S:
            return hit[1]

        def fetch() -> str:
            try:
                _, data = self.gh.requester.requestJsonAndCheck(
                    "GET", f"/repos/{repo}/collaborators/{urllib.parse.quote(login)}/permission"
                )
            except github.UnknownObjectException:
                return "none"
            return str(data.get("role_name") or data.get("permission") or "none")

        role = self._call(fetch)
        self._permissions[key] = (time.monotonic(), role)
        return role

    def comments(self, repo: str, number: int) -> list[dict[str, Any]]:
        return self._call(lambda: self._get_all(f"/repos/{repo}/issues/{number}/comments"))

    def pull_reviews(self, repo: str, number: int) -> list[dict[str, Any]]:
        """A pull request's reviews (approve / request changes / comment, with their summary text)."""
        return self._call(lambda: self._get_all(f"/repos/{repo}/pulls/{number}/reviews"))

    def pull_review_comments(self, repo: str, number: int) -> list[dict[str, Any]]:
        """A pull request's inline review comments (path, line, body)."""
        return self._call(lambda: self._get_all(f"/repos/{repo}/pulls/{number}/comments"))

    def labels(self, repo: str) -> list[str]:
        return self._call(lambda: [lb["name"] for lb in self._get_all(f"/repos/{repo}/labels")])

    def repo_info(self, repo: str) -> dict[str, Any]:
        return self._call(lambda: self.gh.get_repo(repo).raw_data)

    def scopes(self) -> list[str] | None:
        """The token's OAuth scopes (None for fine-grained tokens, which have no such header)."""

        def fetch() -> list[str] | None:
            headers, _ = self.gh.requester.requestJsonAndCheck("GET", "/user")
            raw = {k.lower(): v for k, v in headers.items()}.get("x-oauth-scopes")
            return None if raw is None else [s.strip() for s in raw.split(",") if s.strip()]

        return self._call(fetch)

    # ------------------------------------------------------------ writes
    def create_comment(self, repo: str, number: int, body: str) -> int:
        return self._call(lambda: self.gh.get_repo(repo).get_issue(number).create_comment(body).id)

    def edit_comment(self, repo: str, comment_id: int, body: str) -> None:
        def edit() -> None:
            self.gh.requester.requestJsonAndCheck(
                "PATCH", f"/repos/{repo}/issues/comments/{comment_id}", input={"body": body}
            )

        self._call(edit)

    def add_label(self, repo: str, number: int, label: str) -> None:
        def add() -> None:
            self.gh.requester.requestJsonAndCheck(
                "POST", f"/repos/{repo}/issues/{number}/labels", input={"labels": [label]}
            )

        self._call(add)

    def remove_label(self, repo: str, number: int, label: str) -> None:
        def remove() -> None:
            try:
                self.gh.requester.requestJsonAndCheck(
                    "DELETE", f"/repos/{repo}/issues/{number}/labels/{urllib.parse.quote(label, safe='')}"
                )
            except github.UnknownObjectException:
                pass  # already gone: the end state is what we wanted

        self._call(remove)

    def default_branch(self, repo: str) -> str:
        if repo not in self._default_branches:
            self._default_branches[repo] = str(self.repo_info(repo).get("default_branch") or "main")
        return self._default_branches[repo]

    def open_pull_for(self, repo: str, branch: str) -> dict[str, Any] | None:
        owner = repo.split("/", 1)[0]
        pulls = self._call(
            lambda: self._get_all(f"/repos/{repo}/pulls", {"state": "open", "head": f"{owner}:{branch}"})
        )
        return pulls[0] if pulls else None

    def create_pull(self, repo: str, title: str, head: str, base: str, body: str) -> dict[str, Any]:
        """A draft pull request; returns its JSON (number, html_url)."""

        def create() -> dict[str, Any]:
            _, data = self.gh.requester.requestJsonAndCheck(
                "POST",
                f"/repos/{repo}/pulls",
                input={"title": title, "head": head, "base": base, "body": body, "draft": True},
            )
            return dict(data)

        return self._call(create)

    def edit_pull_body(self, repo: str, number: int, body: str) -> None:
        path = f"/repos/{repo}/pulls/{number}"
        self._call(lambda: self.gh.requester.requestJsonAndCheck("PATCH", path, input={"body": body}))

    def add_reaction(self, repo: str, target: str, content: str) -> None:
        """React to ``target``: ``issues/{n}`` or ``issues/comments/{id}`` (or ``pulls/comments/{id}``)
        with ``content`` (eyes, rocket, confused, ...).  Reacting twice is harmless (GitHub answers 200)."""
        path = f"/repos/{repo}/{target}/reactions"
        self._call(lambda: self.gh.requester.requestJsonAndCheck("POST", path, input={"content": content}))

    def assigned_issues(self, repo: str, login: str) -> list[dict[str, Any]] | None:
        """Open issues assigned to ``login``; None if unchanged since the last call (conditional)."""
        params = {"state": "open", "assignee": login, "per_page": 100, "sort": "created", "direction": "asc"}
        return self.list_if_changed(f"/repos/{repo}/issues", params)

    def latest_assignment(self, repo: str, number: int, assignee: str) -> LabelEvent | None:
        """Who assigned ``assignee`` to the issue most recently (the ``assigned`` event)."""
        return self._latest_event(
            repo, number, "assigned", lambda ev: (ev.get("assignee") or {}).get("login") == assignee
        )

    def hooks(self, repo: str) -> list[dict[str, Any]]:
        """The repository's webhooks, with ``last_response`` (needs admin or the Webhooks permission)."""
        return self._call(lambda: self._get_all(f"/repos/{repo}/hooks"))

    def create_label(self, repo: str, name: str, color: str, description: str) -> None:
        self._call(lambda: self.gh.get_repo(repo).create_label(name, color, description))


def _next_link(link: str) -> str | None:
    for part in link.split(","):
        section = part.split(";")
        if len(section) > 1 and 'rel="next"' in section[1]:
            return section[0].strip().strip("<>")
    return None
