"""``adw run``: the coordinator as a long-running service.

APScheduler drives the periodic duties (dispatch, heartbeat, reap, availability refresh);
the main thread only waits for signals and for the run's end condition.

- SIGTERM / SIGINT: stop claiming; running attempts get ``drain_grace_s`` to finish (leases
  keep being renewed meanwhile); then they are killed and their tasks go back to queued
  without counting a failure.  A second signal skips the wait.
- SIGHUP: reload config.toml.  A bad file is rejected with its errors logged and the old
  config kept; a good one is logged with what changed.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import threading
from collections.abc import Callable, Mapping
from types import FrameType
from typing import Literal

import sqlalchemy as sa
from alembic.util.exc import CommandError as AlembicError
from apscheduler.schedulers.background import BackgroundScheduler

from adw_modules.config.schema import Config, ConfigError, load_config
from adw_modules.coordinator import Coordinator, utcnow
from adw_modules.ops import retention
from adw_modules.ops.doctor import store_location_problem
from adw_modules.ops.logs import install_redaction
from adw_modules.ops.metrics_http import serve_metrics
from adw_modules.ops.secrets import SecretError, secrets_of
from adw_modules.queue.store import Store
from adw_modules.queue.tasks import TaskState
from adw_modules.sources.github.auth import github_token
from adw_modules.sources.github.client import GitHubClient
from adw_modules.sources.github.source import GitHubSource

log = logging.getLogger("adw.service")

Mode = Literal["forever", "once", "until_idle"]
REFRESH_S = 60.0


def config_changes(old: Config, new: Config) -> list[str]:
    """What a reload changed, in words: providers, rules and chains added, removed or changed."""
    out = []
    for what, a, b in (
        ("provider", dict(old.providers), dict(new.providers)),
        ("rule", {r.name: r for r in old.routing.rules}, {r.name: r for r in new.routing.rules}),
        ("chain", dict(old.routing.chains), dict(new.routing.chains)),
    ):
        out += [f"{what} {name} added" for name in b if name not in a]
        out += [f"{what} {name} removed" for name in a if name not in b]
        out += [f"{what} {name} changed" for name in a if name in b and a[name] != b[name]]
    if (old.routing.enabled, old.routing.default_provider, old.routing.default_model) != (
        new.routing.enabled,
        new.routing.default_provider,
        new.routing.default_model,
    ):
        out.append("routing defaults changed")
    if old.service != new.service:
        out.append("service settings changed (some apply only after a restart: store url, state_dir)")
    return out


class Service:
    def __init__(self, config: Config, *, environ: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.environ = dict(os.environ if environ is None else environ)
        self.store = open_store(config, self.environ)
        self.coordinator = Coordinator(config, self.store, environ=self.environ)
        install_redaction(self.coordinator.redact)
        self.wake = threading.Event()
        self.signals = 0
        self.reload_requested = False
        self.scheduler = BackgroundScheduler(timezone=dt.UTC)
        self.github: GitHubSource | None = None
        if config.github is not None:
            self.github = make_github_source(config, self.store, self.coordinator, self.environ)

    # -- signals (handlers only set flags; the main loop acts)
    @staticmethod
    def protect_environment() -> None:
        """Agents run as this user: make /proc/<our pid>/environ (our tokens and keys) unreadable
        to them (Linux PR_SET_DUMPABLE = 0; a no-op elsewhere)."""
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE
        except (OSError, AttributeError):
            pass

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._on_stop_signal)
        signal.signal(signal.SIGINT, self._on_stop_signal)
        signal.signal(signal.SIGHUP, self._on_hup)

    def _on_stop_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.signals += 1
        self.wake.set()

    def _on_hup(self, signum: int, _frame: FrameType | None) -> None:
        self.reload_requested = True
        self.wake.set()

    def request_stop(self) -> None:
        self.signals += 1
        self.wake.set()

    # -- reload
    def reload(self) -> bool:
        self.reload_requested = False
        try:
            new = load_config(self.config.path)
        except ConfigError as exc:
            for issue in exc.issues:
                log.error(f"reload rejected: {issue}", extra={"data": {"event": "config.rejected", "issue": issue}})
            return False
        changes = config_changes(self.config, new)
        self.config = new
        self.coordinator.apply_config(new)
        install_redaction(self.coordinator.redact)
        log.info(
            "config reloaded: " + ("; ".join(changes) or "no changes"),
            extra={"data": {"event": "config.reloaded", "changes": changes, "fingerprint": new.fingerprint}},
        )
        return True

    # -- the run
    def _wake_dispatch(self) -> None:
        self.wake.set()
        job = self.scheduler.get_job("dispatch")
        if job is not None:
            job.modify(next_run_time=dt.datetime.now(dt.UTC))

    def _schedule(self, dispatch: bool) -> None:
        svc = self.config.service.coordinator
        c = self.coordinator
        now = dt.datetime.now(dt.UTC)

        def every(job: Callable[[], object], seconds: float, name: str, at_once: bool = False) -> None:
            # One run at a time; a backlog of missed runs collapses into one.
            self.scheduler.add_job(
                job,
                "interval",
                seconds=seconds,
                id=name,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,
                **({"next_run_time": now} if at_once else {}),
            )

        c.on_change = self.wake.set
        if dispatch:
            every(c.dispatch, svc.dispatch_interval_s, "dispatch", at_once=True)
            c.on_change = self._wake_dispatch
        every(c.heartbeat, svc.heartbeat_s, "heartbeat")
        every(c.reap, svc.reap_interval_s, "reap", at_once=True)
        every(c.refresh, REFRESH_S, "refresh")
        every(self.prune, self.config.service.retention.interval_s, "retention")
        gh = self.config.github
        if self.github is not None and gh is not None:
            every(self.github_poll, gh.poll_interval_s, "github_poll", at_once=True)
            every(self.github_sync, gh.sync_interval_s, "github_sync", at_once=True)

    def prune(self) -> None:
        svc = self.config.service
        retention.prune(self.store, svc.retention, svc.coordinator.state_dir, self.coordinator.host, utcnow())

    def _github_leader(self) -> bool:
        """One coordinator polls and writes to GitHub; all of them dispatch."""
        gh = self.config.github
        assert gh is not None
        now = utcnow()
        hold = dt.timedelta(seconds=max(3 * gh.poll_interval_s, 3 * gh.sync_interval_s, 60))
        return self.store.acquire_leader("github", self.coordinator.owner, now + hold, now)

    def github_poll(self) -> None:
        if self.github is not None and self._github_leader():
            self.github.poll()
            self._wake_dispatch()

    def github_sync(self) -> None:
        if self.github is not None and self._github_leader():
            self.github.sync()

    def idle(self, idle_wait_s: float) -> bool:
        """Nothing queued or running, and no retry due within ``idle_wait_s``."""
        if self.coordinator.running():
            return False
        counts = self.store.counts_by_state_priority()
        if sum(counts.get(str(TaskState.QUEUED), {}).values()) or sum(counts.get(str(TaskState.RUNNING), {}).values()):
            return False
        horizon = utcnow() + dt.timedelta(seconds=idle_wait_s)
        waiting = self.store.list_tasks(TaskState.RETRY_WAIT, limit=10_000)
        return not any(t.not_before is None or t.not_before <= horizon for t in waiting)

    def run(self, mode: Mode = "forever", idle_wait_s: float = 30.0) -> int:
        metrics = None
        if (listen := self.config.service.metrics.listen) is not None:  # first: a taken port fails before any work
            metrics = serve_metrics(
                self.store,
                listen,
                providers=lambda: list(self.config.providers),
                github_quota=None if self.github is None else self.github.client.quota,
                scheduler_running=lambda: bool(self.scheduler.running),
            )
        c = self.coordinator
        c.startup()
        self._schedule(dispatch=mode != "once")
        self.scheduler.start()
        log.info(
            f"coordinator {c.owner} running ({mode})",
            extra={"data": {"event": "service.started", "owner": c.owner, "mode": mode}},
        )
        try:
            if mode == "once":
                c.dispatch()
            while self.signals == 0:
                if self.reload_requested:
                    self.reload()
                if mode == "once" and not c.running():
                    break
                if mode == "until_idle" and self.idle(idle_wait_s):
                    break
                self.wake.wait(timeout=0.5)
                self.wake.clear()
            self.drain()
        finally:
            self.scheduler.shutdown(wait=True)
            try:
                if self.github is not None:
                    self.github.sync()  # the issue shows how the drain left things
                    self.store.release_leader("github", c.owner)
                c.shutdown()
            finally:
                if metrics is not None:
                    metrics.stop()
                self.store.close()
        log.info("coordinator stopped", extra={"data": {"event": "service.stopped", "owner": c.owner}})
        return 0

    def drain(self) -> None:
        c = self.coordinator
        c.stop_claiming()
        grace = self.config.service.coordinator.drain_grace_s
        if c.running():
            log.info(
                f"draining {c.running()} running attempt(s), up to {grace:g} s",
                extra={"data": {"event": "service.draining", "running": c.running(), "grace_s": grace}},
            )
            deadline = utcnow() + dt.timedelta(seconds=grace)
            while c.running() and self.signals < 2 and utcnow() < deadline:
                self.wake.wait(timeout=0.2)
                self.wake.clear()
        if c.running():
            c.stop_all("shutdown")
            c.wait_idle(self.config.service.coordinator.kill_grace_s + 10)


def make_github_source(
    config: Config, store: Store, coordinator: Coordinator, environ: Mapping[str, str]
) -> GitHubSource:
    gh = config.github
    assert gh is not None
    try:
        token = github_token(gh, environ)
    except SecretError as exc:
        raise ConfigError([f"{config.path}: github: {exc}"]) from None
    redact = secrets_of(config, environ)
    redact.add(token)
    source = GitHubSource(
        gh,
        store,
        GitHubClient(gh.base_url, token, pace_s=(gh.read_spacing_s, gh.write_spacing_s)),
        redact=redact,
        max_attempts=config.service.coordinator.max_total_attempts,
    )
    coordinator.prompt_renderers["github"] = source.prompt
    return source


def open_store(config: Config, environ: Mapping[str, str] | None = None) -> Store:
    url = config.service.store_url(dict(os.environ if environ is None else environ))
    if not url:
        raise ConfigError([f"{config.path}: store: url_env {config.service.store.url_env} is not set"])
    problem = store_location_problem(url)
    if problem is not None:
        raise ConfigError([problem])
    try:
        return Store.open(url)
    except (OSError, sa.exc.SQLAlchemyError, AlembicError) as exc:  # what is left: the database said no
        shown = sa.make_url(url).render_as_string(hide_password=True)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError([f"store {shown}: cannot be opened: {first}"]) from None
