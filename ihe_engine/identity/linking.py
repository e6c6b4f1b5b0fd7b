"""Cross-referencing: which person an incoming identity belongs to, and the changes that link or split persons.

A ``patient`` row is one person; its identifiers are every id linked to that person. This module decides and
applies changes of that grouping; the store (:mod:`ihe_engine.identity.store`) keeps rows consistent.

The decision is a pluggable :class:`LinkingPolicy` (``identity_linking`` in the config file: ``"default"``,
``"manual"``, or ``"package.module:factory"``). It is asked only when a feed brings a record whose local
identifiers are unknown (a new record) or whose national identifier (the INS) another person already holds, and
answers *link* (same person), *new* (another person) or *review* (another person, and a vigilance item for a
person to decide). The :class:`DefaultLinkingPolicy`:

* same national identifier, PID-32 qualified (as the identity rules say) and no strict trait differing -> link;
* same national identifier otherwise (not qualified, traits differ, or the same domain twice) -> review;
* all five strict traits (birth name, first given name, birth date, sex, birthplace) equal, different
  domains -> link;
* same birth date and similar names -> review; else new.

Candidates come from :meth:`IdentityStore.lookup` (one query with the identifier lookup itself, through the
birth date index, blocked on the initial of the birth or used name), so the policy never scans and a new record
costs no extra round trip; a near match whose names differ in their first letter is not proposed. A national identifier another person holds is never attached to a
second person: when the answer is not *link* the feed is stored without it and the pair goes to review.

Changes (:class:`CrossReferences`): link two persons (A24, accepted vigilance items) moves the identifiers of one
to the other and records which moved, so an unlink (A37) can move exactly those back out to a new person; a
merge (A40, within one domain) moves the subsumed record's other-domain identifiers to the survivor but never a
national identifier -- the survivor keeps only what it held and is flagged for review (a rule of French regional
identity policy); a change of identifier (A47) retires the old id and adds the new one to the same person.
Each change tells the ``notifier`` (ITI-10) in the same transaction.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Protocol, Sequence, runtime_checkable

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from ..errors import ConfigurationError
from .cx import CX, IdentifierKey
from .rules import IdentityRules, NoIdentityRules
from .store import (Demographics, FeedEvent, FeedLookup, FeedResult, IdentifierState, IdentityRefusal,
                    IdentityStore, MergeResult, Refusal, identifier_state, search_key)
from .tables import IdentifierStatus, IdentityEvent, Patient, PatientIdentifier, PatientStatus

if TYPE_CHECKING:
    from ..audit import AuditHook, AuditRecord

__all__ = ["Traits", "IncomingRecord", "KnownPerson", "Outcome", "LinkDecision", "LinkingPolicy",
           "DefaultLinkingPolicy", "ManualLinkingPolicy", "load_linking_policy", "similar_names", "CrossReferences",
           "FeedOutcome", "Notifier", "audit_after_commit", "LINK_EVENT", "UNLINK_EVENT"]

LINK_EVENT, UNLINK_EVENT = "link", "unlink"
_LINK_KINDS = frozenset({LINK_EVENT, "A24"})


# -- what the policy sees ----------------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True, slots=True)
class Traits:
    """The traits identity vigilance compares, as keys (uppercase, no accents) so spelling noise does not count."""

    birth_name: str | None = None
    family_name: str | None = None
    given_name: str | None = None
    birth_date: str | None = None
    sex: str | None = None
    birthplace: str | None = None

    STRICT = ("birth_name", "given_name", "birth_date", "sex", "birthplace")

    @classmethod
    def of(cls, source: Any) -> "Traits":
        """From :class:`Demographics` or a ``patient`` row (same attribute names)."""
        given = getattr(source, "given_name", None)
        return cls(birth_name=search_key(getattr(source, "birth_name", None)),
                   family_name=search_key(getattr(source, "family_name", None)),
                   given_name=search_key(given.split(" ")[0] if given else None),
                   birth_date=getattr(source, "birth_date", None) or None, sex=getattr(source, "sex", None) or None,
                   birthplace=search_key(getattr(source, "birthplace", None)))

    def merged_over(self, stored: "Traits") -> "Traits":
        """What the person's traits will be once this feed is applied (a trait not sent keeps the stored one)."""
        return Traits(**{name: getattr(self, name) or getattr(stored, name)
                         for name in ("birth_name", "family_name", "given_name", "birth_date", "sex", "birthplace")})

    def strict_equal(self, other: "Traits") -> bool:
        """All five strict traits known on both sides and equal."""
        return all(getattr(self, name) and getattr(self, name) == getattr(other, name) for name in self.STRICT)

    def strict_conflict(self, other: "Traits") -> list[str]:
        """Strict traits known on both sides that differ."""
        return [name for name in self.STRICT
                if getattr(self, name) and getattr(other, name) and getattr(self, name) != getattr(other, name)]

    def name_keys(self) -> set[str]:
        return {key for key in (self.birth_name, self.family_name) if key}


