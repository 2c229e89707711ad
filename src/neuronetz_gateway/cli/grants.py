"""`grant-model`, `revoke-model`, `list-grants`."""

from __future__ import annotations

from typing import Annotated

import typer

from neuronetz_gateway.admin import grants
from neuronetz_gateway.cli.app import JsonFlag, app, database, emit, run
from neuronetz_gateway.config import Settings

TenantOption = Annotated[str, typer.Option("--tenant", help="Tenant name.")]
KeyOption = Annotated[
    str | None,
    typer.Option("--key", help="Key prefix nz_xxxxxxxx: a key-level grant (default: tenant-wide)."),
]
ModelOption = Annotated[str, typer.Option("--model", help="Model name, e.g. llama3.1:8b.")]


def _change_json(change: grants.GrantChange) -> dict[str, object]:
    return {
        "tenant": change.tenant.name,
        "key": change.key.prefix if change.key is not None else None,
        "model": change.model,
        "changed": change.changed,
        "warnings": list(change.warnings),
    }


def _scope_text(change: grants.GrantChange) -> str:
    if change.key is None:
        return f"tenant {change.tenant.name}"
    return f"key {change.key.prefix} of tenant {change.tenant.name}"


def _warn(change: grants.GrantChange) -> None:
    for warning in change.warnings:
        typer.echo(f"warning: {warning}", err=True)


@app.command("grant-model")
def grant_model(
    tenant: TenantOption,
    model: ModelOption,
    key: KeyOption = None,
    force: Annotated[
        bool, typer.Option("--force", help="Grant a model that is not in the catalog (yet).")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Allow a tenant (or one of its keys) to use a model."""

    async def work(config: Settings) -> grants.GrantChange:
        async with database(config) as session:
            return await grants.grant_model(
                session, tenant_name=tenant, model=model, key_prefix=key, force=force
            )

    change = run(work)
    _warn(change)
    scope = _scope_text(change)
    text = (
        f"granted model {change.model} to {scope}"
        if change.changed
        else f"{scope} already has a grant for model {change.model}"
    )
    emit(as_json, _change_json(change), text)


@app.command("revoke-model")
def revoke_model(
    tenant: TenantOption, model: ModelOption, key: KeyOption = None, as_json: JsonFlag = False
) -> None:
    """Remove a tenant-wide (or key-level) grant of a model."""

    async def work(config: Settings) -> grants.GrantChange:
        async with database(config) as session:
            return await grants.revoke_model(
                session, tenant_name=tenant, model=model, key_prefix=key
            )

    change = run(work)
    _warn(change)
    scope = _scope_text(change)
    text = (
        f"revoked model {change.model} from {scope}"
        if change.changed
        else f"{scope} had no grant for model {change.model}"
    )
    emit(as_json, _change_json(change), text)


@app.command("list-grants")
def list_grants(tenant: TenantOption, as_json: JsonFlag = False) -> None:
    """List a tenant's model grants, tenant-wide and per key."""

    async def work(config: Settings) -> list[grants.GrantEntry]:
        async with database(config) as session:
            return await grants.list_grants(session, tenant)

    entries = run(work)
    data = [{"model": e.model, "key": e.key_prefix} for e in entries]
    lines = [f"{e.key_prefix or 'tenant-wide':<12} {e.model}" for e in entries]
    emit(as_json, data, "\n".join(lines) or f"tenant {tenant} has no model grants")
