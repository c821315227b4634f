"""The one progress comment per issue, and the lifecycle label, rendered from the store.

Rendering is a pure function of the task and its attempts, so the same state always
renders the same text and an unchanged task never costs an edit.  Running attempts show
when they started, not a ticking duration, for the same reason.
"""

from __future__ import annotations

import hashlib
from typing import Any

from adw_modules.config.github import GitHubConfig
from adw_modules.ops.display import format_usd
from adw_modules.outcomes import POLICIES, ErrorKind, Policy
from adw_modules.queue.tasks import Attempt, Task, TaskState

MARKER = "<!-- adw:progress task={task_id} -->"

_HEADLINE = {
    TaskState.QUEUED: "⏳ queued",
    TaskState.RUNNING: "🔧 running",
    TaskState.RETRY_WAIT: "⏳ waiting to retry",
    TaskState.SUCCEEDED: "✅ done",
    TaskState.FAILED: "❌ failed",
    TaskState.CANCELLED: "⛔ cancelled",
}

_PLAIN = {
    "rate_limited": "the provider rate-limited the request",
    "overloaded": "the provider was overloaded",
    "auth_failed": "the provider rejected our credentials",
    "quota_exhausted": "the provider's quota or credit ran out",
    "invalid_model": "the provider does not know that model",
    "context_too_long": "the issue was too long for the model's context window",
    "max_turns": "the agent used all the turns it was allowed",
    "budget_exceeded": "the agent reached its cost budget",
    "timeout": "the agent ran past its time limit",
    "stalled": "the agent went silent and was stopped",
    "crashed": "the agent CLI crashed",
    "cancelled": "the run was cancelled",
    "api_error": "the provider's API returned an error",
    "launch_failed": "the agent CLI could not be started",
}


def lifecycle_label(cfg: GitHubConfig, state: TaskState) -> str | None:
    return {
        TaskState.QUEUED: cfg.labels["queued"],
        TaskState.RETRY_WAIT: cfg.labels["queued"],
        TaskState.RUNNING: cfg.labels["running"],
        TaskState.SUCCEEDED: cfg.labels["done"],
        TaskState.FAILED: cfg.labels["failed"],
        TaskState.CANCELLED: cfg.labels["cancelled"],
    }.get(state)


def _duration(a: Attempt) -> str:
    if a.ended_at is None:
        return f"started {a.started_at:%H:%M} UTC"
    seconds = int((a.ended_at - a.started_at).total_seconds())
    return f"{seconds // 60}m {seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def _is_failover(a: Attempt) -> bool:
    try:
        return a.error_kind is not None and POLICIES[ErrorKind(a.error_kind)] in (Policy.FAILOVER, Policy.DISABLE)
    except ValueError:
        return False


def _attempt_line(task: Task, attempts: list[Attempt], max_attempts: int) -> str:
    """ "3 (1 retry, 1 failover; at most 8)": this round's attempts only (a /adw follow-up or
    a re-label starts a new round with the whole allowance), and why there was more than one."""
    since = task.round_started_at
    this_round = [a for a in attempts if since is None or a.started_at >= since]
    earlier = this_round[:-1]
    failovers = sum(1 for a in earlier if _is_failover(a))
    retries = len(earlier) - failovers
    words = ((retries, "retry", "retries"), (failovers, "failover", "failovers"))
    why = [f"{n} {one if n == 1 else many}" for n, one, many in words if n]
    detail = ", ".join(why)
    return f"{len(this_round)} ({detail + '; ' if detail else ''}at most {max_attempts})"


