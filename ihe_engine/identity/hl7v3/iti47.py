"""ITI-47 Patient Demographics Query HL7 V3, with the continuation option.

PRPA_IN201305UV02 -> PRPA_IN201306UV02 on :func:`ihe_engine.identity.pdq_search.search_patients`:

=============================================  =====  ========  ==============================================
case                                           ack    queryAck  acknowledgementDetail
=============================================  =====  ========  ==============================================
matches                                        AA     OK        -- (one registrationEvent per patient)
no match                                       AA     NF        --
an otherIDsScopingOrganization domain unknown  AE     AE        204 at each unknown one's value element,
                                                                ``.../otherIDsScopingOrganization[n]/value[1]``
no parameter, a malformed one                  AE     QE        101 / 102 / 103 / 104 at the element
more matches than ``pdq_max_matches``          AE     QE        at parameterList: narrow the query
=============================================  =====  ========  ==============================================

Answers list, per patient, its active identifiers (only those in the domains asked, when some are: a patient with
none there is not a match), its traits and its match degree (queryMatchObservation, 0 to 100: the name similarity
in fuzzy mode -- names compared by sound -- which matchCriterionList/minimumDegreeMatch asks for, else 100; the
degree is reported, not used as a filter, so paging stays keyset-stable). Several livingSubjectId values must all
be the patient's. A livingSubjectId in an unknown domain matches nobody (NF).

Continuation. With ``initialQuantity`` n and more matches, the first answer has n patients, resultTotalQuantity,
resultCurrentQuantity and resultRemainingQuantity, and the query's paging state goes to the ``continuation`` table
(keyed by its queryId, so any worker -- or another machine on the same PostgreSQL -- answers the next page):
the query, the domains, the last patient id served (keyset paging), the counts. QUQI_IN000003UV01 with the
queryId and ``continuationQuantity`` m (default n) answers the next m; the state goes once the last page is served,
and a new paged query under the same queryId replaces it. The search itself runs in a read-only unit of work.
QUQI_IN000003UV01_Cancel removes it and answers MCCI_IN000002UV01 AA. A continuation or cancel for an unknown
(ended, cancelled, expired after ``pdq_continuation_minutes``) queryId answers AE, detail 204 at the queryId.

Audit: EventID 110112 Query, action E, event type ITI-47, for the query and for each continuation page (patients
disclosed, with the query object carrying the original queryByParameter) and for a cancel.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import asdict, dataclass, replace
from datetime import timedelta
from typing import Any, Sequence

from lxml import etree
from sqlalchemy.orm import Session

from ...audit.hook import AuditRecord, Code
from ...soap.endpoint import Operation, SoapRequest
from ...storage.base import utcnow
from ...storage.models import Continuation
from ..cx import CX
from ..pdq_search import IdentifierCriterion, PatientMatch, PatientQuery, QueryRefused, search_patients
from ..pix import Authority, is_known_domain
from .build import ack_message, pdq_answer
from .common import ACTION_PREFIX, OUTCOME_INTERNAL, OUTCOME_REFUSED, OUTCOME_SUCCESS, QUERY, Hl7v3Settings, \
    V3Handler, internal_refusal, participants, patient_object, query_object
from .errors import DATA_TYPE_ERROR, REQUIRED_MISSING, UNKNOWN_KEY, AckDetail, V3Refusal
from .iti45 import domain_authority
from .model import Address, InstanceId, PatientView, PdqQuery, PersonName, QueryControl, QueryCounts, Telecom, \
    Transmission
from .parse import parse_pdq_query, parse_query_control, read_query_id

__all__ = ["Iti47Query", "Iti47Continue", "Iti47Cancel", "iti47_operations", "ITI47_EVENT_TYPE", "patient_view",
           "continuation_token"]

ITI47_EVENT_TYPE: Code = ("ITI-47", "IHE Transactions", "Patient Demographics Query HL7 V3")
CONTINUATION_KIND = "iti47"
_QUERY, _ANSWER = "PRPA_IN201305UV02", "PRPA_IN201306UV02"
_CONTINUE, _CANCEL = "QUQI_IN000003UV01", "QUQI_IN000003UV01_Cancel"


# -- paging state --------------------------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class Paging:
    """What a continuation needs, kept in the ``continuation`` row as JSON."""

    query: PatientQuery
    domains: tuple[str, ...]
    query_xml: bytes
    quantity: int
    total: int
    served: int
    after_patient_id: int

    def dump(self) -> bytes:
        fields = {name: value for name, value in asdict(self.query).items()
                  if name not in ("identifier", "identifiers")}
        identifier = asdict(self.query.identifier) if self.query.identifier is not None else None
        criteria = [{"value": criterion.value, "authority": asdict(criterion.authority)
                     if criterion.authority is not None else None} for criterion in self.query.identifiers]
        return json.dumps({"query": fields, "identifier": identifier, "identifiers": criteria,
                           "domains": list(self.domains),
                           "query_xml": base64.b64encode(self.query_xml).decode("ascii"), "quantity": self.quantity,
                           "total": self.total, "served": self.served, "after": self.after_patient_id}).encode()

    @classmethod
    def load(cls, data: bytes) -> "Paging":
        state = json.loads(data)
        identifier = CX(**state["identifier"]) if state["identifier"] else None
        criteria = tuple(IdentifierCriterion(value=item["value"], authority=Authority(**item["authority"])
                                             if item["authority"] else None) for item in state["identifiers"])
        return cls(query=PatientQuery(**state["query"], identifier=identifier, identifiers=criteria),
                   domains=tuple(state["domains"]),
                   query_xml=base64.b64decode(state["query_xml"]), quantity=state["quantity"], total=state["total"],
                   served=state["served"], after_patient_id=state["after"])


def continuation_token(query_id: InstanceId) -> str:
    """The continuation row's key: the consumer names its query by queryId, so the key derives from it."""
    return hashlib.sha256(f"{CONTINUATION_KIND}|{query_id.root}|{query_id.extension}".encode()).hexdigest()


