"""``adw run``: the coordinator as a long-running service.

A dispatch thread of its own runs a pass on every wake-up (an attempt ended here, work
announced on the store) and every ``dispatch_interval_s``; APScheduler drives the other
periodic duties (heartbeat, reap, availability refresh, retention, GitHub poll and sync);
the main thread only waits for signals and for the run's end condition.

- SIGTERM / SIGINT: stop claiming; running attempts get ``drain_grace_s`` to finish (leases
  keep being renewed meanwhile); then they are killed and their tasks go back to queued
  without counting a failure.  A second signal skips the wait.
- SIGHUP: reload config.toml.  A bad file is rejected with its errors logged and the old
  config kept; a good one is logged with what changed, setting by setting, and applied:
  providers and routing for attempts started from then on, job intervals (dispatch,
  heartbeat, reap, retention, GitHub poll and sync) rescheduled, ``[github]`` (repositories,
  labels, users, prompt, token, ...) by rebuilding the GitHub source and its client, so the
  next poll reads every issue afresh as after a restart (a backoff GitHub asked for still
  holds).  A setting that only a restart applies (``RESTART_ONLY``) is named in the log as such.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping
from types import FrameType
from typing import TYPE_CHECKING, Literal

from apscheduler.schedulers.background import BackgroundScheduler

from adw_modules.claiming import NO_TARGET_REASON
from adw_modules.config.github import GitHubConfig, WebhookConfig
from adw_modules.config.schema import Config, ConfigError, load_config
from adw_modules.coordinator import Coordinator, utcnow
from adw_modules.ops import retention
from adw_modules.ops.logs import install_redaction
from adw_modules.ops.secrets import SecretError
from adw_modules.queue.store import Store
from adws.stores import open_store

if TYPE_CHECKING:
    from adw_modules.sources.github.client import GitHubClient
    from adw_modules.sources.github.source import GitHubSource
    from adw_modules.sources.github.webhook import WebhookReceiver
    from adws.web.server import ConsoleServer

log = logging.getLogger("adw.service")

Mode = Literal["forever", "once", "until_idle"]
REFRESH_S = 60.0
MAIN_LOOP_BACKSTOP_S = 5.0
IDLE_CHECK_S = 0.2
DELIVERIES_KEPT = dt.timedelta(days=30)
# Service settings read once at start: a reload names them, a restart applies them.
RESTART_ONLY = ("store", "coordinator.state_dir", "coordinator.name", "metrics.listen")
# Values not shown in the log (long, or a command line).
GITHUB_UNSHOWN = ("prompt_template", "token_command", "private_key_command", "webhook")


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
    if old.profiles.active != new.profiles.active:
        out.append(f"profile {old.profiles.active or '(none)'} -> {new.profiles.active or '(none)'}")
    # The cache follows [coordinator] state_dir, which is reported (and applied) on its own.
    out += [c for c in _setting_changes("catalog.", old.catalog, new.catalog) if not c.startswith("catalog.state_dir")]
    out += service_changes(old, new)
    out += github_changes(old.github, new.github)
    return out


def _setting_changes(prefix: str, old: object, new: object, unshown: tuple[str, ...] = ()) -> list[str]:
    """One entry per dataclass field that differs: "prefix field old -> new"."""
    out = []
    for f in dataclasses.fields(old):  # type: ignore[arg-type]
        a, b = getattr(old, f.name), getattr(new, f.name)
        if a == b:
            continue
        if f.name in unshown or dataclasses.is_dataclass(a):
            out.append(f"{prefix}{f.name} changed")
        elif isinstance(a, Mapping) and isinstance(b, Mapping):
            keys = sorted({*a, *b} - {k for k in a if k in b and a[k] == b[k]}, key=str)
            unset = "(unset)"
            out += [f"{prefix}{f.name}.{k} {_shown(a.get(k, unset))} -> {_shown(b.get(k, unset))}" for k in keys]
        elif isinstance(a, tuple | frozenset) and isinstance(b, tuple | frozenset):
            added, removed = sorted(set(b) - set(a), key=str), sorted(set(a) - set(b), key=str)
            parts = [f"+{x}" for x in added] + [f"-{x}" for x in removed]
            out.append(f"{prefix}{f.name} " + (" ".join(parts) if parts else "reordered"))
        else:
            out.append(f"{prefix}{f.name} {_shown(a)} -> {_shown(b)}")
    return out


def _shown(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def service_changes(old: Config, new: Config) -> list[str]:
    """Each changed service setting by name; those only a restart applies say so."""
    out = []
    for section in ("coordinator", "store", "health", "metrics", "retention"):
        a, b = getattr(old.service, section), getattr(new.service, section)
        unshown = ("url", "url_env") if section == "store" else ()  # a database URL can hold a password
        for change in _setting_changes(f"{section}.", a, b, unshown):
            name = change.split(" ", 1)[0]
            restart = section in RESTART_ONLY or name in RESTART_ONLY
            out.append(change + (" (applies after a restart)" if restart else ""))
    return out


def github_changes(old: GitHubConfig | None, new: GitHubConfig | None) -> list[str]:
    if new is None:
        return [] if old is None else ["github removed"]
    if old is None:
        return ["github added", *webhook_changes(None, new.webhook)]
    changes = [c for c in _setting_changes("github.", old, new, GITHUB_UNSHOWN) if not c.startswith("github.webhook ")]
    return changes + webhook_changes(old.webhook, new.webhook)


def webhook_changes(old: WebhookConfig | None, new: WebhookConfig | None) -> list[str]:
    """The receiver is bound at start (its address, path and secret reference: a restart applies
    them); its ``poll_interval_s`` is rescheduled at once while a receiver runs."""
    if old == new:
        return []
    if old is None or new is None:
        what = "added" if old is None else "removed"
        return [f"github.webhook {what} (applies after a restart; polling keeps its interval until then)"]
    out = []
    for change in _setting_changes("github.webhook.", old, new, ("secret_command",)):
        name = change.split(" ", 1)[0]
        out.append(change if name == "github.webhook.poll_interval_s" else change + " (applies after a restart)")
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
        self._dispatch_wake = threading.Event()
        self._dispatch_stop = threading.Event()
        self._dispatcher: threading.Thread | None = None
        self._poll_soon = False  # a reload rebuilt the GitHub source: poll at once
        self.last_reload: dict[str, object] | None = None  # the web console's Config page shows it
        self.webhook: WebhookReceiver | None = None
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
            # The same profile choice as at start: an explicit --profile stays; otherwise
            # $ADW_PROFILE, then the file's (maybe edited) default_profile, are read again.
            new = load_config(self.config.path, profile=self.config.profiles.requested, environ=self.environ)
        except ConfigError as exc:
            for issue in exc.issues:
                log.error(f"reload rejected: {issue}", extra={"data": {"event": "config.rejected", "issue": issue}})
            self.last_reload = {"at": utcnow().isoformat(), "ok": False, "lines": exc.issues}
            return False
        changes = config_changes(self.config, new)
        old, self.config = self.config, new
        self.coordinator.apply_config(new)
        install_redaction(self.coordinator.redact)
        self._reload_github(old, new)
        if self.github is not None:  # apply_config made new workspaces: they push as the source does
            share_push_token(new, self.coordinator, self.github.client)
        if self.scheduler.running:
            self._reschedule()
        self.last_reload = {"at": utcnow().isoformat(), "ok": True, "lines": changes or ["no changes"]}
        self._wake_unroutable()
        log.info(
            "config reloaded: " + ("; ".join(changes) or "no changes"),
            extra={"data": {"event": "config.reloaded", "changes": changes, "fingerprint": new.fingerprint}},
        )
        return True

    def _wake_unroutable(self) -> None:
        """Tasks that waited for a usable target are tried again now: the reload may have fixed
        what they lacked (a credential, a provider); one still unroutable waits again."""
        try:
            woken = self.store.wake_waiting(NO_TARGET_REASON, utcnow())
        except Exception:  # they still come back after their recheck delay
            log.exception("reload: waking the tasks waiting for a usable target failed")
            return
        if woken:
            log.info(
                f"reload: {len(woken)} task(s) waiting for a usable target tried again",
                extra={"data": {"event": "tasks.woken", "tasks": woken}},
            )
            self._wake_dispatch()

    def _reload_github(self, old: Config, new: Config) -> None:
        """Rebuild the GitHub source for a changed ``[github]`` (or coordinator attempt bound)."""
        before, after = old.github, new.github
        attempts_changed = old.service.coordinator.max_total_attempts != new.service.coordinator.max_total_attempts
        if before == after and not (after is not None and attempts_changed):
            return
        previous = self.github
        if after is None:
            self.github = None  # its jobs go in _reschedule; queued tasks keep the old prompt renderer
            if previous is not None:
                self.store.release_leader("github", self.coordinator.owner)
            return
        try:  # a new client too: a fresh token, and every issue read afresh, as after a restart
            source = make_github_source(new, self.store, self.coordinator, self.environ)
        except ConfigError as exc:
            for issue in exc.issues:
                log.error(
                    f"reload: [github] not applied, the old settings stay: {issue}",
                    extra={"data": {"event": "config.rejected", "issue": issue}},
                )
            return
        if previous is not None and before is not None and before.base_url == after.base_url:
            # The same GitHub: what it asked us (wait until ...) still holds.
            source.client.inherit_backoff(previous.client)
            source.backoff_until, source.backoff_reason = previous.backoff_until, previous.backoff_reason
        self.github = source
        self._poll_soon = True

    def _intervals(self) -> dict[str, float]:
        """The interval of each periodic job this config asks for, by job id."""
        svc = self.config.service
        out = {
            "heartbeat": svc.coordinator.heartbeat_s,
            "reap": svc.coordinator.reap_interval_s,
            "refresh": REFRESH_S,
            "retention": svc.retention.interval_s,
        }
        if self.config.catalog.refresh:
            out["catalog"] = self.config.catalog.refresh_interval_h * 3600
        if self.github is not None:  # its settings: a [github] that could not be applied is not in force
            gh = self.github.cfg
            # With webhooks the poll is the safety net (a lost delivery), at its own longer interval;
            # only while a receiver runs (a [github.webhook] added by a reload serves after a restart).
            hooked = gh.webhook is not None and self.webhook is not None
            out["github_poll"] = gh.webhook.poll_interval_s if hooked and gh.webhook else gh.poll_interval_s
            out["github_sync"] = gh.sync_interval_s
        return out

    def _reschedule(self) -> None:
        """Bring the scheduled jobs in line with the config: new intervals, GitHub jobs added or removed."""
        wanted = self._intervals()
        for job_id in ("github_poll", "github_sync", "catalog"):
            if job_id not in wanted and self.scheduler.get_job(job_id) is not None:
                self.scheduler.remove_job(job_id)
        for job_id, seconds in wanted.items():
            job = self.scheduler.get_job(job_id)
            if job is None:
                self._add_job(job_id, seconds, at_once=True)
            elif job.trigger.interval != dt.timedelta(seconds=seconds):
                self.scheduler.reschedule_job(job_id, trigger="interval", seconds=seconds)
        if self._poll_soon and (job := self.scheduler.get_job("github_poll")) is not None:
            job.modify(next_run_time=dt.datetime.now(dt.UTC))
        self._poll_soon = False

    # -- the run
    def _wake_dispatch(self) -> None:
        self.wake.set()
        self._dispatch_wake.set()

    def _dispatch_loop(self) -> None:
        """The dispatch thread: a pass on every wake-up, and every ``dispatch_interval_s`` as the
        safety net (retries coming due, a wake-up lost).  Its own thread, not a scheduler job:
        an idle tick then wakes one thread, not the scheduler's and a pool worker's."""
        while not self._dispatch_stop.is_set():
            self._dispatch_wake.wait(timeout=self.config.service.coordinator.dispatch_interval_s)
            self._dispatch_wake.clear()
            if self._dispatch_stop.is_set():
                return
            self._dispatch_here()

    def _dispatch_now(self) -> None:
        """An attempt ended here: tell the main loop, and fill the slot from the ending watcher's
        thread at once (no hop through the dispatch thread)."""
        self.wake.set()
        self._dispatch_here()

    def _dispatch_here(self) -> None:
        """A dispatch pass in this thread (``dispatch`` runs one pass at a time whoever calls it)."""
        try:
            self.coordinator.dispatch()
        except Exception:  # the next tick tries again
            log.exception("dispatch failed")

    def _on_announced(self) -> None:
        """Work was announced on the store (an enqueue, a requeue, capacity freed elsewhere)."""
        self.coordinator.view.invalidate()
        self._wake_dispatch()

    def stop_scheduler(self) -> None:
        """Stop the periodic jobs and the dispatch thread, waiting for those running to finish."""
        self._dispatch_stop.set()
        self._dispatch_wake.set()
        if self._dispatcher is not None:
            self._dispatcher.join()
        self.scheduler.shutdown(wait=True)

    def _jobs(self) -> dict[str, Callable[[], object]]:
        c = self.coordinator
        return {
            "heartbeat": c.heartbeat,
            "reap": c.reap,
            "refresh": c.refresh,
            "retention": self.prune,
            "github_poll": self.github_poll,
            "github_sync": self.github_sync,
            "catalog": self.refresh_catalog,
        }

    def _add_job(self, job_id: str, seconds: float, at_once: bool) -> None:
        # One run at a time; a backlog of missed runs collapses into one.
        self.scheduler.add_job(
            self._jobs()[job_id],
            "interval",
            seconds=seconds,
            id=job_id,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
            **({"next_run_time": dt.datetime.now(dt.UTC)} if at_once else {}),
        )

    def _schedule(self, dispatch: bool) -> None:
        self.coordinator.on_change = self._dispatch_now if dispatch else self.wake.set
        if dispatch:
            self._dispatch_wake.set()  # the first pass at once
            self._dispatcher = threading.Thread(target=self._dispatch_loop, name="adw-dispatch", daemon=True)
            self._dispatcher.start()
        at_once = {"reap", "github_poll", "github_sync", "catalog"}
        for job_id, seconds in self._intervals().items():
            self._add_job(job_id, seconds, at_once=job_id in at_once)

    def refresh_catalog(self) -> bool:
        """``[catalog] refresh``: fetch the models list when the cache is due; a failure keeps
        the old cache and is logged (the next interval tries again).  True if it was refreshed."""
        from adw_modules.catalog import cache as catalog_cache
        from adw_modules.catalog.openrouter import CatalogError

        cfg = self.config.catalog
        if not catalog_cache.is_stale(catalog_cache.load(cfg), cfg, utcnow()):  # e.g. just after a restart
            return False
        try:
            catalog = catalog_cache.refresh(cfg)
        except CatalogError as exc:
            data = {"event": "catalog.failed", "error": str(exc)}
            log.warning(f"catalog refresh failed: {exc}", extra={"data": data})
            return False
        log.info(
            f"catalog refreshed: {catalog.count} models",
            extra={"data": {"event": "catalog.refreshed", "count": catalog.count, "source": catalog.source}},
        )
        return True

    def prune(self) -> None:
        svc = self.config.service
        now = utcnow()
        retention.prune(self.store, svc.retention, svc.coordinator.state_dir, self.coordinator.host, now)
        # Webhook delivery ids guard against redeliveries, which GitHub allows for a few days.
        self.store.prune_deliveries(now - DELIVERIES_KEPT)

    def _github_leader(self) -> bool:
        """One coordinator polls and writes to GitHub; all of them dispatch."""
        assert self.github is not None
        gh = self.github.cfg
        now = utcnow()
        hold = dt.timedelta(seconds=max(3 * gh.poll_interval_s, 3 * gh.sync_interval_s, 60))
        return self.store.acquire_leader("github", self.coordinator.owner, now + hold, now)

    def _github_remaining(self) -> int | None:
        """Rate-limit points left, as of the current GitHub client's last response (a reload may
        have replaced it)."""
        source = self.github
        return None if source is None else source.client.quota()[0]

    def github_poll(self) -> None:
        source = self.github  # a reload may swap it meanwhile: this run finishes with this one
        if source is not None and self._github_leader():
            source.poll()
            self._wake_dispatch()

    def github_sync(self) -> None:
        source = self.github
        if source is not None and self._github_leader():
            source.sync()

    def idle(self, idle_wait_s: float) -> bool:
        """Nothing queued or running, and no retry due within ``idle_wait_s``."""
        if self.coordinator.running():
            return False
        return not self.store.work_due(utcnow() + dt.timedelta(seconds=idle_wait_s))

    def run(self, mode: Mode = "forever", idle_wait_s: float = 30.0) -> int:
        metrics = None
        if (listen := self.config.service.metrics.listen) is not None:  # first: a taken port fails before any work
            from adw_modules.ops.metrics_http import serve_metrics  # prometheus_client: ~20 MB, only when asked for

            metrics = serve_metrics(
                self.store,
                listen,
                providers=lambda: list(self.config.providers),
                github_remaining=self._github_remaining,
                scheduler_running=lambda: bool(self.scheduler.running),
            )
        try:
            web = self._serve_console()  # also before any work: a taken port fails at once
        except BaseException:
            if metrics is not None:
                metrics.stop()
            raise
        c = self.coordinator
        try:
            self.webhook = self._start_webhook()  # before any work too: a taken port fails at once
        except ConfigError:
            if metrics is not None:
                metrics.stop()
            if web is not None:
                web.stop()
            raise
        c.startup()
        self._schedule(dispatch=mode != "once")
        self.scheduler.start()
        # Work enqueued elsewhere (adw enqueue, another coordinator's failover) wakes dispatch at once.
        listener = self.store.listen(self._on_announced) if mode != "once" else None
        log.info(
            f"coordinator {c.owner} running ({mode})",
            extra={"data": {"event": "service.started", "owner": c.owner, "mode": mode}},
        )
        try:
            if mode == "once":
                c.dispatch()
            next_idle_check = 0.0
            while self.signals == 0:
                if self.reload_requested:
                    self.reload()
                if mode == "once" and not c.running():
                    break
                timeout = MAIN_LOOP_BACKSTOP_S
                if mode == "until_idle":
                    # Each ended attempt wakes this loop: look at the store at most every
                    # IDLE_CHECK_S, not once per attempt (and, without wake-ups, once a second).
                    now = time.monotonic()
                    if now >= next_idle_check:
                        if self.idle(idle_wait_s):
                            break
                        next_idle_check = now + IDLE_CHECK_S
                    timeout = max(0.01, min(1.0, next_idle_check - now)) if c.running() == 0 else 1.0
                # Signals, reloads and ended attempts set ``wake``; the timeout is only a backstop.
                self.wake.wait(timeout=timeout)
                self.wake.clear()
            self.drain()
        finally:
            if listener is not None:
                listener.close()
            self.stop_scheduler()
            try:
                if self.github is not None:
                    self.github.sync()  # the issue shows how the drain left things
                    self.store.release_leader("github", c.owner)
                c.shutdown()
            finally:
                if self.webhook is not None:
                    self.webhook.stop()
                if metrics is not None:
                    metrics.stop()
                if web is not None:
                    web.stop()
                self.store.close()
        log.info("coordinator stopped", extra={"data": {"event": "service.stopped", "owner": c.owner}})
        return 0

    def _serve_console(self) -> ConsoleServer | None:
        """``[web] listen``: the web console on a thread, over this coordinator's store and config."""
        if (listen := self.config.web.listen) is None:
            return None
        from adws.web.server import serve_in_thread  # Starlette, Jinja2, uvicorn: only when asked for

        def edited() -> None:  # the console switched routing in the file: apply it now
            self.reload_requested = True
            self.wake.set()

        return serve_in_thread(
            self.config,
            self.store,
            listen,
            self.environ,
            config_of=lambda: self.config,
            github_remaining=self._github_remaining,
            after_config_edit=edited,
            reload_info=lambda: self.last_reload,
        )

    def _start_webhook(self) -> WebhookReceiver | None:
        """Serve ``[github.webhook]`` (any coordinator may: a delivery is acted on once, by the first
        to record it).  The secret is fetched now, so a missing one stops the start, and again
        per delivery (cached like every secret), so a rotated one applies."""
        gh = self.config.github
        if gh is None or gh.webhook is None or self.github is None:
            return None
        from adw_modules.ops.secrets import webhook_secret
        from adw_modules.sources.github.webhook import WebhookReceiver

        wh = gh.webhook

        def secret() -> str:
            return webhook_secret(self.coordinator.registry.secrets, wh.secret_env, wh.secret_command)

        try:
            secret()
        except SecretError as exc:
            raise ConfigError([f"{self.config.path}: github.webhook: {exc}"]) from None
        try:
            receiver = WebhookReceiver(
                wh.listen,
                wh.path,
                secret,
                lambda delivery, event: self.store.record_delivery(delivery, event, utcnow()),
                self._on_webhook,
            ).start()
        except OSError as exc:  # the port is taken, or the address is not this host's
            where = f"{wh.listen[0]}:{wh.listen[1]}"
            raise ConfigError(
                [f"{self.config.path}: github.webhook: cannot listen on {where}: {exc.strerror}"]
            ) from None
        log.info(
            f"receiving GitHub webhooks at {receiver.url}",
            extra={"data": {"event": "github.webhook_listening", "url": receiver.url}},
        )
        return receiver

    def _on_webhook(self, event: str, payload: dict[str, object]) -> None:
        """A verified, first-seen delivery (on the receiver's worker thread, after the answer)."""
        source = self.github
        if source is not None:
            source.handle_event(event, payload)
            self._wake_dispatch()

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
    """The GitHub source for ``config``, registered as the coordinator's GitHub prompt renderer."""
    # Imported here: PyGithub is ~30 MB and half a second, and a coordinator without [github] never needs it.
    from adw_modules.sources.github.client import GitHubClient
    from adw_modules.sources.github.source import GitHubSource

    gh = config.github
    assert gh is not None
    pace = (gh.read_spacing_s, gh.write_spacing_s)
    try:
        # The coordinator's secrets, already fetched for ``config`` (apply_config runs first): one
        # fetch, one cache, and one redactor that learns a rotated token for the logs and GitHub alike.
        if gh.app_id is not None:
            client = _app_client(gh, coordinator, pace)
        else:
            client = GitHubClient(gh.base_url, coordinator.registry.secrets.github_token(gh), pace_s=pace)
    except SecretError as exc:
        raise ConfigError([f"{config.path}: github: {exc}"]) from None
    source = GitHubSource(
        gh,
        store,
        client,
        redact=coordinator.registry.secrets.redactor,
        max_attempts=config.service.coordinator.max_total_attempts,
    )
    coordinator.prompt_renderers["github"] = source.prompt
    share_push_token(config, coordinator, client)
    return source


