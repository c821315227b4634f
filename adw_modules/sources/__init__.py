"""Stage 1, sources: where tasks come from.

Owns: ``local`` (``adw enqueue``) and ``github/`` (intake of labelled issues, who may
trigger, the progress comment, lifecycle labels, pull requests, follow-up commands).

May import: ``outcomes``, ``config``, ``queue``, ``ops.secrets``, ``ops.redact``,
``ops.display``.  Never ``workers``.
"""

from __future__ import annotations