class _Pointers:
    """Continuation rows of ITI-47, keyed by :func:`continuation_token`.

    Reads lock the row (FOR UPDATE on PostgreSQL; SQLite's write transaction serialises anyway), so two workers
    never serve the same page twice. Creating a row with a chosen key and the locked read are done here on the
    unit of work's session, the repository's ``create`` drawing a random key; replace and cancel use it.
    """

    def __init__(self, uow: Any, minutes: int) -> None:
        self.uow, self.session, self.ttl = uow, uow.session, timedelta(minutes=minutes)

    def open(self, token: str, paging: Paging) -> None:
        self.uow.continuations.cancel(token)
        now = utcnow()
        self.session.add(Continuation(token=token, kind=CONTINUATION_KIND, state=paging.dump(), created_at=now,
                                      expires_at=now + self.ttl))

    def take(self, token: str) -> Paging | None:
        row = _locked(self.session, token)
        if row is None or row.kind != CONTINUATION_KIND or row.expires_at < utcnow():
            return None
        return Paging.load(row.state)

    def save(self, token: str, paging: Paging) -> None:
        self.uow.continuations.replace(token, paging.dump())

    def close(self, token: str) -> bool:
        return self.uow.continuations.cancel(token)


def _locked(session: Session, token: str) -> Continuation | None:
    return session.get(Continuation, token, with_for_update=True)


# -- search --------------------------------------------------------------------------------------------------------

def patient_query(query: PdqQuery) -> PatientQuery:
    parameters = query.parameters
    return PatientQuery(
        family_name=parameters.family_name, given_name=parameters.given_name, birth_name=parameters.birth_name,
        birth_date=parameters.birth_date, sex=parameters.sex,
        identifier=parameters.identifier.cx if parameters.identifier is not None else None,
        identifiers=tuple(IdentifierCriterion(value=located.cx.id, authority=Authority.of(located.cx))
                          for located in parameters.other_identifiers),
        street=parameters.street, city=parameters.city, postal_code=parameters.postal_code,
        country=parameters.country, phone=parameters.phone, mothers_maiden_name=parameters.mothers_maiden_name,
        fuzzy=parameters.minimum_degree_match is not None)


