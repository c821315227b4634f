"""Mask every secret value the coordinator knows wherever it writes text others can read.

A ``Redactor`` is told each value when it is fetched (``ops.secrets`` does that) and masks
all of them from then on.  It knows nothing of where values come from.

Agents print JSON, and a JSON encoder may write any character of a value escaped: ``\\u002d``
for ``-`` (either hex case), ``\\/`` for ``/``, ``\\"`` and ``\\\\``; a value inside a JSON
string inside a JSON string gets its backslashes doubled again.  So a value is masked in
every spelling where each of its characters is either itself or one of those escapes, with
any number of backslashes, in any mix.  Text without a backslash can hold only the plain
spelling, so it takes the fast path (``str.replace``) alone.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable

MASK = "[REDACTED]"
MIN_SECRET_LEN = 8  # shorter "secrets" would mask ordinary words

# The short escapes JSON has for characters a secret may contain (control characters only
# ever appear as \uXXXX or \n-style escapes, and no key holds one).
_SHORT_ESCAPES = {"/": "/", '"': '"', "\\": "\\", "\b": "b", "\f": "f", "\n": "n", "\r": "r", "\t": "t"}


def _hex_any_case(code: int) -> str:
    return "".join(f"[{d}{d.upper()}]" if d.isalpha() else d for d in f"{code:04x}")


def _escaped_char(c: str) -> str:
    """A pattern for ``c`` as itself or JSON-escaped, at any escaping depth."""
    code = ord(c)
    if code > 0xFFFF:  # outside the BMP JSON escapes a character as its UTF-16 surrogate pair
        high, low = 0xD800 + ((code - 0x10000) >> 10), 0xDC00 + ((code - 0x10000) & 0x3FF)
        unicode_escape = rf"\\+u{_hex_any_case(high)}\\+u{_hex_any_case(low)}"
    else:
        unicode_escape = rf"\\+u{_hex_any_case(code)}"
    options = [re.escape(c), unicode_escape]
    if c in _SHORT_ESCAPES:
        options.append(r"\\+" + re.escape(_SHORT_ESCAPES[c]))
    return "(?:" + "|".join(options) + ")"


def escaped_pattern(secret: str) -> str:
    """A regular expression matching ``secret`` in every JSON-escaped spelling (and plain)."""
    return "".join(_escaped_char(c) for c in secret)


class Redactor:
    """Masks every value added to it.  Safe to add to from one thread while others mask."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        # Replaced whole on each add, never changed in place: masking reads it without the lock.
        self._secrets: tuple[str, ...] = ()
        # The escaped-spelling pattern and the tuple it was built for; built on first need, as
        # most text has no backslash and adding many values must not compile each time.
        self._escaped: tuple[tuple[str, ...], re.Pattern[str]] | None = None
        self._adding = threading.Lock()
        self.add(*secrets)

    def add(self, *secrets: str | None) -> None:
        with self._adding:
            known = set(self._secrets)
            new = {s for s in secrets if s and len(s) >= MIN_SECRET_LEN and s not in known}
            if new:
                # Longest first, so a secret that contains another is masked whole.
                self._secrets = tuple(sorted(known | new, key=lambda s: (-len(s), s)))

    def __call__(self, text: str) -> str:
        secrets = self._secrets
        for s in secrets:
            if s in text:
                text = text.replace(s, MASK)
        if secrets and "\\" in text:
            text = self._escaped_pattern(secrets).sub(MASK, text)
        return text

    def _escaped_pattern(self, secrets: tuple[str, ...]) -> re.Pattern[str]:
        built = self._escaped
        if built is None or built[0] is not secrets:
            # Two threads may both build it: the same pattern, and either assignment is whole.
            # The lookahead lets the engine skip, with one class test, every position where no
            # value can start: neither a value's first character nor a backslash.
            starts = re.escape("".join(sorted({s[0] for s in secrets} | {"\\"})))
            alternatives = "|".join(escaped_pattern(s) for s in secrets)
            built = (secrets, re.compile(f"(?=[{starts}])(?:{alternatives})"))
            self._escaped = built
        return built[1]
