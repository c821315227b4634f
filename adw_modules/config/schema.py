"""config.toml: load it with tomlkit, validate all of it, and freeze it into dataclasses.

Validation reports every problem at once, each with the file and the line and column
(TOML syntax), or the file, the line and the table path and what is wrong (semantics), e.g.::

    config.toml:48: routing.rules[3] "docs-haiku": provider "claud-cli" is not defined
    (defined: claude-cli, openrouter)

Unknown keys and unknown condition names are errors, so a typo never silently turns
a rule off.  Secrets are only ever referenced (an env var name or a command), never
held in the file.
"""

from __future__ import annotations

import difflib
import fnmatch
import hashlib
import json
import string
import zoneinfo
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomlkit
import tomlkit.exceptions

from adw_modules.config.github import GitHubConfig, validate_github
from adw_modules.config.lines import LineIndex
from adw_modules.config.service import ServiceConfig, validate_service
from adw_modules.routing.pricing import Price
from adw_modules.workspace.worktrees import WorkspaceConfig, validate_workspace

PRIORITIES = ("critical", "high", "normal", "low")
TIERS = ("fast", "standard", "advanced")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
PICKS = ("cheapest", "best")
COMPARISON_OPS = ("gte", "gt", "lte", "lt", "eq", "ne")
OUTPUT_FORMATS = ("claude-stream-json", "claude-json", "codex-json", "gemini-stream-json", "opencode-json")
BUILTIN_PLACEHOLDERS = frozenset({"prompt_file", "prompt", "model", "output_file", "workdir", "task_id"})


class ConfigError(Exception):
    """The config cannot be used.  ``issues`` holds every problem found, one line each."""

    def __init__(self, issues: list[str]) -> None:
        super().__init__("\n".join(issues))
        self.issues = issues


@dataclass(frozen=True, order=True)
class Target:
    provider: str
    model: str

    def __str__(self) -> str:
        return f"{self.provider}:{self.model}"

    @classmethod
    def parse(cls, text: str) -> Target:
        provider, sep, model = text.partition(":")
        if not sep or not provider or not model:
            raise ValueError(f'"{text}" is not a target: write "provider:model"')
        return cls(provider.strip(), model.strip())


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

    @property
    def key_env_for_child(self) -> str | None:
        return self.pass_api_key_as or self.api_key_env


@dataclass(frozen=True)
class Comparison:
    """Numeric test such as ``{ gte = 1, lt = 3 }``; every operator must hold."""

    ops: tuple[tuple[str, float], ...]

    def matches(self, value: float) -> bool:
        for op, bound in self.ops:
            if not _OPS[op](value, bound):
                return False
        return True

    def describe(self) -> str:
        return ", ".join(f"{op} {_fmt_num(bound)}" for op, bound in self.ops)


_OPS: dict[str, Callable[[float, float], bool]] = {
    "gte": lambda v, b: v >= b,
    "gt": lambda v, b: v > b,
    "lte": lambda v, b: v <= b,
    "lt": lambda v, b: v < b,
    "eq": lambda v, b: v == b,
    "ne": lambda v, b: v != b,
}


def _fmt_num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


@dataclass(frozen=True)
class Conditions:
    priority: frozenset[str] | None = None
    labels: frozenset[str] | None = None  # any of
    labels_all: frozenset[str] | None = None
    not_labels: frozenset[str] | None = None
    retry_count: Comparison | None = None
    hour_range: tuple[int, int] | None = None  # [start, end), wraps past midnight
    weekdays: frozenset[str] | None = None
    repo: tuple[str, ...] | None = None  # glob patterns, e.g. "acme/*"
    source: frozenset[str] | None = None
    prompt_tokens: Comparison | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)  # as written, for display


@dataclass(frozen=True)
class ModelSelector:
    """Pick the model at routing time instead of naming it (seed 003's cost-based routing)."""

    capability: str | None = None
    tier: str | None = None
    max_cost: float | None = None  # USD per 1K input tokens, as in seed 004
    min_context: int | None = None
    pick: str = "cheapest"


