"""Load for the fair-share tests: tenants keeping streams open, one-at-a-time senders.

Every request carries its own label as the message content (`A-3-17`: tenant A, worker
3, request 17), so the double's records say whose request each one was. Times are
`time.monotonic()`, the clock the double records with (it runs in the test process).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx

from tests.doubles.ollama import RecordedRequest

CLIENT_LIMITS = httpx.Limits(max_connections=500, max_keepalive_connections=500)


def chat(model: str, label: str) -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": label}], "stream": True}


def label_of(request: RecordedRequest) -> str:
    body = request.json
    if not isinstance(body, dict):
        return ""
    messages = body.get("messages") or [{}]
    return str(messages[0].get("content", ""))


@dataclass
class Sent:
    """One request as its client saw it."""

    label: str
    sent_at: float
    status: int = 0
    first_byte_at: float | None = None
    request_id: str | None = None


@dataclass
class StreamingTenant:
    """`streams` workers over `base_urls` (in turn), each re-opening its stream as soon
    as the previous one ended, until `stop()`."""

    name: str
    secret: str
    model: str
    base_urls: Sequence[str]
    streams: int
    sent: list[Sent] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self, client: httpx.AsyncClient) -> None:
        for worker in range(self.streams):
            base = self.base_urls[worker % len(self.base_urls)]
            self._tasks.append(asyncio.create_task(self._worker(client, base, worker)))

    async def stop(self) -> None:
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _worker(self, client: httpx.AsyncClient, base: str, worker: int) -> None:
        number = 0
        while not self._stop.is_set():
            label = f"{self.name}-{worker}-{number}"
            await send(client, base, self.secret, self.model, label, self.sent)
            number += 1


async def send(
    client: httpx.AsyncClient,
    base: str,
    secret: str,
    model: str,
    label: str,
    log: list[Sent] | None = None,
    request_id: str | None = None,
) -> Sent:
    """One streamed chat request, read to its end; when its first byte came."""
    headers = {"Authorization": f"Bearer {secret}"}
    if request_id is not None:
        headers["X-Request-ID"] = request_id
    sent = Sent(label, time.monotonic(), request_id=request_id)
    if log is not None:
        log.append(sent)
    async with client.stream(
        "POST", base + "/api/chat", json=chat(model, label), headers=headers
    ) as response:
        sent.status = response.status_code
        async for _ in response.aiter_raw():
            if sent.first_byte_at is None:
                sent.first_byte_at = time.monotonic()
    return sent


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile (p95: fraction 0.95)."""
    ordered = sorted(values)
    rank = max(1, int(-(-fraction * len(ordered) // 1)))
    return ordered[rank - 1]
