"""Text and JSON views of the library's state, shared by the ``adw`` CLI and the tools/ scripts."""

from __future__ import annotations

from typing import Any

from adw_modules.config.schema import Config, ConfigError, Scenario, Target, load_config
from adw_modules.routing.providers import ProviderRegistry
from adw_modules.routing.router import Decision, ModelRouter, TaskAttrs

RULE = "=" * 70

# Used when the config has no [[routing.scenarios]]: the seed's own examples and a few more.
BUILTIN_SCENARIOS = (
    Scenario("Critical security issue", {"priority": "critical", "labels": ["security"], "retry_count": 0}),
    Scenario("Documentation update", {"priority": "low", "labels": ["documentation"], "retry_count": 0}),
    Scenario("Normal bug fix", {"priority": "normal", "labels": ["bug"], "retry_count": 0, "hour": 14}),
    Scenario("Retry after a failure", {"priority": "high", "labels": [], "retry_count": 1, "hour": 14}),
    Scenario("Low priority at 3 am", {"priority": "low", "labels": [], "retry_count": 0, "hour": 3}),
)


def _slash(t: Target | None) -> str:
    return "(none)" if t is None else f"{t.provider}/{t.model}"


# ---------------------------------------------------------------- providers


def providers_data(config: Config, registry: ProviderRegistry) -> dict[str, Any]:
    rows = []
    for name, pc in config.providers.items():
        a = registry.availability(name)
        rows.append(
            {
                "name": name,
                "available": a.available,
                "reason": a.reason,
                "enabled": pc.enabled,
                "description": pc.description,
                "command": pc.command_template[0],
                "output_format": pc.output_format,
                "api_key_env": pc.api_key_env,
                "models": list(pc.models),
                "max_concurrency": pc.max_concurrency,
                "rpm": pc.rpm,
                "timeout": pc.timeout,
                "idle_timeout": pc.idle_timeout,
                "preset": pc.preset,
                "base_url": pc.base_url,
                "cli": pc.cli,
                "api_format": pc.api_format,
                "proxy_compatible": pc.proxy_compatible,
                "proxy_env": pc.proxy_env,
                "proxy": pc.proxy,
                "inject": None if pc.inject is None else str(pc.inject),
            }
        )
    return {
        "config": str(config.path),
        "providers": rows,
        "available": [r["name"] for r in rows if r["available"]],
        "default": {"provider": config.routing.default_provider, "model": config.routing.default_model},
        "profile": {"active": config.profiles.active, "source": config.profiles.source},
    }


def providers_text(data: dict[str, Any]) -> str:
    width = max((len(r["name"]) for r in data["providers"]), default=10) + 2
    lines = ["", RULE, "Configured AI Providers", RULE, "", "Provider Status:"]
    for r in data["providers"]:
        mark = "✓" if r["available"] else "✗"
        reason = f"({r['reason']})" if r["reason"] else ""
        score = "" if r.get("score") is None else f"score {r['score']:.2f} "
        lines.append(f"  {mark} {r['name']:<{width}} {score}{reason}".rstrip())
    lines += ["", "CLI interfaces:", *_interface_lines(data["providers"], width)]
    lines += ["", RULE, "Available Providers:"]
    lines += [f"  ✓ {name}" for name in data["available"]] or ["  (none)"]
    lines += [
        "",
        "Current default:",
        f"  Provider: {data['default']['provider']}",
        f"  Model: {data['default']['model']}",
    ]
    profile = data.get("profile") or {}
    if profile.get("active"):  # which keys the availability above was judged with
        lines.append(f"  Credential profile: {profile['active']} (from {profile['source']})")
    lines.append(RULE)
    return "\n".join(lines)


def _interface_lines(rows: list[dict[str, Any]], width: int) -> list[str]:
    """One line per provider: its CLI, API format, proxy support (and the proxy), preset, inject."""
    cli_width = max((len(r["cli"]) for r in rows), default=3) + 2
    out = []
    for r in rows:
        proxy = f"proxy via {r['proxy_env']}" if r["proxy_compatible"] else "no proxy"
        if r["proxy"]:
            proxy += f" = {r['proxy']}"
        extras = [
            f"preset {r['preset']} at {r['base_url']}" if r["preset"] else "",
            f"inject {r['inject']}" if r["inject"] else "",
        ]
        line = f"  {r['name']:<{width}} {r['cli']:<{cli_width}} {r['api_format'] or '-':<10} {proxy}"
        out.append("; ".join([line, *(e for e in extras if e)]))
    return out


