"""The scheduler's background work in one process: the tick and the wake-up channel.

The tick runs once a second while this process has requests waiting or slots held:
it reclaims expired leases (a dead replica's slots serve others within
`CONCURRENCY_LEASE_SECONDS` + 1 s), learns whether a waiter was granted meanwhile (a
lost wake-up costs one tick at most), refreshes the leases of held slots every third
of a lease, and keeps this replica's heartbeat alive. Idle, it waits for activity.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from neuronetz_gateway.background import BackgroundTask
from neuronetz_gateway.scheduler.slots import SlotScheduler
from neuronetz_gateway.scheduler.store import QueueUnavailable
from neuronetz_gateway.scheduler.wakeups import subscribe_forever

log = structlog.get_logger(__name__)


class QueueService(BackgroundTask):
    name = "queue"

    def __init__(self, scheduler: SlotScheduler, redis_url: str | None) -> None:
        self._scheduler = scheduler
        self._redis_url = redis_url
        self._busy_channel = scheduler.busy_channel.encode()

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(self._ticks())
            if self._redis_url is not None and self._scheduler.channel:
                channels = (self._scheduler.channel, self._scheduler.busy_channel)
                group.create_task(
                    subscribe_forever(
                        self._redis_url, channels, self._on_message, self._on_subscribed
                    )
                )

    async def aclose(self) -> None:
        await self.stop_task()
        await self._scheduler.aclose()

    def _on_message(self, channel: bytes, payload: bytes) -> None:
        with contextlib.suppress(ValueError):
            if channel == self._busy_channel:
                self._scheduler.holdings.mark_busy(payload.decode().split(","))
                return
            waiter, server = payload.decode().split(" ", 1)
            self._scheduler.wake(waiter, server)

    def _on_subscribed(self) -> None:
        # Busy messages sent while the subscription was down are lost.
        self._scheduler.holdings.mark_all_busy()
        log.info("queue_subscribed")

    async def _ticks(self) -> None:
        scheduler = self._scheduler
        while True:
            if not scheduler.waiting and not scheduler.holding:
                scheduler.activity.clear()
                await scheduler.activity.wait()
            await asyncio.sleep(scheduler.next_tick_in())
            with contextlib.suppress(QueueUnavailable):  # logged; the next tick tries again
                await scheduler.tick()
