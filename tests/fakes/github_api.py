"""A fake GitHub REST API on 127.0.0.1 for PyGithub, its answers checked against GitHub's OpenAPI description.

It is a real HTTP/1.1 server (stdlib ``ThreadingHTTPServer`` in a thread, ephemeral port), so
PyGithub runs its real HTTP, retry, pagination and error-mapping code::

    with FakeGitHub() as fake:                        # token FAKE_TOKEN -> user "adw-bot"
        fake.add_repo("acme/widgets")
        n = fake.add_issue("acme/widgets", "Fix it", user="alice", labels=["agent:ready"])
        fake.label_issue("acme/widgets", n, "agent:go", actor="alice")
        gh = fake.client()   # Github(base_url=fake.base_url, auth=Auth.Token(FAKE_TOKEN), retry=None, ...)
        issue = gh.get_repo("acme/widgets").get_issue(n)
        issue.create_comment("working on it")
        assert [c.body for c in fake.comments("acme/widgets", n)] == ["working on it"]
        fake.assert_valid()                           # every body served matched the description

**Strict mode (default).**  Every JSON body the fake serves is validated with
``tests.github_openapi.ResponseValidator`` against GitHub's official description (npm
``@octokit/openapi``, pinned there) for the operation's method, templated path and status.  A body
that does not match is still served, and the error is recorded in ``fake.validation_errors``;
``fake.assert_valid()`` raises with all of them (the test fixtures call it at teardown).  Pass
``validator=None`` to switch validation off (nothing in this repository does).

**State** (in memory, scriptable, guarded by one lock): users (``User`` or ``Bot``), tokens
(token -> login, with the ``X-OAuth-Scopes`` they report), repositories ``owner/name`` (private,
with numeric ids), labels, issues and pull requests (one number sequence per repository; PRs
appear in the issues list with a ``pull_request`` object, as on GitHub), issue events in time
order (``labeled``/``unlabeled`` with ``actor`` and ``label``, ``closed``/``reopened``), issue
comments, pull-request reviews and review comments, and per-repository collaborator permissions
(``admin maintain write triage read none``; the owner is admin).  Changes made through the API
are attributed to the token's user; test helpers take an explicit ``actor``/``user``.

**Endpoints** (what PyGithub calls for them): ``GET /user``, ``GET /users/{u}``,
``GET /rate_limit``, ``GET /repos/{o}/{r}``, ``GET|POST /repos/{o}/{r}/issues`` (filters
``state labels since sort direction creator per_page page``), ``GET|PATCH .../issues/{n}``,
``GET .../issues/{n}/events``, ``GET .../issues/events/{id}``, ``GET .../issues/{n}/timeline``
(events plus ``commented`` items), ``GET|POST .../issues/{n}/comments``, ``GET|PATCH .../issues/comments/{id}``, ``GET|POST .../labels``, ``GET .../labels/{name}``,
``GET|POST|PUT|DELETE .../issues/{n}/labels``, ``DELETE .../issues/{n}/labels/{name}``,
``GET .../collaborators/{u}/permission`` (404 for an unknown user; ``permission`` is the legacy
field where maintain -> write and triage -> read, ``role_name`` the real role), ``POST .../pulls``
(``title head base body draft maintainer_can_modify``; ``head`` and ``base`` must be branches of
the repository — ``fake.add_branch(repo, name, sha=None)`` after pushing to a bare repository; the
default branch always exists — and 422 "A pull request already exists for owner:head." while one
is open for that head), ``GET .../pulls`` (filters ``state head base sort direction``, paginated),
``GET .../pulls/{n}`` and ``PATCH .../pulls/{n}`` (title, body, state, base).  A pull request
takes the next issue number and appears in the issues list with its ``pull_request`` object; ``fake.pulls(repo)`` / ``fake.pull(repo, n)`` show them
(``FakePull``: head, base, and the ``FakeIssue`` holding title, body, state, draft).
``fake.merge_pull(repo, n, actor)`` merges one as the merge button does (GitHub's
``PUT .../pulls/{n}/merge``, not served): the pull request is closed with ``merged_at`` set (and
``merged: true`` in the full object), the fields GitHub's "Get a pull request" returns for a merged one.

**Reviews**: ``GET .../pulls/{n}/comments`` (review comments, i.e. inline comments on the diff,
oldest first; ``sort direction since``, paginated), ``GET .../pulls/comments/{id}``,
``GET .../pulls/{n}/reviews`` (oldest first, paginated) and ``GET .../pulls/{n}/reviews/{id}``;
all 404 for a number that is not a pull request.  Written by helpers only:
``fake.add_review(repo, n, body, user=..., state="COMMENTED")`` (``APPROVED CHANGES_REQUESTED
COMMENTED DISMISSED PENDING``; ``ValueError`` for approving or requesting changes on one's own pull
request, or a second pending review) and ``fake.add_review_comment(repo, n, body, user=...,
path="README.md", line=1)`` (one line on the new side of the diff), both returning the new id.  As on
GitHub, a single review comment comes wrapped in its own ``COMMENTED`` review with an empty body (the
comment's ``pull_request_review_id``, listed among the reviews); a ``PENDING`` review is listed only
to its author, without ``submitted_at``; reviews and comments record the head sha as
``commit_id``; a submitted review or a comment bumps the pull request's ``updated_at``, and the pull
request's ``review_comments`` counts the comments.  ``fake.reviews(repo, n)`` /
``fake.review_comments(repo, n)`` show them (``FakeReview``, ``FakeReviewComment``).

**Reactions**: ``POST|GET .../issues/{n}/reactions``, ``.../issues/comments/{id}/reactions`` and
``.../pulls/comments/{id}/reactions`` (201 for a new one, 200 for one the user already gave, 422
for an unknown ``content``); the ``reactions`` summary of issues and comments counts them;
``fake.reactions(repo, "issues/7")`` lists ``(user, content)``.

**Assignees**: ``fake.assign_issue(repo, n, assignee, actor=...)`` / ``unassign_issue`` (the
``assignee``/``assignees`` of the issue, an ``assigned``/``unassigned`` event with ``assignee`` and
``assigner``); the issues list filters ``assignee``.

**GitHub Apps**: ``fake.add_app(app_id, slug, public_key_pem, repos=[...])``.  A request with
``Authorization: Bearer <JWT>`` is checked like GitHub does (RS256 with the App's key, ``iss`` the
App id, ``exp`` in the future and at most 10 minutes after ``iat``; else 401) and may call
``GET /app``, ``GET /repos/{o}/{r}/installation`` (404 where the App is not installed) and
``POST /app/installations/{id}/access_tokens`` (201: a ``ghs_`` token for the Bot user
``<slug>[bot]``, ``expires_at`` one hour ahead, ``app.token_lifetime_s``).  An installation token
past its ``expires_at`` (the fake clock: ``advance_clock``) answers 401 "Bad credentials";
``fake.token_valid(token)`` says whether GitHub would take it now (for a git remote's check).
An App's own webhook (``hook_url``, ``hook_secret``) receives ``fake.deliver`` for the repositories it
is installed on; ``GET /app/hook/config`` and ``GET /app/hook/deliveries`` (JWT) show it.

**Webhooks**: ``fake.add_hook(repo, url, secret, events)`` and ``fake.deliver(repo, event,
payload)`` POST a delivery to each subscribed hook exactly as GitHub signs it (JSON body,
``X-GitHub-Event``, ``X-GitHub-Delivery``, ``X-Hub-Signature-256`` and ``X-Hub-Signature``,
``User-Agent: GitHub-Hookshot/…``; docs.github.com/webhooks "Validating webhook deliveries"),
recording the answer as the hook's ``last_response`` (``GET /repos/{o}/{r}/hooks``).
``fake.issues_payload``, ``comment_payload``, ``review_payload`` and ``review_comment_payload`` build
full payloads from the fake's state; every payload ``deliver`` sends is validated against the
description's ``webhook-<event>-<action>`` schema first.

Anything else answers GitHub's 404 ``{"message": "Not Found", ...}`` (GitHub also answers 404,
not 405, to an unsupported method).  Lists are paginated like GitHub: ``per_page`` default 30,
max 100, a ``Link`` header with ``prev next last first`` whose URLs use GitHub's
``/repositories/{id}/...`` form (the fake serves those paths too).

**Headers like GitHub's**: ``Content-Type: application/json; charset=utf-8``, a weak ``ETag``
(``W/"<sha256 of user and body>"``) on 200 GETs, ``If-None-Match`` -> ``304`` without a body,
``X-RateLimit-Limit/Remaining/Used/Reset/Resource``, ``X-GitHub-Request-Id``, ``X-OAuth-Scopes``,
``X-GitHub-Media-Type``, ``Vary``, ``Location`` on 201.

**Rate limits like GitHub's**: one budget per user (5000/hour; 60 for tokenless requests), the
window starts with the first charged request and resets an hour later (``advance_clock()`` moves
the fake clock).  Every request costs one point except: 304 answers to conditional requests,
``GET /rate_limit``, answers to a bad token (401), requests refused because the budget is
exhausted, and dropped connections (injected 5xx and secondary-limit answers are charged).  An
exhausted budget answers ``403`` "API rate limit exceeded for user ID ..." with
``X-RateLimit-Remaining: 0`` until the reset, conditional requests included.

**Faults** for the next ``times`` requests matching ``method``/``path`` (a regex searched in the
path): ``inject_primary_rate_limit`` (403 as if exhausted, without touching the budget),
``inject_secondary_rate_limit`` (403 or 429 with ``Retry-After`` and "You have exceeded a secondary
rate limit"), ``inject_server_error`` (500/502/503, GitHub's HTML "Unicorn" page or a JSON body),
``inject_dropped_connection`` (request read, then a TCP reset and no answer), ``inject_forbidden``
(403 "Resource not accessible by personal access token": a permission the token lacks).
``exhaust_rate_limit()`` empties the budget for real.

**Request log**: ``fake.requests`` lists ``LoggedRequest(method, path, query, status, conditional,
points, login, headers, body, response_headers, fault, validated)`` for every request, in arrival
order; ``requests_to(method, path_regex, since=index)`` filters it, ``points_used()`` sums the
points, ``rate_limit_state()`` shows a budget, ``clear_log()`` starts over (for benchmarks).

**PyGithub notes** (``fake.client()`` applies the first two): PyGithub sleeps 0.25 s between
requests and 1 s between writes unless ``seconds_between_requests=0, seconds_between_writes=0``;
its default ``GithubRetry`` retries 403 rate limits (sleeping until ``X-RateLimit-Reset``) and
5xx, so error tests pass ``retry=None``.  Objects from a list are incomplete: reading an attribute
the list body lacks (``issue.pull_request`` on a plain issue) or ``raw_data`` GETs the object.
PyGithub keeps only the path and query of URLs in bodies and ``Link`` headers, so the
``http://127.0.0.1:PORT`` URLs the fake puts there are followed correctly.

Not modelled: milestones, locking, redirects for renamed
repositories, GraphQL, writing reviews or review comments through the API (and replies, threads,
multi-line or file-level comments, outdated positions, dismissals, review requests, ``reviewed``
items in the timeline, the ``body_html``/``body_text`` media types), write-permission checks on
the token's own writes, and the unauthenticated view of public repositories (every fake
repository is private, so a tokenless request gets 404, or 401 for ``/user``, like GitHub answers
for private data).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import socket
import struct
import threading
import time
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any, Literal

from github import Auth, Github

from tests.fakes.loopback import LoopbackServer
from tests.github_openapi import OpenAPIValidationError, ResponseValidator, default_validator

FAKE_TOKEN = "ghp_FakeAdwToken0000000000000000000000000"  # shaped like a classic PAT; not a real token
DEFAULT_LOGIN = "adw-bot"
DEFAULT_SCOPES = "repo, read:org"
HOUR = 3600
DOCS = "https://docs.github.com/rest"
RATE_DOCS = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"
SECONDARY_DOCS = f"{RATE_DOCS}#about-secondary-rate-limits"
HTML_BASE = "https://github.com"
# The reaction contents GitHub accepts (docs.github.com/rest/reactions/reactions#about-reactions).
APP_LOGIN_PREFIX = "<app>"  # the login a JWT-authenticated request gets: "<app>ID" (no user)
REACTIONS = ("+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes")
AVATARS = "https://avatars.githubusercontent.com"

Permission = Literal["admin", "maintain", "write", "triage", "read", "none"]
PERMISSIONS: tuple[str, ...] = ("none", "read", "triage", "write", "maintain", "admin")  # ascending
ReviewState = Literal["APPROVED", "CHANGES_REQUESTED", "COMMENTED", "DISMISSED", "PENDING"]
REVIEW_STATES: tuple[str, ...] = ("APPROVED", "CHANGES_REQUESTED", "COMMENTED", "DISMISSED", "PENDING")
LEGACY_PERMISSION = {"admin": "admin", "maintain": "write", "write": "write", "triage": "read", "read": "read"}

_UNICORN_HTML = """<!DOCTYPE html>
<html>
  <head>
    <meta http-equiv="Content-Type" content="text/html; charset=utf-8">
    <title>Unicorn! &middot; GitHub</title>
  </head>
  <body>
    <p><strong>We had issues producing the response to your request.</strong></p>
    <p>Sorry about that. Please try refreshing and contact us if the problem persists.</p>
  </body>