def render(task: Task, attempts: list[Attempt], max_attempts: int, work: dict[str, Any] | None = None) -> str:
    """The comment body for this task (marker included).  ``work``: the source state's
    ``workspace`` entry plus ``pr_url`` / ``pr_number`` when a pull request was opened."""
    lines = [MARKER.format(task_id=task.id), f"### adw: {_HEADLINE[task.state]}", ""]
    current = attempts[-1] if attempts else None
    lines += ["| | |", "|---|---|"]
    if current is None:
        lines.append(f"| State | {task.state} |")
    else:
        lines.append(f"| Attempt | {_attempt_line(task, attempts, max_attempts)} |")
        lines.append(f"| Rule | {current.rule or 'defaults'} |")
        lines.append(f"| Provider / model | `{current.provider}` / `{current.model}` |")
        lines.append(f"| Duration | {_duration(current)} |")
    finished = [a for a in attempts if a.ended_at is not None]
    if finished:
        tin = sum(a.input_tokens for a in finished)
        tout = sum(a.output_tokens for a in finished)
        cache = sum(a.cache_read_tokens + a.cache_write_tokens for a in finished)
        lines.append(f"| Tokens | {tin:,} in · {tout:,} out · {cache:,} cache |")
        costs = [a.cost_usd for a in finished if a.cost_usd is not None]
        sources = sorted({a.cost_source for a in finished if a.cost_source})
        cost = format_usd(sum(costs)) + (f" ({', '.join(sources)})" if sources else "") if costs else "unknown"
        lines.append(f"| Cost | {cost} |")
    if work:
        if work.get("pr_url"):
            lines.append(f"| Pull request | [#{work.get('pr_number')}]({work['pr_url']}) (draft) |")
        elif work.get("pushed") and work.get("commits_ahead"):
            lines.append(f"| Branch | `{work.get('branch')}` ({work['commits_ahead']} commit(s), work kept) |")
        elif task.state is TaskState.SUCCEEDED and not work.get("commits_ahead"):
            lines.append("| Changes | none: the agent answered without changing code (its answer is below) |")
    failovers = [a for a in attempts if _is_failover(a)]
    if failovers:
        lines += ["", "**Failovers**"]
        for a in failovers:
            lines.append(
                f"- `{a.provider}/{a.model}`: {_PLAIN.get(a.error_kind or '', a.error_kind)}"
                + (f" ({a.error_message})" if a.error_message else "")
            )
    if task.state is TaskState.RETRY_WAIT and task.wait_reason:
        lines += ["", f"Waiting: {task.wait_reason}."]
    if task.state is TaskState.CANCELLED:
        lines += ["", f"**Why:** {task.last_error or 'cancelled'}."]
    if task.state is TaskState.FAILED:
        why = _PLAIN.get(task.last_error_kind or "", "it failed")
        lines += ["", f"**Why it failed:** {why}." + (f" Last error: {task.last_error}" if task.last_error else "")]
    if task.state is TaskState.SUCCEEDED and current is not None and current.result_text:
        text = current.result_text.strip()
        lines += ["", "<details><summary>Agent's summary</summary>", "", text[:3000], "", "</details>"]
    lines += ["", f"<sub>adw task {task.id}</sub>"]
    return "\n".join(lines)


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def refusal(event_id: int, reason: str, label: str, kind: str = "label") -> str:
    what = {
        "label": (f"the `{label}` label counts only when it is applied by", "re-apply the label"),
        "assignment": ("an assignment to adw counts only when it is made by", "assign the issue again"),
        "mention": ("a mention of adw counts only when it comes from", "mention adw again"),
    }[kind]
    return (
        f"<!-- adw:refused event={event_id} -->\n"
        f"adw did not start an agent run for this issue: {what[0]} "
        f"someone with write access to this repository, and {reason}. A maintainer can {what[1]}."
    )


def pull_body(task: Task, attempts: list[Attempt], number: int) -> str:
    """The draft pull request's description: what it fixes, the agent's summary, who did it, at what cost."""
    done = [a for a in attempts if a.ended_at is not None]
    last = done[-1] if done else None
    cost = sum(a.cost_usd for a in done if a.cost_usd is not None)
    lines = [f"Fixes #{number}", ""]
    if last is not None and last.result_text:
        lines += [last.result_text.strip()[:6000], ""]
    if last is not None:
        lines.append(
            f"Made by adw with `{last.provider}` / `{last.model}` (rule {last.rule or 'defaults'}), "
            f"{len(done)} attempt(s), cost {format_usd(cost)}."
        )
    lines.append(f"<!-- adw:pr task={task.id} -->")
    return "\n".join(lines)
