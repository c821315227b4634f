"""The console in a real browser: Debian's Chromium driven by Playwright, against a real
``adw run`` serving ``[web] listen`` with the dry-run agent as its only provider.

One coordinator and one browser for the module (per xdist worker: the tests do not depend
on each other's tasks).  The provider runs one task at a time
(max_concurrency 1) and the rules pick the dry-run agent's behaviour by label: ``hang`` never
ends (until cancelled), ``slow`` streams eight deltas 0.4 s apart, ``fails`` ends with
max_turns on its first call (a failure that is not retried) and succeeds after.  Every wait
is Playwright's own ``expect`` (it polls the page) or a poll of the store against a deadline.
Screenshots of each page go to test-artifacts/web/ (git-ignored).
"""

from __future__ import annotations

import json
import signal
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import playwright.sync_api as playwright_api  # a dev dependency: never skipped silently
import pytest
from playwright.sync_api import expect

from adw_modules.queue.store import Store
from adw_modules.queue.tasks import Task
from adw_modules.sources.local import enqueue_local
from adws.web.auth import MAX_USER_CHARS
from tests.coordinator.harness import Coord, wait_for
from tests.ops.system_tools import ensure_chromium

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parent.parent.parent
ARTIFACTS = REPO / "test-artifacts" / "web"
AGENT = REPO / "tools" / "dry-run-agent.py"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ADMIN = "console-admin-3c8f1e2a9b7d"
READONLY = "console-ro-5d4c3b2a1f0e"
XSS = '<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2; alert(3)">'
UI_TIMEOUT_MS = 20_000  # a ceiling under load, not a pause: every expect returns as soon as it holds
expect.set_options(timeout=UI_TIMEOUT_MS)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config_text(root: Path, port: int) -> str:
    argv = [
        str(AGENT),
        "--model",
        "{model}",
        "--output-format",
        "stream-json",
        "--verbose",
        "--slow-lines",
        "8",
        "--slow-interval",
        "0.4",
        "--report-cost",
        "0.012",
        "--fail={fail}",
    ]
    return f"""
[params]
fail = ""

[providers.dry]
command_template = {json.dumps(argv)}
prompt_stdin = true
max_concurrency = 1
daily_budget_usd = 1.0
timeout = 60
idle_timeout = 60
env = {{ ADW_DRY_RUN_STATE = "{root / "fail.count"}" }}
[providers.dry.models.claude-sonnet-4-5]
tier = "standard"
capabilities = ["code"]

[routing]
enabled = true
default_provider = "dry"
default_model = "claude-sonnet-4-5"

[[routing.rules]]
name = "hang"
priority = 40
conditions = {{ labels = ["hang"] }}
provider = "dry"
model = "claude-sonnet-4-5"
params = {{ fail = "hang" }}

[[routing.rules]]
name = "slow"
priority = 30
conditions = {{ labels = ["slow"] }}
provider = "dry"
model = "claude-sonnet-4-5"
params = {{ fail = "slow" }}

[[routing.rules]]
name = "slow-low"
priority = 20
conditions = {{ labels = ["slow"], priority = "low" }}
provider = "dry"
model = "claude-sonnet-4-5"

[[routing.rules]]
name = "fails-once"
priority = 10
conditions = {{ labels = ["fails"] }}
provider = "dry"
model = "claude-sonnet-4-5"
params = {{ fail = "max_turns@1" }}

[coordinator]
name = "web-coord"
max_concurrency = 4
heartbeat_s = 0.5
lease_s = 15
dispatch_interval_s = 0.2
reap_interval_s = 1
kill_grace_s = 1
drain_grace_s = 2
state_dir = "{root / "state"}"

[store]
url = "sqlite:///{root / "state" / "adw.db"}"

[web]
listen = "127.0.0.1:{port}"
token_command = ["/bin/cat", "{root / "admin.token"}"]
readonly_token_command = ["/bin/cat", "{root / "readonly.token"}"]
"""


