"""Serving the console with uvicorn: in the foreground (``adw web``) or on a thread of ``adw run``.

The socket is bound here, before uvicorn starts, so a taken port or a bad address is an
immediate, clear error (and port 0 picks a free one, for tests).  uvicorn is the ASGI server:
maintained, pure Python with its optional speedups, and it stops cleanly when asked
(``should_exit``), which a thread of the coordinator needs.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping
from typing import Any

import uvicorn

from adw_modules.config.schema import Config, ConfigError
from adw_modules.config.web import listen_problem
from adw_modules.ops.secrets import SecretError, secrets_of
from adw_modules.queue.store import Store
from adws.web.app import Console, create_app
from adws.web.auth import Auth

log = logging.getLogger("adw.web")
STOP_GRACE_S = 2.0  # open event streams are closed after this at shutdown


def make_console(config: Config, store: Store, environ: Mapping[str, str] | None = None, **hooks: Any) -> Console:
    """The console over ``store``, its tokens fetched by reference (ConfigError naming the one missing)."""
    env = dict(os.environ if environ is None else environ)
    redactor = secrets_of(config, env)
    try:
        auth = Auth.from_config(config.web, env, redactor, config.service.coordinator.state_dir)
    except SecretError as exc:
        raise ConfigError([f"{config.path}: web: {exc}"]) from None
    config_of = hooks.pop("config_of", None) or (lambda: config)
    return Console(config_of=config_of, store=store, auth=auth, redactor=redactor, **hooks)


def bind(listen: tuple[str, int], config: Config, loopback_only: bool) -> socket.socket:
    """The listening socket; ConfigError if the address is refused or taken."""
    if loopback_only and (problem := listen_problem(listen, config.web)) is not None:
        raise ConfigError([f"{config.path}: web: {problem}"])
    host, port = listen
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError([f"web: cannot listen on {host}:{port}: {exc.strerror or exc}"]) from None
    sock.listen(128)
    sock.set_inheritable(False)
    return sock


class ConsoleServer:
    """uvicorn over one bound socket; ``start`` runs it on a daemon thread, ``run`` in the foreground."""

    def __init__(self, console: Console, sock: socket.socket) -> None:
        self.console = console
        self.sock = sock
        self.address: tuple[str, int] = sock.getsockname()[:2]
        settings = uvicorn.Config(
            create_app(console, self.address[0]),
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=int(STOP_GRACE_S),
            server_header=False,
        )
        self.server = uvicorn.Server(settings)
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = self.address[0]
        return f"http://{'[' + host + ']' if ':' in host else host}:{self.address[1]}"

    def run(self) -> None:
        try:
            self.server.run(sockets=[self.sock])
        finally:
            self.console.watcher.stop()
            self.sock.close()

    def start(self) -> ConsoleServer:
        self.thread = threading.Thread(target=self.run, name="adw-web", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.console.watcher.stop()  # event streams end at their next poll
        self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=STOP_GRACE_S + 5)


def serve_in_thread(
    config: Config, store: Store, listen: tuple[str, int], environ: Mapping[str, str] | None = None, **hooks: Any
) -> ConsoleServer:
    """``adw run`` with ``[web] listen``: the console on a thread, sharing the coordinator's store."""
    console = make_console(config, store, environ, in_coordinator=True, **hooks)
    server = ConsoleServer(console, bind(listen, config, console.auth.loopback_only)).start()
    path = console.auth.run_token_path
    note = "" if path is None else f" (no token configured: read-only, this run's token in {path})"
    log.info(f"web console on {server.url}{note}", extra={"data": {"event": "web.started", "url": server.url}})
    return server


def config_reloader(path: str, first: Config, on_error: Callable[[ConfigError], None]) -> Callable[[], Config]:
    """``adw web``: the config as the file has it now (re-read when its mtime changes; a bad
    file keeps the last good one)."""
    state: dict[str, Any] = {"config": first, "mtime": _mtime(path)}
    lock = threading.Lock()

    def current() -> Config:
        from adw_modules.config.schema import load_config

        mtime = _mtime(path)
        with lock:
            if mtime != state["mtime"]:
                state["mtime"] = mtime
                try:
                    state["config"] = load_config(path)
                except ConfigError as exc:
                    on_error(exc)
            config: Config = state["config"]
            return config

    return current


def _mtime(path: str) -> float | None:
    try:
        return os.stat(path).st_mtime_ns / 1e9
    except OSError:
        return None
