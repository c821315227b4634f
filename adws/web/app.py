"""The console's ASGI app: routes, the auth guard, rendering, the actions.

Handlers are thin: each asks ``pages`` (or the CLI's view functions through it) for its data,
in a worker thread (the store is synchronous), and renders a Jinja2 template with
autoescaping on, or returns the JSON.  Every body sent is passed through the redactor
(every secret the config references, the console's tokens included) before it leaves.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from adw_modules.config.schema import Config, ConfigError
from adw_modules.ops.display import ago, format_usd
from adw_modules.ops.redact import Redactor
from adw_modules.queue.store import Store
from adw_modules.routing.router import ModelRouter
from adws import queue_views, views
from adws.web import charts, live, pages
from adws.web.auth import COOKIE, LOGIN_COOKIE, SESSION_MAX_AGE_S, Auth, Principal, clean_user
from adws.web.spendcache import SpendCache

SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
]
MAX_PAGE = 200
MAX_TASK_ID = 2**31 - 1  # the ids are PostgreSQL integers: a larger one is no task (not an overflow)
RELOAD_WAIT_S = 5.0
MAX_FAILURES = 10
FAILURE_WINDOW_S = 60.0
Handler = Callable[[Request, Principal], Awaitable[Response]]


@dataclass
class Console:
    """What the app serves from: the config (as the coordinator has it now), the store, and hooks."""

    config_of: Callable[[], Config]
    store: Store
    auth: Auth
    redactor: Redactor
    in_coordinator: bool = False  # served by ``adw run``: a coordinator is running here
    github_remaining: Callable[[], int | None] | None = None
    after_config_edit: Callable[[], None] | None = None  # the coordinator reloads
    reload_info: Callable[[], Mapping[str, Any] | None] | None = None
    clock: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(dt.UTC))
    watcher: live.ChangeWatcher = field(init=False)
    spend_cache: SpendCache = field(default_factory=SpendCache)

    def __post_init__(self) -> None:
        self.watcher = live.ChangeWatcher(self.store)

    def can_act(self, who: Principal) -> bool:
        """Admin, and a coordinator to carry it out (``adw web`` alone is read-only)."""
        return who.admin and (self.in_coordinator or pages.coordinator_running(self.store, self.clock()))


def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("adws.web", "templates"),
        autoescape=True,  # every template, whatever its name: agent output and issue text are hostile
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["usd"] = format_usd
    env.filters["pct"] = lambda v: "-" if v is None else f"{v * 100:.0f}%"
    env.filters["secs"] = lambda v: "-" if v is None else (f"{v:.0f}s" if v < 120 else f"{v / 60:.1f}m")
    env.filters["short_time"] = lambda v: "" if not v else str(v).replace("T", " ")[:19]
    env.filters["tojson_pretty"] = lambda v: json.dumps(v, indent=2, default=str, ensure_ascii=False)
    return env


class SecurityHeaders:
    """Adds the security headers to every response (streams too: plain ASGI, no buffering)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)


