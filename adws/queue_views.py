"""Text and JSON views of the queue: status, tasks, one task, usage."""

from __future__ import annotations

import datetime as dt
from typing import Any

from adw_modules.config.schema import Config
from adw_modules.ops.display import ago, clock, format_usd, relative
from adw_modules.ops.stats import provider_scores
from adw_modules.queue import health
from adw_modules.queue.store import Store
from adw_modules.queue.tasks import PRIORITY_RANK, Task, TaskState
from adw_modules.routing.providers import ProviderRegistry

Clock = dt.datetime | None


def _now(now: Clock) -> dt.datetime:
    return now or dt.datetime.now(dt.UTC)


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.datetime) else value


def status_data(config: Config, store: Store, now: Clock = None) -> dict[str, Any]:
    now = _now(now)
    registry = ProviderRegistry(config)
    states = store.provider_states()
    spend = store.spend_since(now.replace(hour=0, minute=0, second=0, microsecond=0))
    scores = provider_scores(store, config, states)
    providers = []
    for name, pc in config.providers.items():
        a = registry.availability(name)
        st = states.get(name)
        g = health.gate(st, now)
        providers.append(
            {
                "name": name,
                "available": a.available and g.open,
                "reason": a.reason if not a.available else (None if g.open and not g.trial else g.reason),
                "circuit": "closed" if st is None else str(st.circuit),
                "cooldown_until": None if st is None or st.cooldown_until is None else st.cooldown_until.isoformat(),
                "cooldown_reason": None if st is None else st.cooldown_reason,
                "success_rate": health.success_rate(st),
                "score": scores.get(name),
                "spend_today_usd": round(spend.get(name, 0.0), 6),
                "daily_budget_usd": pc.daily_budget_usd,
            }
        )
    running = []
    for att in store.running_attempts():
        task = store.get_task(att.task_id)
        running.append(
            {
                "task_id": att.task_id,
                "title": None if task is None else task.title,
                "url": None if task is None else task.url,
                "attempt": att.number,
                "provider": att.provider,
                "model": att.model,
                "started_at": att.started_at.isoformat(),
                "owner": att.owner,
                "pid": att.pid,
            }
        )
    return {
        "queue": store.counts_by_state_priority(),
        "running": running,
        "providers": providers,
        "coordinators": [{k: _iso(v) for k, v in c.items()} for c in store.coordinators()],
    }


def tasks_data(tasks: list[Task]) -> dict[str, Any]:
    """``adw tasks --json`` and ``/api/v1/tasks``."""
    return {"tasks": [t.to_dict() for t in tasks]}


def task_data(store: Store, task_id: int) -> dict[str, Any] | None:
    """``adw task show --json`` and ``/api/v1/tasks/{id}``: the task, its attempts, its events; None if no such task."""
    task = store.get_task(task_id)
    if task is None:
        return None
    return {
        "task": task.to_dict(),
        "attempts": [a.to_dict() for a in store.attempts_for(task_id)],
        "events": store.events(task_id=task_id, limit=200),
    }


def usage_data(store: Store, by: str, days: int | None, now: Clock = None) -> dict[str, Any]:
    """``adw usage --json`` and ``/api/v1/usage``."""
    since = None if days is None else _now(now) - dt.timedelta(days=days)
    return {"by": by, "rows": store.usage(by, since=since)}


def status_text(d: dict[str, Any], now: Clock = None, tz: dt.tzinfo | None = None) -> str:
    now = _now(now)
    prios = list(PRIORITY_RANK)
    lines = [
        "Queue (state × priority):",
        f"  {'state':<12}" + "".join(f"{p:>10}" for p in prios) + f"{'total':>8}",
    ]
    for state in TaskState:
        row = d["queue"].get(str(state), {})
        lines.append(f"  {state!s:<12}" + "".join(f"{row.get(p, 0):>10}" for p in prios) + f"{sum(row.values()):>8}")
    lines += ["", f"Running attempts: {len(d['running'])}"]
    for r in d["running"]:
        lines.append(
            f"  task {r['task_id']} #{r['attempt']} {r['provider']}/{r['model']}  for {ago(r['started_at'], now)}"
            f"  pid {r['pid'] or '-'}  {r['owner']}  {r['title'] or ''}".rstrip()
        )
    lines += ["", "Providers:", *(_provider_line(p, now, tz) for p in d["providers"])]
    if d["coordinators"]:
        lines += ["", "Coordinators:"]
        lines += [
            f"  {c['id']}  host {c['host']}  pid {c['pid']}  heartbeat {ago(c['heartbeat_at'], now)} ago"
            for c in d["coordinators"]
        ]
    return "\n".join(lines)


def _provider_line(p: dict[str, Any], now: dt.datetime, tz: dt.tzinfo | None) -> str:
    mark = "✓" if p["available"] else "✗"
    rate = "-" if p["success_rate"] is None else f"{p['success_rate']:.0%}"
    cap = "" if p["daily_budget_usd"] is None else f" of {format_usd(p['daily_budget_usd'])}"
    line = f"  {mark} {p['name']:<20} circuit {p['circuit']:<9} success {rate:>5}"
    if p.get("score") is not None:
        line += f"  score {p['score']:.2f}"
    line += f"  spend today {format_usd(p['spend_today_usd'])}{cap}"
    if p["cooldown_until"] and p["circuit"] != "closed":
        line += f"  cooling down, back {relative(p['cooldown_until'], now, tz)}"
        if p["cooldown_reason"]:
            line += f": {p['cooldown_reason']}"
    elif p["reason"]:
        line += f"  ({p['reason']})"
    return line