@dataclass
class Server:
    root: Path
    config: Path
    url: str
    store: Store
    coord: Coord

    def enqueue(self, title: str, labels: list[str] | None = None, body: str = "") -> Task:
        return enqueue_local(self.store, title, body or title, labels=labels or [])

    def wait_state(self, task_id: int, state: str, timeout_s: float = 30) -> None:
        def reached() -> bool:
            task = self.store.get_task(task_id)
            return task is not None and str(task.state) == state

        wait_for(reached, timeout_s, f"task {task_id} to be {state}")

    def start(self) -> None:
        self.coord = Coord(self.config)
        wait_for(lambda: healthy(self.url), 30, "the console's /healthz")


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=2) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("web")
    (root / "state").mkdir()
    (root / "admin.token").write_text(ADMIN + "\n")
    (root / "readonly.token").write_text(READONLY + "\n")
    port = free_port()
    config = root / "config.toml"
    config.write_text(config_text(root, port))
    store = Store.open(f"sqlite:///{root / 'state' / 'adw.db'}")
    srv = Server(root, config, f"http://127.0.0.1:{port}", store, Coord(config))
    wait_for(lambda: healthy(srv.url), 30, "the console's /healthz")
    try:
        yield srv
    finally:
        srv.coord.signal(signal.SIGTERM)
        try:
            srv.coord.wait(30)
        finally:
            srv.coord.cleanup()
            store.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium = ensure_chromium()
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@dataclass
class Tab:
    page: Any
    dialogs: list[str]
    errors: list[str]


def new_tab(browser: Any, server: Server) -> Tab:
    context = browser.new_context(base_url=server.url)
    context.set_default_timeout(UI_TIMEOUT_MS)
    page = context.new_page()
    tab = Tab(page, [], [])

    def on_dialog(dialog: Any) -> None:
        tab.dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.on("pageerror", lambda exc: tab.errors.append(str(exc)))
    return tab


def login(tab: Tab, token: str = ADMIN, name: str = "Ada") -> None:
    page = tab.page
    page.goto("/")
    page.fill("input[name=name]", name)
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")
    expect(page.locator("header .who")).to_contain_text(name[:MAX_USER_CHARS])  # longer names are cut


