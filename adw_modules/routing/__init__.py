"""Stage 2a, routing: which provider and model run a task, and at what price.

Owns: ``conditions`` (the condition registry: each condition's parsing, test and
explanation, defined once), ``router`` (rules in priority order, fallbacks, chains, the
decision trace), ``providers`` (the provider registry: availability, argv building, model
queries, seed 004's registry API), ``pricing`` (prices and cost estimates).

May import: ``outcomes``, ``config``, ``ops.secrets``, ``ops.redact``, ``catalog`` (a discovered
model's price when genai-prices lacks it).  ``conditions`` and
``pricing`` import nothing from ``config`` (config parses with them).

``ModelRouter`` is importable from here, as seed 003 shows (``from adw_modules.routing import
ModelRouter``); it is loaded on first use so that importing ``routing.conditions`` or
``routing.pricing`` does not pull in the router and the config behind it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ModelRouter"]


def __getattr__(name: str) -> Any:
    if name == "ModelRouter":
        from adw_modules.routing.router import ModelRouter

        return ModelRouter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
