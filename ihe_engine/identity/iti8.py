"""ITI-8 Patient Identity Feed (HL7 v2): A01/A04/A05/A08 create or update, A40 merges, A24/A37 link and
unlink, A47 changes an identifier.

Accepted versions (MSH-12.1): 2.3.1 (the profile's), 2.5 and the ones between (2.3, 2.4, 2.5.1); PAM FR sends
``2.5^FRA^2.11``. Any other is refused with AE 203 at ``MSH^1^12``. The whole message text is kept in the
``identity_event`` row, so ZBE/ZFA/ZFD/ZFP/ZFV/ZFM segments survive for the French rules to read later; nothing
here interprets them.

Every identity goes through the national :class:`~ihe_engine.identity.rules.IdentityRules` (``identity_rules``
in the config file): an error refuses the message (AE, ERR at the PID-3 repetition or ``PID^1^32``), warnings are
returned in the AA as ERR segments of severity W. Who the record is (a new person, a person already known, a link)
is decided by :mod:`ihe_engine.identity.linking`; every change of a person's cross-references enqueues the ITI-10
notifications (:mod:`ihe_engine.identity.iti10`) in the same transaction.

A01/A04/A05/A08
  Every PID-3 repetition is an identifier of the patient and is kept (PID-3.5 type included). PID-3.4 must name
  the assigning authority by namespace or universal id (else AE 101, location ``PID^1^3^rep^4``). A repetition
  whose id is HL7's null ``""`` removes the patient's identifier in that authority. An A08 for a patient the
  store does not know creates it: a feed that lost its A01 must not lose the patient, and refusing would only
  make the source resend the same data as an A01. Empty fields keep stored traits; ``""`` clears them.
  Refusals (nothing written): an identifier already subsumed (204 at ``PID^1^3^rep^1``); identifiers that already
  designate two different patients (205 Duplicate key identifier: linking them is the cross-referencing policy's
  decision); an assigning authority outside the configured accepted ones (204 at ``PID^1^3^rep^4``).

A40 (MRG-1 subsumed into PID-3)
  One pair per message: the first MRG-1 repetition, merged into the PID-3 repetition of the same authority.
  Rejected without any change, as the reference requires (HL7 table 0357 codes, which has no code dedicated to
  merges, so the closest ones are used and ERR-8 says exactly what was wrong):

  ====================================================  ====  ================================
  case                                                  code  ERR-2 location
  ====================================================  ====  ================================
  no PID-3 identifier in MRG-1's authority              103   ``MRG^1^1^1^4`` (Table value not found: the
                                                              authority is not one PID-3 uses)
  MRG-1 equals the surviving PID-3 identifier           205   ``MRG^1^1^1^1`` (Duplicate key identifier)
  MRG-1 or PID-3 unknown to the store                   204   ``MRG^1^1^1^1`` / ``PID^1^3^rep^1``
  MRG-1 or PID-3 already subsumed, or inactive          204   same (Unknown key identifier: not an active key
                                                              any more; the text says merged or inactive)
  ====================================================  ====  ================================

  Codes 206/207 are avoided on purpose: the dispatcher does not record those answers (they mean "try again"),
  whereas these refusals are final and a retransmission must get the same answer.

A47 (change of identifier: MRG-1 old, the PID-3 id of the same authority new)
  The old id becomes inactive, the new one joins the same person. Refused like A40 (103, 204), and with 205 at the
  PID-3 repetition when the new id already designates a patient.

A24 / A37 (two PID segments: the first record kept, the second linked in or split off)
  A24 links the two persons (the second's identifiers join the first, recorded so it can be undone); A37 moves the
  identifiers the link brought back out to a new person (the second PID's traits), or, for ids that came in one
  feed, the person's ids in the second id's domain. Refused: a second PID missing (100 at ``PID^2``), an unknown,
  subsumed or inactive id (204 at ``PID^n^3^1^1``), an A37 of records that are not linked or are one record (205),
  two persons with different national identifiers (205).

Audit (reference section D): EventID 110110 Patient Record, EventTypeCode ITI-8; action C for A01/A04/A05, U for
A08 (even when the A08 created the patient: the action follows the message), and for A40 one D record for the
subsumed id and one U record for the survivor (A47 likewise: D for the old id, U for the new), U for both ids
of an A24 or A37; the patient participant object carries MSH-10 as detail. Source
UserID is "MSH-4|MSH-3" (facility|application, as the reference states), destination is MSH-6|MSH-5 with the
process id. Records are emitted *after commit*: the handler parks them with
:func:`ihe_engine.storage.effects.after_commit`, so they leave once the transaction commits; if the message's work
is rolled back instead (its savepoint in a group commit, a concurrent duplicate, a failed commit) they are emitted
with outcome 8 and a description saying so. A refusal emits outcome 4.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from ..audit import AuditRecord, ParticipantObject
from ..audit.hl7v2 import hl7_request_participants
from ..errors import ConfigurationError, TransactionError
from ..hl7v2.ack import Hl7Error
from ..hl7v2.dispatch import Hl7Context, Hl7Route
from ..hl7v2.message import Message, Segment
from .cx import CX, HL7_NULL, CXError
from .linking import CrossReferences, DefaultLinkingPolicy, LinkingPolicy, Notifier, load_linking_policy
from .rules import IdentityIssue, IdentityRules, NoIdentityRules, load_identity_rules
from .store import Demographics, FeedEvent, IdentityRefusal, Refusal
from .visits import record_visit

if TYPE_CHECKING:
    from ..runtime import Runtime
    from ..storage import UnitOfWork

__all__ = ["Iti8Feed", "hl7_routes", "PATIENT_RECORD", "ITI8_EVENT_TYPE", "FEED_EVENTS", "MERGE_EVENT", "LINK_EVENT",
           "UNLINK_EVENT", "CHANGE_EVENT", "SUPPORTED_VERSIONS"]

PATIENT_RECORD = ("110110", "DCM", "Patient Record")
ITI8_EVENT_TYPE = ("ITI-8", "IHE Transactions", "Patient Identity Feed")
FEED_EVENTS = {"A01": "C", "A04": "C", "A05": "C", "A08": "U"}
"""Trigger events that create or update a patient, with their audit action."""
MERGE_EVENT = "A40"
LINK_EVENT, UNLINK_EVENT, CHANGE_EVENT = "A24", "A37", "A47"

_PATIENT_NUMBER = ("2", "RFC-3881", "Patient Number")
_REFUSED = 4


class Iti8Feed:
    """The ITI-8 handlers.

    ``accepted_authorities`` (authority keys) restricts the domains fed (None: any); ``rules`` are the national
    identity rules (PID-3/PID-32 checks, which ids are national); ``policy`` links records (see
    :mod:`~ihe_engine.identity.linking`); ``notifier`` enqueues ITI-10 notifications in the same transaction.
    """

    def __init__(self, *, accepted_authorities: Iterable[str] | None = None, rules: IdentityRules | None = None,
                 policy: LinkingPolicy | None = None, notifier: Notifier | None = None) -> None:
        self.accepted_authorities = frozenset(accepted_authorities) if accepted_authorities is not None else None
        self.rules = rules or NoIdentityRules()
        self.policy = policy or DefaultLinkingPolicy()
        self.notifier = notifier

    def routes(self) -> list[Hl7Route]:
        handlers = [(f"ADT^{trigger}", self.handle_patient) for trigger in FEED_EVENTS]
        handlers += [(f"ADT^{MERGE_EVENT}", self.handle_merge), (f"ADT^{LINK_EVENT}", self.handle_link),
                     (f"ADT^{UNLINK_EVENT}", self.handle_unlink), (f"ADT^{CHANGE_EVENT}", self.handle_change)]
        return [Hl7Route(message_type, handler, transaction="ITI-8") for message_type, handler in handlers]

    def cross_references(self, uow: "UnitOfWork") -> CrossReferences:
        return CrossReferences(uow.session, policy=self.policy, rules=self.rules, notifier=self.notifier)

    # -- A01 / A04 / A05 / A08 -------------------------------------------------------------------------------

    def handle_patient(self, message: Message, uow: "UnitOfWork", context: Hl7Context) -> bytes | None:
        trigger = message.header.trigger_event
        action = FEED_EVENTS[trigger]
        try:
            _check_version(message)
            pid = _required_segment(message, "PID")
            identifiers, removed, repetitions = self._pid3(pid)
            demographics = _demographics(pid)
            warnings = self._check_identity(identifiers, repetitions, demographics.identity_reliability)
            outcome = self.cross_references(uow).feed(identifiers, demographics, _feed_event(message),
                                                      removed_authorities=removed, expect_new=trigger != "A08")
            record_visit(uow.session, outcome.result.patient_id, message)  # ITI-22: no statement without a visit
        except (TransactionError, IdentityRefusal) as exc:
            refusal = _as_transaction_error(exc, message)
            _audit_after_commit(uow, context, [_record(context, action, _first_pid3(message), refusal)])
            raise refusal from None
        _audit_after_commit(uow, context, [_record(context, action, identifiers[0].to_hl7())])
        return context.ack("AA", errors=warnings) if warnings else None

    def _pid3(self, pid: Segment, sequence: int = 1) -> tuple[list[CX], list[str], list[int]]:
        """(identifiers to keep, authority keys whose identifier the sender removed, PID-3 repetition of each)."""
        identifiers: list[CX] = []
        removed: list[str] = []
        repetitions: list[int] = []
        for repetition, text in enumerate(pid.repetitions(3), start=1):
            cx = _parse_cx(text, pid, "PID", 3, repetition, sequence)
            self._check_authority(cx, f"PID^{sequence}^3^{repetition}^4")
            if cx.is_null:
                removed.append(cx.authority_key)
            else:
                identifiers.append(cx)
                repetitions.append(repetition)
        if not identifiers:
            raise TransactionError("PID-3 carries no patient identifier", code="101", location=f"PID^{sequence}^3")
        return identifiers, removed, repetitions

    def _check_authority(self, cx: CX, location: str) -> None:
        if self.accepted_authorities is not None and cx.authority_key not in self.accepted_authorities:
            raise TransactionError(f"assigning authority {cx.authority_key!r} is not fed to this manager",
                                   code="204", location=location)

    def _check_identity(self, identifiers: list[CX], repetitions: list[int], reliability: str | None
                        ) -> list[Hl7Error]:
        """National rules: the first error refuses the message, warnings go back in the AA (ERR-4 = W)."""
        warnings = []
        for issue in self.rules.check_identity(identifiers, reliability or None):
            location = _issue_location(issue, repetitions)
            if issue.is_error:
                raise TransactionError(issue.message, code=issue.code, location=location)
            warnings.append(Hl7Error(code=issue.code, text=issue.message, location=location, severity="W"))
        return warnings

    # -- A40 merge and A47 change of identifier (MRG-1 -> the PID-3 id of the same authority) ------------------

    def handle_merge(self, message: Message, uow: "UnitOfWork", context: Hl7Context) -> None:
        self._mrg_pair_change(message, uow, context,
                              lambda xref, old, new, event: xref.merge(new, old, event))

    def handle_change(self, message: Message, uow: "UnitOfWork", context: Hl7Context) -> None:
        self._mrg_pair_change(message, uow, context,
                              lambda xref, old, new, event: xref.change_identifier(old, new, event))

    def _mrg_pair_change(self, message: Message, uow: "UnitOfWork", context: Hl7Context, change) -> None:  # type: ignore[no-untyped-def]
        old_text, new_text = _first_rep(message, "MRG", 1), _first_pid3(message)
        try:
            _check_version(message)
            old, new = self._merge_pair(message)
            old_text, new_text = old.to_hl7(), new.to_hl7()
            change(self.cross_references(uow), old, new, _feed_event(message))
        except (TransactionError, IdentityRefusal) as exc:
            refusal = _as_transaction_error(exc, message)
            _audit_after_commit(uow, context, [_record(context, "D", old_text, refusal),
                                               _record(context, "U", new_text, refusal)])
            raise refusal from None
        _audit_after_commit(uow, context, [_record(context, "D", old_text), _record(context, "U", new_text)])

    def _merge_pair(self, message: Message) -> tuple[CX, CX]:
        """(the old id from MRG-1, the PID-3 repetition in the same authority)."""
        pid, mrg = _required_segment(message, "PID"), _required_segment(message, "MRG")
        merged_texts = mrg.repetitions(1)
        if not merged_texts:
            raise TransactionError("MRG-1 (the prior identifier) is empty", code="101", location="MRG^1^1")
        subsumed = _parse_cx(merged_texts[0], mrg, "MRG", 1, 1)
        self._check_authority(subsumed, "MRG^1^1^1^4")
        candidates = [_parse_cx(text, pid, "PID", 3, repetition)
                      for repetition, text in enumerate(pid.repetitions(3), start=1)]
        if not candidates:
            raise TransactionError("PID-3 (the surviving identifier) is empty", code="101", location="PID^1^3")
        for survivor in candidates:
            if survivor.authority_key == subsumed.authority_key and not survivor.is_null:
                return subsumed, survivor
        raise IdentityRefusal(f"no PID-3 identifier is in the assigning authority of MRG-1 ({subsumed})",
                              reason=Refusal.DIFFERENT_AUTHORITIES, identifier=subsumed)

    # -- A24 link / A37 unlink (first PID: the record kept, second PID: the record linked or split off) --------

    def handle_link(self, message: Message, uow: "UnitOfWork", context: Hl7Context) -> None:
        def link(xref: CrossReferences, keep: CX, other: CX, event: FeedEvent) -> None:
            kept, linked = (xref.resolve_active(cx) for cx in (keep, other))
            xref.link(kept.patient_id, linked.patient_id, event, reason="A24 link patient information")

        self._two_records(message, uow, context, link)

    def handle_unlink(self, message: Message, uow: "UnitOfWork", context: Hl7Context) -> None:
        def unlink(xref: CrossReferences, keep: CX, other: CX, event: FeedEvent) -> None:
            xref.unlink(keep, other, event, demographics=_demographics(message.segments("PID")[1]))

        self._two_records(message, uow, context, unlink)

    def _two_records(self, message: Message, uow: "UnitOfWork", context: Hl7Context, change) -> None:  # type: ignore[no-untyped-def]
        texts = [_first_rep_of(segment, 3) for segment in message.segments("PID")[:2]]
        try:
            _check_version(message)
            pids = message.segments("PID")
            if len(pids) < 2:
                raise TransactionError(f"{message.header.trigger_event} needs two PID segments", code="100",
                                       location=f"PID^{len(pids) + 1}")
            keep, other = (self._pid3(pid, sequence)[0][0] for sequence, pid in enumerate(pids[:2], start=1))
            texts = [keep.to_hl7(), other.to_hl7()]
            change(self.cross_references(uow), keep, other, _feed_event(message))
        except (TransactionError, IdentityRefusal) as exc:
            refusal = _as_transaction_error(exc, message)
            _audit_after_commit(uow, context, [_record(context, "U", text, refusal) for text in texts])
            raise refusal from None
        _audit_after_commit(uow, context, [_record(context, "U", text) for text in texts])


def hl7_routes(runtime: "Runtime | None" = None, *, accepted_authorities: Iterable[str] | None = None
               ) -> list[Hl7Route]:
    """The ITI-8 routes (ADT^A01, A04, A05, A08, A40, A24, A37, A47) for the MLLP dispatcher.

    Configured from the runtime's settings (config file keys): ``accepted_authorities`` (a list of assigning
    authority OIDs or namespaces; absent: any), ``identity_rules``, ``identity_linking`` and ``pix_consumers``.
    """
    settings = runtime.settings if runtime is not None else None
    extra = (getattr(settings, "extra", None) or {}) if settings is not None else {}
    if accepted_authorities is None and extra.get("accepted_authorities") is not None:
        accepted_authorities = _authority_list(extra["accepted_authorities"])
    from .hl7v3.iti46 import pix_notifier

    return Iti8Feed(accepted_authorities=accepted_authorities, rules=load_identity_rules(settings),
                    policy=load_linking_policy(settings),
                    notifier=pix_notifier(settings) if settings is not None else None).routes()


def _authority_list(value: object) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise ConfigurationError("accepted_authorities must be a list of assigning authority ids (OIDs)")
    return value


# -- reading the message -----------------------------------------------------------------------------------------

SUPPORTED_VERSIONS = ("2.3", "2.3.1", "2.4", "2.5", "2.5.1")
"""MSH-12.1 values accepted: the profile's 2.3.1, 2.5 (PAM FR sends ``2.5^FRA^2.11``) and the versions between."""