def _search(session: Session, query: PatientQuery, domains: Sequence[str], *, limit: int,
            after: int | None = None) -> list[PatientMatch]:
    return search_patients(session, query, domains=[domain_authority(oid) for oid in domains], limit=limit,
                           after_patient_id=after)


def patient_view(match: PatientMatch) -> PatientView:
    """A search match as the answer shows it."""
    traits = match.traits
    given = (traits.given_name or "", *(traits.given_names or "").split())
    given = tuple(part for part in given if part)
    names = []
    if traits.family_name or given:
        names.append(PersonName(family=(traits.family_name,) if traits.family_name else (), given=given, use="L"))
    if traits.birth_name and traits.birth_name != traits.family_name:
        names.append(PersonName(given=given[:1], birth_family=(traits.birth_name,)))
    address = Address(street_lines=(traits.street,) if traits.street else (), city=traits.city or "",
                      postal_code=traits.postal_code or "", state=traits.state or "", country=traits.country or "",
                      use="H")
    return PatientView(
        identifiers=match.identifiers, names=tuple(names), gender=traits.sex or "", birth_time=traits.birth_date or "",
        addresses=(address,) if address != Address(use="H") else (),
        telecoms=(Telecom(f"tel:{traits.phone}", "HP"),) if traits.phone else (),
        score=round(match.score * 100) if match.score is not None else 100)


# -- handlers ------------------------------------------------------------------------------------------------------

class _PdqHandler(V3Handler):
    transaction = "ITI-47"

    def _record(self, request: SoapRequest, transmission: Transmission, query_id: InstanceId,
                query_xml: bytes | None, patients: Sequence[CX], outcome: int, description: str | None
                ) -> AuditRecord:
        objects = [patient_object(cx, transmission) for cx in patients]
        objects.append(query_object(ITI47_EVENT_TYPE, query_id, query_xml, transmission))
        return AuditRecord(event_id=QUERY, action="E", event_types=(ITI47_EVENT_TYPE,), outcome=outcome,
                           outcome_description=description, participants=participants(request, self.process_id),
                           objects=tuple(objects), transaction=self.transaction)

    def _answer(self, request: SoapRequest, transmission: Transmission, query_id: InstanceId,
                query_xml: bytes | None, matches: Sequence[PatientMatch], counts: QueryCounts) -> etree._Element:
        self.emit([self._record(request, transmission, query_id, query_xml,
                                [match.identifiers[0] for match in matches], OUTCOME_SUCCESS, None)])
        return pdq_answer(transmission, query_id=query_id, query_xml=query_xml, ack_code="AA",
                          query_code="OK" if matches else "NF", patients=[patient_view(m) for m in matches],
                          counts=counts)

    def _refusal(self, request: SoapRequest, transmission: Transmission, query_id: InstanceId,
                 query_xml: bytes | None, refusal: V3Refusal, outcome: int) -> etree._Element:
        self.emit([self._record(request, transmission, query_id, query_xml, (), outcome, str(refusal))])
        return pdq_answer(transmission, query_id=query_id, query_xml=query_xml, ack_code=refusal.ack_code,
                          query_code=refusal.query_code, details=refusal.details)


