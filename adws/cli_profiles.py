"""``adw profiles``: the credential profiles, the active one and why, each reference checked."""

from __future__ import annotations

import os
from typing import Any

import click

from adws.cli import context_for, emit, read_options


@click.command("profiles")
@read_options
def profiles_cmd(config_path: str | None, as_json: bool) -> None:
    """Credential profiles: which is active and why, and whether each reference resolves (never values)."""
    from adw_modules.ops.profiles import profiles_data

    config = context_for(config_path).config()
    emit(as_json, profiles_data(config, dict(os.environ)), profiles_text)


def profiles_text(data: dict[str, Any]) -> str:
    if not data["profiles"]:
        return "No credential profiles ([profiles] in config.toml); each provider's own references are in force."
    if data["active"] is None:
        head = "Active profile: none (each provider's own references are in force)"
    else:
        head = f"Active profile: {data['active']} (from {data['source']})"
    lines = [head, "Chosen by, first found: --profile, $ADW_PROFILE, [profiles] default_profile", ""]
    width = max((len(r["target"]) for p in data["profiles"] for r in p["references"]), default=6)
    for p in data["profiles"]:
        marker = "*" if p["active"] else " "
        default = " (default_profile)" if p["name"] == data["default_profile"] else ""
        lines.append(f"{marker} {p['name']}{default}")
        if not p["references"]:
            lines.append("    (overrides nothing)")
        for r in p["references"]:
            status = "✓ resolves" if r["resolves"] else f"✗ {r['why']}"
            lines.append(f"    {r['target']:<{width}}  {r['key']} = {r['shown']}  {status}")
    lines += ["", "Values are never shown; a command's value is masked in every log and transcript."]
    return "\n".join(lines)
