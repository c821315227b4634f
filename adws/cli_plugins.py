"""``adw plugins``: the installed plugins (entry points ``adw.parsers`` and ``adw.providers``).

Listing them loads them, each with the check its consumer applies (``workers.streams`` for
parsers, ``config.presets`` for presets), so what this shows is what a config would get:
each plugin loaded, or failed with the reason, and skipped.
"""

from __future__ import annotations

from typing import Any

import click

from adws.cli import emit

_GROUP_TITLES = {"adw.parsers": "stream formats", "adw.providers": "provider presets"}


def plugins_data() -> dict[str, Any]:
    from adw_modules.config import presets
    from adw_modules.workers import streams

    loads = [streams.plugin_formats(), presets.plugin_presets()]
    rows: list[dict[str, Any]] = []
    for load in loads:
        for name, (entry, _) in load.loaded.items():
            row = {**entry.to_dict(), "status": "loaded", "error": None}
            if load.group == "adw.providers" and (preset := presets.preset_named(name)) is not None:
                row["preset"] = preset.to_dict()
            rows.append(row)
        rows += [{**f.entry.to_dict(), "status": "failed", "error": f.error} for f in load.failed]
    return {
        "plugins": sorted(rows, key=lambda r: (r["group"], r["status"] != "loaded", r["name"])),
        "built_in": {"adw.parsers": list(streams.FORMATS), "adw.providers": list(presets.BUILTIN_PRESETS)},
        "loaded": sum(len(load.loaded) for load in loads),
        "failed": sum(len(load.failed) for load in loads),
    }


def plugins_text(data: dict[str, Any]) -> str:
    from adw_modules.ops.plugins import printable

    lines = [f"Plugins: {data['loaded']} loaded, {data['failed']} failed (skipped)"]
    for group, title in _GROUP_TITLES.items():
        rows = [r for r in data["plugins"] if r["group"] == group]
        lines += ["", f"{group} ({title}):"]
        width = max((len(r["name"]) for r in rows), default=0) + 2
        for r in rows:
            source = f"{r['distribution']} {r['version']}"
            if r["status"] == "loaded":
                what = r["value"]
                if "preset" in r:
                    what += f"  {r['preset']['base_url']}"
                lines.append(f"  ✓ {r['name']:<{width}} {source:<28} {what}")
            else:
                lines.append(f"  ✗ {r['name']:<{width}} {source:<28} {r['error']}")
        if not rows:
            lines.append("  (none installed)")
        lines.append(f"  built in: {', '.join(data['built_in'][group])}")
    return "\n".join(printable(line) for line in lines)  # names and values come from plugin metadata


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def plugins_cmd(as_json: bool) -> None:
    """Installed plugins (stream formats, provider presets): loaded, or failed and skipped."""
    emit(as_json, plugins_data(), plugins_text)
