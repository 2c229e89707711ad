"""Authentication against a running gateway (docs/REFERENCE.md §4.3), on both backends."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from neuronetz_gateway.auth.keys import checksum, generate_key
from neuronetz_gateway.auth.throttle import PREFIX_BURST, PREFIX_PER_SECOND
from neuronetz_gateway.db.tables import ApiKey, KeyStatus, Tenant, TenantStatus
from tests.doubles.ollama import OllamaDouble
from tests.e2e.conftest import BOTH_BACKENDS, Caller, allow_all_models, audit_rows
from tests.support.factories import make_key, make_tenant

pytestmark = BOTH_BACKENDS

CHAT = {"model": "llama3.1:8b", "messages": [{"role": "user", "content": "hi"}], "stream": False}
UNAUTHORIZED = {"error": "invalid API key"}
MISSING = {"error": "missing API key: send Authorization: Bearer <key> or x-api-key"}


def _wrong_secret(secret: str) -> str:
    body = secret[:11] + ("A" if secret[11] != "A" else "B") + secret[12:43]
    return body + checksum(body)


def _wrong_secrets(secret: str, count: int) -> list[str]:
    """`count` distinct well-formed keys under `secret`'s prefix, none of them right."""
    keys = []
    for position in range(11, 11 + count):
        body = (
            secret[:position]
            + ("A" if secret[position] != "A" else "B")
            + secret[position + 1 : 43]
        )
        keys.append(body + checksum(body))
    return keys


async def _status(client: httpx.AsyncClient, authorization: str | None) -> httpx.Response:
    headers = {"Authorization": authorization} if authorization is not None else {}
    return await client.post("/api/chat", json=CHAT, headers=headers)


async def test_valid_key_is_served(caller: Caller) -> None:
    response = await caller.client.post("/api/chat", json=CHAT, headers=caller.auth)
    assert response.status_code == 200
    assert response.json()["done"] is True


async def test_every_kind_of_bad_key_gets_the_same_401(
    caller: Caller, session: AsyncSession, double: OllamaDouble
) -> None:
    revoked = await make_key(session, caller.key.tenant_name)
    await session.execute(
        sa.update(ApiKey).where(ApiKey.id == revoked.key_id).values(status=KeyStatus.REVOKED)
    )
    expired = await make_key(session, caller.key.tenant_name, expires_in=timedelta(seconds=1))
    await session.execute(
        sa.update(ApiKey)
        .where(ApiKey.id == expired.key_id)
        .values(expires_at=datetime.now(UTC) - timedelta(hours=1))
    )
    await session.commit()
    candidates = {
        "basic": "Basic dXNlcjpwYXNz",
        "bearer-only": "Bearer",
        "garbage": "Bearer hello",
        "bad-checksum": "Bearer "
        + caller.key.secret[:-1]
        + ("A" if caller.key.secret[-1] != "A" else "B"),
        "unknown": "Bearer " + generate_key().secret,
        "wrong-secret": "Bearer " + _wrong_secret(caller.key.secret),
        "revoked": "Bearer " + revoked.secret,
        "expired": "Bearer " + expired.secret,
        "two-spaces": "Bearer  " + caller.key.secret,
        "trailing": "Bearer " + caller.key.secret + " x",
        "x-api-key-unknown": None,
    }
    for name, header in candidates.items():
        if header is None:
            headers = {"x-api-key": generate_key().secret}
            response = await caller.client.post("/api/chat", json=CHAT, headers=headers)
        else:
            response = await _status(caller.client, header)
        assert response.status_code == 401, name
        assert response.json() == UNAUTHORIZED, name
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.headers["x-request-id"]
    assert double.requests == []


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": ""}, {"x-api-key": ""}, {"Authorization": "", "x-api-key": ""}],
)
async def test_no_key_at_all_is_told_so(
    client: httpx.AsyncClient, headers: dict[str, str], engine: AsyncEngine
) -> None:
    request_id = f"no-key-{uuid.uuid4().hex[:8]}"
    response = await client.post(
        "/api/chat", json=CHAT, headers={**headers, "X-Request-ID": request_id}
    )

    assert response.status_code == 401
    assert response.json() == MISSING
    assert response.headers["www-authenticate"] == "Bearer"
    [row] = await audit_rows(engine, request_id)
    assert row.outcome == "auth_failed"


async def test_x_api_key_is_a_key_on_every_surface(caller: Caller, double: OllamaDouble) -> None:
    key = {"x-api-key": caller.key.secret}

    chat = await caller.client.post("/api/chat", json=CHAT, headers=key)
    models = await caller.client.get("/v1/models", headers=key)
    same_twice = await caller.client.get("/api/tags", headers={**caller.auth, **key})

    assert [chat.status_code, models.status_code, same_twice.status_code] == [200, 200, 200]
    [seen] = double.requests
    assert seen.header("x-api-key") is None
    assert seen.header("authorization") is None


async def test_two_different_keys_are_refused(caller: Caller, double: OllamaDouble) -> None:
    other = generate_key().secret
    for headers in (
        {**caller.auth, "x-api-key": other},
        {"Authorization": f"Bearer {other}", "x-api-key": caller.key.secret},
    ):
        response = await caller.client.post("/api/chat", json=CHAT, headers=headers)
        assert response.status_code == 401
        assert response.json() == {
            "error": "Authorization and x-api-key carry different keys; send one key"
        }
    assert double.requests == []