def _check_version(message: Message) -> None:
    if message.header.version not in SUPPORTED_VERSIONS:
        raise TransactionError(f"HL7 version {message.header.version!r} is not supported by ITI-8 "
                               f"(supported: {', '.join(SUPPORTED_VERSIONS)})", code="203", location="MSH^1^12")


def _required_segment(message: Message, name: str) -> Segment:
    segment = message.find_segment(name)
    if segment is None:
        raise TransactionError(f"required segment {name} is missing", code="100", location=f"{name}^1")
    return segment


def _parse_cx(text: str, segment: Segment, name: str, field: int, repetition: int, sequence: int = 1) -> CX:
    try:
        return CX.from_hl7(text, segment.encoding, segment.charset)
    except CXError as exc:
        raise TransactionError(f"{name}-{field} repetition {repetition}: {exc}", code=exc.hl7_code,
                               location=exc.location_in(name, field, repetition, sequence)) from None


def _issue_location(issue: IdentityIssue, repetitions: list[int]) -> str:
    """ERR-2 of a national rule's issue: PID-32, or the PID-3 repetition (counted in the message) at fault."""
    if issue.field == "PID-32":
        return "PID^1^32"
    if issue.repetition is not None and 0 < issue.repetition <= len(repetitions):
        return f"PID^1^3^{repetitions[issue.repetition - 1]}"
    return "PID^1^3"


