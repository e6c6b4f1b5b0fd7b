"""Access control from the XUA assertion: which documents a user may find (ITI-18) and retrieve (ITI-43).

The policy is pluggable: anything implementing :class:`AccessPolicy` (``[xua] policy = "package.module:Class"``,
built with the ``[xua.policy_options]`` table as keyword arguments). :class:`DefaultPolicy` decides on the documents'
confidentiality codes (FRANCE.md section 5: N/R/V of 2.16.840.1.113883.5.25 and the French MASQUE_PS,
INVISIBLE_PATIENT, INVISIBLE_REPRESENTANTS_LEGAUX of 1.2.250.1.213.1.1.4.13), the user's kind (from the role),
and the emergency flag ("bris de glace", from the purpose of use):

==============================  ===========================================================================
code                            who sees it
==============================  ===========================================================================
N                               everyone
R                               care roles (professionals)
V                               care roles in emergency access only
MASQUE_PS                       the patient and legal representatives; professionals in emergency only
INVISIBLE_PATIENT               everyone but the patient
INVISIBLE_REPRESENTANTS_LEGAUX  everyone but legal representatives
any other code, or none         nobody (fail closed)
==============================  ===========================================================================

A document is shown only when every one of its codes allows it. A user is a patient or a legal representative
when one of their role codes is in ``patient_roles`` / ``representative_roles``, not a care role when in
``non_care_roles`` (default AUTOMATE), and a care role otherwise (with at least one role). A decision that only
emergency access allowed is marked ``emergency``; every request made in emergency access is audited (DICOM
Emergency Override) with the documents it reached that way.

The XDS operations call two functions (the contract): :func:`apply_policy_to_query_response` on an ITI-18
answer's objects and :func:`check_retrieve` on an ITI-43 request's document unique ids. Without a verified user
(XUA off or optional and absent) both allow everything and touch nothing.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Protocol, Sequence

from lxml import etree
from sqlalchemy import select
from sqlalchemy.orm import Session

from ..audit.hook import SECURITY_ALERT, AuditRecord, Participant, ParticipantObject
from ..errors import ConfigurationError
from ..ns import RIM, qn
from .assertion import UserAssertion

__all__ = [
    "Code", "Protected", "Decision", "AccessPolicy", "DefaultPolicy", "load_policy", "PolicyOutcome",
    "RetrieveCheck", "filter_query_objects", "decide_retrievals", "apply_policy_to_query_response",
    "check_retrieve", "confidentiality_by_uuid", "confidentiality_by_unique_id", "emergency_audit_record",
    "HL7_CONFIDENTIALITY", "FR_CONFIDENTIALITY", "EMERGENCY_OVERRIDE",
]

HL7_CONFIDENTIALITY = "2.16.840.1.113883.5.25"
FR_CONFIDENTIALITY = "1.2.250.1.213.1.1.4.13"
MASQUE_PS, INVISIBLE_PATIENT, INVISIBLE_REPRESENTANTS_LEGAUX = \
    "MASQUE_PS", "INVISIBLE_PATIENT", "INVISIBLE_REPRESENTANTS_LEGAUX"
EMERGENCY_OVERRIDE = ("110127", "DCM", "Emergency Override Started")
_CONFIDENTIALITY_SCHEME = "urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f"
_CODING_SCHEME = "codingScheme"

Code = tuple[str, str]
"""A confidentiality code: (code, code system OID)."""


@dataclass(frozen=True)
class Protected:
    """A document as the policy sees it: its id (entryUUID or uniqueId) and its confidentiality codes."""

    id: str
    codes: tuple[Code, ...]


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str
    emergency: bool = False
    """Allowed only because the user is in emergency access."""


class AccessPolicy(Protocol):
    """A pluggable access policy; both methods are pure (no I/O) and called in pool threads."""

    def filter_entries(self, user: UserAssertion, entries: Sequence[Protected]
                       ) -> tuple[list[Protected], dict[str, Decision]]:
        """(entries the user may see, refused entries by id with their decision), order kept."""

    def may_retrieve(self, user: UserAssertion, document: Protected) -> Decision:
        """Whether the user may retrieve the document."""


_PROFESSIONAL, _PATIENT, _REPRESENTATIVE, _OTHER = "professional", "patient", "legal representative", "other"


class DefaultPolicy:
    """The documented default (see the module docstring); role code sets are its configuration."""

    def __init__(self, *, patient_roles: Iterable[str] = (), representative_roles: Iterable[str] = (),
                 non_care_roles: Iterable[str] = ("AUTOMATE",)) -> None:
        self.patient_roles = frozenset(patient_roles)
        self.representative_roles = frozenset(representative_roles)
        self.non_care_roles = frozenset(non_care_roles)

    def filter_entries(self, user: UserAssertion, entries: Sequence[Protected]
                       ) -> tuple[list[Protected], dict[str, Decision]]:
        allowed, denied = [], {}
        for entry in entries:
            decision = self.may_retrieve(user, entry)
            if decision.allowed:
                allowed.append(entry)
            else:
                denied[entry.id] = decision
        return allowed, denied

    def may_retrieve(self, user: UserAssertion, document: Protected) -> Decision:
        if not document.codes:
            return Decision(False, "the document has no confidentiality code")
        kind = self.kind_of(user)
        needs_emergency = False
        for code in document.codes:
            verdict = self._code_verdict(code, kind, user.emergency)
            if verdict is None:
                return Decision(False, f"confidentiality {code[0]} ({code[1]}) is not open to a {kind}")
            needs_emergency = needs_emergency or verdict
        if needs_emergency:
            return Decision(True, "emergency access", emergency=True)
        return Decision(True, "allowed")

    def kind_of(self, user: UserAssertion) -> str:
        codes = {role.code for role in user.roles}
        if codes & self.patient_roles:
            return _PATIENT
        if codes & self.representative_roles:
            return _REPRESENTATIVE
        if codes - self.non_care_roles:
            return _PROFESSIONAL
        return _OTHER

    @staticmethod
    def _code_verdict(code: Code, kind: str, emergency: bool) -> bool | None:
        """None: refused; False: allowed; True: allowed thanks to emergency access only."""
        value, system = code
        care = kind == _PROFESSIONAL
        if system == HL7_CONFIDENTIALITY:
            if value == "N":
                return False
            if value == "R":
                return False if care else None
            if value == "V":
                return True if care and emergency else None
        elif system == FR_CONFIDENTIALITY:
            if value == MASQUE_PS:
                if kind in (_PATIENT, _REPRESENTATIVE):
                    return False
                return True if care and emergency else None
            if value == INVISIBLE_PATIENT:
                return None if kind == _PATIENT else False
            if value == INVISIBLE_REPRESENTANTS_LEGAUX:
                return None if kind == _REPRESENTATIVE else False
        return None


def load_policy(spec: str | None = None, options: Mapping[str, Any] | None = None) -> AccessPolicy:
    """Build the policy named ``module:Class`` (default :class:`DefaultPolicy`) with ``options``."""
    if not spec:
        return DefaultPolicy(**dict(options or {}))
    module_name, _, attribute = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attribute or "Policy")
        policy = factory(**dict(options or {}))
    except (ImportError, AttributeError, TypeError) as exc:
        raise ConfigurationError(f"XUA access policy {spec!r} cannot be built: {exc}") from None
    if not callable(getattr(policy, "filter_entries", None)) or not callable(getattr(policy, "may_retrieve", None)):
        raise ConfigurationError(f"XUA access policy {spec!r} has no filter_entries / may_retrieve")
    return policy


# ---------------------------------------------------------------------------------------------- pure contract

@dataclass(frozen=True)
class PolicyOutcome:
    """An ITI-18 answer's objects once filtered: what to return, what was hidden and why, what needed emergency."""

    objects: tuple[etree._Element, ...]
    denied: Mapping[str, Decision] = field(default_factory=dict)
    emergency: tuple[str, ...] = ()


