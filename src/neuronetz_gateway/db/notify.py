"""The change feed (docs/REFERENCE.md §3.3): one LISTEN connection per process.

`ChangeListener` listens on `nz_key_revoked` and `nz_config_changed` and calls its
handlers as notifications arrive. If the connection drops it reconnects with back-off
(`ChangeFeed`, shared with standalone mode's poller) and calls `on_reconnect` once
listening again, because notifications sent meanwhile are lost: the handler drops
every cache. A periodic ping notices connections that died silently (no FIN), which a
LISTEN-only connection would otherwise never see.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import ClassVar

import asyncpg
import orjson
import structlog

from neuronetz_gateway.background import BackgroundTask
from neuronetz_gateway.db.migrate import asyncpg_dsn

log = structlog.get_logger(__name__)

KEY_REVOKED = "nz_key_revoked"
CONFIG_CHANGED = "nz_config_changed"
PING_INTERVAL_SECONDS = 5.0
CONNECT_TIMEOUT_SECONDS = 5.0
APPLICATION_NAME = "neuronetz-gateway-listener"  # visible in pg_stat_activity
MAX_BACKOFF_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class ConfigChange:
    table: str
    tenant_id: uuid.UUID | None
    key_id: uuid.UUID | None


def parse_config_change(payload: str) -> ConfigChange | None:
    """The change a `nz_config_changed` payload names, or None if it is malformed."""
    try:
        data = orjson.loads(payload)
        tenant = data.get("tenant_id")
        key = data.get("key_id")
        return ConfigChange(
            table=str(data["table"]),
            tenant_id=uuid.UUID(tenant) if tenant else None,
            key_id=uuid.UUID(key) if key else None,
        )
    except (orjson.JSONDecodeError, KeyError, ValueError, TypeError, AttributeError):
        return None


@dataclass
class ChangeHandlers:
    on_key_revoked: Callable[[str], None]
    on_config_changed: Callable[[ConfigChange], None]
    on_reconnect: Callable[[], Awaitable[None]]


class ChangeFeed(BackgroundTask):
    """Follows a source of changes until it fails, then again after a back-off (doubling
    up to `MAX_BACKOFF_SECONDS`, from `first_backoff` again once a connection held).
    `connected` is set while the source is followed."""

    failure_event: ClassVar[str]  # logged (with the error's type) when following fails

    def __init__(self, first_backoff: float) -> None:
        self._first_backoff = first_backoff
        self.connected = asyncio.Event()

    async def follow(self) -> None:
        """Connect, set `connected`, deliver changes; raise once the source is lost."""
        raise NotImplementedError

    async def run(self) -> None:
        backoff = self._first_backoff
        while True:
            try:
                await self.follow()
            except Exception as error:  # noqa: BLE001 - any failure means: start over
                log.warning(self.failure_event, error=type(error).__name__)
            if self.connected.is_set():
                backoff = self._first_backoff
                self.connected.clear()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)


class ChangeListener(ChangeFeed):
    name = "change-listener"
    failure_event = "change_listener_disconnected"

    def __init__(self, database_url: str, handlers: ChangeHandlers) -> None:
        super().__init__(first_backoff=0.25)
        self._dsn = asyncpg_dsn(database_url)
        self._handlers = handlers

    def _notify(self, _connection: object, _pid: int, channel: str, payload: str) -> None:
        if channel == KEY_REVOKED:
            self._handlers.on_key_revoked(payload)
            return
        change = parse_config_change(payload)
        if change is None:
            log.warning("malformed_config_notification")
            return
        self._handlers.on_config_changed(change)

    async def follow(self) -> None:
        connection = await asyncpg.connect(
            self._dsn,
            timeout=CONNECT_TIMEOUT_SECONDS,
            server_settings={"application_name": APPLICATION_NAME},
        )
        lost = asyncio.Event()
        connection.add_termination_listener(lambda _conn: lost.set())
        try:
            await connection.add_listener(KEY_REVOKED, self._notify)
            await connection.add_listener(CONFIG_CHANGED, self._notify)
            # Listening before dropping caches: nothing can slip between the two.
            await self._handlers.on_reconnect()
            self.connected.set()
            log.info("change_listener_connected")
            while not lost.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), PING_INTERVAL_SECONDS)
                if not lost.is_set():
                    await connection.fetchval("SELECT 1", timeout=PING_INTERVAL_SECONDS)
            raise ConnectionError("listen connection terminated")
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), 1.0)
