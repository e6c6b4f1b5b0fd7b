"""ITI-44 Patient Identity Feed HL7 V3: add (PRPA_IN201301UV02), revise (PRPA_IN201302UV02), merge (PRPA_IN201304UV02).

The v3 feed is the ITI-8 feed in another syntax, so it goes through the same doors: the national identity rules
(:mod:`ihe_engine.identity.rules`) judge the identifiers and the identity status, and the cross-referencing
service (:class:`~ihe_engine.identity.linking.CrossReferences`: linking policy, vigilance queue, ITI-10
notifications) applies the change. Add and revise both create or update (a revise for an unknown patient
creates it, as an A08 does: a source that lost its add must not lose the patient); add also looks for near
matches. Merge is ITI-8's A40: the priorRegisteredRole id is subsumed into the patient id of the same domain.

Identifiers: Patient.id and every patientPerson/asOtherIDs/id, in document order (the v2 PID-3 repetitions);
the identity status (the v2 PID-32) as :mod:`.parse` reads it.
Answers: MCCI_IN000002UV01, AA after commit (rule warnings as acknowledgementDetail typeCode W), AE with
acknowledgementDetail (HL7 table 0357 code, XPath location) when refused -- nothing changed then ("rule": the
code the national rules give):

================================================  ====  =============================================
case                                              code  location
================================================  ====  =============================================
required element or attribute missing             101   the parent element, the missing step appended
malformed value (root not an OID, bad birthTime)  102   the element
administrativeGenderCode not M, F or UN           103   the element
name, identifier or value above 200 characters    104   the element
national rule error (e.g. a wrong INS key)        rule  the identifier, or the identity status
identifier already subsumed / unknown (merge)     204   the id element
domain outside ``accepted_authorities``           204   the id element
identifiers designating two patients; same id     205   the id element
merge across domains                              103   priorRegisteredRole/id
================================================  ====  =============================================

Audit: EventID 110110 Patient Record, event type ITI-44; action C (add), U (revise); a merge gives D for the
subsumed id and U for the survivor; outcome 0 after commit, 4 when refused, 12 on an internal failure.
"""

from __future__ import annotations

from typing import Any

from lxml import etree

from ...audit.hook import AuditRecord, Code
from ...soap.endpoint import Operation, SoapRequest
from ..cx import CX
from ..linking import CrossReferences, load_linking_policy
from ..rules import IdentityIssue, load_identity_rules
from ..store import Demographics, FeedEvent, IdentityRefusal, Refusal
from .build import ack_message
from .common import ACTION_PREFIX, OUTCOME_INTERNAL, OUTCOME_REFUSED, OUTCOME_SUCCESS, PATIENT_RECORD, \
    Hl7v3Settings, V3Handler, internal_refusal, instance_text, participants, patient_object
from .errors import AckDetail, V3Refusal
from .model import FeedKind, PatientFeed, PatientMerge, PatientRecord, Transmission
from .parse import parse_feed, parse_merge

__all__ = ["Iti44Feed", "iti44_operations", "ITI44_EVENT_TYPE"]

ITI44_EVENT_TYPE: Code = ("ITI-44", "IHE Transactions", "Patient Identity Feed HL7 V3")
ACK_ACTION = f"{ACTION_PREFIX}MCCI_IN000002UV01"
_ACTIONS = {FeedKind.ADD: "C", FeedKind.REVISE: "U"}
_EVENT_KINDS = {FeedKind.ADD: "v3-add", FeedKind.REVISE: "v3-revise", FeedKind.MERGE: "v3-merge"}
_REFUSAL_CODES = {Refusal.DIFFERENT_AUTHORITIES: "103", Refusal.SAME_IDENTIFIER: "205",
                  Refusal.DIFFERENT_PATIENTS: "205", Refusal.UNKNOWN: "204", Refusal.SUBSUMED: "204",
                  Refusal.INACTIVE: "204"}


