"""/metrics, /healthz and /readyz over real HTTP, checked against the store's own totals.

A small real run (the in-process coordinator, real dry-run agent workers: a rate limit that
fails over, a slow success, a lease recovered from a vanished coordinator) fills a SQLite or
PostgreSQL store; a scrape must then report exactly what the store says.
"""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from adw_modules.config.schema import load_config
from adw_modules.coordinator import Coordinator, utcnow
from adw_modules.ops.metrics import DURATION_BUCKETS_S
from adw_modules.ops.metrics_http import MetricsServer, serve_metrics
from adw_modules.queue.store import Store
from adw_modules.queue.tasks import AttemptStart, CircuitState, TaskState
from adw_modules.sources.local import enqueue_local
from tests.coordinator.harness import PG_ADMIN_URL, kill_pid, wait_for
from tests.ops.conftest import ADW, http_get, provider_toml

ROUTING = """
[routing]
enabled = true
default_provider = "a"
default_model = "m1"
fallback = ["b:m1"]

[[routing.rules]]
name = "slow-ones"
priority = 10
conditions = { labels = ["slow"] }
provider = "s"
model = "m1"
"""


def scrape(server: MetricsServer) -> list[Sample]:
    host, port = server.address
    status, body = http_get(f"http://{host}:{port}/metrics")
    assert status == 200, body
    return [s for fam in text_string_to_metric_families(body) for s in fam.samples if s.name.startswith("adw_")]


def values(samples: list[Sample], name: str, *labels: str) -> dict[tuple[str, ...], float]:
    return {tuple(s.labels[k] for k in labels): s.value for s in samples if s.name == name}


