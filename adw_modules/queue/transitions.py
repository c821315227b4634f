"""What happens to a task after one attempt: the outcome's policy turned into a ``Transition``.

- success: succeeded.
- FAILOVER / DISABLE (rate limited, quota, auth, bad model …): queued again at once, without
  counting a task failure; the provider's cooldown (health.py) makes the router pick the next
  target of the chain.  A target that cannot work for this task at all (invalid model, context
  too long) is excluded for the task.
- RETRY (crash, timeout, stall, transient API error): a task-level failure; ``retry_count``
  grows (the router sees it) and the task waits out a capped exponential backoff, until
  ``max_attempts`` failures make it fail for good.
- FAIL (max turns, budget, cancelled): failed, last error kept.
Every path also stops at ``max_total_attempts`` so a task cannot bounce between providers forever.
"""

from __future__ import annotations

import datetime as dt
import random

from adw_modules.config.schema import Target
from adw_modules.outcomes import ErrorKind, Outcome, Policy
from adw_modules.queue.retry import RetryStrategy
from adw_modules.queue.tasks import Task, TaskState, Transition

TARGET_SPECIFIC = frozenset({ErrorKind.INVALID_MODEL, ErrorKind.CONTEXT_TOO_LONG})


def after_attempt(
    task: Task,
    outcome: Outcome,
    target: Target,
    retry: RetryStrategy,
    max_total_attempts: int,
    now: dt.datetime,
    rng: random.Random | None = None,
) -> Transition:
    if outcome.ok:
        return Transition(TaskState.SUCCEEDED, wait_reason=None)
    kind = outcome.error_kind or ErrorKind.API_ERROR
    message = outcome.message or str(kind)
    error = f"{target}: {message}"
    policy = outcome.policy or Policy.RETRY
    if policy is Policy.FAIL:
        return Transition(TaskState.FAILED, last_error=error, last_error_kind=str(kind))
    if task.attempt_count >= max_total_attempts:
        return Transition(
            TaskState.FAILED,
            last_error=f"gave up after {task.attempt_count} attempts; last: {error}",
            last_error_kind=str(kind),
        )
    if policy in (Policy.FAILOVER, Policy.DISABLE):
        excluded = list(task.excluded_targets)
        if kind in TARGET_SPECIFIC and str(target) not in excluded:
            excluded.append(str(target))
        return Transition(
            TaskState.QUEUED,
            last_error=error,
            last_error_kind=str(kind),
            excluded_targets=excluded,
            wait_reason=f"failing over from {target} ({kind})",
        )
    failures = task.retry_count + 1
    if retry.exhausted(failures):
        return Transition(
            TaskState.FAILED,
            retry_count=failures,
            last_error=f"failed {failures} times; last: {error}",
            last_error_kind=str(kind),
        )
    delay = retry.delay(failures, rng)
    return Transition(
        TaskState.RETRY_WAIT,
        not_before=now + dt.timedelta(seconds=delay),
        retry_count=failures,
        last_error=error,
        last_error_kind=str(kind),
        # A fresh round: targets excluded for the last try may suit the retry's model choice.
        excluded_targets=[],
        wait_reason=f"retry {failures} of {retry.max_attempts - 1} after {delay:.0f} s backoff ({kind})",
    )
