"""When a task that failed on its own account is tried again: capped exponential backoff, with jitter.

``delay(n)`` for the n-th task-level failure (n >= 1) is ``min(max_s, base_s * 2**(n-1))``,
then shortened by up to ``jitter`` of itself at random ("equal"-style jitter keeps the
delay near the curve while spreading a burst of failures apart).
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryStrategy:
    max_attempts: int = 3  # task-level failures before the task fails for good
    base_s: float = 30.0
    max_s: float = 1800.0
    jitter: float = 0.2

    def delay(self, failures: int, rng: random.Random | None = None) -> float:
        capped = min(self.max_s, self.base_s * 2 ** max(0, failures - 1))
        return capped * (1 - self.jitter * (rng or random).random())

    def exhausted(self, failures: int) -> bool:
        return failures >= self.max_attempts
