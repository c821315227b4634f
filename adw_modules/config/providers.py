"""The ``[providers.NAME]`` tables of config.toml: agent CLIs, their keys, models and prices.

A table may start from a preset (``preset = "ollama"``, ``config.presets``), and inherits its
CLI interface (API format, proxy support) from its program (``config.interfaces``).
"""

from __future__ import annotations

import difflib
import json
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adw_modules.config.interfaces import API_FORMATS, cli_name, interface_for
from adw_modules.config.presets import preset_named, preset_table, shown_url, unknown_preset, url_problem
from adw_modules.config.validation import Validator, type_name
from adw_modules.routing.pricing import Price
from adw_modules.workers.streams import known_formats, parser_class, plugin_formats

TIERS = ("fast", "standard", "advanced")
BUILTIN_PLACEHOLDERS = frozenset({"prompt_file", "prompt", "model", "output_file", "workdir", "task_id"})

_PROVIDER_KEYS = (
    "enabled",
    "requires_api_key",
    "api_key_env",
    "api_key_command",
    "pass_api_key_as",
    "command_template",
    "prompt_stdin",
    "output_format",
    "env",
    "env_passthrough",
    "max_concurrency",
    "rpm",
    "timeout",
    "idle_timeout",
    "daily_budget_usd",
    "params",
    "models",
    "default_model",
    "price_provider",
    "description",
    "preset",
    "base_url",
    "api_format",
    "proxy_compatible",
    "proxy_env",
    "proxy",
    "inject",
)
# what a capability may be: one word, so views and `--capability` see it as written
_CAPABILITY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:+-]{0,63}$")
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_MODEL_KEYS = ("display_name", "tier", "capabilities", "context_window", "price", "price_ref")
_PRICE_KEYS = ("input_per_mtok", "output_per_mtok", "cache_read_per_mtok", "cache_write_per_mtok")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    display_name: str
    tier: str | None = None
    capabilities: tuple[str, ...] = ()
    context_window: int | None = None
    price: Price | None = None  # explicit override; else the price library is asked
    price_ref: str | None = None  # name to look up in the price library, when it differs


@dataclass(frozen=True)
class ProviderConfig:
    name: str
    command_template: tuple[str, ...]
    enabled: bool = True
    requires_api_key: bool = False
    api_key_env: str | None = None
    api_key_command: tuple[str, ...] | None = None
    pass_api_key_as: str | None = None  # child env var name; defaults to api_key_env
    prompt_stdin: bool = False
    output_format: str = "claude-stream-json"
    env: Mapping[str, str] = field(default_factory=dict)
    env_passthrough: tuple[str, ...] = ()
    max_concurrency: int | None = None
    rpm: int | None = None
    timeout: float | None = None
    idle_timeout: float | None = None
    daily_budget_usd: float | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    models: Mapping[str, ModelSpec] = field(default_factory=dict)
    default_model: str | None = None
    price_provider: str | None = None  # genai-prices provider id for this provider's model names
    description: str = ""
    preset: str | None = None
    base_url: str | None = None  # the {base_url} placeholder (a preset's, or the proxy)
    cli: str = ""  # the program's name, as the CLI-interface registry knows it
    api_format: str | None = None  # anthropic | openai | gemini; None: not known
    proxy_compatible: bool = False
    proxy_env: str | None = None
    proxy: str | None = None  # set in the child's proxy_env (see config.interfaces)
    inject: Path | None = None  # this CLI's own preamble, before the rule's inject and the prompt

    @property
    def key_env_for_child(self) -> str | None:
        return self.pass_api_key_as or self.api_key_env


def undefined_provider(name: str, providers: Mapping[str, Any]) -> str:
    """The message for a reference to a provider that is not defined, with a close match."""
    defined = ", ".join(providers) or "none"
    hint = difflib.get_close_matches(name, list(providers), n=1)
    extra = f'; did you mean "{hint[0]}"?' if hint else ""
    return f'provider "{name}" is not defined (defined: {defined}){extra}'


