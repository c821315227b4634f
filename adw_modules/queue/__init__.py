"""Stage 1 and 4, the queue: durable task state and what a task becomes after an attempt.

Owns: ``tasks`` (states and records), ``transitions`` (the next state after an outcome),
``retry`` (the backoff strategy), ``health`` (cooldowns and the circuit breaker),
``store/`` (every SQL statement, SQLite and PostgreSQL) with its ``schema`` and ``migrations/``.

May import: ``outcomes``, ``config`` (``Target``, section settings).  Never ``workers``,
``sources`` or ``coordinator``.
"""

from __future__ import annotations
