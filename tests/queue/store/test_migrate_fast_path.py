"""``migrate`` reads the stored revision first: a store at head is opened without importing
Alembic; anything else (no version table, an older or unknown revision) takes the locked
upgrade, which stays safe when several processes start at once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.script import ScriptDirectory

from adw_modules.queue.store import Store, alembic_config
from adw_modules.queue.store.engine import HEAD_REVISION, MigrationError, stored_revisions
from tests.paths import REPO
from tests.queue.store.conftest import BACKENDS
from tests.queue.store.test_migrations import empty_database, open_together

OPEN_AND_LIST_ALEMBIC = """
import sys
from adw_modules.queue.store import Store
Store.open(sys.argv[1]).close()
print(sorted(m for m in sys.modules if m == "alembic" or m.startswith("alembic.")))
"""


def revisions(url: str) -> list[str] | None:
    engine = sa.create_engine(url)
    try:
        return stored_revisions(engine)
    finally:
        engine.dispose()


def set_revision(url: str, revision: str) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE alembic_version SET version_num = :r"), {"r": revision})
    finally:
        engine.dispose()


def test_head_revision_is_alembic_s_head() -> None:
    """The constant the fast path trusts cannot drift from migrations/versions."""
    assert ScriptDirectory.from_config(alembic_config()).get_heads() == [HEAD_REVISION]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_current_store_opens_without_importing_alembic(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    with empty_database(backend, request, tmp_path, "current") as url:
        first = subprocess.run(
            [sys.executable, "-c", OPEN_AND_LIST_ALEMBIC, url], cwd=REPO, capture_output=True, text=True, check=True
        )
        assert "'alembic.command'" in first.stdout  # a new store: migrated by Alembic
        again = subprocess.run(
            [sys.executable, "-c", OPEN_AND_LIST_ALEMBIC, url], cwd=REPO, capture_output=True, text=True, check=True
        )
        assert again.stdout.strip() == "[]"
        assert revisions(url) == [HEAD_REVISION]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_store_one_revision_behind_is_upgraded(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    with empty_database(backend, request, tmp_path, "behind") as url:
        Store.open(url).close()
        engine = sa.create_engine(url)
        try:
            with engine.begin() as conn:
                command.downgrade(alembic_config(connection=conn), "-1")
        finally:
            engine.dispose()
        behind = revisions(url)
        assert behind is not None and behind != [HEAD_REVISION]
        Store.open(url).close()
        assert revisions(url) == [HEAD_REVISION]


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_version_table_reads_as_none(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    with empty_database(backend, request, tmp_path, "empty") as url:
        assert revisions(url) is None
        Store.open(url).close()
        assert revisions(url) == [HEAD_REVISION]


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_unknown_revision_is_a_migration_error(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    with empty_database(backend, request, tmp_path, "newer") as url:
        Store.open(url).close()
        set_revision(url, "9999")  # what a newer adw would leave
        with pytest.raises(MigrationError, match="9999"):
            Store.open(url)
        assert revisions(url) == ["9999"]  # left as it was


@pytest.mark.parametrize("backend", BACKENDS)
def test_processes_upgrading_an_old_store_together_upgrade_once(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Four processes find the store behind at once: one upgrades under the lock, the others
    wait for it and find head (an upgrade run twice would fail adding a column twice)."""
    with empty_database(backend, request, tmp_path, "old") as url:
        Store.open(url).close()
        engine = sa.create_engine(url)
        try:
            with engine.begin() as conn:
                command.downgrade(alembic_config(connection=conn), "-2")
        finally:
            engine.dispose()
        open_together(url, 4)
        assert revisions(url) == [HEAD_REVISION]