def validate_providers(
    v: Validator, table: Mapping[str, Any], global_params: Mapping[str, Any]
) -> dict[str, ProviderConfig]:
    out: dict[str, ProviderConfig] = {}
    for name, raw in table.items():
        where = f"providers.{name}"
        if ":" in name:
            v.err(where, 'a provider name cannot contain ":" (targets are written "provider:model")')
            continue
        if not isinstance(raw, dict):
            v.err(where, f"must be a table, not {type_name(raw)}")
            continue
        prov = _provider(v, name, raw, where, global_params)
        if prov is not None:
            out[name] = prov
    return out


def _provider(
    v: Validator, name: str, raw: Mapping[str, Any], where: str, global_params: Mapping[str, Any]
) -> ProviderConfig | None:
    v.unknown_keys(raw, _PROVIDER_KEYS, where, "key")
    preset = v.get(raw, "preset", str, where)
    if preset is not None:
        found = preset_named(preset)
        if found is None:
            v.err(where, unknown_preset(preset))
            return None
        raw = preset_table(found, raw)
    template = _command_template(v, raw, where)
    if template is None:
        return None
    requires_key, key_env, key_cmd = _api_key(v, raw, where)
    env = _env(v, raw, where)
    params = dict(v.get(raw, "params", dict, where, {}) or {})
    base_url = _url(v, raw, "base_url", where)
    if base_url is not None:
        params["base_url"] = base_url
    interface = _interface(v, raw, where, template[0], env)
    if interface["proxy"] is not None and "{base_url}" in "".join(template):
        params["base_url"] = base_url = interface["proxy"]  # the wrapper takes it as --base-url
    output_format = _output_format(v, raw, where)
    models = _models(v, raw.get("models", {}), f"{where}.models")
    default_model = v.get(raw, "default_model", str, where)
    _placeholders(v, template, where, {**global_params, **params})
    return ProviderConfig(
        name=name,
        command_template=tuple(template),
        enabled=bool(v.get(raw, "enabled", bool, where, True)),
        requires_api_key=requires_key,
        api_key_env=key_env,
        api_key_command=tuple(key_cmd) if key_cmd else None,
        pass_api_key_as=v.get(raw, "pass_api_key_as", str, where),
        prompt_stdin=bool(v.get(raw, "prompt_stdin", bool, where, False)),
        output_format=output_format,
        env=env,
        env_passthrough=tuple(v.str_list(raw, "env_passthrough", where) or ()),
        max_concurrency=v.positive(raw, "max_concurrency", int, where),
        rpm=v.positive(raw, "rpm", int, where),
        timeout=v.positive(raw, "timeout", float, where),
        idle_timeout=v.positive(raw, "idle_timeout", float, where),
        daily_budget_usd=v.positive(raw, "daily_budget_usd", float, where),
        params=params,
        models=models,
        default_model=default_model,
        price_provider=v.get(raw, "price_provider", str, where),
        description=v.get(raw, "description", str, where, ""),
        preset=preset,
        base_url=base_url,
        inject=v.file_ref(v.get(raw, "inject", str, where), where, "inject"),
        **interface,
    )


def _output_format(v: Validator, raw: Mapping[str, Any], where: str) -> str:
    """The stream format; one adw does not ship is looked for among the parser plugins."""
    output_format = v.get(raw, "output_format", str, where, "claude-stream-json")
    if parser_class(output_format) is None:
        failure = plugin_formats().failure_for(output_format)
        why = f"; its plugin failed: {failure.error}" if failure is not None else ""
        known = ", ".join(known_formats())
        v.err(where, f'output_format "{output_format}" is unknown (known: {known}){why}')
    return str(output_format)


def _url(v: Validator, raw: Mapping[str, Any], key: str, where: str) -> str | None:
    url = v.get(raw, key, str, where)
    why = None if url is None else url_problem(url)
    if why is not None:
        v.err(where, f"{key} = {json.dumps(shown_url(url))} {why}")
        return None
    return url


