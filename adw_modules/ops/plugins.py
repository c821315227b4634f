"""Plugins: Python packages that add stream parsers or provider presets through entry points.

Two entry-point groups are read, each only when something asks for it:

- ``adw.parsers``: ``name = "module:Class"``, a ``workers.streams.base.StreamParser``
  subclass; ``name`` is the ``output_format`` a provider writes to use it.  Read when a
  config or a transcript names a format adw does not ship, or by ``adw plugins``.
- ``adw.providers``: ``name = "module:PRESET"``, a mapping of preset fields (see
  ``config.presets``); ``name`` is what a provider's ``preset = "..."`` names.  Read when a
  config names a preset adw does not ship, or by ``adw plugins``.

Loading a plugin runs its code, so a plugin that fails (its import raises, its attribute is
missing, or its object is not what the group needs) is reported with the reason and skipped:
it never stops adw, and the other plugins still load.  The results of one group are kept
for the life of the process (``forget()`` drops them, for tests and reloads).

This module imports nothing from adw: each group's consumer (``config.presets``,
``workers.streams``) loads it with the check of what its objects must be, so a rejected
plugin is a failure like any other and ``adw plugins`` lists every failure in one place.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

PARSERS = "adw.parsers"
PROVIDERS = "adw.providers"
GROUPS = (PARSERS, PROVIDERS)

log = logging.getLogger("adw.plugins")


@dataclass(frozen=True)
class PluginEntry:
    """One entry point: where it comes from and what it names."""

    group: str
    name: str
    value: str  # "module:attribute"
    distribution: str | None
    version: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "name": self.name,
            "value": self.value,
            "distribution": self.distribution,
            "version": self.version,
        }


@dataclass(frozen=True)
class PluginFailure:
    entry: PluginEntry
    error: str  # one line: what went wrong, never a traceback


@dataclass
class GroupLoad:
    """The outcome of loading one group: the objects by name, and every failure."""

    group: str
    loaded: dict[str, tuple[PluginEntry, Any]] = field(default_factory=dict)
    failed: list[PluginFailure] = field(default_factory=list)

    def failure_for(self, name: str) -> PluginFailure | None:
        return next((f for f in self.failed if f.entry.name == name), None)


# Reentrant: a plugin whose import asks for a group again must not deadlock (that inner call
# loads the group on its own; the outer one then stores its own result).  The import runs in
# a thread of its own (see _import) while the loader holds the lock and waits: a call from that
# thread is the loader's own, and goes on without the lock.
_lock = threading.RLock()
_loads: dict[str, GroupLoad] = {}
_importing: set[int] = set()  # the threads importing a plugin for a loader that waits on them
# How long a plugin's import may take; one still importing then is reported and skipped (its
# thread is left behind: Python cannot stop it).  $ADW_PLUGIN_IMPORT_TIMEOUT_S sets it.
IMPORT_TIMEOUT_S = 10.0


def load_group(group: str, check: Callable[[str, Any], str | None] | None = None) -> GroupLoad:
    """Every entry point of ``group`` loaded once per process; failures reported, never raised.

    ``check(name, obj)`` returns why ``obj`` is unusable (or None); a rejected plugin goes to
    ``failed``.  Entry points are taken in (distribution, name) order, so when two
    distributions offer the same name the result does not depend on the order of sys.path
    entries' listing: the first is kept and the other reported.
    """
    if threading.get_ident() in _importing:  # a plugin's import, its loader waiting on it
        return _load(group, check)
    with _lock:
        return _load(group, check)


def _load(group: str, check: Callable[[str, Any], str | None] | None) -> GroupLoad:
    if group in _loads:
        return _loads[group]
    result = GroupLoad(group)
    for ep in sorted(_entry_points(group), key=_order):
        entry = _entry(group, ep)
        if entry.name in result.loaded:
            _fail(result, entry, f"name already provided by {result.loaded[entry.name][0].distribution}")
            continue
        try:
            obj = _import(ep)
        except (Exception, SystemExit) as exc:  # a plugin's import may raise (or exit): report, skip
            _fail(result, entry, f"cannot load {entry.value}: {type(exc).__name__}: {_one_line(exc)}")
            continue
        why = check(entry.name, obj) if check is not None else None
        if why is not None:
            _fail(result, entry, why)
            continue
        result.loaded[entry.name] = (entry, obj)
    _loads[group] = result
    return result


class ImportTimeout(Exception):
    """A plugin's import did not finish in time."""


def _import(ep: metadata.EntryPoint) -> Any:
    """``ep.load()`` in a daemon thread, waited on for the import timeout: a plugin whose import
    hangs (a network call, a lock) is a failure, not a hung adw."""
    timeout = _import_timeout()
    outcome: dict[str, Any] = {}

    def run() -> None:
        _importing.add(threading.get_ident())
        try:
            outcome["object"] = ep.load()
        except BaseException as exc:  # handed to the loader, which reports it
            outcome["error"] = exc
        finally:
            _importing.discard(threading.get_ident())

    thread = threading.Thread(target=run, name=f"adw-plugin-import {ep.name}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise ImportTimeout(f"its import did not finish within {timeout:g} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["object"]


def _import_timeout() -> float:
    try:
        value = float(os.environ.get("ADW_PLUGIN_IMPORT_TIMEOUT_S", IMPORT_TIMEOUT_S))
    except ValueError:
        return IMPORT_TIMEOUT_S
    return value if 0 < value < 3600 else IMPORT_TIMEOUT_S


def loaded_groups() -> list[str]:
    """The groups read so far in this process (plugins are read only when needed)."""
    with _lock:
        return sorted(_loads)


def forget() -> None:
    """Drop what was loaded (the next use reads the entry points again)."""
    with _lock:
        _loads.clear()


def _entry_points(group: str) -> list[metadata.EntryPoint]:
    try:
        return list(metadata.entry_points(group=group))
    except Exception as exc:  # a broken dist-info on sys.path must not stop adw either
        log.warning("cannot list %s entry points: %s: %s", group, type(exc).__name__, _one_line(exc))
        return []


def _order(ep: metadata.EntryPoint) -> tuple[str, str]:
    dist = ep.dist.name if ep.dist is not None else ""
    return (dist or "", ep.name)


def _entry(group: str, ep: metadata.EntryPoint) -> PluginEntry:
    dist = ep.dist
    return PluginEntry(
        group=group,
        name=ep.name,
        value=ep.value,
        distribution=dist.name if dist is not None else None,
        version=dist.version if dist is not None else None,
    )


def printable(text: str) -> str:
    """``text`` with control characters (a terminal escape from a plugin's message) shown as ``?``."""
    return "".join("?" if ord(c) < 32 or ord(c) == 127 else c for c in text)


def _fail(result: GroupLoad, entry: PluginEntry, why: str) -> None:
    why = printable(why)
    result.failed.append(PluginFailure(entry, why))
    log.warning("plugin %s %s (%s) skipped: %s", entry.group, entry.name, entry.distribution, why)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] + ("…" if len(text) > 300 else "")
