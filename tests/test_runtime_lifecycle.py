"""Starting and closing one process's runtime and lifespan, against the real services:
a start that fails at any step closes exactly what it had opened, in reverse order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from neuronetz_gateway.app import create_app
from neuronetz_gateway.config import Settings
from neuronetz_gateway.resources import Resources, open_resources
from neuronetz_gateway.runtime import GatewayRuntime

STEPS = 7  # the runtime's services
Step = Callable[[], Awaitable[None]]


class InjectedFault(Exception):
    pass


@pytest.fixture
async def resources(settings: Settings) -> AsyncIterator[Resources]:
    opened = await open_resources(settings)
    yield opened
    await opened.aclose()


def record_lifecycle(
    runtime: GatewayRuntime, monkeypatch: pytest.MonkeyPatch, failing: int | None
) -> list[str]:
    """Record each service's start and close; the start of service `failing` raises."""
    events: list[str] = []

    def recording_start(
        index: int, start: Callable[[], Awaitable[None]]
    ) -> Callable[[], Awaitable[None]]:
        async def wrapped() -> None:
            events.append(f"start {index}")
            if index == failing:
                raise InjectedFault
            await start()

        return wrapped

    def recording_close(
        index: int, aclose: Callable[[], Awaitable[None]]
    ) -> Callable[[], Awaitable[None]]:
        async def wrapped() -> None:
            events.append(f"close {index}")
            await aclose()

        return wrapped

    for index, service in enumerate(runtime.services):
        monkeypatch.setattr(service, "start", recording_start(index, service.start))
        monkeypatch.setattr(service, "aclose", recording_close(index, service.aclose))
    return events


def running_tasks(runtime: GatewayRuntime) -> set[str]:
    """Names of the runtime's background tasks that are still running."""
    names = {service.name for service in runtime.services}
    return {task.get_name() for task in asyncio.all_tasks() if not task.done()} & names


async def verifier_is_closed(runtime: GatewayRuntime) -> bool:
    try:
        await runtime.verifier.verify("$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA", "key")
    except RuntimeError:  # cannot schedule new futures after shutdown
        return True
    return False


@pytest.mark.parametrize("failing", range(STEPS))
async def test_a_start_failing_at_any_step_closes_what_started_in_reverse(
    settings: Settings, resources: Resources, monkeypatch: pytest.MonkeyPatch, failing: int
) -> None:
    runtime = GatewayRuntime(settings, resources)
    assert len(runtime.services) == STEPS
    events = record_lifecycle(runtime, monkeypatch, failing)

    with pytest.raises(InjectedFault):
        await runtime.start()

    started = [f"start {index}" for index in range(failing + 1)]
    closed = [f"close {index}" for index in reversed(range(failing))]
    assert events == started + closed
    assert running_tasks(runtime) == set()
    assert await verifier_is_closed(runtime)
    await runtime.aclose()  # nothing is closed twice
    assert events == started + closed


async def test_a_started_runtime_closes_everything_in_reverse_once(
    settings: Settings, resources: Resources, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = GatewayRuntime(settings, resources)
    events = record_lifecycle(runtime, monkeypatch, failing=None)
    await runtime.start()
    assert running_tasks(runtime) == {
        "metrics-sampler",
        "audit-writer",
        "change-listener",
        "model-discovery",
        "retention",
        "upstream-prober",
        "queue",
    }
    await runtime.aclose()
    await runtime.aclose()
    steps = range(STEPS)
    assert events == [f"start {i}" for i in steps] + [f"close {i}" for i in reversed(steps)]
    assert running_tasks(runtime) == set()
    assert await verifier_is_closed(runtime)


async def test_a_lifespan_whose_runtime_fails_to_start_closes_its_resources(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def failing_start(_runtime: GatewayRuntime) -> None:
        raise InjectedFault

    monkeypatch.setattr(GatewayRuntime, "start", failing_start)
    app = create_app(settings)
    with pytest.raises(InjectedFault):
        async with app.framework.router.lifespan_context(app.framework):
            pass
    assert app.state.resources.upstream.closed
    assert app.holder.runtime is None