# ---------------------------------------------------------------- routing


def _scenario_result(router: ModelRouter, s: Scenario, unavailable: dict[str, str]) -> dict[str, Any]:
    planned = router.decide(s.attrs, evaluate_rules=True)
    now = router.decide(s.attrs, unavailable=unavailable, evaluate_rules=True)
    expected_ok = None
    if s.expect is not None:
        expected_ok = s.expect.replace(":", "/", 1) == _slash(planned.target)
    return {
        "name": s.name,
        "attrs": TaskAttrs.from_mapping(s.attrs).to_dict(),
        "decision": planned.to_dict(),
        "with_current_availability": now.to_dict(),
        "expect": s.expect,
        "expect_ok": expected_ok,
    }


def routing_data(config: Config, router: ModelRouter) -> dict[str, Any]:
    r = config.routing
    unavailable = router.registry.unavailable()
    scenarios = r.scenarios or BUILTIN_SCENARIOS
    return {
        "config": str(config.path),
        "enabled": r.enabled,
        "default": {"provider": r.default_provider, "model": r.default_model},
        "timezone": r.timezone,
        "fallback": [str(t) for t in r.fallback],
        "chains": {name: [str(t) for t in c.targets] for name, c in r.chains.items()},
        "rules": [
            {
                "name": rule.name,
                "priority": rule.priority,
                "enabled": rule.enabled,
                "conditions": dict(rule.conditions.raw),
                "provider": rule.provider or (None if rule.model is None else r.default_provider),
                "model": rule.model,
                "model_select": None if rule.select is None else rule.select.__dict__,
                "chain": rule.chain,
                "fallback": [str(t) for t in rule.fallback],
                "params": dict(rule.params),
            }
            for rule in r.rules
        ],
        "unavailable": unavailable,
        "scenarios": [_scenario_result(router, s, unavailable) for s in scenarios],
        "scenarios_source": "config" if r.scenarios else "built-in",
    }


def _rule_target_text(rule: dict[str, Any]) -> str:
    if rule["model"] is not None:
        text = f"{rule['provider']}/{rule['model']}"
    elif rule["model_select"] is not None:
        sel = {k: v for k, v in rule["model_select"].items() if v is not None}
        text = f"{rule['provider'] or 'any provider'} / model_select {sel}"
    else:
        text = f"chain {rule['chain']}"
    extras = []
    if rule["chain"] and rule["model"] is not None:
        extras.append(f"then chain {rule['chain']}")
    if rule["fallback"]:
        extras.append("fallback " + ", ".join(rule["fallback"]))
    return text + (f"  ({'; '.join(extras)})" if extras else "")


def routing_text(data: dict[str, Any]) -> str:
    d = data["default"]
    lines = ["", RULE, "Model Routing Configuration", RULE, ""]
    lines.append(f"Router enabled: {data['enabled']}")
    if not data["enabled"]:
        lines.append("  (tasks go to the default now; the tests below show what the rules would do)")
    lines.append(f"Default: {d['provider']}/{d['model']}")
    lines.append(f"Timezone: {data['timezone']}")
    if data["fallback"]:
        lines.append("Global fallback: " + ", ".join(data["fallback"]))
    if data["chains"]:
        lines += ["", "Fallback chains:"]
        lines += [f"  {name}: {' -> '.join(targets)}" for name, targets in data["chains"].items()]
    lines += ["", "Routing Rules (priority order):"]
    if not data["rules"]:
        lines.append("  (none)")
    for rule in data["rules"]:
        off = "  [disabled]" if not rule["enabled"] else ""
        lines.append(f"  [{rule['priority']}] {rule['name']}{off}")
        lines.append(f"      Conditions: {rule['conditions']}")
        lines.append(f"      Target: {_rule_target_text(rule)}")
    if data["unavailable"]:
        lines += ["", "Unavailable now:"]
        lines += [f"  ✗ {name} ({why})" for name, why in data["unavailable"].items()]
    lines += ["", RULE, f"ROUTING DECISION TESTS ({data['scenarios_source']} scenarios)", RULE]
    mismatches = 0
    for s in data["scenarios"]:
        dec = s["decision"]
        lines += ["", f"Scenario: {s['name']}", f"  Attrs: {s['attrs']}"]
        rule = dec["rule"] or "defaults"
        lines.append(f"  → Routed to: {dec['provider']} / {dec['model']}   (rule: {rule})")
        if dec["fallbacks"]:
            lines.append(f"    Fallbacks: {', '.join(dec['fallbacks'])}")
        now = s["with_current_availability"]
        if now["skipped"]:
            skipped = "; ".join(f"{x['target']} ({x['reason']})" for x in now["skipped"])
            target = f"{now['provider']} / {now['model']}" if now["provider"] else "nothing: the task would wait"
            lines.append(f"    Now: skips {skipped} → {target}")
        if s["expect_ok"] is False:
            mismatches += 1
            lines.append(f"    ✗ expected {s['expect']}")
    if mismatches:
        lines += ["", f"{mismatches} scenario(s) did not route as expected"]
    return "\n".join(lines)


