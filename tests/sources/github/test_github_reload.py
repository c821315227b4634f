"""A reload that adds, changes or removes ``[github]`` reschedules the service's GitHub jobs and
rebuilds the source and its client (GitHub's backoff carried over)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from adw_modules.config.schema import load_config
from adws.service import Service
from tests.fakes.github_api import FAKE_TOKEN, FakeGitHub
from tests.sources.github.conftest import REPO

BASE = """
[providers.a]
command_template = ["/bin/true"]
[routing]
default_provider = "a"
default_model = "m"
[coordinator]
state_dir = "state"
"""


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    path = tmp_path / "config.toml"
    path.write_text(BASE)
    svc = Service(load_config(path), environ={"PATH": "/usr/bin:/bin", "GITHUB_TOKEN": FAKE_TOKEN})
    svc._schedule(dispatch=False)
    svc.scheduler.start(paused=True)  # jobs are scheduled and rescheduled, never run
    yield svc
    svc.scheduler.shutdown(wait=False)
    svc.store.close()


def github(fake: FakeGitHub, **settings: object) -> str:
    lines = [f'repositories = ["{REPO}"]', f'base_url = "{fake.base_url}"']
    lines += [f"{k} = {v}" for k, v in settings.items()]
    return "\n[github]\n" + "\n".join(lines) + "\n"


def interval(service: Service, job_id: str) -> dt.timedelta | None:
    job = service.scheduler.get_job(job_id)
    return None if job is None else job.trigger.interval


def test_github_added_changed_and_removed_by_reloads(service: Service, fake: FakeGitHub) -> None:
    path = service.config.path
    assert service.github is None and interval(service, "github_poll") is None

    path.write_text(BASE + github(fake, poll_interval_s=30))
    assert service.reload()
    first = service.github
    assert first is not None and first.cfg.poll_interval_s == 30
    assert interval(service, "github_poll") == dt.timedelta(seconds=30)
    assert service.coordinator.prompt_renderers["github"] == first.prompt

    # Rate-limited, then a reload: a new source and client, and GitHub's backoff still holds.
    fake.exhaust_rate_limit()
    assert not first.poll() and first.client.backoff_in_force() is not None
    path.write_text(BASE + github(fake, poll_interval_s=5, include_comments="true"))
    assert service.reload()
    second = service.github
    assert second is not None and second is not first and second.client is not first.client
    assert second.cfg.include_comments and second.backoff_until == first.backoff_until
    assert second.client.backoff_in_force() is not None
    assert interval(service, "github_poll") == dt.timedelta(seconds=5)
    fake.clear_log()
    assert not second.poll() and fake.requests == []  # still waiting for the reset
    assert service.coordinator.prompt_renderers["github"] == second.prompt

    path.write_text(BASE)
    assert service.reload()
    assert service.github is None
    assert interval(service, "github_poll") is None and interval(service, "github_sync") is None


def test_a_github_token_that_cannot_be_had_keeps_the_old_source(
    service: Service, fake: FakeGitHub, caplog: pytest.LogCaptureFixture
) -> None:
    path = service.config.path
    path.write_text(BASE + github(fake))
    assert service.reload()
    old = service.github
    path.write_text(BASE + github(fake, token_env='"NO_SUCH_TOKEN_VARIABLE"'))
    assert service.reload()
    assert service.github is old
    assert any("[github] not applied" in r.getMessage() for r in caplog.records)


def test_a_reload_says_truthfully_which_webhook_settings_apply_now(
    service: Service, fake: FakeGitHub, caplog: pytest.LogCaptureFixture
) -> None:
    """``poll_interval_s`` is rescheduled while the receiver runs; its address, path and secret
    reference are bound at start; a [github.webhook] added by a reload serves only after a
    restart, so until then the poll keeps the interval without webhooks."""
    from adw_modules.sources.github.webhook import WebhookReceiver

    path = service.config.path
    hook = '[github.webhook]\nlisten = "127.0.0.1:0"\npoll_interval_s = {}\nsecret_env = "{}"\n'
    path.write_text(BASE + github(fake, poll_interval_s=30) + hook.format(600, "ADW_WEBHOOK_SECRET"))
    with caplog.at_level("INFO", logger="adw.service"):
        assert service.reload()
    assert "github.webhook added (applies after a restart; polling keeps its interval until then)" in caplog.text
    assert interval(service, "github_poll") == dt.timedelta(seconds=30), "no receiver runs: polling stays fast"

    # As after a restart: the receiver runs, so the safety-net interval is in force.
    service.webhook = WebhookReceiver(("127.0.0.1", 0), "/github/webhook", lambda: "s", lambda d, e: True, print)
    try:
        path.write_text(BASE + github(fake, poll_interval_s=30) + hook.format(300, "ADW_OTHER_SECRET"))
        caplog.clear()
        with caplog.at_level("INFO", logger="adw.service"):
            assert service.reload()
        assert interval(service, "github_poll") == dt.timedelta(seconds=300)
        line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("config reloaded"))
        assert "github.webhook.poll_interval_s 600 -> 300;" in line + ";"
        assert "poll_interval_s 600 -> 300 (applies after a restart)" not in line
        assert "github.webhook.secret_env ADW_WEBHOOK_SECRET -> ADW_OTHER_SECRET (applies after a restart)" in line
    finally:
        service.webhook.httpd.server_close()