@dataclass(frozen=True)
class RetrieveCheck:
    """ITI-43: the document unique ids to hand out, those refused (answer them as unknown documents), and
    those handed out thanks to emergency access."""

    allowed: tuple[str, ...]
    denied: Mapping[str, Decision] = field(default_factory=dict)
    emergency: tuple[str, ...] = ()


CodesLookup = Callable[[Sequence[str]], Mapping[str, tuple[Code, ...]]]


def filter_query_objects(user: UserAssertion | None, objects: Sequence[etree._Element], policy: AccessPolicy,
                         codes_for: CodesLookup | None = None) -> PolicyOutcome:
    """Keep the objects of an AdhocQueryResponse the user may see.

    LeafClass DocumentEntries (rim:ExtrinsicObject) are judged on their confidentialityCode classifications; an
    ObjectRef is judged on the codes ``codes_for(ids)`` finds (no codes: judged as a document without any).
    Associations whose source or target was refused are removed too, so a hidden document leaves no trace; other
    objects (SubmissionSets, Folders) pass.
    """
    if user is None:
        return PolicyOutcome(objects=tuple(objects))
    documents = [_as_protected(element) for element in objects if _is_document(element)]
    references = [element.get("id", "") for element in objects if _is_object_ref(element)]
    looked_up = codes_for(references) if codes_for is not None and references else {}
    documents += [Protected(ref, tuple(looked_up.get(ref, ()))) for ref in references]
    _allowed, denied = policy.filter_entries(user, documents)
    emergency = tuple(d.id for d in documents if d.id not in denied and policy.may_retrieve(user, d).emergency)
    kept = tuple(element for element in objects
                 if element.get("id", "") not in denied and not _touches(element, denied))
    return PolicyOutcome(objects=kept, denied=denied, emergency=emergency)


