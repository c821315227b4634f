"""Which credential profile is active and whether each reference it names resolves — never a value.

``references`` walks every profile of ``[profiles]`` (the active one and the others) and
checks each secret reference it overrides: an ``api_key_env`` / ``token_env`` resolves when
the variable is set and not empty; an ``api_key_command`` / ``token_command`` when the command
prints a value (run through ``ops.secrets``, so the value is registered with the redactor
and masked wherever it could appear; it is dropped at once).  ``adw profiles`` and
``adw doctor`` show the result.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from adw_modules.config.schema import Config
from adw_modules.ops.secrets import SecretError, Secrets


@dataclass(frozen=True)
class Reference:
    profile: str
    target: str  # a provider name, or "github"
    key: str  # api_key_env, api_key_command, token_env, token_command
    shown: str  # the reference as written, commands shortened to their program
    resolves: bool
    why: str | None = None  # when it does not

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def shown_reference(key: str, value: Any) -> str:
    if key.endswith("_command") and isinstance(value, list | tuple) and value:
        rest = f" … ({len(value) - 1} arg{'' if len(value) == 2 else 's'})" if len(value) > 1 else ""
        return f"{value[0]}{rest}"
    return str(value)


def references(config: Config, secrets: Secrets) -> list[Reference]:
    """Every reference of every profile, each checked (commands run once each)."""
    out: list[Reference] = []
    for name, profile in config.profiles.profiles.items():
        for provider, keys in profile.providers.items():
            out += [_checked(secrets, name, provider, key, value) for key, value in keys.items()]
        out += [_checked(secrets, name, "github", key, value) for key, value in profile.github.items()]
    return out


def _checked(secrets: Secrets, profile: str, target: str, key: str, value: Any) -> Reference:
    """One reference (``*_env``: a variable; ``*_command``: a command), resolved the way
    ``ops.secrets`` resolves it for its provider or for GitHub."""
    shown = shown_reference(key, value)
    env_name, command = (value, None) if key.endswith("_env") else (None, tuple(value))
    try:
        secrets.required(env_name, command, key, f"{value} not set")
    except SecretError as exc:
        return Reference(profile, target, key, shown, False, str(exc))
    return Reference(profile, target, key, shown, True)


def profiles_data(config: Config, environ: Mapping[str, str], secrets: Secrets | None = None) -> dict[str, Any]:
    """``adw profiles --json``: the active profile, how it was chosen, and every reference."""
    table = config.profiles
    refs = references(config, secrets if secrets is not None else Secrets(environ))
    return {
        "active": table.active,
        "source": table.source,
        "default_profile": table.default_profile,
        "precedence": ["--profile", "ADW_PROFILE", "default_profile"],
        "profiles": [
            {
                "name": name,
                "active": name == table.active,
                "references": [r.to_dict() for r in refs if r.profile == name],
            }
            for name in table.profiles
        ],
    }
