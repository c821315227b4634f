"""GitHub issues as a task source: safe triggers, lifecycle labels, one live progress comment.

Owns: ``source`` (intake, cancellation, the issue's view of the task), ``client`` (PyGithub,
conditional listing, rate limits), ``triggers`` (who may start a run, sanitised issue text),
``progress`` (the progress comment and the lifecycle label), ``auth`` (the token, by reference),
``app`` (GitHub App installation tokens), ``webhook`` (the delivery receiver), ``events`` (what a
delivery does), ``mentions`` (mentions found by polling), ``acks`` (reactions, replies on a
pull request).

May import: what ``sources`` may (``outcomes``, ``config``, ``queue``, ``ops``) and the secret
helper ``run_secret_command``; PyGithub (and PyJWT, through its App auth).  Never ``workers``.
"""
