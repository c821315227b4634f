"""The console in process: auth on every route, the JSON API equals the CLI's --json, the
actions (CSRF, roles, events naming the user), escaping, paging, the live stream's framing."""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

from adw_modules.config.schema import ConfigError, load_config
from adw_modules.sources.local import enqueue_local
from adws.cli import cli
from adws.web import live
from adws.web.app import create_app
from adws.web.auth import COOKIE, Auth
from adws.web.server import bind, make_console
from tests.web.conftest import (
    ADMIN_TOKEN,
    ENVIRON,
    READONLY_TOKEN,
    Site,
    bearer,
    log_in,
    login_csrf,
    scene_config,
)

PAGES = ["/", "/tasks", "/tasks/1", "/spend", "/stats", "/routing", "/config", "/events"]
API_GETS = [
    "/api/v1/status",
    "/api/v1/tasks",
    "/api/v1/tasks/1",
    "/api/v1/usage",
    "/api/v1/stats",
    "/api/v1/routing",
    "/api/v1/config",
]
POSTS = ["/tasks/5/retry", "/tasks/3/cancel", "/routing/disable", "/routing/enable", "/api/v1/route", "/logout"]


def cli_json(site: Site, *args: str) -> object:
    result = CliRunner().invoke(cli, [*args, "--json", "--config", str(site.config.path)], env={"ADW_CONFIG": ""})
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_healthz_is_open_and_everything_else_needs_auth(site: Site) -> None:
    c = site.client
    assert c.get("/healthz").json() == {"status": "ok"}
    for path in PAGES[:-1]:
        r = c.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next="), path
    for path in [*API_GETS, "/events"]:
        r = c.get(path)
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer"), path
    for path in POSTS:
        assert c.post(path, follow_redirects=False).status_code in (303, 401), path
    assert c.get("/api/v1/status", headers=bearer("wrong")).status_code == 401
    assert c.get("/api/v1/status", headers={"Authorization": f"Basic {ADMIN_TOKEN}"}).status_code == 401


def test_json_endpoints_return_what_the_cli_prints(site: Site) -> None:
    c, h = site.client, bearer(READONLY_TOKEN)
    assert c.get("/api/v1/tasks/1", headers=h).json() == cli_json(site, "task", "show", "1")
    api_tasks = c.get("/api/v1/tasks?limit=50", headers=h).json()
    assert api_tasks.pop("next") is None
    assert api_tasks == cli_json(site, "tasks")
    assert c.get("/api/v1/usage?by=model", headers=h).json() == cli_json(site, "usage", "--by", "model")
    assert c.get("/api/v1/routing", headers=h).json() == cli_json(site, "routing")
    for by in ("target", "label"):
        stats = c.get(f"/api/v1/stats?by={by}&days=3650", headers=h).json()
        assert stats["groups"] and stats == cli_json(site, "stats", "--by", by, "--days", "3650")
    assert c.get("/api/v1/stats?by=colour", headers=h).status_code == 400
    assert c.get("/api/v1/stats?days=0", headers=h).status_code == 400
    assert c.get("/api/v1/config", headers=h).json() == cli_json(site, "config", "validate")
    status = c.get("/api/v1/status", headers=h).json()
    expected = cli_json(site, "status")
    assert status["queue"] == expected["queue"] and status["running"] == expected["running"]  # type: ignore[index]
    assert [p["name"] for p in status["providers"]] == [p["name"] for p in expected["providers"]]  # type: ignore[index]
    route = c.post("/api/v1/route", headers=h, json={"priority": "low", "labels": ["docs"], "hour": 14}).json()
    assert route == cli_json(site, "route", "--priority", "low", "--label", "docs", "--hour", "14")
    assert c.get("/api/v1/tasks/999", headers=h).status_code == 404
    assert c.post("/api/v1/route", headers=h, json={"priority": "urgent"}).status_code == 400
    assert c.post("/api/v1/route", headers=h, content=b"\xff\xfe").status_code == 400
    assert c.get("/api/v1/usage?by=colour", headers=h).status_code == 400


