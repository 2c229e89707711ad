"""`neuronetz-gateway usage` (REFERENCE.md §6): usage_daily rows per day, key and model, totals."""

from __future__ import annotations

import asyncio
import uuid
from datetime import date

import orjson
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from neuronetz_gateway.cli.main import run_cli
from neuronetz_gateway.db.tables import UsageDaily
from tests.support.factories import KeyFixture, make_key, make_tenant


class Cli:
    """Runs the CLI in-process (in a thread: it starts its own event loop)."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self._capsys = capsys

    async def __call__(self, *argv: str) -> tuple[int, str, str]:
        self._capsys.readouterr()
        code = await asyncio.to_thread(run_cli, list(argv))
        captured = self._capsys.readouterr()
        return code, captured.out, captured.err


@pytest.fixture
def cli(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Cli:
    monkeypatch.setenv("DATABASE_URL", database_url)
    return Cli(capsys)


def usage_row(
    key: KeyFixture, day: str, model: str, requests: int, prompt: int, completion: int
) -> UsageDaily:
    return UsageDaily(
        day=date.fromisoformat(day),
        tenant_id=key.tenant_id,
        key_id=key.key_id,
        model=model,
        requests=requests,
        prompt_tokens=prompt,
        completion_tokens=completion,
    )


@pytest.fixture
async def usage(session: AsyncSession) -> tuple[str, KeyFixture, KeyFixture]:
    tenant = await make_tenant(session)
    first = await make_key(session, tenant.name)
    second = await make_key(session, tenant.name)
    bystander = await make_key(session, (await make_tenant(session)).name)
    session.add_all(
        [
            usage_row(first, "2026-11-24", "llama3.1:8b", 3, 120, 300),
            usage_row(first, "2026-11-25", "llama3.1:8b", 2, 80, 1000),
            usage_row(first, "2026-11-25", "", 4, 0, 0),
            usage_row(second, "2026-11-25", "qwen2.5:7b", 1, 15, 5),
            usage_row(bystander, "2026-11-25", "llama3.1:8b", 9, 999, 999),
        ]
    )
    await session.commit()
    return tenant.name, first, second


async def test_usage_prints_rows_and_totals(
    cli: Cli, usage: tuple[str, KeyFixture, KeyFixture]
) -> None:
    tenant, first, second = usage
    code, out, err = await cli("usage", "--tenant", tenant)

    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == f"usage of tenant {tenant}"
    assert lines[1].split() == ["day", "key", "model", "requests", "prompt", "completion", "total"]
    rows = [line.split() for line in lines[2:]]
    second_row = ["2026-11-25", second.prefix, "qwen2.5:7b", "1", "15", "5", "20"]
    assert rows == [
        ["2026-11-24", first.prefix, "llama3.1:8b", "3", "120", "300", "420"],
        *sorted(
            [
                ["2026-11-25", first.prefix, "-", "4", "0", "0", "0"],
                ["2026-11-25", first.prefix, "llama3.1:8b", "2", "80", "1000", "1080"],
                second_row,
            ],
            key=lambda row: (row[1], row[2] if row[2] != "-" else ""),
        ),
        ["total", "10", "215", "1305", "1520"],
    ]
    # Numbers are right-aligned in their columns.
    assert len({len(line) for line in lines[1:-1]}) == 1


async def test_usage_json_with_key_and_since(
    cli: Cli, usage: tuple[str, KeyFixture, KeyFixture]
) -> None:
    tenant, first, _ = usage
    code, out, _ = await cli(
        "usage", "--tenant", tenant, "--key", first.prefix, "--since", "2026-11-25", "--json"
    )

    assert code == 0
    report = orjson.loads(out)
    assert report["tenant"] == tenant
    assert report["key_prefix"] == first.prefix
    assert report["since"] == "2026-11-25"
    assert [(r["day"], r["model"], r["total_tokens"]) for r in report["rows"]] == [
        ("2026-11-25", "", 0),
        ("2026-11-25", "llama3.1:8b", 1080),
    ]
    assert {r["key_id"] for r in report["rows"]} == {str(first.key_id)}
    assert report["totals"] == {
        "requests": 6,
        "prompt_tokens": 80,
        "completion_tokens": 1000,
        "total_tokens": 1080,
    }


async def test_usage_without_rows_says_so(cli: Cli, session: AsyncSession) -> None:
    tenant = await make_tenant(session)
    code, out, _ = await cli("usage", "--tenant", tenant.name, "--since", "2026-01-01")
    assert code == 0
    assert out.strip() == f"no usage for tenant {tenant.name}, since 2026-01-01"

    code, out, _ = await cli("usage", "--tenant", tenant.name, "--json")
    assert orjson.loads(out)["rows"] == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--since", "26.11.2026"], "error: invalid --since '26.11.2026': use YYYY-MM-DD"),
        (["--since", "2026-02-30"], "error: invalid --since '2026-02-30': use YYYY-MM-DD"),
        (["--key", "nz_zzzzzzzz"], "error: unknown key 'nz_zzzzzzzz'"),
    ],
)
async def test_usage_refuses_bad_options(
    cli: Cli, usage: tuple[str, KeyFixture, KeyFixture], argv: list[str], message: str
) -> None:
    code, out, err = await cli("usage", "--tenant", usage[0], *argv)
    assert (code, out, err.strip()) == (1, "", message)


async def test_usage_refuses_a_key_of_another_tenant(
    cli: Cli, usage: tuple[str, KeyFixture, KeyFixture], session: AsyncSession
) -> None:
    other = await make_tenant(session)
    code, _, err = await cli("usage", "--tenant", other.name, "--key", usage[1].prefix)
    assert code == 1
    assert err.strip() == (
        f"error: key {usage[1].prefix!r} does not belong to tenant {other.name!r}"
    )


async def test_usage_of_an_unknown_tenant(cli: Cli) -> None:
    name = f"t-{uuid.uuid4().hex[:10]}"
    code, _, err = await cli("usage", "--tenant", name)
    assert (code, err.strip()) == (1, f"error: unknown tenant {name!r}")