def shot(tab: Tab, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    tab.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def mark_no_reload(tab: Tab) -> None:
    tab.page.evaluate("window.__noReload = 'still here'")


def not_reloaded(tab: Tab) -> bool:
    return bool(tab.page.evaluate("window.__noReload === 'still here'"))


# ---------------------------------------------------------------- tests


def test_auth_cases(browser: Any, server: Server) -> None:
    tab = new_tab(browser, server)
    page = tab.page
    page.goto("/tasks")
    expect(page).to_have_url(f"{server.url}/login?next=/tasks")
    shot(tab, "login")
    page.fill("input[name=token]", "not-the-token")
    page.click("button[type=submit]")
    expect(page.locator("#login-error")).to_have_text("That token is not valid.")

    page.fill("input[name=name]", "Rita")
    page.fill("input[name=token]", READONLY)
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{server.url}/tasks")
    expect(page.locator("header .who")).to_contain_text("Rita (readonly, read-only)")
    cookie = next(c for c in page.context.cookies() if c["name"] == "adw_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == ""
    task = server.enqueue("read-only cannot retry")
    server.wait_state(task.id, "succeeded")
    page.goto(f"/tasks/{task.id}")
    expect(page.locator("#task-state")).to_have_text("succeeded")
    assert page.locator("#retry").count() == 0
    status = page.evaluate(f"fetch('/tasks/{task.id}/retry', {{method: 'POST'}}).then(r => r.status)")
    assert status == 403
    anonymous = page.context.browser.new_context()
    try:
        r = anonymous.request.get(f"{server.url}/api/v1/status")
        assert r.status == 401
        r = anonymous.request.get(f"{server.url}/api/v1/status", headers={"Authorization": f"Bearer {READONLY}"})
        assert r.status == 200 and "queue" in r.json()
        assert anonymous.request.get(f"{server.url}/healthz").status == 200
    finally:
        anonymous.close()
    page.context.close()


def test_watch_a_task_go_live_from_queued_to_succeeded_and_cancel_a_running_one(browser: Any, server: Server) -> None:
    blocker = server.enqueue("hangs until cancelled", ["hang"])
    server.wait_state(blocker.id, "running")
    watched = server.enqueue("watch me run", ["slow"])  # the provider is busy: it waits, queued
    a, b = new_tab(browser, server), new_tab(browser, server)
    login(a)
    a.page.goto(f"/tasks/{watched.id}")
    expect(a.page.locator("#task-state")).to_have_text("queued")
    mark_no_reload(a)

    login(b)
    b.page.goto(f"/tasks/{blocker.id}")
    expect(b.page.locator("#task-state")).to_have_text("running")
    shot(b, "task-running")
    b.page.click("#cancel")
    expect(b.page.locator("#task-state")).to_have_text("cancelled")
    expect(b.page.locator("#events")).to_contain_text("cancelled from the web console by Ada")

    state = a.page.locator("#task-state")
    expect(state).to_have_text("running")
    lines = a.page.locator("#transcript-lines")
    expect(lines).to_contain_text("[2/8]")  # the transcript, followed while the attempt runs
    assert str(server.store.get_task(watched.id).state) == "running"  # type: ignore[union-attr]
    expect(state).to_have_text("succeeded")
    expect(lines).to_contain_text("[8/8]")
    expect(a.page.locator("#attempts .outcome").first).to_have_text("success")
    assert not_reloaded(a)  # all of it arrived over the event stream
    shot(a, "task")
    a.page.context.close()
    b.page.context.close()


def test_retry_a_failed_task(browser: Any, server: Server) -> None:
    failing = server.enqueue("fails the first time", ["fails"])
    server.wait_state(failing.id, "failed")
    tab = new_tab(browser, server)
    login(tab, name="Grace")
    page = tab.page
    page.goto(f"/tasks/{failing.id}")
    expect(page.locator("#task-state")).to_have_text("failed")
    page.click("#retry")
    expect(page.locator("#task-state")).to_have_text("succeeded")
    expect(page.locator("#events")).to_contain_text("requeued from the web console by Grace")
    expect(page.locator("#attempts details.attempt")).to_have_count(2)
    event = next(e for e in server.store.events(task_id=failing.id) if e["kind"] == "console.retry")
    assert event["data"]["user"] == "Grace" and event["data"]["role"] == "admin"
    page.context.close()


def test_routing_playground_dead_rules_and_switch(browser: Any, server: Server) -> None:
    tab = new_tab(browser, server)
    login(tab)
    page = tab.page
    page.goto("/routing")
    expect(page.locator('tr[data-rule="slow-low"] .dead-flag')).to_contain_text('shadowed by "slow"')
    page.select_option("select[name=priority]", "low")
    page.fill("input[name=labels]", "slow, docs")
    page.fill("input[name=hour]", "3")
    page.click("#route-it")
    answer = page.locator("#playground-answer")
    expect(answer).to_contain_text("rule slow")
    expect(answer.locator("tr.matched")).to_contain_text("slow")
    expect(answer).to_contain_text("dry / claude-sonnet-4-5")
    shot(tab, "routing")
    page.fill("input[name=hour]", "25")
    page.evaluate("document.querySelector('input[name=hour]').removeAttribute('max')")
    page.click("#route-it")
    expect(page.locator("#playground-problem")).to_contain_text("hour must be between 0 and 23")

    page.click("#routing-toggle")
    expect(page.locator("#routing-enabled")).to_have_text("disabled")
    page.click("#routing-toggle")
    expect(page.locator("#routing-enabled")).to_have_text("enabled")
    kinds = [e["message"] for e in server.store.events(limit=20) if e["kind"] == "console.routing"]
    assert kinds[:2] == ["routing enabled from the web console by Ada", "routing disabled from the web console by Ada"]
    page.goto("/config")
    expect(page.locator("#config-valid")).to_be_visible()
    expect(page.locator("main")).to_contain_text("applied")
    shot(tab, "config")
    page.context.close()


def test_spend_chart_and_overview(browser: Any, server: Server) -> None:
    done = server.enqueue("something to pay for", ["paid"])
    server.wait_state(done.id, "succeeded")
    tab = new_tab(browser, server)
    login(tab)
    page = tab.page
    page.goto("/spend")
    chart = page.locator("#chart-daily-provider svg")
    expect(chart.locator("rect title").first).to_contain_text("dry: $0.")
    expect(chart.locator(".budget-label")).to_have_text("cap dry $1.00")
    page.click("#spend-provider details summary >> nth=0")
    expect(page.locator("#spend-provider table.numbers").first).to_contain_text("dry")
    expect(page.locator("#chart-daily-label svg")).to_contain_text("paid")
    shot(tab, "spend")
    page.click("nav >> text=Stats")
    expect(page.locator("#stats-table")).to_contain_text("dry:claude-sonnet-4-5")
    page.select_option("select[name=by]", "label")
    page.click("#stats-form button")
    expect(page.locator("#stats-table thead")).to_contain_text("label")
    expect(page.locator("#stats-table")).to_contain_text("paid")
    shot(tab, "stats")
    page.goto("/")
    expect(page.locator('tr[data-provider="dry"]')).to_contain_text("closed")
    expect(page.locator("#coordinators")).to_contain_text("web-coord")
    shot(tab, "overview")
    page.goto("/tasks?label=paid")
    expect(page.locator("table.tasks tbody tr")).to_have_count(1)
    expect(page.locator("table.tasks tbody tr").first).to_contain_text("something to pay for")
    shot(tab, "tasks")
    page.context.close()


def test_agent_output_and_issue_text_run_nothing(browser: Any, server: Server) -> None:
    hostile = server.enqueue(XSS, [XSS], body=f"{XSS}\nmore")
    server.wait_state(hostile.id, "succeeded")
    tab = new_tab(browser, server)
    login(tab, name=XSS)
    page = tab.page
    for path in ["/", "/tasks", f"/tasks/{hostile.id}", "/spend", f"/tasks?text={XSS[:10]}"]:
        page.goto(path)
        assert page.evaluate("typeof window.__xss") == "undefined", path
    page.goto(f"/tasks/{hostile.id}")
    expect(page.locator("#task-title")).to_have_text(XSS)
    expect(page.locator("#transcript-lines")).to_contain_text("<script>window.__xss = 1</script>")
    assert page.locator("main img").count() == 0
    assert page.evaluate("typeof window.__xss") == "undefined"
    assert tab.dialogs == [] and tab.errors == []
    shot(tab, "xss")
    page.context.close()


def test_the_live_stream_survives_a_coordinator_restart(browser: Any, server: Server) -> None:
    tab = new_tab(browser, server)
    login(tab)
    page = tab.page
    page.goto("/")
    total = page.locator('[data-state-total="succeeded"]')
    before = int(total.inner_text())
    mark_no_reload(tab)
    server.coord.signal(signal.SIGTERM)
    assert server.coord.wait(30) == 0
    expect(page.locator("#live-state")).to_have_class("live-state off")
    server.start()
    task = server.enqueue("after the restart")
    server.wait_state(task.id, "succeeded")
    expect(total).to_have_text(str(before + 1))
    expect(page.locator("#live-state")).to_have_class("live-state on")
    assert not_reloaded(tab)
    page.context.close()
