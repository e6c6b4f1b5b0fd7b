"""Registry rules that ITI-42 (:mod:`.actor`) and ITI-57 / ITI-92 (:mod:`.update`) apply alike.

Both check a submission against the registry before writing it, so the patient identity policy, the merge-aware
"same patient" test, how a refusal is raised and the HasMember the registry makes itself are written once here.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from lxml import etree

from ...identity.cx import CX, CXError
from ...identity.store import IdentifierState, IdentityStore
from ...ns import RIM, qn
from .. import constants as c
from ..ebrim import new_uuid
from ..errors import RegistryError, XdsError
from ..model import Association

__all__ = ["raise_errors", "patient_problem", "PatientMatcher", "registry_has_member", "dtm"]


def raise_errors(problems: Iterable[RegistryError]) -> None:
    """Refuse (XdsError, errors first, then warnings) when any problem is an error; warnings alone pass."""
    problems = list(problems)
    if any(problem.is_error for problem in problems):
        raise XdsError.from_errors([p for p in problems if p.is_error] + [p for p in problems if not p.is_error])


def patient_problem(identities: IdentityStore, patient_id: str, domain: str | None, *,
                    subsumed_advice: str = "") -> str | None:
    """Why ``patient_id`` is not acceptable (unusable, other domain, unknown, merged away, inactive), or None.

    With an affinity domain the id must be known, active and not subsumed in that assigning authority; with none
    it must still be known to the identity store: a registry never accepts a patient nobody fed.
    ``subsumed_advice`` ends the message of a merged-away id (ITI-42 tells to use the surviving id).
    """
    try:
        cx = CX.from_xds(patient_id)
    except CXError as exc:
        return f"is not a usable XDS patient id ({exc})"
    if domain is not None and cx.universal_id != domain:
        return f"is not from the affinity domain's assigning authority {domain}"
    if domain is not None and identities.is_known_in_domain(cx, domain):
        return None
    resolved = identities.resolve(cx)
    if resolved is None:
        return "is unknown: the patient identity feed has not registered it"
    if resolved.state is IdentifierState.SUBSUMED:
        return "was merged into another patient (subsumed)" + subsumed_advice
    if not resolved.is_active:
        return "is no longer active in the patient identity source"
    return None if domain is None else "is not a known, active identifier of the affinity domain"


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
