"""Alembic migrations build exactly the schema in store_schema, on both backends, race-free."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from adw_modules.queue.store import Store, alembic_config
from adw_modules.queue.store.schema import metadata
from tests.paths import REPO
from tests.queue.store.conftest import BACKENDS, scratch_pg_database


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


@contextmanager
def empty_database(backend: str, request: pytest.FixtureRequest, tmp_path: Path, name: str) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / name}.db"
    else:
        with scratch_pg_database(request.getfixturevalue("pg_admin")) as url:
            yield url


def schema_dump(engine: sa.Engine) -> dict[str, Any]:
    """Everything the inspector reports about our tables, normalised for comparison."""
    insp = sa.inspect(engine)
    out: dict[str, Any] = {}
    for table in sorted(insp.get_table_names()):
        if table == "alembic_version":
            continue
        columns = [{**c, "type": str(c["type"])} for c in insp.get_columns(table)]
        indexes = sorted(
            (
                {**ix, "dialect_options": {k: str(v) for k, v in ix.get("dialect_options", {}).items()}}
                for ix in insp.get_indexes(table)
            ),
            key=lambda ix: str(ix["name"]),
        )
        out[table] = {
            "columns": columns,
            "pk": insp.get_pk_constraint(table),
            "fks": sorted(insp.get_foreign_keys(table), key=lambda fk: str(fk["name"])),
            "uniques": sorted(insp.get_unique_constraints(table), key=lambda u: str(u["name"])),
            "indexes": indexes,
            "checks": sorted(
                (
                    {"name": ck["name"], "sqltext": " ".join(str(ck["sqltext"]).split())}
                    for ck in insp.get_check_constraints(table)
                ),
                key=lambda ck: str(ck["name"]),
            ),
        }
    return out


@pytest.mark.parametrize("backend", BACKENDS)
def test_migrations_produce_the_metadata_schema(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    with (
        empty_database(backend, request, tmp_path, "migrated") as migrated_url,
        empty_database(backend, request, tmp_path, "created") as created_url,
    ):
        Store.open(migrated_url).close()
        migrated = sa.create_engine(migrated_url)
        created = sa.create_engine(created_url)
        try:
            metadata.create_all(created)
            with migrated.connect() as conn:
                diffs = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
            assert diffs == []
            dumped = schema_dump(migrated)
            assert dumped == schema_dump(created)
            # The invariants the store relies on really came out of the migration.
            assert set(dumped) == {t.name for t in metadata.sorted_tables}
            one_running = {ix["name"]: ix for ix in dumped["attempts"]["indexes"]}["ux_attempts_one_running_per_task"]
            assert one_running["unique"] and one_running["column_names"] == ["task_id"]
            if backend == "postgresql":  # SQLite's inspector does not report partial-index predicates
                assert "running" in one_running["dialect_options"]["postgresql_where"]
            assert {ck["name"] for ck in dumped["tasks"]["checks"]} >= {"ck_tasks_lease", "ck_tasks_state"}
        finally:
            migrated.dispose()
            created.dispose()


@pytest.mark.parametrize("backend", BACKENDS)
def test_downgrade_to_base_and_back(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    with empty_database(backend, request, tmp_path, "roundtrip") as url:
        Store.open(url).close()
        engine = sa.create_engine(url)
        try:
            with engine.begin() as conn:
                command.downgrade(alembic_config(connection=conn), "base")
            assert set(sa.inspect(engine).get_table_names()) <= {"alembic_version"}
            store = Store.open(url)
            store.close()
            assert set(sa.inspect(engine).get_table_names()) == {t.name for t in metadata.sorted_tables} | {
                "alembic_version"
            }
        finally:
            engine.dispose()


OPENER = """
import sys
from adw_modules.queue.store import Store
print("ready", flush=True)
sys.stdin.readline()
Store.open(sys.argv[1]).close()
print("opened", flush=True)
"""


def open_together(url: str, n: int) -> None:
    """``n`` processes open the store at the same moment (released together once all are
    ready, so they race to migrate it); each must succeed with nothing on stderr."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OPENER, url],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(n)
    ]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    results = [p.communicate(timeout=60) for p in procs]
    assert [(p.returncode, err) for p, (_, err) in zip(procs, results, strict=True)] == [(0, "")] * n


@pytest.mark.parametrize("backend", BACKENDS)
def test_processes_opening_a_new_store_together_migrate_once(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    with empty_database(backend, request, tmp_path, "together") as url:
        open_together(url, 4)
        engine = sa.create_engine(url)
        try:
            with engine.connect() as conn:
                assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all() == [
                    head_revision()
                ]
        finally:
            engine.dispose()
