"""Signals to a real ``adw run``: SIGTERM drains (a second one skips the grace), SIGHUP reloads config
(``[github]`` included: repositories, users, labels, intervals)."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from apscheduler.schedulers.base import STATE_STOPPED

from adw_modules.config.schema import load_config
from adw_modules.queue.store import Store
from adw_modules.queue.tasks import TaskState
from adw_modules.sources.local import enqueue_local
from adws.service import Service
from tests.coordinator.harness import Coord, Setup, process_gone, wait_for
from tests.fakes.github_api import FAKE_TOKEN, FakeGitHub


def _running_worker(setup: Setup, store: Store, task_id: int) -> int:
    """Wait until the task's worker runs and the store knows its pid; returns the pid."""

    def live() -> int | None:
        atts = [a for a in store.running_attempts() if a.task_id == task_id and a.pid is not None]
        return atts[0].pid if atts and setup.log.started()[task_id] else None

    return wait_for(live, 20, f"the worker of task {task_id} to start")


def _assert_requeued_after_shutdown(store: Store, task_id: int, worker: int) -> None:
    assert process_gone(worker), f"worker {worker} survived the shutdown"
    t = store.get_task(task_id)
    assert t is not None and t.state is TaskState.QUEUED and t.owner is None, t
    assert t.retry_count == 0  # a shutdown is not the task's failure
    (a,) = store.attempts_for(task_id)
    assert (a.state, a.outcome, a.error_kind) == ("finished", "cancelled", "cancelled"), a
    assert a.error_message is not None and "shut down" in a.error_message
    assert store.running_attempts() == []


def test_idle_coordinator_exits_promptly_on_sigterm(
    sqlite_setup: Setup, coords: list[Coord], open_store: Callable[[str], Store]
) -> None:
    store = open_store(sqlite_setup.store_url)
    c = Coord(sqlite_setup.config("idle", drain_grace_s=60))
    coords.append(c)
    c.wait_event("service.started")
    assert [(r["id"], r["pid"]) for r in store.coordinators()] == [(c.find("service.started")[0]["owner"], c.pid)]
    t0 = time.monotonic()
    c.signal(signal.SIGTERM)
    assert c.wait(10) == 0
    assert time.monotonic() - t0 < 10, "an idle coordinator must not wait out its 60 s grace"
    assert not c.find("service.draining")
    assert c.find("service.stopped")
    assert store.coordinators() == []  # it unregistered on the way out


def test_sigterm_lets_a_running_attempt_finish_within_the_grace(
    sqlite_setup: Setup, coords: list[Coord], open_store: Callable[[str], Store]
) -> None:
    sqlite_setup.mode = "sleep:3"  # still running when SIGTERM comes, however slow this machine is
    store = open_store(sqlite_setup.store_url)
    task = enqueue_local(store, "three seconds of work")
    c = Coord(sqlite_setup.config("drain", drain_grace_s=10))
    coords.append(c)
    worker = _running_worker(sqlite_setup, store, task.id)
    c.signal(signal.SIGTERM)
    assert c.wait(20) == 0, c.output()[-3000:]
    assert c.find("service.draining")
    assert process_gone(worker)
    assert sqlite_setup.log.done()[task.id] == 1
    t = store.get_task(task.id)
    assert t is not None and t.state is TaskState.SUCCEEDED, t
    (a,) = store.attempts_for(task.id)
    assert (a.outcome, a.pid) == ("success", worker)


def test_sigterm_past_the_grace_kills_the_worker_and_requeues(
    sqlite_setup: Setup, coords: list[Coord], open_store: Callable[[str], Store]
) -> None:
    sqlite_setup.mode = "hang"
    store = open_store(sqlite_setup.store_url)
    task = enqueue_local(store, "never finishes")
    c = Coord(sqlite_setup.config("drain", drain_grace_s=1, kill_grace_s=2))
    coords.append(c)
    worker = _running_worker(sqlite_setup, store, task.id)
    t0 = time.monotonic()
    c.signal(signal.SIGTERM)
    assert c.wait(20) == 0, c.output()[-3000:]
    assert time.monotonic() - t0 >= 1  # it did wait out the grace first
    _assert_requeued_after_shutdown(store, task.id, worker)
    assert sqlite_setup.log.done()[task.id] == 0


