"""Mask every secret value the coordinator knows wherever it writes text others can read.

A ``Redactor`` is told each value when it is fetched (``ops.secrets`` does that) and masks
all of them from then on.  It knows nothing of where values come from.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

MASK = "[REDACTED]"
MIN_SECRET_LEN = 8  # shorter "secrets" would mask ordinary words


class Redactor:
    """Masks every value added to it.  Safe to add to from one thread while others mask."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        # Replaced whole on each add, never changed in place: masking reads it without the lock.
        self._secrets: tuple[str, ...] = ()
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
        for s in self._secrets:
            if s in text:
                text = text.replace(s, MASK)
        return text
