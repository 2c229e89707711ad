"""Every admitted request is settled and audited truthfully, whatever raises after
admission (docs/REFERENCE.md §4.5, §4.6, §4.10), on both backends.

A fault is injected at the seam of each step around admission (building the stream
observer, re-encoding the body, forwarding, relaying, settling) of a gateway running in
this process. Whatever the step, the client gets a well-formed answer, the audit row
names the status the client was sent and `internal_error`, and within a second the
limiter holds nothing for the key or its tenant: no concurrency lease, no budget
reservation.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn

import httpx
import orjson
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from neuronetz_gateway.admin.limits import LimitUpdate, set_tenant_limits
from neuronetz_gateway.admin.models import discover_models
from neuronetz_gateway.config import Settings
from neuronetz_gateway.limits import Ticket
from neuronetz_gateway.pipeline import Pipeline
from neuronetz_gateway.proxy import forward, rewrite, surfaces
from neuronetz_gateway.proxy.forward import Forwarder
from neuronetz_gateway.proxy.observer import StreamObserver
from tests.conftest import make_settings
from tests.doubles.ollama import OllamaDouble
from tests.e2e.conftest import BOTH_BACKENDS, STANDALONE, Backend, allow_all_models, audit_rows
from tests.support.factories import KeyFixture, make_key, make_tenant
from tests.support.inprocess import InProcessGateway, serve_in_process
from tests.support.limiter_state import NOTHING, wait_until_released

pytestmark = BOTH_BACKENDS
MODEL = "llama3.1:8b"
MESSAGES = [{"role": "user", "content": "hi"}]
NATIVE = ("/api/chat", {"model": MODEL, "messages": MESSAGES, "stream": False})
OPENAI = ("/v1/chat/completions", {"model": MODEL, "messages": MESSAGES})


@pytest.fixture
def gateway_settings(backend: Backend, double: OllamaDouble) -> Settings:
    overrides: dict[str, object] = {
        "ollama_base_url": double.base_url,
        "audit_flush_interval_ms": 50,
        "upstream_read_timeout_seconds": 10,
    }
    if backend.name == STANDALONE:
        overrides["redis_url"] = None
    return make_settings(backend.database_url, **overrides)


@pytest.fixture
async def served(
    gateway_settings: Settings, engine: AsyncEngine
) -> AsyncIterator[InProcessGateway]:
    await discover_models(engine, gateway_settings)  # the catalog the gateway loads at start
    async with serve_in_process(gateway_settings) as gateway:
        yield gateway


@pytest.fixture
async def client(served: InProcessGateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=served.base_url, timeout=10) as client:
        yield client


@pytest.fixture
async def limited(session: AsyncSession) -> KeyFixture:
    """A key whose requests hold a concurrency lease and a budget reservation (and whose
    budget gives every request an output cap, so its body is re-encoded)."""
    tenant = await make_tenant(session)
    await allow_all_models(session, tenant.id)
    limits = {"max_concurrent": 1, "daily_tokens": 100_000}
    await set_tenant_limits(session, tenant.name, LimitUpdate(values=limits))
    return await make_key(session, tenant.name)


def headers(key: KeyFixture, request_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key.secret}", "X-Request-ID": request_id}


def new_id(step: str) -> str:
    """A request id of its own: every test of the module writes to the same audit log."""
    return f"{step}-{uuid.uuid4().hex[:12]}"


def model_requests(double: OllamaDouble) -> list[str]:
    """Paths of the requests that reached the double, discovery's polls left out."""
    return [request.path for request in double.requests if request.path != "/api/tags"]


async def assert_released(served: InProcessGateway, key: KeyFixture) -> None:
    released = await wait_until_released(served.runtime, key.tenant_id, key.key_id, within=1.0)
    assert released == [NOTHING, NOTHING]


async def assert_audited(engine: AsyncEngine, request_id: str, status: int, outcome: str) -> None:
    [row] = await audit_rows(engine, request_id)
    assert (row.status_code, row.outcome) == (status, outcome)


