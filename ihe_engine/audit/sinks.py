"""Built-in audit sinks (pluggy plugins implementing ``ihe_audit_record``)."""

from __future__ import annotations

import logging

from ..plugins import hookimpl
from .hook import AuditRecord

__all__ = ["LogAuditSink"]

log = logging.getLogger("ihe_engine.audit")


class LogAuditSink:
    """Writes one log line per record, so every audited event is visible even before a repository is configured."""

    @hookimpl
    def ihe_audit_record(self, record: AuditRecord) -> None:
        log.info("audit event=%s action=%s outcome=%d transaction=%s %s", record.event_id[0], record.action,
                 record.outcome, record.transaction or "-", record.outcome_description or "")