class Iti47Query(_PdqHandler):
    body_tags = (_QUERY,)

    def handle(self, request: SoapRequest, payload: etree._Element, transmission: Transmission) -> etree._Element:
        query: PdqQuery | None = None
        try:
            query = parse_pdq_query(payload)
            with self.runtime.uow(readonly=True) as uow:  # the search takes no write lock
                matches, paging = self._search(uow, query, _parameters_location(payload))
            if query.initial_quantity is not None:  # a paged query: a new one under its queryId starts over
                self._keep(query, paging)
        except V3Refusal as refusal:
            return self._refused_query(request, transmission, payload, query, refusal, OUTCOME_REFUSED)
        except Exception as exc:  # storage down, a bug: AE 207
            return self._refused_query(request, transmission, payload, query,
                                       internal_refusal(self.transaction, exc), OUTCOME_INTERNAL)
        page = matches[:paging.served] if paging is not None else matches
        counts = QueryCounts(total=len(matches), current=len(page), remaining=len(matches) - len(page))
        return self._answer(request, transmission, query.query_id, query.query_xml, page, counts)

    def refused(self, request: SoapRequest, transmission: Transmission, refusal: V3Refusal) -> etree._Element:
        return self._refusal(request, transmission, read_query_id(request.payload), None, refusal, OUTCOME_REFUSED)

    def _refused_query(self, request: SoapRequest, transmission: Transmission, payload: etree._Element,
                       query: PdqQuery | None, refusal: V3Refusal, outcome: int) -> etree._Element:
        if query is None:
            return self._refusal(request, transmission, read_query_id(payload), None, refusal, outcome)
        return self._refusal(request, transmission, query.query_id, query.query_xml, refusal, outcome)

    def _keep(self, query: PdqQuery, paging: Paging | None) -> None:
        """Store the paging state under the queryId (or drop an older query's, when all matches fit)."""
        token = continuation_token(query.query_id)
        with self.runtime.uow() as uow:
            pointers = _Pointers(uow, self.settings.continuation_minutes)
            if paging is not None:
                pointers.open(token, paging)
            else:
                pointers.close(token)
            uow.commit()

    def _search(self, uow: Any, query: PdqQuery, parameters_location: str
                ) -> tuple[list[PatientMatch], Paging | None]:
        """Every match, and the paging state to keep when they do not fit in ``initialQuantity``."""
        search = patient_query(query)
        if search.is_empty:
            raise V3Refusal.one(REQUIRED_MISSING, "the query has no parameter to match patients on",
                                parameters_location, query_code="QE")
        unknown = [domain for domain in query.domains if not is_known_domain(
            uow.session, domain_authority(domain.oid), configured=[domain_authority(oid) for oid in
                                                                   self.settings.known_domains])]
        if unknown:
            raise V3Refusal([AckDetail(UNKNOWN_KEY, f"domain {domain.oid} is not known", domain.location)
                             for domain in unknown])
        domains = tuple(domain.oid for domain in query.domains)
        limit = self.settings.max_matches
        try:
            matches = _search(uow.session, search, domains, limit=limit + 1)
        except QueryRefused as refusal:
            raise V3Refusal.one(DATA_TYPE_ERROR, str(refusal), parameters_location, query_code="QE") from None
        if len(matches) > limit:
            raise V3Refusal([AckDetail("", f"more than {limit} patients match: narrow the query",
                                       parameters_location)], query_code="QE")
        quantity = query.initial_quantity
        if quantity is None or len(matches) <= quantity:
            return matches, None
        return matches, Paging(query=search, domains=domains, query_xml=query.query_xml, quantity=quantity,
                               total=len(matches), served=quantity, after_patient_id=matches[quantity - 1].patient_id)


class Iti47Continue(_PdqHandler):
    body_tags = (_CONTINUE,)

    def handle(self, request: SoapRequest, payload: etree._Element, transmission: Transmission) -> etree._Element:
        control: QueryControl | None = None
        query_xml: bytes | None = None
        try:
            control = parse_query_control(payload, cancel=False)
            with self.runtime.uow() as uow:
                paging, matches = self._next_page(uow, control)
                uow.commit()
            query_xml = paging.query_xml
        except V3Refusal as refusal:
            return self._refusal(request, transmission, _control_query_id(control), query_xml, refusal,
                                 OUTCOME_REFUSED)
        except Exception as exc:  # storage down, a bug: AE 207
            return self._refusal(request, transmission, _control_query_id(control), query_xml,
                                 internal_refusal(self.transaction, exc), OUTCOME_INTERNAL)
        counts = QueryCounts(total=paging.total, current=len(matches), remaining=paging.total - paging.served)
        return self._answer(request, transmission, control.query_id, paging.query_xml, matches, counts)

    def refused(self, request: SoapRequest, transmission: Transmission, refusal: V3Refusal) -> etree._Element:
        return self._refusal(request, transmission, InstanceId(null_flavor="UNK"), None, refusal, OUTCOME_REFUSED)

    def _next_page(self, uow: Any, control: QueryControl) -> tuple[Paging, list[PatientMatch]]:
        pointers = _Pointers(uow, self.settings.continuation_minutes)
        token = continuation_token(control.query_id)
        paging = pointers.take(token)
        if paging is None:
            raise V3Refusal.one(UNKNOWN_KEY, "no query to continue under this queryId (ended, cancelled or "
                                             "expired)", control.query_id_location)
        quantity = control.quantity or paging.quantity
        matches = _search(uow.session, paging.query, paging.domains, limit=quantity, after=paging.after_patient_id)
        served = min(paging.served + len(matches), paging.total)
        if len(matches) < quantity:
            served = paging.total  # the store lost matches since the first page: nothing more to send
        paging = replace(paging, served=served,
                         after_patient_id=matches[-1].patient_id if matches else paging.after_patient_id)
        if paging.served >= paging.total:
            pointers.close(token)
        else:
            pointers.save(token, paging)
        return paging, matches


