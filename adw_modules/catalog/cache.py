"""The discovered pool on disk: ``<state_dir>/catalog/openrouter.json``, its refresh time and count.

``refresh`` fetches and parses first and writes only a good answer (temp file + rename), so
a failed refresh leaves the previous cache exactly as it was and says why.  ``load`` reads
the cache back (a missing or damaged file is an empty catalog with a reason, never a crash);
``price_of`` is the discovered price of one model, the fallback when genai-prices lacks it.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adw_modules.catalog.openrouter import CatalogError, DiscoveredModel, fetch, parse
from adw_modules.config.catalog import CatalogConfig
from adw_modules.routing.pricing import Price

CACHE_FORMAT = 1
PRICE_SOURCE = "openrouter-catalog"


@dataclass(frozen=True)
class Catalog:
    """The cached pool.  ``fetched_at`` None: never refreshed (``problem`` may say why)."""

    models: tuple[DiscoveredModel, ...] = ()
    fetched_at: dt.datetime | None = None
    source: str | None = None
    skipped: dict[str, int] = field(default_factory=dict)
    unknown_prices: int = 0
    problem: str | None = None  # the cache could not be read
    _index: dict[str, DiscoveredModel] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._index.update((m.id, m) for m in self.models)

    @property
    def count(self) -> int:
        return len(self.models)

    def get(self, model_id: str) -> DiscoveredModel | None:
        return self._index.get(model_id)

    def search(
        self,
        capability: str | None = None,
        min_context: int | None = None,
        max_cost: float | None = None,
        text: str | None = None,
    ) -> list[DiscoveredModel]:
        """Models matching every criterion, cheapest input first (unknown prices last).

        ``max_cost`` is USD per 1K input tokens, as for curated models; an unknown price never
        passes it.  ``text`` matches id, name or description, case-insensitively.
        """
        needle = text.casefold() if text else None
        out = []
        for m in self.models:
            if capability is not None and capability not in m.capabilities:
                continue
            if min_context is not None and (m.context_length or 0) < min_context:
                continue
            if max_cost is not None and (m.input_per_mtok is None or m.input_per_mtok / 1000 > max_cost):
                continue
            if needle is not None and not any(needle in f.casefold() for f in (m.id, m.name, m.description)):
                continue
            out.append(m)
        return sorted(out, key=lambda m: (m.input_per_mtok is None, m.input_per_mtok or 0.0, m.id))

    def summary(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "fetched_at": None if self.fetched_at is None else self.fetched_at.isoformat(),
            "count": self.count,
            "skipped": dict(self.skipped),
            "unknown_prices": self.unknown_prices,
            "problem": self.problem,
        }


def load(cfg: CatalogConfig) -> Catalog:
    """The cache as last written; an empty Catalog (with ``problem``) if missing or unreadable."""
    path = cfg.cache_path
    try:
        raw = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        return Catalog()
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        return Catalog(problem=f"{path}: unreadable ({type(exc).__name__}); run: adw models discover --refresh")
    if not isinstance(raw, dict) or raw.get("format") != CACHE_FORMAT or not isinstance(raw.get("models"), list):
        return Catalog(problem=f"{path}: not a catalog cache; run: adw models discover --refresh")
    models = tuple(m for m in (DiscoveredModel.from_dict(e) for e in raw["models"]) if m is not None)
    return Catalog(
        models=models,
        fetched_at=_time(raw.get("fetched_at")),
        source=raw.get("source") if isinstance(raw.get("source"), str) else None,
        skipped={str(k): int(v) for k, v in (raw.get("skipped") or {}).items() if type(v) is int},
        unknown_prices=raw["unknown_prices"] if type(raw.get("unknown_prices")) is int else 0,
    )


def refresh(
    cfg: CatalogConfig,
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    get: Callable[[CatalogConfig], bytes] = fetch,
) -> Catalog:
    """Fetch, parse and write the cache; CatalogError (the old cache untouched) when that fails."""
    parsed = parse(get(cfg), cfg.models_url)
    catalog = Catalog(
        models=tuple(parsed.models),
        fetched_at=now(),
        source=cfg.models_url,
        skipped=dict(parsed.skipped),
        unknown_prices=parsed.unknown_prices,
    )
    _write(cfg.cache_path, catalog)
    _cached_load.cache_clear()
    return catalog


def is_stale(catalog: Catalog, cfg: CatalogConfig, now: dt.datetime) -> bool:
    """Due for a refresh: never fetched, or older than 90 % of the interval (a timer set to the
    interval fires a moment before the previous refresh is a whole interval old)."""
    if catalog.fetched_at is None:
        return True
    return now - catalog.fetched_at >= dt.timedelta(hours=cfg.refresh_interval_h * 0.9)


def _write(path: Path, catalog: Catalog) -> None:
    doc = {
        "format": CACHE_FORMAT,
        **catalog.summary(),
        "models": [m.to_dict() for m in catalog.models],
    }
    doc.pop("problem")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as exc:
        raise CatalogError(f"{path}: cannot write the cache: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f, ensure_ascii=False)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise CatalogError(f"{path}: cannot write the cache: {exc.strerror or exc}") from None


def _time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)


@functools.lru_cache(maxsize=8)
def _cached_load(path: Path, mtime_ns: int, cfg: CatalogConfig) -> Catalog:
    return load(cfg)


def current(cfg: CatalogConfig) -> Catalog:
    """``load``, read again only when the file changed (prices are asked per model, often)."""
    try:
        mtime = cfg.cache_path.stat().st_mtime_ns
    except OSError:
        return Catalog()
    return _cached_load(cfg.cache_path, mtime, cfg)


def price_of(cfg: CatalogConfig, model_ids: Iterable[str]) -> Price | None:
    """The discovered price of the first of ``model_ids`` the pool prices, source ``openrouter-catalog``."""
    catalog = current(cfg)
    for model_id in model_ids:
        model = catalog.get(model_id)
        if model is not None and model.input_per_mtok is not None and model.output_per_mtok is not None:
            return Price(
                input_per_mtok=model.input_per_mtok,
                output_per_mtok=model.output_per_mtok,
                cache_read_per_mtok=model.cache_read_per_mtok,
                cache_write_per_mtok=model.cache_write_per_mtok,
                source=PRICE_SOURCE,
            )
    return None