def test_second_sigterm_skips_the_grace(
    sqlite_setup: Setup, coords: list[Coord], open_store: Callable[[str], Store]
) -> None:
    sqlite_setup.mode = "hang"
    store = open_store(sqlite_setup.store_url)
    task = enqueue_local(store, "never finishes")
    c = Coord(sqlite_setup.config("drain", drain_grace_s=60, kill_grace_s=2))
    coords.append(c)
    worker = _running_worker(sqlite_setup, store, task.id)
    t0 = time.monotonic()
    c.signal(signal.SIGTERM)
    c.wait_event("service.draining")
    assert c.proc.poll() is None and not process_gone(worker), "the first SIGTERM alone must keep draining"
    c.signal(signal.SIGTERM)
    assert c.wait(20) == 0, c.output()[-3000:]
    assert time.monotonic() - t0 < 20, "the second signal should have cut the 60 s grace short"
    _assert_requeued_after_shutdown(store, task.id, worker)


def test_sighup_rejects_a_bad_config_and_applies_a_good_one(
    sqlite_setup: Setup, coords: list[Coord], open_store: Callable[[str], Store]
) -> None:
    store = open_store(sqlite_setup.store_url)
    cfg = sqlite_setup.config("hup")
    good = cfg.read_text()
    c = Coord(cfg)
    coords.append(c)
    c.wait_event("service.started")

    # A TOML syntax error, then a valid TOML file naming a provider that does not exist.
    cfg.write_text(good + "\n[coordinator\n")
    c.signal(signal.SIGHUP)
    (syntax,) = c.wait_event("config.rejected")
    assert syntax["level"] == "error" and str(cfg) in syntax["issue"] and "TOML syntax error" in syntax["issue"]
    cfg.write_text(good.replace('default_provider = "w"', 'default_provider = "nope"'))
    c.signal(signal.SIGHUP)
    rejected = c.wait_event("config.rejected", count=2)
    assert str(cfg) in rejected[1]["issue"] and '"nope"' in rejected[1]["issue"], rejected[1]
    assert not c.find("config.reloaded")

    # The old config is still in force: a task runs on provider w.
    first = enqueue_local(store, "after the bad edits")
    wait_for(lambda: (t := store.get_task(first.id)) and t.state is TaskState.SUCCEEDED, 20, "the first task")
    assert [a.provider for a in store.attempts_for(first.id)] == ["w"]

    # A good edit: a second provider becomes the default.  The log says what changed, and it applies.
    cfg.write_text(
        good.replace('default_provider = "w"', 'default_provider = "w2"').replace(
            "[routing]", sqlite_setup.provider_toml("w2") + "\n[routing]"
        )
    )
    c.signal(signal.SIGHUP)
    (reloaded,) = c.wait_event("config.reloaded")
    assert set(reloaded["changes"]) == {"provider w2 added", "routing defaults changed"}, reloaded
    assert "provider w2 added" in reloaded["msg"]
    second = enqueue_local(store, "after the good edit")
    wait_for(lambda: (t := store.get_task(second.id)) and t.state is TaskState.SUCCEEDED, 20, "the second task")
    assert [a.provider for a in store.attempts_for(second.id)] == ["w2"]

    c.signal(signal.SIGTERM)
    assert c.wait(10) == 0