class Iti44Feed(V3Handler):
    """One handler for the three interactions; ``notifier`` receives cross-reference changes (ITI-10/46)."""

    transaction = "ITI-44"

    def __init__(self, runtime: Any, settings: Hl7v3Settings | None = None, *, notifier: Any = None,
                 interaction: str = FeedKind.ADD) -> None:
        super().__init__(runtime, settings)
        self.body_tags = (interaction,)
        self.interaction = interaction
        engine_settings = getattr(runtime, "settings", None)
        self.rules = load_identity_rules(engine_settings)
        self.policy = load_linking_policy(engine_settings)
        self.notifier = notifier

    def handle(self, request: SoapRequest, payload: etree._Element, transmission: Transmission) -> etree._Element:
        subject: PatientFeed | PatientMerge | None = None
        try:
            subject = parse_merge(payload) if self.interaction == FeedKind.MERGE else parse_feed(payload)
            self._check_authorities(subject)
            warnings = self._check_rules(subject.patient)
            warnings += self._apply(subject, payload, self._records(request, transmission, subject, OUTCOME_SUCCESS,
                                                                    None))
        except V3Refusal as refusal:
            self.emit(self._records(request, transmission, subject, OUTCOME_REFUSED, str(refusal)))
            return ack_message(transmission, refusal.ack_code, refusal.details)
        except _ReportedCommitFailure as failed:
            return ack_message(transmission, "AE", internal_refusal(self.transaction, failed.cause).details)
        except Exception as exc:  # storage down, a bug: AE 207, nothing kept (the unit of work rolled back)
            refusal = internal_refusal(self.transaction, exc)
            self.emit(self._records(request, transmission, subject, OUTCOME_INTERNAL, str(refusal)))
            return ack_message(transmission, "AE", refusal.details)
        return ack_message(transmission, "AA", warnings)

    def refused(self, request: SoapRequest, transmission: Transmission, refusal: V3Refusal) -> etree._Element:
        self.emit(self._records(request, transmission, None, OUTCOME_REFUSED, str(refusal)))
        return ack_message(transmission, refusal.ack_code, refusal.details)

    # -- the work ------------------------------------------------------------------------------------------------

    def _check_authorities(self, subject: PatientFeed | PatientMerge) -> None:
        """Only the configured domains are fed (``accepted_authorities``), as on the v2 feed: else 204."""
        accepted = self.settings.accepted_authorities
        if accepted is None:
            return
        located = [*subject.patient.identifiers, *([subject.subsumed] if isinstance(subject, PatientMerge) else [])]
        refused = [AckDetail("204", f"assigning authority {item.cx.authority_key!r} is not fed to this manager",
                             item.location) for item in located if item.cx.authority_key not in accepted]
        if refused:
            raise V3Refusal(refused)

    def _check_rules(self, patient: PatientRecord) -> list[AckDetail]:
        """National rules over the identifiers: errors refuse the message, warnings go back with the AA."""
        issues = self.rules.check_identity([located.cx for located in patient.identifiers], patient.reliability,
                                           typed=False)  # an II has no identifier type code
        details = [_detail(issue, patient) for issue in issues]
        errors = [detail for detail, issue in zip(details, issues) if issue.is_error]
        if errors:
            raise V3Refusal(errors)
        return details

    def _apply(self, subject: PatientFeed | PatientMerge, payload: etree._Element,
               success_records: list[AuditRecord]) -> list[AckDetail]:
        """The change in one unit of work, committed here with its audit records (durable exactly when the change
        is); refusals roll it back and answer AE."""
        event = _feed_event(subject.transmission, payload)
        with self.runtime.uow() as uow:
            references = CrossReferences(uow.session, policy=self.policy, rules=self.rules, notifier=self.notifier)
            try:
                notes = self._change(references, subject, event)
            except IdentityRefusal as refusal:
                raise _as_v3(refusal, subject) from None
            self.emit_with(uow.session, success_records)
            try:
                uow.commit()
            except Exception as exc:  # the rollback reported the records as failed: answer without a second one
                raise _ReportedCommitFailure(self.transaction, exc) from exc
        return notes

    def _change(self, references: CrossReferences, subject: PatientFeed | PatientMerge,
                event: FeedEvent) -> list[AckDetail]:
        if isinstance(subject, PatientMerge):
            survivor = _survivor(subject)
            references.merge(survivor, subject.subsumed.cx, event)
            return []
        identifiers = [located.cx for located in subject.patient.identifiers]
        outcome = references.feed(identifiers, demographics(subject.patient), event,
                                  expect_new=self.interaction == FeedKind.ADD)
        return [AckDetail("207", f"{cx} was not attached to the patient: the identity is not qualified, or "
                                 "another person holds it (identity vigilance reviews the pair)",
                          _location_of(cx, subject), type_code="W") for cx in outcome.withheld]

    # -- audit ---------------------------------------------------------------------------------------------------

    def _records(self, request: SoapRequest, transmission: Transmission, subject: PatientFeed | PatientMerge | None,
                 outcome: int, description: str | None) -> list[AuditRecord]:
        source, destination = participants(request, self.process_id)

        def record(action: str, patient: str) -> AuditRecord:
            objects = (patient_object(patient, transmission),) if patient else ()
            return AuditRecord(event_id=PATIENT_RECORD, action=action, event_types=(ITI44_EVENT_TYPE,),
                               outcome=outcome, outcome_description=description,
                               participants=(source, destination), objects=objects, transaction=self.transaction)

        patient = subject.patient.identifiers[0].cx.to_hl7() if subject is not None else ""
        if self.interaction == FeedKind.MERGE:
            subsumed = subject.subsumed.cx.to_hl7() if isinstance(subject, PatientMerge) else ""
            return [record("D", subsumed), record("U", patient)]
        return [record(_ACTIONS[self.interaction], patient)]


