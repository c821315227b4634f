"""A Store that fails on purpose: one chosen method raises at its k-th call, once or from then on.

The coordinator only ever calls the store's public methods, so wrapping them is enough to put
a database fault at any point of a task's life (the store's own internal calls go straight to
the real store).  The error raised is what a database outage raises: an OperationalError.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any, Literal

import sqlalchemy as sa

from adw_modules.queue.store import Store

Mode = Literal["once", "always"]


class InjectedFault(sa.exc.OperationalError):
    """The fault a ``FaultyStore`` raises (a subclass of what a lost connection raises)."""

    def __init__(self, method: str, call: int) -> None:
        super().__init__(f"{method} (injected fault)", {}, Exception(f"injected fault in {method}, call {call}"))


class FaultyStore:
    """Delegates to ``store``; ``method`` raises ``InjectedFault`` at its ``k``-th call
    (``once``) or at every call from the ``k``-th on (``always``); ``faults`` counts those."""

    def __init__(
        self, store: Store, method: str, k: int, mode: Mode, also_once: Mapping[str, int] | None = None
    ) -> None:
        if not callable(getattr(store, method, None)):
            raise AttributeError(f"the store has no method {method!r}")
        self._store = store
        self._method = method
        self._k = k
        self._mode = mode
        # Further methods that fail once, at the given call: they lead a task's life through the
        # paths (release, abandon) where ``method`` is used at all.
        self._also_once = dict(also_once or {})
        self.calls: Counter[str] = Counter()
        self.faults = 0

    def __getattr__(self, name: str) -> Any:
        real = getattr(self._store, name)
        if not callable(real) or name.startswith("_"):
            return real

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            n = self.calls[name]
            if name == self._method and (n == self._k if self._mode == "once" else n >= self._k):
                self.faults += 1
                raise InjectedFault(name, n)
            if self._also_once.get(name) == n:
                raise InjectedFault(name, n)
            return real(*args, **kwargs)

        return call
