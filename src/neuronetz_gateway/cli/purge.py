"""`purge`: delete expired prompt logs and audit rows past retention, once."""

from __future__ import annotations

from neuronetz_gateway.audit.retention import RetentionResult, run_retention
from neuronetz_gateway.cli.app import JsonFlag, app, emit, run
from neuronetz_gateway.config import Settings
from neuronetz_gateway.db.engine import create_engine


@app.command("purge")
def purge_command(as_json: JsonFlag = False) -> None:
    """Delete expired prompt logs and audit rows older than AUDIT_RETENTION_DAYS."""

    async def work(config: Settings) -> tuple[RetentionResult, int]:
        engine = create_engine(config.effective_database_url)
        try:
            return await run_retention(engine, config), config.audit_retention_days
        finally:
            await engine.dispose()

    result, retention_days = run(work)
    emit(
        as_json,
        {**result.as_dict(), "audit_retention_days": retention_days},
        f"purged {result.prompt_logs} expired prompt logs, {result.audit_rows} audit rows "
        f"older than {retention_days} days, {result.audit_batches} audit batch markers",
    )
