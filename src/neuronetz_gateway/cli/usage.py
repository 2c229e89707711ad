"""`usage`: a tenant's token usage per day, key and model, with totals."""

from __future__ import annotations

from typing import Annotated

import typer

from neuronetz_gateway.admin import usage
from neuronetz_gateway.cli.app import JsonFlag, app, database, emit, run
from neuronetz_gateway.config import Settings

_COLUMNS = ("day", "key", "model", "requests", "prompt", "completion", "total")
_NUMERIC = frozenset({"requests", "prompt", "completion", "total"})


def _row_json(row: usage.UsageRow) -> dict[str, object]:
    return {
        "day": row.day.isoformat(),
        "key_id": str(row.key_id),
        "key_prefix": row.key_prefix,
        "model": row.model,
        "requests": row.requests,
        "prompt_tokens": row.prompt_tokens,
        "completion_tokens": row.completion_tokens,
        "total_tokens": row.total_tokens,
    }


def report_json(report: usage.UsageReport) -> dict[str, object]:
    totals = report.totals
    return {
        "tenant": report.tenant.name,
        "tenant_id": str(report.tenant.id),
        "key_prefix": report.key_prefix,
        "since": report.since.isoformat() if report.since else None,
        "rows": [_row_json(row) for row in report.rows],
        "totals": {
            "requests": totals.requests,
            "prompt_tokens": totals.prompt_tokens,
            "completion_tokens": totals.completion_tokens,
            "total_tokens": totals.total_tokens,
        },
    }


def report_text(report: usage.UsageReport) -> str:
    """An aligned table, one line per row, and a totals line."""
    scope = f"tenant {report.tenant.name}"
    if report.key_prefix:
        scope += f", key {report.key_prefix}"
    if report.since:
        scope += f", since {report.since.isoformat()}"
    if not report.rows:
        return f"no usage for {scope}"
    totals = report.totals
    cells = [list(_COLUMNS)]
    cells += [
        [
            row.day.isoformat(),
            row.key_prefix or str(row.key_id),
            row.model or "-",
            str(row.requests),
            str(row.prompt_tokens),
            str(row.completion_tokens),
            str(row.total_tokens),
        ]
        for row in report.rows
    ]
    cells.append(
        [
            "total",
            "",
            "",
            str(totals.requests),
            str(totals.prompt_tokens),
            str(totals.completion_tokens),
            str(totals.total_tokens),
        ]
    )
    widths = [max(len(line[i]) for line in cells) for i in range(len(_COLUMNS))]

    def render(line: list[str]) -> str:
        parts = [
            value.rjust(width) if name in _NUMERIC else value.ljust(width)
            for name, value, width in zip(_COLUMNS, line, widths, strict=True)
        ]
        return "  ".join(parts).rstrip()

    return "\n".join([f"usage of {scope}", *(render(line) for line in cells)])


@app.command("usage")
def usage_command(
    tenant: Annotated[str, typer.Option("--tenant", help="Tenant name.")],
    key: Annotated[
        str | None, typer.Option("--key", help="Only this key (prefix nz_xxxxxxxx).")
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="First day to include, YYYY-MM-DD (UTC).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Token usage per day, key and model (from the usage_daily rollup), with totals."""
    first_day = usage.parse_day(since, "--since") if since is not None else None

    async def work(config: Settings) -> usage.UsageReport:
        async with database(config) as session:
            return await usage.usage_report(session, tenant, key_prefix=key, since=first_day)

    report = run(work)
    emit(as_json, report_json(report), report_text(report))
