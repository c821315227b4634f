"""Seed 003's provider API, as a thin face over ``routing.providers`` (the one implementation).

Seed 003 shows::

    from adw_modules.providers import ProviderManager

    provider_manager = ProviderManager(config)
    provider = provider_manager.get_provider('claude-cli')
    cmd = provider.build_command(prompt_file, model, output_file)

``config`` is the loaded ``Config`` the seed also hands to ``ModelRouter(config)`` (a path
to config.toml is accepted too).  ``build_command`` returns the argv exactly as an attempt
would run it: the program resolved on PATH (or beside the config), every template element
one argument, parameters inherited global -> provider as in an attempt.  Everything else
(availability, API keys, model queries) is on ``ProviderManager.registry``.

Seed 004's ``registry = get_configured_registry()`` is here too: the ``ProviderRegistry`` of
the config at ``$ADW_CONFIG``, else ./config.toml (where seed 004 read
.orchestrator/providers.yaml), with its queries ``list_models``, ``find_cheapest_model``,
``find_best_model(prefer_local=)``, ``check_availability``, ``get_summary``, ``list_providers``.
"""

from __future__ import annotations

import os
from typing import Any

from adw_modules.config.schema import Config, load_config
from adw_modules.routing.providers import ModelTier, ProviderRegistry
from adw_modules.routing.providers import Provider as RegistryProvider
from adw_modules.routing.router import resolve_params

__all__ = ["ModelTier", "Provider", "ProviderManager", "ProviderRegistry", "get_configured_registry"]


class Provider:
    """One configured provider with seed 003's ``build_command(prompt_file, model, output_file)``."""

    def __init__(self, provider: RegistryProvider, config: Config) -> None:
        self.provider = provider
        self.config = config

    @property
    def name(self) -> str:
        return self.provider.name

    def build_command(
        self,
        prompt_file: str | os.PathLike[str],
        model: str,
        output_file: str | os.PathLike[str] | None = None,
        **placeholders: Any,
    ) -> list[str]:
        """The argv for one run.  ``placeholders`` fills any other template field ({workdir}, ...).

        Raises ``routing.providers.TemplateError`` when a field has no value or the program
        cannot be found, as an attempt would.
        """
        values: dict[str, Any] = {
            **resolve_params(self.config, self.name),
            **placeholders,
            "prompt_file": os.fspath(prompt_file),
            "model": model,
            "output_file": None if output_file is None else os.fspath(output_file),
        }
        return self.provider.build_command(values)


class ProviderManager:
    """The configured providers, by name (seed 003); a ``ProviderRegistry`` underneath."""

    def __init__(self, config: Config | str | os.PathLike[str]) -> None:
        self.config = config if isinstance(config, Config) else load_config(os.fspath(config))
        self.registry = ProviderRegistry(self.config)

    def get_provider(self, name: str) -> Provider:
        """The provider called ``name``; KeyError naming the defined ones otherwise."""
        return Provider(self.registry.get_provider(name), self.config)


def get_configured_registry(config: Config | str | os.PathLike[str] | None = None) -> ProviderRegistry:
    """Seed 004's entry point: the registry of ``config`` (default ``$ADW_CONFIG``, else ./config.toml)."""
    if not isinstance(config, Config):
        config = load_config(os.fspath(config) if config is not None else os.environ.get("ADW_CONFIG") or "config.toml")
    return ProviderRegistry(config)