async def assert_answered_500(
    served: InProcessGateway,
    engine: AsyncEngine,
    key: KeyFixture,
    response: httpx.Response,
    path: str,
) -> None:
    """A fault before the response: 500 naming the gateway's request id, audited as
    such, and the limiter holds nothing."""
    request_id = response.request.headers["x-request-id"]
    assert response.status_code == 500
    assert response.headers["x-request-id"] == request_id
    assert response.json() == internal_error_body(path, response.headers["x-gateway-request-id"])
    await assert_audited(engine, request_id, 500, "internal_error")
    await assert_released(served, key)


def internal_error_body(path: str, request_id: str) -> Any:
    message = f"internal error (request id {request_id})"
    if path.startswith("/v1/"):
        return {
            "error": {
                "message": message,
                "type": "server_error",
                "param": None,
                "code": "internal_error",
            }
        }
    return {"error": message}


def boom(*_: Any, **__: Any) -> NoReturn:
    raise RuntimeError("injected fault")


async def async_boom(*_: Any, **__: Any) -> NoReturn:
    raise RuntimeError("injected fault")


# -- before the response: the gateway answers 500 ----------------------------------------


async def test_a_body_too_deep_to_reencode_is_refused_before_admission(
    served: InProcessGateway,
    client: httpx.AsyncClient,
    limited: KeyFixture,
    engine: AsyncEngine,
    double: OllamaDouble,
) -> None:
    # orjson reads 1,024 levels but writes 255 (found by a hostile client: a 500 after
    # admission that held the lease). The depth cap (MAX_JSON_DEPTH, at most 254)
    # refuses such a body at parse time; the re-encoding fault itself is injected below.
    body = (
        b'{"model": "llama3.1:8b", "stream": false,'
        b' "messages": [{"role": "user", "content": "hi"}], "x": ' + b"[" * 300 + b"]" * 300 + b"}"
    )
    request_id = new_id("deep")
    response = await client.post("/api/chat", content=body, headers=headers(limited, request_id))
    assert response.status_code == 400
    assert "nested too deeply" in response.json()["error"]
    assert model_requests(double) == []
    await assert_audited(engine, request_id, 400, "client_error")
    await assert_released(served, limited)


def reencoding_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    def unencodable(*_: object) -> NoReturn:
        raise orjson.JSONEncodeError("Recursion limit reached")

    monkeypatch.setattr(rewrite, "prepare", unencodable)


def observing_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    # The stream observer settlement reads is built before admission: a fault there
    # must not leave an admission behind that nothing settles.
    monkeypatch.setattr(surfaces, "observer_for", boom)


def forwarding_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    # E.g. aiohttp's RuntimeError for a request on a closed session.
    monkeypatch.setattr(Forwarder, "_send", async_boom)


def relaying_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(forward, "relay_whole", async_boom)


@pytest.mark.parametrize(
    ("inject", "call", "reaches_ollama"),
    [
        pytest.param(reencoding_fails, NATIVE, False, id="serialise-native"),
        pytest.param(reencoding_fails, OPENAI, False, id="serialise-openai"),
        pytest.param(observing_fails, OPENAI, False, id="observe"),
        pytest.param(forwarding_fails, NATIVE, False, id="forward"),
        pytest.param(relaying_fails, OPENAI, True, id="relay"),
    ],
)
async def test_a_fault_before_the_response(
    served: InProcessGateway,
    client: httpx.AsyncClient,
    limited: KeyFixture,
    engine: AsyncEngine,
    double: OllamaDouble,
    monkeypatch: pytest.MonkeyPatch,
    inject: Callable[[pytest.MonkeyPatch], None],
    call: tuple[str, dict[str, Any]],
    reaches_ollama: bool,
) -> None:
    inject(monkeypatch)
    path, body = call
    request_id = new_id("fault")
    response = await client.post(path, json=body, headers=headers(limited, request_id))
    assert model_requests(double) == ([path] if reaches_ollama else [])
    await assert_answered_500(served, engine, limited, response, path)


