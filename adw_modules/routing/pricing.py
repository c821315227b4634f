"""Model prices: an explicit override from config first, else the genai-prices library.

Prices are USD per million tokens.  ``estimate_cost`` turns normalised ``Usage``
(input excludes cache reads/writes) into dollars; it returns ``None`` when the
model's price is unknown, so callers can say "unknown" instead of "$0.00".
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from adw_modules.outcomes import Usage


@dataclass(frozen=True)
class Price:
    input_per_mtok: float
    output_per_mtok: float
    cache_read_per_mtok: float | None = None
    cache_write_per_mtok: float | None = None
    source: str = "config"  # "config" or "genai-prices"
    # Set for library prices: the exact genai-prices reference, so real usage is priced with
    # the library's own tiers (long-context rates) rather than the base rates shown here.
    library_ref: tuple[str, str] | None = None

    def cost(self, usage: Usage) -> float:
        if self.library_ref is not None:
            from genai_prices import Usage as GUsage
            from genai_prices import calc_price

            model, provider_id = self.library_ref
            calc = calc_price(
                GUsage(
                    # genai-prices counts cache tokens as partitions of the total input.
                    input_tokens=usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens,
                    cache_read_tokens=usage.cache_read_tokens,
                    cache_write_tokens=usage.cache_write_tokens,
                    output_tokens=usage.output_tokens,
                ),
                model_ref=model,
                provider_id=provider_id,
            )
            return float(calc.total_price)
        cache_read = self.cache_read_per_mtok if self.cache_read_per_mtok is not None else self.input_per_mtok
        cache_write = self.cache_write_per_mtok if self.cache_write_per_mtok is not None else self.input_per_mtok
        return (
            usage.input_tokens * self.input_per_mtok
            + usage.output_tokens * self.output_per_mtok
            + usage.cache_read_tokens * cache_read
            + usage.cache_write_tokens * cache_write
        ) / 1_000_000

    def per_1k_input(self) -> float:
        return self.input_per_mtok / 1000


def _decimal_or_none(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


@functools.lru_cache(maxsize=1024)
def library_price(model: str, provider_hint: str | None = None) -> Price | None:
    """Look a model up in genai-prices (base tier).  ``provider_hint`` is a genai-prices provider id.

    OpenRouter-style ids (``anthropic/claude-3.5-haiku``) are tried under the ``openrouter``
    provider too, because that is where genai-prices keeps them.
    """
    try:
        from genai_prices import Usage as GUsage
        from genai_prices import calc_price
    except ImportError:  # pragma: no cover - a declared dependency
        return None
    attempts: list[str | None] = [provider_hint]
    if "/" in model and "openrouter" not in attempts:
        attempts.append("openrouter")
    if None not in attempts:
        attempts.append(None)
    for provider_id in attempts:
        try:
            # Probe with small counts so tiered (long-context) prices do not kick in.
            calc = calc_price(GUsage(input_tokens=1000, output_tokens=1000), model_ref=model, provider_id=provider_id)
        except (LookupError, ValueError):
            continue
        mp = calc.model_price
        return Price(
            input_per_mtok=_tier_base(mp.input_mtok),
            output_per_mtok=_tier_base(mp.output_mtok),
            cache_read_per_mtok=_tier_base_or_none(mp.cache_read_mtok),
            cache_write_per_mtok=_tier_base_or_none(mp.cache_write_mtok),
            source="genai-prices",
            library_ref=(calc.model.id, calc.provider.id),
        )
    return None


def _tier_base(value: object) -> float:
    base = _tier_base_or_none(value)
    return 0.0 if base is None else base


def _tier_base_or_none(value: object) -> float | None:
    if value is None:
        return None
    base = getattr(value, "base", None)  # TieredPrices
    if base is not None:
        return float(base)
    return _decimal_or_none(value)


def estimate_cost(usage: Usage, price: Price | None) -> float | None:
    return None if price is None else round(price.cost(usage), 6)
