"""``adw demo``: the coordinator end to end on a fresh clone, with no key, network or agent CLI.

It writes a demo config whose providers are the local dry-run agent (tools/dry-run-agent.py)
under three names: ``claude-dry`` answers its first calls with HTTP 429 (so failover shows),
``crashy-dry`` crashes (so a task-level retry, routed by ``retry-use-haiku``, shows), and
``openrouter-dry`` just works.  It enqueues a realistic mix of tasks into a fresh SQLite
store, runs the coordinator until idle, and prints what happened to each task.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

from adw_modules.config.schema import load_config
from adw_modules.ops.display import format_usd
from adw_modules.queue.store import Store
from adw_modules.queue.tasks import Attempt
from adw_modules.sources.local import enqueue_local

TOOLS = Path(__file__).resolve().parent.parent / "tools"

DEMO_CONFIG = """\
# Written by `adw demo`: three names for the local dry-run agent, one of which rate-limits.
[params]
max_turns = 10

[providers.claude-dry]
description = "dry-run agent standing in for Claude Code; its first {rate_limited} calls get HTTP 429"
command_template = ["{agent}", "--model", "{{model}}", "--output-format", "stream-json", "--verbose",
                    "--max-turns", "{{max_turns}}"]
prompt_stdin = true
env = {{ ADW_DRY_RUN_FAIL = "rate_limit@{rate_limited}", ADW_DRY_RUN_STATE = "{state}",
        ADW_DRY_RUN_RETRY_AFTER = "300" }}
max_concurrency = 2
timeout = 60
idle_timeout = 20
[providers.claude-dry.models.claude-opus-4-1]
tier = "advanced"
capabilities = ["code", "planning"]
[providers.claude-dry.models.claude-sonnet-4-5]
tier = "standard"
capabilities = ["code", "planning"]
[providers.claude-dry.models.claude-haiku-4-5]
tier = "fast"
capabilities = ["code", "docs"]

[providers.crashy-dry]
description = "dry-run agent that crashes: its tasks fail once and are retried"
command_template = ["{agent}", "--model", "{{model}}", "--output-format", "stream-json", "--verbose"]
prompt_stdin = true
env = {{ ADW_DRY_RUN_FAIL = "crash" }}
timeout = 60

[providers.openrouter-dry]
description = "dry-run agent standing in for OpenRouter"
command_template = ["{agent}", "--model", "{{model}}", "--output-format", "stream-json", "--verbose"]
prompt_stdin = true
price_provider = "openrouter"
timeout = 60
[providers.openrouter-dry.models."anthropic/claude-sonnet-4.5"]
tier = "standard"
capabilities = ["code", "planning"]
[providers.openrouter-dry.models."qwen/qwen3-coder"]
tier = "fast"
capabilities = ["code", "docs"]

[routing]
enabled = true
default_provider = "claude-dry"
default_model = "claude-sonnet-4-5"
fallback = ["openrouter-dry:anthropic/claude-sonnet-4.5"]

[routing.chains]
architect = ["claude-dry:claude-opus-4-1", "openrouter-dry:anthropic/claude-sonnet-4.5"]
background = ["openrouter-dry:qwen/qwen3-coder", "claude-dry:claude-haiku-4-5"]

[[routing.rules]]
name = "critical-issues-opus"
priority = 100
conditions = {{ priority = "critical" }}
chain = "architect"

[[routing.rules]]
name = "retry-use-haiku"
priority = 95
conditions = {{ retry_count = {{ gte = 1 }} }}
provider = "claude-dry"
model = "claude-haiku-4-5"

[[routing.rules]]
name = "flaky-first-try"
priority = 80
conditions = {{ labels = ["flaky"], retry_count = 0 }}
provider = "crashy-dry"
model = "claude-sonnet-4-5"

[[routing.rules]]
name = "docs-cheap"
priority = 60
conditions = {{ labels = ["docs", "documentation"] }}
chain = "background"

[coordinator]
max_concurrency = 3
heartbeat_s = 2
lease_s = 20
dispatch_interval_s = 0.5
retry_base_s = 1
retry_max_s = 2
state_dir = "state"

