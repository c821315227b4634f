"""Stage 3, workers: everything about one attempt of an agent CLI.

Owns: ``attempt`` (one attempt end to end: child env, prompt delivery, early abort, outcome,
cost), ``runner`` and ``process_tree`` (the supervised process and its tree), ``streams/``
(incremental parsers for each CLI's output), ``classify`` (one outcome per attempt),
``transcripts`` (reading a stored transcript back), ``openrouter`` with ``openrouter_stream``
and ``openrouter_errors`` (the OpenAI-compatible wrapper behind tools/openrouter-cli.py).

May import: ``outcomes``, ``config``, ``routing`` (argv building, prices), ``ops.secrets``,
``ops.redact``, ``ops.display``, ``queue.tasks`` (transcripts reads an attempt record),
``ops.plugins`` (parsers from plugins).  Never the
store, ``sources`` or ``coordinator``: a worker knows nothing of the queue's state.
"""

from __future__ import annotations