def _safe_next(target: str | None) -> str:
    """Only a path on this site (no //host, no scheme): the login form cannot redirect elsewhere."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    if any(ord(ch) < 33 or ord(ch) == 127 for ch in target):  # browsers drop tabs and newlines: "/\t/evil"
        return "/"
    return target


class App:
    def __init__(self, console: Console) -> None:
        self.c = console
        self.env = _env()
        self._failures: dict[str, list[float]] = {}  # client address -> times of wrong tokens (event loop only)

    # ------------------------------------------------------------ responses
    def _json(self, data: Any, status: int = 200) -> Response:
        body = self.c.redactor(json.dumps(data, indent=2, default=str))
        return Response(body, status_code=status, media_type="application/json")

    def _html(
        self, request: Request, who: Principal | None, template: str, http_status: int = 200, **ctx: Any
    ) -> Response:
        now = self.c.clock()
        text = self.env.get_template(template).render(
            request_path=request.url.path,
            who=who,
            csrf=None if who is None else self.c.auth.csrf_token(who),
            can_act=who is not None and self.c.can_act(who),
            open_access=self.c.auth.open,
            in_coordinator=self.c.in_coordinator,
            now=now,
            ago=lambda v: ago(v, now),
            **ctx,
        )
        # Issue text, event messages and agent output may carry terminal escapes and control
        # characters: none has a place in a page (and NUL is invalid HTML), so none is sent.
        text = pages.CONTROL.sub("", pages.ANSI_ESCAPE.sub("", text))
        return Response(self.c.redactor(text), status_code=http_status, media_type="text/html; charset=utf-8")

    def _error(self, request: Request, who: Principal | None, status: int, message: str) -> Response:
        if request.url.path.startswith("/api/") or (who is not None and not who.session and not self.c.auth.open):
            return self._json({"error": message}, status)
        return self._html(request, who, "error.html", http_status=status, message=message)

    # ------------------------------------------------------------ the guard
    def guarded(self, handler: Handler, *, api: bool = False, admin: bool = False) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            client = request.client.host if request.client else "?"
            if self._throttled(client):
                return self._json({"error": "too many wrong tokens: wait a minute"}, 429)
            who = self.c.auth.from_request(request.headers.get("authorization"), request.cookies.get(COOKIE))
            if who is None and request.headers.get("authorization"):
                self._failed(client)
            if who is None:
                if api or request.headers.get("authorization") or request.url.path == "/events":
                    return Response(
                        json.dumps({"error": "authentication required: a bearer token or a login session"}),
                        status_code=401,
                        media_type="application/json",
                        headers={"WWW-Authenticate": 'Bearer realm="adw"'},
                    )
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(f"/login?next={quote(target)}", status_code=303)
            if admin:
                if not who.admin:
                    return self._error(request, who, 403, "this needs the admin token (you are read-only)")
                form = await request.form()
                token = form.get("csrf")
                if not self.c.auth.csrf_ok(who, token if isinstance(token, str) else None):
                    return self._error(request, who, 403, "missing or wrong CSRF token: reload the page and try again")
                if not self.c.can_act(who):
                    return self._error(request, who, 409, "no coordinator is running: the console is read-only")
            return await handler(request, who)

        return endpoint

    # ------------------------------------------------------------ wrong tokens
    def _failed(self, client: str) -> None:
        self._failures.setdefault(client, []).append(time.monotonic())

    def _throttled(self, client: str) -> bool:
        """MAX_FAILURES wrong tokens from one address within FAILURE_WINDOW_S: refuse it for
        the rest of the window (tokens are long and random; this keeps guessing slow)."""
        recent = [t for t in self._failures.get(client, []) if time.monotonic() - t < FAILURE_WINDOW_S]
        if recent:
            self._failures[client] = recent
        else:
            self._failures.pop(client, None)
        return len(recent) >= MAX_FAILURES

    # ------------------------------------------------------------ login
    async def healthz(self, request: Request) -> Response:
        return Response('{"status": "ok"}', media_type="application/json")

    async def login_form(self, request: Request) -> Response:
        if self.c.auth.open:
            return RedirectResponse("/", status_code=303)
        return self._login_page(request, _safe_next(request.query_params.get("next")), None)

    def _login_page(self, request: Request, target: str, error: str | None, http_status: int = 200) -> Response:
        """The form, with a CSRF token bound to a fresh nonce cookie (login CSRF)."""
        nonce = secrets.token_urlsafe(24)
        response = self._html(
            request,
            None,
            "login.html",
            http_status=http_status,
            next=target,
            error=error,
            login_csrf=self.c.auth.login_csrf(nonce),
        )
        response.set_cookie(
            LOGIN_COOKIE,
            nonce,
            max_age=SESSION_MAX_AGE_S,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/login",
        )
        return response

    async def login(self, request: Request) -> Response:
        client = request.client.host if request.client else "?"
        if self._throttled(client):
            return self._login_page(request, "/", "Too many wrong tokens: wait a minute.", 429)
        form = await request.form()
        token, name, target, csrf = (str(form.get(k) or "") for k in ("token", "name", "next", "csrf"))
        if not self.c.auth.login_csrf_ok(request.cookies.get(LOGIN_COOKIE), csrf):
            return self._login_page(
                request, _safe_next(target), "The form had expired or came from elsewhere: log in again.", 403
            )
        role = self.c.auth.role_of_token(token)
        if role is None:
            self._failed(client)
            return self._login_page(request, _safe_next(target), "That token is not valid.", 401)
        response = RedirectResponse(_safe_next(target), status_code=303)
        response.delete_cookie(LOGIN_COOKIE, path="/login", httponly=True, samesite="strict")
        response.set_cookie(
            COOKIE,
            self.c.auth.issue(role, clean_user(name, role)),
            max_age=SESSION_MAX_AGE_S,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )
        return response

    async def logout(self, request: Request, who: Principal) -> Response:
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return response

    # ------------------------------------------------------------ pages
    async def overview(self, request: Request, who: Principal) -> Response:
        c = self.c
        data = await run_in_threadpool(pages.overview, c.config_of(), c.store, c.github_remaining, c.clock())
        return self._html(request, who, "overview.html", page="overview", **data)

    async def tasks(self, request: Request, who: Principal) -> Response:
        params = request.query_params
        try:
            flt = pages.task_filter(params)
            limit = min(MAX_PAGE, max(1, int(params.get("limit") or 50)))
            data = await run_in_threadpool(pages.task_list, self.c.store, flt, params.get("after"), limit)
        except ValueError as exc:
            return self._error(request, who, 400, f"bad filter: {exc}")
        kept = {k: v for k, v in params.items() if k in (*pages.FILTER_KEYS, "limit") and v}
        next_url = None if data["next"] is None else "/tasks?" + urlencode({**kept, "after": data["next"]})
        if request.url.path.startswith("/api/"):
            return self._json(data)
        config = self.c.config_of()
        return self._html(
            request,
            who,
            "tasks.html",
            page="tasks",
            data=data,
            flt=flt,
            next_url=next_url,
            first_url="/tasks?" + urlencode(kept) if params.get("after") else None,
            states=[str(s) for s in pages.TaskState],
            providers=list(config.providers),
        )

    async def task(self, request: Request, who: Principal) -> Response:
        task_id = int(request.path_params["task_id"])
        if task_id > MAX_TASK_ID:
            return self._error(request, who, 404, f"no task {task_id}")
        if request.url.path.startswith("/api/"):
            data = await run_in_threadpool(queue_views.task_data, self.c.store, task_id)
            return self._error(request, who, 404, f"no task {task_id}") if data is None else self._json(data)
        try:
            number = int(request.query_params["attempt"]) if request.query_params.get("attempt") else None
        except ValueError:
            return self._error(request, who, 400, "attempt must be a number")
        shown = await run_in_threadpool(
            pages.task_page, self.c.config_of(), self.c.store, task_id, number, self.c.redactor
        )
        if shown is None:
            return self._error(request, who, 404, f"no task {task_id}")
        return self._html(request, who, "task.html", page="tasks", **shown)

    async def spend(self, request: Request, who: Principal) -> Response:
        data = await run_in_threadpool(
            pages.spend, self.c.config_of(), self.c.store, self.c.clock(), self.c.spend_cache
        )
        for section in data["sections"]:
            by = section["by"]
            section["daily_chart"] = charts.stacked_bars(
                data["days"], section["daily"], caps=section["caps"], title=f"cost per day by {by}", label_every=5
            )
            section["hourly_chart"] = charts.stacked_bars(
                data["hours"], section["hourly"], title=f"cost per hour by {by}, last 48 h", label_every=6
            )
            section["daily_table"] = charts.table_rows(data["days"], section["daily"])
            section["hourly_table"] = charts.table_rows(data["hours"], section["hourly"])
        return self._html(request, who, "spend.html", page="spend", **data)

    async def usage_api(self, request: Request, who: Principal) -> Response:
        by = request.query_params.get("by") or "provider"
        try:
            days = int(request.query_params["days"]) if request.query_params.get("days") else None
            if days is not None and not 1 <= days <= 3650:
                raise ValueError("days must be between 1 and 3650")
            data = await run_in_threadpool(queue_views.usage_data, self.c.store, by, days)
        except ValueError as exc:
            return self._error(request, who, 400, str(exc))
        return self._json(data)

    async def stats(self, request: Request, who: Principal) -> Response:
        """``adw stats`` as a page and as ``/api/v1/stats`` (the same ``--by`` and ``--days``)."""
        from adw_modules.ops.stats import STATS_GROUPS, stats_data

        by = request.query_params.get("by") or "target"
        try:
            days = int(request.query_params.get("days") or 30)
            if days < 1 or days > 3650:
                raise ValueError("days must be between 1 and 3650")
            mode = self.c.config_of().learning.success
            data = await run_in_threadpool(stats_data, self.c.store, by, days, mode, self.c.clock())
        except ValueError as exc:
            return self._error(request, who, 400, f"bad query: {exc}")
        if request.url.path.startswith("/api/"):
            return self._json(data)
        return self._html(request, who, "stats.html", page="stats", groups_by=STATS_GROUPS, **data)

    async def status_api(self, request: Request, who: Principal) -> Response:
        data = await run_in_threadpool(queue_views.status_data, self.c.config_of(), self.c.store)
        return self._json(data)

    async def routing(self, request: Request, who: Principal) -> Response:
        config = self.c.config_of()
        router = ModelRouter(config)
        if request.url.path.startswith("/api/"):
            return self._json(await run_in_threadpool(views.routing_data, config, router))
        data = await run_in_threadpool(pages.routing, config, router)
        tried, problem, asked = None, None, dict(request.query_params)
        if asked.get("try"):
            try:
                attrs, ignore = pages.route_attrs(asked)
                tried = {"attrs": attrs.to_dict(), "decision": views.decide(router, attrs, ignore).to_dict()}
            except ValueError as exc:
                problem = str(exc)
        return self._html(
            request, who, "routing.html", page="routing", asked=asked, tried=tried, problem=problem, **data
        )

    async def route_api(self, request: Request, who: Principal) -> Response:
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object of task attributes")
            attrs, ignore = pages.route_attrs(body)
        except (ValueError, UnicodeDecodeError) as exc:
            return self._json({"error": f"bad request: {exc}"}, 400)
        decision = views.decide(ModelRouter(self.c.config_of()), attrs, ignore)
        return self._json(decision.to_dict())

    async def config_page(self, request: Request, who: Principal) -> Response:
        config = self.c.config_of()
        checked = await run_in_threadpool(views.validation_data, str(config.path))
        if request.url.path.startswith("/api/"):
            return self._json(checked)
        reload_info = None if self.c.reload_info is None else self.c.reload_info()
        return self._html(
            request,
            who,
            "config.html",
            page="config",
            checked=checked,
            running_fingerprint=config.fingerprint,
            reload_info=reload_info,
            web=config.web,
        )

    async def events(self, request: Request, who: Principal) -> Response:
        extra = None
        task = request.query_params.get("task") or ""
        if task.isascii() and task.isdigit() and int(task) <= MAX_TASK_ID:
            config, store = self.c.config_of(), self.c.store
            extra = lambda: pages.transcript_size(config, store, int(task))  # noqa: E731
        return StreamingResponse(
            live.stream(self.c.watcher, extra),
            media_type="text/event-stream",
            headers={"X-Accel-Buffering": "no"},
        )

    # ------------------------------------------------------------ actions
    def _record(self, kind: str, message: str, who: Principal, task_id: int | None = None, **data: Any) -> None:
        self.c.store.add_event(
            kind, message, task_id=task_id, data={"user": who.user, "role": who.role, "via": "web", **data}
        )

    def _done(self, request: Request, who: Principal, where: str, data: dict[str, Any], status: int = 200) -> Response:
        if who.session:
            return (
                RedirectResponse(where, status_code=303)
                if status < 400
                else self._error(request, who, status, data["note"])
            )
        return self._json(data, status)

    async def retry(self, request: Request, who: Principal) -> Response:
        task_id = int(request.path_params["task_id"])
        if task_id > MAX_TASK_ID:
            return self._error(request, who, 404, f"no task {task_id}")
        reset = (await request.form()).get("reset") == "1"

        def act() -> tuple[bool, Any]:
            ok = self.c.store.requeue_task(task_id, self.c.clock(), reset_retries=reset)
            if ok:
                self._record("console.retry", f"requeued from the web console by {who.user}", who, task_id, reset=reset)
            return ok, self.c.store.get_task(task_id)

        ok, task = await run_in_threadpool(act)
        if task is None:
            return self._error(request, who, 404, f"no task {task_id}")
        if not ok:
            note = f"task {task_id} is {task.state}: not requeued"
            return self._done(request, who, f"/tasks/{task_id}", {"id": task_id, "note": note}, 409)
        return self._done(request, who, f"/tasks/{task_id}", {"id": task_id, "state": str(task.state)})

    async def cancel(self, request: Request, who: Principal) -> Response:
        task_id = int(request.path_params["task_id"])
        if task_id > MAX_TASK_ID:
            return self._error(request, who, 404, f"no task {task_id}")

        def act() -> Any:
            reason = f"cancelled from the web console by {who.user}"
            state = self.c.store.request_cancel(task_id, self.c.clock(), reason=reason)
            if state is not None:
                self._record("console.cancel", reason, who, task_id, state=str(state))
            return state

        state = await run_in_threadpool(act)
        if state is None:
            return self._error(request, who, 404, f"no task {task_id}")
        return self._done(request, who, f"/tasks/{task_id}", {"id": task_id, "state": str(state)})

    async def set_routing(self, request: Request, who: Principal) -> Response:
        from adw_modules.config import edit as config_edit  # tomlkit edits: only when asked

        enabled = request.url.path.endswith("/enable")
        path = self.c.config_of().path
        try:
            await run_in_threadpool(config_edit.set_routing_enabled, path, enabled)
        except ConfigError as exc:
            return self._error(request, who, 409, "; ".join(exc.issues))
        word = "enabled" if enabled else "disabled"
        later = (
            "" if self.c.after_config_edit is not None else " (in the file: the coordinator applies it at its reload)"
        )
        message = f"routing {word} from the web console by {who.user}{later}"
        await run_in_threadpool(self._record, "console.routing", message, who, enabled=enabled)
        if self.c.after_config_edit is not None:
            self.c.after_config_edit()
            await run_in_threadpool(self._wait_applied, enabled)
        return self._done(request, who, "/routing", {"config": str(path), "routing": word})

    def _wait_applied(self, enabled: bool) -> None:
        """Until the coordinator has reloaded the edited file (the page then shows the new
        state), at most RELOAD_WAIT_S: it reloads at its main loop's next turn."""
        deadline = time.monotonic() + RELOAD_WAIT_S
        while self.c.config_of().routing.enabled != enabled and time.monotonic() < deadline:
            time.sleep(0.02)

    # ------------------------------------------------------------ the table
    def routes(self) -> list[Route | Mount]:
        g = self.guarded
        static = StaticFiles(directory=os.path.join(os.path.dirname(__file__), "static"))
        return [
            Route("/healthz", self.healthz),
            Route("/login", self.login_form, methods=["GET"]),
            Route("/login", self.login, methods=["POST"]),
            Route("/logout", g(self.logout), methods=["POST"]),
            Route("/", g(self.overview)),
            Route("/tasks", g(self.tasks)),
            Route("/tasks/{task_id:int}", g(self.task)),
            Route("/tasks/{task_id:int}/retry", g(self.retry, admin=True), methods=["POST"]),
            Route("/tasks/{task_id:int}/cancel", g(self.cancel, admin=True), methods=["POST"]),
            Route("/spend", g(self.spend)),
            Route("/stats", g(self.stats)),
            Route("/routing", g(self.routing)),
            Route("/routing/enable", g(self.set_routing, admin=True), methods=["POST"]),
            Route("/routing/disable", g(self.set_routing, admin=True), methods=["POST"]),
            Route("/config", g(self.config_page)),
            Route("/events", g(self.events)),
            Route("/api/v1/status", g(self.status_api, api=True)),
            Route("/api/v1/tasks", g(self.tasks, api=True)),
            Route("/api/v1/tasks/{task_id:int}", g(self.task, api=True)),
            Route("/api/v1/usage", g(self.usage_api, api=True)),
            Route("/api/v1/stats", g(self.stats, api=True)),
            Route("/api/v1/routing", g(self.routing, api=True)),
            Route("/api/v1/route", g(self.route_api, api=True), methods=["POST"]),
            Route("/api/v1/config", g(self.config_page, api=True)),
            Mount("/static", app=static, name="static"),
        ]


LOOPBACK_NAMES = ["localhost", "127.0.0.1", "::1", "[::1]"]


def create_app(console: Console, listen_host: str | None = None) -> ASGIApp:
    app = App(console)
    inner: ASGIApp = Starlette(routes=app.routes())
    if console.auth.open:
        # No token: only a browser that asked for the loopback address by name gets an answer,
        # so a page elsewhere cannot read the console through DNS rebinding.
        hosts = [*LOOPBACK_NAMES, *([listen_host] if listen_host else [])]
        inner = TrustedHostMiddleware(inner, allowed_hosts=hosts)
    return SecurityHeaders(inner)