</html>
"""
_SERVER_ERROR_MESSAGES = {500: "Server Error", 502: "Server Error", 503: "Service Unavailable", 504: "Server Error"}


# -- state -------------------------------------------------------------------------------------
@dataclass
class FakeUser:
    login: str
    id: int
    type: Literal["User", "Bot"] = "User"
    name: str | None = None
    created_at: float = 0.0

    @property
    def node_id(self) -> str:
        prefix = "BOT_" if self.type == "Bot" else "U_"
        return prefix + base64.b64encode(f"04:{self.type}{self.id}".encode()).decode().rstrip("=")


@dataclass
class FakeLabel:
    id: int
    name: str
    color: str = "ededed"
    description: str | None = None
    default: bool = False


@dataclass
class FakeEvent:
    id: int
    event: str  # labeled, unlabeled, closed, reopened
    actor: str
    created_at: float
    label: str | None = None
    label_color: str | None = None
    state_reason: str | None = None
    assignee: str | None = None  # for assigned / unassigned


@dataclass
class FakeComment:
    id: int
    issue_number: int
    body: str
    user: str
    created_at: float
    updated_at: float


@dataclass
class FakeIssue:
    number: int
    id: int
    title: str
    body: str | None
    user: str
    created_at: float
    updated_at: float
    state: Literal["open", "closed"] = "open"
    state_reason: str | None = None
    labels: list[str] = field(default_factory=list)  # label names, in the order they were added
    pull_request: bool = False
    draft: bool = False
    closed_at: float | None = None
    closed_by: str | None = None
    events: list[FakeEvent] = field(default_factory=list)
    comment_ids: list[int] = field(default_factory=list)
    assignees: list[str] = field(default_factory=list)


@dataclass
class FakePull:
    """The pull-request side of an issue with ``pull_request=True`` (same number)."""

    issue: FakeIssue
    id: int  # the pull request's own id (GitHub's differs from the issue's)
    head: str  # branch name in this repository
    base: str
    maintainer_can_modify: bool = False
    review_ids: list[int] = field(default_factory=list)  # FakeRepo.reviews keys, oldest first
    review_comment_ids: list[int] = field(default_factory=list)  # FakeRepo.review_comments keys, oldest first
    merged_at: float | None = None  # set by ``FakeGitHub.merge_pull`` (GitHub: PUT .../pulls/{n}/merge)

    @property
    def number(self) -> int:
        return self.issue.number

    @property
    def title(self) -> str:
        return self.issue.title

    @property
    def body(self) -> str | None:
        return self.issue.body

    @property
    def state(self) -> str:
        return self.issue.state

    @property
    def draft(self) -> bool:
        return self.issue.draft


@dataclass
class FakeReview:
    id: int
    pull_number: int
    user: str
    body: str
    state: str  # one of REVIEW_STATES
    commit_id: str  # the pull request's head when the review was made
    submitted_at: float | None  # None while PENDING


@dataclass
class FakeReviewComment:
    """An inline comment on the new (``RIGHT``) side of the diff, at ``line`` of ``path``."""

    id: int
    pull_number: int
    review_id: int
    body: str
    user: str
    path: str
    line: int
    commit_id: str
    created_at: float
    updated_at: float


@dataclass
class FakeReaction:
    id: int
    user: str
    content: str
    created_at: float


@dataclass
class FakeHook:
    """A repository webhook: where the fake delivers events, signed with ``secret``."""

    id: int
    url: str
    secret: str
    events: list[str]
    created_at: float
    last_response: dict[str, Any] = field(default_factory=lambda: {"code": None, "status": "unused", "message": None})
    deliveries: list[tuple[str, str, int]] = field(default_factory=list)  # (delivery id, event, status)


@dataclass
class FakeApp:
    id: int
    slug: str
    public_key_pem: str
    owner: str
    installations: dict[str, int] = field(default_factory=dict)  # lower-cased repo -> installation id
    token_lifetime_s: float = 3600.0  # GitHub's installation tokens last one hour
    tokens_minted: int = 0
    hook_url: str | None = None  # the App's own webhook (its settings page)
    hook_secret: str = ""
    # (id, guid, event, action, status code, delivered at), newest last
    hook_deliveries: list[tuple[int, str, str, str | None, int, float]] = field(default_factory=list)


@dataclass
class FakeRepo:
    id: int
    owner: str
    name: str
    created_at: float
    private: bool = True
    default_branch: str = "main"
    description: str | None = None
    labels: dict[str, FakeLabel] = field(default_factory=dict)  # key: lower-cased name
    issues: dict[int, FakeIssue] = field(default_factory=dict)
    comments: dict[int, FakeComment] = field(default_factory=dict)
    permissions: dict[str, str] = field(default_factory=dict)  # key: lower-cased login
    next_number: int = 1
    branches: dict[str, str] = field(default_factory=dict)  # name -> head sha (besides the default branch)
    pulls: dict[int, FakePull] = field(default_factory=dict)  # key: number
    reviews: dict[int, FakeReview] = field(default_factory=dict)  # key: review id
    review_comments: dict[int, FakeReviewComment] = field(default_factory=dict)  # key: comment id
    # (kind, id) -> reactions, kind "issues" | "issues/comments" | "pulls/comments"
    reactions: dict[tuple[str, int], list[FakeReaction]] = field(default_factory=dict)
    hooks: list[FakeHook] = field(default_factory=list)

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


@dataclass
class _Bucket:
    limit: int
    used: int = 0
    reset: int | None = None  # epoch seconds; None: no window started yet


@dataclass(frozen=True)
class LoggedRequest:
    method: str
    path: str  # as requested (percent-encoded), without the query string
    query: dict[str, list[str]]
    status: int  # 0: the connection was dropped without an answer
    conditional: bool  # carried If-None-Match or If-Modified-Since
    points: int  # rate-limit points charged
    login: str | None  # the token's user; None for tokenless or bad-token requests
    headers: dict[str, str]  # request headers, names lower-cased
    body: bytes
    response_headers: dict[str, str]
    fault: str | None = None  # the injected fault that answered, if any
    validated: bool = False  # a JSON body was served and checked against the description

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class _Fault:
    kind: str
    method: str | None
    path: re.Pattern[str] | None
    remaining: int
    status: int = 403
    retry_after: int | None = None
    html: bool = False

    def matches(self, method: str, path: str) -> bool:
        if self.remaining <= 0:
            return False
        if self.method is not None and self.method.upper() != method:
            return False
        return self.path is None or self.path.search(path) is not None


class _Answer:
    """What a route produced: status, JSON document (or None), extra headers."""

    def __init__(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.body = body
        self.headers = headers or {}


class _ApiError(Exception):
    def __init__(self, status: int, message: str, docs: str = DOCS, errors: list[dict[str, str]] | None = None):
        super().__init__(message)
        self.status = status
        self.document: dict[str, Any] = {"message": message, "documentation_url": docs, "status": str(status)}
        if errors is not None:
            self.document["errors"] = errors


def _not_found(docs: str = DOCS) -> _ApiError:
    return _ApiError(404, "Not Found", docs)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(int(ts), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_iso(value: str) -> float:
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _node_id(kind: str, number: int) -> str:
    return f"{kind}_" + base64.b64encode(f"0:{kind}{number}".encode()).decode().rstrip("=")


# -- the fake ----------------------------------------------------------------------------------
class FakeGitHub(LoopbackServer):
    """GitHub's REST API for PyGithub on an ephemeral loopback port (a context manager)."""

    # Every response closes its connection; close() waits for the requests in flight to finish.
    drain_on_close = True
    # A short poll interval makes close() (shutdown) take milliseconds instead of half a second.
    poll_interval = 0.02
    thread_name = "fake-github-api"

    def __init__(
        self,
        *,
        token: str = FAKE_TOKEN,
        login: str = DEFAULT_LOGIN,
        user_type: Literal["User", "Bot"] = "User",
        scopes: str = DEFAULT_SCOPES,
        rate_limit: int = 5000,
        validator: ResponseValidator | Literal["default"] | None = "default",
    ) -> None:
        super().__init__(_Handler)
        self.validator: ResponseValidator | None = default_validator() if validator == "default" else validator
        self.rate_limit = rate_limit
        self._lock = threading.RLock()
        self._clock_offset = 0.0
        self._ids = 1000
        self._request_ids = 0
        self._users: dict[str, FakeUser] = {}
        self._tokens: dict[str, tuple[str, str]] = {}  # token -> (login, scopes)
        self._repos: dict[str, FakeRepo] = {}  # key: lower-cased full name
        self._buckets: dict[str, _Bucket] = {}
        self._faults: list[_Fault] = []
        self._log: list[LoggedRequest] = []
        self._validation_errors: list[str] = []
        self._token_expiry: dict[str, float] = {}  # installation token -> expires at (fake clock)
        self._apps: dict[int, FakeApp] = {}
        self.add_token(token, login, scopes=scopes, user_type=user_type)
        self.token = token
        self.login = login

    # -- addresses and clients ---------------------------------------------------------------
    @property
    def base_url(self) -> str:
        """``Github(base_url=...)``; API URLs in bodies point here (as GHES's do to its own host)."""
        return self.url()

    def client(self, token: str | None = None, **options: Any) -> Github:
        """A PyGithub client for this fake (close it after use).

        Defaults suit tests: ``retry=None`` (errors surface at once; pass a ``GithubRetry`` to test
        retries), no client-side throttling (PyGithub otherwise sleeps 0.25 s between requests and
        1 s between writes), ``per_page=100``, a 10 s timeout.  Any ``Github(...)`` option overrides.
        """
        settings: dict[str, Any] = {
            "retry": None,
            "seconds_between_requests": 0,
            "seconds_between_writes": 0,
            "per_page": 100,
            "timeout": 10,
        }
        settings.update(options)
        return Github(base_url=self.base_url, auth=Auth.Token(token or self.token), **settings)

    # -- clock -------------------------------------------------------------------------------
    def now(self) -> float:
        return time.time() + self._clock_offset

    def advance_clock(self, seconds: float) -> None:
        """Move the fake's clock (timestamps, rate-limit windows) forward."""
        with self._lock:
            self._clock_offset += seconds

    def _next_id(self) -> int:
        self._ids += 1
        return self._ids

    # -- users, tokens, permissions ----------------------------------------------------------
    def add_user(self, login: str, *, type: Literal["User", "Bot"] = "User", name: str | None = None) -> FakeUser:
        with self._lock:
            key = login.lower()
            if key not in self._users:
                self._users[key] = FakeUser(login, self._next_id(), type, name, self.now() - 86400 * 365)
            return self._users[key]

    def add_token(
        self, token: str, login: str, *, scopes: str = DEFAULT_SCOPES, user_type: Literal["User", "Bot"] = "User"
    ) -> None:
        with self._lock:
            self.add_user(login, type=user_type)
            self._tokens[token] = (login, scopes)

    def user(self, login: str) -> FakeUser:
        with self._lock:
            try:
                return self._users[login.lower()]
            except KeyError:
                raise KeyError(f"no fake user {login!r}") from None

    def set_permission(self, repo: str, login: str, permission: Permission) -> None:
        if permission not in PERMISSIONS:
            raise ValueError(f"unknown permission {permission!r}; one of {PERMISSIONS}")
        with self._lock:
            self.add_user(login)
            self._repo(repo).permissions[login.lower()] = permission

    def permission(self, repo: str, login: str) -> str:
        with self._lock:
            r = self._repo(repo)
            if login.lower() == r.owner.lower():
                return "admin"
            return r.permissions.get(login.lower(), "none")

    # -- repositories, labels, issues --------------------------------------------------------
    def add_repo(self, full_name: str, *, private: bool = True, description: str | None = None) -> FakeRepo:
        owner, _, name = full_name.partition("/")
        if not owner or not name or "/" in name:
            raise ValueError(f"repository must be 'owner/name', got {full_name!r}")
        with self._lock:
            self.add_user(owner)
            repo = FakeRepo(self._next_id(), owner, name, self.now() - 86400 * 30, private, description=description)
            self._repos[full_name.lower()] = repo
            return repo

    def add_label(self, repo: str, name: str, *, color: str = "ededed", description: str | None = None) -> FakeLabel:
        with self._lock:
            r = self._repo(repo)
            label = r.labels.get(name.lower())
            if label is None:
                label = FakeLabel(self._next_id(), name, color.lstrip("#"), description)
                r.labels[name.lower()] = label
            return label

    def add_issue(
        self,
        repo: str,
        title: str,
        *,
        body: str | None = "",
        user: str | None = None,
        labels: Sequence[str] = (),
        state: Literal["open", "closed"] = "open",
        pull_request: bool = False,
        created_at: float | None = None,
    ) -> int:
        """Create an issue (or a PR with ``pull_request=True``) by ``user``; labels are recorded as
        ``labeled`` events by that user, as GitHub does for labels given at creation.  Returns its number."""
        with self._lock:
            r = self._repo(repo)
            author = user or r.owner
            self.add_user(author)
            stamp = self.now() if created_at is None else created_at
            number = r.next_number
            r.next_number += 1
            issue = FakeIssue(number, self._next_id(), title, body, author, stamp, stamp, pull_request=pull_request)
            r.issues[number] = issue
            self._apply_labels(r, issue, [*issue.labels, *labels], author, stamp)
            if state == "closed":
                self._set_state(r, issue, "closed", "completed", author, stamp)
            return number

    def add_issues(self, repo: str, count: int, *, title: str = "Issue", **kwargs: Any) -> list[int]:
        return [self.add_issue(repo, f"{title} {i + 1}", **kwargs) for i in range(count)]

    def label_issue(self, repo: str, number: int, label: str, actor: str) -> None:
        """``actor`` adds ``label`` (created on the repository if needed); records a ``labeled`` event."""
        with self._lock:
            r = self._repo(repo)
            issue = self._issue(r, number)
            self.add_user(actor)
            self._apply_labels(r, issue, [*issue.labels, label], actor, self.now())

    def unlabel_issue(self, repo: str, number: int, label: str, actor: str) -> None:
        with self._lock:
            r = self._repo(repo)
            issue = self._issue(r, number)
            self.add_user(actor)
            if label.lower() not in {n.lower() for n in issue.labels}:
                raise KeyError(f"{repo}#{number} has no label {label!r}")
            self._apply_labels(r, issue, [n for n in issue.labels if n.lower() != label.lower()], actor, self.now())

    def close_issue(self, repo: str, number: int, actor: str, *, state_reason: str = "completed") -> None:
        with self._lock:
            r = self._repo(repo)
            self.add_user(actor)
            self._set_state(r, self._issue(r, number), "closed", state_reason, actor, self.now())

    def merge_pull(self, repo: str, number: int, actor: str) -> None:
        """``actor`` merges pull request ``number`` (as the merge button does): merged and closed."""
        with self._lock:
            r = self._repo(repo)
            self.add_user(actor)
            issue = self._issue(r, number)
            pull = self._pull(r, issue)
            pull.merged_at = self.now()
            self._set_state(r, issue, "closed", None, actor, pull.merged_at)

    def reopen_issue(self, repo: str, number: int, actor: str) -> None:
        with self._lock:
            r = self._repo(repo)
            self.add_user(actor)
            self._set_state(r, self._issue(r, number), "open", None, actor, self.now())

    def add_comment(self, repo: str, number: int, body: str, *, user: str) -> int:
        with self._lock:
            r = self._repo(repo)
            self.add_user(user)
            return self._create_comment(r, self._issue(r, number), body, user).id

    def add_review_comment(
        self, repo: str, number: int, body: str, *, user: str, path: str = "README.md", line: int = 1
    ) -> int:
        """``user`` comments on ``line`` of ``path`` (new side of the diff) of pull request ``number``.

        As for a single comment on GitHub, the comment comes wrapped in a ``COMMENTED`` review with
        an empty body (its ``pull_request_review_id``), which the reviews list shows too.  Returns
        the comment's id."""
        if line < 1:
            raise ValueError(f"line must be >= 1, got {line}")
        with self._lock:
            r = self._repo(repo)
            pull = self.pull(repo, number)
            self.add_user(user)
            at = self.now()
            review = self._create_review(r, pull, "", user, "COMMENTED", at)
            comment = FakeReviewComment(
                self._next_id(), number, review.id, body, user, path, line, review.commit_id, at, at
            )
            r.review_comments[comment.id] = comment
            pull.review_comment_ids.append(comment.id)
            return comment.id

    def add_review(self, repo: str, number: int, body: str, *, user: str, state: ReviewState = "COMMENTED") -> int:
        """``user`` submits a review of pull request ``number``; returns its id.

        GitHub's rules: nobody approves or requests changes on their own pull request, and a user
        has at most one ``PENDING`` review per pull request (shown only to them, never submitted)."""
        if state not in REVIEW_STATES:
            raise ValueError(f"unknown review state {state!r}; one of {REVIEW_STATES}")
        with self._lock:
            r = self._repo(repo)
            pull = self.pull(repo, number)
            self.add_user(user)
            own = user.lower() == pull.issue.user.lower()
            if own and state == "APPROVED":
                raise ValueError("Review Can not approve your own pull request")
            if own and state == "CHANGES_REQUESTED":
                raise ValueError("Review Can not request changes on your own pull request")
            if state == "PENDING" and any(
                r.reviews[rid].state == "PENDING" and r.reviews[rid].user.lower() == user.lower()
                for rid in pull.review_ids
            ):
                raise ValueError("User can only have one pending review per pull request")
            return self._create_review(r, pull, body, user, state, self.now()).id

    def add_branch(self, repo: str, name: str, sha: str | None = None) -> str:
        """Create or move branch ``name`` (as a push would); returns its sha (made up if not given)."""
        with self._lock:
            r = self._repo(repo)
            r.branches[name] = sha or _fake_sha(f"{r.full_name}:{name}:{len(r.branches)}")
            return r.branches[name]

    # -- inspection --------------------------------------------------------------------------
    def branches(self, repo: str) -> dict[str, str]:
        """Branch name -> sha, the default branch included."""
        with self._lock:
            r = self._repo(repo)
            return {r.default_branch: self._branch_sha(r, r.default_branch) or "", **r.branches}

    def pulls(self, repo: str) -> list[FakePull]:
        """Pull requests in number order (also those made by ``add_issue(..., pull_request=True)``)."""
        with self._lock:
            r = self._repo(repo)
            return [self._pull(r, i) for i in sorted(r.issues.values(), key=lambda i: i.number) if i.pull_request]

    def pull(self, repo: str, number: int) -> FakePull:
        with self._lock:
            r = self._repo(repo)
            issue = self._issue(r, number)
            if not issue.pull_request:
                raise KeyError(f"{repo}#{number} is an issue, not a pull request")
            return self._pull(r, issue)

    def reviews(self, repo: str, number: int) -> list[FakeReview]:
        """The pull request's reviews, oldest first (pending ones and single-comment wrappers included)."""
        with self._lock:
            r = self._repo(repo)
            return [r.reviews[rid] for rid in self.pull(repo, number).review_ids]

    def review_comments(self, repo: str, number: int) -> list[FakeReviewComment]:
        with self._lock:
            r = self._repo(repo)
            return [r.review_comments[cid] for cid in self.pull(repo, number).review_comment_ids]

    def repo(self, full_name: str) -> FakeRepo:
        with self._lock:
            return self._repo(full_name)

    def issue(self, repo: str, number: int) -> FakeIssue:
        with self._lock:
            return self._issue(self._repo(repo), number)

    def issue_labels(self, repo: str, number: int) -> list[str]:
        with self._lock:
            return list(self.issue(repo, number).labels)

    def comments(self, repo: str, number: int) -> list[FakeComment]:
        with self._lock:
            r = self._repo(repo)
            return [r.comments[cid] for cid in self._issue(r, number).comment_ids]

    def events(self, repo: str, number: int) -> list[FakeEvent]:
        with self._lock:
            return list(self.issue(repo, number).events)

    @property
    def requests(self) -> list[LoggedRequest]:
        with self._lock:
            return list(self._log)

    def requests_to(self, method: str | None = None, path: str | None = None, *, since: int = 0) -> list[LoggedRequest]:
        """Logged requests (from index ``since`` on) with this ``method`` and a path matching the regex ``path``."""
        pattern = re.compile(path) if path is not None else None
        return [
            r
            for r in self.requests[since:]
            if (method is None or r.method == method.upper()) and (pattern is None or pattern.search(r.path))
        ]

    def points_used(self, login: str | None = None) -> int:
        return sum(r.points for r in self.requests if login is None or r.login == login)

    def clear_log(self) -> None:
        with self._lock:
            self._log.clear()

    def rate_limit_state(self, login: str | None = None) -> dict[str, int]:
        """``limit remaining used reset`` of a user's budget (the token user's by default)."""
        with self._lock:
            bucket = self._bucket(login or self.login)
            self._roll_window(bucket)
            reset = bucket.reset if bucket.reset is not None else int(self.now()) + HOUR
            return {
                "limit": bucket.limit,
                "remaining": bucket.limit - bucket.used,
                "used": bucket.used,
                "reset": reset,
            }

    # -- validation --------------------------------------------------------------------------
    @property
    def validation_errors(self) -> list[str]:
        with self._lock:
            return list(self._validation_errors)

    def assert_valid(self) -> None:
        """Raise if any body served so far did not match GitHub's OpenAPI description."""
        errors = self.validation_errors
        if errors:
            raise AssertionError(
                f"the fake GitHub served {len(errors)} body(ies) that GitHub's OpenAPI description rejects:\n\n"
                + "\n\n".join(errors)
            )

    # -- rate limits and faults --------------------------------------------------------------
    def exhaust_rate_limit(self, login: str | None = None) -> None:
        """Use up the rest of the user's hourly budget: requests get 403 until the window resets."""
        with self._lock:
            bucket = self._bucket(login or self.login)
            self._roll_window(bucket, start=True)
            bucket.used = bucket.limit

    def set_rate_limit_remaining(self, remaining: int, login: str | None = None) -> None:
        with self._lock:
            bucket = self._bucket(login or self.login)
            self._roll_window(bucket, start=True)
            bucket.used = max(0, bucket.limit - remaining)

    def inject_primary_rate_limit(self, *, times: int = 1, method: str | None = None, path: str | None = None) -> None:
        self._inject(_Fault("primary_rate_limit", method, _regex(path), times))

    def inject_secondary_rate_limit(
        self,
        *,
        times: int = 1,
        method: str | None = None,
        path: str | None = None,
        retry_after: int | None = 60,
        status: Literal[403, 429] = 403,
    ) -> None:
        self._inject(_Fault("secondary_rate_limit", method, _regex(path), times, status, retry_after))

    def inject_server_error(
        self,
        status: int = 502,
        *,
        times: int = 1,
        method: str | None = None,
        path: str | None = None,
        html: bool = False,
    ) -> None:
        if not 500 <= status <= 599:
            raise ValueError(f"server errors are 5xx, got {status}")
        self._inject(_Fault("server_error", method, _regex(path), times, status, html=html))

    def inject_forbidden(self, *, times: int = 1, method: str | None = None, path: str | None = None) -> None:
        """403 "Resource not accessible by personal access token": what GitHub answers a
        fine-grained token (or, "... by integration", an App) lacking the permission asked for."""
        self._inject(_Fault("forbidden", method, _regex(path), times, 403))

    def inject_dropped_connection(self, *, times: int = 1, method: str | None = None, path: str | None = None) -> None:
        self._inject(_Fault("drop_connection", method, _regex(path), times, 0))

    def pending_faults(self) -> int:
        with self._lock:
            return sum(f.remaining for f in self._faults)

    def _inject(self, fault: _Fault) -> None:
        if fault.remaining < 1:
            raise ValueError("times must be >= 1")
        with self._lock:
            self._faults.append(fault)

    def _take_fault(self, method: str, path: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    fault.remaining -= 1
                    return fault
            return None

    def _bucket(self, login: str | None) -> _Bucket:
        key = (login or "").lower()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(self.rate_limit if login else 60)
            self._buckets[key] = bucket
        return bucket

    def _roll_window(self, bucket: _Bucket, *, start: bool = False) -> None:
        now = self.now()
        if bucket.reset is not None and now >= bucket.reset:
            bucket.used, bucket.reset = 0, None
        if start and bucket.reset is None:
            bucket.reset = int(now) + HOUR

    def _rate_headers(self, bucket: _Bucket) -> dict[str, str]:
        reset = bucket.reset if bucket.reset is not None else int(self.now()) + HOUR
        return {
            "X-RateLimit-Limit": str(bucket.limit),
            "X-RateLimit-Remaining": str(bucket.limit - bucket.used),
            "X-RateLimit-Reset": str(reset),
            "X-RateLimit-Used": str(bucket.used),
            "X-RateLimit-Resource": "core",
        }

    # -- internals: lookup -------------------------------------------------------------------
    def _repo(self, full_name: str) -> FakeRepo:
        try:
            return self._repos[full_name.lower()]
        except KeyError:
            raise KeyError(f"no fake repository {full_name!r}") from None

    @staticmethod
    def _issue(repo: FakeRepo, number: int) -> FakeIssue:
        try:
            return repo.issues[number]
        except KeyError:
            raise KeyError(f"{repo.full_name} has no issue #{number}") from None

    # -- internals: mutations (lock held) ----------------------------------------------------
    def _apply_labels(self, repo: FakeRepo, issue: FakeIssue, wanted: Iterable[str], actor: str, at: float) -> None:
        """Make the issue's labels ``wanted`` (deduplicated, case-insensitive), recording events."""
        target: list[str] = []
        for name in wanted:
            label = self.add_label(repo.full_name, name)
            if label.name.lower() not in {t.lower() for t in target}:
                target.append(label.name)
        before = {n.lower() for n in issue.labels}
        after = {t.lower() for t in target}
        for name in issue.labels:
            if name.lower() not in after:
                color = repo.labels[name.lower()].color
                issue.events.append(FakeEvent(self._next_id(), "unlabeled", actor, at, name, color))
        for name in target:
            if name.lower() not in before:
                color = repo.labels[name.lower()].color
                issue.events.append(FakeEvent(self._next_id(), "labeled", actor, at, name, color))
        if before != after:
            issue.updated_at = max(issue.updated_at, at)
        issue.labels = target

    def _set_state(
        self, repo: FakeRepo, issue: FakeIssue, state: str, reason: str | None, actor: str, at: float
    ) -> None:
        if state == issue.state:
            if state == "closed" and reason is not None:
                issue.state_reason = reason
            return
        if state == "closed":
            issue.state, issue.state_reason = "closed", reason or "completed"
            issue.closed_at, issue.closed_by = at, actor
            issue.events.append(FakeEvent(self._next_id(), "closed", actor, at, state_reason=issue.state_reason))
        else:
            issue.state, issue.state_reason = "open", "reopened"
            issue.closed_at = None
            issue.events.append(FakeEvent(self._next_id(), "reopened", actor, at))
        issue.updated_at = max(issue.updated_at, at)

    def _create_review(self, repo: FakeRepo, pull: FakePull, body: str, user: str, state: str, at: float) -> FakeReview:
        """A review at the pull request's current head; submitting one (not PENDING) bumps its ``updated_at``."""
        pending = state == "PENDING"
        review = FakeReview(
            self._next_id(), pull.number, user, body, state, self._head_sha(repo, pull), None if pending else at
        )
        repo.reviews[review.id] = review
        pull.review_ids.append(review.id)
        if not pending:
            pull.issue.updated_at = max(pull.issue.updated_at, at)
        return review

    def _create_comment(self, repo: FakeRepo, issue: FakeIssue, body: str, user: str) -> FakeComment:
        at = self.now()
        comment = FakeComment(self._next_id(), issue.number, body, user, at, at)
        repo.comments[comment.id] = comment
        issue.comment_ids.append(comment.id)
        issue.updated_at = max(issue.updated_at, at)
        return comment

    # -- internals: JSON documents in GitHub's shapes ----------------------------------------
    def _user_doc(self, login: str) -> dict[str, Any]:
        user = self.user(login)
        api = f"{self.base_url}/users/{user.login}"
        return {
            "login": user.login,
            "id": user.id,
            "node_id": user.node_id,
            "avatar_url": f"{AVATARS}/u/{user.id}?v=4",
            "gravatar_id": "",
            "url": api,
            "html_url": f"{HTML_BASE}/{user.login}" if user.type == "User" else f"{HTML_BASE}/apps/{user.login}",
            "followers_url": f"{api}/followers",
            "following_url": f"{api}/following{{/other_user}}",
            "gists_url": f"{api}/gists{{/gist_id}}",
            "starred_url": f"{api}/starred{{/owner}}{{/repo}}",
            "subscriptions_url": f"{api}/subscriptions",
            "organizations_url": f"{api}/orgs",
            "repos_url": f"{api}/repos",
            "events_url": f"{api}/events{{/privacy}}",
            "received_events_url": f"{api}/received_events",
            "type": user.type,
            "user_view_type": "public",
            "site_admin": False,
        }

    def _full_user_doc(self, login: str, *, private: bool) -> dict[str, Any]:
        user = self.user(login)
        doc = self._user_doc(login)
        doc.update(
            {
                "user_view_type": "private" if private else "public",
                "name": user.name,
                "company": None,
                "blog": "",
                "location": None,
                "email": None,
                "hireable": None,
                "bio": None,
                "twitter_username": None,
                "public_repos": sum(1 for r in self._repos.values() if r.owner == user.login and not r.private),
                "public_gists": 0,
                "followers": 0,
                "following": 0,
                "created_at": _iso(user.created_at),
                "updated_at": _iso(user.created_at),
            }
        )
        if private:
            owned_private = sum(1 for r in self._repos.values() if r.owner == user.login and r.private)
            doc.update(
                {
                    "notification_email": None,
                    "private_gists": 0,
                    "total_private_repos": owned_private,
                    "owned_private_repos": owned_private,
                    "disk_usage": 0,
                    "collaborators": 0,
                    "two_factor_authentication": True,
                    "plan": {"name": "free", "space": 976562499, "collaborators": 0, "private_repos": 10000},
                }
            )
        return doc

    def _repo_api(self, repo: FakeRepo) -> str:
        return f"{self.base_url}/repos/{repo.owner}/{repo.name}"

    def _repo_doc(self, repo: FakeRepo, viewer: str) -> dict[str, Any]:
        api = self._repo_api(repo)
        html = f"{HTML_BASE}/{repo.full_name}"
        level = PERMISSIONS.index(self.permission(repo.full_name, viewer))
        open_count = sum(1 for i in repo.issues.values() if i.state == "open")
        doc: dict[str, Any] = {
            "id": repo.id,
            "node_id": _node_id("R", repo.id),
            "name": repo.name,
            "full_name": repo.full_name,
            "private": repo.private,
            "owner": self._user_doc(repo.owner),
            "html_url": html,
            "description": repo.description,
            "fork": False,
            "url": api,
            "forks_url": f"{api}/forks",
            "keys_url": f"{api}/keys{{/key_id}}",
            "collaborators_url": f"{api}/collaborators{{/collaborator}}",
            "teams_url": f"{api}/teams",
            "hooks_url": f"{api}/hooks",
            "issue_events_url": f"{api}/issues/events{{/number}}",
            "events_url": f"{api}/events",
            "assignees_url": f"{api}/assignees{{/user}}",
            "branches_url": f"{api}/branches{{/branch}}",
            "tags_url": f"{api}/tags",
            "blobs_url": f"{api}/git/blobs{{/sha}}",
            "git_tags_url": f"{api}/git/tags{{/sha}}",
            "git_refs_url": f"{api}/git/refs{{/sha}}",
            "trees_url": f"{api}/git/trees{{/sha}}",
            "statuses_url": f"{api}/statuses/{{sha}}",
            "languages_url": f"{api}/languages",
            "stargazers_url": f"{api}/stargazers",
            "contributors_url": f"{api}/contributors",
            "subscribers_url": f"{api}/subscribers",
            "subscription_url": f"{api}/subscription",
            "commits_url": f"{api}/commits{{/sha}}",
            "git_commits_url": f"{api}/git/commits{{/sha}}",
            "comments_url": f"{api}/comments{{/number}}",
            "issue_comment_url": f"{api}/issues/comments{{/number}}",
            "contents_url": f"{api}/contents/{{+path}}",
            "compare_url": f"{api}/compare/{{base}}...{{head}}",
            "merges_url": f"{api}/merges",
            "archive_url": f"{api}/{{archive_format}}{{/ref}}",
            "downloads_url": f"{api}/downloads",
            "issues_url": f"{api}/issues{{/number}}",
            "pulls_url": f"{api}/pulls{{/number}}",
            "milestones_url": f"{api}/milestones{{/number}}",
            "notifications_url": f"{api}/notifications{{?since,all,participating}}",
            "labels_url": f"{api}/labels{{/name}}",
            "releases_url": f"{api}/releases{{/id}}",
            "deployments_url": f"{api}/deployments",
            "created_at": _iso(repo.created_at),
            "updated_at": _iso(repo.created_at),
            "pushed_at": _iso(repo.created_at),
            "git_url": f"git://github.com/{repo.full_name}.git",
            "ssh_url": f"git@github.com:{repo.full_name}.git",
            "clone_url": f"{html}.git",
            "svn_url": html,
            "homepage": None,
            "size": 0,
            "stargazers_count": 0,
            "watchers_count": 0,
            "language": "Python",
            "has_issues": True,
            "has_projects": True,
            "has_downloads": True,
            "has_wiki": False,
            "has_pages": False,
            "has_discussions": False,
            "forks_count": 0,
            "mirror_url": None,
            "archived": False,
            "disabled": False,
            "open_issues_count": open_count,
            "license": None,
            "allow_forking": False,
            "is_template": False,
            "web_commit_signoff_required": False,
            "topics": [],
            "visibility": "private" if repo.private else "public",
            "forks": 0,
            "open_issues": open_count,
            "watchers": 0,
            "default_branch": repo.default_branch,
            "permissions": {
                "admin": level >= PERMISSIONS.index("admin"),
                "maintain": level >= PERMISSIONS.index("maintain"),
                "push": level >= PERMISSIONS.index("write"),
                "triage": level >= PERMISSIONS.index("triage"),
                "pull": level >= PERMISSIONS.index("read"),
            },
            "network_count": 0,
            "subscribers_count": 1,
        }
        return doc

    def _label_doc(self, repo: FakeRepo, label: FakeLabel) -> dict[str, Any]:
        return {
            "id": label.id,
            "node_id": _node_id("LA", label.id),
            "url": f"{self._repo_api(repo)}/labels/{urllib.parse.quote(label.name, safe='')}",
            "name": label.name,
            "color": label.color,
            "default": label.default,
            "description": label.description,
        }

    def _association(self, repo: FakeRepo, login: str) -> str:
        if login.lower() == repo.owner.lower():
            return "OWNER"
        if self.permission(repo.full_name, login) != "none":
            return "COLLABORATOR"
        return "NONE"

    @staticmethod
    def _reactions(url: str, given: list[FakeReaction] | None = None) -> dict[str, Any]:
        counts = {content: 0 for content in REACTIONS}
        for reaction in given or []:
            counts[reaction.content] += 1
        return {"url": f"{url}/reactions", "total_count": sum(counts.values()), **counts}

    def _issue_doc(self, repo: FakeRepo, issue: FakeIssue, *, single: bool = False) -> dict[str, Any]:
        api = self._repo_api(repo)
        url = f"{api}/issues/{issue.number}"
        kind = "pull" if issue.pull_request else "issues"
        html = f"{HTML_BASE}/{repo.full_name}/{kind}/{issue.number}"
        doc: dict[str, Any] = {
            "url": url,
            "repository_url": api,
            "labels_url": f"{url}/labels{{/name}}",
            "comments_url": f"{url}/comments",
            "events_url": f"{url}/events",
            "html_url": html,
            "id": issue.id,
            "node_id": _node_id("PR" if issue.pull_request else "I", issue.id),
            "number": issue.number,
            "title": issue.title,
            "user": self._user_doc(issue.user),
            "labels": [self._label_doc(repo, repo.labels[name.lower()]) for name in issue.labels],
            "state": issue.state,
            "locked": False,
            "assignee": self._user_doc(issue.assignees[0]) if issue.assignees else None,
            "assignees": [self._user_doc(a) for a in issue.assignees],
            "milestone": None,
            "comments": len(issue.comment_ids),
            "created_at": _iso(issue.created_at),
            "updated_at": _iso(issue.updated_at),
            "closed_at": _iso(issue.closed_at) if issue.closed_at is not None else None,
            "author_association": self._association(repo, issue.user),
            "active_lock_reason": None,
            "body": issue.body,
            "reactions": self._reactions(url, repo.reactions.get(("issues", issue.number))),
            "timeline_url": f"{url}/timeline",
            "performed_via_github_app": None,
            "state_reason": issue.state_reason,
        }
        if issue.pull_request:
            pull = f"{api}/pulls/{issue.number}"
            doc["draft"] = issue.draft
            doc["pull_request"] = {
                "url": pull,
                "html_url": html,
                "diff_url": f"{html}.diff",
                "patch_url": f"{html}.patch",
                "merged_at": None,
            }
        else:
            doc["sub_issues_summary"] = {"total": 0, "completed": 0, "percent_completed": 0}
            doc["issue_dependencies_summary"] = {
                "blocked_by": 0,
                "blocking": 0,
                "total_blocked_by": 0,
                "total_blocking": 0,
            }
        if single:
            doc["closed_by"] = self._user_doc(issue.closed_by) if issue.closed_by and issue.state == "closed" else None
        return doc

    def _event_doc(self, repo: FakeRepo, event: FakeEvent) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "id": event.id,
            "node_id": _node_id(f"{event.event.upper()[:3]}E", event.id),
            "url": f"{self._repo_api(repo)}/issues/events/{event.id}",
            "actor": self._user_doc(event.actor),
            "event": event.event,
            "commit_id": None,
            "commit_url": None,
            "created_at": _iso(event.created_at),
            "performed_via_github_app": None,
        }
        if event.label is not None:
            doc["label"] = {"name": event.label, "color": event.label_color or "ededed"}
        if event.event in ("closed", "reopened"):
            doc["state_reason"] = event.state_reason
        if event.assignee is not None:  # GitHub's assigned-issue-event: assignee and assigner
            doc["assignee"] = self._user_doc(event.assignee)
            doc["assigner"] = self._user_doc(event.actor)
        return doc

    def _comment_doc(self, repo: FakeRepo, comment: FakeComment) -> dict[str, Any]:
        url = f"{self._repo_api(repo)}/issues/comments/{comment.id}"
        issue = repo.issues[comment.issue_number]
        kind = "pull" if issue.pull_request else "issues"
        return {
            "url": url,
            "html_url": f"{HTML_BASE}/{repo.full_name}/{kind}/{comment.issue_number}#issuecomment-{comment.id}",
            "issue_url": f"{self._repo_api(repo)}/issues/{comment.issue_number}",
            "id": comment.id,
            "node_id": _node_id("IC", comment.id),
            "user": self._user_doc(comment.user),
            "created_at": _iso(comment.created_at),
            "updated_at": _iso(comment.updated_at),
            "author_association": self._association(repo, comment.user),
            "body": comment.body,
            "reactions": self._reactions(url, repo.reactions.get(("issues/comments", comment.id))),
            "performed_via_github_app": None,
        }

    def _rate_limit_doc(self, bucket: _Bucket) -> dict[str, Any]:
        reset = bucket.reset if bucket.reset is not None else int(self.now()) + HOUR
        core = {"limit": bucket.limit, "used": bucket.used, "remaining": bucket.limit - bucket.used, "reset": reset}

        def fresh(limit: int, window: int = HOUR) -> dict[str, int]:
            return {"limit": limit, "used": 0, "remaining": limit, "reset": int(self.now()) + window}

        return {
            "resources": {
                "core": core,
                "search": fresh(30, 60),
                "graphql": fresh(5000),
                "integration_manifest": fresh(5000),
                "source_import": fresh(100, 60),
                "code_scanning_upload": fresh(1000),
                "actions_runner_registration": fresh(10000),
                "scim": fresh(15000),
                "dependency_snapshots": fresh(100, 60),
                "code_search": fresh(10, 60),
            },
            "rate": core,
        }

    # -- request handling (called by the handler thread) -------------------------------------
    def _handle(self, req: _Request) -> _Response:
        with self._lock:
            self._request_ids += 1
            request_id = f"{0xC0DE:04X}:{self._request_ids:04X}:{0xA1B2C3:06X}:{self._request_ids * 7919:06X}:{int(self.now()):08X}"
            login, scopes, auth_error = self._authenticate(req)
            bucket = self._bucket(login)
            self._roll_window(bucket)
            base_headers = {
                "X-GitHub-Request-Id": request_id,
                "X-GitHub-Media-Type": "github.v3; format=json",
                "X-GitHub-Api-Version-Selected": "2022-11-28",
            }
            if login is not None:
                base_headers["X-OAuth-Scopes"] = scopes
                base_headers["X-Accepted-OAuth-Scopes"] = "repo" if req.path.startswith("/repos/") else ""
            fault = self._take_fault(req.method, req.path)
            canonical, repo = self._canonical(req.path)

            def finish(answer: _Answer, points: int, fault_kind: str | None = None) -> _Response:
                if points:
                    self._roll_window(bucket, start=True)
                    bucket.used += points
                headers = {**self._rate_headers(bucket), **base_headers, **answer.headers}
                return self._finish(req, canonical, login, answer, points, headers, fault_kind)

            if fault is not None and fault.kind == "drop_connection":
                self._log_request(req, login, 0, 0, {}, "drop_connection", False)
                return _Response(0, {}, b"", drop=True)
            if auth_error is not None:
                return finish(auth_error, 0)
            if fault is not None and fault.kind == "primary_rate_limit":
                self._roll_window(bucket, start=True)
                answer = self._primary_rate_limited(bucket, login, request_id)
                headers = {**self._rate_headers(bucket), **base_headers, **answer.headers, "X-RateLimit-Remaining": "0"}
                headers["X-RateLimit-Used"] = str(bucket.limit)
                return self._finish(req, canonical, login, answer, 0, headers, fault.kind)
            charge = 0 if canonical == "/rate_limit" else 1
            if charge and bucket.reset is not None and bucket.used >= bucket.limit:
                return finish(self._primary_rate_limited(bucket, login, request_id), 0)
            if fault is not None and fault.kind == "secondary_rate_limit":
                message = (
                    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. "
                    f"If you reach out to GitHub Support for help, please include the request ID {request_id}."
                )
                extra = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
                body = {"message": message, "documentation_url": SECONDARY_DOCS}
                return finish(_Answer(fault.status, body, extra), charge, fault.kind)
            if fault is not None and fault.kind == "server_error":
                if fault.html:
                    return finish(_Answer(fault.status, _UNICORN_HTML), charge, fault.kind)
                body = {"message": _SERVER_ERROR_MESSAGES.get(fault.status, "Server Error")}
                return finish(_Answer(fault.status, body), charge, fault.kind)
            if fault is not None and fault.kind == "forbidden":
                body = {"message": "Resource not accessible by personal access token", "documentation_url": DOCS}
                return finish(_Answer(403, {**body, "status": "403"}), charge, fault.kind)
            try:
                answer = self._route(req, canonical, repo, login)
            except _ApiError as err:
                answer = _Answer(err.status, err.document)
            if req.method == "GET" and answer.status == 200 and login is not None:
                payload = json.dumps(answer.body, separators=(",", ":")).encode()
                etag = 'W/"' + hashlib.sha256(login.encode() + b"\0" + payload).hexdigest() + '"'
                answer.headers["ETag"] = etag
                answer.headers["Cache-Control"] = "private, max-age=60, s-maxage=60"
                if _etag_matches(req.headers.get("if-none-match"), etag):
                    return finish(_Answer(304, None, answer.headers), 0)
            return finish(answer, charge)

    def _authenticate(self, req: _Request) -> tuple[str | None, str, _Answer | None]:
        header = req.headers.get("authorization")
        if header is None:
            if req.path in ("/user", "/user/"):
                return (
                    None,
                    "",
                    _Answer(401, {"message": "Requires authentication", "documentation_url": DOCS, "status": "401"}),
                )
            return None, "", None
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and token.count(".") == 2:
            return self._authenticate_jwt(token.strip())
        found = self._tokens.get(token.strip()) if scheme.lower() in ("token", "bearer") else None
        expires = self._token_expiry.get(token.strip())
        if expires is not None and self.now() >= expires:
            found = None  # an installation token past its expires_at: GitHub answers 401
        if found is None:
            return None, "", _Answer(401, {"message": "Bad credentials", "documentation_url": DOCS, "status": "401"})
        return found[0], found[1], None

    def _primary_rate_limited(self, bucket: _Bucket, login: str | None, request_id: str) -> _Answer:
        stamp = datetime.fromtimestamp(int(self.now()), UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        if login is None:
            message = (
                "API rate limit exceeded for 127.0.0.1. (But here's the good news: Authenticated requests get a "
                "higher rate limit. Check out the documentation for more details.)"
            )
        else:
            message = (
                f"API rate limit exceeded for user ID {self.user(login).id}. If you reach out to GitHub Support for "
                f"help, please include the request ID {request_id} and timestamp {stamp}."
            )
        return _Answer(403, {"message": message, "documentation_url": RATE_DOCS})

    def _canonical(self, path: str) -> tuple[str, FakeRepo | None]:
        """``/repositories/{id}/rest`` -> ``/repos/{owner}/{name}/rest``; also finds the repository."""
        parts = path.split("/")
        if len(parts) >= 3 and parts[1] == "repositories" and parts[2].isdigit():
            for repo in self._repos.values():
                if repo.id == int(parts[2]):
                    return "/".join(["", "repos", repo.owner, repo.name, *parts[3:]]), repo
            return path, None
        if len(parts) >= 4 and parts[1] == "repos":
            owner, name = urllib.parse.unquote(parts[2]), urllib.parse.unquote(parts[3])
            return path, self._repos.get(f"{owner}/{name}".lower())
        return path, None

    def _finish(
        self,
        req: _Request,
        canonical: str,
        login: str | None,
        answer: _Answer,
        points: int,
        headers: dict[str, str],
        fault: str | None,
    ) -> _Response:
        headers = dict(headers)
        headers["Vary"] = "Accept, Authorization, Cookie, X-GitHub-OTP"
        validated = False
        if answer.status == 304 or answer.body is None:
            data = b""
        elif isinstance(answer.body, str):
            data = answer.body.encode()
            headers["Content-Type"] = "text/html; charset=utf-8"
        else:
            data = json.dumps(answer.body, indent=None, separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json; charset=utf-8"
            validated = self._validate(req.method, canonical, answer.status, answer.body)
        self._log_request(req, login, answer.status, points, headers, fault, validated)
        return _Response(answer.status, headers, data)

    def _validate(self, method: str, canonical: str, status: int, body: Any) -> bool:
        if self.validator is None:
            return False
        try:
            try:
                self.validator.find_operation(method, canonical)
            except OpenAPIValidationError:
                # Not an operation of the API (e.g. the 404 for an unknown path): GitHub's error shape.
                if status < 400:
                    raise
                self.validator.validate_error(status, body, where=f"{method} {canonical}")
            else:
                self.validator.validate(method, canonical, status, body)
        except OpenAPIValidationError as err:
            self._validation_errors.append(str(err))
        return True

    def _log_request(
        self,
        req: _Request,
        login: str | None,
        status: int,
        points: int,
        headers: dict[str, str],
        fault: str | None,
        validated: bool,
    ) -> None:
        conditional = "if-none-match" in req.headers or "if-modified-since" in req.headers
        self._log.append(
            LoggedRequest(
                req.method,
                req.path,
                urllib.parse.parse_qs(req.query, keep_blank_values=True),
                status,
                conditional,
                points,
                login,
                dict(req.headers),
                req.body,
                headers,
                fault,
                validated,
            )
        )

    # -- GitHub Apps, assignees, reactions, webhooks -----------------------------------------
    def add_app(
        self,
        app_id: int,
        slug: str,
        public_key_pem: str,
        *,
        owner: str = "acme",
        repos: Sequence[str] = (),
        hook_url: str | None = None,
        hook_secret: str = "",
    ) -> FakeApp:
        """A GitHub App (its JWTs checked with ``public_key_pem``), installed on ``repos`` (one
        installation); its installation tokens act as the Bot user ``<slug>[bot]``."""
        with self._lock:
            self.add_user(owner)
            app = FakeApp(app_id, slug, public_key_pem, owner, hook_url=hook_url, hook_secret=hook_secret)
            installation = self._next_id()
            for repo in repos:
                app.installations[repo.lower()] = installation
            self._apps[app_id] = app
            self.add_user(f"{slug}[bot]", type="Bot")
            return app

    def assign_issue(self, repo: str, number: int, assignee: str, actor: str) -> None:
        """``actor`` assigns ``assignee``; records an ``assigned`` event (assignee, assigner)."""
        with self._lock:
            r = self._repo(repo)
            issue = self._issue(r, number)
            self.add_user(assignee)
            self.add_user(actor)
            if assignee.lower() not in {a.lower() for a in issue.assignees}:
                issue.assignees.append(assignee)
                issue.events.append(FakeEvent(self._next_id(), "assigned", actor, self.now(), assignee=assignee))
                issue.updated_at = self.now()

    def unassign_issue(self, repo: str, number: int, assignee: str, actor: str) -> None:
        with self._lock:
            r = self._repo(repo)
            issue = self._issue(r, number)
            issue.assignees = [a for a in issue.assignees if a.lower() != assignee.lower()]
            issue.events.append(FakeEvent(self._next_id(), "unassigned", actor, self.now(), assignee=assignee))
            issue.updated_at = self.now()

    def token_valid(self, token: str) -> bool:
        """Whether GitHub would accept ``token`` now (known, and an installation token not expired)."""
        with self._lock:
            expires = self._token_expiry.get(token)
            return token in self._tokens and (expires is None or self.now() < expires)

    def reactions(self, repo: str, target: str) -> list[tuple[str, str]]:
        """(user, content) of the reactions on ``target``: ``issues/N``, ``issues/comments/ID``."""
        kind, _, ident = target.rpartition("/")
        with self._lock:
            return [(x.user, x.content) for x in self._repo(repo).reactions.get((kind, int(ident)), [])]

    def add_hook(self, repo: str, url: str, secret: str, events: Sequence[str] = ("issues", "issue_comment")) -> int:
        with self._lock:
            hook = FakeHook(self._next_id(), url, secret, list(events), self.now())
            self._repo(repo).hooks.append(hook)
            return hook.id

    def deliver(
        self, repo: str, event: str, payload: dict[str, Any], *, delivery: str | None = None, secret: str | None = None
    ) -> list[int]:
        """POST ``payload`` to every hook of ``repo`` subscribed to ``event``, as GitHub does:
        JSON body, ``X-GitHub-Event``, ``X-GitHub-Delivery`` (a GUID), ``X-Hub-Signature-256``
        (HMAC-SHA256 of the body with the hook's secret, or ``secret``), ``X-Hub-Signature``
        (SHA-1), ``User-Agent: GitHub-Hookshot/…``.  Returns each hook's status; the payload is
        validated against the ``webhook-<event>-<action>`` schema first.  Source: GitHub docs,
        "Webhook events and payloads" / "Validating webhook deliveries"."""
        import hmac
        import uuid

        schema = f"webhook-{event.replace('_', '-')}" + (f"-{payload['action']}" if "action" in payload else "")
        self._validate_payload(schema, payload)
        body = json.dumps(payload).encode()
        statuses = []
        with self._lock:
            hooks = [h for h in self._repo(repo).hooks if event in h.events or "*" in h.events]
            for app in self._apps.values():  # an App installed on the repository delivers to its own hook
                if app.hook_url and repo.lower() in app.installations:
                    hooks.append(FakeHook(-app.id, app.hook_url, app.hook_secret, [event], self.now()))
        for hook in hooks:
            key = (secret if secret is not None else hook.secret).encode()
            guid = delivery or str(uuid.uuid4())
            headers = {
                "Content-Type": "application/json",
                "User-Agent": "GitHub-Hookshot/044aadd",
                "X-GitHub-Event": event,
                "X-GitHub-Delivery": guid,
                "X-GitHub-Hook-ID": str(hook.id),
                "X-Hub-Signature": "sha1=" + hmac.new(key, body, hashlib.sha1).hexdigest(),
                "X-Hub-Signature-256": "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest(),
            }
            status = post_signed(hook.url, body, headers)
            with self._lock:
                ok = 200 <= status < 300
                hook.last_response = {"code": status, "status": "active" if ok else "failed", "message": None}
                hook.deliveries.append((guid, event, status))
                if hook.id < 0:
                    delivered = (self._next_id(), guid, event, payload.get("action"), status, self.now())
                    self._apps[-hook.id].hook_deliveries.append(delivered)
            statuses.append(status)
        return statuses

    def _validate_payload(self, schema: str, payload: dict[str, Any]) -> None:
        if self.validator is None:
            return
        try:
            self.validator.validate_schema(schema, payload)
        except OpenAPIValidationError as err:
            self._validation_errors.append(str(err))

    def issues_payload(
        self, repo: str, number: int, action: str, sender: str, *, label: str | None = None, assignee: str | None = None
    ) -> dict[str, Any]:
        """An ``issues`` webhook payload (``webhook-issues-<action>``): action, issue, repository, sender."""
        with self._lock:
            r = self._repo(repo)
            doc: dict[str, Any] = {
                "action": action,
                "issue": self._hook_issue(r, self._issue(r, number)),
                "repository": self._repo_doc(r, r.owner),
                "sender": self._user_doc(sender),
            }
            if label is not None:
                found = r.labels[label.lower()]
                doc["label"] = self._label_doc(r, found)
            if assignee is not None:
                doc["assignee"] = self._user_doc(assignee)
            return doc

    def comment_payload(self, repo: str, comment_id: int, action: str = "created") -> dict[str, Any]:
        """An ``issue_comment`` webhook payload (``webhook-issue-comment-created``)."""
        with self._lock:
            r = self._repo(repo)
            comment = r.comments[comment_id]
            return {
                "action": action,
                "issue": self._hook_issue(r, r.issues[comment.issue_number]),
                "comment": self._comment_doc(r, comment),
                "repository": self._repo_doc(r, r.owner),
                "sender": self._user_doc(comment.user),
            }

    def review_payload(self, repo: str, number: int, review_id: int, action: str = "submitted") -> dict[str, Any]:
        """A ``pull_request_review`` webhook payload (``webhook-pull-request-review-submitted``):
        the review as the reviews API shows it, and the pull request as GitHub's webhook does."""
        with self._lock:
            r = self._repo(repo)
            review = r.reviews[review_id]
            pull = self._pull(r, self._issue(r, number))
            return {
                "action": action,
                "review": self._hook_review(r, review),
                "pull_request": self._hook_pull(r, pull),
                "repository": self._repo_doc(r, r.owner),
                "sender": self._user_doc(review.user),
            }

    def review_comment_payload(self, repo: str, number: int, comment_id: int) -> dict[str, Any]:
        """A ``pull_request_review_comment`` webhook payload (``webhook-pull-request-review-comment-created``)."""
        with self._lock:
            r = self._repo(repo)
            comment = r.review_comments[comment_id]
            pull = self._pull(r, self._issue(r, number))
            return {
                "action": "created",
                "comment": self._review_comment_doc(r, comment),
                "pull_request": self._hook_pull(r, pull),
                "repository": self._repo_doc(r, r.owner),
                "sender": self._user_doc(comment.user),
            }

    def _hook_review(self, repo: FakeRepo, review: FakeReview) -> dict[str, Any]:
        # The webhook's review: the API's, with its state in lower case (webhook-pull-request-review-submitted).
        doc = self._review_doc(repo, review)
        doc["state"] = str(doc["state"]).lower()
        return doc

    def _hook_pull(self, repo: FakeRepo, pull: FakePull) -> dict[str, Any]:
        return self._pull_doc(repo, pull, full=False)

    def _repo_comments(self, req: _Request, repo: FakeRepo) -> _Answer:
        """``GET /repos/{o}/{r}/issues/comments``: every issue and pull-request comment of the
        repository; ``since`` (updated at or after), ``sort`` ``created``/``updated`` (default
        created) and ``direction`` (ignored without ``sort``; default desc with it), paginated.
        Source: docs.github.com/rest/issues/comments#list-issue-comments-for-a-repository."""
        params = req.params()
        sort, direction = params.get("sort"), params.get("direction", "desc")
        if sort not in (None, "created", "updated") or direction not in ("asc", "desc"):
            docs = "https://docs.github.com/rest/issues/comments#list-issue-comments-for-a-repository"
            raise _ApiError(422, "Validation Failed", docs)
        comments = sorted(repo.comments.values(), key=lambda c: c.id)
        if "since" in params:
            cutoff = int(_parse_since(params["since"]))
            comments = [c for c in comments if int(c.updated_at) >= cutoff]
        if sort is not None:
            key = (lambda c: (c.updated_at, c.id)) if sort == "updated" else (lambda c: (c.created_at, c.id))
            comments.sort(key=key, reverse=direction == "desc")
        return self._page(req, repo, "issues/comments", [self._comment_doc(repo, c) for c in comments])

    def _hook_issue(self, repo: FakeRepo, issue: FakeIssue) -> dict[str, Any]:
        doc = self._issue_doc(repo, issue)
        # The webhook issue object: no sub-issue summaries, a plain label list (webhook-issues-* schemas).
        doc.pop("sub_issues_summary", None)
        doc.pop("issue_dependencies_summary", None)
        return doc

    # -- internals: App JWTs, installation tokens, reactions, hooks (lock held) ---------------
    def _authenticate_jwt(self, token: str) -> tuple[str | None, str, _Answer | None]:
        """An App's JWT (RS256; iss = App id; iat/exp at most 10 minutes apart, exp in the future),
        as docs.github.com/apps/creating-github-apps/authenticating-with-a-github-app/generating-a-json-web-token-jwt-for-a-github-app."""
        import jwt

        def refused(message: str) -> tuple[str | None, str, _Answer | None]:
            return None, "", _Answer(401, {"message": message, "documentation_url": DOCS, "status": "401"})

        try:
            claims = jwt.decode(token, options={"verify_signature": False})
            app = self._apps.get(int(claims.get("iss", 0)))
        except (jwt.PyJWTError, ValueError, TypeError):
            return refused("A JSON web token could not be decoded")
        if app is None:
            return refused("Integration not found")
        try:
            jwt.decode(token, app.public_key_pem, algorithms=["RS256"], leeway=0, options={"verify_iat": False})
        except jwt.ExpiredSignatureError:
            return refused("'Expiration time' claim ('exp') must be a numeric value representing the future time")
        except jwt.PyJWTError:
            return refused("A JSON web token could not be decoded")
        if int(claims["exp"]) - int(claims["iat"]) > 600:
            return refused("'Expiration time' claim ('exp') is too far in the future")
        return f"{APP_LOGIN_PREFIX}{app.id}", "", None

    def _app_route(self, req: _Request, parts: list[str], repo: FakeRepo | None, login: str | None) -> _Answer:
        if not (login or "").startswith(APP_LOGIN_PREFIX):
            raise _ApiError(401, "A JSON web token could not be decoded", DOCS)
        app = self._apps[int(str(login)[len(APP_LOGIN_PREFIX) :])]
        if parts == ["app"] and req.method == "GET":
            return _Answer(200, self._app_doc(app))
        if parts == ["app", "hook", "config"] and req.method == "GET":
            config = {"content_type": "json", "insecure_ssl": "0", "url": app.hook_url or ""}
            if app.hook_secret:
                config["secret"] = "********"
            return _Answer(200, config)
        if parts == ["app", "hook", "deliveries"] and req.method == "GET":
            limit = int(req.params().get("per_page", "30"))
            items = [self._delivery_doc(app, d) for d in reversed(app.hook_deliveries)][:limit]
            return _Answer(200, items)
        if parts[3:] == ["installation"] and req.method == "GET":
            full = "/".join(parts[1:3]).lower()
            installation = app.installations.get(full)
            if repo is None or installation is None:
                raise _not_found(
                    "https://docs.github.com/rest/apps/apps#get-a-repository-installation-for-the-authenticated-app"
                )
            return _Answer(200, self._installation_doc(app, installation))
        if len(parts) == 4 and parts[:2] == ["app", "installations"] and parts[3] == "access_tokens":
            if req.method != "POST" or int(parts[2]) not in set(app.installations.values()):
                raise _not_found(
                    "https://docs.github.com/rest/apps/apps#create-an-installation-access-token-for-an-app"
                )
            return self._mint_token(app, int(parts[2]))
        raise _not_found()

    def _delivery_doc(self, app: FakeApp, item: tuple[int, str, str, str | None, int, float]) -> dict[str, Any]:
        ident, guid, event, action, code, at = item
        return {
            "id": ident,
            "guid": guid,
            "delivered_at": _iso(at),
            "redelivery": False,
            "duration": 0.05,
            "status": "OK"
            if 200 <= code < 300
            else ("Timed out" if code == 0 else "Invalid HTTP Response: " + str(code)),
            "status_code": code,
            "event": event,
            "action": action,
            "installation_id": next(iter(app.installations.values()), None),
            "repository_id": None,
        }

    def _mint_token(self, app: FakeApp, installation: int) -> _Answer:
        import secrets

        token = "ghs_" + secrets.token_urlsafe(27).replace("-", "A").replace("_", "B")[:36]
        expires = self.now() + app.token_lifetime_s
        self._tokens[token] = (f"{app.slug}[bot]", "")
        self._token_expiry[token] = expires
        app.tokens_minted += 1
        for repo, inst in app.installations.items():
            if inst == installation:
                self._repos[repo].permissions[f"{app.slug}[bot]".lower()] = "write"
        doc = {
            "token": token,
            "expires_at": _iso(expires),
            "permissions": {"issues": "write", "pull_requests": "write", "contents": "write", "metadata": "read"},
            "repository_selection": "selected",
        }
        return _Answer(201, doc)

    def _app_doc(self, app: FakeApp) -> dict[str, Any]:
        return {
            "id": app.id,
            "slug": app.slug,
            "node_id": _node_id("A", app.id),
            "client_id": f"Iv1.{app.id:016x}",
            "owner": self._user_doc(app.owner),
            "name": app.slug,
            "description": None,
            "external_url": f"{HTML_BASE}/{app.owner}",
            "html_url": f"{HTML_BASE}/apps/{app.slug}",
            "created_at": _iso(self.now() - 86400),
            "updated_at": _iso(self.now() - 86400),
            "permissions": {"issues": "write", "pull_requests": "write", "contents": "write", "metadata": "read"},
            "events": ["issues", "issue_comment", "pull_request_review", "pull_request_review_comment"],
            "installations_count": 1,
        }

    def _installation_doc(self, app: FakeApp, installation: int) -> dict[str, Any]:
        api = self.base_url
        return {
            "id": installation,
            "account": self._user_doc(app.owner),
            "repository_selection": "selected",
            "access_tokens_url": f"{api}/app/installations/{installation}/access_tokens",
            "repositories_url": f"{api}/installation/repositories",
            "html_url": f"{HTML_BASE}/settings/installations/{installation}",
            "app_id": app.id,
            "app_slug": app.slug,
            "target_id": self.user(app.owner).id,
            "target_type": "User",
            "permissions": {"issues": "write", "pull_requests": "write", "contents": "write", "metadata": "read"},
            "events": ["issues", "issue_comment"],
            "created_at": _iso(self.now() - 86400),
            "updated_at": _iso(self.now() - 86400),
            "single_file_name": None,
            "suspended_by": None,
            "suspended_at": None,
        }

    def _reactions_route(self, req: _Request, repo: FakeRepo, target: list[str], login: str) -> _Answer:
        """``POST|GET .../issues/{n}/reactions``, ``.../issues/comments/{id}/reactions``,
        ``.../pulls/comments/{id}/reactions``: 201 for a new reaction, 200 for one the user already gave."""
        kind = "/".join(target[:-1])
        if kind not in ("issues", "issues/comments", "pulls/comments") or not target[-1].isdigit():
            raise _not_found()
        ident = int(target[-1])
        exists = {
            "issues": ident in repo.issues,
            "issues/comments": ident in repo.comments,
            "pulls/comments": ident in repo.review_comments,
        }[kind]
        if not exists:
            raise _not_found("https://docs.github.com/rest/reactions/reactions")
        given = repo.reactions.setdefault((kind, ident), [])
        if req.method == "GET":
            return self._page(req, repo, "/".join([*target, "reactions"]), [self._reaction_doc(x) for x in given])
        if req.method != "POST":
            raise _not_found()
        content = _require_string(req.json_object(), "content")
        if content not in REACTIONS:
            raise _ApiError(
                422,
                "Validation Failed",
                "https://docs.github.com/rest/reactions/reactions",
                [{"resource": "Reaction", "field": "content", "code": "invalid"}],
            )
        for reaction in given:
            if reaction.user.lower() == login.lower() and reaction.content == content:
                return _Answer(200, self._reaction_doc(reaction))
        reaction = FakeReaction(self._next_id(), login, content, self.now())
        given.append(reaction)
        return _Answer(201, self._reaction_doc(reaction))

    def _reaction_doc(self, reaction: FakeReaction) -> dict[str, Any]:
        return {
            "id": reaction.id,
            "node_id": _node_id("REA", reaction.id),
            "user": self._user_doc(reaction.user),
            "content": reaction.content,
            "created_at": _iso(reaction.created_at),
        }

    def _hook_doc(self, repo: FakeRepo, hook: FakeHook) -> dict[str, Any]:
        url = f"{self._repo_api(repo)}/hooks/{hook.id}"
        return {
            "type": "Repository",
            "id": hook.id,
            "name": "web",
            "active": True,
            "events": hook.events,
            "config": {"content_type": "json", "insecure_ssl": "0", "url": hook.url, "secret": "********"},
            "updated_at": _iso(hook.created_at),
            "created_at": _iso(hook.created_at),
            "url": url,
            "test_url": f"{url}/test",
            "ping_url": f"{url}/pings",
            "deliveries_url": f"{url}/deliveries",
            "last_response": hook.last_response,
        }

    # -- routes (lock held) ------------------------------------------------------------------
    def _route(self, req: _Request, canonical: str, repo: FakeRepo | None, login: str | None) -> _Answer:
        parts = [urllib.parse.unquote(p) for p in canonical.strip("/").split("/")]
        method = req.method
        if parts == ["user"] and method == "GET" and login is not None:
            return _Answer(200, self._full_user_doc(login, private=True))
        if parts == ["rate_limit"] and method == "GET":
            return _Answer(200, self._rate_limit_doc(self._bucket(login)))
        if len(parts) == 2 and parts[0] == "users" and method == "GET":
            if parts[1].lower() not in self._users:
                raise _not_found("https://docs.github.com/rest/users/users#get-a-user")
            return _Answer(200, self._full_user_doc(parts[1], private=False))
        if (
            parts[0] == "app"
            or (parts[0] == "repos" and parts[3:] == ["installation"])
            or (login or "").startswith(APP_LOGIN_PREFIX)
        ):
            return self._app_route(req, parts, repo, login)
        if len(parts) < 3 or parts[0] != "repos":
            raise _not_found()
        if repo is None or login is None:  # private repositories are invisible without a token
            raise _not_found("https://docs.github.com/rest/repos/repos#get-a-repository")
        return self._repo_route(req, repo, parts[3:], login)

    def _repo_route(self, req: _Request, repo: FakeRepo, rest: list[str], login: str) -> _Answer:
        method = req.method
        if rest and rest[-1] == "reactions":
            return self._reactions_route(req, repo, rest[:-1], login)
        if rest == ["hooks"] and method == "GET":
            return self._page(req, repo, "hooks", [self._hook_doc(repo, h) for h in repo.hooks])
        if rest == [] and method == "GET":
            return _Answer(200, self._repo_doc(repo, login))
        if rest == ["issues"] and method == "GET":
            return self._list_issues(req, repo)
        if rest == ["issues"] and method == "POST":
            return self._create_issue(req, repo, login)
        if rest == ["labels"] and method == "GET":
            labels = sorted(repo.labels.values(), key=lambda lab: lab.name.lower())
            return self._page(req, repo, "labels", [self._label_doc(repo, lab) for lab in labels])
        if rest == ["labels"] and method == "POST":
            return self._create_label(req, repo)
        if len(rest) == 2 and rest[0] == "labels" and method == "GET":
            label = repo.labels.get(rest[1].lower())
            if label is None:
                raise _not_found("https://docs.github.com/rest/issues/labels#get-a-label")
            return _Answer(200, self._label_doc(repo, label))
        if len(rest) == 3 and rest[0] == "collaborators" and rest[2] == "permission" and method == "GET":
            return self._permission(repo, rest[1])
        if rest == ["issues", "comments"] and method == "GET":
            return self._repo_comments(req, repo)
        if len(rest) == 3 and rest[:2] == ["issues", "comments"] and rest[2].isdigit():
            comment = repo.comments.get(int(rest[2]))
            if comment is None:
                raise _not_found("https://docs.github.com/rest/issues/comments#get-an-issue-comment")
            if method == "GET":
                return _Answer(200, self._comment_doc(repo, comment))
            if method == "PATCH":
                body = _require_string(req.json_object(), "body")
                comment.body = body
                comment.updated_at = self.now()
                return _Answer(200, self._comment_doc(repo, comment))
            raise _not_found()
        if len(rest) == 3 and rest[:2] == ["issues", "events"] and rest[2].isdigit() and method == "GET":
            for owner_issue in repo.issues.values():
                for event in owner_issue.events:
                    if event.id == int(rest[2]):
                        doc = self._event_doc(repo, event)
                        doc["issue"] = self._issue_doc(repo, owner_issue)
                        return _Answer(200, doc)
            raise _not_found("https://docs.github.com/rest/issues/events#get-an-issue-event")
        if len(rest) >= 2 and rest[0] == "issues" and rest[1].isdigit():
            issue = repo.issues.get(int(rest[1]))
            if issue is None:
                raise _not_found("https://docs.github.com/rest/issues/issues#get-an-issue")
            return self._issue_route(req, repo, issue, rest[2:], login)
        if rest == ["pulls"] and method == "GET":
            return self._list_pulls(req, repo)
        if rest == ["pulls"] and method == "POST":
            return self._create_pull(req, repo, login)
        if len(rest) == 2 and rest[0] == "pulls" and rest[1].isdigit() and method == "GET":
            found = repo.issues.get(int(rest[1]))
            if found is None or not found.pull_request:
                raise _not_found("https://docs.github.com/rest/pulls/pulls#get-a-pull-request")
            return _Answer(200, self._pull_doc(repo, self._pull(repo, found), full=True))
        if len(rest) == 2 and rest[0] == "pulls" and rest[1].isdigit() and method == "PATCH":
            found = repo.issues.get(int(rest[1]))
            if found is None or not found.pull_request:
                raise _not_found("https://docs.github.com/rest/pulls/pulls#update-a-pull-request")
            return self._edit_pull(req, repo, self._pull(repo, found), login)
        if len(rest) == 3 and rest[:2] == ["pulls", "comments"] and rest[2].isdigit() and method == "GET":
            review_comment = repo.review_comments.get(int(rest[2]))
            if review_comment is None:
                raise _not_found("https://docs.github.com/rest/pulls/comments#get-a-review-comment-for-a-pull-request")
            return _Answer(200, self._review_comment_doc(repo, review_comment))
        if len(rest) >= 3 and rest[0] == "pulls" and rest[1].isdigit() and method == "GET":
            return self._pull_reviews_route(req, repo, int(rest[1]), rest[2:], login)
        raise _not_found()

    def _issue_route(self, req: _Request, repo: FakeRepo, issue: FakeIssue, rest: list[str], login: str) -> _Answer:
        method = req.method
        if rest == [] and method == "GET":
            return _Answer(200, self._issue_doc(repo, issue, single=True))
        if rest == [] and method == "PATCH":
            return self._edit_issue(req, repo, issue, login)
        if rest == ["events"] and method == "GET":
            return self._page(
                req, repo, f"issues/{issue.number}/events", [self._event_doc(repo, e) for e in issue.events]
            )
        if rest == ["timeline"] and method == "GET":
            return self._page(req, repo, f"issues/{issue.number}/timeline", self._timeline(repo, issue))
        if rest == ["comments"] and method == "GET":
            comments = [repo.comments[cid] for cid in issue.comment_ids]
            since = req.params().get("since")
            if since is not None:
                cutoff = int(_parse_since(since))
                comments = [c for c in comments if int(c.updated_at) >= cutoff]
            docs = [self._comment_doc(repo, c) for c in comments]
            return self._page(req, repo, f"issues/{issue.number}/comments", docs)
        if rest == ["comments"] and method == "POST":
            body = _require_string(req.json_object(), "body")
            comment = self._create_comment(repo, issue, body, login)
            doc = self._comment_doc(repo, comment)
            return _Answer(201, doc, {"Location": doc["url"]})
        if rest == ["labels"]:
            return self._issue_labels(req, repo, issue, login)
        if len(rest) == 2 and rest[0] == "labels" and method == "DELETE":
            name = rest[1]
            if name.lower() not in {n.lower() for n in issue.labels}:
                raise _ApiError(
                    404,
                    "Label does not exist",
                    "https://docs.github.com/rest/issues/labels#remove-a-label-from-an-issue",
                )
            remaining = [n for n in issue.labels if n.lower() != name.lower()]
            self._apply_labels(repo, issue, remaining, login, self.now())
            return _Answer(200, [self._label_doc(repo, repo.labels[n.lower()]) for n in issue.labels])
        raise _not_found()

    def _issue_labels(self, req: _Request, repo: FakeRepo, issue: FakeIssue, login: str) -> _Answer:
        method = req.method
        if method == "GET":
            docs = [self._label_doc(repo, repo.labels[n.lower()]) for n in issue.labels]
            return self._page(req, repo, f"issues/{issue.number}/labels", docs)
        if method == "DELETE":
            self._apply_labels(repo, issue, [], login, self.now())
            return _Answer(204)
        if method in ("POST", "PUT"):
            names = _label_names(req.json_value())
            wanted = [*issue.labels, *names] if method == "POST" else names
            self._apply_labels(repo, issue, wanted, login, self.now())
            return _Answer(200, [self._label_doc(repo, repo.labels[n.lower()]) for n in issue.labels])
        raise _not_found()

    def _timeline(self, repo: FakeRepo, issue: FakeIssue) -> list[dict[str, Any]]:
        items: list[tuple[float, int, dict[str, Any]]] = [
            (e.created_at, e.id, self._event_doc(repo, e)) for e in issue.events
        ]
        for cid in issue.comment_ids:
            comment = repo.comments[cid]
            doc = self._comment_doc(repo, comment)
            doc.update({"event": "commented", "actor": self._user_doc(comment.user)})
            items.append((comment.created_at, comment.id, doc))
        items.sort(key=lambda item: (int(item[0]), item[1]))
        return [doc for _, _, doc in items]

    def _permission(self, repo: FakeRepo, username: str) -> _Answer:
        if username.lower() not in self._users:
            raise _not_found(
                "https://docs.github.com/rest/collaborators/collaborators#get-repository-permissions-for-a-user"
            )
        user = self.user(username)
        role = self.permission(repo.full_name, user.login)
        level = PERMISSIONS.index(role)
        collaborator = self._user_doc(user.login)
        collaborator["permissions"] = {
            "admin": level >= PERMISSIONS.index("admin"),
            "maintain": level >= PERMISSIONS.index("maintain"),
            "push": level >= PERMISSIONS.index("write"),
            "triage": level >= PERMISSIONS.index("triage"),
            "pull": level >= PERMISSIONS.index("read"),
        }
        collaborator["role_name"] = role
        body = {"permission": LEGACY_PERMISSION.get(role, "none"), "role_name": role, "user": collaborator}
        return _Answer(200, body)

    def _list_issues(self, req: _Request, repo: FakeRepo) -> _Answer:
        params = req.params()
        docs_url = "https://docs.github.com/rest/issues/issues#list-repository-issues"
        state = params.get("state", "open")
        sort = params.get("sort", "created")
        direction = params.get("direction", "desc")
        for name, value, allowed in (
            ("state", state, ("open", "closed", "all")),
            ("sort", sort, ("created", "updated", "comments")),
            ("direction", direction, ("asc", "desc")),
        ):
            if value not in allowed:
                raise _ApiError(
                    422,
                    "Validation Failed",
                    docs_url,
                    [{"resource": "Issue", "field": name, "code": "invalid", "value": value}],
                )
        issues = [i for i in repo.issues.values() if state == "all" or i.state == state]
        wanted = [n.strip().lower() for n in params.get("labels", "").split(",") if n.strip()]
        if wanted:
            issues = [i for i in issues if set(wanted) <= {n.lower() for n in i.labels}]
        if "creator" in params:
            issues = [i for i in issues if i.user.lower() == params["creator"].lower()]
        if "assignee" in params:
            issues = [i for i in issues if params["assignee"].lower() in {a.lower() for a in i.assignees}]
        if "since" in params:
            cutoff = int(_parse_since(params["since"]))
            issues = [i for i in issues if int(i.updated_at) >= cutoff]

        def key(i: FakeIssue) -> tuple[float, int]:
            primary = {"created": int(i.created_at), "updated": int(i.updated_at), "comments": len(i.comment_ids)}
            return (primary[sort], i.number)

        issues.sort(key=key, reverse=direction == "desc")
        return self._page(req, repo, "issues", [self._issue_doc(repo, i) for i in issues])

    def _create_issue(self, req: _Request, repo: FakeRepo, login: str) -> _Answer:
        payload = req.json_object()
        title = payload.get("title")
        if not isinstance(title, str) or not title:
            raise _ApiError(
                422,
                "Validation Failed",
                "https://docs.github.com/rest/issues/issues#create-an-issue",
                [{"resource": "Issue", "field": "title", "code": "missing_field"}],
            )
        body = payload.get("body")
        number = self.add_issue(
            repo.full_name,
            title,
            body=body if isinstance(body, str) else None,
            user=login,
            labels=_label_names(payload.get("labels", [])),
        )
        doc = self._issue_doc(repo, repo.issues[number], single=True)
        return _Answer(201, doc, {"Location": doc["url"]})

    def _edit_issue(self, req: _Request, repo: FakeRepo, issue: FakeIssue, login: str) -> _Answer:
        payload = req.json_object()
        docs_url = "https://docs.github.com/rest/issues/issues#update-an-issue"
        now = self.now()
        if "state" in payload and payload["state"] not in ("open", "closed"):
            raise _ApiError(
                422, "Validation Failed", docs_url, [{"resource": "Issue", "field": "state", "code": "invalid"}]
            )
        if isinstance(payload.get("title"), str):
            issue.title = payload["title"]
            issue.updated_at = now
        if "body" in payload:
            issue.body = payload["body"] if isinstance(payload["body"], str) else None
            issue.updated_at = now
        if "labels" in payload:
            self._apply_labels(repo, issue, _label_names(payload["labels"]), login, now)
        if "state" in payload:
            reason = payload.get("state_reason")
            self._set_state(repo, issue, payload["state"], reason if isinstance(reason, str) else None, login, now)
        return _Answer(200, self._issue_doc(repo, issue, single=True))

    def _create_label(self, req: _Request, repo: FakeRepo) -> _Answer:
        payload = req.json_object()
        name = _require_string(payload, "name")
        docs_url = "https://docs.github.com/rest/issues/labels#create-a-label"
        if name.lower() in repo.labels:
            raise _ApiError(
                422, "Validation Failed", docs_url, [{"resource": "Label", "code": "already_exists", "field": "name"}]
            )
        color = payload.get("color", "ededed")
        if not isinstance(color, str) or not re.fullmatch(r"#?[0-9a-fA-F]{6}", color):
            raise _ApiError(
                422, "Validation Failed", docs_url, [{"resource": "Label", "code": "invalid", "field": "color"}]
            )
        description = payload.get("description")
        label = self.add_label(
            repo.full_name, name, color=color, description=description if isinstance(description, str) else None
        )
        doc = self._label_doc(repo, label)
        return _Answer(201, doc, {"Location": doc["url"]})

    # -- pull requests (lock held) -------------------------------------------------------------
    def _pull(self, repo: FakeRepo, issue: FakeIssue) -> FakePull:
        """The pull of a PR issue; one made by ``add_issue(pull_request=True)`` gets a made-up head."""
        pull = repo.pulls.get(issue.number)
        if pull is None:
            pull = FakePull(issue, self._next_id(), f"pr-{issue.number}", repo.default_branch)
            repo.pulls[issue.number] = pull
        return pull

    @staticmethod
    def _branch_sha(repo: FakeRepo, name: str) -> str | None:
        if name in repo.branches:
            return repo.branches[name]
        if name == repo.default_branch:
            return _fake_sha(f"{repo.full_name}:{name}")
        return None

    def _head_sha(self, repo: FakeRepo, pull: FakePull) -> str:
        return self._branch_sha(repo, pull.head) or _fake_sha(f"{repo.full_name}:{pull.head}")

    def _pull_doc(self, repo: FakeRepo, pull: FakePull, *, full: bool) -> dict[str, Any]:
        issue = pull.issue
        api = self._repo_api(repo)
        url = f"{api}/pulls/{issue.number}"
        issue_url = f"{api}/issues/{issue.number}"
        html = f"{HTML_BASE}/{repo.full_name}/pull/{issue.number}"
        head_sha = self._head_sha(repo, pull)
        statuses = f"{api}/statuses/{head_sha}"

        def side(ref: str, sha: str) -> dict[str, Any]:
            return {
                "label": f"{repo.owner}:{ref}",
                "ref": ref,
                "sha": sha,
                "user": self._user_doc(repo.owner),
                "repo": self._repo_doc(repo, issue.user),
            }

        doc: dict[str, Any] = {
            "url": url,
            "id": pull.id,
            "node_id": _node_id("PR", pull.id),
            "html_url": html,
            "diff_url": f"{html}.diff",
            "patch_url": f"{html}.patch",
            "issue_url": issue_url,
            "commits_url": f"{url}/commits",
            "review_comments_url": f"{url}/comments",
            "review_comment_url": f"{api}/pulls/comments{{/number}}",
            "comments_url": f"{issue_url}/comments",
            "statuses_url": statuses,
            "number": issue.number,
            "state": issue.state,
            "locked": False,
            "title": issue.title,
            "user": self._user_doc(issue.user),
            "body": issue.body,
            "labels": [self._label_doc(repo, repo.labels[name.lower()]) for name in issue.labels],
            "milestone": None,
            "active_lock_reason": None,
            "created_at": _iso(issue.created_at),
            "updated_at": _iso(issue.updated_at),
            "closed_at": _iso(issue.closed_at) if issue.closed_at is not None else None,
            "merged_at": _iso(pull.merged_at) if pull.merged_at is not None else None,
            "merge_commit_sha": None,
            "assignee": None,
            "assignees": [],
            "requested_reviewers": [],
            "requested_teams": [],
            "head": side(pull.head, head_sha),
            "base": side(pull.base, self._branch_sha(repo, pull.base) or ""),
            "_links": {
                "self": {"href": url},
                "html": {"href": html},
                "issue": {"href": issue_url},
                "comments": {"href": f"{issue_url}/comments"},
                "review_comments": {"href": f"{url}/comments"},
                "review_comment": {"href": f"{api}/pulls/comments{{/number}}"},
                "commits": {"href": f"{url}/commits"},
                "statuses": {"href": statuses},
            },
            "author_association": self._association(repo, issue.user),
            "auto_merge": None,
            "draft": issue.draft,
        }
        if full:
            doc.update(
                {
                    "merged": pull.merged_at is not None,
                    "mergeable": None,  # GitHub computes it in the background; null until it has
                    "rebaseable": None,
                    "mergeable_state": "unknown",
                    "merged_by": None,
                    "comments": len(issue.comment_ids),
                    "review_comments": len(pull.review_comment_ids),
                    "maintainer_can_modify": pull.maintainer_can_modify,
                    "commits": 1,
                    "additions": 0,
                    "deletions": 0,
                    "changed_files": 0,
                }
            )
        return doc

    def _list_pulls(self, req: _Request, repo: FakeRepo) -> _Answer:
        params = req.params()
        docs_url = "https://docs.github.com/rest/pulls/pulls#list-pull-requests"
        state = params.get("state", "open")
        sort = params.get("sort", "created")
        direction = params.get("direction", "desc" if sort == "created" else "asc")
        for name, value, allowed in (
            ("state", state, ("open", "closed", "all")),
            ("sort", sort, ("created", "updated", "popularity", "long-running")),
            ("direction", direction, ("asc", "desc")),
        ):
            if value not in allowed:
                raise _ApiError(
                    422,
                    "Validation Failed",
                    docs_url,
                    [{"resource": "PullRequest", "field": name, "code": "invalid", "value": value}],
                )
        pulls = [self._pull(repo, i) for i in repo.issues.values() if i.pull_request]
        pulls = [p for p in pulls if state == "all" or p.issue.state == state]
        if "head" in params:
            owner, sep, ref = params["head"].partition(":")
            # GitHub: "user:ref-name"; a head without the owner matches nothing useful, as there.
            pulls = [p for p in pulls if sep and owner.lower() == repo.owner.lower() and p.head == ref]
        if "base" in params:
            pulls = [p for p in pulls if p.base == params["base"]]

        def key(p: FakePull) -> tuple[float, int]:
            primary = {
                "created": int(p.issue.created_at),
                "updated": int(p.issue.updated_at),
                "popularity": len(p.issue.comment_ids),
                "long-running": int(p.issue.created_at),
            }
            return (primary[sort], p.number)

        pulls.sort(key=key, reverse=direction == "desc")
        return self._page(req, repo, "pulls", [self._pull_doc(repo, p, full=False) for p in pulls])

    def _create_pull(self, req: _Request, repo: FakeRepo, login: str) -> _Answer:
        payload = req.json_object()
        docs_url = "https://docs.github.com/rest/pulls/pulls#create-a-pull-request"

        def invalid(field_name: str, code: str = "invalid") -> _ApiError:
            return _ApiError(
                422, "Validation Failed", docs_url, [{"resource": "PullRequest", "field": field_name, "code": code}]
            )

        for name in ("title", "head", "base"):
            if not isinstance(payload.get(name), str) or not payload[name]:
                raise invalid(name, "missing_field")
        owner, sep, head = payload["head"].rpartition(":")
        if sep and owner.lower() != repo.owner.lower():
            raise invalid("head")  # forks are not modelled
        base = payload["base"]
        if self._branch_sha(repo, head) is None:
            raise invalid("head")
        if self._branch_sha(repo, base) is None:
            raise invalid("base")
        if head == base:
            raise _ApiError(
                422,
                "Validation Failed",
                docs_url,
                [{"resource": "PullRequest", "code": "custom", "message": f"No commits between {base} and {head}"}],
            )
        for existing in repo.pulls.values():
            if existing.head == head and existing.issue.state == "open":
                message = f"A pull request already exists for {repo.owner}:{head}."
                raise _ApiError(
                    422,
                    "Validation Failed",
                    docs_url,
                    [{"resource": "PullRequest", "code": "custom", "message": message}],
                )
        body = payload.get("body")
        number = self.add_issue(
            repo.full_name, payload["title"], body=body if isinstance(body, str) else None, user=login
        )
        issue = repo.issues[number]
        issue.pull_request = True
        issue.draft = payload.get("draft") is True
        pull = FakePull(issue, self._next_id(), head, base, payload.get("maintainer_can_modify") is True)
        repo.pulls[number] = pull
        doc = self._pull_doc(repo, pull, full=True)
        return _Answer(201, doc, {"Location": doc["url"]})

    def _edit_pull(self, req: _Request, repo: FakeRepo, pull: FakePull, login: str) -> _Answer:
        """title, body, state and base, as GitHub's update-a-pull-request takes them."""
        payload = req.json_object()
        docs_url = "https://docs.github.com/rest/pulls/pulls#update-a-pull-request"

        def invalid(field_name: str) -> _ApiError:
            return _ApiError(
                422,
                "Validation Failed",
                docs_url,
                [{"resource": "PullRequest", "field": field_name, "code": "invalid"}],
            )

        if "state" in payload and payload["state"] not in ("open", "closed"):
            raise invalid("state")
        if "base" in payload and (
            not isinstance(payload["base"], str) or self._branch_sha(repo, payload["base"]) is None
        ):
            raise invalid("base")
        issue, now = pull.issue, self.now()
        if isinstance(payload.get("title"), str):
            issue.title = payload["title"]
            issue.updated_at = now
        if "body" in payload:
            issue.body = payload["body"] if isinstance(payload["body"], str) else None
            issue.updated_at = now
        if "base" in payload:
            pull.base = payload["base"]
        if "state" in payload:
            self._set_state(repo, issue, payload["state"], None, login, now)
        return _Answer(200, self._pull_doc(repo, pull, full=True))

    # -- reviews and review comments (lock held) -----------------------------------------------
    def _pull_reviews_route(self, req: _Request, repo: FakeRepo, number: int, rest: list[str], login: str) -> _Answer:
        """``GET pulls/{n}/comments``, ``pulls/{n}/reviews`` and ``pulls/{n}/reviews/{id}``."""
        pulls_docs = "https://docs.github.com/rest/pulls"
        if rest == ["comments"]:
            docs_url = f"{pulls_docs}/comments#list-review-comments-on-a-pull-request"
        elif rest == ["reviews"]:
            docs_url = f"{pulls_docs}/reviews#list-reviews-for-a-pull-request"
        elif len(rest) == 2 and rest[0] == "reviews" and rest[1].isdigit():
            docs_url = f"{pulls_docs}/reviews#get-a-review-for-a-pull-request"
        else:
            raise _not_found()
        found = repo.issues.get(number)
        if found is None or not found.pull_request:
            raise _not_found(docs_url)
        pull = self._pull(repo, found)
        if rest == ["comments"]:
            return self._list_review_comments(req, repo, pull)
        # A pending review is its author's draft: nobody else sees it.
        visible = [
            repo.reviews[rid]
            for rid in pull.review_ids
            if repo.reviews[rid].state != "PENDING" or repo.reviews[rid].user.lower() == login.lower()
        ]
        if rest == ["reviews"]:
            return self._page(req, repo, f"pulls/{number}/reviews", [self._review_doc(repo, r) for r in visible])
        for review in visible:
            if review.id == int(rest[1]):
                return _Answer(200, self._review_doc(repo, review))
        raise _not_found(docs_url)

    def _list_review_comments(self, req: _Request, repo: FakeRepo, pull: FakePull) -> _Answer:
        """Oldest (lowest id) first; ``sort`` ``created``/``updated`` with ``direction`` (asc unless
        given; ignored without ``sort``, as documented) and ``since`` (updated at or after)."""
        params = req.params()
        docs_url = "https://docs.github.com/rest/pulls/comments#list-review-comments-on-a-pull-request"
        sort = params.get("sort")
        direction = params.get("direction", "asc")
        for name, value, allowed in (
            ("sort", sort or "created", ("created", "updated")),
            ("direction", direction, ("asc", "desc")),
        ):
            if value not in allowed:
                raise _ApiError(
                    422,
                    "Validation Failed",
                    docs_url,
                    [{"resource": "PullRequestReviewComment", "field": name, "code": "invalid", "value": value}],
                )
        comments = [repo.review_comments[cid] for cid in pull.review_comment_ids]
        if "since" in params:
            cutoff = int(_parse_since(params["since"]))
            comments = [c for c in comments if int(c.updated_at) >= cutoff]
        if sort is not None:

            def key(c: FakeReviewComment) -> tuple[int, int]:
                return (int(c.created_at if sort == "created" else c.updated_at), c.id)

            comments.sort(key=key, reverse=direction == "desc")
        docs = [self._review_comment_doc(repo, c) for c in comments]
        return self._page(req, repo, f"pulls/{pull.number}/comments", docs)

    def _review_comment_doc(self, repo: FakeRepo, comment: FakeReviewComment) -> dict[str, Any]:
        api = self._repo_api(repo)
        url = f"{api}/pulls/comments/{comment.id}"
        pull_url = f"{api}/pulls/{comment.pull_number}"
        html = f"{HTML_BASE}/{repo.full_name}/pull/{comment.pull_number}#discussion_r{comment.id}"
        return {
            "url": url,
            "pull_request_review_id": comment.review_id,
            "id": comment.id,
            "node_id": _node_id("PRRC", comment.id),
            # The hunk ends at the commented line, which is its only (added) line: position 1.
            "diff_hunk": f"@@ -{comment.line - 1},0 +{comment.line} @@\n+",
            "path": comment.path,
            "position": 1,
            "original_position": 1,
            "commit_id": comment.commit_id,
            "original_commit_id": comment.commit_id,
            "user": self._user_doc(comment.user),
            "body": comment.body,
            "created_at": _iso(comment.created_at),
            "updated_at": _iso(comment.updated_at),
            "html_url": html,
            "pull_request_url": pull_url,
            "author_association": self._association(repo, comment.user),
            "_links": {"self": {"href": url}, "html": {"href": html}, "pull_request": {"href": pull_url}},
            "reactions": self._reactions(url),
            "start_line": None,
            "original_start_line": None,
            "start_side": None,
            "line": comment.line,
            "original_line": comment.line,
            "side": "RIGHT",
            "subject_type": "line",
        }

    def _review_doc(self, repo: FakeRepo, review: FakeReview) -> dict[str, Any]:
        pull_url = f"{self._repo_api(repo)}/pulls/{review.pull_number}"
        html = f"{HTML_BASE}/{repo.full_name}/pull/{review.pull_number}#pullrequestreview-{review.id}"
        doc: dict[str, Any] = {
            "id": review.id,
            "node_id": _node_id("PRR", review.id),
            "user": self._user_doc(review.user),
            "body": review.body,
            "state": review.state,
            "html_url": html,
            "pull_request_url": pull_url,
            "author_association": self._association(repo, review.user),
            "_links": {"html": {"href": html}, "pull_request": {"href": pull_url}},
        }
        if review.submitted_at is not None:  # GitHub leaves the key out while the review is pending
            doc["submitted_at"] = _iso(review.submitted_at)
        doc["commit_id"] = review.commit_id
        return doc

    def _page(self, req: _Request, repo: FakeRepo, tail: str, items: list[Any]) -> _Answer:
        """One page of ``items`` and GitHub's ``Link`` header (URLs in the ``/repositories/{id}`` form)."""
        params = req.params()
        try:
            per_page = int(params.get("per_page", "30"))
            page = int(params.get("page", "1"))
        except ValueError:
            per_page, page = 30, 1
        per_page = 30 if per_page < 1 else min(per_page, 100)
        page = max(page, 1)
        last = max(1, math.ceil(len(items) / per_page))
        body = items[(page - 1) * per_page : page * per_page]
        headers: dict[str, str] = {}
        if last > 1 or page > 1:
            pairs = [(k, v) for k, v in urllib.parse.parse_qsl(req.query, keep_blank_values=True) if k != "page"]

            def link(target: int) -> str:
                query = urllib.parse.urlencode([*pairs, ("page", str(target))])
                return f"{self.base_url}/repositories/{repo.id}/{tail}?{query}"

            links = []
            if page > 1:
                links.append(f'<{link(min(page - 1, last))}>; rel="prev"')
            if page < last:
                links.append(f'<{link(page + 1)}>; rel="next"')
                links.append(f'<{link(last)}>; rel="last"')
            if page > 1:
                links.append(f'<{link(1)}>; rel="first"')
            headers["Link"] = ", ".join(links)
        return _Answer(200, body, headers)


# -- helpers -----------------------------------------------------------------------------------
def _regex(pattern: str | None) -> re.Pattern[str] | None:
    return re.compile(pattern) if pattern is not None else None


def _fake_sha(seed: str) -> str:
    return hashlib.sha1(seed.encode()).hexdigest()


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    if header.strip() == "*":
        return True
    strip = etag.removeprefix("W/")
    return any(candidate.strip().removeprefix("W/") == strip for candidate in header.split(","))


def _parse_since(value: str) -> float:
    try:
        return _parse_iso(value)
    except ValueError:
        raise _ApiError(
            422,
            "Validation Failed",
            DOCS,
            [{"resource": "Issue", "field": "since", "code": "invalid"}],
        ) from None


def _require_string(payload: dict[str, Any], name: str) -> str:
    value = payload.get(name)
    if not isinstance(value, str):
        raise _ApiError(422, f'Invalid request.\n\n"{name}" wasn\'t supplied.', DOCS)
    return value


def _label_names(value: Any) -> list[str]:
    """Label names from a request body: ``["a", "b"]``, ``{"labels": [...]}``, or label objects."""
    if isinstance(value, dict):
        value = value.get("labels", [])
    if not isinstance(value, list):
        raise _ApiError(422, 'Invalid request.\n\n"labels" is not an array.', DOCS)
    names: list[str] = []
    for item in value:
        name = item.get("name") if isinstance(item, dict) else item
        if not isinstance(name, str) or not name:
            raise _ApiError(422, "Validation Failed", DOCS, [{"resource": "Label", "code": "invalid", "field": "name"}])
        names.append(name)
    return names


@dataclass
class _Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]  # lower-cased names
    body: bytes

    def params(self) -> dict[str, str]:
        return {k: v for k, v in urllib.parse.parse_qsl(self.query, keep_blank_values=True)}

    def json_value(self) -> Any:
        if not self.body:
            return None
        try:
            return json.loads(self.body)
        except ValueError:
            raise _ApiError(400, "Problems parsing JSON", DOCS) from None

    def json_object(self) -> dict[str, Any]:
        value = self.json_value()
        if not isinstance(value, dict):
            raise _ApiError(400, "Problems parsing JSON", DOCS)
        return value


@dataclass
class _Response:
    status: int
    headers: dict[str, str]
    body: bytes
    drop: bool = False


_REASONS = {304: "Not Modified", 422: "Unprocessable Entity"}


class _Handler(BaseHTTPRequestHandler):
    fake: FakeGitHub
    protocol_version = "HTTP/1.1"
    server_version = "github.com"
    sys_version = ""
    timeout = 10  # a client that never sends its request cannot pin a thread forever

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path, _, query = self.path.partition("?")
        request = _Request(self.command, path, query, {k.lower(): v for k, v in self.headers.items()}, body)
        response = self.fake._handle(request)
        if response.drop:
            # SO_LINGER 0 makes close() send RST: the client gets no answer at all.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True
            return
        self.send_response(response.status, _REASONS.get(response.status))
        for name, value in response.headers.items():
            self.send_header(name, value)
        if response.status != 304:
            self.send_header("Content-Length", str(len(response.body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if response.status != 304 and self.command != "HEAD":
            self.wfile.write(response.body)
        self.close_connection = True

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = do_HEAD = _serve


def post_signed(url: str, body: bytes, headers: dict[str, str]) -> int:
    """POST one webhook delivery (GitHub waits 10 s); the answer's status, or 0 if none came."""
    import http.client

    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=10)
    try:
        conn.request("POST", parts.path or "/", body=body, headers=headers)
        return conn.getresponse().status
    except OSError:
        return 0
    finally:
        conn.close()