def _first_rep_of(segment: Segment, field: int) -> str:
    repetitions = segment.repetitions(field)
    return repetitions[0] if repetitions else ""


def _first_rep(message: Message, name: str, field: int) -> str:
    segment = message.find_segment(name)
    repetitions = segment.repetitions(field) if segment is not None else []
    return repetitions[0] if repetitions else ""


def _first_pid3(message: Message) -> str:
    return _first_rep(message, "PID", 3)


def _trait(value: str, limit: int) -> str | None:
    """Field text to a stored trait: empty means not sent (None), HL7 null means clear ("")."""
    if not value:
        return None
    return "" if value == HL7_NULL else value[:limit]


def _demographics(pid: Segment) -> Demographics:
    name = _name_traits(pid)
    address, birthplace = _addresses(pid)
    birth_date = pid.get(7)
    return Demographics(
        **name,
        birth_date=_trait(birth_date if birth_date == HL7_NULL else birth_date[:8], 8),
        sex=_trait(pid.get(8), 1),
        birthplace=birthplace or _trait(pid.get(23), 200),
        city=_trait(address.get("city", ""), 200),
        postal_code=_trait(address.get("postal_code", ""), 20),
        street=_trait(address.get("street", ""), 200),
        state=_trait(address.get("state", ""), 100),
        country=_trait(address.get("country", ""), 20),
        phone=_trait(_phone(pid), 100),
        identity_reliability=_trait(pid.get(32), 20),
        account_number=_trait(pid[18] if pid[18] == HL7_NULL else pid.get(18), 200),
        mothers_maiden_name=_trait(pid[6] if pid[6] == HL7_NULL else pid.get(6), 200),
    )


