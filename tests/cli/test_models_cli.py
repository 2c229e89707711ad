"""`list-models`, `discover-models`, `register-model`, `unregister-model`."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from neuronetz_gateway.db.tables import Model
from tests.cli.conftest import Cli
from tests.support.tags_server import MODIFIED_AT, UNREACHABLE_URL, TagsServer


async def models_in_db(engine: AsyncEngine) -> dict[str, dict[str, Any]]:
    async with engine.connect() as connection:
        rows = await connection.execute(sa.select(Model))
        return {row.name: dict(row._mapping) for row in rows}


async def test_discover_models_syncs_every_upstream_and_prints_counts(
    cli: Cli, cli_engine: AsyncEngine, tags_server: TagsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLLAMA_BASE_URL", tags_server.url)
    tags_server.serve("llama3:latest", "mistral:7b")

    first = await cli("discover-models")

    assert first.exit_code == 0, first.stderr
    assert first.stdout.splitlines()[0] == (
        "synced 1 of 1 upstream(s): 2 added, 0 reappeared, 0 updated, 0 vanished, 0 unchanged"
    )
    assert "added: llama3:latest, mistral:7b" in first.stdout
    rows = await models_in_db(cli_engine)
    assert {name: row["available"] for name, row in rows.items()} == {
        "llama3:latest": True,
        "mistral:7b": True,
    }
    assert rows["mistral:7b"]["modified_at"] == MODIFIED_AT

    tags_server.serve("llama3:latest")
    second = await cli("discover-models", "--json")

    assert second.exit_code == 0, second.stderr
    assert second.json() == {
        "added": [],
        "reappeared": [],
        "updated": [],
        "vanished": ["mistral:7b"],
        "withheld": [],
        "unchanged": 1,
        "failed_upstreams": [],
    }
    assert (await models_in_db(cli_engine))["mistral:7b"]["available"] is False


async def test_discover_models_with_an_unreachable_upstream_fails_and_keeps_the_catalog(
    cli: Cli, cli_engine: AsyncEngine, tags_server: TagsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLLAMA_BASE_URL", tags_server.url)
    tags_server.serve("llama3:latest")
    assert (await cli("discover-models")).exit_code == 0
    monkeypatch.setenv("OLLAMA_BASE_URL", UNREACHABLE_URL)

    result = await cli("discover-models")

    assert result.exit_code == 1
    assert result.stderr == (
        f"error: upstream unreachable: {UNREACHABLE_URL} (connection failed "
        "(ClientConnectorError)); its models were left unchanged\n"
    )
    assert (await models_in_db(cli_engine))["llama3:latest"]["available"] is True


async def test_list_models_shows_available_models_and_all_with_flag(
    cli: Cli, cli_engine: AsyncEngine
) -> None:
    assert (await cli("list-models")).stdout == "the catalog is empty\n"
    assert (await cli("register-model", "--model", "llama3")).exit_code == 0
    assert (await cli("register-model", "--model", "qwen:1b")).exit_code == 0
    assert (await cli("unregister-model", "--model", "qwen:1b")).exit_code == 0

    available = await cli("list-models", "--json")
    everything = await cli("list-models", "--all", "--json")
    text = await cli("list-models", "--all")

    assert [m["name"] for m in available.json()] == ["llama3:latest"]
    assert [(m["name"], m["available"]) for m in everything.json()] == [
        ("llama3:latest", True),
        ("qwen:1b", False),
    ]
    assert text.stdout.splitlines()[1].startswith("unavailable  qwen:1b")


async def test_register_and_unregister_model(cli: Cli, cli_engine: AsyncEngine) -> None:
    registered = await cli("register-model", "--model", "llama3", "--json")
    again = await cli("register-model", "--model", "llama3:latest")
    unregistered = await cli("unregister-model", "--model", "llama3")

    assert registered.exit_code == 0
    assert registered.json()["name"] == "llama3:latest"
    assert registered.json()["changed"] is True
    assert registered.stderr == ""  # discovery is disabled: no warning
    assert again.stdout == "model llama3:latest is already available\n"
    assert unregistered.stdout == "model llama3:latest is now unavailable\n"
    assert (await models_in_db(cli_engine))["llama3:latest"]["available"] is False

    back = await cli("register-model", "--model", "llama3")
    assert back.stdout == "registered model llama3:latest\n"
    assert (await models_in_db(cli_engine))["llama3:latest"]["available"] is True


async def test_register_model_warns_when_discovery_would_undo_it(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODEL_DISCOVERY_ENABLED", "true")

    result = await cli("register-model", "--model", "llama3")

    assert result.exit_code == 0
    assert result.stderr.startswith("warning: MODEL_DISCOVERY_ENABLED is on: ")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["register-model", "--model", "bad name"], "error: invalid model name 'bad name'"),
        (["register-model", "--model", "x:1", "--upstream", "http://elsewhere:11434"], None),
        (["unregister-model", "--model", "never-seen"], "error: unknown model 'never-seen'"),
    ],
)
async def test_model_commands_refuse_bad_input_in_one_line(
    cli: Cli, cli_engine: AsyncEngine, args: list[str], message: str | None
) -> None:
    result = await cli(*args)

    assert result.exit_code == 1
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith(message or "error: unknown upstream http://elsewhere:11434")
    assert await models_in_db(cli_engine) == {}


async def test_a_cloud_model_needs_register_model_cloud(cli: Cli, cli_engine: AsyncEngine) -> None:
    refused = await cli("register-model", "--model", "gpt-oss:120b-cloud")
    approved = await cli("register-model", "--model", "gpt-oss:120b-cloud", "--cloud", "--json")
    wrong = await cli("register-model", "--model", "llama3:8b", "--cloud")
    unregistered = await cli("unregister-model", "--model", "gpt-oss:120b-cloud", "--json")

    assert refused.exit_code == 1
    assert "is a cloud model" in refused.stderr
    assert "--cloud" in refused.stderr
    assert approved.exit_code == 0
    assert approved.json()["cloud"] is True
    assert approved.json()["cloud_approved"] is True
    assert wrong.exit_code == 1
    assert "is not a cloud model" in wrong.stderr
    assert unregistered.json()["cloud_approved"] is False
    assert (await models_in_db(cli_engine))["gpt-oss:120b-cloud"]["available"] is False
