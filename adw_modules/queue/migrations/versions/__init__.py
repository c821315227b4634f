"""Alembic revisions (a package only so that wheels carry them; Alembic skips this file).

Owns: one module per schema revision, ``rev_NNNN_<slug>``, each upgrading the previous one.

May import: Alembic and SQLAlchemy only: a revision is frozen, so it never imports the live
``schema`` (which keeps changing) or anything else of ``adw_modules``.
"""

from __future__ import annotations