# -- mid-stream: the stream ends with an in-band error ----------------------------------


@pytest.mark.parametrize(
    ("path", "feed", "prefix"),
    [("/api/chat", "ndjson", b""), ("/v1/chat/completions", "sse", b"data: ")],
    ids=["native", "openai"],
)
async def test_a_fault_while_relaying_a_stream(
    served: InProcessGateway,
    client: httpx.AsyncClient,
    limited: KeyFixture,
    engine: AsyncEngine,
    double: OllamaDouble,
    monkeypatch: pytest.MonkeyPatch,
    path: str,
    feed: str,
    prefix: bytes,
) -> None:
    double.completion_tokens, double.chunk_delay = 200, 0.02
    original: Callable[[StreamObserver, bytes], bytes] = getattr(StreamObserver, feed)
    blocks = 0

    def failing_on_the_third_block(observer: StreamObserver, block: bytes) -> bytes:
        nonlocal blocks
        blocks += 1
        if blocks == 3:
            raise RuntimeError("injected fault")
        return original(observer, block)

    monkeypatch.setattr(StreamObserver, feed, failing_on_the_third_block)
    body = {"model": MODEL, "messages": MESSAGES, "stream": True}
    request_id = new_id("stream")
    async with client.stream("POST", path, json=body, headers=headers(limited, request_id)) as r:
        assert r.status_code == 200
        ours = r.headers["x-gateway-request-id"]
        lines = [line async for line in r.aiter_lines() if line]
    # Two blocks relayed (a block may hold several lines), then the error.
    assert len(lines) >= 3
    assert not [line for line in lines[:-1] if "error" in line]
    assert orjson.loads(lines[-1].encode().removeprefix(prefix)) == internal_error_body(path, ours)
    # The upstream's generation was stopped, not left running.
    await asyncio.to_thread(double.wait_for_cancellation, 5.0)
    await assert_audited(engine, request_id, 200, "internal_error")
    await assert_released(served, limited)


# -- settling ------------------------------------------------------------------------------


async def test_a_fault_while_measuring_usage(
    served: InProcessGateway,
    client: httpx.AsyncClient,
    limited: KeyFixture,
    engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(Pipeline, "_usage", staticmethod(boom))
    path, body = NATIVE
    request_id = new_id("usage")
    response = await client.post(path, json=body, headers=headers(limited, request_id))
    assert response.status_code == 200  # answered before the fault
    [row] = await audit_rows(engine, request_id)
    assert (row.status_code, row.outcome) == (200, "internal_error")
    assert (row.prompt_tokens, row.completion_tokens) == (1, 0)  # the prompt estimate
    await assert_released(served, limited)


async def test_a_settlement_that_fails_once_is_tried_again(
    served: InProcessGateway,
    client: httpx.AsyncClient,
    limited: KeyFixture,
    engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    limiter = served.runtime.limiter
    settle: Callable[..., Awaitable[None]] = limiter.settle
    failures = 0

    async def failing_once(ticket: Ticket, *args: Any, **kwargs: Any) -> None:
        nonlocal failures
        if failures == 0:
            failures += 1
            raise RuntimeError("injected fault")
        await settle(ticket, *args, **kwargs)

    monkeypatch.setattr(limiter, "settle", failing_once)
    path, body = NATIVE
    request_id = new_id("settle")
    response = await client.post(path, json=body, headers=headers(limited, request_id))
    assert response.status_code == 200
    assert failures == 1
    await assert_audited(engine, request_id, 200, "ok")
    await assert_released(served, limited)


async def test_a_settlement_that_keeps_failing_is_audited(
    served: InProcessGateway,
    client: httpx.AsyncClient,
    limited: KeyFixture,
    engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(served.runtime.limiter, "settle", async_boom)
    path, body = NATIVE
    request_id = new_id("settle")
    response = await client.post(path, json=body, headers=headers(limited, request_id))
    assert response.status_code == 200
    await assert_audited(engine, request_id, 200, "internal_error")