def _name_traits(pid: Segment) -> dict[str, str | None]:
    """PID-5: the used name (type D, else L, else the first) and the birth name (type B, else L as PAM FR has it)."""
    if pid[5] == HL7_NULL:
        return dict.fromkeys(("family_name", "given_name", "given_names", "birth_name"), "")
    names = [pid.components(5, number) for number in range(1, len(pid.repetitions(5)) + 1)]
    if not names:
        return {}
    by_type = {_at(name, 7): name for name in reversed(names)}
    used = by_type.get("D") or by_type.get("L") or names[0]
    birth = by_type.get("B") or by_type.get("L")
    surname = pid.encoding.subcomponent  # XPN.1 is FN (surname&own prefix&...): only the surname is a trait
    return {"family_name": _trait(_at(used, 1).split(surname)[0], 200), "given_name": _trait(_at(used, 2), 200),
            "given_names": _trait(_at(used, 3), 400),
            "birth_name": _trait(_at(birth, 1).split(surname)[0], 200) if birth else None}


def _addresses(pid: Segment) -> tuple[dict[str, str], str | None]:
    """(home address components, birthplace): PAM FR puts the birthplace in a PID-11 repetition of type BDL."""
    home: dict[str, str] = {}
    birthplace = None
    for number in range(1, len(pid.repetitions(11)) + 1):
        address = pid.components(11, number)
        if _at(address, 7) == "BDL":
            birthplace = _trait(_at(address, 9) or _at(address, 3), 200)
        elif not home:
            home = {"street": _at(address, 1).split(pid.encoding.subcomponent)[0], "city": _at(address, 3),
                    "state": _at(address, 4), "postal_code": _at(address, 5), "country": _at(address, 6)}
    return home, birthplace


