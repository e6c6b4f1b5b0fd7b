"""PIX cross-references over the store (the sans-wire core ITI-9 and ITI-45 share), on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from ihe_engine.identity.cx import CX
from ihe_engine.identity.pix import (Authority, PixOutcome, authority_keys, cross_references, is_known_domain)
from ihe_engine.identity.store import Demographics, FeedEvent, IdentityStore

HZLN = CX(id="H1", namespace_id="HZLN", universal_id="1.2.3.411", universal_id_type="ISO")
PKLN = CX(id="P1", namespace_id="PKLN", universal_id="1.2.3.511", universal_id_type="ISO")
LOCAL = CX(id="L1", namespace_id="LOCAL")


@pytest.fixture
def session(database):
    with database.sessions() as session:
        store = IdentityStore(session)
        store.create_or_update([HZLN, PKLN, LOCAL], Demographics(family_name="MARTIN"), FeedEvent(kind="A01"))
        store.create_or_update([CX(id="H2", namespace_id="HZLN", universal_id="1.2.3.411", universal_id_type="ISO")],
                               Demographics(family_name="ALONE"), FeedEvent(kind="A01"))
        session.commit()
        yield session


def test_all_other_ids_without_target_domains(session):
    answer = cross_references(session, HZLN)
    assert answer.outcome is PixOutcome.FOUND
    assert set(answer.identifiers) == {PKLN, LOCAL}


def test_namespace_oid_or_both_name_the_same_domain(session):
    by_namespace = CX(id="H1", namespace_id="HZLN")
    by_oid = CX(id="H1", universal_id="1.2.3.411", universal_id_type="ISO")
    for source in (by_namespace, by_oid, HZLN):
        assert set(cross_references(session, source).identifiers) == {PKLN, LOCAL}
    assert authority_keys(session, Authority(namespace_id="HZLN")) == {"HZLN", "1.2.3.411"}
    assert authority_keys(session, Authority(universal_id="1.2.3.511", universal_id_type="ISO")) == {"1.2.3.511"}


def test_target_domains_filter_and_may_ask_for_the_source_domain(session):
    answer = cross_references(session, HZLN, [Authority(namespace_id="PKLN")])
    assert answer.identifiers == (PKLN,)
    answer = cross_references(session, HZLN, [Authority(namespace_id="HZLN"), LOCAL])
    assert set(answer.identifiers) == {HZLN, LOCAL}


def test_none_in_domains(session):
    answer = cross_references(session, CX(id="H2", namespace_id="HZLN"))
    assert answer.outcome is PixOutcome.NONE_IN_DOMAINS and answer.identifiers == ()
    answer = cross_references(session, HZLN, [Authority(namespace_id="HZLN")], configured=[])
    assert answer.outcome is PixOutcome.FOUND


def test_unknown_cases(session):
    assert cross_references(session, CX(id="NOPE", namespace_id="HZLN")).outcome is PixOutcome.UNKNOWN_IDENTIFIER
    assert cross_references(session, CX(id="H1", namespace_id="ELSEWHERE")).outcome \
        is PixOutcome.UNKNOWN_SOURCE_DOMAIN
    answer = cross_references(session, HZLN, [Authority(namespace_id="PKLN"), Authority(namespace_id="X"),
                                              Authority(universal_id="9.9", universal_id_type="ISO")])
    assert answer.outcome is PixOutcome.UNKNOWN_TARGET_DOMAIN and answer.unknown_domains == (1, 2)


def test_configured_domains_are_known_before_any_id(session):
    empty = Authority(namespace_id="NEWDOM", universal_id="1.9.9", universal_id_type="ISO")
    assert not is_known_domain(session, empty)
    assert is_known_domain(session, Authority(universal_id="1.9.9"), configured=[empty])
    answer = cross_references(session, HZLN, [empty], configured=[empty])
    assert answer.outcome is PixOutcome.NONE_IN_DOMAINS
    assert not is_known_domain(session, Authority())
