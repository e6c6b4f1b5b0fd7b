"""ATNA: the one audit hook every actor and transport calls, its durable emission, and the Audit Record Repository.

- :mod:`.hook`: ``AuditRecord`` and ``runtime.audit.emit(record)`` (sinks are pluggy plugins).
- :mod:`.dicom`: AuditRecord -> DICOM AuditMessage, reading received messages back, the DICOM rules in code.
- :mod:`.emission`: the outbox sink and its delivery (local repository exactly once, remote syslog collectors).
- :mod:`.tables`, :mod:`.repository`, :mod:`.receiver`: the repository (ITI-20 receiving side): store, search,
  patient history, hash-chain verification; the syslog receivers' batching callbacks.
- :mod:`.fhir`, :mod:`.cli`: AuditEvent (ITI-81 style) mapping and search parameters; ``ihe-engine audit``.
"""

from .hook import DESTINATION_ROLE, SECURITY_ALERT, SOURCE_ROLE, AuditHook, AuditRecord, Participant, ParticipantObject

__all__ = ["AuditHook", "AuditRecord", "Participant", "ParticipantObject", "SECURITY_ALERT", "SOURCE_ROLE", "DESTINATION_ROLE"]