def decide_retrievals(user: UserAssertion | None, documents: Sequence[Protected], policy: AccessPolicy
                      ) -> RetrieveCheck:
    """Judge each requested document (by unique id, with its codes); order kept."""
    if user is None:
        return RetrieveCheck(allowed=tuple(d.id for d in documents))
    decisions = {document.id: policy.may_retrieve(user, document) for document in documents}
    return RetrieveCheck(allowed=tuple(i for i, d in decisions.items() if d.allowed),
                         denied={i: d for i, d in decisions.items() if not d.allowed},
                         emergency=tuple(i for i, d in decisions.items() if d.allowed and d.emergency))


def _is_document(element: etree._Element) -> bool:
    return element.tag == qn(RIM, "ExtrinsicObject")


def _is_object_ref(element: etree._Element) -> bool:
    return element.tag == qn(RIM, "ObjectRef")


def _touches(element: etree._Element, denied: Mapping[str, Decision]) -> bool:
    return element.tag == qn(RIM, "Association") and (
        element.get("sourceObject") in denied or element.get("targetObject") in denied)


def _as_protected(element: etree._Element) -> Protected:
    codes = []
    for classification in element.iterfind(qn(RIM, "Classification")):
        if classification.get("classificationScheme") != _CONFIDENTIALITY_SCHEME:
            continue
        codes.append((classification.get("nodeRepresentation") or "", _coding_scheme(classification)))
    return Protected(element.get("id", ""), tuple(codes))


def _coding_scheme(classification: etree._Element) -> str:
    for slot in classification.iterfind(qn(RIM, "Slot")):
        if slot.get("name") == _CODING_SCHEME:
            value = slot.find(f"{qn(RIM, 'ValueList')}/{qn(RIM, 'Value')}")
            return (value.text or "").strip() if value is not None else ""
    return ""


# ---------------------------------------------------------------------------------------------- registry lookups

def confidentiality_by_uuid(session: Session, uuids: Sequence[str]) -> dict[str, tuple[Code, ...]]:
    """Confidentiality codes of registry objects by entryUUID (from the registry's indexed code table)."""
    from ..xds.registry.tables import ATTRIBUTE_CONFIDENTIALITY_CODE, XdsCode

    found: dict[str, list[Code]] = {}
    for start in range(0, len(uuids), 1000):
        rows = session.execute(select(XdsCode.object_uuid, XdsCode.code, XdsCode.scheme).where(
            XdsCode.attribute == ATTRIBUTE_CONFIDENTIALITY_CODE, XdsCode.object_uuid.in_(uuids[start:start + 1000])))
        for uuid, code, scheme in rows:
            found.setdefault(uuid, []).append((code, scheme))
    return {uuid: tuple(codes) for uuid, codes in found.items()}


def confidentiality_by_unique_id(session: Session, unique_ids: Sequence[str]) -> dict[str, tuple[Code, ...]]:
    """Confidentiality codes of DocumentEntries by uniqueId; several entries sharing one are all counted (the
    document is as confidential as its most restricted entry). Unknown ids are absent."""
    from ..xds.registry.tables import ATTRIBUTE_CONFIDENTIALITY_CODE, ObjectKind, XdsCode, XdsObject

    found: dict[str, set[Code]] = {}
    for start in range(0, len(unique_ids), 1000):
        rows = session.execute(
            select(XdsObject.unique_id, XdsCode.code, XdsCode.scheme)
            .join(XdsCode, XdsCode.object_uuid == XdsObject.uuid)
            .where(XdsObject.kind == ObjectKind.DOCUMENT_ENTRY,
                   XdsObject.unique_id.in_(unique_ids[start:start + 1000]),
                   XdsCode.attribute == ATTRIBUTE_CONFIDENTIALITY_CODE))
        for unique_id, code, scheme in rows:
            found.setdefault(unique_id, set()).add((code, scheme))
    return {unique_id: tuple(sorted(codes)) for unique_id, codes in found.items()}