def _interface(v: Validator, raw: Mapping[str, Any], where: str, program: str, env: dict[str, str]) -> dict[str, Any]:
    """The CLI interface: the registry's entry for the program, each field overridable.

    A proxy for a CLI that cannot use one is refused here, so no routing decision can
    send a task through it; an accepted proxy goes into the child's ``proxy_env``.
    """
    known = interface_for(program)
    cli = cli_name(program)
    api_format = v.get(raw, "api_format", str, where, known.api_format if known else None)
    if api_format is not None and api_format not in API_FORMATS:
        v.err(where, f'api_format "{api_format}" is unknown (known: {", ".join(API_FORMATS)})')
    compatible = bool(v.get(raw, "proxy_compatible", bool, where, known.proxy_compatible if known else False))
    proxy_env = v.get(raw, "proxy_env", str, where, known.proxy_env if known else None)
    if proxy_env is not None and not _settable_env_name(proxy_env):
        v.err(where, f"proxy_env {json.dumps(proxy_env)} is not a variable adw will set to a URL")
        proxy_env = None
    proxy = _url(v, raw, "proxy", where)
    if proxy is not None:
        if not compatible:
            what = f"{cli} (the CLI-interface registry)" if known else f"{cli} (not a CLI adw knows)"
            v.err(
                where,
                f'proxy = "{proxy}", but {what} cannot use a proxy: proxy_compatible = false, it has '
                "no base-URL setting adw can pass",
            )
            proxy = None
        elif proxy_env is None:
            v.err(where, "proxy needs proxy_env: the variable this CLI reads its API base URL from")
            proxy = None
        elif env.get(proxy_env, proxy) != proxy:
            v.err(where, f"proxy and env.{proxy_env} disagree: set one of them")
            proxy = None
        else:
            env[proxy_env] = proxy
    elif compatible and proxy_env is not None and proxy_env in env:
        proxy = env[proxy_env]  # written as env (OpenRouter's Anthropic endpoint): the same thing
    return {
        "cli": cli,
        "api_format": api_format,
        "proxy_compatible": compatible,
        "proxy_env": proxy_env,
        "proxy": proxy,
    }


def _command_template(v: Validator, raw: Mapping[str, Any], where: str) -> list[str] | None:
    """The argv template; None (reported) when missing, malformed or empty."""
    template = v.str_list(raw, "command_template", where)
    if template is None:
        if "command_template" not in raw:
            v.err(where, "command_template is required (the argv of the agent CLI, as an array)")
        return None
    if not template:
        v.err(where, "command_template must not be empty")
        return None
    return template


def _api_key(v: Validator, raw: Mapping[str, Any], where: str) -> tuple[bool, str | None, list[str] | None]:
    """(requires_api_key, api_key_env, api_key_command).  A literal api_key is an unknown key."""
    requires_key = bool(v.get(raw, "requires_api_key", bool, where, False))
    key_env = v.get(raw, "api_key_env", str, where)
    key_cmd = v.str_list(raw, "api_key_command", where)
    if key_cmd is not None and not key_cmd:
        v.err(where, "api_key_command must not be empty")
    if requires_key and key_env is None:
        v.err(
            where,
            "requires_api_key = true needs api_key_env (the variable holding the key, or the "
            "variable to pass the key from api_key_command in)",
        )
    return requires_key, key_env, key_cmd


def _env(v: Validator, raw: Mapping[str, Any], where: str) -> dict[str, str]:
    """The child's extra environment: strings only, and never a secret written in the file."""
    env = v.get(raw, "env", dict, where, {}) or {}
    for k, value in env.items():
        if not isinstance(value, str):
            v.err(f"{where}.env", f"{k} must be a string, not {type_name(value)}")
        if _looks_secret(k) and isinstance(value, str) and value:
            v.err(
                f"{where}.env",
                f"{k} looks like a secret: give it by reference (api_key_env / "
                "api_key_command with pass_api_key_as), never in the file",
            )
    return {k: value for k, value in env.items() if isinstance(value, str)}


