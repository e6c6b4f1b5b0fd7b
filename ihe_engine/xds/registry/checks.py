"""Registry rules that ITI-42 (:mod:`.actor`) and ITI-57 / ITI-92 (:mod:`.update`) apply alike.

Both check a submission against the registry before writing it, so the patient identity policy, the merge-aware
"same patient" test, how a refusal is raised and the HasMember the registry makes itself are written once here.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from lxml import etree
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from ...identity.cx import CX, CXError
from ...identity.store import IdentityStore
from ...identity.tables import IdentifierStatus, Patient, PatientIdentifier, PatientStatus
from ...ns import RIM, qn
from .. import constants as c
from ..ebrim import new_uuid
from ..errors import RegistryError, XdsError
from ..model import Association

__all__ = ["raise_errors", "patient_problem", "usable_patient", "identifier_state", "judge_patient",
           "PatientMatcher", "registry_has_member", "dtm"]


def raise_errors(problems: Iterable[RegistryError]) -> None:
    """Refuse (XdsError, errors first, then warnings) when any problem is an error; warnings alone pass."""
    problems = list(problems)
    if any(problem.is_error for problem in problems):
        raise XdsError.from_errors([p for p in problems if p.is_error] + [p for p in problems if not p.is_error])


def usable_patient(patient_id: str, domain: str | None) -> tuple[CX | None, str | None]:
    """The parsed id, or why it cannot be accepted before any lookup (unusable, other affinity domain)."""
    try:
        cx = CX.from_xds(patient_id)
    except CXError as exc:
        return None, f"is not a usable XDS patient id ({exc})"
    if domain is not None and cx.universal_id != domain:
        return None, f"is not from the affinity domain's assigning authority {domain}"
    return cx, None


_IDENTIFIER_STATE = (
    select(PatientIdentifier.status.label("identifier_status"), Patient.status.label("patient_status"))
    .join(Patient, Patient.id == PatientIdentifier.patient_id)
    .where(PatientIdentifier.authority_key == bindparam("authority"), PatientIdentifier.value == bindparam("value")))
"""The identity feed's word on one identifier, built once (the identity tables, read with our own SQL: one
indexed lookup on the (authority_key, value) unique key)."""


def identifier_state(session: Session, cx: CX) -> tuple[str, str] | None:
    """(identifier status, patient status) of ``cx``, or None when the feed never registered it."""
    row = session.execute(_IDENTIFIER_STATE, {"authority": cx.authority_key, "value": cx.id}).first()
    return (row.identifier_status, row.patient_status) if row is not None else None


def judge_patient(state: tuple[str, str] | None, domain: str | None, *, subsumed_advice: str = "") -> str | None:
    """Why an identifier in ``state`` (see :func:`identifier_state`) is refused, or None.

    Known, active and not subsumed is accepted, in the affinity domain's authority or -- with none configured --
    its own: a registry never accepts a patient nobody fed. ``subsumed_advice`` ends the message of a merged-away
    id (ITI-42 tells to use the surviving id).
    """
    if state is None:
        return "is unknown: the patient identity feed has not registered it"
    identifier_status, patient_status = state
    if identifier_status == IdentifierStatus.MERGED or patient_status == PatientStatus.MERGED:
        return "was merged into another patient (subsumed)" + subsumed_advice
    if identifier_status == IdentifierStatus.INACTIVE:
        return "is no longer active in the patient identity source"
    if identifier_status == IdentifierStatus.ACTIVE and patient_status == PatientStatus.ACTIVE:
        return None
    return None if domain is None else "is not a known, active identifier of the affinity domain"


def patient_problem(session: Session, patient_id: str, domain: str | None, *,
                    subsumed_advice: str = "") -> str | None:
    """Why ``patient_id`` is not acceptable (unusable, other domain, unknown, merged away, inactive), or None."""
    cx, problem = usable_patient(patient_id, domain)
    if cx is None:
        return problem
    return judge_patient(identifier_state(session, cx), domain, subsumed_advice=subsumed_advice)


class PatientMatcher:
    """Tells whether two registry patient keys are one patient, merge-aware; caches each key's survivor."""

    def __init__(self, identities: IdentityStore) -> None:
        self.identities = identities
        self._survivors: dict[str, int | None] = {}

    def same_patient(self, key_a: str, key_b: str) -> bool:
        """Equal ids, or ids the identity store resolves to the same surviving patient."""
        if key_a == key_b:
            return True
        survivor_a, survivor_b = self._survivor(key_a), self._survivor(key_b)
        return survivor_a is not None and survivor_a == survivor_b

    def _survivor(self, key: str) -> int | None:
        if key not in self._survivors:
            try:
                resolved = self.identities.resolve(CX.from_xds(key))
            except CXError:
                resolved = None
            self._survivors[key] = resolved.patient_id if resolved is not None else None
        return self._survivors[key]


def registry_has_member(source: str, target: str) -> Association:
    """A HasMember association the registry makes itself (folder membership carried to a new document)."""
    uuid = new_uuid()
    element = etree.Element(qn(RIM, "Association"), nsmap={"rim": RIM}, id=uuid, associationType=c.HAS_MEMBER,
                            sourceObject=source, targetObject=target, objectType=c.OBJECT_TYPE_ASSOCIATION)
    return Association(entry_uuid=uuid, association_type=c.HAS_MEMBER, source=source, target=target,
                       object_type=c.OBJECT_TYPE_ASSOCIATION, element=element)


def dtm(now: datetime) -> str:
    """``now`` as an XDS DTM to the second (lastUpdateTime)."""
    return now.strftime("%Y%m%d%H%M%S")
