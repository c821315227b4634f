"""OpenRouter's public models list, ``GET {openrouter_url}/models``, read defensively.

The answer is ``{"data": [model, ...]}``; each model has ``id``, ``canonical_slug``, ``name``,
``created``, ``description``, ``context_length``, ``architecture`` (``modality``,
``input_modalities``, ``output_modalities``, ``tokenizer``, ``instruct_type``), ``pricing``
(``prompt``, ``completion``, ``request``, ``image``, ``web_search``, ``internal_reasoning``,
``input_cache_read``, ``input_cache_write``: decimal *strings*, USD per token), ``top_provider``
(``context_length``, ``max_completion_tokens``, ``is_moderated``), ``per_request_limits`` and
``supported_parameters``.

Whatever comes back is untrusted: the whole answer is refused (``CatalogError``) when it is
not HTTP 200, larger than the cap, not UTF-8, not JSON, not ``{"data": [...]}`` or has no
usable model; one entry is skipped (and counted, with why) when its id is missing or not a
plain model id.  Text fields lose control characters (NUL included) and are cut to a length;
a price that is not a finite decimal between 0 and $0.01 a token (OpenRouter writes ``"-1"``
for "varies", e.g. its auto router) is unknown, never zero.
"""

from __future__ import annotations

import http.client
import json
import math
import re
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import asdict, dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from adw_modules.config.catalog import CatalogConfig

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+~-]{0,199}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")
MAX_PER_TOKEN = Decimal("0.01")  # $10,000 per million tokens: anything above is not a price
_MAX_TOKENS = 100_000_000
_LISTS_MAX = 64
USER_AGENT = "adw-catalog/1 (+models list)"
ANSWER_TIMEOUTS = 3  # the whole answer must arrive within this many timeout_s
_CHUNK = 1 << 16


class CatalogError(RuntimeError):
    """The models list could not be had or read; the message says why (the old cache stays)."""


@dataclass(frozen=True)
class DiscoveredModel:
    """One model of the pool, as adw uses it.  Prices are USD per million tokens (None: unknown)."""

    id: str
    name: str
    context_length: int | None = None
    max_completion_tokens: int | None = None
    input_per_mtok: float | None = None
    output_per_mtok: float | None = None
    cache_read_per_mtok: float | None = None
    cache_write_per_mtok: float | None = None
    input_modalities: tuple[str, ...] = ()
    output_modalities: tuple[str, ...] = ()
    supported_parameters: tuple[str, ...] = ()
    description: str = ""
    created: int | None = None

    @property
    def capabilities(self) -> tuple[str, ...]:
        """What ``--capability`` matches: tools / reasoning / vision derived, plus every
        supported parameter and input modality as written."""
        derived = []
        if "tools" in self.supported_parameters:
            derived.append("tools")
        if "reasoning" in self.supported_parameters or "include_reasoning" in self.supported_parameters:
            derived.append("reasoning")
        if "image" in self.input_modalities:
            derived.append("vision")
        return tuple(dict.fromkeys([*derived, *self.supported_parameters, *self.input_modalities]))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Any) -> DiscoveredModel | None:
        """From the cache file (written by us, but a disk can hold anything: None if unusable)."""
        if not isinstance(raw, dict) or not isinstance(raw.get("id"), str) or not _ID.match(raw["id"]):
            return None
        prices = {f: _stored_price(raw.get(f)) for f in _PRICE_FIELDS.values()}
        tokens = (_tokens(raw.get("context_length")), _tokens(raw.get("max_completion_tokens")))
        return _model(raw["id"], raw, tokens, raw, prices)


# pricing key on the wire -> our field
_PRICE_FIELDS = {
    "prompt": "input_per_mtok",
    "completion": "output_per_mtok",
    "input_cache_read": "cache_read_per_mtok",
    "input_cache_write": "cache_write_per_mtok",
}


