"""The console over the golden views' scene (a real SQLite store with every kind of task,
attempt and event, and the demo's config), in process through Starlette's TestClient."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from adw_modules.config.schema import Config, load_config
from adw_modules.queue.store import Store
from adws.web.app import Console, create_app
from adws.web.server import make_console
from tests.adws import scene

ADMIN_TOKEN = "adm-7f3e9c1b5a2d4e6f"
READONLY_TOKEN = "ro-1a2b3c4d5e6f7a8b"
ENVIRON = {"ADW_WEB_TOKEN": ADMIN_TOKEN, "ADW_WEB_RO": READONLY_TOKEN, "PATH": "/usr/bin:/bin"}
WEB_SECTION = '\n[web]\ntoken_env = "ADW_WEB_TOKEN"\nreadonly_token_env = "ADW_WEB_RO"\n'


@dataclass
class Site:
    config: Config
    store: Store
    console: Console
    client: TestClient

    def login(self, token: str = ADMIN_TOKEN, name: str = "Ada") -> TestClient:
        return log_in(self.client, token, name)

    def csrf(self, path: str) -> str:
        """The CSRF token a page rendered for this session."""
        import re

        found = re.search(r'name="csrf" value="([^"]+)"', self.client.get(path).text)
        assert found, f"no CSRF field on {path}"
        return found[1]


def login_csrf(client: TestClient) -> str:
    """The login form's CSRF token (its nonce cookie is now in the client's jar)."""
    import re

    found = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text)
    assert found, "no CSRF field on the login form"
    return found[1]


def log_in(client: TestClient, token: str = ADMIN_TOKEN, name: str = "Ada", target: str = "/") -> TestClient:
    data = {"token": token, "name": name, "next": target, "csrf": login_csrf(client)}
    r = client.post("/login", data=data, follow_redirects=False)
    assert r.status_code == 303, r.text
    return client


def bearer(token: str = ADMIN_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def scene_config(tmp_path: Path, web: str = WEB_SECTION) -> tuple[Config, Store]:
    config, store = scene.build(tmp_path)
    with config.path.open("a") as f:
        f.write(web)
    return load_config(config.path), store


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    config, store = scene_config(tmp_path)
    console = make_console(config, store, ENVIRON, in_coordinator=True)
    try:
        with TestClient(create_app(console), base_url="http://127.0.0.1") as client:
            yield Site(config, store, console, client)
    finally:
        console.watcher.stop()
        store.close()
