"""PDQ search over the store: each criterion, French name rules, domains and keyset paging, SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from ihe_engine.identity.cx import CX
from ihe_engine.identity.pdq_search import IdentifierCriterion, PatientQuery, QueryRefused, search_patients
from ihe_engine.identity.pix import Authority
from ihe_engine.identity.store import Demographics, FeedEvent, IdentityStore

IPP = dict(namespace_id="IPP", universal_id="1.2.250.1.1", universal_id_type="ISO")
INS = dict(namespace_id="INS-NIR", universal_id="1.2.250.1.213.1.4.8", universal_id_type="ISO")


def _patient(store, value, **traits):
    ids = [CX(id=value, **IPP)]
    if traits.pop("ins", None):
        ids.append(CX(id=f"INS{value}", **INS))
    return store.create_or_update(ids, Demographics(**traits), FeedEvent(kind="A01")).patient_id


@pytest.fixture
def people(database):
    with database.sessions() as session:
        store = IdentityStore(session)
        ids = {
            "martin_dupont": _patient(store, "1", family_name="MARTIN-DUPONT", given_name="Jean-Pierre",
                                      birth_date="19800115", sex="M", ins=True),
            "martin": _patient(store, "2", family_name="Martin", given_name="Élise", birth_date="19801130", sex="F",
                               city="Saint-Étienne", postal_code="42 000", street="3, rue de la Paix", country="FRA",
                               phone="+33 (0)4 77 00 00 00", account_number="ACC-9"),
            "fontaine": _patient(store, "3", family_name="de la Fontaine", given_name="Jean", birth_date="19751201",
                                 sex="M", mothers_maiden_name="Lefèvre"),
            "used_name": _patient(store, "4", family_name="DUPOND", birth_name="LEGRAND", given_name="Marie",
                                  birth_date="19650302", sex="F"),
            "martinez": _patient(store, "5", family_name="MARTINEZ", given_name="Ana", birth_date="19900101", sex="F"),
        }
        session.commit()
        yield session, ids


def found(session, query, **options) -> set[int]:
    return {match.patient_id for match in search_patients(session, query, limit=options.pop("limit", 100), **options)}


def test_family_name_is_case_accent_and_punctuation_insensitive(people):
    session, ids = people
    assert found(session, PatientQuery(family_name="martin")) == {ids["martin"], ids["martin_dupont"]}
    assert found(session, PatientQuery(family_name="Martin Dupont")) == {ids["martin_dupont"]}
    assert found(session, PatientQuery(family_name="DUPONT")) == {ids["martin_dupont"]}
    assert found(session, PatientQuery(family_name="DELAFONTAINE")) == {ids["fontaine"]}
    assert found(session, PatientQuery(family_name="LA FONTAINE")) == {ids["fontaine"]}
    assert found(session, PatientQuery(family_name="FONTAINE")) == {ids["fontaine"]}


def test_family_name_matches_used_and_birth_name_and_birth_name_only_birth(people):
    session, ids = people
    assert found(session, PatientQuery(family_name="LEGRAND")) == {ids["used_name"]}
    assert found(session, PatientQuery(family_name="DUPOND")) == {ids["used_name"]}
    assert found(session, PatientQuery(birth_name="LEGRAND")) == {ids["used_name"]}
    assert found(session, PatientQuery(birth_name="DUPOND")) == set()


def test_trailing_star_is_a_prefix(people):
    session, ids = people
    assert found(session, PatientQuery(family_name="MART*")) == {ids["martin"], ids["martin_dupont"],
                                                                  ids["martinez"]}
    assert found(session, PatientQuery(family_name="*", sex="F")) == {ids["martin"], ids["used_name"],
                                                                     ids["martinez"]}


def test_phonetic_mode(people):
    session, ids = people
    assert found(session, PatientQuery(family_name="DUPONT", fuzzy=True)) == {ids["martin_dupont"], ids["used_name"]}
    assert found(session, PatientQuery(family_name="DUPONT")) == {ids["martin_dupont"]}
    matches = search_patients(session, PatientQuery(family_name="DUPONT", fuzzy=True), limit=10)
    scores = {match.patient_id: match.score for match in matches}
    assert scores[ids["martin_dupont"]] == 1.0 and 0 < scores[ids["used_name"]] < 1


def test_given_name_birth_date_and_sex(people):
    session, ids = people
    assert found(session, PatientQuery(given_name="elise")) == {ids["martin"]}
    assert found(session, PatientQuery(given_name="JEAN")) == {ids["martin_dupont"], ids["fontaine"]}
    assert found(session, PatientQuery(birth_date="1980")) == {ids["martin"], ids["martin_dupont"]}
    assert found(session, PatientQuery(birth_date="198011")) == {ids["martin"]}
    assert found(session, PatientQuery(birth_date="19800115", sex="m")) == {ids["martin_dupont"]}
    assert found(session, PatientQuery(birth_date="19800115", sex="F")) == set()
    with pytest.raises(QueryRefused):
        search_patients(session, PatientQuery(birth_date="80-01"), limit=1)


def test_address_phone_account_and_mothers_maiden_name(people):
    session, ids = people
    assert found(session, PatientQuery(city="SAINT ETIENNE")) == {ids["martin"]}
    assert found(session, PatientQuery(postal_code="42000")) == {ids["martin"]}
    assert found(session, PatientQuery(street="3 RUE DE LA PAIX")) == {ids["martin"]}
    assert found(session, PatientQuery(country="fra")) == {ids["martin"]}
    assert found(session, PatientQuery(phone="33 0477000000")) == {ids["martin"]}
    assert found(session, PatientQuery(account_number="ACC-9")) == {ids["martin"]}
    assert found(session, PatientQuery(mothers_maiden_name="LEFEVRE")) == {ids["fontaine"]}


def test_identifier_criteria(people):
    session, ids = people
    assert found(session, PatientQuery(identifier=CX(id="3", namespace_id="IPP"))) == {ids["fontaine"]}
    by_value = PatientQuery(identifiers=(IdentifierCriterion(value="INS1"),))
    assert found(session, by_value) == {ids["martin_dupont"]}
    by_domain = PatientQuery(identifiers=(IdentifierCriterion(authority=Authority(namespace_id="INS-NIR")),))
    assert found(session, by_domain) == {ids["martin_dupont"]}
    nowhere = PatientQuery(identifiers=(IdentifierCriterion(value="1", authority=Authority(namespace_id="NO")),))
    assert found(session, nowhere) == set()


def test_domains_filter_identifiers_and_drop_patients_without_any(people):
    session, ids = people
    matches = search_patients(session, PatientQuery(family_name="MARTIN"), domains=[Authority(namespace_id="INS-NIR")],
                              limit=10)
    assert [(match.patient_id, [cx.id for cx in match.identifiers]) for match in matches] == \
        [(ids["martin_dupont"], ["INS1"])]


def test_keyset_paging_visits_every_match_once_in_id_order(people):
    session, ids = people
    query = PatientQuery(family_name="MART*")
    first = search_patients(session, query, limit=2)
    rest = search_patients(session, query, limit=2, after_patient_id=first[-1].patient_id)
    assert [match.patient_id for match in first + rest] == sorted([ids["martin"], ids["martin_dupont"],
                                                                   ids["martinez"]])


def test_traits_snapshot_and_name_updates_move_the_keys(people):
    session, ids = people
    match = search_patients(session, PatientQuery(family_name="MARTIN", given_name="ELISE"), limit=1)[0]
    assert (match.traits.family_name, match.traits.city, match.traits.account_number) == \
        ("Martin", "Saint-Étienne", "ACC-9")
    IdentityStore(session).create_or_update([CX(id="2", **IPP)], Demographics(family_name="BERNARD"),
                                            FeedEvent(kind="A08"))
    assert found(session, PatientQuery(family_name="BERNARD", given_name="ELISE")) == {ids["martin"]}
    assert ids["martin"] not in found(session, PatientQuery(family_name="MARTIN"))


def test_merged_patients_are_not_found(people):
    session, ids = people
    store = IdentityStore(session)
    store.merge(CX(id="1", **IPP), CX(id="5", **IPP), FeedEvent(kind="A40"))
    assert found(session, PatientQuery(family_name="MARTINEZ")) == set()


def test_migration_keys_patients_fed_before_it(database):
    """0005 backfills the keys of existing patients, and steps down and up again cleanly."""
    from datetime import datetime, timezone

    from alembic import command
    from sqlalchemy import text

    config = database.alembic_config()
    command.downgrade(config, "0005_pdq_search-1")
    now = datetime.now(timezone.utc)
    with database.engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO patient (status, created_at, updated_at, family_name, given_name, city, postal_code, phone) "
            "VALUES ('active', :now, :now, 'Martin-Dupont', 'Élise', 'Saint-Étienne', '42 000', '04 77')"),
            {"now": now})
        patient_id = connection.execute(text("SELECT max(id) FROM patient")).scalar()
        connection.execute(text(
            "INSERT INTO patient_identifier (patient_id, value, authority_key, namespace_id, universal_id, "
            "universal_id_type, type_code, status, created_at, updated_at) "
            "VALUES (:patient, 'OLD-1', 'IPP', 'IPP', '', '', '', 'active', :now, :now)"),
            {"patient": patient_id, "now": now})
    command.upgrade(config, "heads")
    with database.sessions() as session:
        assert found(session, PatientQuery(family_name="dupont", given_name="elise", city="saint etienne",
                                           postal_code="42000", phone="0477")) == {patient_id}
