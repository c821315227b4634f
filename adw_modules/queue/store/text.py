"""Text the store can always write, on SQLite and PostgreSQL alike: the one place that decides it.

PostgreSQL refuses two things any text from outside may hold: the NUL character (``text`` and
``jsonb`` cannot contain U+0000) and lone UTF-16 surrogates (U+D800..U+DFFF, which are not
UTF-8 at all; SQLite's driver refuses them too).  A worker's result, an error message, a
GitHub comment can carry either, and a store that raises on them loops the task forever.
So every text and JSON column of the schema goes through a type defined here:

* ``StorableText`` / ``StorableJSON`` (attempt results, errors, events, reasons, source state):
  NUL and every lone surrogate become U+FFFD (the replacement character).  Lossy, like
  ``errors="replace"`` decoding, and the same on both backends.
* ``EscapedText`` (a task's title and body, which the agent must get exactly): lone surrogates
  become U+FFFD (they cannot reach an agent through UTF-8 anyway), while NUL is *escaped* on
  write and restored on read, on both backends, so a task's body comes back as it went in.
  The escape is ``NUL_ESCAPE`` (a private-use character, U+10FFFD) followed by ``0``; the
  escape character itself is doubled.  Rows written before the escape existed read unchanged.
"""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect

REPLACEMENT = "\ufffd"
NUL_ESCAPE = "\U0010fffd"
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_ESCAPED = re.compile(re.escape(NUL_ESCAPE) + "(.)", re.DOTALL)


def storable(text: str) -> str:
    """``text`` with NUL and lone surrogates replaced by U+FFFD (a no-op for ordinary text)."""
    return _UNSTORABLE.sub(REPLACEMENT, text)


def storable_json(value: Any) -> Any:
    """A JSON value with ``storable`` applied to every string in it, keys included."""
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, dict):
        return {storable_json(k): storable_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable_json(v) for v in value]
    return value


def escape_text(text: str) -> str:
    """A title or body as stored: surrogates replaced, NUL escaped reversibly."""
    text = _LONE_SURROGATE.sub(REPLACEMENT, text)
    if "\x00" not in text and NUL_ESCAPE not in text:
        return text
    return text.replace(NUL_ESCAPE, NUL_ESCAPE * 2).replace("\x00", NUL_ESCAPE + "0")


def unescape_text(text: str) -> str:
    """The inverse of ``escape_text`` (surrogates aside)."""
    if NUL_ESCAPE not in text:
        return text
    return _ESCAPED.sub(lambda m: "\x00" if m.group(1) == "0" else m.group(1), text)


def as_read_back(text: str) -> str:
    """What ``EscapedText`` returns for ``text`` after a round trip (to compare with stored rows)."""
    return _LONE_SURROGATE.sub(REPLACEMENT, text)


class StorableText(sa.TypeDecorator[str]):
    """Text; NUL and lone surrogates replaced on write (see the module docstring)."""

    impl = sa.Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else storable(value)


class StorableString(sa.TypeDecorator[str]):
    """A bounded string; NUL and lone surrogates replaced on write."""

    impl = sa.String
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else storable(value)


class EscapedText(sa.TypeDecorator[str]):
    """Text that round-trips NUL (escaped on write, restored on read; see the module docstring)."""

    impl = sa.Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else escape_text(value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else unescape_text(value)


class StorableJSON(sa.TypeDecorator[Any]):
    """JSON (JSONB on PostgreSQL); every string in it made storable on write."""

    impl = sa.JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.JSONB())
        return dialect.type_descriptor(sa.JSON())

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        return None if value is None else storable_json(value)