def _settable_env_name(name: str) -> bool:
    """A plain variable name that is not one the child's loader or shell depends on."""
    plain = name.isascii() and name.replace("_", "a").isalnum() and not name[:1].isdigit()
    return plain and name not in ("PATH", "HOME", "SHELL", "USER") and not name.startswith("LD_")


def _looks_secret(key: str) -> bool:
    upper = key.upper()
    return any(word in upper for word in ("API_KEY", "TOKEN", "SECRET", "PASSWORD"))


def _placeholders(v: Validator, template: list[str], where: str, params: Mapping[str, Any]) -> None:
    for i, part in enumerate(template):
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(part) if f is not None]
        except ValueError as exc:
            v.err(where, f"command_template[{i}] {part!r}: {exc} (write {{{{ and }}}} for literal braces)")
            continue
        for name in fields:
            if name in BUILTIN_PLACEHOLDERS or name in params:
                continue
            known = ", ".join(sorted(BUILTIN_PLACEHOLDERS))
            v.err(
                where,
                f"command_template[{i}] uses {{{name}}}, which has no value: it is neither a "
                f"built-in placeholder ({known}) nor a parameter in [params] or [{where}.params]",
            )


def _models(v: Validator, raw: Any, where: str) -> dict[str, ModelSpec]:
    if not isinstance(raw, dict):
        v.err(where, f"must be a table of model tables, not {type_name(raw)}")
        return {}
    out: dict[str, ModelSpec] = {}
    for name, m in raw.items():
        w = f'{where}."{name}"'
        if not isinstance(m, dict):
            v.err(w, f"must be a table, not {type_name(m)}")
            continue
        v.unknown_keys(m, _MODEL_KEYS, w, "key")
        tier = v.get(m, "tier", str, w)
        if tier is not None and tier not in TIERS:
            v.err(w, f'tier "{tier}" is unknown (known: {", ".join(TIERS)})')
        price = None
        if "price" in m:
            price = _price(v, m["price"], f"{w}.price")
        if _UNPRINTABLE.search(name):
            v.err(where, f"model name {json.dumps(name)} holds control characters")
        capabilities = tuple(v.str_list(m, "capabilities", w) or ())
        for capability in capabilities:
            if not _CAPABILITY.match(capability):
                v.err(w, f"capability {json.dumps(capability)} is not a plain word (letters, digits, . _ : + -)")
        out[name] = ModelSpec(
            name=name,
            display_name=v.get(m, "display_name", str, w, name),
            tier=tier,
            capabilities=capabilities,
            context_window=v.positive(m, "context_window", int, w),
            price=price,
            price_ref=v.get(m, "price_ref", str, w),
        )
    return out


def _price(v: Validator, raw: Any, where: str) -> Price | None:
    if not isinstance(raw, dict):
        v.err(
            where,
            f"must be a table like {{ input_per_mtok = 3.0, output_per_mtok = 15.0 }}, not {type_name(raw)}",
        )
        return None
    v.unknown_keys(raw, _PRICE_KEYS, where, "key")
    values = {k: v.get(raw, k, float, where) for k in _PRICE_KEYS}
    for k, value in values.items():
        if value is not None and value < 0:
            v.err(where, f"{k} must not be negative")
    if values["input_per_mtok"] is None or values["output_per_mtok"] is None:
        v.err(where, "input_per_mtok and output_per_mtok are both required (USD per million tokens)")
        return None
    return Price(
        input_per_mtok=values["input_per_mtok"],
        output_per_mtok=values["output_per_mtok"],
        cache_read_per_mtok=values["cache_read_per_mtok"],
        cache_write_per_mtok=values["cache_write_per_mtok"],
    )
