"""``[profiles]``: named credential sets (work / personal) laid over the config as it is built.

A profile overrides secret *references* only, never values::

    [profiles]
    default_profile = "work"

    [profiles.work.providers.claude-cli]
    api_key_env = "WORK_ANTHROPIC_API_KEY"

    [profiles.personal.providers.claude-cli]
    api_key_command = ["op", "read", "op://Personal/anthropic/key"]

    [profiles.personal.github]
    token_env = "PERSONAL_GITHUB_TOKEN"

The active profile is, first found: the explicit choice (``adw --profile NAME``), the
``ADW_PROFILE`` environment variable, ``default_profile``; none of them means no profile.
``apply_profile`` validates the table and rewrites the raw data before the sections are
validated, so everything downstream (``ops.secrets``, availability, the doctor) sees plain
``api_key_env`` / ``api_key_command`` / ``token_env`` / ``token_command`` and needs no change.

Overlay rules: the profile's keys replace the same keys; a profile that names only an
environment variable (``api_key_env`` / ``token_env``) also drops the base's command, since a
command wins over a variable and the profile's reference must be the one in force.  A profile
that names only a command keeps the base variable (it is the name the key is passed in).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from adw_modules.config.validation import Validator, type_name

PROFILE_ENV = "ADW_PROFILE"
_PROVIDER_KEYS = ("api_key_env", "api_key_command")
_GITHUB_KEYS = ("token_env", "token_command")
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Profile:
    """One profile's overrides, as written: provider name -> {key: reference}; github keys."""

    name: str
    providers: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    github: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ProfilesConfig:
    profiles: Mapping[str, Profile] = field(default_factory=dict)
    default_profile: str | None = None
    active: str | None = None  # the profile in force
    source: str | None = None  # how it was chosen: "--profile", "ADW_PROFILE", "default_profile"
    requested: str | None = None  # the explicit choice, kept so a reload resolves the same way


def choose_profile(
    requested: str | None, environ: Mapping[str, str], default_profile: str | None
) -> tuple[str | None, str | None]:
    """(name, source) by precedence: --profile, then $ADW_PROFILE, then default_profile."""
    if requested:
        return requested, "--profile"
    if environ.get(PROFILE_ENV):
        return environ[PROFILE_ENV], PROFILE_ENV
    if default_profile:
        return default_profile, "default_profile"
    return None, None


def apply_profile(
    v: Validator, data: dict[str, Any], requested: str | None, environ: Mapping[str, str]
) -> tuple[dict[str, Any], ProfilesConfig]:
    """Validate ``[profiles]``, pick the active one, and return (data with it applied, the table)."""
    raw = v.get(data, "profiles", dict, "profiles", {}) or {}
    default = v.get(raw, "default_profile", str, "profiles")
    profiles = {
        name: p for name, body in raw.items() if name != "default_profile" if (p := _profile(v, data, name, body))
    }
    if default is not None and default not in profiles:
        v.err("profiles", f'default_profile "{default}" is not a profile (profiles: {_names(profiles)})')
        default = None
    active, source = choose_profile(requested, environ, default)
    if active is not None and active not in profiles:
        v.err("profiles", f'profile "{active}" (from {source}) is not defined (profiles: {_names(profiles)})')
        active = source = None
    table = ProfilesConfig(profiles, default, active, source, requested or None)
    if active is None:
        return data, table
    return overlay(data, profiles[active]), table


def overlay(data: Mapping[str, Any], profile: Profile) -> dict[str, Any]:
    """``data`` with ``profile``'s references in force (a deep copy; ``data`` is untouched)."""
    out = copy.deepcopy(dict(data))
    for provider, keys in profile.providers.items():
        table = out["providers"][provider]
        if "api_key_env" in keys and "api_key_command" not in keys:
            table.pop("api_key_command", None)
        table.update(keys)
    if profile.github:
        table = out["github"]
        if "token_env" in profile.github and "token_command" not in profile.github:
            table.pop("token_command", None)
        table.update(profile.github)
    return out


def _names(profiles: Mapping[str, Profile]) -> str:
    return ", ".join(profiles) or "none"


def _profile(v: Validator, data: Mapping[str, Any], name: str, body: Any) -> Profile | None:
    where = f"profiles.{name}"
    if not isinstance(body, dict):
        v.err(where, f"must be a table of overrides, not {type_name(body)}")
        return None
    if not _NAME.match(name):
        v.err(where, "a profile name is letters, digits, - and _ (at most 64)")
        return None
    v.unknown_keys(body, ("providers", "github"), where, "key")
    providers_raw = v.get(body, "providers", dict, where, {}) or {}
    defined_raw = data.get("providers")
    defined: dict[str, Any] = defined_raw if isinstance(defined_raw, dict) else {}
    providers: dict[str, dict[str, Any]] = {}
    for pname, keys in providers_raw.items():
        w = f"{where}.providers.{pname}"
        if pname not in defined or not isinstance(defined[pname], dict):
            v.err(w, f'provider "{pname}" is not defined (defined: {", ".join(defined) or "none"})')
            continue
        refs = _references(v, keys, w, _PROVIDER_KEYS)
        if refs:
            providers[pname] = refs
    github = _references(v, v.get(body, "github", dict, where, {}) or {}, f"{where}.github", _GITHUB_KEYS)
    if github and not isinstance(data.get("github"), dict):
        v.err(f"{where}.github", "overrides [github], which this config does not have")
        github = {}
    return Profile(name, providers, github)


def _references(v: Validator, keys: Any, where: str, allowed: tuple[str, str]) -> dict[str, Any]:
    """The secret references of one override table, checked: an env var name, an argv."""
    if not isinstance(keys, dict):
        v.err(where, f'must be a table like {{ {allowed[0]} = "NAME" }}, not {type_name(keys)}')
        return {}
    v.unknown_keys(keys, allowed, where, "secret-reference key")
    env_key, cmd_key = allowed
    out: dict[str, Any] = {}
    env = v.get(keys, env_key, str, where)
    if env is not None:
        if _ENV_NAME.match(env):
            out[env_key] = env
        else:
            v.err(where, f'{env_key} "{env}" is not an environment variable name (it names where the secret is)')
    cmd = v.str_list(keys, cmd_key, where)
    if cmd is not None:
        if cmd and cmd[0]:
            out[cmd_key] = cmd
        else:
            v.err(where, f"{cmd_key} must be a non-empty argv")
    return out
