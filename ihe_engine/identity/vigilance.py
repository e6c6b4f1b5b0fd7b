"""Identity vigilance: the queue of identity questions a person decides, and the decisions.

Items (``vigilance_item``) are opened by the linking policy (two patients that may be one person: *possible
match*) and by merges (a survivor to look at because a national identifier stayed behind: *review*). A person
works through them with ``ihe-engine identity queue list|accept|reject`` or the HTTP JSON API
(:mod:`ihe_engine.web.identity_api`):

* accept a possible match: the two persons are linked (the newer record's identifiers join the older person,
  recorded so an A37 can undo it); accept a review: acknowledged;
* reject: nothing changes, and the pair is remembered -- the policy never proposes it again (``pair_key``).

Who decided and when is kept on the item, the decision is written to the patient's history and audited (ATNA
Patient Record, after commit). :class:`VigilanceDesk` is the one service the CLI and the HTTP API share; its
methods are blocking (run them in ``runtime.run_blocking`` from the reactor).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from sqlalchemy import bindparam, or_, select
from sqlalchemy.orm import Session

from ..audit import AuditRecord, Participant, ParticipantObject
from ..storage.base import utcnow
from .cx import CX, CXError
from .store import FeedEvent, IdentityRefusal, IdentityStore
from .tables import IdentityEvent, Patient, VigilanceItem, VigilanceKind, VigilanceStatus

if TYPE_CHECKING:
    from ..audit import AuditHook
    from ..storage import UnitOfWork
    from .linking import CrossReferences

__all__ = ["VigilanceQueue", "VigilanceDesk", "VigilanceError", "pair_key", "item_as_dict"]

PATIENT_RECORD = ("110110", "DCM", "Patient Record")
_PATIENT_NUMBER = ("2", "RFC-3881", "Patient Number")
ACCEPT_EVENT, REJECT_EVENT = "vigilance-accept", "vigilance-reject"


class VigilanceError(Exception):
    """A decision that cannot be made; ``status`` is the HTTP status an API answers with."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


def pair_key(patient_id: int, other_patient_id: int) -> str:
    """The same two patients, whichever order they are proposed in."""
    low, high = sorted((patient_id, other_patient_id))
    return f"{low}:{high}"


