"""The coordinator's operations endpoint: ``/metrics``, ``/healthz``, ``/readyz``.

- ``/metrics``: Prometheus text (or OpenMetrics when asked for), from ``metrics.StoreCollector``
  plus the process's own CPU / memory / file-descriptor metrics.
- ``/healthz``: liveness: 200 whenever the process answers.
- ``/readyz``: readiness: 200 when the store answers a trivial query and (if a callable is
  given) the scheduler runs; else 503.  The JSON body names the failing check, with the
  error's type only (a driver message may carry a host or database name).

One ThreadingHTTPServer bound to exactly the configured host and port, serving on a daemon
thread; ``stop()`` shuts it down and closes the socket.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.exposition import choose_encoder

from adw_modules.ops.metrics import StoreCollector
from adw_modules.queue.store import Store

IDLE_POLL_S = 3600.0

log = logging.getLogger("adw.metrics")


def check_store(store: Store) -> str | None:
    """None if the store answers a trivial query on one of its tables, else the error's type."""
    try:
        store.ping()
    except Exception as exc:  # any failure means "not ready"; the probe itself must answer
        return type(exc).__name__
    return None


class Readiness:
    def __init__(self, store: Store, scheduler_running: Callable[[], bool] | None = None) -> None:
        self.store = store
        self.scheduler_running = scheduler_running

    def __call__(self) -> tuple[bool, dict[str, str]]:
        checks: dict[str, str] = {}
        err = check_store(self.store)
        checks["store"] = "ok" if err is None else f"error: {err}"
        if self.scheduler_running is not None:
            checks["scheduler"] = "ok" if self.scheduler_running() else "not running"
        return all(v == "ok" for v in checks.values()), checks


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    registry: CollectorRegistry
    readiness: Readiness


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "adw-metrics"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
            try:
                body = encoder(self.server.registry)
            except Exception as exc:
                log.exception("metrics: scrape failed")
                self._json(500, {"status": "error", "error": type(exc).__name__})
                return
            self._send(200, content_type, body)
        elif path == "/healthz":
            self._json(200, {"status": "ok"})
        elif path == "/readyz":
            ready, checks = self.server.readiness()
            self._json(200 if ready else 503, {"status": "ready" if ready else "not ready", "checks": checks})
        else:
            self._json(404, {"status": "not found", "paths": ["/metrics", "/healthz", "/readyz"]})

    def _json(self, code: int, data: dict[str, Any]) -> None:
        self._send(code, "application/json", json.dumps(data).encode() + b"\n")

    def _send(self, code: int, content_type: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug(format % args)


class MetricsServer:
    """``/metrics``, ``/healthz``, ``/readyz`` on (host, port); port 0 picks a free one (see ``address``)."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry, readiness: Readiness) -> None:
        server_cls = type("_Server6", (_Server,), {"address_family": socket.AF_INET6}) if ":" in host else _Server
        try:
            self._server: _Server = server_cls((host, port), _Handler)
        except OSError as exc:
            raise OSError(exc.errno, f"metrics: cannot listen on {host}:{port}: {exc.strerror}") from None
        self._server.registry = registry
        self._server.readiness = readiness
        # The loop checks for shutdown only between selects: a long poll interval keeps an idle
        # server asleep, and ``stop`` wakes the select with a connection of its own.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": IDLE_POLL_S}, name="adw-metrics", daemon=True
        )
        self._thread.start()

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def stop(self) -> None:
        stopper = threading.Thread(target=self._server.shutdown, name="adw-metrics-stop", daemon=True)
        stopper.start()
        deadline = time.monotonic() + 5
        while stopper.is_alive() and time.monotonic() < deadline:
            with contextlib.suppress(OSError):  # wake the select so the loop sees the request
                socket.create_connection(self.address, timeout=1).close()
            stopper.join(0.05)
        self._server.server_close()
        self._thread.join(timeout=5)


def serve_metrics(
    store: Store,
    listen: tuple[str, int],
    *,
    providers: Callable[[], Iterable[str]] | None = None,
    github_remaining: Callable[[], int | None] | None = None,
    github_quota: Callable[[], tuple[int, int, Any]] | None = None,
    scheduler_running: Callable[[], bool] | None = None,
) -> MetricsServer:
    """Start serving; raises OSError (with the address in its message) if it cannot bind.

    ``github_quota``: ``GitHubClient.quota`` ((remaining, limit, reset)), an alternative to
    ``github_remaining``.
    """
    if github_quota is not None and github_remaining is None:
        quota = github_quota

        def github_remaining() -> int | None:
            return quota()[0]

    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(store, providers=providers, github_remaining=github_remaining))
    ProcessCollector(registry=registry)
    server = MetricsServer(listen[0], listen[1], registry, Readiness(store, scheduler_running))
    host, port = server.address
    log.info(
        f"metrics on http://{host}:{port}/metrics (/healthz, /readyz)",
        extra={"data": {"event": "metrics.listening", "host": host, "port": port}},
    )
    return server
