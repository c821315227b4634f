"""Operations: what keeps the service observable, safe and tidy.

Owns: ``secrets`` (fetching every secret by reference, registering each value with the
redactor), ``redact`` (masking), ``display`` (times and money as operators read them),
``logs`` (JSON logs), ``metrics`` and ``metrics_http``
(Prometheus, /healthz, /readyz), ``doctor`` (preflight checks), ``store_location`` (can a SQLite
store live at this path: doctor's check, also made before opening the store), ``systemd`` (the
unit), ``retention`` (pruning), ``plugins`` (entry-point plugins: loaded lazily, a failing one
reported and skipped), ``profiles`` (the active credential profile and whether each
reference it names resolves, for ``adw profiles`` and the doctor).

May import: ``config``, ``outcomes``, ``queue``, ``routing``, ``sources`` (doctor and metrics look at
every stage).  ``redact``, ``secrets`` and ``display`` are the exception every stage relies on:
they import only ``config`` and each other; ``plugins`` imports nothing of adw (config and
the stream parsers use it).
"""

from __future__ import annotations
