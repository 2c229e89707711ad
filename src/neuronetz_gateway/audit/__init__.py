"""Audit and prompt logging (docs/REFERENCE.md §4.10): the batched writer and data lifecycle."""

from neuronetz_gateway.audit.records import AuditRecord, PromptLogRecord, prompt_log_expires_at
from neuronetz_gateway.audit.retention import (
    RetentionResult,
    RetentionTask,
    purge_expired_prompt_logs,
    purge_old_audit_rows,
    run_retention,
)
from neuronetz_gateway.audit.writer import AuditWriter

__all__ = [
    "AuditRecord",
    "AuditWriter",
    "PromptLogRecord",
    "RetentionResult",
    "RetentionTask",
    "prompt_log_expires_at",
    "purge_expired_prompt_logs",
    "purge_old_audit_rows",
    "run_retention",
]
