"""Alembic migrations for the store, shipped in the package; run by ``Store.open``."""

from __future__ import annotations