class VigilanceQueue:
    """The ``vigilance_item`` repository over one session (flushes, never commits)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def propose(self, patient_id: int, other_patient_id: int, reason: str, *,
                details: dict[str, Any] | None = None) -> int | None:
        """Open a possible match, unless this pair was ever proposed (open, accepted or rejected): None then."""
        key = pair_key(patient_id, other_patient_id)
        seen = self.session.connection().execute(_PROPOSED_PAIR, {"pair_key": key}).first()
        if seen is not None:
            return None
        return self._open(VigilanceKind.POSSIBLE_MATCH, patient_id, other_patient_id, reason, details, key)

    def review(self, patient_id: int, other_patient_id: int | None, reason: str, *,
               details: dict[str, Any] | None = None) -> int:
        """Flag a patient for a person to look at."""
        return self._open(VigilanceKind.REVIEW, patient_id, other_patient_id, reason, details, None)

    def items(self, *, status: str | None = VigilanceStatus.OPEN, limit: int = 100,
              after_id: int = 0) -> list[VigilanceItem]:
        query = select(VigilanceItem).where(VigilanceItem.id > after_id)
        if status is not None:
            query = query.where(VigilanceItem.status == status)
        return list(self.session.scalars(query.order_by(VigilanceItem.id).limit(limit)))

    def get(self, item_id: int) -> VigilanceItem | None:
        return self.session.get(VigilanceItem, item_id)

    def for_patient(self, patient_id: int) -> list[VigilanceItem]:
        return list(self.session.scalars(select(VigilanceItem).where(or_(
            VigilanceItem.patient_id == patient_id, VigilanceItem.other_patient_id == patient_id))
            .order_by(VigilanceItem.id)))

    def _open(self, kind: str, patient_id: int, other_patient_id: int | None, reason: str,
              details: dict[str, Any] | None, key: str | None) -> int:
        """One INSERT on the session's connection: a feed opens items on its hot path, where an ORM flush costs
        more than the insert itself."""
        return self.session.connection().execute(_INSERT_ITEM, dict(
            kind=kind, status=VigilanceStatus.OPEN, patient_id=patient_id, other_patient_id=other_patient_id,
            pair_key=key, reason=reason[:400], details=json.dumps(details or {}, ensure_ascii=False, sort_keys=True),
        )).scalar_one()


_PROPOSED_PAIR = select(VigilanceItem.id).where(
    VigilanceItem.pair_key == bindparam("pair_key"), VigilanceItem.kind == VigilanceKind.POSSIBLE_MATCH).limit(1)
_INSERT_ITEM = VigilanceItem.__table__.insert().returning(VigilanceItem.__table__.c.id)


@dataclass(frozen=True, kw_only=True)
class VigilanceDesk:
    """List, accept and reject vigilance items, and show a patient's history (blocking; one unit of work each).

    ``uow``: opens a unit of work; ``xref``: builds the :class:`CrossReferences` (policy, rules, ITI-10
    notifier) over a session; ``audit``: the hook decisions are reported to after commit.
    """

    uow: Callable[..., "UnitOfWork"]
    xref: Callable[[Session], "CrossReferences"]
    audit: "AuditHook | None" = None

    @classmethod
    def from_settings(cls, settings: Any, uow: Callable[..., "UnitOfWork"],
                      audit: "AuditHook | None") -> "VigilanceDesk":
        """The desk the engine's configuration implies: its linking policy, identity rules and PIX consumers."""
        from .hl7v3.iti46 import pix_notifier
        from .linking import CrossReferences, load_linking_policy
        from .rules import load_identity_rules

        policy, rules, notifier = load_linking_policy(settings), load_identity_rules(settings), \
            pix_notifier(settings)
        return cls(uow=uow, audit=audit,
                   xref=lambda session: CrossReferences(session, policy=policy, rules=rules, notifier=notifier))

    def list_items(self, *, status: str | None = VigilanceStatus.OPEN, limit: int = 100,
                   after_id: int = 0) -> list[dict[str, Any]]:
        if status is not None and status not in (VigilanceStatus.OPEN, VigilanceStatus.ACCEPTED,
                                                 VigilanceStatus.REJECTED):
            raise VigilanceError(f"status must be open, accepted or rejected, not {status!r}", status=400)
        with self.uow(readonly=True) as uow:
            store = IdentityStore(uow.session)
            return [item_as_dict(item, store) for item in
                    VigilanceQueue(uow.session).items(status=status, limit=limit, after_id=after_id)]

    def decide(self, item_id: int, *, accept: bool, by: str) -> dict[str, Any]:
        """Accept or reject one open item; the change, its history and its audit commit together."""
        if not by:
            raise VigilanceError("a decision needs the name of who decides", status=400)
        with self.uow() as uow:
            session = uow.session
            item = VigilanceQueue(session).get(item_id)
            if item is None:
                raise VigilanceError(f"vigilance item {item_id} does not exist", status=404)
            if item.status != VigilanceStatus.OPEN:
                raise VigilanceError(f"vigilance item {item_id} was already {item.status}", status=409)
            xref = self.xref(session)
            moved: list[str] = []
            if accept and item.kind == VigilanceKind.POSSIBLE_MATCH and item.other_patient_id is not None:
                event = FeedEvent(kind="link", sending_application=by[:227],
                                  details={"vigilance_item": item.id})
                try:
                    moved = [str(cx) for cx in xref.link(item.other_patient_id, item.patient_id, event,
                                                          reason=item.reason)]
                except IdentityRefusal as exc:
                    raise VigilanceError(f"cannot link: {exc}", status=409) from None
            item.status = VigilanceStatus.ACCEPTED if accept else VigilanceStatus.REJECTED
            item.decided_at, item.decided_by = utcnow(), by[:200]
            store = IdentityStore(session)
            store.record_event(FeedEvent(kind=ACCEPT_EVENT if accept else REJECT_EVENT,
                                         sending_application=by[:227]),
                               _current(session, item.patient_id), other_patient_id=item.other_patient_id,
                               details={"vigilance_item": item.id, "kind": item.kind, "moved": moved})
            answer = item_as_dict(item, store)
            if self.audit is not None:
                from .linking import audit_after_commit

                audit_after_commit(session, self.audit, [_decision_record(answer, accept, by)])
            uow.commit()
        return answer

    def history(self, text: str) -> dict[str, Any]:
        """Everything that happened to the person ``text`` (a CX) designates, oldest first."""
        try:
            cx = CX.from_hl7(text)
        except CXError as exc:
            raise VigilanceError(f"not a patient identifier (CX): {exc}", status=400) from None
        with self.uow(readonly=True) as uow:
            store = IdentityStore(uow.session)
            resolved = store.resolve(cx)
            if resolved is None:
                raise VigilanceError(f"{cx} is not known", status=404)
            events = store.history(resolved.patient_id)
            items = VigilanceQueue(uow.session).for_patient(resolved.patient_id)
            return {"identifier": str(cx), "state": str(resolved.state), "patient_id": resolved.patient_id,
                    "identifiers": [str(one) for one in store.identifiers_of(resolved.patient_id)],
                    "events": [_event_as_dict(event) for event in events],
                    "vigilance": [item_as_dict(item, store) for item in items]}


