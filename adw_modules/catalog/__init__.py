"""The discovered model pool: OpenRouter's public models list, cached in the state dir.

Owns: ``openrouter`` (fetch ``GET {openrouter_url}/models`` with a size cap and a timeout, and
read its answer defensively into ``DiscoveredModel`` records: a bad answer is a
``CatalogError`` naming what is wrong, a bad entry is skipped and counted), ``cache`` (the
cache file ``<state_dir>/catalog/openrouter.json`` with its refresh time and count, written
atomically only after a good answer, so a failed refresh keeps the old one; queries and the
discovered price of a model).

May import: ``config`` (``CatalogConfig``), ``routing.pricing`` (the ``Price`` a discovered
model gets).  Nothing else: routing asks this package for prices, not the other way round.
"""

from __future__ import annotations