@dataclass(frozen=True, kw_only=True, slots=True)
class IncomingRecord:
    identifiers: tuple[CX, ...]
    traits: Traits
    national: tuple[CX, ...]
    qualified: bool

    @property
    def authorities(self) -> set[str]:
        national = {cx.key for cx in self.national}
        return {cx.authority_key for cx in self.identifiers if cx.key not in national}


@dataclass(frozen=True, kw_only=True, slots=True)
class KnownPerson:
    patient_id: int
    traits: Traits
    authorities: frozenset[str]


class Outcome(enum.StrEnum):
    NEW = "new"
    LINK = "link"
    REVIEW = "review"


@dataclass(frozen=True, kw_only=True, slots=True)
class LinkDecision:
    outcome: Outcome
    patient_id: int | None = None
    """The person to link to, or the one to review the record against."""
    reason: str = ""


NEW = LinkDecision(outcome=Outcome.NEW)


@runtime_checkable
class LinkingPolicy(Protocol):
    """Decides for one incoming record; pure (no storage), so policies are easy to write and test."""

    def decide(self, record: IncomingRecord, *, holder: KnownPerson | None,
               near: Sequence[KnownPerson]) -> LinkDecision:
        """``holder``: the person already holding the record's national identifier (None: nobody else does);
        ``near``: active persons born the same day, of the same or an unknown sex, whose birth or used name has
        the same initial (only for a new record)."""
        ...


class DefaultLinkingPolicy:
    """Link on a qualified national identifier or on all strict traits; send near matches to vigilance."""

    def decide(self, record: IncomingRecord, *, holder: KnownPerson | None,
               near: Sequence[KnownPerson]) -> LinkDecision:
        if holder is not None:
            return self._same_national_identifier(record, holder)
        for person in near:
            if record.traits.strict_equal(person.traits) and not record.authorities & person.authorities:
                return LinkDecision(outcome=Outcome.LINK, patient_id=person.patient_id,
                                    reason="the five strict traits agree")
        for person in near:
            if record.traits.strict_equal(person.traits):
                return LinkDecision(outcome=Outcome.REVIEW, patient_id=person.patient_id,
                                    reason="the strict traits agree but the domain already holds this person")
            if is_near(record.traits, person.traits):
                return LinkDecision(outcome=Outcome.REVIEW, patient_id=person.patient_id,
                                    reason="same birth date and similar names")
        return NEW

    @staticmethod
    def _same_national_identifier(record: IncomingRecord, holder: KnownPerson) -> LinkDecision:
        national = ", ".join(str(cx) for cx in record.national)
        if not record.qualified:
            return LinkDecision(outcome=Outcome.REVIEW, patient_id=holder.patient_id,
                                reason=f"same national identifier {national} without a qualified identity (PID-32)")
        differing = record.traits.strict_conflict(holder.traits)
        if differing:
            return LinkDecision(outcome=Outcome.REVIEW, patient_id=holder.patient_id,
                                reason=f"same national identifier {national} but {', '.join(differing)} differ")
        if record.authorities & holder.authorities:
            return LinkDecision(outcome=Outcome.REVIEW, patient_id=holder.patient_id,
                                reason=f"same national identifier {national} twice in one domain")
        return LinkDecision(outcome=Outcome.LINK, patient_id=holder.patient_id,
                            reason=f"same national identifier {national}, qualified identity")