def _phone(pid: Segment) -> str:
    telecom = pid.components(13)
    return _at(telecom, 1) or _at(telecom, 12) or (_at(telecom, 6) + _at(telecom, 7))


def _at(parts: list[str], number: int) -> str:
    return parts[number - 1] if number <= len(parts) else ""


def _feed_event(message: Message) -> FeedEvent:
    header = message.header
    return FeedEvent(kind=header.trigger_event, sending_application=header.sending_application,
                     sending_facility=header.sending_facility, control_id=header.control_id,
                     details={"version": header.version_field, "message_type": message.msh[9]},
                     raw_message=message.text)


# -- refusals --------------------------------------------------------------------------------------------------

_REFUSAL_CODES = {Refusal.DIFFERENT_AUTHORITIES: "103", Refusal.SAME_IDENTIFIER: "205",
                  Refusal.DIFFERENT_PATIENTS: "205", Refusal.UNKNOWN: "204", Refusal.SUBSUMED: "204",
                  Refusal.INACTIVE: "204"}


def _as_transaction_error(exc: TransactionError | IdentityRefusal, message: Message) -> TransactionError:
    if isinstance(exc, TransactionError):
        return exc
    return TransactionError(str(exc), code=_REFUSAL_CODES[exc.reason], location=_refusal_location(exc, message))


