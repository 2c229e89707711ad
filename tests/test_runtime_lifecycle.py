"""Starting and closing one process's runtime and lifespan, against the real services:
a start that fails at any step (of the runtime's services, or of the lifespan around
them) closes exactly what it had opened, in reverse order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from neuronetz_gateway import app as app_module
from neuronetz_gateway.app import create_app
from neuronetz_gateway.config import Settings
from neuronetz_gateway.observability import multiprocess
from neuronetz_gateway.pipeline import Pipeline
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


# -- the lifespan: a failure at each of its steps ---------------------------------------

LIFESPAN_STEPS = ("open_resources", "GatewayRuntime", "start", "Pipeline", "freeze_startup_heap")


@pytest.mark.parametrize("failing", LIFESPAN_STEPS)
async def test_a_lifespan_failing_at_any_step_closes_what_it_opened(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    """Whatever step of the lifespan fails, what the steps before it opened is closed
    (the runtime's tasks stopped, its verifier shut, the connections closed), the
    process's metrics are retired and no request can reach a half-built pipeline."""
    opened: list[Resources] = []
    runtimes: list[GatewayRuntime] = []
    retired: list[Settings] = []

    def fails_if(step: str) -> None:
        if step == failing:
            raise InjectedFault

    async def opening(settings: Settings) -> Resources:
        fails_if("open_resources")
        opened.append(await open_resources(settings))
        return opened[-1]

    def building(settings: Settings, resources: Resources) -> GatewayRuntime:
        fails_if("GatewayRuntime")
        runtimes.append(GatewayRuntime(settings, resources))
        return runtimes[-1]

    start = GatewayRuntime.start

    async def starting(runtime: GatewayRuntime) -> None:
        fails_if("start")
        await start(runtime)

    def piping(runtime: GatewayRuntime) -> Pipeline:
        fails_if("Pipeline")
        return Pipeline(runtime)

    monkeypatch.setattr(app_module, "open_resources", opening)
    monkeypatch.setattr(app_module, "GatewayRuntime", building)
    monkeypatch.setattr(GatewayRuntime, "start", starting)
    monkeypatch.setattr(app_module, "Pipeline", piping)
    monkeypatch.setattr(app_module, "freeze_startup_heap", lambda: fails_if("freeze_startup_heap"))
    monkeypatch.setattr(multiprocess, "retire_this_worker", retired.append)

    app = create_app(settings)
    with pytest.raises(InjectedFault):
        async with app.framework.router.lifespan_context(app.framework):
            pass

    step = LIFESPAN_STEPS.index(failing)
    assert retired == [settings]
    assert len(opened) == (step > 0)
    assert len(runtimes) == (step > 1)
    for resources in opened:
        assert resources.upstream.closed
    for runtime in runtimes:
        assert running_tasks(runtime) == set()
        assert await verifier_is_closed(runtime)
    assert (app.holder.runtime, app.holder.pipeline) == (None, None)