class ManualLinkingPolicy:
    """Never link automatically: every candidate the default policy would link or propose goes to vigilance."""

    def decide(self, record: IncomingRecord, *, holder: KnownPerson | None,
               near: Sequence[KnownPerson]) -> LinkDecision:
        decision = DefaultLinkingPolicy().decide(record, holder=holder, near=near)
        if decision.outcome is Outcome.LINK:
            return dataclasses.replace(decision, outcome=Outcome.REVIEW)
        return decision


LINKING_POLICIES = {"default": DefaultLinkingPolicy, "manual": ManualLinkingPolicy}


def load_linking_policy(settings: Any) -> LinkingPolicy:
    """``identity_linking`` from the config file: a known name or ``package.module:factory``."""
    extra = getattr(settings, "extra", None) or {}
    name = extra.get("identity_linking", "default")
    if not isinstance(name, str):
        raise ConfigurationError(f"identity_linking must be a name, not {name!r}")
    if name in LINKING_POLICIES:
        return LINKING_POLICIES[name]()
    module_name, _, attribute = name.partition(":")
    if not attribute:
        raise ConfigurationError(f"unknown identity_linking {name!r}: choose {', '.join(LINKING_POLICIES)} "
                                 "or give package.module:factory")
    try:
        policy = getattr(importlib.import_module(module_name), attribute)()
    except Exception as exc:  # whatever the factory raises, the configuration is what is wrong
        raise ConfigurationError(f"identity_linking {name!r} cannot be loaded: {exc}") from None
    if not isinstance(policy, LinkingPolicy):
        raise ConfigurationError(f"identity_linking {name!r} has no decide(record, holder=, near=) method")
    return policy


def is_near(a: Traits, b: Traits) -> bool:
    """Same birth date (the caller's query), compatible sex and a similar birth or used name."""
    if a.sex and b.sex and a.sex != b.sex:
        return False
    return any(similar_names(x, y) for x in a.name_keys() for y in b.name_keys())


def similar_names(a: str | None, b: str | None) -> bool:
    """Name keys that are equal, one a prefix of the other, or one (two from 8 letters) typing errors apart;
    names of three letters or fewer must be equal."""
    if not a or not b:
        return False
    a, b = a.replace(" ", ""), b.replace(" ", "")
    if a == b:
        return True
    if min(len(a), len(b)) >= 3 and (a.startswith(b) or b.startswith(a)):
        return True
    longest = max(len(a), len(b))
    return longest > 3 and _edit_distance(a, b) <= (1 if longest < 8 else 2)


def _edit_distance(a: str, b: str) -> int:
    """Optimal string alignment distance (insertions, deletions, substitutions, adjacent transpositions)."""
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, start=1):
        current = [i] + [0] * len(b)
        for j, char_b in enumerate(b, start=1):
            cost = 0 if char_a == char_b else 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and char_a == b[j - 2] and a[i - 2] == char_b:
                current[j] = min(current[j], previous2[j - 2] + 1)
        previous2, previous = previous, current
    return previous[-1]


# -- applying changes --------------------------------------------------------------------------------------------

class Notifier(Protocol):
    """Told, inside the transaction, which persons' cross-references changed (ITI-10 enqueues A31s)."""

    def notify(self, session: Session, patient_ids: Iterable[int]) -> None: ...


@dataclass(frozen=True, kw_only=True, slots=True)
class FeedOutcome:
    result: FeedResult
    decision: LinkDecision
    vigilance_item_id: int | None = None
    withheld: tuple[CX, ...] = ()
    """National identifiers not attached because another person holds them (the pair went to review)."""


