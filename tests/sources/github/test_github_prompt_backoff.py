"""Building a GitHub task's prompt honours GitHub's backoff: ``NotReady`` until when GitHub said,
and no request at all while the backoff lasts (counted at the fake GitHub)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pytest

from adw_modules.config.github import GitHubConfig
from adw_modules.outcomes import NotReady
from adw_modules.queue.store import Store
from adw_modules.queue.tasks import Task, TaskState
from adw_modules.sources.github.client import GitHubClient
from adw_modules.sources.github.source import GitHubSource
from tests.fakes.github_api import FAKE_TOKEN, FakeGitHub
from tests.sources.github.conftest import REPO, Rig

CFG = GitHubConfig(repositories=(REPO,), include_comments=True)


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now


def queued_task(fake: FakeGitHub, tmp_path: Path, clock: Clock) -> tuple[GitHubSource, Task]:
    n = fake.add_issue(REPO, "Fix the login", user="someone", body="please fix")
    fake.label_issue(REPO, n, "adw", actor="maintainer")
    store = Store.open(f"sqlite:///{tmp_path / 'adw.db'}")
    source = GitHubSource(CFG, store, GitHubClient(fake.base_url, FAKE_TOKEN, clock=clock, pace_s=(0, 0)), clock=clock)
    assert source.poll()
    (task,) = store.tasks_by_source("github")
    return source, task


def test_an_exhausted_rate_limit_makes_the_prompt_wait_for_the_reset(fake: FakeGitHub, tmp_path: Path) -> None:
    clock = Clock()
    source, task = queued_task(fake, tmp_path, clock)
    fake.exhaust_rate_limit()
    reset = dt.datetime.fromtimestamp(fake.rate_limit_state()["reset"], dt.UTC)
    with pytest.raises(NotReady) as first:
        source.prompt(task)
    assert first.value.until == reset and "rate limit exhausted" in str(first.value)
    fake.clear_log()
    for _ in range(20):  # ten dispatch passes' worth of retries: GitHub is not asked again
        with pytest.raises(NotReady) as again:
            source.prompt(task)
        assert again.value.until == reset
    assert fake.requests == []
    assert not source.poll() and not source.sync() and fake.requests == []  # the backoff is the client's

    fake.advance_clock(3601)
    clock.now = reset + dt.timedelta(seconds=1)
    assert "Fix the login" in source.prompt(task)
    source.store.close()


def test_a_secondary_limit_during_the_prompt_waits_for_retry_after(fake: FakeGitHub, tmp_path: Path) -> None:
    clock = Clock()
    source, task = queued_task(fake, tmp_path, clock)
    fake.inject_secondary_rate_limit(times=1, retry_after=90, path="/comments")
    with pytest.raises(NotReady) as exc:
        source.prompt(task)
    assert exc.value.until == clock.now + dt.timedelta(seconds=90) and "secondary rate limit" in str(exc.value)
    fake.clear_log()
    with pytest.raises(NotReady):
        source.prompt(task)
    assert fake.requests == []
    clock.now += dt.timedelta(seconds=91)
    assert "Fix the login" in source.prompt(task)
    source.store.close()


def test_an_outage_backoff_from_polling_holds_the_prompt_too(fake: FakeGitHub, tmp_path: Path) -> None:
    clock = Clock()
    source, task = queued_task(fake, tmp_path, clock)
    fake.add_comment(REPO, 1, "more detail", user="someone")
    fake.inject_server_error(status=503, times=1)
    assert not source.poll()
    assert source.backoff_until is not None
    fake.clear_log()
    with pytest.raises(NotReady) as exc:
        source.prompt(task)
    assert exc.value.until == source.backoff_until and "503" in str(exc.value)
    assert fake.requests == []
    source.store.close()


def test_dispatch_passes_during_a_rate_limit_ask_github_once(rig_factory: Callable[..., Rig]) -> None:
    rig = rig_factory(github="include_comments = true\n")
    n = rig.issue()
    assert rig.source.poll()
    rig.fake.exhaust_rate_limit()
    rig.fake.clear_log()
    for _ in range(10):  # ten 2 s dispatch passes
        assert rig.coord.dispatch() == 0
    assert len(rig.fake.requests) == 1, [(r.method, r.path, r.status) for r in rig.fake.requests]
    task = rig.task(n)
    assert task.state is not TaskState.RUNNING and rig.runs() == 0
    assert "rate limit" in (task.wait_reason or task.last_error or ""), task
