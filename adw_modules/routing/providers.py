"""The provider registry: which agent CLIs are usable now, why not, and what their models cost.

A provider is a command template for an agent CLI plus its model metadata.  It is
*available* when it is enabled, its program resolves to an executable file, and the
API key it needs can be had (the variable is set, or the secret command succeeds).
Keys are fetched by ``ops.secrets`` only to hand them to the child process; each is
registered with the registry's redactor, and never returned in a reason, logged or stored.
"""

from __future__ import annotations

import os
import re
import shutil
import string
import sys
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from adw_modules.catalog import cache as catalog_cache
from adw_modules.config.schema import TIERS, Config, ModelSpec, ProviderConfig
from adw_modules.ops.redact import Redactor

# SecretError is imported from here too (availability reasons are SecretErrors): keep it importable.
from adw_modules.ops.secrets import SECRET_TIMEOUT_S, SecretError, Secrets
from adw_modules.outcomes import Usage
from adw_modules.routing.pricing import Price, estimate_cost, library_price

TIER_RANK = {name: i for i, name in enumerate(TIERS)}
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "0.0.0.0"})
LOCAL_PRESETS = frozenset({"ollama", "lmstudio"})
_URL = re.compile(r"https?://[^\s\"',]+")


class ModelTier(StrEnum):
    """Seed 004's tiers; equal to the config's strings (``ModelTier.FAST == "fast"``)."""

    FAST = "fast"
    STANDARD = "standard"
    ADVANCED = "advanced"


# Linux refuses a single argv string over MAX_ARG_STRLEN (128 KiB); stay well below it.
MAX_ARG_BYTES = 100_000
# The reference workload for "what does this model cost": seed 004's 3K in + 1K out.
REFERENCE_INPUT, REFERENCE_OUTPUT = 3000, 1000


@dataclass(frozen=True)
class Availability:
    available: bool
    reason: str | None = None


@dataclass(frozen=True)
class ModelInfo:
    provider: str
    spec: ModelSpec
    price: Price | None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def model_id(self) -> str:
        return self.spec.name

    @property
    def display_name(self) -> str:
        return self.spec.display_name

    @property
    def capabilities(self) -> tuple[str, ...]:
        return self.spec.capabilities

    @property
    def context_window(self) -> int | None:
        return self.spec.context_window

    @property
    def tier(self) -> ModelTier | None:
        return None if self.spec.tier is None else ModelTier(self.spec.tier)

    @property
    def cost_per_1k_input(self) -> float | None:
        return None if self.price is None else self.price.per_1k_input()

    @property
    def cost_per_1k_output(self) -> float | None:
        return None if self.price is None else self.price.output_per_mtok / 1000

    def estimated_cost(
        self, input_tokens: int = REFERENCE_INPUT, output_tokens: int = REFERENCE_OUTPUT
    ) -> float | None:
        return estimate_cost(Usage(input_tokens=input_tokens, output_tokens=output_tokens), self.price)


class TemplateError(ValueError):
    """A command template could not be filled for this attempt."""


class Provider:
    """One configured provider: builds the argv for an attempt (seed 003's ``build_command``)."""

    def __init__(self, config: ProviderConfig, base_dir: Path) -> None:
        self.config = config
        self.base_dir = base_dir

    @property
    def name(self) -> str:
        return self.config.name

    def program(self, path_env: str | None = None) -> tuple[str | None, str | None]:
        """(resolved executable path, None) or (None, why not)."""
        prog = self.config.command_template[0]
        if "/" in prog or prog.startswith("."):
            p = Path(prog).expanduser()
            p = p if p.is_absolute() else self.base_dir / p
            if not p.exists():
                return None, f"{prog} not found (looked at {p})"
            if p.suffix == ".py":
                return str(p), None  # run with the coordinator's own interpreter, see argv()
            if not os.access(p, os.X_OK):
                return None, f"{prog} is not executable (chmod +x {p})"
            return str(p), None
        found = shutil.which(prog, path=path_env)
        if found is None:
            return None, f"{prog} not found on PATH"
        return found, None

    def build_command(self, values: Mapping[str, Any], path_env: str | None = None) -> list[str]:
        """Fill the template.  ``values`` holds the built-in placeholders and the resolved params.

        Each template element becomes exactly one argv element, whatever the values contain:
        there is no shell, so an issue titled ``$(rm -rf ~)`` stays text.
        """
        argv: list[str] = []
        for i, part in enumerate(self.config.command_template):
            try:
                filled = part.format_map(_StrictValues(values))
            except KeyError as exc:
                raise TemplateError(
                    f"providers.{self.name}.command_template[{i}]: no value for {{{exc.args[0]}}}"
                ) from None
            if len(filled.encode()) > MAX_ARG_BYTES:
                raise TemplateError(
                    f"providers.{self.name}.command_template[{i}] would be {len(filled.encode())} bytes, "
                    "more than one argument can carry: deliver the prompt with {prompt_file} or "
                    "prompt_stdin = true"
                )
            argv.append(filled)
        program, why = self.program(path_env)
        if program is None:
            raise TemplateError(f"provider {self.name}: {why}")
        argv[0] = program
        if program.endswith(".py"):
            # tools/*.py need the project's own dependencies: run them with this interpreter.
            argv.insert(0, sys.executable)
        return argv

    def placeholders(self) -> set[str]:
        names: set[str] = set()
        for part in self.config.command_template:
            names.update(f for _, f, _, _ in string.Formatter().parse(part) if f)
        return names