@dataclass(frozen=True)
class Rule:
    name: str
    priority: int
    conditions: Conditions
    provider: str | None = None
    model: str | None = None
    select: ModelSelector | None = None
    fallback: tuple[Target, ...] = ()
    chain: str | None = None
    inject: Path | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    enabled: bool = True
    index: int = 0  # position in the file, breaks priority ties (earlier wins)


@dataclass(frozen=True)
class Chain:
    name: str
    targets: tuple[Target, ...]
    inject: Path | None = None


@dataclass(frozen=True)
class Scenario:
    name: str
    attrs: Mapping[str, Any]
    expect: str | None = None  # "provider/model" or "provider:model"


@dataclass(frozen=True)
class RoutingConfig:
    enabled: bool
    default_provider: str
    default_model: str
    timezone: str = "UTC"
    rules: tuple[Rule, ...] = ()  # sorted: priority descending, then file order
    chains: Mapping[str, Chain] = field(default_factory=dict)
    fallback: tuple[Target, ...] = ()  # appended to every decision's fallbacks
    max_fallbacks: int = 5
    scenarios: tuple[Scenario, ...] = ()
    default_inject: Path | None = None


@dataclass(frozen=True)
class Config:
    path: Path
    providers: Mapping[str, ProviderConfig]
    routing: RoutingConfig
    params: Mapping[str, Any] = field(default_factory=dict)
    llm_provider: str | None = None
    llm_model: str | None = None
    fingerprint: str = ""
    service: ServiceConfig = field(default_factory=ServiceConfig)
    github: GitHubConfig | None = None
    workspace: WorkspaceConfig | None = None

    @property
    def base_dir(self) -> Path:
        return self.path.resolve().parent

    def provider_names(self) -> list[str]:
        return list(self.providers)


# ---------------------------------------------------------------- loading


