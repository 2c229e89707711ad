"""Audit and prompt logging (SPEC §4.10): the batched writer and data lifecycle."""

from neuronetz_gateway.audit.records import AuditRecord, PromptLogRecord, prompt_log_expires_at
from neuronetz_gateway.audit.writer import AuditWriter

__all__ = ["AuditRecord", "AuditWriter", "PromptLogRecord", "prompt_log_expires_at"]
