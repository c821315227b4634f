"""The ``[web]`` section of config.toml: the web console (``adw web``, or ``adw run`` with ``listen``).

Tokens are referenced, never held: ``token_env`` / ``token_command`` name the admin token (it
may act: retry, cancel, routing on/off), ``readonly_token_env`` / ``readonly_token_command``
an optional second one that may only look.  ``ops.secrets.web_token`` fetches them.
A non-loopback ``listen`` without an admin or read-only token is an error here, so the
console is never served to a network without authentication.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from adw_modules.config.validation import Validator

_KEYS = ("listen", "token_env", "token_command", "readonly_token_env", "readonly_token_command")
DEFAULT_LISTEN = ("127.0.0.1", 8484)


@dataclass(frozen=True)
class WebConfig:
    listen: tuple[str, int] | None = None  # set: ``adw run`` serves the console there
    token_env: str | None = None
    token_command: tuple[str, ...] | None = None
    readonly_token_env: str | None = None
    readonly_token_command: tuple[str, ...] | None = None

    @property
    def has_token(self) -> bool:
        return bool(self.token_env or self.token_command or self.readonly_token_env or self.readonly_token_command)


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address (127.0.0.0/8, ::1); anything else reaches a network."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def parse_listen(raw: str, any_port: bool = False) -> tuple[str, int] | None:
    """``"HOST:PORT"`` as (host, port), or None if it is not that shape (port 0, "any free
    port", only with ``any_port``: ``adw web --listen``, not the config)."""
    host, sep, port = raw.rpartition(":")
    if not sep or not host or not port.isdigit() or not (0 if any_port else 1) <= int(port) < 65536:
        return None
    return host.strip("[]"), int(port)


def listen_problem(listen: tuple[str, int], web: WebConfig) -> str | None:
    """Why the console may not listen there, or None."""
    if is_loopback(listen[0]) or web.has_token:
        return None
    return (
        f'listen "{listen[0]}:{listen[1]}" is not a loopback address: set token_env or token_command '
        "(the console never serves a network without authentication)"
    )


def validate_web(v: Validator, data: Mapping[str, Any]) -> WebConfig:
    w = "web"
    table = v.get(data, "web", dict, w, {}) or {}
    v.unknown_keys(table, _KEYS, w, "key")
    listen = None
    raw_listen = v.get(table, "listen", str, w)
    if raw_listen is not None:
        listen = parse_listen(raw_listen)
        if listen is None:
            v.err(w, f'listen "{raw_listen}" must be "HOST:PORT", e.g. "127.0.0.1:8484"')
    commands = {key: v.str_list(table, key, w) for key in ("token_command", "readonly_token_command")}
    for key, argv in commands.items():
        if argv is not None and not argv:
            v.err(w, f'{key} must not be empty: an argv such as ["pass", "adw/web"]')
    web = WebConfig(
        listen=listen,
        token_env=v.get(table, "token_env", str, w),
        token_command=tuple(commands["token_command"]) if commands["token_command"] else None,
        readonly_token_env=v.get(table, "readonly_token_env", str, w),
        readonly_token_command=(
            tuple(commands["readonly_token_command"]) if commands["readonly_token_command"] else None
        ),
    )
    if listen is not None and (problem := listen_problem(listen, web)) is not None:
        v.err(w, problem)
    return web
