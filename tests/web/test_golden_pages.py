"""The console's pages as served, against golden HTML files (the scene's store, times fixed).

Regenerate after an intended change with ``ADW_UPDATE_GOLDEN=1 pytest tests/web`` and read
the diff before committing it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from adws.web.app import create_app
from adws.web.server import make_console
from tests.adws import scene
from tests.web.conftest import ENVIRON, READONLY_TOKEN, bearer, scene_config

GOLDEN = Path(__file__).with_name("golden")
PAGES = {
    "overview": "/",
    "tasks": "/tasks",
    "task_1": "/tasks/1",
    "task_5": "/tasks/5",
    "spend": "/spend",
    "stats": "/stats",
    "stats_by_label": "/stats?by=label&days=7",
    "routing_playground": "/routing?try=1&priority=low&labels=docs&hour=3",
    "config": "/config",
}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    config, store = scene_config(tmp_path)
    console = make_console(config, store, ENVIRON, in_coordinator=True, clock=lambda: scene.NOW)
    try:
        with TestClient(create_app(console), base_url="http://127.0.0.1", headers=bearer(READONLY_TOKEN)) as c:
            yield c
    finally:
        console.watcher.stop()
        store.close()


@pytest.mark.parametrize("name", list(PAGES))
def test_page(client: TestClient, tmp_path: Path, name: str) -> None:
    r = client.get(PAGES[name])
    assert r.status_code == 200
    text = r.text.replace(str(tmp_path), "<tmp>")
    text = re.sub(r"<code([^>]*)>[0-9a-f]{16}</code>", r"<code\1><fingerprint></code>", text)  # hashes the tmp path
    path = GOLDEN / f"{name}.html"
    if os.environ.get("ADW_UPDATE_GOLDEN"):
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"no golden file {path}: run with ADW_UPDATE_GOLDEN=1 and read it"
    assert text == path.read_text(encoding="utf-8")