def decide(router: ModelRouter, attrs: TaskAttrs, ignore_availability: bool = False) -> Decision:
    """``adw route`` and ``POST /api/v1/route``: one decision, now (or as if every provider were usable)."""
    unavailable = {} if ignore_availability else router.registry.unavailable()
    return router.decide(attrs, unavailable=unavailable)


def decision_text(attrs: TaskAttrs, d: Decision, history: str | None = None) -> str:
    lines = [f"Task: {attrs.to_dict()}"]
    if history is not None:
        lines.append(f"History: {history}")
    if d.target is None:
        lines.append(f"→ no target: {d.reason}")
    else:
        lines.append(f"→ {d.provider} / {d.model}   ({d.reason})")
    if d.fallbacks:
        lines.append("  Fallbacks: " + " -> ".join(str(t) for t in d.fallbacks))
    if d.selection is not None:
        lines.append(f"  Selected: {d.selection.explain()}")
    for t, why in d.skipped:
        lines.append(f"  Skipped {t}: {why}")
    if d.trace:
        lines.append("  Rules checked:")
        for c in d.trace:
            mark = "✓" if c.matched else "·"
            lines.append(f"    {mark} [{c.priority}] {c.rule}: {c.reason}")
    if d.params:
        lines.append(f"  Params: {d.params}")
    if d.inject:
        lines.append(f"  Inject: {d.inject}")
    return "\n".join(lines)


# ---------------------------------------------------------------- config


def validation_data(path: str) -> dict[str, Any]:
    """``adw config validate --json`` (and the console's ``/api/v1/config``): valid with counts
    and the fingerprint, or not with every problem."""
    try:
        config = load_config(path)
    except ConfigError as exc:
        return {"config": path, "valid": False, "errors": exc.issues}
    return {
        "config": path,
        "valid": True,
        "providers": len(config.providers),
        "rules": len(config.routing.rules),
        "chains": len(config.routing.chains),
        "fingerprint": config.fingerprint,
    }


# ---------------------------------------------------------------- models


# ---------------------------------------------------------------- attempts


def attempt_text(d: dict[str, Any]) -> str:
    ok = d["outcome"] == "success"
    where = f"{d['provider']} / {d['model']}" if d["provider"] != "transcript" else d["model"]
    took = "" if d["duration_s"] is None else f" in {d['duration_s']:.1f} s"
    head = f"{'✓' if ok else '✗'} {where}: {d['outcome']}{took}"
    if not ok and d.get("error_message"):
        head += f": {d['error_message']}"
    cost = "unknown" if d["cost_usd"] is None else f"${d['cost_usd']:.6f} ({d['cost_source']})"
    lines = [
        head,
        f"  tokens: in {d['input_tokens']:,}, out {d['output_tokens']:,}, "
        f"cache read {d['cache_read_tokens']:,}, cache write {d['cache_write_tokens']:,}",
        f"  cost: {cost}",
    ]
    if d["exit_code"] is not None:
        lines.append(f"  exit code: {d['exit_code']}")
    if d["session_id"]:
        lines.append(f"  session: {d['session_id']}   turns: {d['num_turns']}")
    if d["skipped_lines"]:
        lines.append(f"  skipped {d['skipped_lines']} unreadable line(s)")
    if d["result_text"]:
        text = d["result_text"].strip()
        lines.append("  result: " + (text[:500] + " …" if len(text) > 500 else text))
    return "\n".join(lines)
