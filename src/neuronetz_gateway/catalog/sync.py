"""Writing what discovery saw into the `models` table (docs/REFERENCE.md §4.8).

One sync covers the outcome of polling every configured upstream. New models are
inserted, known ones updated, and a model no reachable upstream reports any more
becomes `available = false` (the row stays, with its grants, and comes back when a
server reports it again). An upstream whose poll failed says nothing: its models keep
their state, so a failure never empties the catalog.

`model_upstreams` records which server has which model: the rows of every server that
answered are replaced by what it reported; those of a failed server stay as they were.

Replicas run this concurrently; a transaction-scoped advisory lock serializes them,
so their counts stay accurate and concurrent upserts cannot deadlock. On SQLite the
write lock, taken first, does the same.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from neuronetz_gateway.catalog.models import CatalogModel, is_cloud_model
from neuronetz_gateway.db.tables import Model, ModelUpstream

# pg_advisory_xact_lock key for model syncs: the ASCII of "nzmodels".
SYNC_LOCK_ID = 0x6E7A6D6F64656C73

_METADATA = ("digest", "size_bytes", "details", "modified_at", "upstream")


@dataclass(frozen=True, slots=True)
class SyncResult:
    """What one sync changed, by model name (each tuple sorted)."""

    added: tuple[str, ...] = ()
    reappeared: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    vanished: tuple[str, ...] = ()
    # Cloud models reported but not approved (`register-model --cloud`): recorded,
    # never made available (docs/REFERENCE.md §11).
    withheld: tuple[str, ...] = ()
    unchanged: int = 0
    # Upstream base URLs whose poll failed; their models were left as they were.
    failed_upstreams: tuple[str, ...] = ()
    # Why each of them failed (same order), as `DiscoveryError` put it: no host names.
    failure_reasons: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.added or self.reappeared or self.updated or self.vanished)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class _Stored:
    available: bool
    values: dict[str, Any]
    cloud_approved: bool = False


def _values(model: CatalogModel, upstream: str | None) -> dict[str, Any]:
    return {
        "digest": model.digest,
        "size_bytes": model.size_bytes,
        "details": model.details,
        "modified_at": model.modified_at,
        "upstream": upstream,
    }


def _choose(
    fetched: Mapping[str, Sequence[CatalogModel] | None],
    order: Sequence[str],
    stored: Mapping[str, _Stored],
) -> dict[str, dict[str, Any]]:
    """For each reported model, the metadata of the upstream that should serve it.

    A model on several servers keeps the upstream it already has while that server
    still reports it (no churn), else gets the first one in configuration order.
    """
    holders: dict[str, dict[str, CatalogModel]] = {}
    for upstream in order:
        for model in fetched.get(upstream) or ():
            holders.setdefault(model.name, {})[upstream] = model
    chosen: dict[str, dict[str, Any]] = {}
    for name, by_upstream in holders.items():
        current = stored[name].values["upstream"] if name in stored else None
        upstream = current if current in by_upstream else next(iter(by_upstream))
        chosen[name] = _values(by_upstream[upstream], upstream)
    return chosen


def _is_vanished(
    row: _Stored,
    holders: set[str],
    reachable: frozenset[str],
    configured: frozenset[str],
    all_reachable: bool,
) -> bool:
    """Whether a model no server reported this cycle is gone."""
    if any(u in configured and u not in reachable for u in holders):
        return False  # a server that had it did not answer: no information
    recorded = row.values["upstream"]
    if recorded in reachable:
        return True  # its server answered and no longer has it
    # A model of no configured server (registered by hand, or of a removed server)
    # vanishes only when every server answered and none has it.
    return recorded not in configured and all_reachable


async def _lock(connection: AsyncConnection) -> None:
    if connection.dialect.name == "postgresql":
        await connection.execute(sa.select(sa.func.pg_advisory_xact_lock(SYNC_LOCK_ID)))
    elif connection.dialect.name == "sqlite":
        # The write lock, before the first read (db/sqlite.py explains why it is needed).
        await connection.exec_driver_sql("BEGIN IMMEDIATE")


async def _stored_holders(connection: AsyncConnection) -> dict[str, set[str]]:
    holders: dict[str, set[str]] = {}
    for name, upstream in await connection.execute(
        sa.select(ModelUpstream.model_name, ModelUpstream.upstream)
    ):
        holders.setdefault(name, set()).add(upstream)
    return holders


async def _record_holders(
    connection: AsyncConnection,
    fetched: Mapping[str, Sequence[CatalogModel] | None],
    reachable: frozenset[str],
    now: datetime,
) -> None:
    """Replace the `model_upstreams` rows of every server that answered."""
    await connection.execute(
        sa.delete(ModelUpstream).where(ModelUpstream.upstream.in_(sorted(reachable)))
    )
    rows = {
        (model.name, upstream): {
            "model_name": model.name,
            "upstream": upstream,
            "last_seen_at": now,
        }
        for upstream in sorted(reachable)
        for model in fetched.get(upstream) or ()
    }
    if rows:
        await connection.execute(sa.insert(ModelUpstream), list(rows.values()))


async def _stored_models(connection: AsyncConnection) -> dict[str, _Stored]:
    rows = await connection.execute(
        sa.select(
            Model.name,
            Model.available,
            Model.cloud_approved,
            *(getattr(Model, c) for c in _METADATA),
        )
    )
    return {
        row.name: _Stored(
            row.available, {c: getattr(row, c) for c in _METADATA}, row.cloud_approved
        )
        for row in rows
    }


async def sync_upstreams(
    engine: AsyncEngine,
    fetched: Mapping[str, Sequence[CatalogModel] | None],
    now: datetime,
    *,
    configured: Sequence[str] | None = None,
) -> SyncResult:
    """Record one discovery cycle: `fetched` maps each upstream to its models, or None
    when its poll failed. `configured` is every upstream in routing order (default: the
    keys of `fetched`). When every poll failed nothing is written."""
    order = list(dict.fromkeys([*(configured or ()), *fetched]))
    reachable = frozenset(u for u in order if fetched.get(u) is not None)
    failed = tuple(u for u in order if u not in reachable)
    if not reachable:
        return SyncResult(failed_upstreams=failed)

    async with engine.begin() as connection:
        await _lock(connection)
        stored = await _stored_models(connection)
        holders = await _stored_holders(connection)
        seen = _choose(fetched, order, stored)
        added: list[str] = []
        reappeared: list[str] = []
        updated: list[str] = []
        unchanged: list[str] = []
        withheld = [
            name
            for name in seen
            if is_cloud_model(name) and not (name in stored and stored[name].cloud_approved)
        ]
        for name, values in seen.items():
            row = stored.get(name)
            if row is None:
                added.append(name)
            elif name in withheld:  # recorded, kept unavailable
                (updated if row.available or row.values != values else unchanged).append(name)
            elif not row.available:
                reappeared.append(name)
            elif row.values != values:
                updated.append(name)
            else:
                unchanged.append(name)
        vanished = [
            name
            for name, row in stored.items()
            if row.available
            and name not in seen
            and _is_vanished(
                row,
                holders.get(name, set()),
                reachable,
                frozenset(order),
                all_reachable=not failed,
            )
        ]

        if added:
            await connection.execute(
                sa.insert(Model),
                [
                    {
                        "name": n,
                        **seen[n],
                        "available": n not in withheld,
                        "first_seen_at": now,
                        "last_seen_at": now,
                    }
                    for n in added
                ],
            )
        for name in (*reappeared, *updated):
            await connection.execute(
                sa.update(Model)
                .where(Model.name == name)
                .values(**seen[name], available=name not in withheld, last_seen_at=now)
            )
        if unchanged:
            await connection.execute(
                sa.update(Model).where(Model.name.in_(unchanged)).values(last_seen_at=now)
            )
        if vanished:
            await connection.execute(
                sa.update(Model).where(Model.name.in_(vanished)).values(available=False)
            )
        await _record_holders(connection, fetched, reachable, now)

    return SyncResult(
        added=tuple(sorted(added)),
        reappeared=tuple(sorted(reappeared)),
        updated=tuple(sorted(updated)),
        vanished=tuple(sorted(vanished)),
        withheld=tuple(sorted(withheld)),
        unchanged=len(unchanged),
        failed_upstreams=failed,
    )


async def sync_catalog(
    engine: AsyncEngine, fetched: list[CatalogModel], upstream: str, now: datetime
) -> SyncResult:
    """Record a successful poll of the single upstream `upstream`.

    Call it only with a poll that succeeded: its models are the whole truth for that
    server, and (with one upstream) models of no server vanish. Several upstreams go
    through `sync_upstreams` in one call, so a model moving between servers never
    blinks out.
    """
    return await sync_upstreams(engine, {upstream: fetched}, now, configured=[upstream])
