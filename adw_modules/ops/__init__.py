"""Operations: what keeps the service observable, safe and tidy.

Owns: ``secrets`` (fetching every secret by reference, registering each value with the
redactor), ``redact`` (masking), ``logs`` (JSON logs), ``metrics`` and ``metrics_http``
(Prometheus, /healthz, /readyz), ``doctor`` (preflight checks), ``systemd`` (the unit),
``retention`` (pruning).

May import anything in ``adw_modules`` below the coordinator; ``redact`` and ``secrets``
import only ``config`` (they are used by every stage).
"""

from __future__ import annotations
