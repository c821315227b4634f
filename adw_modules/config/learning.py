"""The ``[learning]`` table of config.toml: what counts as a success when routing learns from history.

``success`` says which outcome of an attempt the learned selector (``pick = "learned"``) and
``adw stats`` count as a success:

* ``"attempt"`` (default): the attempt itself succeeded.
* ``"task"``: the attempt succeeded and no follow-up round was asked for after it (a
  ``/adw`` command on the issue or its pull request counts it as a failure).
* ``"merged"``: the attempt succeeded and its task's pull request was merged; closed unmerged
  is a failure; an open pull request (or none yet) is not counted until it is decided.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from adw_modules.config.validation import Validator

SUCCESS_MODES = ("attempt", "task", "merged")
MAX_HISTORY_DAYS = 36_500  # further back than any store goes; a date that far back overflows

_LEARNING_KEYS = ("success", "history_days", "seed", "latency_target_s", "reload_s")


@dataclass(frozen=True)
class LearningConfig:
    success: str = "attempt"
    history_days: int = 30  # how far back the statistics are loaded at start
    seed: int | None = None  # fixes Thompson sampling's draws (tests, simulations)
    latency_target_s: float = 600.0  # a provider's score is not reduced up to this median duration
    reload_s: float = 600.0  # how often the statistics are reloaded (PR fates, other coordinators)


def validate_learning(v: Validator, data: Mapping[str, Any]) -> LearningConfig:
    where = "learning"
    raw = v.get(data, "learning", dict, where, {}) or {}
    v.unknown_keys(raw, _LEARNING_KEYS, where, "key")
    success = v.get(raw, "success", str, where, "attempt")
    if success not in SUCCESS_MODES:
        v.err(where, f'success "{success}" is unknown (known: {", ".join(SUCCESS_MODES)})')
        success = "attempt"
    history_days = v.positive(raw, "history_days", int, where) or 30
    if history_days > MAX_HISTORY_DAYS:
        v.err(where, f"history_days must be at most {MAX_HISTORY_DAYS} (100 years), not {history_days}")
        history_days = 30
    return LearningConfig(
        success=success,
        history_days=history_days,
        seed=v.get(raw, "seed", int, where),
        latency_target_s=v.positive(raw, "latency_target_s", float, where) or 600.0,
        reload_s=v.positive(raw, "reload_s", float, where) or 600.0,
    )
