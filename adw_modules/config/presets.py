"""Provider presets: ``preset = "nvidia-nim"`` fills an OpenAI-compatible provider's table.

A preset is a base URL, the key's reference, rate limits and an API format.  Its provider
runs ``tools/openrouter-cli.py --base-url {base_url}`` (Claude-compatible stream-JSON, so the
``claude-stream-json`` parser reads it).  Every key the provider's own table writes wins over
the preset's: an explicit ``api_key_env`` / ``api_key_command``, ``base_url``, ``rpm``, a
whole ``command_template``.

The built-in presets are below; more come from plugins, as the ``adw.providers``
entry-point group (``ops.plugins``), read only when a config names a preset that is not
built in (or by ``adw plugins``).  A plugin's object is a mapping of ``PRESET_KEYS``; one
that is not, or whose name is a built-in's, is reported and skipped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adw_modules.config.validation import PASSWORD_IN_URL
from adw_modules.ops.plugins import PROVIDERS, GroupLoad, load_group

# The wrapper every preset runs: an absolute path, so a config anywhere can use a preset.
OPENROUTER_CLI = str(Path(__file__).resolve().parents[2] / "tools" / "openrouter-cli.py")
PRESET_KEYS = (
    "description",
    "base_url",
    "api_key_env",
    "rpm",
    "max_concurrency",
    "price_provider",
)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_URL_PASSWORD = re.compile(r"(://[^/@:]+:)[^/@]+@")
_HTTP_URL = re.compile(r"https?://[^\s/?#@]+(?:[/?#]\S*)?")


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a base URL (None: it can): http(s), no spaces or control
    characters, no password (secrets go by reference)."""
    if PASSWORD_IN_URL.search(url):
        return "holds a password: give secrets by reference, never in the file"
    if any(ord(c) < 32 or ord(c) == 127 for c in url) or not _HTTP_URL.fullmatch(url):
        return "is not an http(s) URL"
    return None


def shown_url(url: str) -> str:
    """``url`` as an error message may show it: a password in it (as PASSWORD_IN_URL finds
    one) replaced by ``***``."""
    return _URL_PASSWORD.sub(r"\1***@", url)


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    base_url: str
    api_key_env: str | None  # None: the server needs no key (a local server)
    rpm: int | None = None
    max_concurrency: int | None = None
    price_provider: str | None = None
    source: str = "built-in"  # or "plugin DIST VERSION"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "base_url": self.base_url,
            "api_key_env": self.api_key_env,
            "rpm": self.rpm,
            "max_concurrency": self.max_concurrency,
            "price_provider": self.price_provider,
            "source": self.source,
        }


BUILTIN_PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        # build.nvidia.com's free tier: 40 requests a minute per key.
        Preset(
            "nvidia-nim", "NVIDIA NIM (build.nvidia.com)", "https://integrate.api.nvidia.com/v1", "NVIDIA_API_KEY", 40
        ),
        # Local servers answer one request at a time on one GPU, and want no key.
        Preset("lmstudio", "LM Studio on this machine", "http://localhost:1234/v1", None, max_concurrency=1),
        Preset("ollama", "Ollama on this machine", "http://localhost:11434/v1", None, max_concurrency=1),
        Preset(
            "openrouter",
            "OpenRouter",
            "https://openrouter.ai/api/v1",
            "OPENROUTER_API_KEY",
            price_provider="openrouter",
        ),
    )
}


def plugin_presets() -> GroupLoad:
    """The ``adw.providers`` plugins, loaded once: each a mapping of preset fields by name."""
    return load_group(PROVIDERS, _check_preset)


def _check_preset(name: str, obj: Any) -> str | None:
    if name in BUILTIN_PRESETS:
        return f'"{name}" is a built-in preset: a plugin cannot replace it'
    try:
        preset_from_mapping(name, obj, "plugin")
    except ValueError as exc:
        return str(exc)
    return None


