"""config.toml: load it with tomlkit, validate all of it, and freeze it into dataclasses.

Validation reports every problem at once, each with the file and the line and column
(TOML syntax), or the file, the line and the table path and what is wrong (semantics), e.g.::

    config.toml:48: routing.rules[3] "docs-haiku": provider "claud-cli" is not defined
    (defined: claude-cli, openrouter)

Unknown keys and unknown condition names are errors, so a typo never silently turns
a rule off.  Secrets are only ever referenced (an env var name or a command), never
held in the file.

This module holds ``Config`` and the loader; each section's dataclasses and validation
live in their own module (``providers``, ``routing``, ``service``, ``github``,
``workspace``), all read through ``validation.Validator``.  The names most code needs are
re-exported here, so ``from adw_modules.config.schema import Config, Target`` keeps working.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomlkit
import tomlkit.exceptions

from adw_modules.config.catalog import CatalogConfig, validate_catalog
from adw_modules.config.github import GitHubConfig, validate_github
from adw_modules.config.learning import LearningConfig, validate_learning
from adw_modules.config.lines import LineIndex
from adw_modules.config.profiles import ProfilesConfig, apply_profile
from adw_modules.config.providers import TIERS, ModelSpec, ProviderConfig, undefined_provider, validate_providers
from adw_modules.config.routing import Chain, ModelSelector, RoutingConfig, Rule, Scenario, Target, validate_routing
from adw_modules.config.service import ServiceConfig, validate_service
from adw_modules.config.validation import Validator
from adw_modules.config.web import WebConfig, validate_web
from adw_modules.config.workspace import WorkspaceConfig, validate_workspace

__all__ = [
    "TIERS",
    "Chain",
    "Config",
    "ConfigError",
    "ModelSelector",
    "ModelSpec",
    "ProviderConfig",
    "RoutingConfig",
    "Rule",
    "Scenario",
    "Target",
    "load_config",
    "parse_config",
    "read_document",
]

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
    "catalog",
    "profiles",
    "learning",
    "web",
)


class ConfigError(Exception):
    """The config cannot be used.  ``issues`` holds every problem found, one line each."""

    def __init__(self, issues: list[str]) -> None:
        super().__init__("\n".join(issues))
        self.issues = issues


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
    catalog: CatalogConfig = field(default_factory=CatalogConfig)
    profiles: ProfilesConfig = field(default_factory=ProfilesConfig)
    learning: LearningConfig = field(default_factory=LearningConfig)
    web: WebConfig = field(default_factory=WebConfig)

    @property
    def base_dir(self) -> Path:
        return self.path.resolve().parent

    def provider_names(self) -> list[str]:
        return list(self.providers)


def load_config(path: str | Path, profile: str | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate a config file; raises ConfigError listing every problem.

    ``profile`` is the explicit credential profile (``adw --profile``); without it
    ``$ADW_PROFILE`` (from ``environ``, default ``os.environ``), then ``default_profile``.
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError([f"{p}: file not found (set --config or $ADW_CONFIG)"]) from None
    except OSError as exc:
        raise ConfigError([f"{p}: cannot read: {exc.strerror or exc}"]) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, col = _line_col(data, exc.start)
        raise ConfigError(
            [f"{p}:{line}:{col}: not valid UTF-8 (byte offset {exc.start}: {exc.reason}); TOML files are UTF-8"]
        ) from None
    return parse_config(text.replace("\r\n", "\n"), p, profile, environ)


def read_document(text: str, path: Path) -> tomlkit.TOMLDocument:
    """The parsed document; any problem, whatever tomlkit raised, is ``path:line:col: message``.

    Columns count from 1.  tomlkit reports a position for syntax errors but not for others
    (a key defined twice in one table is ``KeyAlreadyPresent``, raised bare), so those are
    placed by the standard library's parser, which reports one for everything.
    """
    try:
        return tomlkit.parse(text)
    except tomlkit.exceptions.ParseError as exc:
        # tomlkit appends " at line L col C" (C from 0); we put the position first, compiler-style.
        msg = str(exc).split(" at line ")[0]
        line, col = _duplicate_position(text, msg) if " already exists" in msg else (exc.line, exc.col + 1)
        raise ConfigError([f"{path}:{line}:{col}: TOML syntax error: {msg}"]) from None
    except (tomlkit.exceptions.TOMLKitError, ValueError, RecursionError) as exc:
        line, col = _duplicate_position(text, str(exc))
        raise ConfigError([f"{path}:{line}:{col}: TOML error: {exc}"]) from None


def _duplicate_position(text: str, message: str) -> tuple[int, int]:
    """Where a key or table is defined again: tomllib's line (tomlkit reports the end of the
    table, or nothing), and the key's column in it."""
    line, col = _std_parser_position(text)
    key = re.match(r'Key "(.+)" already exists', message)
    lines = text.splitlines()
    if key and line <= len(lines) and (at := lines[line - 1].find(key[1])) >= 0:
        col = at + 1  # tomllib points past the value; the key is where to look
    return line, col


