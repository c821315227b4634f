"""The validator every config section uses: typed getters that report instead of raising.

A section's ``validate_*(v, data)`` reads its table through ``Validator``; each getter
reports a wrong type or value with ``err`` and returns a default, so validation goes on
and one run lists every problem, each as ``FILE:LINE: TABLE.PATH: message``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from adw_modules.config.lines import LineIndex
from adw_modules.routing.conditions import type_name

__all__ = ["Validator", "type_name"]


# user:password@ in a URL: a password written into the file (secrets go by reference).
PASSWORD_IN_URL = re.compile(r"://[^/@:]+:[^/@]+@")


class Validator:
    def __init__(self, data: dict[str, Any], path: Path, lines: LineIndex | None = None) -> None:
        self.data = data
        self.path = path
        self.base = path.resolve().parent
        self.lines = lines
        self.issues: list[str] = []

    def err(self, where: str, message: str) -> None:
        line = self.lines.line_of(where, message) if self.lines is not None and where else None
        at = f"{self.path}:{line}" if line is not None else f"{self.path}"
        self.issues.append(f"{at}: {where}: {message}" if where else f"{at}: {message}")

    # -- typed getters: report and return the default on a wrong type
    def unknown_keys(self, table: Mapping[str, Any], allowed: Iterable[str], where: str, what: str) -> None:
        allowed = tuple(allowed)
        for key in table:
            if key not in allowed:
                hint = difflib.get_close_matches(key, allowed, n=1)
                suggestion = f' (did you mean "{hint[0]}"?)' if hint else f" (known: {', '.join(allowed)})"
                self.err(where, f'unknown {what} "{key}"{suggestion}')

    def get(
        self,
        table: Mapping[str, Any],
        key: str,
        kind: type | tuple[type, ...],
        where: str,
        default: Any = None,
    ) -> Any:
        if key not in table:
            return default
        value = table[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            ok = True
            value = float(value)
        if not ok:
            names = " or ".join(type_name(k()) if k is not type(None) else "none" for k in kinds)
            self.err(where, f"{key} must be {names}, not {type_name(value)}")
            return default
        return value

    def str_list(self, table: Mapping[str, Any], key: str, where: str, *, allow_str: bool = False) -> list[str] | None:
        if key not in table:
            return None
        value = table[key]
        if allow_str and isinstance(value, str):
            return [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            form = "a string or an array of strings" if allow_str else "an array of strings"
            self.err(where, f"{key} must be {form}")
            return None
        return list(value)

    def positive(self, table: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
        value = self.get(table, key, kind, where)
        if value is not None and value <= 0:
            self.err(where, f"{key} must be greater than 0, not {value}")
            return None
        return value

    def file_ref(self, value: str | None, where: str, key: str) -> Path | None:
        if value is None:
            return None
        p = Path(value).expanduser()
        p = p if p.is_absolute() else self.base / p
        if not p.is_file():
            self.err(where, f'{key} file "{value}" does not exist (looked at {p})')
            return None
        return p
