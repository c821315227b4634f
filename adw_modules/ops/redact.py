"""Mask every secret value the coordinator knows wherever it writes text others can read."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from adw_modules.config.schema import Config

MASK = "[REDACTED]"
MIN_SECRET_LEN = 8  # shorter "secrets" would mask ordinary words


class Redactor:
    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self._secrets: list[str] = []
        self.add(*secrets)

    def add(self, *secrets: str | None) -> None:
        for s in secrets:
            if s and len(s) >= MIN_SECRET_LEN and s not in self._secrets:
                self._secrets.append(s)
        # Longest first, so a secret that contains another is masked whole.
        self._secrets.sort(key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for s in self._secrets:
            if s in text:
                text = text.replace(s, MASK)
        return text


def secrets_of(config: Config, environ: Mapping[str, str]) -> Redactor:
    """Every secret value the coordinator can know (provider keys, the GitHub token)."""
    from adw_modules.routing.providers import ProviderRegistry, SecretError
    from adw_modules.sources.github.auth import github_token

    registry = ProviderRegistry(config, environ=environ)
    redact = Redactor()
    for name in config.providers:
        try:
            redact.add(registry.api_key(name))
        except SecretError:
            pass
    if config.github is not None:
        try:
            redact.add(github_token(config.github, environ))
        except SecretError:
            pass
    return redact
