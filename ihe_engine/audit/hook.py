"""The one audit hook.

Every transaction an actor handles or initiates, and every security event a transport sees, is reported by one
call: ``audit.emit(AuditRecord(...))``. The record is a plain description (event, action, outcome, participants,
objects); turning it into a DICOM AuditMessage, queueing it durably and shipping it over syslog are the sinks'
business, registered as pluggy plugins implementing ``ihe_audit_record``.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Sequence

import pluggy

from ..plugins import create_plugin_manager

__all__ = ["AuditRecord", "Participant", "ParticipantObject", "AuditHook", "SECURITY_ALERT", "SOURCE_ROLE",
           "DESTINATION_ROLE", "Code", "as_rolled_back", "ROLLED_BACK_OUTCOME"]

log = logging.getLogger("ihe_engine.audit")

Code = tuple[str, str, str]
"""A coded value: (code, codeSystemName, displayName)."""

SECURITY_ALERT: Code = ("110113", "DCM", "Security Alert")
SOURCE_ROLE: Code = ("110153", "DCM", "Source")
DESTINATION_ROLE: Code = ("110152", "DCM", "Destination")


@dataclass(frozen=True, kw_only=True)
class Participant:
    user_id: str
    is_requestor: bool
    role: Code | None = None
    alternative_user_id: str | None = None
    user_name: str | None = None
    network_access_point: str | None = None


@dataclass(frozen=True, kw_only=True)
class ParticipantObject:
    object_id: str
    type_code: int
    type_code_role: int
    id_type: Code
    name: str | None = None
    query: bytes | None = None
    details: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True, kw_only=True)
class AuditRecord:
    event_id: Code
    action: str
    outcome: int = 0
    event_types: tuple[Code, ...] = ()
    outcome_description: str | None = None
    participants: tuple[Participant, ...] = ()
    objects: tuple[ParticipantObject, ...] = ()
    transaction: str | None = None
    when: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    purposes_of_use: tuple[Code, ...] = ()

    def __post_init__(self) -> None:
        if self.action not in ("C", "R", "U", "D", "E"):
            raise ValueError(f"EventActionCode must be C, R, U, D or E, not {self.action!r}")
        if self.outcome not in (0, 4, 8, 12):
            raise ValueError(f"EventOutcomeIndicator must be 0, 4, 8 or 12, not {self.outcome!r}")


ROLLED_BACK_OUTCOME = 8


def as_rolled_back(record: AuditRecord) -> AuditRecord:
    """A record of work that was rolled back: a success becomes a serious failure saying so; a failure stays."""
    if record.outcome != 0:
        return record
    return dataclasses.replace(record, outcome=ROLLED_BACK_OUTCOME,
                               outcome_description="the change was rolled back, not committed")


class AuditHook:
    """Hands each record to every registered sink; a failing sink is logged, never raised to the caller."""

    def __init__(self, plugin_manager: pluggy.PluginManager | None = None) -> None:
        self._pm = plugin_manager or create_plugin_manager()

    @property
    def plugin_manager(self) -> pluggy.PluginManager:
        """Where sinks are registered (``register(sink, name=...)``) and found (``get_plugin(name)``)."""
        return self._pm

    def emit(self, record: AuditRecord) -> None:
        try:
            self._pm.hook.ihe_audit_record(record=record)
        except Exception:  # an audit sink must never break the transaction it observes
            log.exception("audit sink failed for event %s", record.event_id[0])

    def emit_with(self, session: Any, records: Sequence[AuditRecord]) -> None:
        """Records of the work done in ``session``, reported with its outcome.

        A sink that can (the outbox) queues them inside that transaction, so they are durable exactly when the
        work commits and no crash can lose them; every sink hears of them after the commit. If the work is rolled
        back instead (its savepoint or the whole transaction), they are emitted as rolled back: a success that
        did not happen is reported as the failure it became.
        """
        from ..storage.effects import after_commit
        from ..storage.uow import is_readonly

        records = list(records)
        if is_readonly(session):  # a query changes nothing: its record holds whatever becomes of the session
            for record in records:
                self.emit(record)
            return
        taken = bool(self._pm.hook.ihe_audit_records_in_transaction(session=session, records=records))

        def committed() -> None:
            for record in records:
                self.emit(record)

        def rolled_back() -> None:
            if taken:
                self._pm.hook.ihe_audit_records_dropped(records=records)
            for record in records:
                self.emit(as_rolled_back(record))

        after_commit(session, committed, rolled_back)

    def security_alert(self, *, description: str, peer: str, node: str, outcome: int = 4) -> None:
        """Report a node-authentication failure (ITI-19) as a Security Alert."""
        self.emit(AuditRecord(
            event_id=SECURITY_ALERT, action="E", outcome=outcome,
            event_types=(("110126", "DCM", "Node Authentication"),),
            outcome_description=description,
            participants=(
                Participant(user_id=peer, is_requestor=True, network_access_point=peer.rsplit(":", 1)[0]),
                Participant(user_id=node, is_requestor=False),
            ),
        ))