[health]
cooldown_base_s = 300
"""

TASKS: list[dict[str, Any]] = [
    {
        "title": "Login times out behind the corporate proxy",
        "priority": "critical",
        "labels": ["bug", "security"],
    },
    {
        "title": "Rotate the leaked staging token and add a pre-commit secret scan",
        "priority": "high",
        "labels": ["security"],
    },
    {"title": "Document the retry settings in the README", "priority": "low", "labels": ["docs"]},
    {"title": "Fix the flaky date parser test", "priority": "normal", "labels": ["bug", "flaky"]},
    {"title": "Add pagination to the /users endpoint", "priority": "normal", "labels": ["enhancement"]},
    {"title": "Typo in CONTRIBUTING.md", "priority": "low", "labels": ["documentation"]},
    {"title": "Upgrade SQLAlchemy to 2.x and fix deprecations", "priority": "high", "labels": ["chore"]},
    {
        "title": "Explain the cache invalidation strategy in ARCHITECTURE.md",
        "priority": "normal",
        "labels": ["docs"],
    },
]


def write_demo(directory: Path, rate_limited: int = 2) -> Path:
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    path = directory / "config.toml"
    agent = TOOLS / "dry-run-agent.py"
    # Absolute: the agent runs in each task's own work directory.
    counter = directory.resolve() / "claude-dry-calls.count"
    path.write_text(DEMO_CONFIG.format(agent=agent, state=counter, rate_limited=rate_limited))
    return path


def run_demo(directory: Path, *, log_format: str = "text", out: Any = None) -> int:
    from adw_modules.ops.logs import setup_logging
    from adws.service import Service

    out = out or sys.stdout
    config = load_config(write_demo(directory))
    setup_logging(log_format)
    service = Service(config)
    for spec in TASKS:
        enqueue_local(
            service.store,
            spec["title"],
            f"Demo task: {spec['title']}.",
            priority=spec["priority"],
            labels=spec["labels"],
            repo="acme/webapp",
        )
    print(
        f"Enqueued {len(TASKS)} tasks into {config.service.store_url({})}; running the coordinator until idle…",
        file=out,
        flush=True,
    )
    service.install_signal_handlers()
    service.run("until_idle", idle_wait_s=10)
    store = Store.open(config.service.store_url({}))
    try:
        print(summary_table(store), file=out)
    finally:
        store.close()
    print(next_steps(directory / "config.toml"), file=out)
    return 0


def summary_table(store: Store) -> str:
    """Each task with its attempts: rule, target, outcome, tokens, cost, and why a target was
    not the rule's own (a failover, or a rule target skipped as unavailable)."""
    out: list[str] = []
    total = 0.0
    for task in sorted(store.list_tasks(limit=1000), key=lambda t: t.id):
        out += ["", f"{task.id:>3}  {task.title}  [{task.priority}] -> {task.state}"]
        previous: Attempt | None = None
        for a in store.attempts_for(task.id):
            total += a.cost_usd or 0.0
            tokens = f"{a.input_tokens + a.cache_read_tokens + a.cache_write_tokens:,}/{a.output_tokens:,}"
            out.append(
                f"     #{a.number} {a.rule or 'defaults'}: {a.provider}/{a.model}  {a.outcome or 'running'}"
                f"  {tokens} tokens  {format_usd(a.cost_usd)}"
            )
            out += [f"        {note}" for note in _attempt_notes(a, previous)]
            previous = a
    out += [
        "",
        f"total cost {format_usd(total)} (estimated from tokens and genai-prices: the dry-run agent calls no model)",
    ]
    return "\n".join(out)


def _attempt_notes(a: Attempt, previous: Attempt | None) -> list[str]:
    notes = []
    if a.failover_from:
        source = a.failover_from.split(":", 1)[0]
        why = (previous.outcome or "").replace("_", " ") if previous is not None else ""
        notes.append(f"↳ failover {source} -> {a.provider}" + (f": {why}" if why else ""))
    for skipped in (a.routing or {}).get("skipped") or []:
        reason = str(skipped["reason"]).split(" (", 1)[0]  # the state; the error behind it is shown above
        notes.append(f"↳ rule target {skipped['target']} skipped: {reason}")
    if a.outcome not in (None, "success") and a.error_message:
        notes.append(f"✗ {a.error_message}")
    return notes


def next_steps(config: Path) -> str:
    """How to look further: the demo's store is only visible with its own config."""
    c = f"--config {config}"
    return "\n".join(
        [
            "",
            "Look further (the demo has its own config and store):",
            f"  adw {c} status",
            f"  adw {c} tasks",
            f"  adw {c} task show 1",
            f"  adw {c} task log 1 --attempt 1",
            f"  adw {c} usage --by model",
        ]
    )
