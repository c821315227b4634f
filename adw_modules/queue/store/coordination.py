"""State shared between coordinators: source state, provider health, the registry, the leader lease."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection

from adw_modules.queue.store.base import StoreBase, utcnow
from adw_modules.queue.store.rows import provider_state_record, provider_state_values
from adw_modules.queue.store.schema import (
    attempts,
    coordinators,
    leader_leases,
    provider_state,
    source_state,
    webhook_deliveries,
)
from adw_modules.queue.store.text import storable_json
from adw_modules.queue.tasks import ProviderSnapshot, ProviderState


class CoordinationMixin(StoreBase):
    """What coordinators (and a task's source) remember between polls and across hosts."""

    # ------------------------------------------------------------------ source state
    def source_state(self, task_id: int) -> dict[str, Any]:
        """What the task's source remembered about it ({} if nothing yet)."""
        with self._read() as conn:
            row = conn.execute(sa.select(source_state.c.data).where(source_state.c.task_id == task_id)).first()
        return dict(row[0]) if row is not None else {}

    def update_source_state(self, task_id: int, changes: Mapping[str, Any], now: dt.datetime) -> dict[str, Any]:
        """Merge ``changes`` into the task's source state (one transaction); returns the result.

        Concurrent merges (poll, sync, another host) lose nothing, the first merge of a task
        included: on PostgreSQL one ``INSERT … ON CONFLICT DO UPDATE SET data = data || new``
        (a row lock cannot guard a row that does not exist yet); on SQLite the write lock
        serialises the read and the write.
        """
        if not self._sqlite:
            ins = pg_insert(source_state).values(task_id=task_id, data=dict(changes), updated_at=now)
            merged = sa.type_coerce(source_state.c.data, JSONB).op("||")(sa.type_coerce(ins.excluded.data, JSONB))
            stmt = ins.on_conflict_do_update(
                index_elements=["task_id"], set_={"data": merged, "updated_at": now}
            ).returning(source_state.c.data)
            with self._write() as conn:
                return dict(conn.execute(stmt).scalar_one())
        with self._write() as conn:
            row = conn.execute(sa.select(source_state.c.data).where(source_state.c.task_id == task_id)).first()
            data = {**(dict(row[0]) if row is not None else {}), **changes}
            ins = self._insert(source_state).values(task_id=task_id, data=data, updated_at=now)
            conn.execute(ins.on_conflict_do_update(index_elements=["task_id"], set_={"data": data, "updated_at": now}))
        stored: dict[str, Any] = storable_json(data)  # what reads will return
        return stored

    # ------------------------------------------------------------------ provider health
    def provider_states(self) -> dict[str, ProviderState]:
        with self._read() as conn:
            rows = conn.execute(sa.select(provider_state).order_by(provider_state.c.provider)).mappings()
            return {r["provider"]: provider_state_record(r) for r in rows}

    def save_provider_state(self, state: ProviderState) -> None:
        """Upsert (last writer wins; use update_provider_state for read-modify-write)."""
        values = provider_state_values(state, utcnow())
        ins = self._insert(provider_state).values(provider=state.provider, **values)
        with self._write() as conn:
            conn.execute(ins.on_conflict_do_update(index_elements=["provider"], set_=values))

    def update_provider_state(self, provider: str, fn: Callable[[ProviderState], ProviderState]) -> ProviderState:
        """Read-modify-write one provider's state atomically; returns what was stored.

        ``fn`` gets the current state (a default closed one if none is stored yet) and
        returns the new one.  The row is locked for the whole transaction, so concurrent
        updates from several coordinators serialise and none is lost.  ``fn`` must be
        quick and must not touch the store.
        """
        now = utcnow()
        with self._write() as conn:
            new = fn(lock_provider_state(conn, self._insert(provider_state), provider, now))
            if new.provider != provider:
                raise ValueError(f"update_provider_state: fn returned provider {new.provider!r}, not {provider!r}")
            values = provider_state_values(new, now)
            conn.execute(sa.update(provider_state).where(provider_state.c.provider == provider).values(**values))
        return provider_state_record({"provider": provider, **values})

    def provider_snapshot(
        self, started_since: dt.datetime, spent_since: dt.datetime, *, started_of: Collection[str] = ()
    ) -> ProviderSnapshot:
        """What a coordinator reconciles its in-memory provider view with, in one read: every
        provider's health, attempts running per provider, start times since ``started_since`` of
        the providers in ``started_of`` (those with a per-minute limit), and known spend per
        provider of attempts started since ``spent_since``."""
        running = (
            sa.select(attempts.c.provider, sa.func.count())
            .where(attempts.c.state == "running")
            .group_by(attempts.c.provider)
        )
        spend = (
            sa.select(attempts.c.provider, sa.func.coalesce(sa.func.sum(attempts.c.cost_usd), 0.0))
            .where(attempts.c.started_at >= spent_since)
            .group_by(attempts.c.provider)
        )
        with self._read() as conn:
            states = {
                r["provider"]: provider_state_record(r)
                for r in conn.execute(sa.select(provider_state).order_by(provider_state.c.provider)).mappings()
            }
            counts = {p: int(n) for p, n in conn.execute(running)}
            spent = {p: float(c) for p, c in conn.execute(spend)}
            started: dict[str, list[dt.datetime]] = {}
            if started_of:
                query = sa.select(attempts.c.provider, attempts.c.started_at).where(
                    attempts.c.started_at >= started_since, attempts.c.provider.in_(sorted(started_of))
                )
                for p, at in conn.execute(query):
                    started.setdefault(p, []).append(at)
        return ProviderSnapshot(states, counts, started, spent)

    # ------------------------------------------------------------------ coordinators
    def register_coordinator(self, owner: str, name: str, host: str, pid: int, now: dt.datetime) -> None:
        values = {"name": name, "host": host, "pid": pid, "started_at": now, "heartbeat_at": now}
        ins = self._insert(coordinators).values(id=owner, **values)
        with self._write() as conn:
            conn.execute(ins.on_conflict_do_update(index_elements=["id"], set_=values))

    def heartbeat_coordinator(self, owner: str, now: dt.datetime) -> None:
        with self._write() as conn:
            conn.execute(sa.update(coordinators).where(coordinators.c.id == owner).values(heartbeat_at=now))

    def coordinators(self) -> list[dict[str, Any]]:
        """Dicts with id (the owner string), name, host, pid, started_at, heartbeat_at; oldest first."""
        query = sa.select(coordinators).order_by(coordinators.c.started_at, coordinators.c.id)
        with self._read() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def unregister_coordinator(self, owner: str) -> None:
        with self._write() as conn:
            conn.execute(sa.delete(coordinators).where(coordinators.c.id == owner))

    # ------------------------------------------------------------------ leader lease
    def acquire_leader(self, name: str, owner: str, until: dt.datetime, now: dt.datetime) -> bool:
        """Take or renew the singleton lease ``name``; True if ``owner`` holds it until ``until``.

        One upsert (Oban's peer election): it succeeds if the lease is free, expired at
        ``now``, or already ours.
        """
        ins = self._insert(leader_leases).values(name=name, owner=owner, expires_at=until)
        stmt = ins.on_conflict_do_update(
            index_elements=["name"],
            set_={"owner": ins.excluded.owner, "expires_at": ins.excluded.expires_at},
            where=sa.or_(leader_leases.c.owner == owner, leader_leases.c.expires_at <= now),
        ).returning(leader_leases.c.name)
        with self._write() as conn:
            return conn.execute(stmt).first() is not None

    def release_leader(self, name: str, owner: str) -> None:
        with self._write() as conn:
            conn.execute(sa.delete(leader_leases).where(leader_leases.c.name == name, leader_leases.c.owner == owner))

    # ------------------------------------------------------------------ webhook deliveries
    def record_delivery(self, delivery_id: str, event: str, now: dt.datetime) -> bool:
        """Take a webhook delivery: True for the first to record ``delivery_id`` (on any host),
        False for a redelivery or a replay of one already taken."""
        ins = self._insert(webhook_deliveries).values(delivery_id=delivery_id[:64], event=event[:64], received_at=now)
        stmt = ins.on_conflict_do_nothing(index_elements=["delivery_id"]).returning(webhook_deliveries.c.delivery_id)
        with self._write() as conn:
            return conn.execute(stmt).first() is not None

    def deliveries(self, limit: int = 100) -> list[dict[str, Any]]:
        """The latest deliveries taken, newest first: delivery_id, event, received_at."""
        query = sa.select(webhook_deliveries).order_by(webhook_deliveries.c.received_at.desc()).limit(limit)
        with self._read() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def prune_deliveries(self, before: dt.datetime) -> int:
        """Forget deliveries received before ``before`` (GitHub redelivers for days, not months)."""
        with self._write() as conn:
            result = conn.execute(sa.delete(webhook_deliveries).where(webhook_deliveries.c.received_at < before))
        return int(result.rowcount or 0)


def lock_provider_state(conn: Connection, insert: Any, provider: str, now: dt.datetime) -> ProviderState:
    """The provider's state, its row locked for the transaction (PostgreSQL ``FOR UPDATE``; the
    write lock on SQLite); a default closed state is stored first if there is none yet."""
    query = sa.select(provider_state).where(provider_state.c.provider == provider).with_for_update()
    row = conn.execute(query).mappings().first()
    if row is None:
        default = provider_state_values(ProviderState(provider=provider), now)
        # Two coordinators may both find no row: one inserts, the other's insert does nothing.
        conn.execute(insert.values(provider=provider, **default).on_conflict_do_nothing(index_elements=["provider"]))
        row = conn.execute(query).mappings().one()
    return provider_state_record(row)
