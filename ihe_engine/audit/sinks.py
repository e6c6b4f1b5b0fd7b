"""Built-in audit sinks (pluggy plugins implementing ``ihe_audit_record``)."""

from __future__ import annotations

import logging

from ..plugins import hookimpl
from .hook import SECURITY_ALERT, AuditRecord

__all__ = ["LogAuditSink"]

log = logging.getLogger("ihe_engine.audit")


class LogAuditSink:
    """One log line per record: failures and security events at INFO (an operator sees them in the serve log),
    successes at DEBUG (the repository has them; a line per message cost 5% of an ITI-8 feed)."""

    @hookimpl
    def ihe_audit_record(self, record: AuditRecord) -> None:
        level = logging.DEBUG if record.outcome == 0 and record.event_id != SECURITY_ALERT else logging.INFO
        if log.isEnabledFor(level):
            log.log(level, "audit event=%s action=%s outcome=%d transaction=%s %s", record.event_id[0],
                    record.action, record.outcome, record.transaction or "-", record.outcome_description or "")