# ---------------------------------------------------------------------------------------------- runtime contract

def apply_policy_to_query_response(runtime: Any, request: Any, objects: Sequence[etree._Element],
                                   session: Session, *, transaction: str = "ITI-18") -> PolicyOutcome:
    """Filter an ITI-18 answer for ``request.user`` with the configured policy, inside the query's unit of work
    (``session`` serves ObjectRef lookups); emits the emergency audit record when the user is in emergency
    access. Without a verified user, returns ``objects`` untouched."""
    user = getattr(request, "user", None)
    if user is None:
        return PolicyOutcome(objects=tuple(objects))
    outcome = filter_query_objects(user, objects, policy_for(runtime.settings),
                                   lambda ids: confidentiality_by_uuid(session, ids))
    _audit_emergency(runtime, request, user, transaction, outcome.emergency)
    return outcome


def check_retrieve(runtime: Any, request: Any, unique_ids: Sequence[str], session: Session, *,
                   transaction: str = "ITI-43") -> RetrieveCheck:
    """Judge an ITI-43 request's documents for ``request.user`` (codes read from the registry tables with
    ``session``); emits the emergency audit record when the user is in emergency access. The caller answers each
    denied id exactly as an unknown document (XDSDocumentUniqueIdError), so a hidden document's existence does
    not leak. Without a verified user, everything is allowed."""
    user = getattr(request, "user", None)
    if user is None:
        return RetrieveCheck(allowed=tuple(unique_ids))
    codes = confidentiality_by_unique_id(session, list(unique_ids))
    check = decide_retrievals(user, [Protected(uid, codes.get(uid, ())) for uid in unique_ids],
                              policy_for(runtime.settings))
    _audit_emergency(runtime, request, user, transaction, check.emergency)
    return check


_POLICIES: dict[int, tuple[Any, AccessPolicy]] = {}


def policy_for(settings: Any) -> AccessPolicy:
    """The policy configured in ``settings`` (``[xua] policy`` and ``[xua.policy_options]``), built once."""
    cached = _POLICIES.get(id(settings))
    if cached is None or cached[0] is not settings:
        xua = dict(getattr(settings, "extra", {}).get("xua", {}))
        options = xua.get("policy_options", {})
        cached = (settings, load_policy(xua.get("policy"), options))
        _POLICIES[id(settings)] = cached
    return cached[1]


def _audit_emergency(runtime: Any, request: Any, user: UserAssertion, transaction: str,
                     documents: Sequence[str]) -> None:
    if user.emergency and getattr(runtime, "audit", None) is not None:
        runtime.audit.emit(emergency_audit_record(request, user, transaction, documents))


def emergency_audit_record(request: Any, user: UserAssertion, transaction: str,
                           documents: Sequence[str]) -> AuditRecord:
    """Security Alert / Emergency Override Started: who, from where, for which transaction and documents."""
    peer = getattr(request, "peer", "") or ""
    host = peer.rsplit(":", 1)[0] or None
    purposes = tuple((p.code, p.system or "", p.display or p.code) for p in user.purposes_of_use)
    return AuditRecord(
        event_id=SECURITY_ALERT, action="E", outcome=0, event_types=(EMERGENCY_OVERRIDE,),
        outcome_description=f"emergency access by {user.alias} in {transaction}: {len(documents)} document(s) "
                            "reached only through emergency access",
        participants=(Participant(user_id=user.name_id, user_name=user.alias, is_requestor=True,
                                  network_access_point=host),
                      Participant(user_id=getattr(request, "endpoint", "") or "", is_requestor=False)),
        objects=tuple(ParticipantObject(object_id=document, type_code=2, type_code_role=3,
                                        id_type=("9", "RFC-3881", "Report Number")) for document in documents),
        transaction=transaction, purposes_of_use=purposes)