class _ReportedCommitFailure(Exception):
    """The commit failed after the success records were queued in its transaction (reported as rolled back)."""

    def __init__(self, transaction: str, cause: Exception) -> None:
        super().__init__(f"{transaction}: {cause}")
        self.cause = cause


def iti44_operations(runtime: Any, settings: Hl7v3Settings | None = None, *, notifier: Any = None
                     ) -> list[Operation]:
    """The three ITI-44 operations of the PIX Manager endpoint."""
    return [Operation(f"{ACTION_PREFIX}{interaction}", ACK_ACTION,
                      Iti44Feed(runtime, settings, notifier=notifier, interaction=interaction), transaction="ITI-44")
            for interaction in (FeedKind.ADD, FeedKind.REVISE, FeedKind.MERGE)]


# -- mapping -------------------------------------------------------------------------------------------------------

def demographics(patient: PatientRecord) -> Demographics:
    """The store's traits from a v3 patient: None where the message says nothing (the stored value stays)."""
    used = next((name for name in patient.names if name.family and name.use == "L"), None) or \
        next((name for name in patient.names if name.family), None)
    birth = next((name.birth_family[0] for name in patient.names if name.birth_family), None)
    given = used.given if used is not None else next((name.given for name in patient.names if name.given), ())
    home = next((address for address in patient.addresses if address.use == "H"), None) or \
        next(iter(patient.addresses), None)
    phone = next((telecom.value[4:] for telecom in patient.telecoms if telecom.value.lower().startswith("tel:")),
                 None)
    return Demographics(
        family_name=used.family[0] if used is not None else birth,
        given_name=given[0] if given else None,
        given_names=_cut(" ".join(given[1:]), 400),
        birth_name=birth,
        birth_date=patient.birth_time or None, sex=patient.gender or None,
        birthplace=patient.birthplace or None,
        street=_cut(" ".join(home.street_lines), 200) if home is not None else None,
        city=_cut(home.city, 200) if home is not None else None,
        postal_code=_cut(home.postal_code, 20) if home is not None else None,
        state=_cut(home.state, 100) if home is not None else None,
        country=_cut(home.country, 20) if home is not None else None,
        phone=_cut(phone or "", 100), identity_reliability=patient.reliability)


def _cut(value: str, limit: int) -> str | None:
    return value[:limit] or None


def _feed_event(transmission: Transmission, payload: etree._Element) -> FeedEvent:
    return FeedEvent(kind=_EVENT_KINDS[transmission.interaction],
                     sending_application=instance_text(transmission.sender_device),
                     control_id=instance_text(transmission.message_id),
                     details={"interaction": transmission.interaction},
                     raw_message=etree.tostring(payload, encoding="unicode"))


def _survivor(merge: PatientMerge) -> CX:
    """The patient id in the subsumed id's domain (a merge happens inside one domain)."""
    subsumed = merge.subsumed.cx
    for located in merge.patient.identifiers:
        if located.cx.authority_key == subsumed.authority_key:
            return located.cx
    raise V3Refusal.one("103", f"no patient id is in the domain of the subsumed id {subsumed}",
                        merge.subsumed.location)


def _as_v3(refusal: IdentityRefusal, subject: PatientFeed | PatientMerge) -> V3Refusal:
    return V3Refusal.one(_REFUSAL_CODES[refusal.reason], str(refusal), _location_of(refusal.identifier, subject))


def _location_of(cx: CX, subject: PatientFeed | PatientMerge) -> str:
    if isinstance(subject, PatientMerge) and subject.subsumed.cx.key == cx.key:
        return subject.subsumed.location
    for located in subject.patient.identifiers:
        if located.cx.key == cx.key:
            return located.location
    return subject.patient.location


def _detail(issue: IdentityIssue, patient: PatientRecord) -> AckDetail:
    """A rule issue as an acknowledgementDetail: at the identifier at fault, or at the identity status."""
    if issue.field == "PID-32":
        location = f"{patient.location}/subjectOf/administrativeObservation"
    elif issue.repetition is not None and 0 < issue.repetition <= len(patient.identifiers):
        location = patient.identifiers[issue.repetition - 1].location
    elif issue.identifier is not None:
        location = next((located.location for located in patient.identifiers
                         if located.cx.key == issue.identifier.key), patient.location)
    else:
        location = patient.location
    return AckDetail(issue.code, issue.message, location, type_code="E" if issue.is_error else "W")