def test_tasks_filters_and_keyset_pages(site: Site) -> None:
    c, h = site.client, bearer()
    seen: list[int] = []
    url: str | None = "/api/v1/tasks?limit=3"
    while url:
        page = c.get(url, headers=h).json()
        seen += [t["id"] for t in page["tasks"]]
        url = None if page["next"] is None else f"/api/v1/tasks?limit=3&after={page['next']}"
    assert seen == [t.id for t in site.store.list_tasks()]  # every task once, newest first
    docs = c.get("/api/v1/tasks?label=docs", headers=h).json()["tasks"]
    assert sorted(t["id"] for t in docs) == [2, 6]
    assert [t["id"] for t in c.get("/api/v1/tasks?state=failed", headers=h).json()["tasks"]] == [5]
    assert [t["id"] for t in c.get("/api/v1/tasks?text=PAGINATION", headers=h).json()["tasks"]] == [4]
    on = {t["id"] for t in c.get("/api/v1/tasks?provider=crashy-dry", headers=h).json()["tasks"]}
    assert on == {3}
    assert c.get("/api/v1/tasks?state=bogus", headers=h).status_code == 400
    assert c.get("/api/v1/tasks?after=yesterday_1", headers=h).status_code == 400
    html = site.login().get("/tasks?limit=3").text
    assert 'id="next-page"' in html and "after=" in html


