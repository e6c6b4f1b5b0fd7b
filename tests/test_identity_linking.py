"""Cross-referencing: the linking policy (pure) and the changes it drives in the store, on SQLite and PostgreSQL."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import event, select

from ihe_engine.config import Settings
from ihe_engine.errors import ConfigurationError
from ihe_engine.france.rules import FrenchIdentityRules
from ihe_engine.identity.cx import CX
from ihe_engine.identity.linking import (CrossReferences, DefaultLinkingPolicy, IncomingRecord, KnownPerson,
                                         ManualLinkingPolicy, Outcome, Traits, load_linking_policy, similar_names)
from ihe_engine.identity.store import Demographics, FeedEvent, IdentifierState, IdentityRefusal, IdentityStore
from ihe_engine.identity.tables import IdentityEvent, VigilanceItem
from ihe_engine.storage import UnitOfWork

X, Y, Z = "1.2.250.1.71.1.2.1", "1.2.250.1.71.1.2.2", "1.2.250.1.71.1.2.3"
INS_OID = "1.2.250.1.213.1.4.8"
INS = f"161027575428992^^^ASIP-SANTE-INS-NIR&{INS_OID}&ISO^INS"
OTHER_INS = f"279035121518989^^^ASIP-SANTE-INS-NIR&{INS_OID}&ISO^INS"
MARTIN = dict(family_name="MARTIN", birth_name="MARTIN", given_name="Paul", birth_date="19610215", sex="M",
              birthplace="75056")


def cx(value: str, oid: str = X) -> CX:
    return CX(id=value, universal_id=oid, universal_id_type="ISO")


class Notified:
    """A notifier that remembers which persons it was told about (ITI-10 is tested on its own)."""

    def __init__(self) -> None:
        self.patient_ids: list[int] = []

    def notify(self, session, patient_ids) -> None:
        self.patient_ids.extend(patient_ids)


@pytest.fixture
def notified() -> Notified:
    return Notified()


def xref_feed(database, *identifiers: CX, notifier=None, rules=None, policy=None, kind: str = "A01", **traits):
    with UnitOfWork(database.sessions) as uow:
        outcome = CrossReferences(uow.session, rules=rules, policy=policy, notifier=notifier).feed(
            list(identifiers), Demographics(**traits), FeedEvent(kind=kind, control_id=identifiers[0].id),
            expect_new=kind != "A08")
        uow.commit()
    return outcome


def change(database, fn, rules=None):
    with UnitOfWork(database.sessions) as uow:
        result = fn(CrossReferences(uow.session, rules=rules))
        uow.commit()
    return result


def person_of(database, identifier: CX | str) -> int:
    identifier = CX.from_hl7(identifier) if isinstance(identifier, str) else identifier
    with UnitOfWork(database.sessions) as uow:
        return IdentityStore(uow.session).resolve(identifier).patient_id


def identifiers_of(database, patient_id: int) -> set[str]:
    with UnitOfWork(database.sessions) as uow:
        return {str(one) for one in IdentityStore(uow.session).identifiers_of(patient_id)}


def open_items(database) -> list[VigilanceItem]:
    with database.sessions() as session:
        return list(session.scalars(select(VigilanceItem).where(VigilanceItem.status == "open")
                                    .order_by(VigilanceItem.id)))


# -- the policy, without storage ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("a", "b", "similar"), [
    ("MARTIN", "MARTIN", True), ("MARTIN", "MARTINS", True), ("MARTIN", "MRATIN", True),
    ("DUPONT", "DUPOND", True), ("LEFEBVRE", "LEFEVRE", True), ("JEAN PIERRE", "JEANPIERRE", True),
    ("MARTIN", "BERNARD", False), ("LI", "LU", False), ("DUPONT", "DURAND", False), (None, "MARTIN", False),
])
def test_similar_names(a, b, similar):
    assert similar_names(a, b) is similar


def record(*identifiers: CX, national=(), qualified=False, **traits) -> IncomingRecord:
    return IncomingRecord(identifiers=identifiers, traits=Traits.of(Demographics(**traits)),
                          national=tuple(national), qualified=qualified)


def person(patient_id: int, *authorities: str, **traits) -> KnownPerson:
    return KnownPerson(patient_id=patient_id, traits=Traits.of(Demographics(**traits)),
                       authorities=frozenset(authorities))


def test_default_policy_decisions():
    policy = DefaultLinkingPolicy()
    ins = CX.from_hl7(INS)
    new = record(cx("1", Y), ins, national=[ins], qualified=True, **MARTIN)
    holder = person(7, X, INS_OID, **MARTIN)
    assert policy.decide(new, holder=holder, near=()).outcome is Outcome.LINK
    unqualified = record(cx("1", Y), ins, national=[ins], qualified=False, **MARTIN)
    decision = policy.decide(unqualified, holder=holder, near=())
    assert (decision.outcome, decision.patient_id) == (Outcome.REVIEW, 7) and "qualified" in decision.reason
    born_elsewhere = record(cx("1", Y), ins, national=[ins], qualified=True, **{**MARTIN, "birth_date": "19620215"})
    assert "birth_date" in policy.decide(born_elsewhere, holder=holder, near=()).reason
    same_domain = record(cx("2", X), ins, national=[ins], qualified=True, **MARTIN)
    assert policy.decide(same_domain, holder=holder, near=()).outcome is Outcome.REVIEW

    strict = record(cx("1", Y), **MARTIN)
    assert policy.decide(strict, holder=None, near=[person(3, X, **MARTIN)]).patient_id == 3
    assert policy.decide(strict, holder=None, near=[person(3, X, **MARTIN)]).outcome is Outcome.LINK
    assert policy.decide(strict, holder=None, near=[person(3, Y, **MARTIN)]).outcome is Outcome.REVIEW
    no_birthplace = record(cx("1", Y), **{**MARTIN, "birthplace": None})
    assert policy.decide(no_birthplace, holder=None, near=[person(3, X, **MARTIN)]).outcome is Outcome.REVIEW
    typo = record(cx("1", Y), **{**MARTIN, "birth_name": "MARTTIN", "family_name": "MARTTIN"})
    assert policy.decide(typo, holder=None, near=[person(3, X, **MARTIN)]).outcome is Outcome.REVIEW
    other_sex = record(cx("1", Y), **{**MARTIN, "sex": "F"})
    assert policy.decide(other_sex, holder=None, near=[person(3, X, **MARTIN)]).outcome is Outcome.NEW
    stranger = record(cx("1", Y), **{**MARTIN, "birth_name": "BERNARD", "family_name": "BERNARD"})
    assert policy.decide(stranger, holder=None, near=[person(3, X, **MARTIN)]).outcome is Outcome.NEW


def test_manual_policy_never_links():
    strict = record(cx("1", Y), **MARTIN)
    decision = ManualLinkingPolicy().decide(strict, holder=None, near=[person(3, X, **MARTIN)])
    assert (decision.outcome, decision.patient_id) == (Outcome.REVIEW, 3)


class NeverLink:
    def decide(self, record, *, holder, near):
        from ihe_engine.identity.linking import NEW

        return NEW


def test_policy_is_chosen_by_configuration():
    assert isinstance(load_linking_policy(Settings()), DefaultLinkingPolicy)
    assert isinstance(load_linking_policy(Settings(extra={"identity_linking": "manual"})), ManualLinkingPolicy)
    assert isinstance(load_linking_policy(Settings(extra={"identity_linking": f"{__name__}:NeverLink"})), NeverLink)
    for bad in ("fuzzy", "no.such.module:Policy", f"{__name__}:cx", 3):
        with pytest.raises(ConfigurationError):
            load_linking_policy(Settings(extra={"identity_linking": bad}))


# -- feeds through the store -------------------------------------------------------------------------------------

def test_strict_traits_link_records_of_two_domains(database, notified):
    first = xref_feed(database, cx("A"), **MARTIN)
    second = xref_feed(database, cx("B", Y), notifier=notified, **MARTIN)
    assert second.decision.outcome is Outcome.LINK and not second.result.created
    assert second.result.patient_id == first.result.patient_id
    assert identifiers_of(database, first.result.patient_id) == {str(cx("A")), str(cx("B", Y))}
    assert notified.patient_ids == [first.result.patient_id]
    with database.sessions() as session:
        created = session.scalars(select(IdentityEvent).order_by(IdentityEvent.id)).all()[-1]
    assert json.loads(created.details)["linking"]["reason"] == "the five strict traits agree"


def test_near_match_goes_to_vigilance_once(database):
    kept = xref_feed(database, cx("A"), **MARTIN)
    near = xref_feed(database, cx("B", Y), **{**MARTIN, "birth_name": "MARTINS", "family_name": "MARTINS"})
    assert near.decision.outcome is Outcome.REVIEW and near.result.created
    [item] = open_items(database)
    assert (item.kind, item.patient_id, item.other_patient_id) == ("possible-match", near.result.patient_id,
                                                                  kept.result.patient_id)
    xref_feed(database, cx("B", Y), kind="A08", **{**MARTIN, "birth_name": "MARTINS", "family_name": "MARTINS"})
    xref_feed(database, cx("C", Z), **{**MARTIN, "birth_name": "MARTINEZ", "family_name": "MARTINEZ",
                                      "sex": "F"})
    assert len(open_items(database)) == 1  # an update does not propose again; a woman is not a near match


def test_a08_of_an_unknown_record_still_meets_the_policy(database):
    kept = xref_feed(database, cx("A"), **MARTIN)
    late = xref_feed(database, cx("B", Y), kind="A08", **MARTIN)
    assert late.result.patient_id == kept.result.patient_id


def test_qualified_ins_links_and_unqualified_goes_to_review(database):
    rules = FrenchIdentityRules()
    holder = xref_feed(database, cx("A"), CX.from_hl7(INS), rules=rules, identity_reliability="QUAL", **MARTIN)
    assert INS in identifiers_of(database, holder.result.patient_id)
    linked = xref_feed(database, cx("B", Y), CX.from_hl7(INS), rules=rules, identity_reliability="QUAL",
                       **{**MARTIN, "birthplace": None})
    assert linked.result.patient_id == holder.result.patient_id and linked.decision.outcome is Outcome.LINK
    doubtful = xref_feed(database, cx("C", Z), CX.from_hl7(INS), rules=rules, identity_reliability="VALI",
                         **MARTIN)
    assert doubtful.result.created and doubtful.withheld == (CX.from_hl7(INS),)
    assert identifiers_of(database, doubtful.result.patient_id) == {str(cx("C", Z))}
    [item] = open_items(database)
    assert (item.patient_id, item.other_patient_id) == (doubtful.result.patient_id, holder.result.patient_id)
    assert json.loads(item.details) == {"withheld": [INS]}


def test_unqualified_ins_is_not_attached_and_patients_without_ins_work(database):
    rules = FrenchIdentityRules()
    provisional = xref_feed(database, cx("A"), CX.from_hl7(INS), rules=rules, identity_reliability="PROV", **MARTIN)
    assert identifiers_of(database, provisional.result.patient_id) == {str(cx("A"))}
    child = xref_feed(database, cx("K"), rules=rules, family_name="MARTIN", given_name="Léa", birth_date="20200101",
                      sex="F")
    assert child.result.created and identifiers_of(database, child.result.patient_id) == {str(cx("K"))}


def test_qualified_ins_held_by_another_person_links_the_two_records(database):
    rules = FrenchIdentityRules()
    holder = xref_feed(database, cx("A"), CX.from_hl7(INS), rules=rules, identity_reliability="QUAL", **MARTIN)
    other = xref_feed(database, cx("B", Y), rules=rules, **{**MARTIN, "birthplace": "69123"})
    assert other.result.patient_id != holder.result.patient_id
    differing = xref_feed(database, cx("B", Y), CX.from_hl7(INS), rules=rules, identity_reliability="QUAL",
                          kind="A08", **{**MARTIN, "birthplace": None})
    assert differing.decision.outcome is Outcome.REVIEW  # the stored birthplace of B differs from A's
    assert "birthplace" in differing.decision.reason
    again = xref_feed(database, cx("B", Y), CX.from_hl7(INS), rules=rules, identity_reliability="QUAL", kind="A08",
                      **MARTIN)
    assert again.decision.outcome is Outcome.LINK
    assert person_of(database, cx("B", Y)) == person_of(database, cx("A")) == holder.result.patient_id
    with UnitOfWork(database.sessions) as uow:
        assert IdentityStore(uow.session).patient(other.result.patient_id).status == "linked"


# -- link, unlink, merge, change ---------------------------------------------------------------------------------

def test_link_then_unlink_moves_exactly_the_linked_record_back(database):
    one = xref_feed(database, cx("A"), cx("A2", Z), family_name="UN", birth_date="19700101")
    two = xref_feed(database, cx("B", Y), cx("B2", "1.2.3.4"), family_name="DEUX", birth_date="19800101")
    change(database, lambda x: x.link(one.result.patient_id, two.result.patient_id,
                                      FeedEvent(kind="A24", control_id="L1")))
    assert person_of(database, cx("B", Y)) == one.result.patient_id
    assert len(identifiers_of(database, one.result.patient_id)) == 4
    new_id = change(database, lambda x: x.unlink(cx("A"), cx("B", Y), FeedEvent(kind="A37", control_id="U1")))
    assert identifiers_of(database, new_id) == {str(cx("B", Y)), str(cx("B2", "1.2.3.4"))}
    assert identifiers_of(database, one.result.patient_id) == {str(cx("A")), str(cx("A2", Z))}
    with UnitOfWork(database.sessions) as uow:
        kinds = [event.kind for event in IdentityStore(uow.session).history(one.result.patient_id)]
    assert kinds == ["A01", "A01", "A24", "A37"]  # the linked record's own A01 is part of the history


def test_unlink_of_ids_fed_together_moves_that_domain(database):
    both = xref_feed(database, cx("A"), cx("B", Y), family_name="UN")
    new_id = change(database, lambda x: x.unlink(cx("A"), cx("B", Y), FeedEvent(kind="A37")))
    assert new_id != both.result.patient_id and identifiers_of(database, new_id) == {str(cx("B", Y))}
    with pytest.raises(IdentityRefusal):
        change(database, lambda x: x.unlink(cx("A"), cx("B", Y), FeedEvent(kind="A37")))


def test_merge_never_carries_an_ins_over_and_flags_the_survivor(database):
    rules = FrenchIdentityRules()
    survivor = xref_feed(database, cx("KEEP"), rules=rules, family_name="MARTIN")
    subsumed = xref_feed(database, cx("GONE"), cx("R7", Y), CX.from_hl7(INS), rules=rules, identity_reliability="QUAL",
                         family_name="MARTIN")
    merge, item_id = change(database, lambda x: x.merge(cx("KEEP"), cx("GONE"), FeedEvent(kind="A40")), rules)
    assert merge.survivor_patient_id == survivor.result.patient_id
    assert identifiers_of(database, survivor.result.patient_id) == {str(cx("KEEP")), str(cx("R7", Y))}
    with UnitOfWork(database.sessions) as uow:
        store = IdentityStore(uow.session)
        assert store.resolve(cx("R7", Y)).state is IdentifierState.ACTIVE
        assert store.resolve(cx("GONE")).state is IdentifierState.SUBSUMED
        assert store.resolve(CX.from_hl7(INS)).record_patient_id == subsumed.result.patient_id
    [item] = open_items(database)
    assert (item.id, item.kind, item.patient_id) == (item_id, "review", survivor.result.patient_id)
    assert json.loads(item.details) == {"left": [INS]}
    # while the review waits, a feed carrying the INS left behind goes on without it
    later = xref_feed(database, cx("KEEP"), CX.from_hl7(INS), rules=rules, identity_reliability="QUAL", kind="A08",
                      family_name="MARTIN")
    assert later.withheld == (CX.from_hl7(INS),)
    assert identifiers_of(database, survivor.result.patient_id) == {str(cx("KEEP")), str(cx("R7", Y))}


def test_two_national_identities_are_never_linked(database):
    rules = FrenchIdentityRules()
    one = xref_feed(database, cx("A"), CX.from_hl7(INS), rules=rules, identity_reliability="QUAL")
    two = xref_feed(database, cx("B", Y), CX.from_hl7(OTHER_INS), rules=rules, identity_reliability="QUAL")
    with pytest.raises(IdentityRefusal):
        change(database, lambda x: x.link(one.result.patient_id, two.result.patient_id, FeedEvent(kind="A24")),
               rules)
    assert person_of(database, cx("B", Y)) == two.result.patient_id


def test_change_of_identifier(database):
    fed = xref_feed(database, cx("OLD"), cx("R", Y))
    change(database, lambda x: x.change_identifier(cx("OLD"), cx("NEW"), FeedEvent(kind="A47")))
    assert identifiers_of(database, fed.result.patient_id) == {str(cx("NEW")), str(cx("R", Y))}
    with UnitOfWork(database.sessions) as uow:
        assert IdentityStore(uow.session).resolve(cx("OLD")).state is IdentifierState.INACTIVE
    xref_feed(database, cx("TAKEN"))
    for old, new in ((cx("NEW"), cx("R2", Y)), (cx("NEW"), cx("NEW")), (cx("OLD"), cx("X9")),
                     (cx("NEVER"), cx("X9")), (cx("NEW"), cx("TAKEN"))):
        with pytest.raises(IdentityRefusal):
            change(database, lambda x: x.change_identifier(old, new, FeedEvent(kind="A47")))


# -- the near-match search is indexed ------------------------------------------------------------------------------

def test_feed_lookup_is_one_indexed_query(database):
    if database.engine.dialect.name != "sqlite":
        pytest.skip("the query plan is checked on SQLite (PostgreSQL plans tiny tables with scans on purpose)")
    xref_feed(database, cx("A"), **MARTIN)
    statements: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append((statement, parameters))

    event.listen(database.engine, "before_cursor_execute", capture)
    try:
        with UnitOfWork(database.sessions) as uow:
            IdentityStore(uow.session).lookup([cx("B", Y), cx("C", Z)], near_birth_date="19610215",
                                              near_initials=["MARTIN", "DUPONT"])
    finally:
        event.remove(database.engine, "before_cursor_execute", capture)
    [(statement, parameters)] = statements
    with database.engine.connect() as connection:
        plan = [row[-1] for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)]
    table_scans = [step for step in plan if step.startswith("SCAN") and not step.startswith("SCAN anon_")]
    assert not table_scans, plan  # SCAN anon_N walks the rows of the LIMIT subquery (a co-routine), no table
    assert any("ix_patient_birth_date" in step for step in plan), plan