async def test_a_non_bearer_authorization_next_to_x_api_key_is_ignored(caller: Caller) -> None:
    headers = {"Authorization": "Basic dXNlcjpwYXNz", "x-api-key": caller.key.secret}

    response = await caller.client.post("/api/chat", json=CHAT, headers=headers)

    assert response.status_code == 200


async def test_scheme_is_case_insensitive(caller: Caller) -> None:
    response = await _status(caller.client, "bearer " + caller.key.secret)
    assert response.status_code == 200


async def test_key_in_query_string_is_never_read(caller: Caller) -> None:
    response = await caller.client.get(f"/api/tags?key={caller.key.secret}")
    assert response.status_code == 401
    response = await caller.client.get(f"/api/tags?api_key={caller.key.secret}")
    assert response.status_code == 401


async def test_openai_surface_401_shape(caller: Caller) -> None:
    missing = await caller.client.get("/v1/models")
    wrong = await caller.client.get("/v1/models", headers={"Authorization": "Bearer nz_x"})
    assert (missing.status_code, wrong.status_code) == (401, 401)
    assert missing.json()["error"]["code"] == "missing_api_key"
    assert wrong.json()["error"]["code"] == "invalid_api_key"


async def test_suspended_tenant_is_403(session: AsyncSession, client: httpx.AsyncClient) -> None:
    tenant = await make_tenant(session)
    await allow_all_models(session, tenant.id)
    key = await make_key(session, tenant.name)
    headers = {"Authorization": f"Bearer {key.secret}"}
    assert (await client.post("/api/chat", json=CHAT, headers=headers)).status_code == 200
    await _set_status(session, tenant.id, TenantStatus.SUSPENDED)
    response = await _eventually_status(client, headers, 403)
    assert response.json() == {"error": "tenant suspended"}
    await _set_status(session, tenant.id, TenantStatus.ACTIVE)
    await _eventually_status(client, headers, 200)


async def _set_status(session: AsyncSession, tenant_id: uuid.UUID, status: TenantStatus) -> None:
    await session.execute(sa.update(Tenant).where(Tenant.id == tenant_id).values(status=status))
    await session.commit()


async def _eventually_status(
    client: httpx.AsyncClient, headers: dict[str, str], status: int, within: float = 1.0
) -> httpx.Response:
    """The first response with `status`, asking until `within` seconds have passed."""
    import asyncio

    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        response = await client.post("/api/chat", json=CHAT, headers=headers)
        if response.status_code == status or loop.time() > deadline:
            assert response.status_code == status
            return response


async def test_refusals_are_audited(caller: Caller, engine: AsyncEngine) -> None:
    response = await caller.client.post(
        "/api/chat",
        json=CHAT,
        headers={"Authorization": "Bearer nope", "X-Request-ID": "auth-audit-1"},
    )
    assert response.status_code == 401
    rows = await audit_rows(engine, "auth-audit-1")
    assert len(rows) == 1
    assert rows[0].outcome == "auth_failed"
    assert rows[0].status_code == 401
    assert rows[0].tenant_id is None
    assert rows[0].route == "/api/chat"


@pytest.mark.parametrize("count", [20])
async def test_burst_with_a_new_key_is_served(
    session: AsyncSession, client: httpx.AsyncClient, count: int
) -> None:
    tenant = await make_tenant(session)
    await allow_all_models(session, tenant.id)
    key = await make_key(session, tenant.name)
    headers = {"Authorization": f"Bearer {key.secret}"}
    responses = await asyncio.gather(
        *(client.get("/api/tags", headers=headers) for _ in range(count))
    )
    assert {r.status_code for r in responses} == {200}


async def test_a_flood_of_wrong_keys_under_one_prefix_is_throttled(
    caller: Caller, session: AsyncSession, double: OllamaDouble
) -> None:
    """Distinct wrong keys under a real prefix: PREFIX_BURST are verified (401), the
    rest refused with 503 before any lookup or Argon2; the right key is unaffected, and
    so is a new key under another prefix (auth/throttle.py)."""
    assert (await _status(caller.client, caller.auth["Authorization"])).status_code == 200
    burst = int(PREFIX_BURST)
    wrong = _wrong_secrets(caller.key.secret, burst + 10)
    started = time.monotonic()
    verified = [await _status(caller.client, f"Bearer {key}") for key in wrong[:burst]]
    throttled = await asyncio.gather(
        *(_status(caller.client, f"Bearer {key}") for key in wrong[burst:])
    )
    elapsed = time.monotonic() - started
    assert [r.status_code for r in verified] == [401] * burst
    assert all(r.json() == UNAUTHORIZED for r in verified)
    refills = int(elapsed * PREFIX_PER_SECOND)  # tokens that came back meanwhile
    refused = [r for r in throttled if r.status_code == 503]
    assert len(refused) >= len(throttled) - refills
    assert {r.status_code for r in throttled} <= {401, 503}
    for response in refused:
        assert response.json()["error"] == "too many failed authentication attempts; retry shortly"
        assert int(response.headers["retry-after"]) >= 1
        assert response.headers["x-request-id"]

    assert (await _status(caller.client, caller.auth["Authorization"])).status_code == 200
    other = await make_key(session, caller.key.tenant_name)
    fresh = await _status(caller.client, f"Bearer {other.secret}")
    assert fresh.status_code == 200
    assert len(double.requests) == 3  # the right key twice, the new key once