def _std_parser_position(text: str) -> tuple[int, int]:
    """Where ``tomllib`` finds the document wrong: (line, column), both from 1; (1, 1) if it cannot say."""
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        if found:
            return int(found[1]), int(found[2])
        if "end of document" in str(exc):
            return _line_col(text.encode(), len(text.encode()))
    except RecursionError:
        pass
    return 1, 1


def _line_col(data: bytes, offset: int) -> tuple[int, int]:
    """The (line, column) of byte ``offset``, both from 1; the column counts bytes."""
    line_start = data.rfind(b"\n", 0, offset) + 1
    return data.count(b"\n", 0, offset) + 1, offset - line_start + 1


def parse_config(text: str, path: Path, profile: str | None = None, environ: Mapping[str, str] | None = None) -> Config:
    doc = read_document(text, path)
    data = doc.unwrap()
    return _build(Validator(data, path, LineIndex(text)), profile, os.environ if environ is None else environ)


def _build(v: Validator, profile: str | None, environ: Mapping[str, str]) -> Config:
    """Every section validated in file-reading order; raises ConfigError if any problem was reported."""
    v.unknown_keys(v.data, _TOP_KEYS, "", "top-level table")
    # The credential profile first: the sections below validate its references as their own.
    data, profiles = apply_profile(v, v.data, profile, environ)
    params = v.get(data, "params", dict, "params", {}) or {}
    providers = validate_providers(v, v.get(data, "providers", dict, "providers", {}) or {}, params)
    llm_provider, llm_model = _llm(v, data, providers)
    routing = validate_routing(v, v.get(data, "routing", dict, "routing", {}) or {}, providers, llm_provider, llm_model)
    service = validate_service(v, data)
    github = validate_github(v, data)
    workspace = validate_workspace(v, data)
    catalog = validate_catalog(v, data, service.coordinator.state_dir)
    learning = validate_learning(v, data)
    web = validate_web(v, data)
    if v.issues:
        raise ConfigError(v.issues)
    assert routing is not None
    fingerprint = hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return Config(
        path=v.path,
        providers=providers,
        routing=routing,
        params=dict(params),
        llm_provider=llm_provider,
        llm_model=llm_model,
        fingerprint=fingerprint,
        service=service,
        github=github,
        workspace=workspace,
        catalog=catalog,
        profiles=profiles,
        learning=learning,
        web=web,
    )


def _llm(
    v: Validator, data: Mapping[str, Any], providers: Mapping[str, ProviderConfig]
) -> tuple[str | None, str | None]:
    """``[llm]``: (provider, model_default), the defaults when [routing] names none."""
    llm = v.get(data, "llm", dict, "llm", {}) or {}
    v.unknown_keys(llm, ("provider", "model_default"), "llm", "key")
    llm_provider = v.get(llm, "provider", str, "llm")
    llm_model = v.get(llm, "model_default", str, "llm")
    if llm_provider is not None and llm_provider not in providers and providers:
        v.err("llm", undefined_provider(llm_provider, providers))
    return llm_provider, llm_model
