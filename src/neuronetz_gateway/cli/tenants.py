"""`create-tenant`, `suspend-tenant`, `resume-tenant`."""

from __future__ import annotations

from typing import Annotated

import typer

from neuronetz_gateway.admin import tenants
from neuronetz_gateway.cli.app import JsonFlag, app, database, emit, run
from neuronetz_gateway.config import Settings
from neuronetz_gateway.db.tables import Tenant, TenantStatus

TenantName = Annotated[str, typer.Option("--tenant", "--name", help="Tenant name (slug).")]


def tenant_json(tenant: Tenant) -> dict[str, object]:
    return {
        "id": str(tenant.id),
        "name": tenant.name,
        "status": tenant.status.value,
        "created_at": tenant.created_at.isoformat(),
    }


@app.command("create-tenant")
def create_tenant(name: TenantName, as_json: JsonFlag = False) -> None:
    """Create a tenant."""

    async def work(config: Settings) -> Tenant:
        async with database(config) as session:
            return await tenants.create_tenant(session, name)

    tenant = run(work)
    emit(as_json, tenant_json(tenant), f"created tenant {tenant.name} ({tenant.id})")


def _set_status(name: str, status: TenantStatus, as_json: bool) -> None:
    async def work(config: Settings) -> Tenant:
        async with database(config) as session:
            return await tenants.set_tenant_status(session, name, status)

    tenant = run(work)
    emit(as_json, tenant_json(tenant), f"tenant {tenant.name} is {tenant.status.value}")


@app.command("suspend-tenant")
def suspend_tenant(name: TenantName, as_json: JsonFlag = False) -> None:
    """Suspend a tenant: its keys get 403 until it is resumed."""
    _set_status(name, TenantStatus.SUSPENDED, as_json)


@app.command("resume-tenant")
def resume_tenant(name: TenantName, as_json: JsonFlag = False) -> None:
    """Resume a suspended tenant."""
    _set_status(name, TenantStatus.ACTIVE, as_json)
