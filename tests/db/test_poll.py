"""`SqlitePoller`: changes another connection commits arrive as the triggers' events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from neuronetz_gateway.admin import keys as admin_keys
from neuronetz_gateway.admin.tenants import set_tenant_status
from neuronetz_gateway.db import migrate
from neuronetz_gateway.db.engine import create_engine, session_factory
from neuronetz_gateway.db.notify import ChangeHandlers, ConfigChange
from neuronetz_gateway.db.poll import SqlitePoller
from neuronetz_gateway.db.snapshot import diff, take_snapshot
from neuronetz_gateway.db.tables import ApiKey, Model, TenantStatus
from tests.support.factories import make_key, make_tenant

Event = tuple[str, object]
WITHIN_SECONDS = 1.0


class Recorder:
    def __init__(self) -> None:
        self.events: asyncio.Queue[Event] = asyncio.Queue()

    def handlers(self) -> ChangeHandlers:
        async def reconnected() -> None:
            self.events.put_nowait(("reconnect", None))

        return ChangeHandlers(
            on_key_revoked=lambda prefix: self.events.put_nowait(("revoked", prefix)),
            on_config_changed=lambda change: self.events.put_nowait(("config", change)),
            on_reconnect=reconnected,
        )

    async def models_changed(self) -> None:
        self.events.put_nowait(("models", None))

    async def next(self) -> Event:
        return await asyncio.wait_for(self.events.get(), WITHIN_SECONDS)

    async def take(self, count: int) -> list[Event]:
        return [await self.next() for _ in range(count)]


@pytest.fixture
async def engines(tmp_path: Path) -> AsyncIterator[tuple[AsyncEngine, AsyncEngine]]:
    """The gateway's engine and another one, standing in for the CLI's process."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"
    await asyncio.to_thread(migrate.upgrade, url)
    gateway, other = create_engine(url), create_engine(url)
    yield gateway, other
    await gateway.dispose()
    await other.dispose()


@pytest.fixture
async def recorder(engines: tuple[AsyncEngine, AsyncEngine]) -> AsyncIterator[Recorder]:
    recorder = Recorder()
    poller = SqlitePoller(
        engines[0], recorder.handlers(), on_models_changed=recorder.models_changed
    )
    await poller.start()
    assert await recorder.next() == ("reconnect", None)
    yield recorder
    await poller.aclose()


@pytest.fixture
async def cli_session(engines: tuple[AsyncEngine, AsyncEngine]) -> AsyncIterator[AsyncSession]:
    async with session_factory(engines[1])() as session:
        yield session


async def test_new_tenant_and_key_arrive_as_config_changes(
    recorder: Recorder, cli_session: AsyncSession
) -> None:
    tenant = await make_tenant(cli_session)
    events = await recorder.take(2)
    assert set(events) == {
        ("config", ConfigChange("tenants", tenant.id, None)),
        ("config", ConfigChange("tenant_limits", tenant.id, None)),
    }
    key = await make_key(cli_session, tenant.name)
    assert await recorder.next() == ("config", ConfigChange("api_keys", tenant.id, key.key_id))


async def test_revocation_names_the_prefix(recorder: Recorder, cli_session: AsyncSession) -> None:
    tenant = await make_tenant(cli_session)
    key = await make_key(cli_session, tenant.name)
    await recorder.take(3)

    await admin_keys.revoke_key(cli_session, key.prefix)
    assert await recorder.take(2) == [
        ("revoked", key.prefix),
        ("config", ConfigChange("api_keys", tenant.id, key.key_id)),
    ]

    await cli_session.execute(sa.delete(ApiKey).where(ApiKey.id == key.key_id))
    await cli_session.commit()
    assert (await recorder.next()) == ("revoked", key.prefix)


async def test_bookkeeping_writes_are_not_configuration(
    recorder: Recorder, cli_session: AsyncSession
) -> None:
    tenant = await make_tenant(cli_session)
    key = await make_key(cli_session, tenant.name)
    await recorder.take(3)

    # What the audit writer does on every batch: only last_used_at changes.
    await cli_session.execute(
        sa.update(ApiKey).where(ApiKey.id == key.key_id).values(last_used_at=datetime.now(UTC))
    )
    await cli_session.commit()
    # A configuration change after it: had the first one counted, it would come first.
    await set_tenant_status(cli_session, tenant.name, TenantStatus.SUSPENDED)
    assert await recorder.next() == ("config", ConfigChange("tenants", tenant.id, None))
    assert recorder.events.empty()


async def test_catalog_changes_are_reported(recorder: Recorder, cli_session: AsyncSession) -> None:
    cli_session.add(Model(name="m:1b", available=True))
    await cli_session.commit()
    assert await recorder.next() == ("models", None)

    await cli_session.execute(sa.update(Model).values(available=False))
    await cli_session.commit()
    assert await recorder.next() == ("models", None)


async def test_bookkeeping_columns_are_not_part_of_a_snapshot(
    engines: tuple[AsyncEngine, AsyncEngine], cli_session: AsyncSession
) -> None:
    tenant = await make_tenant(cli_session)
    key = await make_key(cli_session, tenant.name)
    cli_session.add(Model(name="m:1b", available=True))
    await cli_session.commit()
    before = await take_snapshot(engines[0])

    now = datetime.now(UTC)
    await cli_session.execute(
        sa.update(ApiKey).where(ApiKey.id == key.key_id).values(last_used_at=now)
    )
    await cli_session.execute(sa.update(Model).values(last_seen_at=now))
    await cli_session.commit()
    assert diff(before, await take_snapshot(engines[0])).empty

    await cli_session.execute(sa.update(ApiKey).values(prompt_logging=True))
    await cli_session.commit()
    changes = diff(before, await take_snapshot(engines[0]))
    assert changes.config == (ConfigChange("api_keys", tenant.id, key.key_id),)
    assert not changes.models_changed
