"""Alembic migrations for the store, shipped in the package; run by ``Store.open``.

Owns: ``env`` (Alembic's environment: online only, on the caller's connection) and
``versions/`` (the revisions).

May import: ``queue.store.schema`` (the metadata autogenerate compares with); Alembic, SQLAlchemy.
"""

from __future__ import annotations
