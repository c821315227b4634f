"""A store holding every kind of task, attempt and event, at fixed times: what the text
views are tested against (golden output) and what every read command must survive."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from adw_modules.config.schema import Config, load_config
from adw_modules.queue.store import Store
from adw_modules.queue.tasks import (
    AttemptEnd,
    AttemptStart,
    CircuitState,
    ProviderState,
    TaskState,
    Transition,
)
from adw_modules.sources.local import enqueue_local
from adws.demo import write_demo

T0 = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
NOW = T0 + dt.timedelta(minutes=30)
OWNER = "host-a/0a1b2c3d"


def _routing(provider: str, model: str, rule: str | None, skipped: list[dict[str, str]] | None = None) -> dict:
    return {
        "provider": provider,
        "model": model,
        "rule": rule,
        "fallbacks": ["openrouter-dry:anthropic/claude-sonnet-4.5"],
        "skipped": skipped or [],
        "chosen": f"{provider}:{model}",
    }


def _run(
    store: Store,
    task_id: int,
    at: dt.datetime,
    provider: str,
    model: str,
    rule: str | None,
    end: AttemptEnd | None,
    transition: Transition | None,
    *,
    failover_from: str | None = None,
    skipped: list[dict[str, str]] | None = None,
) -> int:
    others = [i for i in range(1, 20) if i != task_id]
    claimed = store.claim_task(OWNER, at + dt.timedelta(minutes=5), at, exclude_ids=others)
    assert claimed is not None and claimed.id == task_id, claimed
    start = AttemptStart(
        provider=provider,
        model=model,
        rule=rule,
        routing=_routing(provider, model, rule, skipped),
        config_fingerprint="f" * 16,
        host="host-a",
        failover_from=failover_from,
    )
    attempt = store.start_attempt(task_id, OWNER, start, at)
    assert attempt is not None
    store.set_attempt_process(attempt.id, OWNER, 4242, 4242, 1.0)
    store.add_event("attempt.started", f"attempt {attempt.number} on {provider}:{model}", task_id=task_id, now=at)
    if end is not None and transition is not None:
        done = at + dt.timedelta(seconds=95)
        assert store.finish_attempt(attempt.id, OWNER, end, transition, done)
        store.add_event(
            "attempt.finished",
            f"attempt {attempt.number} on {provider}:{model}: {end.outcome} -> {transition.state}",
            task_id=task_id,
            attempt_id=attempt.id,
            now=done,
        )
    return attempt.id


def build(tmp_path: Path) -> tuple[Config, Store]:
    """The demo's config (three dry-run providers) and a store with one task of each kind."""
    config = load_config(write_demo(tmp_path / "demo"))
    store = Store.open(config.service.store_url({}))
    titles = [
        ("Login times out behind the corporate proxy", "critical", ["bug", "security"]),
        ("Document the retry settings in the README", "low", ["docs"]),
        ("Fix the flaky date parser test", "normal", ["bug", "flaky"]),
        ("Add pagination to the /users endpoint", "normal", []),
        ("Upgrade SQLAlchemy to 2.x and fix deprecations", "high", ["chore"]),
        ("Explain the cache invalidation strategy in ARCHITECTURE.md", "normal", ["docs"]),
        ("Typo in CONTRIBUTING.md", "low", ["documentation"]),
    ]
    for i, (title, priority, labels) in enumerate(titles):
        enqueue_local(store, title, f"Body of {title}", priority=priority, labels=labels, external_id=f"t{i}")
    # 1: rate-limited, failed over, succeeded with a per-model breakdown.
    _run(
        store,
        1,
        T0,
        "claude-dry",
        "claude-opus-4-1",
        "critical-issues-opus",
        AttemptEnd(
            outcome="rate_limited",
            error_kind="rate_limited",
            error_message="rate limited by the API (HTTP 429), retry after 300 s",
            exit_code=1,
            stderr_tail="Error: 429 Too Many Requests\nretry-after: 300\n",
        ),
        Transition(TaskState.QUEUED, last_error="rate limited", last_error_kind="rate_limited"),
    )
    _run(
        store,
        1,
        T0 + dt.timedelta(minutes=2),
        "openrouter-dry",
        "anthropic/claude-sonnet-4.5",
        "critical-issues-opus",
        AttemptEnd(
            outcome="success",
            input_tokens=7214,
            output_tokens=17534,
            cache_read_tokens=2512779,
            cache_write_tokens=67804,
            cost_usd=1.2783757,
            cost_source="reported",
            exit_code=0,
            result_text="Fixed the proxy timeout.",
            model_usage={
                "anthropic/claude-sonnet-4.5": {
                    "input_tokens": 101,
                    "output_tokens": 16929,
                    "cache_read_tokens": 2400000,
                    "cache_write_tokens": 44845,
                    "cost_usd": 1.1309,
                },
                "anthropic/claude-haiku-4.5": {
                    "input_tokens": 7113,
                    "output_tokens": 605,
                    "cache_read_tokens": 112779,
                    "cache_write_tokens": 22959,
                    "cost_usd": 0.1474757,
                },
            },
        ),
        Transition(TaskState.SUCCEEDED),
        failover_from="claude-dry:claude-opus-4-1",
        skipped=[{"target": "claude-dry:claude-opus-4-1", "reason": "cooling down until 12:07:00 UTC"}],
    )
    # 2: a tiny success (cost below a cent).
    _run(
        store,
        2,
        T0 + dt.timedelta(minutes=3),
        "openrouter-dry",
        "qwen/qwen3-coder",
        "docs-cheap",
        AttemptEnd(
            outcome="success",
            input_tokens=35,
            output_tokens=43,
            cost_usd=0.000045,
            cost_source="estimated from genai-prices",
            exit_code=0,
        ),
        Transition(TaskState.SUCCEEDED),
    )
    # 3: crashed, waiting to retry.
    _run(
        store,
        3,
        T0 + dt.timedelta(minutes=4),
        "crashy-dry",
        "claude-sonnet-4-5",
        "flaky-first-try",
        AttemptEnd(
            outcome="crashed",
            error_kind="crashed",
            error_message="the CLI crashed: exited with code 2",
            exit_code=2,
            stderr_tail="TypeError: Cannot read properties of undefined (reading 'content')\n    at processResponse (cli.js:4821:17)\n",
        ),
        Transition(
            TaskState.RETRY_WAIT,
            not_before=NOW + dt.timedelta(minutes=4),
            retry_count=1,
            wait_reason="retry 1 after crashed",
            last_error="the CLI crashed",
            last_error_kind="crashed",
        ),
    )
    # 4: running now.
    _run(store, 4, T0 + dt.timedelta(minutes=25), "openrouter-dry", "anthropic/claude-sonnet-4.5", None, None, None)
    # 5: failed for good.
    _run(
        store,
        5,
        T0 + dt.timedelta(minutes=5),
        "claude-dry",
        "claude-sonnet-4-5",
        None,
        AttemptEnd(
            outcome="auth_failed",
            error_kind="auth_failed",
            error_message="authentication failed (HTTP 401)",
            exit_code=1,
        ),
        Transition(TaskState.FAILED, last_error="authentication failed (HTTP 401)", last_error_kind="auth_failed"),
    )
    # 6: cancelled before it ran; 7: queued, waiting for a busy provider.
    store.request_cancel(6, T0 + dt.timedelta(minutes=6))
    claimed = store.claim_task(
        OWNER, NOW, T0 + dt.timedelta(minutes=7), exclude_ids=[i for i in range(1, 20) if i != 7]
    )
    assert claimed is not None and claimed.id == 7
    store.release_task(7, OWNER, TaskState.QUEUED, None, "waiting for claude-dry: at max_concurrency 2")
    store.add_event(
        "task.waiting", "waiting for claude-dry: at max_concurrency 2", task_id=7, now=T0 + dt.timedelta(minutes=7)
    )
    # Provider health: claude-dry open (cooling down), crashy-dry half-open.
    store.save_provider_state(
        ProviderState(
            provider="claude-dry",
            circuit=CircuitState.OPEN,
            cooldown_until=NOW + dt.timedelta(minutes=7),
            cooldown_reason="rate_limited: rate limited by the API (HTTP 429)",
            consecutive_failures=2,
            recent=[False, False],
            updated_at=T0,
        )
    )
    store.register_coordinator(OWNER, "host-a", "host-a", 4100, T0)
    store.heartbeat_coordinator(OWNER, NOW - dt.timedelta(seconds=8))
    return config, store