class CrossReferences:
    """Cross-referencing changes over one unit of work's session (flushes, never commits)."""

    def __init__(self, session: Session, *, policy: LinkingPolicy | None = None,
                 rules: IdentityRules | None = None, notifier: Notifier | None = None) -> None:
        from .vigilance import VigilanceQueue

        self.session = session
        self.store = IdentityStore(session)
        self.policy = policy or DefaultLinkingPolicy()
        self.rules = rules or NoIdentityRules()
        self.notifier = notifier
        self.vigilance = VigilanceQueue(session)

    # -- feeds -------------------------------------------------------------------------------------------------

    def feed(self, identifiers: Sequence[CX], demographics: Demographics, event: FeedEvent, *,
             removed_authorities: Iterable[str] = (), expect_new: bool = True) -> FeedOutcome:
        """Create or update the person ``identifiers`` designate, linking as the policy decides.

        National identifiers of an identity that is not qualified are not attached (French rule: the receiver
        drops such an INS); they still reveal a person holding the same one, and that pair goes to review.
        ``expect_new``: fetch near-match candidates in the same query (A01/A04/A05); an update (A08) skips them
        and asks again only if the record turns out to be new.
        """
        national = tuple(self.rules.national_identifiers(identifiers))
        national_keys = {cx.key for cx in national}
        local = [cx for cx in identifiers if cx.key not in national_keys]
        traits = Traits.of(demographics)
        lookup = self.store.lookup(identifiers, near_birth_date=demographics.birth_date if expect_new else None,
                                   near_initials=traits.name_keys(), near_sex=traits.sex)
        person = self.store.the_one_patient(local, lookup.known)
        left_behind = tuple(cx for cx in national if cx.key in lookup.known and identifier_state(
            lookup.known[cx.key][0].status, lookup.known[cx.key][1].status) is IdentifierState.SUBSUMED)
        usable_national = [cx for cx in national if cx not in left_behind]
        holder = self.store.the_one_patient(usable_national, lookup.known) if usable_national else None
        record = IncomingRecord(identifiers=tuple(identifiers), traits=traits, national=national,
                                qualified=self.rules.is_qualified(demographics.identity_reliability))
        if holder is not None and local and (person is None or holder.id != person.id):
            return self._national_held_elsewhere(record, person, holder, demographics, event, removed_authorities)
        # a national id a merge left behind waits for its review: the feed goes on without it
        unusable = (national if not record.qualified else left_behind) if local else ()
        attach = [cx for cx in identifiers if cx not in unusable]
        if person is None and holder is None:
            return self._new_record(record, attach, lookup, demographics, event, removed_authorities, expect_new,
                                    unusable)
        result = self.store.create_or_update(attach, demographics, _with(event, NEW, withheld=unusable),
                                             removed_authorities=removed_authorities, known=lookup.known)
        self._notify_feed(result, len(attach))
        return FeedOutcome(result=result, decision=NEW, withheld=unusable)

    def _new_record(self, record: IncomingRecord, attach: list[CX], lookup: FeedLookup,
                    demographics: Demographics, event: FeedEvent, removed: Iterable[str], expect_new: bool,
                    unusable: tuple[CX, ...]) -> FeedOutcome:
        if not expect_new and demographics.birth_date and record.traits.name_keys():
            near_rows = self.store.lookup([], near_birth_date=demographics.birth_date,
                                          near_initials=record.traits.name_keys(), near_sex=record.traits.sex).near
            lookup = FeedLookup(known=lookup.known, near=near_rows)
        near = [KnownPerson(patient_id=patient.id, traits=Traits.of(patient),
                            authorities=frozenset(row.authority_key for row in rows))
                for patient, rows in lookup.near.values()]
        decision = self.policy.decide(record, holder=None, near=near)
        link_to = decision.patient_id if decision.outcome is Outcome.LINK else None
        result = self.store.create_or_update(attach, demographics, _with(event, decision, withheld=unusable),
                                             removed_authorities=removed, known=lookup.known, link_to=link_to)
        item_id = None
        if decision.outcome is Outcome.REVIEW and decision.patient_id is not None:
            item_id = self.vigilance.propose(result.patient_id, decision.patient_id, decision.reason)
        self._notify_feed(result, len(attach), linked=link_to is not None)
        return FeedOutcome(result=result, decision=decision, vigilance_item_id=item_id, withheld=unusable)

    def _national_held_elsewhere(self, record: IncomingRecord, person: Patient | None, holder: Patient,
                                 demographics: Demographics, event: FeedEvent,
                                 removed: Iterable[str]) -> FeedOutcome:
        if person is not None:  # the person's traits once this feed is applied are what faces the holder's
            record = dataclasses.replace(record, traits=record.traits.merged_over(Traits.of(person)))
        holder_person = KnownPerson(patient_id=holder.id, traits=Traits.of(holder),
                                    authorities=frozenset(cx.authority_key for cx in
                                                          self.store.identifiers_of(holder.id)))
        decision = self.policy.decide(record, holder=holder_person, near=())
        if decision.outcome is Outcome.LINK:
            if person is not None:
                self.link(holder.id, person.id, _with(event, decision, kind=LINK_EVENT), reason=decision.reason)
            result = self.store.create_or_update(record.identifiers, demographics, _with(event, decision),
                                                 removed_authorities=removed)
            self._notify_feed(result, len(record.identifiers), linked=True)
            return FeedOutcome(result=result, decision=decision)
        withheld = record.national
        kept = [cx for cx in record.identifiers if cx not in withheld]
        result = self.store.create_or_update(kept, demographics, _with(event, decision, withheld=withheld),
                                             removed_authorities=removed)
        item_id = self.vigilance.propose(result.patient_id, holder.id, decision.reason or "same national identifier",
                                         details={"withheld": [str(cx) for cx in withheld]})
        self._notify_feed(result, len(kept))
        return FeedOutcome(result=result, decision=decision, vigilance_item_id=item_id, withheld=withheld)

    def _notify_feed(self, result: FeedResult, identifier_count: int, *, linked: bool = False) -> None:
        """Cross-references changed: a new person with several ids, ids added to or removed from a person."""
        if linked or (result.created and identifier_count > 1) or (not result.created and result.added) \
                or result.deactivated:
            self.notify([result.patient_id])

    # -- link / unlink -----------------------------------------------------------------------------------------

    def link(self, keep_patient_id: int, other_patient_id: int, event: FeedEvent, *, reason: str = "") -> list[CX]:
        """Make ``other`` part of ``keep``: its identifiers move (recorded, so an unlink can move them back)."""
        keep, other = self._active(keep_patient_id), self._active(other_patient_id)
        if keep.id == other.id:
            return []
        moving = self._rows_of(other.id)
        self._refuse_two_national_identities(keep.id, moving)
        self.session.execute(update(PatientIdentifier).where(PatientIdentifier.id.in_([row.id for row in moving]))
                             .values(patient_id=keep.id).execution_options(synchronize_session="fetch"))
        self._point_at(other.id, keep.id, PatientStatus.LINKED)
        moved = [_cx(row) for row in moving]
        self.store.record_event(event, keep.id, other_patient_id=other.id,
                                details={"moved": [list(cx.key) for cx in moved],
                                         "identifiers": [str(cx) for cx in moved], "reason": reason,
                                         **event.details})
        self.notify([keep.id])
        return moved

    def unlink(self, keep: CX, split: CX, event: FeedEvent, *, demographics: Demographics | None = None) -> int:
        """Move ``split``'s record out of the person ``keep`` designates, to a new person; returns its id.

        What moves: the identifiers the link that brought ``split`` in moved, or, when ``split`` was never
        linked in (both came in one feed), the person's identifiers in ``split``'s domain.
        """
        kept, gone = self.resolve_active(keep), self.resolve_active(split)
        if kept.patient_id != gone.patient_id:
            raise IdentityRefusal(f"{split} is not linked to {keep}", reason=Refusal.DIFFERENT_PATIENTS,
                                  identifier=split)
        person = kept.patient_id
        moving = self._linked_in_with(person, split)
        if keep.key in {IdentifierKey(row.authority_key, row.value) for row in moving}:
            raise IdentityRefusal(f"{keep} and {split} are in one record: there is nothing to unlink",
                                  reason=Refusal.SAME_IDENTIFIER, identifier=split)
        split_off = Patient(status=PatientStatus.ACTIVE)
        self.session.add(split_off)
        self.session.flush()
        self.session.execute(update(PatientIdentifier).where(PatientIdentifier.id.in_([row.id for row in moving]))
                             .values(patient_id=split_off.id).execution_options(synchronize_session="fetch"))
        # the new person's traits: those the unlink message sent, else a copy of the person's (through the store,
        # so every search key is written as for any feed)
        self.store.create_or_update([_cx(row) for row in moving if row.status == IdentifierStatus.ACTIVE],
                                    demographics or _demographics_of(self.session.get(Patient, person)), event)
        self.store.record_event(event, person, other_patient_id=split_off.id,
                                details={"moved": [[row.authority_key, row.value] for row in moving],
                                         "identifiers": [str(_cx(row)) for row in moving], **event.details})
        self.notify([person, split_off.id])
        return split_off.id

    # -- merge and identifier change ---------------------------------------------------------------------------

    def merge(self, survivor: CX, subsumed: CX, event: FeedEvent) -> tuple[MergeResult, int | None]:
        """A40 within one domain; the subsumed record's other-domain ids follow, its national ids never do.

        Returns the merge and the id of the review item opened when national identifiers stayed behind.
        """
        result = self.store.merge(survivor, subsumed, event)
        item_id = None
        if result.subsumed_patient_id != result.survivor_patient_id:
            rows = self._rows_of(result.subsumed_patient_id, active_only=True)
            national = {cx.key for cx in self.rules.national_identifiers([_cx(row) for row in rows])}
            following = [row for row in rows if IdentifierKey(row.authority_key, row.value) not in national]
            if following:
                self.session.execute(
                    update(PatientIdentifier).where(PatientIdentifier.id.in_([row.id for row in following]))
                    .values(patient_id=result.survivor_patient_id).execution_options(synchronize_session="fetch"))
            left = [str(_cx(row)) for row in rows if IdentifierKey(row.authority_key, row.value) in national]
            if left:
                item_id = self.vigilance.review(
                    result.survivor_patient_id, result.subsumed_patient_id,
                    f"merge of {subsumed} into {survivor}: national identifier {', '.join(left)} of the subsumed "
                    "record was not carried over; the survivor keeps only its own", details={"left": left})
        self.notify([result.survivor_patient_id])
        return result, item_id

    def change_identifier(self, old: CX, new: CX, event: FeedEvent) -> int:
        """A47: ``old`` (MRG-1) becomes ``new`` (PID-3) for the same person, in the same domain."""
        if old.authority_key != new.authority_key:
            raise IdentityRefusal(f"{old} and {new} belong to different assigning authorities",
                                  reason=Refusal.DIFFERENT_AUTHORITIES, identifier=old)
        if old.key == new.key:
            raise IdentityRefusal(f"{old} cannot be changed into itself", reason=Refusal.SAME_IDENTIFIER,
                                  identifier=old)
        resolved = self.resolve_active(old)
        if self.store.find_by_identifier(new) is not None:
            raise IdentityRefusal(f"{new} already designates a patient", reason=Refusal.SAME_IDENTIFIER,
                                  identifier=new)
        row = self.store.find_by_identifier(old)
        assert row is not None
        row.status = IdentifierStatus.INACTIVE
        self.session.execute(insert(PatientIdentifier), [dict(
            patient_id=row.patient_id, value=new.id, authority_key=new.authority_key, namespace_id=new.namespace_id,
            universal_id=new.universal_id, universal_id_type=new.universal_id_type,
            type_code=new.type_code or row.type_code, status=IdentifierStatus.ACTIVE)])
        self.store.record_event(event, resolved.patient_id,
                                details={"old": str(old), "new": str(new), **event.details})
        self.notify([resolved.patient_id])
        return resolved.patient_id

    def notify(self, patient_ids: Iterable[int]) -> None:
        if self.notifier is not None:
            self.notifier.notify(self.session, patient_ids)

    # -- internals ---------------------------------------------------------------------------------------------

    def _active(self, patient_id: int) -> Patient:
        """The active person a (possibly merged or linked) patient record now is."""
        patient = self.session.get(Patient, patient_id)
        if patient is None:
            raise LookupError(f"patient {patient_id} does not exist")
        if patient.status != PatientStatus.ACTIVE and patient.merged_into_id is not None:
            patient = self.session.get(Patient, patient.merged_into_id)
        assert patient is not None
        return patient

    def resolve_active(self, cx: CX):  # type: ignore[no-untyped-def]
        resolved = self.store.resolve(cx)
        if resolved is None:
            raise IdentityRefusal(f"{cx} is not known", reason=Refusal.UNKNOWN, identifier=cx)
        if resolved.state is IdentifierState.SUBSUMED:
            raise IdentityRefusal(f"{cx} was merged into another identifier", reason=Refusal.SUBSUMED,
                                  identifier=cx)
        if resolved.state is IdentifierState.INACTIVE:
            raise IdentityRefusal(f"{cx} is no longer active", reason=Refusal.INACTIVE, identifier=cx)
        return resolved

    def _rows_of(self, patient_id: int, *, active_only: bool = False) -> list[PatientIdentifier]:
        """Identifier rows of one record; merged (subsumed) ones stay where they are."""
        query = select(PatientIdentifier).where(PatientIdentifier.patient_id == patient_id)
        statuses = [IdentifierStatus.ACTIVE] if active_only else [IdentifierStatus.ACTIVE, IdentifierStatus.INACTIVE]
        return list(self.session.scalars(query.where(PatientIdentifier.status.in_(statuses))
                                         .order_by(PatientIdentifier.id)))

    def _refuse_two_national_identities(self, keep_patient_id: int, moving: list[PatientIdentifier]) -> None:
        """Two persons holding different national identifiers are not one person: no link, whoever asks."""
        theirs = self.rules.national_identifiers([_cx(row) for row in moving
                                                  if row.status == IdentifierStatus.ACTIVE])
        ours = self.rules.national_identifiers(self.store.identifiers_of(keep_patient_id))
        if theirs and ours and {cx.key for cx in theirs} != {cx.key for cx in ours}:
            raise IdentityRefusal(f"{theirs[0]} and {ours[0]} are two national identities",
                                  reason=Refusal.DIFFERENT_PATIENTS, identifier=theirs[0])

    def _point_at(self, retired_id: int, person_id: int, status: str) -> None:
        """Retire a record into a person, re-pointing records retired into it (no chains)."""
        self.session.execute(update(Patient).where(Patient.merged_into_id == retired_id)
                             .values(merged_into_id=person_id).execution_options(synchronize_session="fetch"))
        self.session.execute(update(Patient).where(Patient.id == retired_id)
                             .values(status=status, merged_into_id=person_id)
                             .execution_options(synchronize_session="fetch"))

    def _linked_in_with(self, person: int, split: CX) -> list[PatientIdentifier]:
        """The rows to move out on unlink: those of the latest link that brought ``split`` in, still attached."""
        rows = {IdentifierKey(row.authority_key, row.value): row
                for row in self._rows_of(person) if row.patient_id == person}
        events = self.session.scalars(select(IdentityEvent).where(
            IdentityEvent.patient_id == person, IdentityEvent.kind.in_(_LINK_KINDS)).order_by(IdentityEvent.id.desc()))
        for linked in events:
            moved = {IdentifierKey(*pair) for pair in json.loads(linked.details).get("moved", [])}
            if split.key in moved:
                return [row for key, row in rows.items() if key in moved]
        return [row for row in rows.values() if row.authority_key == split.authority_key]