class Iti47Cancel(_PdqHandler):
    """QUQI_IN000003UV01_Cancel (the committee WSDL's element), or a QUQI_IN000003UV01 sent with its action."""

    body_tags = (_CANCEL, _CONTINUE)

    def handle(self, request: SoapRequest, payload: etree._Element, transmission: Transmission) -> etree._Element:
        control: QueryControl | None = None
        try:
            control = parse_query_control(payload, cancel=True)
            with self.runtime.uow() as uow:
                found = _Pointers(uow, self.settings.continuation_minutes).close(
                    continuation_token(control.query_id))
                uow.commit()
            if not found:
                raise V3Refusal.one(UNKNOWN_KEY, "no query to cancel under this queryId (ended, cancelled or "
                                                 "expired)", control.query_id_location)
        except V3Refusal as refusal:
            return self._refused_cancel(request, transmission, control, refusal, OUTCOME_REFUSED)
        except Exception as exc:  # storage down, a bug: AE 207
            return self._refused_cancel(request, transmission, control, internal_refusal(self.transaction, exc),
                                        OUTCOME_INTERNAL)
        self.emit([self._record(request, transmission, control.query_id, None, (), OUTCOME_SUCCESS, None)])
        return ack_message(transmission, "AA")

    def refused(self, request: SoapRequest, transmission: Transmission, refusal: V3Refusal) -> etree._Element:
        return self._refused_cancel(request, transmission, None, refusal, OUTCOME_REFUSED)

    def _refused_cancel(self, request: SoapRequest, transmission: Transmission, control: QueryControl | None,
                        refusal: V3Refusal, outcome: int) -> etree._Element:
        self.emit([self._record(request, transmission, _control_query_id(control), None, (), outcome,
                                str(refusal))])
        return ack_message(transmission, refusal.ack_code, refusal.details)


def _control_query_id(control: QueryControl | None) -> InstanceId:
    return control.query_id if control is not None else InstanceId(null_flavor="UNK")


def _parameters_location(payload: etree._Element) -> str:
    return f"/{etree.QName(payload).localname}/controlActProcess[1]/queryByParameter[1]/parameterList[1]"


def iti47_operations(runtime: Any, settings: Hl7v3Settings | None = None) -> list[Operation]:
    """The PDQ Supplier's three operations: query, continue, cancel."""
    answer, ack = f"{ACTION_PREFIX}{_ANSWER}", f"{ACTION_PREFIX}MCCI_IN000002UV01"
    return [Operation(f"{ACTION_PREFIX}{_QUERY}", answer, Iti47Query(runtime, settings), transaction="ITI-47"),
            Operation(f"{ACTION_PREFIX}{_CONTINUE}_Continue", answer, Iti47Continue(runtime, settings),
                      transaction="ITI-47"),
            Operation(f"{ACTION_PREFIX}{_CANCEL}", ack, Iti47Cancel(runtime, settings), transaction="ITI-47")]