class _StrictValues(dict[str, Any]):
    def __init__(self, values: Mapping[str, Any]) -> None:
        super().__init__({k: "" if v is None else v for k, v in values.items()})

    def __missing__(self, key: str) -> Any:
        raise KeyError(key)


class ProviderRegistry:
    """Providers from config, their availability with a reason, and model queries (seed 004)."""

    def __init__(
        self,
        config: Config,
        environ: Mapping[str, str] | None = None,
        secret_timeout_s: float = SECRET_TIMEOUT_S,
        redactor: Redactor | None = None,
    ) -> None:
        self.config = config
        self.environ = dict(os.environ if environ is None else environ)
        # Every key fetched through this registry is masked by ``secrets.redactor`` from then on.
        self.secrets = Secrets(self.environ, redactor, timeout_s=secret_timeout_s)
        self.providers = {name: Provider(pc, config.base_dir) for name, pc in config.providers.items()}
        self._availability: dict[str, Availability] = {}

    def get_provider(self, name: str) -> Provider:
        try:
            return self.providers[name]
        except KeyError:
            raise KeyError(f"provider {name!r} is not defined (defined: {', '.join(self.providers)})") from None

    # -- availability
    def availability(self, name: str) -> Availability:
        if name not in self._availability:
            self._availability[name] = self._check(self.get_provider(name))
        return self._availability[name]

    def refresh(self) -> None:
        self._availability.clear()

    def _check(self, provider: Provider) -> Availability:
        pc = provider.config
        if not pc.enabled:
            return Availability(False, "enabled = false")
        _, why = provider.program(self.environ.get("PATH"))
        if why is not None:
            return Availability(False, why)
        if pc.requires_api_key or pc.api_key_command:
            try:
                self.api_key(pc.name)
            except SecretError as exc:
                return Availability(False, str(exc))
        return Availability(True)

    def unavailable(self) -> dict[str, str]:
        out = {}
        for name in self.providers:
            a = self.availability(name)
            if not a.available:
                out[name] = a.reason or "unavailable"
        return out

    def available_names(self) -> list[str]:
        return [n for n in self.providers if self.availability(n).available]

    def api_key(self, name: str) -> str | None:
        """The key for a provider, or None if it needs none.  Raises SecretError saying why not."""
        return self.secrets.provider_key(self.get_provider(name).config)

    # -- models
    def price_for(self, provider: str, model: str) -> Price | None:
        pc = self.config.providers.get(provider)
        spec = pc.models.get(model) if pc else None
        if spec is not None and spec.price is not None:
            return spec.price
        ref = spec.price_ref if spec is not None and spec.price_ref else model
        found = library_price(ref, pc.price_provider if pc else None)
        if found is None:  # genai-prices lacks it: what the discovered pool says, if it lists it
            found = catalog_cache.price_of(self.config.catalog, dict.fromkeys((ref, model)))
        return found

    def list_models(
        self,
        capability: str | None = None,
        tier: str | None = None,
        max_cost: float | None = None,
        provider: str | None = None,
        min_context: int | None = None,
        available_only: bool = False,
        include_disabled: bool = False,
    ) -> list[ModelInfo]:
        """Declared models matching every given criterion, cheapest first (unknown prices last).

        ``max_cost`` is USD per 1K input tokens (seed 004); a model whose price is unknown
        never passes a cost limit.  A provider with ``enabled = false`` is not registered, as
        in seed 004 (``include_disabled`` lists its models too, as ``adw models`` does).
        """
        out = []
        for pname, pc in self.config.providers.items():
            if provider is not None and pname != provider:
                continue
            if not pc.enabled and not include_disabled:
                continue
            if available_only and not self.availability(pname).available:
                continue
            for spec in pc.models.values():
                if capability is not None and capability not in spec.capabilities:
                    continue
                if tier is not None and spec.tier != tier:
                    continue
                if min_context is not None and (spec.context_window or 0) < min_context:
                    continue
                info = ModelInfo(pname, spec, self.price_for(pname, spec.name))
                if max_cost is not None:
                    per_1k = info.cost_per_1k_input
                    if per_1k is None or per_1k > max_cost:
                        continue
                out.append(info)
        return sorted(out, key=_cost_key)

    def find_cheapest_model(self, **criteria: Any) -> ModelInfo | None:
        return pick_model(self.list_models(**criteria), "cheapest")

    def find_best_model(self, prefer_local: bool = False, **criteria: Any) -> ModelInfo | None:
        """The best model matching ``criteria``; with ``prefer_local``, the best local one if any."""
        models = self.list_models(**criteria)
        if prefer_local:
            local = [m for m in models if self.is_local(m.provider)]
            models = local or models
        return pick_model(models, "best")

    # -- seed 004's registry queries
    def is_local(self, name: str) -> bool:
        """Whether a provider runs on this machine: an ollama / lmstudio preset, or a loopback
        URL (localhost, 127.0.0.1, ::1) in its env, params or command template."""
        pc = self.get_provider(name).config
        if pc.preset in LOCAL_PRESETS:
            return True
        values = [*pc.env.values(), *(str(v) for v in pc.params.values()), *pc.command_template, pc.base_url or ""]
        return any(_loopback_url(v) for v in values)

    def list_providers(self, enabled_only: bool = False) -> list[str]:
        return [n for n, pc in self.config.providers.items() if pc.enabled or not enabled_only]

    def check_availability(self) -> Availabilities:
        """``{provider: usable now}`` for every provider; awaitable too (seed 004 awaits it)."""
        self.refresh()
        return Availabilities({name: self.availability(name).available for name in self.providers})

    def get_summary(self) -> dict[str, Any]:
        """Totals: providers (declared, enabled, available), models of enabled providers, by
        provider and by tier."""
        models = self.list_models()
        by_provider: dict[str, dict[str, Any]] = {}
        for name, pc in self.config.providers.items():
            by_provider[name] = {
                "enabled": pc.enabled,
                "available": self.availability(name).available,
                "local": self.is_local(name),
                "models": sum(1 for m in models if m.provider == name),
            }
        by_tier = {tier: sum(1 for m in models if m.spec.tier == tier) for tier in TIERS}
        by_tier["none"] = sum(1 for m in models if m.spec.tier is None)
        return {
            "total_providers": len(self.config.providers),
            "enabled_providers": sum(1 for p in by_provider.values() if p["enabled"]),
            "available_providers": sum(1 for p in by_provider.values() if p["available"]),
            "total_models": len(models),
            "priced_models": sum(1 for m in models if m.price is not None),
            "by_provider": by_provider,
            "by_tier": by_tier,
        }


class Availabilities(dict[str, bool]):
    """``check_availability``'s answer: a dict, which ``await`` also accepts (seed 004's form)."""

    def __await__(self) -> Generator[Any, None, Availabilities]:
        return self
        yield  # pragma: no cover - makes this a generator


def _loopback_url(value: str) -> bool:
    for url in _URL.findall(value):
        try:
            if urlsplit(url).hostname in LOOPBACK_HOSTS:
                return True
        except ValueError:
            continue
    return False


def pick_model(models: list[ModelInfo], pick: str) -> ModelInfo | None:
    """``cheapest``: lowest reference cost among priced models.  ``best``: highest tier, then
    largest context window, then the cheaper one."""
    if pick == "best":
        if not models:
            return None
        return min(
            models,
            key=lambda m: (
                -TIER_RANK.get(m.spec.tier or "", -1),
                -(m.spec.context_window or 0),
                _cost_key(m),
            ),
        )
    priced = [m for m in models if m.price is not None]
    return min(priced, key=_cost_key) if priced else None


def _cost_key(m: ModelInfo) -> tuple[int, float, str, str]:
    cost = m.estimated_cost()
    return (cost is None, cost or 0.0, m.provider, m.name)
