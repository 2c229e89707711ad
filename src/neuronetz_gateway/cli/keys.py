"""`create-key`, `list-keys`, `revoke-key`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer

from neuronetz_gateway.admin import keys
from neuronetz_gateway.auth.keys import key_hasher
from neuronetz_gateway.cli.app import JsonFlag, app, database, emit, parse_duration, run
from neuronetz_gateway.config import Settings
from neuronetz_gateway.db.tables import ApiKey

TenantOption = Annotated[str, typer.Option("--tenant", help="Tenant name.")]
PrefixOption = Annotated[str, typer.Option("--prefix", help="Key prefix, nz_xxxxxxxx.")]


def key_json(key: ApiKey) -> dict[str, object]:
    def iso(value: datetime | None) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "id": str(key.id),
        "tenant_id": str(key.tenant_id),
        "name": key.name,
        "prefix": key.prefix,
        "status": key.status.value,
        "created_at": iso(key.created_at),
        "expires_at": iso(key.expires_at),
        "revoked_at": iso(key.revoked_at),
        "last_used_at": iso(key.last_used_at),
        "prompt_logging": key.prompt_logging,
        "prompt_log_ttl_hours": key.prompt_log_ttl_hours,
    }


@app.command("create-key")
def create_key(
    tenant: TenantOption,
    name: Annotated[str, typer.Option("--name", help="Key name, unique among active keys.")],
    expires_in: Annotated[
        str | None, typer.Option("--expires-in", help="Lifetime, e.g. 90d, 12h.")
    ] = None,
    prompt_logging: Annotated[
        bool, typer.Option("--prompt-logging", help="Log prompts and responses of this key.")
    ] = False,
    prompt_log_ttl: Annotated[
        str | None, typer.Option("--prompt-log-ttl", help="How long prompt logs live, e.g. 24h.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Create a key and print it. It is shown exactly once; only its hash is stored."""
    lifetime = parse_duration(expires_in, "--expires-in") if expires_in else None
    ttl = parse_duration(prompt_log_ttl, "--prompt-log-ttl") if prompt_log_ttl else None
    ttl_hours = max(1, round(ttl.total_seconds() / 3600)) if ttl else None

    async def work(config: Settings) -> keys.CreatedKey:
        hasher = key_hasher(config)
        async with database(config) as session:
            return await keys.create_key(
                session,
                hasher,
                tenant_name=tenant,
                name=name,
                expires_in=lifetime,
                prompt_logging=prompt_logging,
                prompt_log_ttl_hours=ttl_hours,
            )

    created = run(work)
    data = {**key_json(created.key), "tenant": created.tenant.name, "key": created.secret}
    text = (
        f"{created.secret}\n"
        f"created key {created.key.prefix} ({created.key.name}) for tenant {created.tenant.name}"
        "; store it now, it cannot be shown again"
    )
    emit(as_json, data, text)


@app.command("list-keys")
def list_keys(tenant: TenantOption, as_json: JsonFlag = False) -> None:
    """List a tenant's keys (prefixes, never secrets)."""

    async def work(config: Settings) -> list[ApiKey]:
        async with database(config) as session:
            return await keys.list_keys(session, tenant)

    rows = run(work)
    lines = [
        f"{k.prefix}  {k.status.value:<8} {k.name}"
        + (f"  expires {k.expires_at:%Y-%m-%d %H:%M}" if k.expires_at else "")
        for k in rows
    ]
    emit(as_json, [key_json(k) for k in rows], "\n".join(lines) or f"tenant {tenant} has no keys")


@app.command("revoke-key")
def revoke_key(prefix: PrefixOption, as_json: JsonFlag = False) -> None:
    """Revoke a key; every gateway refuses it within a second."""

    async def work(config: Settings) -> tuple[ApiKey, bool]:
        async with database(config) as session:
            return await keys.revoke_key(session, prefix)

    key, changed = run(work)
    text = f"revoked key {key.prefix}" if changed else f"key {key.prefix} was already revoked"
    emit(as_json, {**key_json(key), "changed": changed}, text)