def small_run(tmp_path: Path, store_url: str, write_config: Callable[..., Path]) -> Store:
    """Run a handful of tasks to the end on ``store_url``; returns the (open) store."""
    providers = provider_toml(
        "a",
        env=f'ADW_DRY_RUN_FAIL = "rate_limit@1", ADW_DRY_RUN_STATE = "{tmp_path / "a.count"}", '
        'ADW_DRY_RUN_RETRY_AFTER = "600"',
        extra="max_concurrency = 1",  # one at a time: its rate limit opens the circuit before anything else runs
    )
    providers += provider_toml("b")
    providers += provider_toml("s", args=("--fail", "slow", "--slow-interval", "0.4", "--slow-lines", "4"))
    config = load_config(write_config(providers, ROUTING, store_url))
    store = Store.open(store_url)
    coord = Coordinator(config, store)
    coord.startup()

    # A coordinator that vanished mid-attempt: its lease runs out and reap() recovers the task.
    enqueue_local(store, "orphaned work", priority="critical")
    now = utcnow()
    lease = now + dt.timedelta(milliseconds=50)
    ghost = store.claim_task("ghost/0", lease, now)
    assert ghost is not None
    start = AttemptStart("a", "m1", None, {}, "fp", host="elsewhere")
    assert store.start_attempt(ghost.id, "ghost/0", start, now) is not None
    wait_for(lambda: utcnow() > lease, 5, "the ghost's lease to expire")
    assert coord.reap() == 1

    enqueue_local(store, "fails over", priority="high")
    enqueue_local(store, "plain", priority="normal")
    enqueue_local(store, "slow one", priority="low", labels=("slow",))
    for _ in range(20):
        started = coord.dispatch()
        assert coord.wait_idle(30), "attempts did not finish"
        if not started:
            break
    left = enqueue_local(store, "still queued", priority="high")
    doomed = enqueue_local(store, "cancelled", priority="low")
    assert store.request_cancel(doomed.id, utcnow()) is TaskState.CANCELLED
    assert store.get_task(left.id).state is TaskState.QUEUED  # type: ignore[union-attr]
    coord.shutdown()
    return store


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_scrape_equals_the_store_totals(
    backend: str, tmp_path: Path, write_config: Callable[..., Path], request: pytest.FixtureRequest
) -> None:
    url = f"sqlite:///{tmp_path / 'adw.db'}" if backend == "sqlite" else request.getfixturevalue("pg_url")
    store = small_run(tmp_path, url, write_config)
    names = ["a", "b", "s", "unused"]
    server = serve_metrics(store, ("127.0.0.1", 0), providers=lambda: names)
    other = serve_metrics(store, ("127.0.0.1", 0), providers=lambda: names)  # a second coordinator
    try:
        got = scrape(server)
        attempts = [a for t in store.list_tasks(limit=1000) for a in store.attempts_for(t.id)]
        assert all(a.state == "finished" for a in attempts)

        assert values(got, "adw_store_up") == {(): 1.0}
        queue = store.counts_by_state_priority()
        depth = values(got, "adw_queue_depth", "state", "priority")
        assert {k: v for k, v in depth.items() if v} == {(s, p): n for s, row in queue.items() for p, n in row.items()}
        assert len(depth) == len(TaskState) * 4  # zeros included: series never vanish
        assert depth[("queued", "high")] == 1 and depth[("cancelled", "low")] == 1

        by_outcome = Counter((a.provider, a.model, a.outcome) for a in attempts)
        assert values(got, "adw_attempts_total", "provider", "model", "outcome") == by_outcome
        assert by_outcome[("a", "m1", "rate_limited")] == 1 and by_outcome[("a", "m1", "crashed")] == 1
        assert values(got, "adw_attempts_running", "provider", "model") == {}

        for by in ("provider", "model"):
            col = 0 if by == "provider" else 1
            usage = {r["key"]: r for r in store.usage(by)}
            for kind in ("input", "output", "cache_read", "cache_write"):
                summed: dict[str, float] = defaultdict(float)
                for (p, m, k), v in values(got, "adw_tokens_total", "provider", "model", "kind").items():
                    if k == kind:
                        summed[(p, m)[col]] += v
                assert summed == {key: r[f"{kind}_tokens"] for key, r in usage.items()}, (by, kind)
            cost: dict[str, float] = defaultdict(float)
            for (p, m), v in values(got, "adw_cost_usd_total", "provider", "model").items():
                cost[(p, m)[col]] += v
            assert cost == pytest.approx({key: r["cost_usd"] for key, r in usage.items()})
        assert sum(r["output_tokens"] for r in store.usage("provider")) > 0
        assert sum(r["cost_usd"] for r in store.usage("provider")) > 0

        # The histogram, recomputed here from each attempt's own start and end.
        for provider in ("a", "b", "s"):
            secs = [(a.ended_at - a.started_at).total_seconds() for a in attempts if a.provider == provider]  # type: ignore[operator]
            buckets = values(got, "adw_attempt_duration_seconds_bucket", "provider", "le")
            for b in DURATION_BUCKETS_S:
                assert buckets[(provider, str(b))] == sum(s <= b for s in secs), (provider, b, secs)
            assert buckets[(provider, "+Inf")] == len(secs)
            assert values(got, "adw_attempt_duration_seconds_count", "provider")[(provider,)] == len(secs)
            total = values(got, "adw_attempt_duration_seconds_sum", "provider")[(provider,)]
            assert total == pytest.approx(sum(secs), abs=1e-3)
        slow = [a for a in attempts if a.provider == "s"]
        assert len(slow) == 1 and (slow[0].ended_at - slow[0].started_at).total_seconds() > 1  # type: ignore[operator]

        failed_over = Counter((a.failover_from.split(":")[0], a.provider) for a in attempts if a.failover_from)
        assert failed_over == {("a", "b"): 1}
        assert values(got, "adw_failovers_total", "from_provider", "provider") == failed_over
        recovered = [e for e in store.events(limit=1000) if e["kind"] == "task.recovered"]
        assert values(got, "adw_lease_recoveries_total") == {(): len(recovered)} == {(): 1}

        states = store.provider_states()
        assert states["a"].circuit is CircuitState.OPEN and states["a"].cooldown_until is not None
        circuit = values(got, "adw_provider_circuit_state", "provider", "state")
        assert {k for k, v in circuit.items() if v == 1} == {
            ("a", "open"),
            ("b", "closed"),
            ("s", "closed"),
            ("unused", "closed"),
        }
        assert len(circuit) == 4 * len(CircuitState)
        until = values(got, "adw_provider_cooldown_until_seconds", "provider")
        a_until = states["a"].cooldown_until.timestamp()
        assert until == {("a",): a_until, ("b",): 0.0, ("s",): 0.0, ("unused",): 0.0}
        assert "adw_github_rate_limit_remaining" not in {s.name for s in got}

        # Every coordinator on the store tells the same story (process_* metrics aside).
        assert scrape(other) == got
        # Labels are names from the config and the store's vocabularies, nothing else.
        allowed = {"state", "priority", "provider", "model", "outcome", "kind", "from_provider", "le"}
        assert set().union(*(s.labels for s in got)) <= allowed
    finally:
        server.stop()
        other.stop()
        store.close()


