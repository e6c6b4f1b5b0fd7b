"""ITI-62 Remove Metadata against a real store (SQLite and PostgreSQL): each RMD rule with its exact code, in the
combinations the NIST kit tests 30000-30008 use, nothing removed after a refusal (every row of every registry table compared),
no row left after a complete removal, and removed objects gone from the stored queries."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select

from ihe_engine.storage import UnitOfWork
from ihe_engine.xds import constants as c, parse_submission
from ihe_engine.xds.errors import XdsError
from ihe_engine.xds.query.engine import run_stored_query
from ihe_engine.xds.query.params import parse_adhoc_query_request
from ihe_engine.xds.registry.remove import remove_metadata
from ihe_engine.xds.registry.store import RegistryStore
from ihe_engine.xds.registry.tables import REGISTRY_TABLES
from test_xds_query_params import request as query_request
from test_xds_registry_iti42 import REGISTRY
from xds_registry_requests import association, entry, folder, pid, request, submission_set
from xds_testing import feed_patients, registry_snapshot

ALICE = pid("RMD-ALICE")
BOTH_STATUSES = f"('{c.STATUS_APPROVED}', '{c.STATUS_DEPRECATED}')"


def new_id() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


class Ids(dict):
    """Symbolic name -> the entryUUID given to it in the submission (the registry keeps UUIDs as submitted)."""

    def __missing__(self, name: str) -> str:
        self[name] = new_id()
        return self[name]


@pytest.fixture
def db(database):
    feed_patients(database, ALICE)
    return database


def register(database, *pieces: str) -> None:
    with UnitOfWork(database.sessions) as uow:
        REGISTRY.register_document_set_b(parse_submission(request(*pieces)), uow)
        uow.commit()


def remove(database, *object_ids: str):
    with UnitOfWork(database.sessions) as uow:
        response = remove_metadata(REGISTRY, object_ids, uow)
        uow.commit()
    return response


def row_counts(database) -> dict[str, int]:
    with database.sessions() as session:
        return {table.__tablename__: session.scalar(select(func.count()).select_from(table))
                for table in REGISTRY_TABLES}


def refused(database, *object_ids: str) -> list[str]:
    """The error codes of a refused removal, after checking that no row of any registry table changed."""
    before = registry_snapshot(database)
    with pytest.raises(XdsError) as caught:
        remove(database, *object_ids)
    assert registry_snapshot(database) == before
    return [error.error_code for error in caught.value.errors]


def exists(database, *uuids: str) -> set[str]:
    with UnitOfWork(database.sessions, readonly=True) as uow:
        return set(RegistryStore(uow.session).find(uuids))


def status_of(database, uuid_: str) -> str:
    with UnitOfWork(database.sessions, readonly=True) as uow:
        return RegistryStore(uow.session).get(uuid_).status


def get_all(database, patient: str = ALICE) -> set[str]:
    """Every object GetAll returns for the patient, any status: what a consumer can still see."""
    slots = [("$patientId", [f"'{patient}'"]), ("$XDSDocumentEntryStatus", [BOTH_STATUSES]),
             ("$XDSSubmissionSetStatus", [BOTH_STATUSES]), ("$XDSFolderStatus", [BOTH_STATUSES]),
             ("$XDSAssociationStatus", [BOTH_STATUSES])]
    parsed = parse_adhoc_query_request(query_request(c.SQ_GET_ALL, slots, return_type="ObjectRef"))
    with UnitOfWork(database.sessions, readonly=True) as uow:
        result = run_stored_query(parsed, uow, max_results=1000)
    return {element.get("id") for element in result.objects}


# -- submissions shaped like the kit's ----------------------------------------------------------------------------

def submit_document(database, ids: Ids, suffix: str = "", *extra: str) -> None:
    """SubmissionSet SS<suffix> holding DocumentEntry DE<suffix> through HasMember HM<suffix> (kit 30001)."""
    ss, de, hm = ids["SS" + suffix], ids["DE" + suffix], ids["HM" + suffix]
    register(database, submission_set(ss, ALICE), entry(de, ALICE),
             association(hm, c.HAS_MEMBER, ss, de, status="Original"), *extra)


def submit_related(database, ids: Ids, suffix: str, kind: str, target: str) -> None:
    """A new DocumentEntry in its own SubmissionSet, related to ``target`` by ``kind`` (association R<suffix>)."""
    submit_document(database, ids, suffix, association(ids["R" + suffix], kind, ids["DE" + suffix], target))


def submit_document_in_folder(database, ids: Ids) -> None:
    """Kit 30003: SS, DE, FD; SS-DE, SS-FD, FD-DE HasMembers and the SS HasMember of FD-DE."""
    register(database, submission_set(ids["SS"], ALICE), entry(ids["DE"], ALICE), folder(ids["FD"], ALICE),
             association(ids["SS-DE"], c.HAS_MEMBER, ids["SS"], ids["DE"], status="Original"),
             association(ids["SS-FD"], c.HAS_MEMBER, ids["SS"], ids["FD"]),
             association(ids["FD-DE"], c.HAS_MEMBER, ids["FD"], ids["DE"]),
             association(ids["SS-FDDE"], c.HAS_MEMBER, ids["SS"], ids["FD-DE"]))


def document_set(ids: Ids, suffix: str = "") -> tuple[str, str, str]:
    return ids["DE" + suffix], ids["HM" + suffix], ids["SS" + suffix]


# -- UnresolvedReferenceException (30000) --------------------------------------------------------------------------

def test_unknown_object_is_unresolved(db):
    assert refused(db, "urn:uuid:11111111-2222-3333-4444-999999999999") == ["UnresolvedReferenceException"]


def test_every_unknown_object_is_reported_and_known_ones_are_kept(db):
    ids = Ids()
    submit_document(db, ids)
    unknown = [new_id(), new_id()]
    assert refused(db, *document_set(ids), *unknown) == ["UnresolvedReferenceException"] * 2
    assert exists(db, *document_set(ids)) == set(document_set(ids))


def test_empty_request_is_a_metadata_error(db):
    assert refused(db) == ["XDSRegistryMetadataError"]


# -- one DocumentEntry / one Folder (30001, 30002) -----------------------------------------------------------------

def test_document_submission_pattern(db):
    ids = Ids()
    submit_document(db, ids)
    assert refused(db, ids["SS"]) == ["ReferencesExistException"]
    assert refused(db, ids["DE"], ids["HM"]) == ["XDSUnreferencedObjectException"]
    assert remove(db, ids["DE"], ids["HM"], ids["SS"]).status == c.RESPONSE_SUCCESS
    assert row_counts(db) == dict.fromkeys(row_counts(db), 0)
    assert get_all(db) == set()


def test_folder_submission_pattern(db):
    ids = Ids()
    register(db, submission_set(ids["SS"], ALICE), folder(ids["FD"], ALICE),
             association(ids["HM"], c.HAS_MEMBER, ids["SS"], ids["FD"]))
    assert refused(db, ids["SS"]) == ["ReferencesExistException"]
    assert refused(db, ids["FD"], ids["HM"]) == ["XDSUnreferencedObjectException"]
    remove(db, ids["FD"], ids["HM"], ids["SS"])
    assert row_counts(db) == dict.fromkeys(row_counts(db), 0)


def test_removing_only_the_membership_orphans_both_ends(db):
    ids = Ids()
    submit_document(db, ids)
    assert refused(db, ids["HM"]) == ["XDSUnreferencedObjectException"] * 2


def test_removal_is_atomic_with_every_error_reported(db):
    """Two submissions: one removable set and one refused object in the same request -- nothing goes."""
    ids = Ids()
    submit_document(db, ids, "1")
    submit_document(db, ids, "2")
    codes = refused(db, *document_set(ids, "1"), ids["SS2"], ids["DE2"])
    assert codes == ["ReferencesExistException"] * 2  # HM2 stays and points at both
    assert exists(db, *document_set(ids, "1")) == set(document_set(ids, "1"))


def test_references_and_orphans_are_reported_together(db):
    ids = Ids()
    submit_document(db, ids, "1")
    submit_document(db, ids, "2")
    codes = refused(db, ids["SS1"], ids["HM2"])
    assert sorted(codes) == ["ReferencesExistException", "XDSUnreferencedObjectException",
                             "XDSUnreferencedObjectException"]


def test_complete_removal_leaves_other_submissions_untouched(db):
    ids = Ids()
    submit_document(db, ids, "1")
    before_second = row_counts(db)
    submit_document(db, ids, "2")
    remove(db, *document_set(ids, "2"), ids["DE2"])  # a repeated id is one removal
    assert row_counts(db) == before_second
    assert get_all(db) == set(document_set(ids, "1"))


# -- Folder and DocumentEntry (30003) ------------------------------------------------------------------------------

def test_folder_and_document_pattern(db):
    ids = Ids()
    submit_document_in_folder(db, ids)
    everything_but_set = [ids[name] for name in ("DE", "FD", "SS-DE", "SS-FD", "SS-FDDE", "FD-DE")]
    assert refused(db, *everything_but_set) == ["XDSUnreferencedObjectException"]
    assert refused(db, ids["SS"]) == ["ReferencesExistException"] * 3
    assert refused(db, ids["FD-DE"]) == ["ReferencesExistException"]  # its SS HasMember stays
    remove(db, ids["FD-DE"], ids["SS-FDDE"])
    assert get_all(db) == {ids[name] for name in ("SS", "DE", "FD", "SS-DE", "SS-FD")}
    counts = row_counts(db)
    assert (counts["xds_object"], counts["xds_association"], counts["xds_folder"]) == (5, 2, 1)


def test_document_removed_with_its_memberships_leaves_the_folder(db):
    ids = Ids()
    submit_document_in_folder(db, ids)
    remove(db, ids["DE"], ids["SS-DE"], ids["FD-DE"], ids["SS-FDDE"])
    assert get_all(db) == {ids["SS"], ids["FD"], ids["SS-FD"]}


# -- relationships (30004-30008) -----------------------------------------------------------------------------------

def test_appended_document_pattern(db):
    """30004: the original cannot go while the APND points at it; the appendix goes with its APND."""
    ids = Ids()
    submit_document(db, ids, "0")
    submit_related(db, ids, "1", c.APND, ids["DE0"])
    assert refused(db, *document_set(ids, "0")) == ["ReferencesExistException"]
    assert refused(db, *document_set(ids, "1")) == ["ReferencesExistException"]  # the APND's source
    remove(db, ids["R1"], *document_set(ids, "1"))
    assert get_all(db) == set(document_set(ids, "0"))
    assert status_of(db, ids["DE0"]) == c.STATUS_APPROVED


def test_replacement_pattern(db):
    """30005: the replacement cannot go without its RPLC; the deprecated original can go with it."""
    ids = Ids()
    submit_document(db, ids, "0")
    submit_related(db, ids, "1", c.RPLC, ids["DE0"])
    assert status_of(db, ids["DE0"]) == c.STATUS_DEPRECATED
    assert refused(db, *document_set(ids, "1")) == ["ReferencesExistException"]
    remove(db, ids["R1"], *document_set(ids, "0"))
    assert get_all(db) == set(document_set(ids, "1"))
    assert status_of(db, ids["DE1"]) == c.STATUS_APPROVED


def test_transform_replacement_then_append_in_order(db):
    """30006: DE1 XFRM_RPLC DE0, DE2 APND DE1, removed one submission at a time."""
    ids = Ids()
    submit_document(db, ids, "0")
    submit_related(db, ids, "1", c.XFRM_RPLC, ids["DE0"])
    submit_related(db, ids, "2", c.APND, ids["DE1"])
    assert refused(db, *document_set(ids, "0")) == ["ReferencesExistException"]
    remove(db, *document_set(ids, "0"), ids["R1"])
    assert refused(db, *document_set(ids, "1")) == ["ReferencesExistException"]
    remove(db, ids["R2"], *document_set(ids, "2"))
    remove(db, *document_set(ids, "1"))
    assert row_counts(db) == dict.fromkeys(row_counts(db), 0)


def test_whole_chain_in_one_request(db):
    """30007: the same three submissions and their relationships in one request."""
    ids = Ids()
    submit_document(db, ids, "0")
    submit_related(db, ids, "1", c.XFRM_RPLC, ids["DE0"])
    submit_related(db, ids, "2", c.APND, ids["DE1"])
    remove(db, *document_set(ids, "0"), ids["R1"], *document_set(ids, "1"), ids["R2"], *document_set(ids, "2"))
    assert row_counts(db) == dict.fromkeys(row_counts(db), 0)


def test_removing_a_replacement_keeps_its_predecessor_deprecated(db):
    """30008: DE1 APND DE0, DE2 XFRM_RPLC DE1; relationships removed alone; DE1 stays Deprecated at the end."""
    ids = Ids()
    submit_document(db, ids, "0")
    submit_related(db, ids, "1", c.APND, ids["DE0"])
    submit_related(db, ids, "2", c.XFRM_RPLC, ids["DE1"])
    assert refused(db, *document_set(ids, "0")) == ["ReferencesExistException"]
    remove(db, ids["R1"])
    remove(db, *document_set(ids, "0"))
    assert refused(db, *document_set(ids, "1")) == ["ReferencesExistException"]
    remove(db, ids["R2"], *document_set(ids, "2"))
    assert get_all(db) == {ids["DE1"], ids["HM1"], ids["SS1"]}
    assert status_of(db, ids["DE1"]) == c.STATUS_DEPRECATED
