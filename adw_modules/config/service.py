"""The service sections of config.toml: [coordinator], [store], [health], [metrics], [retention].

Each section is read through the one ``Validator``, so problems from every section
are reported together in one list.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adw_modules.config.validation import PASSWORD_IN_URL, Validator
from adw_modules.queue.health import HealthPolicy
from adw_modules.queue.retry import RetryStrategy

_COORDINATOR_KEYS = (
    "name",
    "max_concurrency",
    "max_attempts",
    "max_total_attempts",
    "lease_s",
    "heartbeat_s",
    "dispatch_interval_s",
    "reap_interval_s",
    "drain_grace_s",
    "kill_grace_s",
    "retry_base_s",
    "retry_max_s",
    "retry_jitter",
    "task_budget_usd",
    "state_dir",
)
_STORE_KEYS = ("url", "url_env")
_HEALTH_KEYS = ("failure_threshold", "cooldown_base_s", "cooldown_max_s")
_METRICS_KEYS = ("listen",)
_RETENTION_KEYS = ("transcripts_days", "finished_tasks_days", "events_days", "interval_s")


@dataclass(frozen=True)
class CoordinatorConfig:
    name: str | None = None  # stable across restarts; default: the host name
    max_concurrency: int = 2
    lease_s: float = 60.0
    heartbeat_s: float = 10.0
    dispatch_interval_s: float = 2.0
    reap_interval_s: float = 15.0
    drain_grace_s: float = 30.0
    kill_grace_s: float = 5.0
    max_total_attempts: int = 8  # failovers included: a bound on a task that bounces forever
    task_budget_usd: float | None = None
    retry: RetryStrategy = field(default_factory=RetryStrategy)
    state_dir: Path = Path(".adw")


@dataclass(frozen=True)
class StoreConfig:
    url: str = ""  # empty: SQLite file in the state dir
    url_env: str | None = None


@dataclass(frozen=True)
class MetricsConfig:
    listen: tuple[str, int] | None = None  # "127.0.0.1:9464": Prometheus /metrics, /healthz, /readyz


@dataclass(frozen=True)
class RetentionConfig:
    """How long finished work is kept; None keeps it forever."""

    transcripts_days: float | None = 14.0
    finished_tasks_days: float | None = 90.0
    events_days: float | None = 30.0
    interval_s: float = 3600.0


@dataclass(frozen=True)
class ServiceConfig:
    coordinator: CoordinatorConfig = field(default_factory=CoordinatorConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    health: HealthPolicy = field(default_factory=HealthPolicy)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)

    def store_url(self, environ: Mapping[str, str]) -> str:
        if self.store.url_env:
            return environ.get(self.store.url_env, "")
        if self.store.url:
            return self.store.url
        return f"sqlite:///{self.coordinator.state_dir / 'adw.db'}"


def validate_service(v: Validator, data: Mapping[str, Any]) -> ServiceConfig:
    """[coordinator], [store], [health], [metrics] and [retention], each optional."""
    return ServiceConfig(
        coordinator=_coordinator(v, data),
        store=_store(v, data),
        health=_health(v, data),
        metrics=_metrics(v, data),
        retention=_retention(v, data),
    )


def _coordinator(v: Validator, data: Mapping[str, Any]) -> CoordinatorConfig:
    w = "coordinator"
    c = v.get(data, "coordinator", dict, w, {}) or {}
    v.unknown_keys(c, _COORDINATOR_KEYS, w, "key")
    defaults = CoordinatorConfig()
    retry_defaults = RetryStrategy()

    def pos(key: str, kind: type, default: Any) -> Any:
        value = v.positive(c, key, kind, w)
        return default if value is None else value

    jitter = v.get(c, "retry_jitter", float, w, retry_defaults.jitter)
    if not 0 <= jitter <= 1:
        v.err(w, f"retry_jitter must be between 0 and 1 (a fraction of the delay), not {jitter}")
    max_attempts = pos("max_attempts", int, retry_defaults.max_attempts)
    state_dir = Path(v.get(c, "state_dir", str, w, ".adw")).expanduser()
    coordinator = CoordinatorConfig(
        name=v.get(c, "name", str, w),
        max_concurrency=pos("max_concurrency", int, defaults.max_concurrency),
        lease_s=pos("lease_s", float, defaults.lease_s),
        heartbeat_s=pos("heartbeat_s", float, defaults.heartbeat_s),
        dispatch_interval_s=pos("dispatch_interval_s", float, defaults.dispatch_interval_s),
        reap_interval_s=pos("reap_interval_s", float, defaults.reap_interval_s),
        drain_grace_s=pos("drain_grace_s", float, defaults.drain_grace_s),
        kill_grace_s=pos("kill_grace_s", float, defaults.kill_grace_s),
        max_total_attempts=pos("max_total_attempts", int, defaults.max_total_attempts),
        task_budget_usd=v.positive(c, "task_budget_usd", float, w),
        retry=RetryStrategy(
            max_attempts=max_attempts,
            base_s=pos("retry_base_s", float, retry_defaults.base_s),
            max_s=pos("retry_max_s", float, retry_defaults.max_s),
            jitter=jitter,
        ),
        state_dir=state_dir if state_dir.is_absolute() else v.base / state_dir,
    )
    if coordinator.heartbeat_s >= coordinator.lease_s:
        v.err(
            w,
            f"heartbeat_s ({coordinator.heartbeat_s:g}) must be shorter than lease_s ({coordinator.lease_s:g})",
        )
    if coordinator.max_total_attempts < max_attempts:
        v.err(w, "max_total_attempts must be at least max_attempts")
    return coordinator


def _store(v: Validator, data: Mapping[str, Any]) -> StoreConfig:
    s = v.get(data, "store", dict, "store", {}) or {}
    v.unknown_keys(s, _STORE_KEYS, "store", "key")
    url = v.get(s, "url", str, "store", "")
    url_env = v.get(s, "url_env", str, "store")
    if url and url_env:
        v.err("store", "give url or url_env, not both")
    if url and PASSWORD_IN_URL.search(url):
        v.err(
            "store",
            "url contains a password: put the whole URL in an environment variable and name it in url_env",
        )
    if url and not url.startswith(("sqlite:///", "postgresql")):
        v.err("store", f'url must start with "sqlite:///" or "postgresql+psycopg://", not {url.split(":")[0]!r}')
    return StoreConfig(url=url, url_env=url_env)


def _health(v: Validator, data: Mapping[str, Any]) -> HealthPolicy:
    h = v.get(data, "health", dict, "health", {}) or {}
    v.unknown_keys(h, _HEALTH_KEYS, "health", "key")
    hd = HealthPolicy()
    return HealthPolicy(
        failure_threshold=v.positive(h, "failure_threshold", int, "health") or hd.failure_threshold,
        cooldown_base_s=v.positive(h, "cooldown_base_s", float, "health") or hd.cooldown_base_s,
        cooldown_max_s=v.positive(h, "cooldown_max_s", float, "health") or hd.cooldown_max_s,
    )


def _metrics(v: Validator, data: Mapping[str, Any]) -> MetricsConfig:
    m = v.get(data, "metrics", dict, "metrics", {}) or {}
    v.unknown_keys(m, _METRICS_KEYS, "metrics", "key")
    raw_listen = v.get(m, "listen", str, "metrics")
    if raw_listen is None:
        return MetricsConfig(listen=None)
    host, sep, port = raw_listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        v.err("metrics", f'listen "{raw_listen}" must be "HOST:PORT", e.g. "127.0.0.1:9464"')
        return MetricsConfig(listen=None)
    return MetricsConfig(listen=(host.strip("[]"), int(port)))


def _retention(v: Validator, data: Mapping[str, Any]) -> RetentionConfig:
    r = v.get(data, "retention", dict, "retention", {}) or {}
    v.unknown_keys(r, _RETENTION_KEYS, "retention", "key")
    rd = RetentionConfig()
    return RetentionConfig(
        transcripts_days=v.positive(r, "transcripts_days", float, "retention") or rd.transcripts_days,
        finished_tasks_days=v.positive(r, "finished_tasks_days", float, "retention") or rd.finished_tasks_days,
        events_days=v.positive(r, "events_days", float, "retention") or rd.events_days,
        interval_s=v.positive(r, "interval_s", float, "retention") or rd.interval_s,
    )