def item_as_dict(item: VigilanceItem, store: IdentityStore) -> dict[str, Any]:
    """One item as the CLI and the API show it, with the identifiers of both patients."""
    return {"id": item.id, "kind": item.kind, "status": item.status, "reason": item.reason,
            "patient_id": item.patient_id, "patient_identifiers": _identifiers(store, item.patient_id),
            "other_patient_id": item.other_patient_id,
            "other_patient_identifiers": _identifiers(store, item.other_patient_id),
            "details": json.loads(item.details or "{}"),
            "created_at": item.created_at.isoformat() if item.created_at else None,
            "decided_at": item.decided_at.isoformat() if item.decided_at else None, "decided_by": item.decided_by}


def _identifiers(store: IdentityStore, patient_id: int | None) -> list[str]:
    if patient_id is None:
        return []
    return [str(cx) for cx in store.identifiers_of(_current(store.session, patient_id))]


def _current(session: Session, patient_id: int) -> int:
    """The active person a record now is (it may have been merged or linked since the item was opened)."""
    patient = session.get(Patient, patient_id)
    if patient is not None and patient.merged_into_id is not None:
        return patient.merged_into_id
    return patient_id


def _event_as_dict(event: IdentityEvent) -> dict[str, Any]:
    return {"id": event.id, "kind": event.kind, "occurred_at": event.occurred_at.isoformat(),
            "patient_id": event.patient_id, "other_patient_id": event.other_patient_id,
            "sending_application": event.sending_application, "sending_facility": event.sending_facility,
            "control_id": event.control_id, "details": json.loads(event.details or "{}")}


def _decision_record(item: dict[str, Any], accept: bool, by: str) -> AuditRecord:
    """ATNA Patient Record (U): the person who decided, and the patients concerned."""
    objects = tuple(ParticipantObject(object_id=identifiers[0], type_code=1, type_code_role=1,
                                      id_type=_PATIENT_NUMBER,
                                      details=(("vigilance-item", str(item["id"]).encode()),))
                    for identifiers in (item["patient_identifiers"], item["other_patient_identifiers"])
                    if identifiers)
    return AuditRecord(event_id=PATIENT_RECORD, action="U", outcome=0,
                       outcome_description=f"identity vigilance item {item['id']} "
                                           f"{'accepted' if accept else 'rejected'}",
                       participants=(Participant(user_id=by, is_requestor=True),), objects=objects,
                       transaction="identity-vigilance")
