"""Edit config.toml in place with tomlkit, keeping the operator's comments and layout.

Every edit is validated as a whole config before it is written, and written atomically
(temp file + rename), so a bad edit leaves the file exactly as it was.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.items import AoT, Table

from adw_modules.config.lines import LineIndex
from adw_modules.config.schema import ConfigError, parse_config, read_document


def _edit(path: Path, change: Callable[[tomlkit.TOMLDocument], None]) -> None:
    text = path.read_text(encoding="utf-8")
    doc = read_document(text, path)
    change(doc)
    new_text = tomlkit.dumps(doc)
    parse_config(new_text, path)  # raises ConfigError; nothing written
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(new_text)
        os.chmod(tmp, path.stat().st_mode & 0o7777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _routing(doc: tomlkit.TOMLDocument) -> Table:
    if "routing" not in doc:
        doc["routing"] = tomlkit.table()
    routing = doc["routing"]
    assert isinstance(routing, Table)
    return routing


def set_routing_enabled(path: str | Path, enabled: bool) -> None:
    _edit(Path(path), lambda doc: _routing(doc).__setitem__("enabled", enabled))


def add_rule(
    path: str | Path,
    name: str,
    priority: int,
    conditions: Mapping[str, Any],
    *,
    provider: str | None = None,
    model: str | None = None,
    model_select: Mapping[str, Any] | None = None,
    chain: str | None = None,
    fallback: Sequence[str] = (),
    params: Mapping[str, Any] | None = None,
) -> None:
    """Append a ``[[routing.rules]]`` table; the config must stay valid (else ConfigError)."""

    def change(doc: tomlkit.TOMLDocument) -> None:
        routing = _routing(doc)
        rules = routing.get("rules")
        if rules is None:
            rules = tomlkit.aot()
            routing["rules"] = rules
        if not isinstance(rules, AoT):
            raise ConfigError([f"{path}: routing.rules: is not an array of tables, cannot append"])
        if any(r.get("name") == name for r in rules):
            raise ConfigError([f'{path}: routing.rules: a rule named "{name}" already exists'])
        rule = tomlkit.table()
        rule["name"] = name
        rule["priority"] = priority
        cond = tomlkit.inline_table()
        cond.update(conditions)
        rule["conditions"] = cond
        for key, value in (("provider", provider), ("model", model), ("chain", chain)):
            if value is not None:
                rule[key] = value
        if model_select:
            sel = tomlkit.inline_table()
            sel.update(model_select)
            rule["model_select"] = sel
        if fallback:
            rule["fallback"] = list(fallback)
        if params:
            p = tomlkit.inline_table()
            p.update(params)
            rule["params"] = p
        rules.append(rule)

    _edit(Path(path), change)


def remove_rule(path: str | Path, name: str) -> None:
    def change(doc: tomlkit.TOMLDocument) -> None:
        routing = _routing(doc)
        rules = routing.get("rules")
        names = [r.get("name") for r in rules] if isinstance(rules, AoT) else []
        if name not in names:
            known = ", ".join(str(n) for n in names) or "none"
            raise ConfigError([f'{path}: routing.rules: no rule named "{name}" (rules: {known})'])
        assert isinstance(rules, AoT)
        del rules[names.index(name)]
        if not len(rules):
            del routing["rules"]

    _edit(Path(path), change)


def add_model(
    path: str | Path,
    provider: str,
    model: str,
    *,
    display_name: str | None = None,
    tier: str | None = None,
    capabilities: Sequence[str] = (),
    context_window: int | None = None,
) -> None:
    """Add ``[providers.PROVIDER.models."MODEL"]`` (``adw models promote``); the config must
    stay valid (else ConfigError), and a model already declared there is refused."""

    text = Path(path).read_text(encoding="utf-8")

    def change(doc: tomlkit.TOMLDocument) -> None:
        providers = doc.get("providers")
        table = providers.get(provider) if isinstance(providers, Table) else None
        if not isinstance(table, Table):
            defined = ", ".join(str(k) for k in providers) if isinstance(providers, Table) else "none"
            raise ConfigError([f'{path}: providers: provider "{provider}" is not defined (defined: {defined})'])
        models = table.get("models")
        if models is None:
            models = tomlkit.table(is_super_table=True)
            table["models"] = models
        if not isinstance(models, Table):
            raise ConfigError([f"{path}: providers.{provider}.models: is not a table, cannot add to it"])
        if model in models:
            line = LineIndex(text).lines.get(("providers", provider, "models", model))
            where = f"{path}:{line}" if line else str(path)
            raise ConfigError([f'{where}: providers.{provider}.models: "{model}" is already declared'])
        entry = tomlkit.table()
        if display_name:
            entry["display_name"] = display_name
        if tier is not None:
            entry["tier"] = tier
        if capabilities:
            entry["capabilities"] = list(capabilities)
        if context_window is not None:
            entry["context_window"] = context_window
        entry.add(tomlkit.nl())  # a blank line before whatever table follows
        models[model] = entry

    _edit(Path(path), change)
