"""`set-limits`: a tenant's or key's rate limits, budgets and model toggle, and whether a
tenant's usage is exported as metrics."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Annotated, Any

import typer

from neuronetz_gateway.admin import limits
from neuronetz_gateway.admin.errors import AdminError
from neuronetz_gateway.auth.principal import LimitValues
from neuronetz_gateway.cli.app import JsonFlag, app, database, emit, run
from neuronetz_gateway.config import Settings
from neuronetz_gateway.db.tables import LIMIT_FIELDS


def _checked(field_name: str) -> Callable[[str | None], str | None]:
    """Validate while parsing, so a bad value is a usage error (exit 2)."""

    def callback(value: str | None) -> str | None:
        if value is not None:
            try:
                limits.parse_limit(value, field_name)
            except AdminError as error:
                raise typer.BadParameter(str(error)) from None
        return value

    return callback


def _limit_option(field_name: str, what: str) -> Any:  # typer.Option is typed as Any
    return typer.Option(
        f"--{field_name.replace('_', '-')}",
        help=f"{what}; 'none' clears it (tenant: unlimited, key: inherit).",
        callback=_checked(field_name),
        metavar="N|none",
    )


Rpm = Annotated[str | None, _limit_option("rpm", "Requests per minute")]
Tpm = Annotated[str | None, _limit_option("tpm", "Tokens per minute")]
MaxConcurrent = Annotated[str | None, _limit_option("max_concurrent", "In-flight requests")]
DailyTokens = Annotated[str | None, _limit_option("daily_tokens", "Token budget per UTC day")]
MonthlyTokens = Annotated[str | None, _limit_option("monthly_tokens", "Token budget per UTC month")]
TotalTokens = Annotated[str | None, _limit_option("total_tokens", "Token budget, all time")]


def _checked_weight(value: str | None) -> str | None:
    if value is not None:
        try:
            limits.parse_weight(value)
        except AdminError as error:
            raise typer.BadParameter(str(error)) from None
    return value


Weight = Annotated[
    str | None,
    typer.Option(
        "--weight",
        help="Tenant only: its share of Ollama's slots while tenants wait for them"
        " (1-100, default 1; docs/SCHEDULING.md).",
        callback=_checked_weight,
        metavar="N",
    ),
]


class Switch(StrEnum):
    ON = "on"
    OFF = "off"


def _values_text(values: LimitValues, unset: str) -> str:
    def show(value: int | None) -> str:
        return unset if value is None else str(value)

    return " ".join(f"{name}={show(getattr(values, name))}" for name in LIMIT_FIELDS)


def _values_json(values: LimitValues) -> dict[str, int | None]:
    return {name: getattr(values, name) for name in LIMIT_FIELDS}


def _tenant_json(view: limits.TenantLimitsView) -> dict[str, object]:
    return {
        "id": str(view.tenant_id),
        "name": view.tenant_name,
        "limits": _values_json(view.limits),
        "allow_all_models": view.allow_all_models,
        "metrics": view.metrics,
        "weight": view.weight,
    }


def _tenant_text(view: limits.TenantLimitsView) -> str:
    return (
        f"tenant {view.tenant_name}\n"
        f"  limits: {_values_text(view.limits, 'unlimited')}\n"
        f"  allow_all_models={str(view.allow_all_models).lower()}\n"
        f"  metrics={'on' if view.metrics else 'off'}\n"
        f"  weight={view.weight}"
    )


def _key_text(view: limits.KeyLimitsView) -> str:
    tenant = view.tenant
    allow = "inherit" if view.allow_all_models is None else str(view.allow_all_models).lower()
    return (
        f"key {view.key_prefix} (tenant {tenant.tenant_name})\n"
        f"  own:       {_values_text(view.own, 'inherit')}\n"
        f"  effective: {_values_text(view.effective, 'unlimited')}\n"
        f"  tenant:    {_values_text(tenant.limits, 'unlimited')}\n"
        f"  allow_all_models={allow} (tenant: {str(tenant.allow_all_models).lower()})"
    )


@app.command("set-limits")
def set_limits(
    tenant: Annotated[str | None, typer.Option("--tenant", help="Tenant name.")] = None,
    key: Annotated[str | None, typer.Option("--key", help="Key prefix nz_xxxxxxxx.")] = None,
    rpm: Rpm = None,
    tpm: Tpm = None,
    max_concurrent: MaxConcurrent = None,
    daily_tokens: DailyTokens = None,
    monthly_tokens: MonthlyTokens = None,
    total_tokens: TotalTokens = None,
    allow_all_models: Annotated[
        bool | None,
        typer.Option(
            "--allow-all-models/--no-allow-all-models",
            help="Every catalog model (key: within its tenant's).",
        ),
    ] = None,
    inherit_models: Annotated[
        bool,
        typer.Option("--inherit-models", help="Key only: allow_all_models back to inherit."),
    ] = False,
    metrics: Annotated[
        Switch | None,
        typer.Option(
            "--metrics",
            help="Tenant only: export its requests and tokens as metrics under its name"
            " (at most METRICS_MAX_TENANTS tenants).",
        ),
    ] = None,
    weight: Weight = None,
    as_json: JsonFlag = False,
) -> None:
    """Set limits of a tenant or key; options not given stay unchanged.

    Without any option it prints the current limits (for a key: own, effective, tenant).
    """
    if (tenant is None) == (key is None):
        raise typer.BadParameter("give exactly one of them", param_hint="'--tenant' / '--key'")
    if key is not None and metrics is not None:
        raise typer.BadParameter("applies to tenants only", param_hint="'--metrics'")
    if key is not None and weight is not None:
        raise typer.BadParameter("applies to tenants only", param_hint="'--weight'")
    given = {
        "rpm": rpm,
        "tpm": tpm,
        "max_concurrent": max_concurrent,
        "daily_tokens": daily_tokens,
        "monthly_tokens": monthly_tokens,
        "total_tokens": total_tokens,
    }
    update = limits.LimitUpdate(
        values={
            name: limits.parse_limit(value, name)
            for name, value in given.items()
            if value is not None
        },
        allow_all_models=allow_all_models,
        inherit_models=inherit_models,
        weight=limits.parse_weight(weight) if weight is not None else None,
    )

    if key is not None:

        async def for_key(config: Settings) -> limits.KeyLimitsView:
            async with database(config) as session:
                return await limits.set_key_limits(session, key, update)

        view = run(for_key)
        data = {
            "key": {
                "id": str(view.key_id),
                "prefix": view.key_prefix,
                "limits": _values_json(view.own),
                "effective_limits": _values_json(view.effective),
                "allow_all_models": view.allow_all_models,
            },
            "tenant": _tenant_json(view.tenant),
        }
        emit(as_json, data, _key_text(view))
        return

    tenant_name = tenant or ""

    async def for_tenant(config: Settings) -> limits.TenantLimitsView:
        async with database(config) as session:
            if metrics is not None:  # first: a refusal leaves the limits unchanged too
                await limits.set_tenant_metrics(
                    session,
                    tenant_name,
                    metrics is Switch.ON,
                    max_tenants=config.metrics_max_tenants,
                )
            return await limits.set_tenant_limits(session, tenant_name, update)

    tenant_view = run(for_tenant)
    emit(as_json, {"tenant": _tenant_json(tenant_view)}, _tenant_text(tenant_view))