def load_config(path: str | Path) -> Config:
    """Read and validate a config file; raises ConfigError listing every problem."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{p}: file not found (set --config or $ADW_CONFIG)"]) from None
    except OSError as exc:
        raise ConfigError([f"{p}: cannot read: {exc.strerror or exc}"]) from None
    return parse_config(text, p)


def read_document(text: str, path: Path) -> tomlkit.TOMLDocument:
    try:
        return tomlkit.parse(text)
    except tomlkit.exceptions.ParseError as exc:
        msg = str(exc)
        # tomlkit appends " at line L col C"; we put the position first, compiler-style.
        msg = msg.split(" at line ")[0]
        raise ConfigError([f"{path}:{exc.line}:{exc.col}: TOML syntax error: {msg}"]) from None


def parse_config(text: str, path: Path) -> Config:
    doc = read_document(text, path)
    data = doc.unwrap()
    return _Validator(data, path, LineIndex(text)).build()


# ---------------------------------------------------------------- validation

_TOP_KEYS = (
    "providers",
    "llm",
    "routing",
    "params",
    "coordinator",
    "store",
    "health",
    "github",
    "metrics",
    "retention",
    "workspace",
)
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
)
_MODEL_KEYS = ("display_name", "tier", "capabilities", "context_window", "price", "price_ref")
_PRICE_KEYS = ("input_per_mtok", "output_per_mtok", "cache_read_per_mtok", "cache_write_per_mtok")
_ROUTING_KEYS = (
    "enabled",
    "default_provider",
    "default_model",
    "timezone",
    "rules",
    "chains",
    "fallback",
    "max_fallbacks",
    "scenarios",
    "inject",
)
_RULE_KEYS = (
    "name",
    "priority",
    "conditions",
    "provider",
    "model",
    "model_select",
    "fallback",
    "chain",
    "inject",
    "params",
    "enabled",
    "description",
)
CONDITION_KEYS = (
    "priority",
    "labels",
    "labels_all",
    "not_labels",
    "retry_count",
    "hour_range",
    "weekdays",
    "repo",
    "source",
    "prompt_tokens",
)
_SELECT_KEYS = ("capability", "tier", "max_cost", "min_context", "pick")
_CHAIN_KEYS = ("targets", "inject")
_SCENARIO_KEYS = ("name", "attrs", "expect")
SCENARIO_ATTRS = ("priority", "labels", "retry_count", "hour", "weekday", "repo", "source", "prompt_tokens")


def _type_name(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__


class _Validator:
    def __init__(self, data: dict[str, Any], path: Path, lines: LineIndex | None = None) -> None:
        self.data = data
        self.path = path
        self.base = path.resolve().parent
        self.lines = lines
        self.issues: list[str] = []

    def err(self, where: str, message: str) -> None:
        line = self.lines.line_of(where, message) if self.lines is not None and where else None
        at = f"{self.path}:{line}" if line is not None else f"{self.path}"
        self.issues.append(f"{at}: {where}: {message}" if where else f"{at}: {message}")

    # -- typed getters: report and return the default on a wrong type
    def unknown_keys(self, table: Mapping[str, Any], allowed: Iterable[str], where: str, what: str) -> None:
        allowed = tuple(allowed)
        for key in table:
            if key not in allowed:
                hint = difflib.get_close_matches(key, allowed, n=1)
                suggestion = f' (did you mean "{hint[0]}"?)' if hint else f" (known: {', '.join(allowed)})"
                self.err(where, f'unknown {what} "{key}"{suggestion}')

    def get(
        self,
        table: Mapping[str, Any],
        key: str,
        kind: type | tuple[type, ...],
        where: str,
        default: Any = None,
    ) -> Any:
        if key not in table:
            return default
        value = table[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            ok = True
            value = float(value)
        if not ok:
            names = " or ".join(_type_name(k()) if k is not type(None) else "none" for k in kinds)
            self.err(where, f"{key} must be {names}, not {_type_name(value)}")
            return default
        return value

    def str_list(self, table: Mapping[str, Any], key: str, where: str, *, allow_str: bool = False) -> list[str] | None:
        if key not in table:
            return None
        value = table[key]
        if allow_str and isinstance(value, str):
            return [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            form = "a string or an array of strings" if allow_str else "an array of strings"
            self.err(where, f"{key} must be {form}")
            return None
        return list(value)

    def positive(self, table: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
        value = self.get(table, key, kind, where)
        if value is not None and value <= 0:
            self.err(where, f"{key} must be greater than 0, not {value}")
            return None
        return value

    def file_ref(self, value: str | None, where: str, key: str) -> Path | None:
        if value is None:
            return None
        p = Path(value).expanduser()
        p = p if p.is_absolute() else self.base / p
        if not p.is_file():
            self.err(where, f'{key} file "{value}" does not exist (looked at {p})')
            return None
        return p

    # -- sections
    def build(self) -> Config:
        data = self.data
        self.unknown_keys(data, _TOP_KEYS, "", "top-level table")
        params = self.get(data, "params", dict, "params", {}) or {}
        providers = self.providers(self.get(data, "providers", dict, "providers", {}) or {}, params)
        llm = self.get(data, "llm", dict, "llm", {}) or {}
        self.unknown_keys(llm, ("provider", "model_default"), "llm", "key")
        llm_provider = self.get(llm, "provider", str, "llm")
        llm_model = self.get(llm, "model_default", str, "llm")
        if llm_provider is not None and llm_provider not in providers and providers:
            self.err("llm", self.undefined_provider(llm_provider, providers))
        routing = self.routing(self.get(data, "routing", dict, "routing", {}) or {}, providers, llm_provider, llm_model)
        service = validate_service(self, data)
        github = validate_github(self, data)
        workspace = validate_workspace(self, data)
        if self.issues:
            raise ConfigError(self.issues)
        assert routing is not None
        fingerprint = hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]
        return Config(
            path=self.path,
            providers=providers,
            routing=routing,
            params=dict(params),
            llm_provider=llm_provider,
            llm_model=llm_model,
            fingerprint=fingerprint,
            service=service,
            github=github,
            workspace=workspace,
        )

    def undefined_provider(self, name: str, providers: Mapping[str, Any]) -> str:
        defined = ", ".join(providers) or "none"
        hint = difflib.get_close_matches(name, list(providers), n=1)
        extra = f'; did you mean "{hint[0]}"?' if hint else ""
        return f'provider "{name}" is not defined (defined: {defined}){extra}'

    def providers(self, table: Mapping[str, Any], global_params: Mapping[str, Any]) -> dict[str, ProviderConfig]:
        out: dict[str, ProviderConfig] = {}
        for name, raw in table.items():
            where = f"providers.{name}"
            if ":" in name:
                self.err(where, 'a provider name cannot contain ":" (targets are written "provider:model")')
                continue
            if not isinstance(raw, dict):
                self.err(where, f"must be a table, not {_type_name(raw)}")
                continue
            prov = self.provider(name, raw, where, global_params)
            if prov is not None:
                out[name] = prov
        return out

    def provider(
        self, name: str, raw: Mapping[str, Any], where: str, global_params: Mapping[str, Any]
    ) -> ProviderConfig | None:
        self.unknown_keys(raw, _PROVIDER_KEYS, where, "key")
        template = self.str_list(raw, "command_template", where)
        if template is None:
            if "command_template" not in raw:
                self.err(where, "command_template is required (the argv of the agent CLI, as an array)")
            return None
        if not template:
            self.err(where, "command_template must not be empty")
            return None
        requires_key = bool(self.get(raw, "requires_api_key", bool, where, False))
        key_env = self.get(raw, "api_key_env", str, where)
        key_cmd = self.str_list(raw, "api_key_command", where)
        if key_cmd is not None and not key_cmd:
            self.err(where, "api_key_command must not be empty")
        if requires_key and key_env is None:
            self.err(
                where,
                "requires_api_key = true needs api_key_env (the variable holding the key, or the "
                "variable to pass the key from api_key_command in)",
            )
        if (key_env or key_cmd) and "api_key" in raw:
            pass  # unknown-key check already reported a literal api_key
        env = self.get(raw, "env", dict, where, {}) or {}
        for k, v in env.items():
            if not isinstance(v, str):
                self.err(f"{where}.env", f"{k} must be a string, not {_type_name(v)}")
            if _looks_secret(k) and isinstance(v, str) and v:
                self.err(
                    f"{where}.env",
                    f"{k} looks like a secret: give it by reference (api_key_env / "
                    "api_key_command with pass_api_key_as), never in the file",
                )
        params = self.get(raw, "params", dict, where, {}) or {}
        output_format = self.get(raw, "output_format", str, where, "claude-stream-json")
        if output_format not in OUTPUT_FORMATS:
            self.err(where, f'output_format "{output_format}" is unknown (known: {", ".join(OUTPUT_FORMATS)})')
        models = self.models(raw.get("models", {}), f"{where}.models")
        default_model = self.get(raw, "default_model", str, where)
        self.placeholders(template, where, {**global_params, **params})
        return ProviderConfig(
            name=name,
            command_template=tuple(template),
            enabled=bool(self.get(raw, "enabled", bool, where, True)),
            requires_api_key=requires_key,
            api_key_env=key_env,
            api_key_command=tuple(key_cmd) if key_cmd else None,
            pass_api_key_as=self.get(raw, "pass_api_key_as", str, where),
            prompt_stdin=bool(self.get(raw, "prompt_stdin", bool, where, False)),
            output_format=output_format,
            env={k: v for k, v in env.items() if isinstance(v, str)},
            env_passthrough=tuple(self.str_list(raw, "env_passthrough", where) or ()),
            max_concurrency=self.positive(raw, "max_concurrency", int, where),
            rpm=self.positive(raw, "rpm", int, where),
            timeout=self.positive(raw, "timeout", float, where),
            idle_timeout=self.positive(raw, "idle_timeout", float, where),
            daily_budget_usd=self.positive(raw, "daily_budget_usd", float, where),
            params=dict(params),
            models=models,
            default_model=default_model,
            price_provider=self.get(raw, "price_provider", str, where),
            description=self.get(raw, "description", str, where, ""),
        )

    def placeholders(self, template: list[str], where: str, params: Mapping[str, Any]) -> None:
        for i, part in enumerate(template):
            try:
                fields = [f for _, f, _, _ in string.Formatter().parse(part) if f is not None]
            except ValueError as exc:
                self.err(where, f"command_template[{i}] {part!r}: {exc} (write {{{{ and }}}} for literal braces)")
                continue
            for name in fields:
                if name in BUILTIN_PLACEHOLDERS or name in params:
                    continue
                known = ", ".join(sorted(BUILTIN_PLACEHOLDERS))
                self.err(
                    where,
                    f"command_template[{i}] uses {{{name}}}, which has no value: it is neither a "
                    f"built-in placeholder ({known}) nor a parameter in [params] or [{where}.params]",
                )

    def models(self, raw: Any, where: str) -> dict[str, ModelSpec]:
        if not isinstance(raw, dict):
            self.err(where, f"must be a table of model tables, not {_type_name(raw)}")
            return {}
        out: dict[str, ModelSpec] = {}
        for name, m in raw.items():
            w = f'{where}."{name}"'
            if not isinstance(m, dict):
                self.err(w, f"must be a table, not {_type_name(m)}")
                continue
            self.unknown_keys(m, _MODEL_KEYS, w, "key")
            tier = self.get(m, "tier", str, w)
            if tier is not None and tier not in TIERS:
                self.err(w, f'tier "{tier}" is unknown (known: {", ".join(TIERS)})')
            price = None
            if "price" in m:
                price = self.price(m["price"], f"{w}.price")
            out[name] = ModelSpec(
                name=name,
                display_name=self.get(m, "display_name", str, w, name),
                tier=tier,
                capabilities=tuple(self.str_list(m, "capabilities", w) or ()),
                context_window=self.positive(m, "context_window", int, w),
                price=price,
                price_ref=self.get(m, "price_ref", str, w),
            )
        return out

    def price(self, raw: Any, where: str) -> Price | None:
        if not isinstance(raw, dict):
            self.err(
                where,
                f"must be a table like {{ input_per_mtok = 3.0, output_per_mtok = 15.0 }}, not {_type_name(raw)}",
            )
            return None
        self.unknown_keys(raw, _PRICE_KEYS, where, "key")
        values = {k: self.get(raw, k, float, where) for k in _PRICE_KEYS}
        for k, v in values.items():
            if v is not None and v < 0:
                self.err(where, f"{k} must not be negative")
        if values["input_per_mtok"] is None or values["output_per_mtok"] is None:
            self.err(where, "input_per_mtok and output_per_mtok are both required (USD per million tokens)")
            return None
        return Price(
            input_per_mtok=values["input_per_mtok"],
            output_per_mtok=values["output_per_mtok"],
            cache_read_per_mtok=values["cache_read_per_mtok"],
            cache_write_per_mtok=values["cache_write_per_mtok"],
        )

    def target(self, text: Any, where: str, providers: Mapping[str, ProviderConfig]) -> Target | None:
        if not isinstance(text, str):
            self.err(where, f'a target must be a string "provider:model", not {_type_name(text)}')
            return None
        try:
            t = Target.parse(text)
        except ValueError as exc:
            self.err(where, str(exc))
            return None
        if t.provider not in providers:
            self.err(where, f'target "{text}": ' + self.undefined_provider(t.provider, providers))
            return None
        return t

    def targets(self, raw: Any, where: str, key: str, providers: Mapping[str, ProviderConfig]) -> tuple[Target, ...]:
        if raw is None:
            return ()
        if not isinstance(raw, list):
            self.err(where, f'{key} must be an array of "provider:model" strings')
            return ()
        out = [self.target(item, f"{where} {key}[{i}]", providers) for i, item in enumerate(raw)]
        return tuple(t for t in out if t is not None)

    def routing(
        self,
        raw: Mapping[str, Any],
        providers: Mapping[str, ProviderConfig],
        llm_provider: str | None,
        llm_model: str | None,
    ) -> RoutingConfig | None:
        where = "routing"
        self.unknown_keys(raw, _ROUTING_KEYS, where, "key")
        enabled = bool(self.get(raw, "enabled", bool, where, False))
        default_provider = self.get(raw, "default_provider", str, where) or llm_provider
        default_model = self.get(raw, "default_model", str, where) or llm_model
        if default_provider is None:
            if providers:
                default_provider = next(iter(providers))
            else:
                self.err(where, "no providers are defined: add a [providers.NAME] table with a command_template")
        elif default_provider not in providers:
            self.err(where, "default_provider: " + self.undefined_provider(default_provider, providers))
        if default_model is None and default_provider is not None and default_provider in providers:
            default_model = providers[default_provider].default_model
        if default_model is None and default_provider is not None:
            self.err(
                where,
                "default_model is not set (set routing.default_model, llm.model_default or "
                f"providers.{default_provider}.default_model)",
            )
        tz = self.get(raw, "timezone", str, where, "UTC")
        try:
            zoneinfo.ZoneInfo(tz)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            self.err(where, f'timezone "{tz}" is not a known IANA zone (e.g. "UTC", "Europe/Berlin")')
        max_fallbacks = self.get(raw, "max_fallbacks", int, where, 5)
        if max_fallbacks < 0:
            self.err(where, "max_fallbacks must not be negative")
        chains = self.chains(self.get(raw, "chains", dict, where, {}) or {}, providers)
        fallback = self.targets(raw.get("fallback"), where, "fallback", providers)
        rules = self.rules(raw.get("rules", []), providers, chains)
        scenarios = self.scenarios(raw.get("scenarios", []))
        if default_provider is None or default_model is None:
            return None
        return RoutingConfig(
            enabled=enabled,
            default_provider=default_provider,
            default_model=default_model,
            timezone=tz,
            rules=tuple(sorted(rules, key=lambda r: (-r.priority, r.index))),
            chains=chains,
            fallback=fallback,
            max_fallbacks=max_fallbacks,
            scenarios=tuple(scenarios),
            default_inject=self.file_ref(self.get(raw, "inject", str, where), where, "inject"),
        )

    def chains(self, raw: Mapping[str, Any], providers: Mapping[str, ProviderConfig]) -> dict[str, Chain]:
        out: dict[str, Chain] = {}
        for name, c in raw.items():
            where = f"routing.chains.{name}"
            if isinstance(c, list):  # short form: architect = ["a:b", "c:d"]
                c = {"targets": c}
            if not isinstance(c, dict):
                self.err(where, 'must be an array of "provider:model" targets or a table with targets')
                continue
            self.unknown_keys(c, _CHAIN_KEYS, where, "key")
            targets = self.targets(c.get("targets"), where, "targets", providers)
            if not targets and "targets" in c and isinstance(c["targets"], list) and not c["targets"]:
                self.err(where, "targets must not be empty")
            if "targets" not in c:
                self.err(where, "targets is required")
            out[name] = Chain(name, targets, self.file_ref(self.get(c, "inject", str, where), where, "inject"))
        return out

    def rules(self, raw: Any, providers: Mapping[str, ProviderConfig], chains: Mapping[str, Chain]) -> list[Rule]:
        if not isinstance(raw, list):
            self.err("routing.rules", "must be an array of tables ([[routing.rules]])")
            return []
        out: list[Rule] = []
        seen: dict[str, int] = {}
        for i, r in enumerate(raw):
            where = f"routing.rules[{i}]"
            if not isinstance(r, dict):
                self.err(where, f"must be a table, not {_type_name(r)}")
                continue
            name = r.get("name")
            if isinstance(name, str):
                where = f'{where} "{name}"'
                if name in seen:
                    self.err(where, f"duplicate rule name (also routing.rules[{seen[name]}])")
                seen[name] = i
            else:
                self.err(where, "name is required (a string)")
                name = f"rule-{i}"
            rule = self.rule(r, i, name, where, providers, chains)
            if rule is not None:
                out.append(rule)
        return out

    def rule(
        self,
        r: Mapping[str, Any],
        index: int,
        name: str,
        where: str,
        providers: Mapping[str, ProviderConfig],
        chains: Mapping[str, Chain],
    ) -> Rule | None:
        self.unknown_keys(r, _RULE_KEYS, where, "key")
        priority = self.get(r, "priority", int, where)
        if "priority" not in r:
            self.err(where, "priority is required (an integer; higher is checked first)")
        conditions = self.conditions(r.get("conditions", {}), where)
        provider = self.get(r, "provider", str, where)
        if provider is not None and provider not in providers:
            self.err(where, self.undefined_provider(provider, providers))
        model = self.get(r, "model", str, where)
        select = None
        if "model_select" in r:
            select = self.selector(r["model_select"], f"{where}.model_select")
            if model is not None:
                self.err(where, "give either model or model_select, not both")
        chain = self.get(r, "chain", str, where)
        if chain is not None and chain not in chains:
            defined = ", ".join(chains) or "none"
            self.err(where, f'chain "{chain}" is not defined in [routing.chains] (defined: {defined})')
        if model is None and select is None and chain is None:
            self.err(where, "needs a model, a model_select or a chain")
        if provider is None and model is not None and ":" in model and model.split(":", 1)[0] in providers:
            self.err(where, f'model "{model}" looks like a target: set provider and model separately')
        fallback = self.targets(r.get("fallback"), where, "fallback", providers)
        params = self.get(r, "params", dict, where, {}) or {}
        if priority is None:
            return None
        return Rule(
            name=name,
            priority=priority,
            conditions=conditions,
            provider=provider,
            model=model,
            select=select,
            fallback=fallback,
            chain=chain,
            inject=self.file_ref(self.get(r, "inject", str, where), where, "inject"),
            params=dict(params),
            enabled=bool(self.get(r, "enabled", bool, where, True)),
            index=index,
        )

    def selector(self, raw: Any, where: str) -> ModelSelector | None:
        if not isinstance(raw, dict):
            self.err(where, f"must be a table, not {_type_name(raw)}")
            return None
        self.unknown_keys(raw, _SELECT_KEYS, where, "key")
        tier = self.get(raw, "tier", str, where)
        if tier is not None and tier not in TIERS:
            self.err(where, f'tier "{tier}" is unknown (known: {", ".join(TIERS)})')
        pick = self.get(raw, "pick", str, where, "cheapest")
        if pick not in PICKS:
            self.err(where, f'pick "{pick}" is unknown (known: {", ".join(PICKS)})')
        return ModelSelector(
            capability=self.get(raw, "capability", str, where),
            tier=tier,
            max_cost=self.get(raw, "max_cost", float, where),
            min_context=self.positive(raw, "min_context", int, where),
            pick=pick,
        )

    def comparison(self, value: Any, where: str, key: str) -> Comparison | None:
        if isinstance(value, int) and not isinstance(value, bool):
            return Comparison((("eq", float(value)),))
        if not isinstance(value, dict) or not value:
            self.err(
                where,
                f"{key} must be an integer or a table of comparisons like {{ gte = 1 }} "
                f"(operators: {', '.join(COMPARISON_OPS)})",
            )
            return None
        ops: list[tuple[str, float]] = []
        for op, bound in value.items():
            if op not in COMPARISON_OPS:
                hint = difflib.get_close_matches(op, COMPARISON_OPS, n=1)
                extra = f' (did you mean "{hint[0]}"?)' if hint else f" (operators: {', '.join(COMPARISON_OPS)})"
                self.err(where, f'{key}: unknown operator "{op}"{extra}')
                continue
            if isinstance(bound, bool) or not isinstance(bound, int | float):
                self.err(where, f"{key}.{op} must be a number, not {_type_name(bound)}")
                continue
            ops.append((op, float(bound)))
        return Comparison(tuple(ops)) if ops else None

    def conditions(self, raw: Any, rule_where: str) -> Conditions:
        where = f"{rule_where}.conditions"
        if not isinstance(raw, dict):
            self.err(where, f"must be a table, not {_type_name(raw)}")
            return Conditions()
        for key in raw:
            if key not in CONDITION_KEYS:
                hint = difflib.get_close_matches(key, CONDITION_KEYS, n=1)
                extra = f' (did you mean "{hint[0]}"?)' if hint else f" (known: {', '.join(CONDITION_KEYS)})"
                self.err(where, f'unknown condition "{key}"{extra}')

        def names(key: str, allowed: tuple[str, ...] | None = None) -> frozenset[str] | None:
            values = self.str_list(raw, key, where, allow_str=True)
            if values is None:
                return None
            if not values:
                self.err(where, f"{key} must not be empty (it would never match)")
            if allowed is not None:
                for v in values:
                    if v not in allowed:
                        self.err(where, f'{key} "{v}" is unknown (known: {", ".join(allowed)})')
            return frozenset(values)

        hour_range = None
        if "hour_range" in raw:
            hour_range = self.hour_range(raw["hour_range"], where)
        repo = self.str_list(raw, "repo", where, allow_str=True)
        return Conditions(
            priority=names("priority", PRIORITIES),
            labels=names("labels"),
            labels_all=names("labels_all"),
            not_labels=names("not_labels"),
            retry_count=self.comparison(raw["retry_count"], where, "retry_count") if "retry_count" in raw else None,
            hour_range=hour_range,
            weekdays=names("weekdays", WEEKDAYS),
            repo=tuple(repo) if repo is not None else None,
            source=names("source"),
            prompt_tokens=self.comparison(raw["prompt_tokens"], where, "prompt_tokens")
            if "prompt_tokens" in raw
            else None,
            raw=dict(raw),
        )

    def hour_range(self, value: Any, where: str) -> tuple[int, int] | None:
        if (
            not isinstance(value, list)
            or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        ):
            self.err(where, "hour_range must be [start, end] with whole hours, e.g. [22, 6]")
            return None
        start, end = value
        if not (0 <= start <= 23 and 0 <= end <= 24):
            self.err(where, f"hour_range [{start}, {end}]: start must be 0-23 and end 0-24")
            return None
        if start == end:
            self.err(where, f"hour_range [{start}, {end}] is empty; use [0, 24] for the whole day")
            return None
        return (start, end)

    def scenarios(self, raw: Any) -> list[Scenario]:
        if not isinstance(raw, list):
            self.err("routing.scenarios", "must be an array of tables ([[routing.scenarios]])")
            return []
        out = []
        for i, s in enumerate(raw):
            where = f"routing.scenarios[{i}]"
            if not isinstance(s, dict):
                self.err(where, f"must be a table, not {_type_name(s)}")
                continue
            self.unknown_keys(s, _SCENARIO_KEYS, where, "key")
            name = self.get(s, "name", str, where, f"scenario {i}")
            attrs = self.get(s, "attrs", dict, where, {}) or {}
            self.unknown_keys(attrs, SCENARIO_ATTRS, f"{where}.attrs", "attribute")
            out.append(Scenario(name=name, attrs=dict(attrs), expect=self.get(s, "expect", str, where)))
        return out


def _looks_secret(key: str) -> bool:
    upper = key.upper()
    return any(word in upper for word in ("API_KEY", "TOKEN", "SECRET", "PASSWORD"))


def repo_matches(patterns: Iterable[str], repo: str | None) -> bool:
    return repo is not None and any(fnmatch.fnmatchcase(repo, p) for p in patterns)