def test_sighup_applies_github_repositories_users_labels_and_intervals(
    sqlite_setup: Setup, coords: list[Coord], open_store: Callable[[str], Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", FAKE_TOKEN)
    with FakeGitHub() as fake:
        for repo in ("acme/a", "acme/b"):
            fake.add_repo(repo)
            fake.set_permission(repo, "maintainer", "write")
        refused = fake.add_issue("acme/a", "From a friend", user="friend")
        fake.label_issue("acme/a", refused, "adw", actor="friend")  # no write access: refused at first
        unwatched = fake.add_issue("acme/b", "In the other repository", user="maintainer")
        fake.label_issue("acme/b", unwatched, "adw", actor="maintainer")
        store = open_store(sqlite_setup.store_url)
        cfg = sqlite_setup.config("hup-gh")
        before = cfg.read_text()
        github = f"""
[github]
repositories = ["acme/a"]
base_url = "{fake.base_url}"
poll_interval_s = 3600
sync_interval_s = 3600
read_spacing_s = 0
write_spacing_s = 0
"""
        cfg.write_text(before + github)
        c = Coord(cfg)
        coords.append(c)
        wait_for(lambda: any("adw:refused" in x.body for x in fake.comments("acme/a", refused)), 20, "the refusal")
        assert store.tasks_by_source("github") == []

        cfg.write_text(
            before
            + github.replace('["acme/a"]', '["acme/a", "acme/b"]')
            .replace("poll_interval_s = 3600", "poll_interval_s = 0.2")
            .replace("sync_interval_s = 3600", 'sync_interval_s = 0.2\nallowed_users = ["friend"]')
            + '[github.labels]\ndone = "agent:done"\n'
        )
        c.signal(signal.SIGHUP)
        (reloaded,) = c.wait_event("config.reloaded")
        assert set(reloaded["changes"]) == {
            "github.repositories +acme/b",
            "github.poll_interval_s 3600 -> 0.2",
            "github.sync_interval_s 3600 -> 0.2",
            "github.allowed_users +friend",
            "github.labels.done adw:done -> agent:done",
        }, reloaded
        assert "service settings changed" not in reloaded["msg"]

        def done(repo: str, n: int) -> bool:
            return "agent:done" in fake.issue_labels(repo, n)

        # The new repository is watched, the friend's issue is looked at again under the new list,
        # and finished tasks get the new lifecycle label.
        wait_for(lambda: done("acme/b", unwatched) and done("acme/a", refused), 30, "both issues to be done")
        # Polling goes on at the new interval (not just once after the reload).
        later = fake.add_issue("acme/b", "Posted after the reload", user="maintainer")
        fake.label_issue("acme/b", later, "adw", actor="maintainer")
        wait_for(lambda: done("acme/b", later), 30, "the issue labelled after the reload to be done")
        assert {t.external_id for t in store.tasks_by_source("github")} == {
            f"acme/a#{refused}",
            f"acme/b#{unwatched}",
            f"acme/b#{later}",
        }
        c.signal(signal.SIGTERM)
        assert c.wait(20) == 0, c.output()[-3000:]
        fake.assert_valid()


def test_sighup_names_the_settings_that_need_a_restart(
    sqlite_setup: Setup, coords: list[Coord], open_store: Callable[[str], Store]
) -> None:
    cfg = sqlite_setup.config("hup-restart")
    good = cfg.read_text()
    c = Coord(cfg)
    coords.append(c)
    c.wait_event("service.started")
    state_dir = str(sqlite_setup.root / "hup-restart" / "state")
    cfg.write_text(
        good.replace(f'state_dir = "{state_dir}"', f'state_dir = "{state_dir}-2"')
        .replace("max_concurrency = 4", "max_concurrency = 3")
        .replace(f"url = {json.dumps(sqlite_setup.store_url)}", f"url = {json.dumps(sqlite_setup.store_url + '2')}")
    )
    c.signal(signal.SIGHUP)
    (reloaded,) = c.wait_event("config.reloaded")
    assert set(reloaded["changes"]) == {
        f"coordinator.state_dir {state_dir} -> {state_dir}-2 (applies after a restart)",
        "coordinator.max_concurrency 4 -> 3",
        "store.url changed (applies after a restart)",
    }, reloaded
    assert sqlite_setup.store_url not in reloaded["msg"]  # a database URL is not shown
    c.signal(signal.SIGTERM)
    assert c.wait(10) == 0


def _held_by_another_thread(lock: Any) -> bool:
    if lock.acquire(blocking=False):
        lock.release()
        return False
    return True


def test_stopping_while_a_job_wakes_dispatch_does_not_deadlock(sqlite_setup: Setup) -> None:
    """A GitHub poll (or an attempt's end) that wakes dispatch just as the service stops: APScheduler's
    shutdown waits for running jobs while holding its job-store lock, which waking dispatch takes."""
    service = Service(load_config(sqlite_setup.config("deadlock")))
    entered, proceed, woke = threading.Event(), threading.Event(), threading.Event()

    def poll_like_job() -> None:
        entered.set()
        proceed.wait(20)
        service._wake_dispatch()  # what github_poll does after polling
        woke.set()

    runner = threading.Thread(target=service.run, name="service", daemon=True)
    runner.start()
    wait_for(lambda: service.scheduler.running, 20, "the scheduler to start")
    service.scheduler.add_job(poll_like_job, id="poll-like")
    assert entered.wait(20)
    service.request_stop()
    # Shutdown has begun and holds the job-store lock, waiting for the job above (APScheduler internals).
    wait_for(
        lambda: service.scheduler.state == STATE_STOPPED and _held_by_another_thread(service.scheduler._jobstores_lock),
        20,
        "the scheduler's shutdown to wait for the running job",
    )
    proceed.set()
    runner.join(20)
    assert not runner.is_alive(), "the service deadlocked stopping its scheduler"
    assert woke.is_set()