def test_login_sets_a_strict_httponly_cookie_and_only_local_redirects(site: Site) -> None:
    c = site.client
    r = c.post(
        "/login", data={"token": "nope", "name": "x", "next": "/", "csrf": login_csrf(c)}, follow_redirects=False
    )
    assert r.status_code == 401 and "not valid" in r.text
    for target in (
        "//evil.example/x",
        "https://evil.example/",
        "/\\evil.example",
        "javascript:alert(1)",
        "\t//evil",
        "/\t/evil",
        "/\n/x",
    ):
        data = {"token": ADMIN_TOKEN, "name": "Ada", "next": target, "csrf": login_csrf(c)}
        r = c.post("/login", data=data, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/", target
    assert 'name="next" value="/"' in c.get("/login?next=https://evil.example/").text
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert ADMIN_TOKEN not in cookie
    assert "Ada (admin)" in c.get("/").text
    body, _, signature = c.cookies[COOKIE].partition(".")
    forged = body.replace(body[:4], "eyJy", 1)  # another payload under the old signature
    for value in (f"{body}.{signature[::-1]}", f"{forged}x.{signature}"):
        c.cookies.clear()
        c.cookies.set(COOKIE, value)
        assert c.get("/", follow_redirects=False).status_code == 303


def test_the_login_form_needs_its_csrf_token(site: Site) -> None:
    """Login CSRF: a page elsewhere must not log this browser in under the attacker's token."""
    c = site.client
    ours = login_csrf(c)
    for csrf in (None, "", "x" * 43, ours[::-1]):
        data = {"token": ADMIN_TOKEN, "name": "Eve", "next": "/", **({} if csrf is None else {"csrf": csrf})}
        r = c.post("/login", data=data, follow_redirects=False)
        assert r.status_code == 403 and "log in again" in r.text and COOKIE not in r.cookies, csrf
    other = TestClient(c.app, base_url="http://127.0.0.1")
    theirs = login_csrf(other)  # another browser's form: its token is bound to its own nonce
    r = c.post("/login", data={"token": ADMIN_TOKEN, "name": "Eve", "csrf": theirs}, follow_redirects=False)
    assert r.status_code == 403
    c.cookies.clear()
    r = c.post("/login", data={"token": ADMIN_TOKEN, "name": "Eve", "csrf": ours}, follow_redirects=False)
    assert r.status_code == 403  # the token without its nonce cookie
    r = other.post("/login", data={"token": ADMIN_TOKEN, "name": "Ada", "csrf": theirs}, follow_redirects=False)
    assert r.status_code == 303 and COOKIE in r.cookies


def test_sessions_survive_a_restart_and_end_with_a_new_token() -> None:
    first = Auth(ADMIN_TOKEN, None)
    cookie = first.issue("admin", "Ada")
    assert Auth(ADMIN_TOKEN, None).session_principal(cookie) is not None  # a restarted coordinator
    assert Auth("rotated-token", None).session_principal(cookie) is None
    old = Auth(ADMIN_TOKEN, None, clock=lambda: 0.0).issue("admin", "Ada")
    assert first.session_principal(old) is None  # expired
    assert first.session_principal("garbage") is None and first.session_principal("a.b.c") is None


def test_actions_need_admin_and_csrf_and_record_the_user(site: Site) -> None:
    c = site.login(READONLY_TOKEN, name="Rita")
    page = c.get("/tasks/5").text
    assert 'id="retry"' not in page and "read-only" in page
    assert c.post("/tasks/5/retry", data={"csrf": "x"}).status_code == 403
    site.login(ADMIN_TOKEN, name="Ada <b>")
    assert c.post("/tasks/5/retry", data={}).status_code == 403  # no CSRF token
    assert c.post("/tasks/5/retry", data={"csrf": "forged"}).status_code == 403
    other = TestClient(c.app, base_url="http://127.0.0.1")
    log_in(other, ADMIN_TOKEN, "Mallory")
    theirs = re.search(r'name="csrf" value="([^"]+)"', other.get("/tasks/5").text)
    assert theirs and c.post("/tasks/5/retry", data={"csrf": theirs[1]}).status_code == 403  # another session's
    assert site.store.get_task(5).state == "failed"  # type: ignore[union-attr]
    token = site.csrf("/tasks/5")
    r = c.post("/tasks/5/retry", data={"csrf": token}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/tasks/5"
    assert site.store.get_task(5).state == "queued"  # type: ignore[union-attr]
    event = site.store.events(task_id=5, limit=1)[0]
    assert event["kind"] == "console.retry" and event["data"]["user"] == "Ada <b>"
    assert "Ada &lt;b&gt;" in c.get("/tasks/5").text
    assert c.post("/tasks/4/retry", data={"csrf": token}).status_code == 409  # running: not requeued
    assert c.post("/tasks/4/cancel", data={"csrf": token}, follow_redirects=False).status_code == 303
    assert site.store.get_task(4).cancel_requested  # type: ignore[union-attr]
    assert "by Ada <b>" in (site.store.get_task(4).cancel_reason or "")  # type: ignore[union-attr]
    assert c.post("/tasks/999/cancel", data={"csrf": token}).status_code == 404


def test_bearer_actions_need_no_csrf_and_answer_json(site: Site) -> None:
    c = site.client
    r = c.post("/tasks/5/retry", headers=bearer())
    assert r.status_code == 200 and r.json() == {"id": 5, "state": "queued"}
    assert c.post("/tasks/5/retry", headers=bearer(READONLY_TOKEN)).status_code == 403


def test_routing_switch_edits_the_file_and_records_it(site: Site) -> None:
    c = site.login()
    token = site.csrf("/routing")
    assert c.post("/routing/disable", data={"csrf": token}, follow_redirects=False).status_code == 303
    assert load_config(site.config.path).routing.enabled is False
    assert "enabled = false" in site.config.path.read_text()
    event = site.store.events(limit=1)[0]
    assert event["kind"] == "console.routing" and event["data"] == {
        "user": "Ada",
        "role": "admin",
        "via": "web",
        "enabled": False,
    }


def test_read_only_without_a_running_coordinator(tmp_path: Path) -> None:
    config, store = scene_config(tmp_path)
    console = make_console(config, store, ENVIRON)  # adw web: no coordinator in this process
    try:
        with TestClient(create_app(console), base_url="http://127.0.0.1") as c:
            assert c.post("/tasks/5/retry", headers=bearer()).status_code == 409
            log_in(c)
            page = c.get("/tasks/5").text
            assert 'id="retry"' not in page and "No coordinator" in c.get("/").text
    finally:
        store.close()


def test_hostile_text_is_escaped_on_every_page(site: Site) -> None:
    payload = '<script>alert(1)</script><img src=x onerror="alert(2)">'
    task = enqueue_local(site.store, payload, payload, labels=[payload], repo="acme/app")
    site.store.add_event("note", payload, task_id=task.id)
    c = site.login()
    for path in ["/", "/tasks", f"/tasks/{task.id}", "/spend", "/routing?try=1&labels=" + payload, "/config"]:
        html = c.get(path).text
        assert "<script>alert" not in html and "<img src=x" not in html, path
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in c.get(f"/tasks/{task.id}").text
    headers = c.get("/").headers
    assert "default-src 'self'" in headers["content-security-policy"] and headers["x-frame-options"] == "DENY"


def test_a_javascript_url_is_never_a_link(site: Site) -> None:
    from adw_modules.queue.tasks import NewTask

    site.store.upsert_task(
        NewTask(source="local", external_id="js", title="js link", body="", url="javascript:alert(1)")
    )
    html = site.login().get("/tasks").text
    assert 'href="javascript:' not in html


def test_no_secret_reaches_a_page(tmp_path: Path) -> None:
    planted = "sk-planted-WEB-0f9e8d7c6b5a"
    config, store = scene_config(tmp_path)
    store.add_event("leak", f"key {planted} leaked", task_id=1)
    enqueue_local(store, f"title with {planted}", f"body {planted}")
    environ = {**ENVIRON, "CLAUDE_DRY_KEY": planted}
    text = config.path.read_text().replace(
        "[providers.claude-dry]\n", '[providers.claude-dry]\napi_key_env = "CLAUDE_DRY_KEY"\n', 1
    )
    config.path.write_text(text)
    console = make_console(load_config(config.path), store, environ, in_coordinator=True)
    try:
        with TestClient(create_app(console), base_url="http://127.0.0.1") as c:
            log_in(c)
            bodies = [c.get(p).text for p in ["/", "/tasks", "/tasks/1", "/tasks/8", "/spend", "/routing", "/config"]]
            bodies += [c.get(p, headers=bearer()).text for p in [*API_GETS, "/api/v1/tasks/8"]]
    finally:
        store.close()
    assert sum("[REDACTED]" in b for b in bodies) >= 2  # the planted key was there, masked
    leaks = [i for i, b in enumerate(bodies) if planted in b or ADMIN_TOKEN in b or READONLY_TOKEN in b]
    assert leaks == []


def test_the_stream_says_retry_then_change() -> None:
    class FakeStore:
        marker = 0

        def change_marker(self) -> int:
            return self.marker

    fake = FakeStore()
    watcher = live.ChangeWatcher(fake, poll_s=0.01)  # type: ignore[arg-type]

    async def run() -> None:
        body = live.stream(watcher)
        try:
            assert await anext(body) == f"retry: {live.RETRY_MS}\n\n"
            assert (await anext(body)).startswith("event: change\n")  # catch up at (re)connection
            fake.marker = 1
            assert (await anext(body)).startswith("event: change\ndata: ")
        finally:
            await body.aclose()

    try:
        anyio.run(run)
    finally:
        watcher.stop()
    assert watcher._listeners == 0


def test_streams_over_a_store_that_raises_neither_spin_nor_hold_threads() -> None:
    """The store down (PostgreSQL stopped): 50 open pages cost a few wake-ups a second, hold no
    thread each while they wait (the worker threads every request needs stay free), keep
    streaming, and end cleanly."""

    class DownStore:
        calls = 0

        def change_marker(self) -> int:
            self.calls += 1
            raise ConnectionError("the store is down")

    def transcript_size() -> int:
        raise ConnectionError("the store is down")

    down = DownStore()
    watcher = live.ChangeWatcher(down, poll_s=0.05)  # type: ignore[arg-type]
    before = threading.active_count()
    sent: list[str] = []

    async def one_page(extra: Any) -> None:
        body = live.stream(watcher, extra)
        try:
            async for message in body:
                sent.append(message)
        finally:
            await body.aclose()

    async def run() -> tuple[int, float]:
        async with anyio.create_task_group() as pages:
            for i in range(50):  # five task pages following a transcript, whose size cannot be read
                pages.start_soon(one_page, transcript_size if i % 10 == 0 else None)
            cpu = time.process_time()
            await anyio.sleep(0.6)  # a window of time is what is measured: the CPU used while idle
            threads, used = threading.active_count(), time.process_time() - cpu
            watcher.stop()
        return threads, used

    try:
        threads, cpu_s = anyio.run(run)
    finally:
        watcher.stop()
    assert threads <= before + 1 + 5, threads  # the watcher, a worker per transcript read: not one per page
    assert cpu_s < 0.3, cpu_s
    assert 3 <= down.calls <= 40  # it kept asking, at its pace
    assert sorted(set(m.split("\n")[0] for m in sent)) == ["event: change", f"retry: {live.RETRY_MS}"]
    assert watcher._listeners == 0


def test_refuses_a_network_address_without_a_token(tmp_path: Path) -> None:
    config, store = scene_config(tmp_path, web="")
    try:
        console = make_console(config, store, {})
        assert console.auth.loopback_only and not console.auth.open
        with pytest.raises(ConfigError, match="not a loopback address"):
            bind(("0.0.0.0", 0), config, console.auth.loopback_only)
        bind(("127.0.0.1", 0), config, console.auth.loopback_only).close()
        # No token configured: still no page without one; this run's read-only token is in a
        # file only its owner can read, and never in a page or the log.
        path = console.auth.run_token_path
        assert path is not None and path.stat().st_mode & 0o777 == 0o600
        token = path.read_text().strip()
        assert len(token) >= 32 and token not in console.redactor(f"x {token} y")  # masked wherever shown
        with TestClient(create_app(console), base_url="http://127.0.0.1") as c:
            assert c.get("/", follow_redirects=False).status_code == 303  # to the login form
            assert c.get("/api/v1/status").status_code == 401
            bearer = {"Authorization": f"Bearer {token}"}
            assert c.get("/api/v1/status", headers=bearer).status_code == 200
            assert c.post("/tasks/5/retry", headers=bearer).status_code == 403  # read-only
        again = make_console(config, store, {})  # a new run, a new token: the old one is refused
        with TestClient(create_app(again), base_url="http://127.0.0.1") as c:
            assert c.get("/api/v1/status", headers=bearer).status_code == 401
    finally:
        store.close()


@pytest.mark.parametrize(
    ("web", "problem"),
    [
        ('listen = "0.0.0.0:8484"', 'listen "0.0.0.0:8484" is not a loopback address'),
        ('listen = "nowhere"', 'listen "nowhere" must be "HOST:PORT"'),
        ("token_command = []", "token_command must not be empty"),
        ('tokn_env = "X"', 'unknown key "tokn_env" (did you mean "token_env"?)'),
    ],
)
def test_bad_web_section_names_file_and_line(tmp_path: Path, web: str, problem: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        '[providers.p]\ncommand_template = ["/bin/true"]\n[providers.p.models.m]\n\n[routing]\n'
        'default_provider = "p"\ndefault_model = "m"\n\n[web]\n' + web + "\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert any(re.match(rf"{re.escape(str(path))}:\d+: web: {re.escape(problem)}", i) for i in caught.value.issues), (
        caught.value.issues
    )


def test_a_missing_token_is_a_config_error_naming_it(tmp_path: Path) -> None:
    config, store = scene_config(tmp_path)
    try:
        with pytest.raises(ConfigError, match="ADW_WEB_TOKEN is not set"):
            make_console(config, store, {"ADW_WEB_RO": READONLY_TOKEN})
    finally:
        store.close()


def test_a_huge_transcript_is_read_from_its_end(site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses
    import socket

    from adws.web import pages

    monkeypatch.setattr(pages, "TRANSCRIPT_TAIL_BYTES", 4096)
    log = tmp_path / "stdout.jsonl"
    line = json.dumps({"type": "assistant", "message": {"content": [{"type": "text", "text": "x" * 50}]}})
    log.write_text(
        "\n".join(
            [line] * 1000 + ['{"type": "assistant", "message": {"content": [{"type": "text", "text": "LAST <b>"}]}}']
        )
        + "\n"
    )
    attempt = dataclasses.replace(site.store.attempts_for(2)[0], host=socket.gethostname(), log_path=str(log))
    shown = pages.transcript(site.config, attempt, lambda s: s)
    assert shown["note"] and "latest part" in shown["note"]
    assert 0 < len(shown["lines"]) < 100 and ("text", "LAST <b>") in shown["lines"]


def test_wrong_tokens_are_throttled(site: Site) -> None:
    c = site.client
    for _ in range(10):
        assert c.get("/api/v1/status", headers=bearer("guess")).status_code == 401
    assert c.get("/api/v1/status", headers=bearer()).status_code == 429  # even the right one, for a minute
    r = c.post("/login", data={"token": ADMIN_TOKEN, "name": "x", "csrf": login_csrf(c)}, follow_redirects=False)
    assert r.status_code == 429 and "Too many wrong tokens" in r.text


def test_hostile_query_parameters_are_a_clear_400_never_a_crash(site: Site) -> None:
    c, h = site.client, bearer(READONLY_TOKEN)
    bad = [
        "/api/v1/tasks?text=" + "x" * 60_000,  # SQLite refuses LIKE patterns over 50,000 bytes
        "/api/v1/tasks?text=%00abc",  # PostgreSQL refuses NUL in text
        "/api/v1/tasks?repo=a%1bb",
        "/api/v1/tasks?after=" + "9" * 40 + "_1",
        "/api/v1/tasks?after=%00_%00",
        "/api/v1/tasks?after=１_１",  # full-width digits: isdigit() yet not a cursor we wrote
        "/api/v1/usage?days=99999999999999999",
        "/api/v1/stats?days=%00",
        "/tasks?text=%00",
    ]
    for path in bad:
        r = c.get(path, headers=h)
        assert r.status_code == 400 and "error" in r.json(), path
    for path in ["/tasks/99999999999999999999999", "/api/v1/tasks/99999999999999999999999", "/tasks/2147483648"]:
        assert c.get(path, headers=h).status_code == 404, path
    r = c.post("/tasks/99999999999999999999999/retry", headers=bearer())
    assert r.status_code == 404
    assert c.get("/api/v1/tasks?label=%F0%9F%92%A9&text=%C3%A9", headers=h).json()["tasks"] == []


def test_a_hostile_transcript_is_shown_escaped_without_escapes_and_cut(site: Site, tmp_path: Path) -> None:
    import dataclasses
    import socket

    from adws.web import pages

    hostile = (
        '<script>alert(1)</script></textarea></pre><a href="javascript:alert(2)">x</a>'
        " \x1b[31mRED\x1b[0m \x1b]0;pwned title\x07 \x1b[2J\x00\x08end"
    )
    log = tmp_path / "hostile.jsonl"
    texts = [hostile, "y" * 3_000_000]
    log.write_text(
        "\n".join(
            json.dumps({"type": "assistant", "message": {"content": [{"type": "text", "text": t}]}}) for t in texts
        )
        + "\n"
    )
    attempt = dataclasses.replace(site.store.attempts_for(2)[0], host=socket.gethostname(), log_path=str(log))
    shown = [text for _, text in pages.transcript(site.config, attempt, lambda s: s)["lines"]]
    assert '<script>alert(1)</script></textarea></pre><a href="javascript:alert(2)">x</a> RED  end' in shown
    assert not any(ch in text for text in shown for ch in "\x1b\x00\x07\x08")
    long = next(text for text in shown if text.startswith("yyy"))
    assert len(long) < pages.MAX_LINE_CHARS + 100 and "2,990,000 more characters" in long
    env_page = site.login()
    site.store.add_event("note", hostile, task_id=2)
    html = env_page.get("/tasks/2").text
    assert "<script>alert(1)" not in html and 'href="javascript:' not in html
    assert "\x1b" not in html and "\x00" not in html and "[31m" not in html and "pwned title" not in html
    assert "RED  " in html  # the event, its escapes removed (the store keeps NUL as U+FFFD)