@dataclass
class Parsed:
    models: list[DiscoveredModel] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)  # why -> how many
    unknown_prices: int = 0  # models kept whose prompt or completion price could not be read


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow a redirect only to another http(s) URL (urllib would also follow one to ftp://)."""

    def redirect_request(
        self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> urllib.request.Request | None:
        if not newurl.lower().startswith(("http://", "https://")):
            raise urllib.error.URLError(f"redirected to a non-http(s) URL ({_clean(newurl, 80)})")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def fetch(cfg: CatalogConfig) -> bytes:
    """The raw answer of ``GET {openrouter_url}/models``; CatalogError when it cannot be had.

    At most ``max_bytes`` are read (one more tells that the answer is larger); no credentials
    are sent (the list is public).
    """
    url = cfg.models_url
    request = urllib.request.Request(url, headers={"Accept": "application/json", "User-Agent": USER_AGENT})
    opener = urllib.request.build_opener(_HttpOnlyRedirects)
    try:
        with opener.open(request, timeout=cfg.timeout_s) as response:
            body = _read_whole(response, cfg, url)
    except urllib.error.HTTPError as exc:
        raise CatalogError(f"{url}: HTTP {exc.code} {_clean(str(exc.reason), 120)}") from None
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as exc:  # a cut answer too
        reason = getattr(exc, "reason", exc)
        raise CatalogError(f"{url}: cannot fetch: {_clean(str(reason), 200)}") from None
    if len(body) > cfg.max_bytes:
        raise CatalogError(f"{url}: answer larger than {cfg.max_mb:g} MB ([catalog] max_mb); not read")
    return body


def _read_whole(response: Any, cfg: CatalogConfig, url: str) -> bytes:
    """At most ``max_bytes + 1`` bytes, all within ``ANSWER_TIMEOUTS × timeout_s``: the socket's
    timeout bounds each read only, and a server sending a byte now and then would hold a
    refresh (and ``adw run``'s catalog job) forever."""
    deadline = time.monotonic() + cfg.timeout_s * ANSWER_TIMEOUTS
    chunks: list[bytes] = []
    size = 0
    while size <= cfg.max_bytes:
        if time.monotonic() > deadline:
            raise CatalogError(
                f"{url}: the answer did not arrive within {cfg.timeout_s * ANSWER_TIMEOUTS:g} s "
                f"({ANSWER_TIMEOUTS} × [catalog] timeout_s); not read"
            )
        chunk: bytes = response.read1(min(_CHUNK, cfg.max_bytes + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def parse(body: bytes, url: str = "the models list") -> Parsed:
    """The models of one answer; CatalogError when the answer as a whole is unusable."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CatalogError(f"{url}: answer is not UTF-8 (byte offset {exc.start})") from None
    try:
        doc = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        start = _clean(text[:60], 60)
        raise CatalogError(f"{url}: answer is not JSON ({_clean(str(exc), 120)}); it starts {start!r}") from None
    data = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(data, list):
        raise CatalogError(f'{url}: answer is not {{"data": [...]}} (got {_shape(doc)})')
    parsed = Parsed()
    seen: set[str] = set()
    for entry in data:
        model = parse_model(entry)
        if isinstance(model, str):
            parsed.skipped[model] += 1
            continue
        if model.id in seen:
            parsed.skipped["duplicate id"] += 1
            continue
        seen.add(model.id)
        if model.input_per_mtok is None or model.output_per_mtok is None:
            parsed.unknown_prices += 1
        parsed.models.append(model)
    if not parsed.models:
        why = "; ".join(f"{n} {reason}" for reason, n in parsed.skipped.items()) or "the list is empty"
        raise CatalogError(f"{url}: no usable model in the answer ({why})")
    return parsed


def parse_model(entry: Any) -> DiscoveredModel | str:
    """One entry, or why it is skipped."""
    if not isinstance(entry, dict):
        return "entries not an object"
    model_id = entry.get("id")
    if not isinstance(model_id, str) or not model_id:
        return "entries without an id"
    if not _ID.match(model_id):
        return "entries whose id is not a plain model id"
    arch, top, pricing = (_table(entry.get(k)) for k in ("architecture", "top_provider", "pricing"))
    prices = {ours: _per_mtok(pricing.get(wire)) for wire, ours in _PRICE_FIELDS.items()}
    context = _tokens(entry.get("context_length")) or _tokens(top.get("context_length"))
    return _model(model_id, entry, (context, _tokens(top.get("max_completion_tokens"))), arch, prices)


def _model(
    model_id: str,
    raw: dict[str, Any],
    tokens: tuple[int | None, int | None],
    modalities: dict[str, Any],
    prices: dict[str, float | None],
) -> DiscoveredModel:
    """The model from what an answer's entry and a cache entry share: ``raw``'s name, parameters,
    description and creation time, ``modalities``' input/output lists (the answer nests them in
    ``architecture``), the (context, max output) tokens and the prices already read."""
    created = raw.get("created")
    return DiscoveredModel(
        id=model_id,
        name=_clean(raw.get("name"), 120) or model_id,
        context_length=tokens[0],
        max_completion_tokens=tokens[1],
        input_modalities=_words(modalities.get("input_modalities")),
        output_modalities=_words(modalities.get("output_modalities")),
        supported_parameters=_words(raw.get("supported_parameters")),
        description=_clean(raw.get("description"), 300),
        created=created if type(created) is int else None,
        **prices,
    )


def _table(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _per_mtok(value: Any) -> float | None:
    """A wire price (a decimal string, USD per token) as USD per million tokens; None if unreadable."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    try:
        per_token = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None
    if not per_token.is_finite() or per_token < 0 or per_token > MAX_PER_TOKEN:
        return None  # "-1" (varies), NaN, Infinity, absurd
    per_mtok = float(per_token * 1_000_000)
    return per_mtok if math.isfinite(per_mtok) else None


def _stored_price(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and 0 <= value <= float(MAX_PER_TOKEN) * 1_000_000 else None


def _tokens(value: Any) -> int | None:
    if type(value) is int and 0 < value <= _MAX_TOKENS:
        return value
    if isinstance(value, float) and value.is_integer() and 0 < value <= _MAX_TOKENS:
        return int(value)
    return None


def _words(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    words = [_clean(v, 40) for v in value[:_LISTS_MAX] if isinstance(v, str)]
    return tuple(dict.fromkeys(w for w in words if w))


def _clean(value: Any, limit: int) -> str:
    """Printable text: control, zero-width and bidi characters (NUL too) removed, at most ``limit``."""
    if not isinstance(value, str):
        return ""
    text = _CONTROL.sub("", value).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _shape(doc: Any) -> str:
    if isinstance(doc, dict):
        keys = ", ".join(_clean(str(k), 30) for k in list(doc)[:5])
        return f"an object with keys {keys or 'none'}"
    return type(doc).__name__