def tasks_text(d: dict[str, Any]) -> str:
    if not d["tasks"]:
        return "No tasks."
    lines = [f"{'id':>6}  {'state':<11} {'priority':<9} {'retries':>7} {'tries':>5}  title"]
    for t in d["tasks"]:
        extra = (
            f"  [{t['wait_reason']}]"
            if t["wait_reason"]
            else (f"  [{t['last_error']}]" if t["state"] == "failed" else "")
        )
        url = f"  {t['url']}" if t["url"] else ""
        lines.append(
            f"{t['id']:>6}  {t['state']:<11} {t['priority']:<9} {t['retry_count']:>7} {t['attempt_count']:>5}  "
            f"{t['title']}{url}{extra}"
        )
    return "\n".join(lines)


def task_text(d: dict[str, Any], now: Clock = None, tz: dt.tzinfo | None = None) -> str:
    now = _now(now)
    t = d["task"]
    lines = [
        f"Task {t['id']}: {t['title']}",
        f"  state {t['state']}, priority {t['priority']}, labels {t['labels']}, "
        f"retries {t['retry_count']}, attempts {t['attempt_count']}",
        f"  source {t['source']}:{t['external_id']}",
    ]
    if t["url"]:
        lines.append(f"  {t['url']}")
    if t["wait_reason"]:
        not_before = f" (not before {relative(t['not_before'], now, tz)})" if t["not_before"] else ""
        lines.append(f"  waiting: {t['wait_reason']}{not_before}")
    if t["last_error"]:
        lines.append(f"  last error: {t['last_error']}")
    for a in d["attempts"]:
        lines += ["", *_attempt_lines(a, now, tz)]
    if d["events"]:
        lines += ["", "  Events (newest first):"]
        lines += [f"    {clock(e['at'], now, tz)}  {e['kind']}: {e['message']}" for e in d["events"][:30]]
    return "\n".join(lines)


def _attempt_lines(a: dict[str, Any], now: dt.datetime, tz: dt.tzinfo | None) -> list[str]:
    routing = a["routing"] or {}
    lines = [
        f"  Attempt {a['number']}: {a['provider']}/{a['model']}  rule {a['rule'] or 'defaults'}"
        + (f"  (failover from {a['failover_from']})" if a["failover_from"] else "")
    ]
    if routing.get("skipped"):
        lines.append("    skipped: " + "; ".join(f"{s['target']} ({s['reason']})" for s in routing["skipped"]))
    if routing.get("fallbacks"):
        lines.append("    fallbacks: " + ", ".join(routing["fallbacks"]))
    if routing.get("selection"):  # a learned / weighted / least-busy pick: why this candidate
        lines.append(f"    selected: {routing['selection']}")
    outcome = a["outcome"] or "running"
    err = f": {a['error_message']}" if a["error_message"] else ""
    exit_code = f" (exit {a['exit_code']})" if a.get("exit_code") not in (None, 0) else ""
    lines.append(f"    outcome {outcome}{exit_code}{err}")
    lines.append(
        f"    tokens in {a['input_tokens']:,} out {a['output_tokens']:,} cache r/w {a['cache_read_tokens']:,}/"
        f"{a['cache_write_tokens']:,}  cost {format_usd(a['cost_usd'])} ({a['cost_source'] or '-'})"
    )
    for model, u in sorted((a.get("model_usage") or {}).items()):
        lines.append(
            f"      {model}: in {u['input_tokens']:,} out {u['output_tokens']:,} cache r/w "
            f"{u['cache_read_tokens']:,}/{u['cache_write_tokens']:,}  cost {format_usd(u.get('cost_usd'))}"
        )
    ended = f"ended {clock(a['ended_at'], now, tz)}" if a["ended_at"] else f"running for {ago(a['started_at'], now)}"
    lines.append(f"    started {clock(a['started_at'], now, tz)}  {ended}  pid {a['pid'] or '-'}  {a['owner']}")
    return lines


def usage_text(d: dict[str, Any]) -> str:
    rows = d["rows"]
    if not rows:
        return "No attempts yet."
    head = f"{d['by']:<36} {'attempts':>8} {'in':>10} {'out':>10} {'cache r':>10} {'cache w':>10} {'cost':>10}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['key']!s:<36} {r['attempts']:>8} {r['input_tokens']:>10,} {r['output_tokens']:>10,} "
            f"{r['cache_read_tokens']:>10,} {r['cache_write_tokens']:>10,} {format_usd(r['cost_usd']):>10}"
        )
    if d["by"] in ("label", "model"):
        # An attempt counts under each of its labels (or models): the rows do not add up.
        lines.append(f"(an attempt counts under each {d['by']} it has: rows overlap, so there is no total)")
        return "\n".join(lines)
    total = sum(r["cost_usd"] or 0 for r in rows)
    lines.append(f"{'total':<36} {sum(r['attempts'] for r in rows):>8} {'':>43} {format_usd(total):>10}")
    return "\n".join(lines)
