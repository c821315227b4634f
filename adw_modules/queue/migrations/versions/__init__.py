"""Alembic revisions (a package only so that wheels carry them; Alembic skips this file)."""

from __future__ import annotations