def _with(event: FeedEvent, decision: LinkDecision, *, kind: str | None = None,
          withheld: tuple[CX, ...] = ()) -> FeedEvent:
    """The feed's event with the linking decision in its details (so history says why)."""
    details = dict(event.details)
    if decision.outcome is not Outcome.NEW:
        details["linking"] = {"outcome": str(decision.outcome), "patient_id": decision.patient_id,
                              "reason": decision.reason}
    if withheld:
        details["withheld"] = [str(cx) for cx in withheld]
    return dataclasses.replace(event, kind=kind or event.kind, details=details)


def _cx(row: PatientIdentifier) -> CX:
    return CX(id=row.value, namespace_id=row.namespace_id, universal_id=row.universal_id,
              universal_id_type=row.universal_id_type, type_code=row.type_code)


def _demographics_of(patient: Patient | None) -> Demographics:
    """A stored person's traits as a feed would send them (unknown ones not sent)."""
    names = [trait.name for trait in dataclasses.fields(Demographics)]
    return Demographics(**{name: getattr(patient, name, None) for name in names})


# -- audit after commit ----------------------------------------------------------------------------------------



def audit_after_commit(session: Session, hook: "AuditHook", records: Sequence["AuditRecord"]) -> None:
    """Report ``records`` with the work done so far in ``session``: queued in its transaction, emitted once it
    commits, or with outcome 8 if it is rolled back (``AuditHook.emit_with``)."""
    hook.emit_with(session, records)