def preset_from_mapping(name: str, raw: Any, source: str) -> Preset:
    """A plugin's preset from its mapping; ValueError saying what is wrong."""
    if not isinstance(raw, Mapping):
        raise ValueError(f"a preset must be a mapping of {', '.join(PRESET_KEYS)}, not {type(raw).__name__}")
    unknown = sorted(str(k) for k in raw if k not in PRESET_KEYS)
    if unknown:
        raise ValueError(f"unknown preset key(s) {', '.join(unknown)} (known: {', '.join(PRESET_KEYS)})")
    base_url = raw.get("base_url")
    if not isinstance(base_url, str):
        raise ValueError(f"base_url must be a string (an http(s) URL), not {type(base_url).__name__}")
    if (why := url_problem(base_url)) is not None:
        raise ValueError(f"base_url {shown_url(base_url)!r:.80} {why}")
    key_env = raw.get("api_key_env")
    if key_env is not None and not (isinstance(key_env, str) and _ENV_NAME.match(key_env)):
        raise ValueError(f"api_key_env must be an environment variable name, not {key_env!r}")
    limits = {k: raw.get(k) for k in ("rpm", "max_concurrency")}
    for key, value in limits.items():
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
            raise ValueError(f"{key} must be a positive integer, not {value!r}")
    description, price_provider = raw.get("description", name), raw.get("price_provider")
    if not isinstance(description, str) or not (price_provider is None or isinstance(price_provider, str)):
        raise ValueError("description and price_provider must be strings")
    return Preset(
        name, description, base_url, key_env, limits["rpm"], limits["max_concurrency"], price_provider, source
    )


def preset_named(name: str) -> Preset | None:
    """A built-in preset, else a plugin's (plugins are read only here, for an unknown name)."""
    if name in BUILTIN_PRESETS:
        return BUILTIN_PRESETS[name]
    found = plugin_presets().loaded.get(name)
    if found is None:
        return None
    entry, raw = found
    return preset_from_mapping(name, raw, f"plugin {entry.distribution} {entry.version}")


def all_presets() -> list[Preset]:
    """Built-in presets, then the plugins' (this loads them)."""
    return [*BUILTIN_PRESETS.values(), *(p for n in plugin_presets().loaded if (p := preset_named(n)))]


def unknown_preset(name: str) -> str:
    """The message for a preset nobody provides, with a failed plugin's reason if one tried."""
    known = ", ".join(p.name for p in all_presets())
    failure = plugin_presets().failure_for(name)
    why = f"; its plugin failed: {failure.error}" if failure is not None else ""
    return f'preset "{name}" is unknown (known: {known}){why}'


def preset_table(preset: Preset, raw: Mapping[str, Any]) -> dict[str, Any]:
    """The provider table ``raw`` with what it leaves out filled from ``preset``.

    The template passes the key's variable (``pass_api_key_as``, else ``api_key_env``) as
    ``--api-key-env``; a server that needs no key gets ``--no-api-key``.
    """
    table: dict[str, Any] = {
        "description": preset.description,
        "output_format": "claude-stream-json",
        "base_url": preset.base_url,
    }
    if preset.api_key_env is not None:
        table["api_key_env"] = preset.api_key_env
        table["requires_api_key"] = True
    for key in ("rpm", "max_concurrency", "price_provider"):
        if getattr(preset, key) is not None:
            table[key] = getattr(preset, key)
    table.update({k: v for k, v in raw.items() if k != "preset"})
    if "command_template" not in raw:
        key_env = table.get("pass_api_key_as") or table.get("api_key_env")
        key_args = ["--api-key-env", key_env] if isinstance(key_env, str) else ["--no-api-key"]
        table["command_template"] = [
            OPENROUTER_CLI,
            *("-p", "{prompt_file}", "--model", "{model}", "--output-file", "{output_file}"),
            *("--output-format", "stream-json", "--base-url", "{base_url}", *key_args),
        ]
    return table
