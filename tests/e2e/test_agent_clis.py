"""Claude Code and Codex, the real CLIs from npm, end to end through the gateway in front
of the Ollama double (docs/REFERENCE.md §12): `claude -p "say hi"` and `codex exec
"say hi"` print the double's answer and exit 0, the audit rows carry the double's counts,
and with an rpm limit of 1 the second run gets a 429 that the CLI reports."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from neuronetz_gateway.db.tables import AuditLog
from tests.doubles.ollama import OllamaDouble, anthropic_surface, responses_surface
from tests.e2e.conftest import Caller, limited_key
from tests.support.agent_clis import CLAUDE_CODE, CODEX, run_claude_code, run_codex
from tests.support.processes import GatewayProcess

MODEL = "llama3.1:8b"
ANSWER = "tok0 tok1 tok2 tok3 tok4"
Runner = Callable[[Path, str, str, str, str], "subprocess.CompletedProcess[str]"]


@pytest.fixture(scope="module", autouse=True)
def _installed() -> None:
    """Install both CLIs (once per machine) before any test is timed."""
    CLAUDE_CODE.installed()
    CODEX.installed()


def double_counts(route: str, body: Any) -> tuple[int, int]:
    """The prompt and completion tokens the double reported for a request body."""
    surface = anthropic_surface if route == "/v1/messages" else responses_surface
    return surface.to_turn(body, MODEL).prompt_tokens(), 5


async def key_rows(engine: AsyncEngine, key_id: uuid.UUID, expected: int) -> list[AuditLog]:
    """The audit rows of a key once `expected` are written (bounded wait)."""
    deadline = asyncio.get_running_loop().time() + 5.0
    while True:
        async with AsyncSession(engine) as session:
            query = sa.select(AuditLog).where(AuditLog.key_id == key_id).order_by(AuditLog.ts)
            rows = list(await session.scalars(query))
        if len(rows) >= expected or asyncio.get_running_loop().time() > deadline:
            return rows
        await asyncio.sleep(0.05)  # the audit writer flushes every 50 ms in tests


CLIS = [
    pytest.param(run_claude_code, "/v1/messages", id="claude-code"),
    pytest.param(run_codex, "/v1/responses", id="codex"),
]


@pytest.mark.parametrize(("run", "route"), CLIS)
async def test_says_hi_through_the_gateway(
    run: Runner,
    route: str,
    tmp_path: Path,
    gateway: GatewayProcess,
    caller: Caller,
    double: OllamaDouble,
    engine: AsyncEngine,
) -> None:
    done = await asyncio.to_thread(
        run, tmp_path, gateway.base_url, caller.key.secret, MODEL, "say hi"
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert ANSWER in done.stdout
    [seen] = [r for r in double.requests if r.path == route]
    rows = await key_rows(engine, caller.key.key_id, 1)
    # Claude Code's `HEAD /` liveness check is answered by the gateway: no row.
    assert [(r.route, r.outcome, r.status_code) for r in rows] == [(route, "ok", 200)]
    assert (rows[0].prompt_tokens, rows[0].completion_tokens) == double_counts(route, seen.json)
    assert rows[0].model == MODEL


@pytest.mark.parametrize(("run", "route"), CLIS)
async def test_the_second_run_within_an_rpm_of_1_is_a_reported_rate_limit(
    run: Runner,
    route: str,
    tmp_path: Path,
    gateway: GatewayProcess,
    session: AsyncSession,
    double: OllamaDouble,
    engine: AsyncEngine,
) -> None:
    key = await limited_key(session, key={"rpm": 1})

    first = await asyncio.to_thread(run, tmp_path, gateway.base_url, key.secret, MODEL, "say hi")
    second = await asyncio.to_thread(run, tmp_path, gateway.base_url, key.secret, MODEL, "say hi")

    assert first.returncode == 0, first.stdout + first.stderr
    assert second.returncode != 0
    told = second.stdout + second.stderr
    assert "429" in told
    if route == "/v1/messages":
        assert "rate limit of the key reached: 1 requests per minute" in told
    else:
        assert "Too Many Requests" in told
    assert len([r for r in double.requests if r.path == route]) == 1
    rows = await key_rows(engine, key.key_id, 2)
    assert [(r.route, r.outcome, r.status_code) for r in rows] == [
        (route, "ok", 200),
        (route, "rate_limited", 429),
    ]
