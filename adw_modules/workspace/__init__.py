"""Stage 2b, workspaces: a clone per repository, a git worktree per task, commit and push.

Owns: ``worktrees`` (prepare, finish, gc) and ``gitcmd`` (git without a shell, the token only
through GIT_ASKPASS).

May import: ``config`` (``WorkspaceConfig``), ``ops.redact``.  Nothing else.
"""

from __future__ import annotations
