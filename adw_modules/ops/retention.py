"""Keep the store and the state directory small: prune what finished long enough ago.

Transcripts (the attempt directories) go first, after ``transcripts_days``; finished tasks
(with their attempts and events) after ``finished_tasks_days``; other events after
``events_days``.  Running, queued and waiting work is never touched.  A pruned task's source
state is kept in ``retired_sources`` (the store does that), so a GitHub issue that still
carries the label that ran it is not taken for a new request.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
from pathlib import Path

from adw_modules.config.service import RetentionConfig
from adw_modules.queue.store import Store

log = logging.getLogger("adw.retention")


def _cutoff(now: dt.datetime, days: float | None) -> dt.datetime | None:
    return None if days is None else now - dt.timedelta(days=days)


def prune(store: Store, cfg: RetentionConfig, state_dir: Path, host: str, now: dt.datetime) -> dict[str, int]:
    removed_logs = 0
    cutoff = _cutoff(now, cfg.transcripts_days)
    if cutoff is not None:
        done = []
        for attempt_id, log_path in store.finished_attempt_logs(cutoff, host):
            attempt_dir = Path(log_path).parent
            # Only ever delete inside our own state directory.
            if attempt_dir.resolve().is_relative_to(state_dir.resolve()) and attempt_dir.exists():
                shutil.rmtree(attempt_dir, ignore_errors=True)
                removed_logs += 1
            done.append(attempt_id)
        store.forget_attempt_logs(done)
    counts = store.prune(_cutoff(now, cfg.finished_tasks_days), _cutoff(now, cfg.events_days))
    store.optimize()  # what was pruned (or added) changes the planner's picture
    result = {"transcripts": removed_logs, **counts}
    if any(result.values()):
        log.info(f"retention pruned {result}", extra={"data": {"event": "retention.pruned", **result}})
    return result
