"""``[catalog]``: where the discovered model pool comes from and how often ``adw run`` refreshes it.

::

    [catalog]
    openrouter_url = "https://openrouter.ai/api/v1"   # GET {openrouter_url}/models, public
    refresh = true              # adw run refreshes the cache on a timer
    refresh_interval_h = 24
    timeout_s = 20              # per connection and read; the whole answer within 3 × this
    max_mb = 32                 # a larger answer is refused (the old cache stays)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adw_modules.config.validation import PASSWORD_IN_URL, Validator

DEFAULT_OPENROUTER_URL = "https://openrouter.ai/api/v1"
_KEYS = ("openrouter_url", "refresh", "refresh_interval_h", "timeout_s", "max_mb")


@dataclass(frozen=True)
class CatalogConfig:
    openrouter_url: str = DEFAULT_OPENROUTER_URL
    refresh: bool = False
    refresh_interval_h: float = 24.0
    timeout_s: float = 20.0
    max_mb: float = 32.0
    state_dir: Path = Path(".adw")  # the cache lives in <state_dir>/catalog/

    @property
    def models_url(self) -> str:
        return f"{self.openrouter_url}/models"

    @property
    def cache_path(self) -> Path:
        return self.state_dir / "catalog" / "openrouter.json"

    @property
    def max_bytes(self) -> int:
        return int(self.max_mb * 1024 * 1024)


def validate_catalog(v: Validator, data: Mapping[str, Any], state_dir: Path) -> CatalogConfig:
    """``[catalog]`` (every key optional; an absent table is the defaults, refresh off)."""
    w = "catalog"
    t = v.get(data, "catalog", dict, w, {}) or {}
    v.unknown_keys(t, _KEYS, w, "key")
    d = CatalogConfig()
    url = v.get(t, "openrouter_url", str, w, d.openrouter_url).rstrip("/")
    if any(ord(c) < 33 or ord(c) == 127 for c in url):  # a terminal escape, a newline, a space
        v.err(w, f"openrouter_url {json.dumps(url)} holds spaces or control characters")
    elif not url.startswith(("https://", "http://")):
        v.err(w, f'openrouter_url "{url}" must be an http(s) URL (e.g. {DEFAULT_OPENROUTER_URL})')
    if PASSWORD_IN_URL.search(url):
        v.err(w, "openrouter_url contains a password: the models list is public and needs none")
    return CatalogConfig(
        openrouter_url=url,
        refresh=bool(v.get(t, "refresh", bool, w, d.refresh)),
        refresh_interval_h=v.positive(t, "refresh_interval_h", float, w) or d.refresh_interval_h,
        timeout_s=v.positive(t, "timeout_s", float, w) or d.timeout_s,
        max_mb=v.positive(t, "max_mb", float, w) or d.max_mb,
        state_dir=state_dir,
    )