def _app_client(gh: GitHubConfig, coordinator: Coordinator, pace: tuple[float, float]) -> GitHubClient:
    from github import GithubException

    from adw_modules.ops.secrets import github_app_key
    from adw_modules.sources.github.app import app_client
    from adw_modules.sources.github.client import Backoff

    key = github_app_key(coordinator.registry.secrets, gh)
    try:
        return app_client(gh, key, pace_s=pace, on_token=coordinator.registry.secrets.redactor.add)
    except (GithubException, Backoff) as exc:
        why = f"GitHub answered {exc.status}" if isinstance(exc, GithubException) else exc.reason
        raise SecretError(f"the GitHub App {gh.app_id} could not authenticate: {why}") from None


def share_push_token(config: Config, coordinator: Coordinator, client: GitHubClient) -> None:
    """``git push`` uses the GitHub source's credentials ([github] token_env / token_command, or the
    App's installation token) unless ``[workspace] token_env`` names another variable: left at its
    default or empty, the push follows ``[github]`` whichever way ``[github]`` gets its token."""
    ws = config.workspace
    if coordinator.workspaces is None or ws is None or ws.token_env not in ("GITHUB_TOKEN", None):
        return

    def token() -> str | None:
        return client.push_token()

    coordinator.workspaces.use_token(token)
