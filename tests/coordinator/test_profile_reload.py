"""A real ``adw run`` switches credential profile on SIGHUP: a provider whose key the first
profile cannot find becomes usable once ``default_profile`` names one that can."""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Callable

import pytest

from adw_modules.queue.store import Store
from adw_modules.queue.tasks import TaskState
from adw_modules.sources.local import enqueue_local
from tests.coordinator.harness import Coord, Setup, wait_for

PERSONAL_KEY = "sk-personal-profile-0123456789"


def test_sighup_switches_the_profile_of_a_running_service(
    sqlite_setup: Setup, coords: list[Coord], open_store: Callable[[str], Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ADW_PROFILE", raising=False)
    monkeypatch.delenv("ADW_TEST_WORK_KEY", raising=False)
    provider = sqlite_setup.provider_toml().replace(
        "timeout = 600\n", 'timeout = 600\nrequires_api_key = true\napi_key_env = "ADW_TEST_BASE_KEY"\n', 1
    )
    command = json.dumps([sys.executable, "-c", f"print('{PERSONAL_KEY}')"])
    profiles = (
        '\n[profiles]\ndefault_profile = "work"\n'
        '[profiles.work.providers.w]\napi_key_env = "ADW_TEST_WORK_KEY"\n'
        f"[profiles.personal.providers.w]\napi_key_command = {command}\n"
    )
    cfg = sqlite_setup.config("profiles", providers=provider)
    cfg.write_text(cfg.read_text() + profiles)
    store = open_store(sqlite_setup.store_url)
    c = Coord(cfg)
    coords.append(c)
    c.wait_event("service.started")

    task = enqueue_local(store, "needs the key")
    wait_for(lambda: (t := store.get_task(task.id)) and t.wait_reason, 20, "the task to wait for a usable provider")
    waiting = store.get_task(task.id)
    assert (
        waiting is not None
        and waiting.state is not TaskState.SUCCEEDED
        and "ADW_TEST_WORK_KEY" in str(waiting.wait_reason)
    )

    cfg.write_text(cfg.read_text().replace('default_profile = "work"', 'default_profile = "personal"'))
    c.signal(signal.SIGHUP)
    (reloaded,) = c.wait_event("config.reloaded")
    assert "profile work -> personal" in reloaded["changes"]
    # The waiting task is tried again at once (not after its 60 s recheck) and runs.
    (woken,) = c.wait_event("tasks.woken")
    assert woken["tasks"] == [task.id]
    wait_for(lambda: (t := store.get_task(task.id)) and t.state is TaskState.SUCCEEDED, 20, "the waiting task to run")
    second = enqueue_local(store, "with the personal key")
    wait_for(lambda: (t := store.get_task(second.id)) and t.state is TaskState.SUCCEEDED, 20, "the task to run")
    assert [a.provider for a in store.attempts_for(second.id)] == ["w"]
    c.signal(signal.SIGTERM)
    assert c.wait(10) == 0
    assert PERSONAL_KEY not in c.log_path.read_text()
