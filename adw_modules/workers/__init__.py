"""Stage 3, workers: everything about one attempt of an agent CLI.

Owns: ``attempt`` (one attempt end to end: child env, prompt delivery, early abort, outcome,
cost), ``runner`` and ``process_tree`` (the supervised process and its tree), ``streams/``
(incremental parsers for each CLI's output), ``classify`` (one outcome per attempt),
``transcripts`` (reading a stored transcript back), ``openrouter`` (the OpenAI-compatible
wrapper behind tools/openrouter-cli.py).

May import: ``outcomes``, ``config``, ``routing`` (argv building, prices), ``ops.secrets`` /
``ops.redact``.  Never ``queue``, ``sources`` or ``coordinator``: a worker knows nothing of tasks.
"""

from __future__ import annotations