def test_health_and_readiness_follow_the_store(pg_url: str) -> None:
    store = Store.open(pg_url)
    running = {"yes": True}
    server = serve_metrics(
        store, ("127.0.0.1", 0), scheduler_running=lambda: running["yes"], github_remaining=lambda: 4321
    )
    base = "http://{}:{}".format(*server.address)
    try:
        assert http_get(base + "/healthz") == (200, '{"status": "ok"}\n')
        code, body = http_get(base + "/readyz")
        assert (code, json.loads(body)) == (200, {"status": "ready", "checks": {"store": "ok", "scheduler": "ok"}})
        got = scrape(server)
        assert values(got, "adw_github_rate_limit_remaining") == {(): 4321.0}

        running["yes"] = False
        code, body = http_get(base + "/readyz")
        assert code == 503 and json.loads(body)["checks"]["scheduler"] == "not running"
        running["yes"] = True

        # The database goes away under the running server (its connections are terminated).
        name = sa.make_url(pg_url).database
        admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        finally:
            admin.dispose()
        code, body = http_get(base + "/readyz")
        d = json.loads(body)
        assert code == 503 and d["status"] == "not ready" and d["checks"]["store"].startswith("error: ")
        assert d["checks"]["scheduler"] == "ok"
        assert "postgres" not in body and str(name) not in body  # no URL, host or database name
        got = scrape(server)
        assert values(got, "adw_store_up") == {(): 0.0}
        assert values(got, "adw_github_rate_limit_remaining") == {(): 4321.0}
        assert http_get(base + "/healthz")[0] == 200  # alive, just not ready
        assert http_get(base + "/nothing")[0] == 404
    finally:
        server.stop()
        store.close()


def test_adw_run_serves_on_the_configured_address_and_stops(
    tmp_path: Path, write_config: Callable[..., Path], free_port: int
) -> None:
    """``[metrics] listen`` in the service: up while it runs (showing its running attempt), gone after."""
    url = f"sqlite:///{tmp_path / 'adw.db'}"
    config = write_config(
        provider_toml("a", env='ADW_DRY_RUN_FAIL = "hang"'),
        '[routing]\ndefault_provider = "a"\ndefault_model = "m1"\n',
        url,
        metrics=f"127.0.0.1:{free_port}",
    )
    with Store.open(url) as store:
        task = enqueue_local(store, "hangs", priority="high")
    base = f"http://127.0.0.1:{free_port}"
    proc = subprocess.Popen(
        [str(ADW), "run", "--log-format", "json", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:

        def running_attempt() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"adw run exited: {proc.stderr.read().decode()[-3000:]}")  # type: ignore[union-attr]
            try:
                samples = scrape_url(base)
            except OSError:
                return False
            return values(samples, "adw_attempts_running", "provider", "model") == {("a", "m1"): 1.0}

        wait_for(running_attempt, 20, "adw run's /metrics to show the running attempt")
        code, body = http_get(base + "/readyz")
        assert (code, json.loads(body)["checks"]) == (200, {"store": "ok", "scheduler": "ok"})
        got = scrape_url(base)
        assert values(got, "adw_queue_depth", "state", "priority")[("running", "high")] == 1
        assert values(got, "adw_coordinators") == {(): 1.0}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        assert proc.stderr is not None
        proc.stderr.close()
        with Store.open(url) as store:  # a killed coordinator leaves its worker behind
            for att in store.attempts_for(task.id):
                if att.pid is not None:
                    kill_pid(att.pid, att.create_time)
    with pytest.raises(OSError):
        http_get(base + "/healthz", timeout_s=2)  # the socket is closed: connection refused


def scrape_url(base: str) -> list[Sample]:
    status, body = http_get(base + "/metrics", timeout_s=2)
    assert status == 200, body
    return [s for fam in text_string_to_metric_families(body) for s in fam.samples if s.name.startswith("adw_")]


def test_the_server_binds_exactly_the_given_address(free_port: int, tmp_path: Path) -> None:
    with Store.open(f"sqlite:///{tmp_path / 'adw.db'}") as store:
        server = serve_metrics(store, ("127.0.0.1", free_port))
        try:
            assert server.address == ("127.0.0.1", free_port)
            with pytest.raises(OSError, match=f"metrics: cannot listen on 127.0.0.1:{free_port}"):
                serve_metrics(store, ("127.0.0.1", free_port))
        finally:
            server.stop()
        t0 = time.monotonic()
        with pytest.raises(OSError):
            http_get(f"http://127.0.0.1:{free_port}/healthz", timeout_s=2)
        assert time.monotonic() - t0 < 2  # refused at once, not a timeout
