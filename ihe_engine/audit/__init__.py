"""ATNA: the one audit hook every actor and transport calls, and (later) the Audit Record Repository."""

from .hook import AuditHook, AuditRecord, Participant, ParticipantObject, SECURITY_ALERT

__all__ = ["AuditHook", "AuditRecord", "Participant", "ParticipantObject", "SECURITY_ALERT"]