def _refusal_location(refusal: IdentityRefusal, message: Message) -> str:
    """Where the identifier at fault sits: MRG-1 or the PID-3 repetition holding it."""
    if refusal.reason is Refusal.DIFFERENT_AUTHORITIES:
        return "MRG^1^1^1^4"
    mrg = message.find_segment("MRG")
    if mrg is not None and mrg.repetitions(1) and _same(mrg, mrg.repetitions(1)[0], refusal.identifier):
        return "MRG^1^1^1^1"
    for sequence, pid in enumerate(message.segments("PID"), start=1):
        for repetition, text in enumerate(pid.repetitions(3), start=1):
            if _same(pid, text, refusal.identifier):
                return f"PID^{sequence}^3^{repetition}^1"
    return "PID^1^3"


def _same(segment: Segment, text: str, cx: CX) -> bool:
    try:
        return CX.from_hl7(text, segment.encoding, segment.charset).key == cx.key
    except CXError:
        return False


# -- audit -----------------------------------------------------------------------------------------------------

def _record(context: Hl7Context, action: str, patient_id: str, refusal: TransactionError | None = None
            ) -> AuditRecord:
    header = context.message.header
    source, destination = hl7_request_participants(context)
    patient = ParticipantObject(object_id=patient_id, type_code=1, type_code_role=1, id_type=_PATIENT_NUMBER,
                                details=(("MSH-10", header.control_id.encode()),))
    return AuditRecord(event_id=PATIENT_RECORD, action=action, event_types=(ITI8_EVENT_TYPE,),
                       outcome=_REFUSED if refusal is not None else 0,
                       outcome_description=str(refusal) if refusal is not None else None,
                       participants=(source, destination), objects=(patient,) if patient_id else (),
                       transaction="ITI-8")


def _audit_after_commit(uow: "UnitOfWork", context: Hl7Context, records: list[AuditRecord]) -> None:
    """Report ``records`` with this message's work: queued in its transaction, rolled back with it."""
    if context.runtime is None:
        return
    context.runtime.audit.emit_with(uow.session, records)
