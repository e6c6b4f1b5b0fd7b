"""The patient identity store on SQLite and PostgreSQL: create, update, resolve, merge, history."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from ihe_engine.identity.cx import CX
from ihe_engine.identity.store import (Demographics, FeedEvent, IdentifierState, IdentityRefusal, IdentityStore,
                                       Refusal, search_key)
from ihe_engine.identity.tables import IdentityEvent, Patient, PatientIdentifier
from ihe_engine.storage import UnitOfWork

DOMAIN = "1.3.6.1.4.1.21367.13.20.1000"
OTHER = "1.2.250.1.213.1.4.8"


def cx(value: str, oid: str = DOMAIN, namespace: str = "") -> CX:
    return CX(id=value, namespace_id=namespace, universal_id=oid, universal_id_type="ISO")


def feed(database, *identifiers: CX, kind: str = "A01", removed=(), **traits):
    with UnitOfWork(database.sessions) as uow:
        result = IdentityStore(uow.session).create_or_update(
            list(identifiers), Demographics(**traits), FeedEvent(kind=kind, control_id=f"{kind}-{identifiers[0].id}"),
            removed_authorities=removed)
        uow.commit()
    return result


def merge(database, survivor: CX, subsumed: CX):
    with UnitOfWork(database.sessions) as uow:
        result = IdentityStore(uow.session).merge(survivor, subsumed, FeedEvent(kind="A40", control_id="M"))
        uow.commit()
    return result


def read(database, fn):
    with UnitOfWork(database.sessions) as uow:
        return fn(IdentityStore(uow.session))


def traits(database, patient_id: int, *names: str) -> tuple:
    return read(database, lambda store: tuple(getattr(store.patient(patient_id), name) for name in names))


def count(database, model) -> int:
    with database.sessions() as session:
        return session.scalar(select(func.count()).select_from(model))


def test_create_keeps_every_identifier_and_the_traits(database):
    result = feed(database, cx("P1"), cx("1790328000001", OTHER), family_name="Pat-Trois", given_name="Dominique",
                  birth_name="Pat-Trois", birth_date="19790328", sex="F", city="PARIS", postal_code="75007")
    assert result.created and len(result.added) == 2
    assert traits(database, result.patient_id, "family_name", "family_name_key", "birth_date", "sex") == \
        ("Pat-Trois", "PAT TROIS", "19790328", "F")
    assert read(database, lambda store: store.identifiers_of(result.patient_id)) == \
        [cx("P1"), cx("1790328000001", OTHER)]
    assert read(database, lambda store: store.is_known_in_domain(cx("P1"), DOMAIN))
    assert read(database, lambda store: store.is_known_in_domain(cx("1790328000001", OTHER), OTHER))


def test_update_finds_the_patient_by_any_identifier_and_keeps_unsent_traits(database):
    first = feed(database, cx("P2"), family_name="Durand", birth_date="19500101", phone="0102030405")
    second = feed(database, cx("P2"), cx("L2", OTHER), kind="A08", family_name="Durand-Martin", phone="")
    assert second.patient_id == first.patient_id and not second.created
    assert second.added == (cx("L2", OTHER),)
    assert traits(database, first.patient_id, "family_name", "family_name_key", "birth_date", "phone") == \
        ("Durand-Martin", "DURAND MARTIN", "19500101", None)
    assert count(database, Patient) == 1 and count(database, PatientIdentifier) == 2


def test_namespace_refresh_and_oid_equivalence(database):
    first = feed(database, cx("P3"))
    again = feed(database, cx("P3", namespace="IHENA"))  # same key: the OID decides
    assert again.patient_id == first.patient_id and again.added == ()
    assert read(database, lambda store: store.find_by_identifier(cx("P3")).namespace_id) == "IHENA"


def test_resolve_states(database):
    created = feed(database, cx("P4"))
    resolved = read(database, lambda store: store.resolve(CX.from_xds(f"P4^^^&{DOMAIN}&ISO")))
    assert resolved.state is IdentifierState.ACTIVE and resolved.is_active
    assert resolved.patient_id == resolved.record_patient_id == created.patient_id
    assert read(database, lambda store: store.resolve(cx("NOPE"))) is None
    assert not read(database, lambda store: store.is_known_in_domain(cx("NOPE"), DOMAIN))


def test_known_in_domain_requires_the_domain_oid(database):
    feed(database, cx("P5"), cx("X5", OTHER))
    assert not read(database, lambda store: store.is_known_in_domain(cx("X5", OTHER), DOMAIN))
    assert not read(database, lambda store: store.is_known_in_domain(CX(id="P5", namespace_id=DOMAIN), DOMAIN))


def test_merge_subsumed_resolves_to_the_survivor_and_leaves_the_domain(database):
    survivor = feed(database, cx("KEEP"), family_name="Martin")
    subsumed = feed(database, cx("GONE"), cx("LOCAL-9", OTHER), family_name="Martin")
    result = merge(database, cx("KEEP"), cx("GONE"))
    assert (result.survivor_patient_id, result.subsumed_patient_id) == (survivor.patient_id, subsumed.patient_id)
    gone = read(database, lambda store: store.resolve(cx("GONE")))
    assert gone.state is IdentifierState.SUBSUMED
    assert gone.patient_id == survivor.patient_id and gone.record_patient_id == subsumed.patient_id
    assert not read(database, lambda store: store.is_known_in_domain(cx("GONE"), DOMAIN))
    assert read(database, lambda store: store.is_known_in_domain(cx("KEEP"), DOMAIN))
    # the subsumed record's other identifiers follow it: resolved to the survivor, not carried over
    local = read(database, lambda store: store.resolve(cx("LOCAL-9", OTHER)))
    assert local.state is IdentifierState.SUBSUMED and local.patient_id == survivor.patient_id
    assert read(database, lambda store: store.identifiers_of(survivor.patient_id)) == [cx("KEEP")]


def test_merges_never_form_chains(database):
    first, second, third = (feed(database, cx(name)) for name in ("C1", "C2", "C3"))
    merge(database, cx("C2"), cx("C1"))
    merge(database, cx("C3"), cx("C2"))
    assert read(database, lambda store: store.resolve(cx("C1"))).patient_id == third.patient_id
    with database.sessions() as session:
        assert session.get(Patient, first.patient_id).merged_into_id == third.patient_id
        assert session.get(Patient, second.patient_id).merged_into_id == third.patient_id


@pytest.mark.parametrize(("survivor", "subsumed", "reason"), [
    (cx("R1"), cx("R1"), Refusal.SAME_IDENTIFIER),
    (cx("R1"), cx("R2", OTHER), Refusal.DIFFERENT_AUTHORITIES),
    (cx("R1"), cx("UNKNOWN"), Refusal.UNKNOWN),
    (cx("UNKNOWN"), cx("R2"), Refusal.UNKNOWN),
    (cx("R1"), cx("R0"), Refusal.SUBSUMED),
    (cx("R0"), cx("R2"), Refusal.SUBSUMED),
    (cx("R1"), cx("R3"), Refusal.INACTIVE),
])
def test_merge_refusals_change_nothing(database, survivor, subsumed, reason):
    feed(database, cx("R1"))
    feed(database, cx("R2"), cx("R2", OTHER))
    feed(database, cx("R0"))
    merge(database, cx("R1"), cx("R0"))
    holder = feed(database, cx("R3-HOLDER", OTHER), cx("R3"))
    feed(database, cx("R3-HOLDER", OTHER), removed=[DOMAIN])  # R3 removed by its sender: inactive
    assert read(database, lambda store: store.resolve(cx("R3"))).state is IdentifierState.INACTIVE
    before = (count(database, IdentityEvent), read(database, lambda store: store.resolve(cx("R2"))))
    with pytest.raises(IdentityRefusal) as caught:
        merge(database, survivor, subsumed)
    assert caught.value.reason is reason
    assert (count(database, IdentityEvent), read(database, lambda store: store.resolve(cx("R2")))) == before
    assert holder.patient_id


def test_feed_refuses_a_subsumed_identifier_and_identifiers_of_two_patients(database):
    feed(database, cx("S1"))
    feed(database, cx("S2"))
    merge(database, cx("S1"), cx("S2"))
    with pytest.raises(IdentityRefusal) as caught:
        feed(database, cx("S2"), kind="A08", family_name="X")
    assert caught.value.reason is Refusal.SUBSUMED and caught.value.identifier == cx("S2")
    feed(database, cx("T1"))
    feed(database, cx("T2"))
    with pytest.raises(IdentityRefusal) as caught:
        feed(database, cx("T1"), cx("T2"))
    assert caught.value.reason is Refusal.DIFFERENT_PATIENTS and caught.value.identifier == cx("T2")


def test_a_removed_identifier_comes_back_when_sent_again(database):
    created = feed(database, cx("V1"), cx("V1-INS", OTHER))
    assert feed(database, cx("V1"), removed=[OTHER]).deactivated == 1
    assert not read(database, lambda store: store.is_known_in_domain(cx("V1-INS", OTHER), OTHER))
    again = feed(database, cx("V1"), cx("V1-INS", OTHER))
    assert again.patient_id == created.patient_id and again.added == ()
    assert read(database, lambda store: store.is_known_in_domain(cx("V1-INS", OTHER), OTHER))


def test_history_includes_merged_records(database):
    keep = feed(database, cx("H1"))
    gone = feed(database, cx("H2"))
    feed(database, cx("H1"), kind="A08", sex="M")
    merge(database, cx("H1"), cx("H2"))
    events = read(database, lambda store: [(e.kind, e.patient_id, e.other_patient_id, json.loads(e.details))
                                           for e in store.history(keep.patient_id)])
    assert [(kind, patient, other) for kind, patient, other, _ in events] == [
        ("A01", keep.patient_id, None), ("A01", gone.patient_id, None), ("A08", keep.patient_id, None),
        ("A40", keep.patient_id, gone.patient_id)]
    assert events[-1][3]["subsumed"] == cx("H2").to_hl7()


def test_identifier_uniqueness_is_enforced_by_the_database(database):
    from sqlalchemy.exc import IntegrityError

    created = feed(database, cx("U1"))
    with UnitOfWork(database.sessions) as uow:
        uow.session.add(PatientIdentifier(patient_id=created.patient_id, value="U1", authority_key=DOMAIN))
        with pytest.raises(IntegrityError):
            uow.session.flush()


@pytest.mark.parametrize(("name", "key"), [
    ("Élodie", "ELODIE"), ("  le   Bœuf ", "LE BOEUF"), ("D'ARTAGNAN", "D ARTAGNAN"), ("Müller-Lüdenscheidt",
                                                                                      "MULLER LUDENSCHEIDT"),
    ("", None), (None, None), ("--", None),
])
def test_search_key(name, key):
    assert search_key(name) == key


# -- what cross-referencing needs from the store ------------------------------------------------------------------

def test_lookup_finds_known_identifiers_and_people_born_that_day(database):
    born = feed(database, cx("B1"), cx("B2", OTHER), family_name="MARTIN", birth_date="19610215")
    feed(database, cx("C1"), family_name="MARTIN", birth_date="19610216")
    merged = feed(database, cx("M1"), family_name="MARTIN", birth_date="19610215")
    merge(database, cx("B1"), cx("M1"))

    def look(store):
        found = store.lookup([cx("B1"), cx("NEW")], near_birth_date="19610215", near_initials=["MARTINEZ"])
        return ({key: (row.value, patient.id) for key, (row, patient) in found.known.items()},
                {patient_id: sorted(row.value for row in rows) for patient_id, (_, rows) in found.near.items()})

    known, near = read(database, look)
    assert known == {cx("B1").key: ("B1", born.patient_id)}
    assert near == {born.patient_id: ["B1", "B2"]}  # the merged record and the next day's patient are no candidates
    assert merged.patient_id not in near
    assert read(database, lambda store: store.lookup([cx("B1")]).near) == {}
    assert read(database, lambda store: store.lookup([], near_birth_date="19610215", near_initials=["D"]).near) == {}


def test_link_to_attaches_new_identifiers_to_the_chosen_patient(database):
    first = feed(database, cx("L1"), family_name="UN")
    with UnitOfWork(database.sessions) as uow:
        result = IdentityStore(uow.session).create_or_update(
            [cx("L2", OTHER)], Demographics(family_name="DEUX"), FeedEvent(kind="A01"), link_to=first.patient_id)
        IdentityStore(uow.session).record_event(FeedEvent(kind="link"), first.patient_id, details={"why": "test"})
        uow.commit()
    assert (result.patient_id, result.created) == (first.patient_id, False)
    assert traits(database, first.patient_id, "family_name") == ("DEUX",)  # the last accepted feed wins
    assert read(database, lambda store: [event.kind for event in store.history(first.patient_id)]) == \
        ["A01", "A01", "link"]
