"""ITI-42 Register Document Set-b against a real store (SQLite and PostgreSQL): every registry rule with its exact
error code, and nothing stored after a refusal."""

from __future__ import annotations


import pytest
from lxml import etree
from sqlalchemy import func, select, update

from ihe_engine.identity.cx import CX
from ihe_engine.identity.store import FeedEvent, IdentityStore
from ihe_engine.identity.tables import IdentifierStatus, PatientIdentifier
from ihe_engine.ns import RIM
from ihe_engine.storage import UnitOfWork
from ihe_engine.xds import constants as c, parse_submission
from ihe_engine.xds.affinity import load_code_set
from ihe_engine.xds.errors import XdsError
from ihe_engine.xds.registry.actor import DocumentRegistry, RegistrySettings
from ihe_engine.xds.registry.store import RegistryStore
from ihe_engine.xds.registry.tables import REGISTRY_TABLES, ObjectKind, XdsFolder, XdsObject
from xds_registry_requests import (DOMAIN, OTHER_DOMAIN, association, document_in_folder, entry, folder,
                                   one_document, pid, request, slot, submission_set)
from xds_testing import feed_patients

ALICE, BOB = pid("ALICE"), pid("BOB")
REGISTRY = DocumentRegistry(RegistrySettings(affinity_domain=DOMAIN))


def merge(database, survivor: str, subsumed: str) -> None:
    with UnitOfWork(database.sessions) as uow:
        IdentityStore(uow.session).merge(CX.from_xds(survivor), CX.from_xds(subsumed), FeedEvent(kind="A40"))
        uow.commit()


def register(database, payload: bytes, registry: DocumentRegistry = REGISTRY):
    submission = parse_submission(payload)
    with UnitOfWork(database.sessions) as uow:
        response = registry.register_document_set_b(submission, uow)
        uow.commit()
    return response


def refused(database, payload: bytes, registry: DocumentRegistry = REGISTRY) -> XdsError:
    """The XdsError of a refused submission, after checking that nothing of it was stored."""
    before = _row_counts(database)
    with pytest.raises(XdsError) as caught:
        register(database, payload, registry)
    assert _row_counts(database) == before
    return caught.value


def _row_counts(database) -> dict[str, int]:
    with database.sessions() as session:
        return {table.__tablename__: session.scalar(select(func.count()).select_from(table))
                for table in REGISTRY_TABLES}


def codes(error: XdsError) -> list[str]:
    return [e.error_code for e in error.errors]


def read(database, fn):
    with UnitOfWork(database.sessions, readonly=True) as uow:
        return fn(RegistryStore(uow.session))


def uuid_of(database, unique_id: str) -> str:
    [found] = read(database, lambda store: store.by_unique_ids([unique_id]))
    return found.uuid


def status_of(database, uuid: str) -> str:
    return read(database, lambda store: store.get(uuid).status)


def leaf(database, uuid: str) -> etree._Element:
    return etree.fromstring(read(database, lambda store: store.leaf_classes([uuid])[uuid]))


@pytest.fixture
def db(database):
    feed_patients(database, ALICE, BOB)
    return database


# --- acceptance -----------------------------------------------------------------------------------------------

def test_valid_submission_is_stored_with_registry_values(db):
    response = register(db, document_in_folder(ALICE, folder_uid="1.2.3.99.1"))
    assert response.status == c.RESPONSE_SUCCESS and response.errors == ()
    counts = _row_counts(db)
    assert (counts["xds_object"], counts["xds_document_entry"], counts["xds_folder"]) == (7, 1, 1)
    doc = read(db, lambda store: store.by_unique_ids([], kinds=()))  # empty input, no query error
    assert doc == []
    folder_uuid = uuid_of(db, "1.2.3.99.1")
    element = leaf(db, folder_uuid)
    assert element.get("status") == c.STATUS_APPROVED and element.get("lid") == folder_uuid
    assert element.find(f"{{{RIM}}}VersionInfo").get("versionName") == "1"
    last_update = [v.text for s in element.iter(f"{{{RIM}}}Slot") if s.get("name") == "lastUpdateTime"
                   for v in s.iter(f"{{{RIM}}}Value")]
    assert len(last_update) == 1 and len(last_update[0]) == 14
    with db.sessions() as session:
        ids = session.scalars(select(XdsObject.uuid)).all()
        assert all(uuid.startswith("urn:uuid:") for uuid in ids)
        assert session.get(XdsFolder, folder_uuid).last_update_time == last_update[0]


def test_committee_example(db, corpus_dir):
    """The ihe-iti-info RegisterDocumentSet-b example lacks hash, size and repositoryUniqueId, which ITI-42
    requires of a repository (A5; NIST 12084 expects the refusal): refused for exactly that, accepted once a
    repository has added them."""
    path = corpus_dir / "ihe-iti-info/examples/XDS.b/RegisterDocumentSet-bRequest.xml"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    patient = "SELF-5^^^&1.3.6.1.4.1.21367.2005.3.7&ISO"
    feed_patients(db, patient)
    registry = DocumentRegistry(RegistrySettings(affinity_domain="1.3.6.1.4.1.21367.2005.3.7"))
    error = refused(db, path.read_bytes(), registry)
    assert codes(error) == ["XDSRegistryMetadataError"] * 3
    assert [e.code_context.rsplit(" ", 3)[1] for e in error.errors] == ["hash", "size", "repositoryUniqueId"]
    root = etree.fromstring(path.read_bytes())
    extrinsic = root.find(f".//{{{RIM}}}ExtrinsicObject")
    for name, value in (("hash", "4cf4f82d78b5e2aac35c31bca8cb79fe6bd6a41e"), ("size", "1"),
                        ("repositoryUniqueId", "1.3.6.1.4.1.21367.2010.1.2.1125")):
        extrinsic.insert(0, etree.fromstring(f'<rim:Slot xmlns:rim="{RIM}" name="{name}"><rim:ValueList>'
                                             f"<rim:Value>{value}</rim:Value></rim:ValueList></rim:Slot>"))
    assert register(db, etree.tostring(root), registry).status == c.RESPONSE_SUCCESS
    assert read(db, lambda store: store.count(ObjectKind.DOCUMENT_ENTRY)) == 1


# --- patient identity -----------------------------------------------------------------------------------------

def test_unknown_patient(db):
    error = refused(db, one_document(pid("NOBODY")))
    assert codes(error) == ["XDSUnknownPatientId"]
    assert pid("NOBODY") in error.code_context


def test_patient_outside_the_affinity_domain(db):
    stranger = pid("ALICE", OTHER_DOMAIN)
    feed_patients(db, stranger)
    error = refused(db, one_document(stranger))
    assert codes(error) == ["XDSUnknownPatientId"] and OTHER_DOMAIN in error.code_context


def test_merged_patient_is_refused(db):
    merge(db, ALICE, BOB)
    error = refused(db, one_document(BOB))
    assert codes(error) == ["XDSUnknownPatientId"] and "subsumed" in error.code_context
    assert register(db, one_document(ALICE)).status == c.RESPONSE_SUCCESS


def test_identifier_withdrawn_by_its_source_is_refused(db):
    with UnitOfWork(db.sessions) as uow:  # what an HL7 "" for the authority leaves behind
        uow.session.execute(update(PatientIdentifier).where(PatientIdentifier.value == "ALICE")
                            .values(status=IdentifierStatus.INACTIVE))
        uow.commit()
    error = refused(db, one_document(ALICE))
    assert codes(error) == ["XDSUnknownPatientId"] and "no longer active" in error.code_context
    assert register(db, one_document(BOB)).status == c.RESPONSE_SUCCESS


def test_without_affinity_domain_the_patient_must_still_be_fed(db):
    registry = DocumentRegistry(RegistrySettings())
    other = pid("CAROL", OTHER_DOMAIN)
    assert codes(refused(db, one_document(other), registry)) == ["XDSUnknownPatientId"]
    feed_patients(db, other)
    assert register(db, one_document(other), registry).status == c.RESPONSE_SUCCESS


def test_submission_set_and_entry_patients_differ(db):
    payload = request(entry("Doc1", BOB), submission_set("SS", ALICE),
                      association("a", c.HAS_MEMBER, "SS", "Doc1", status="Original"))
    assert codes(refused(db, payload)) == ["XDSPatientIdDoesNotMatch"]


# --- uniqueIds and ids ----------------------------------------------------------------------------------------

def test_resubmission_same_unique_id(db):
    register(db, one_document(ALICE, doc_uid="1.2.3.42"))
    assert register(db, one_document(ALICE, doc_uid="1.2.3.42")).status == c.RESPONSE_SUCCESS
    assert len(read(db, lambda store: store.entries_by_unique_ids(["1.2.3.42"]))) == 2
    other_hash = "0" * 40
    error = refused(db, one_document(ALICE, doc_uid="1.2.3.42", hash_=other_hash))
    assert codes(error) == ["XDSNonIdenticalHash", "XDSNonIdenticalHash"]
    assert codes(refused(db, one_document(ALICE, doc_uid="1.2.3.42", size="7"))) == ["XDSNonIdenticalSize"] * 2


def test_hash_comparison_ignores_case(db):
    register(db, one_document(ALICE, doc_uid="1.2.3.43", hash_="ab" * 20))
    assert register(db, one_document(ALICE, doc_uid="1.2.3.43", hash_="AB" * 20)).status == c.RESPONSE_SUCCESS


def test_submission_set_and_folder_unique_ids_cannot_repeat(db):
    register(db, document_in_folder(ALICE, folder_uid="1.2.3.50"))
    assert codes(refused(db, document_in_folder(ALICE, folder_uid="1.2.3.50"))) == \
        ["XDSDuplicateUniqueIdInRegistry"]
    register(db, one_document(ALICE, ss_uid="1.2.3.51"))
    assert codes(refused(db, one_document(ALICE, ss_uid="1.2.3.51"))) == ["XDSDuplicateUniqueIdInRegistry"]


def test_pre_assigned_uuid_cannot_be_submitted_twice(db):
    """NIST 15806: the first submission with a pre-assigned UUID is accepted, the second refused."""
    entry_uuid = "urn:uuid:6f0a7c1e-3b4d-4c1b-9a53-0c4f2d1e8b77"
    register(db, one_document(ALICE, entry_id=entry_uuid))
    error = refused(db, one_document(ALICE, entry_id=entry_uuid))
    assert codes(error) == ["XDSRegistryMetadataError"] and entry_uuid in error.code_context
    assert status_of(db, entry_uuid) == c.STATUS_APPROVED


# --- relationships --------------------------------------------------------------------------------------------

def _replace(original: str, patient: str = ALICE, kind: str = c.RPLC) -> bytes:
    return one_document(patient, entry_id="New", extra=(association("r", kind, "New", original),))


def test_relationship_target_must_exist(db):
    error = refused(db, _replace("urn:uuid:11111111-2222-3333-4444-555555555555"))
    assert codes(error) == ["UnresolvedReferenceException"]


def test_relationship_target_must_be_approved(db):
    register(db, one_document(ALICE, doc_uid="1.2.3.60"))
    original = uuid_of(db, "1.2.3.60")
    register(db, _replace(original))
    assert status_of(db, original) == c.STATUS_DEPRECATED
    for kind in (c.RPLC, c.APND, c.XFRM, c.XFRM_RPLC):
        assert codes(refused(db, _replace(original, kind=kind))) == ["XDSRegistryDeprecatedDocumentError"]


def test_relationship_ends_must_share_the_patient(db):
    register(db, one_document(ALICE, doc_uid="1.2.3.61"))
    assert codes(refused(db, _replace(uuid_of(db, "1.2.3.61"), patient=BOB))) == ["XDSPatientIdDoesNotMatch"]


def test_relationship_follows_merges(db):
    register(db, one_document(BOB, doc_uid="1.2.3.62"))
    merge(db, ALICE, BOB)
    original = uuid_of(db, "1.2.3.62")
    assert register(db, _replace(original, patient=ALICE)).status == c.RESPONSE_SUCCESS
    assert status_of(db, original) == c.STATUS_DEPRECATED


def test_replacement_deprecates_original_and_children_and_takes_its_folders(db):
    register(db, document_in_folder(ALICE, folder_uid="1.2.3.70"))
    folder_uuid = uuid_of(db, "1.2.3.70")
    [original] = read(db, lambda store: [a.target_uuid for a in store.associations(sources=[folder_uuid])])
    before = etree.fromstring(read(db, lambda s: s.leaf_classes([folder_uuid])[folder_uuid]))
    register(db, one_document(ALICE, entry_id="Add", doc_uid="1.2.3.71",
                              extra=(association("ap", c.APND, "Add", original),)))
    register(db, one_document(ALICE, entry_id="Tr", doc_uid="1.2.3.72",
                              extra=(association("tr", c.XFRM, "Tr", original),)))
    with db.sessions() as session:  # make the folder look old, so the update is visible
        session.execute(XdsFolder.__table__.update().values(last_update_time="20000101000000",
                                                            last_update_time_key="20000101000000"))
        session.commit()
    register(db, one_document(ALICE, entry_id="New", doc_uid="1.2.3.73",
                              extra=(association("r", c.RPLC, "New", original),)))
    replacement = uuid_of(db, "1.2.3.73")
    assert [status_of(db, uuid) for uuid in (original, uuid_of(db, "1.2.3.71"), uuid_of(db, "1.2.3.72"))] == \
        [c.STATUS_DEPRECATED] * 3
    assert status_of(db, replacement) == c.STATUS_APPROVED
    assert leaf(db, original).get("status") == c.STATUS_DEPRECATED
    members = read(db, lambda store: store.associations(sources=[folder_uuid], types=[c.HAS_MEMBER]))
    assert sorted(a.target_uuid for a in members) == sorted([original, replacement])
    assert all(a.status == c.STATUS_APPROVED for a in members)
    with db.sessions() as session:
        assert session.get(XdsFolder, folder_uuid).last_update_time > "20000101000000"
    assert before.get("id") == folder_uuid


# --- folders --------------------------------------------------------------------------------------------------

def _add_to_folder(folder_uuid: str, entry_uuid: str, patient: str = ALICE) -> bytes:
    return request(submission_set("SS", patient), association("fd", c.HAS_MEMBER, folder_uuid, entry_uuid),
                   association("ss-fd", c.HAS_MEMBER, "SS", "fd"))


def test_existing_document_into_existing_folder(db):
    register(db, request(folder("F1", ALICE, unique_id="1.2.3.80"), submission_set("SS", ALICE),
                         association("ss-f", c.HAS_MEMBER, "SS", "F1")))
    register(db, one_document(ALICE, doc_uid="1.2.3.81"))
    folder_uuid, entry_uuid = uuid_of(db, "1.2.3.80"), uuid_of(db, "1.2.3.81")
    with db.sessions() as session:
        session.execute(XdsFolder.__table__.update().values(last_update_time="20000101000000"))
        session.commit()
    assert register(db, _add_to_folder(folder_uuid, entry_uuid)).status == c.RESPONSE_SUCCESS
    with db.sessions() as session:
        assert session.get(XdsFolder, folder_uuid).last_update_time > "20000101000000"


def test_folder_member_of_another_patient(db):
    """NIST 12002."""
    register(db, request(folder("F1", ALICE, unique_id="1.2.3.82"), submission_set("SS", ALICE),
                         association("ss-f", c.HAS_MEMBER, "SS", "F1")))
    register(db, one_document(BOB, doc_uid="1.2.3.83"))
    error = refused(db, _add_to_folder(uuid_of(db, "1.2.3.82"), uuid_of(db, "1.2.3.83")))
    assert codes(error) == ["XDSPatientIdDoesNotMatch"]


def test_folder_member_must_be_approved(db):
    register(db, request(folder("F1", ALICE, unique_id="1.2.3.84"), submission_set("SS", ALICE),
                         association("ss-f", c.HAS_MEMBER, "SS", "F1")))
    register(db, one_document(ALICE, doc_uid="1.2.3.85"))
    original = uuid_of(db, "1.2.3.85")
    register(db, _replace(original))
    error = refused(db, _add_to_folder(uuid_of(db, "1.2.3.84"), original))
    assert codes(error) == ["XDSRegistryDeprecatedDocumentError"]


# --- structure, codes, atomicity ------------------------------------------------------------------------------

def test_structural_errors_all_reported_and_nothing_stored(db):
    payload = one_document(ALICE).replace(slot("repositoryUniqueId", "1.19.6.24.109.42.1").encode(), b"")
    error = refused(db, payload)
    assert codes(error) == ["XDSRegistryMetadataError"] and "repositoryUniqueId" in error.code_context


def test_failure_on_the_second_document_leaves_nothing(db):
    """NIST 12084-like: one good and one flawed DocumentEntry; the whole submission is refused."""
    register(db, one_document(ALICE, doc_uid="1.2.3.90"))
    before = _row_counts(db)
    payload = request(entry("D1", ALICE), entry("D2", ALICE, unique_id="1.2.3.90", hash_="1" * 40),
                      submission_set("SS", ALICE),
                      association("a1", c.HAS_MEMBER, "SS", "D1", status="Original"),
                      association("a2", c.HAS_MEMBER, "SS", "D2", status="Original"))
    assert codes(refused(db, payload)) == ["XDSNonIdenticalHash"]
    assert _row_counts(db) == before


def test_iti57_association_types_are_refused(db):
    register(db, one_document(ALICE, doc_uid="1.2.3.91"))
    payload = one_document(ALICE, extra=(association("u", c.SUBMIT_ASSOCIATION, "Doc1", uuid_of(db, "1.2.3.91")),))
    assert codes(refused(db, payload)) == ["XDSRegistryMetadataError"]


def test_update_semantics_and_self_links_are_refused(db):
    """NIST 21000: a SubmissionSet associated to itself with a PreviousVersion slot is ITI-57, not ITI-42."""
    before = _row_counts(db)
    versioned = ('<rim:Association id="self" associationType="' + c.HAS_MEMBER + '" sourceObject="SS" '
                 'targetObject="SS"><rim:Slot name="PreviousVersion"><rim:ValueList><rim:Value>1'
                 '</rim:Value></rim:ValueList></rim:Slot></rim:Association>')
    error = refused(db, one_document(ALICE, extra=(versioned,)))
    assert codes(error) == ["XDSRegistryMetadataError"] and "PreviousVersion" in error.code_context
    looped = association("loop", c.HAS_MEMBER, "SS", "SS")
    error = refused(db, one_document(ALICE, extra=(looped,)))
    assert codes(error) == ["XDSRegistryMetadataError"] and "to itself" in error.code_context
    assert _row_counts(db) == before


def test_codes_outside_the_affinity_domain(db, corpus_dir):
    codes_xml = corpus_dir / "nist-iheos-toolkit2/environment/default/codes.xml"
    if not codes_xml.is_file():
        pytest.skip(f"{codes_xml} not found")
    registry = DocumentRegistry(RegistrySettings(affinity_domain=DOMAIN, code_set=load_code_set(codes_xml)))
    assert register(db, document_in_folder(ALICE), registry).status == c.RESPONSE_SUCCESS
    error = refused(db, one_document(ALICE, class_code="NOT-A-CLASS"), registry)
    assert codes(error) == ["XDSRegistryMetadataError"] and "NOT-A-CLASS" in error.code_context
    assert "classCode" in error.code_context


def test_settings_from_engine_settings(corpus_dir):
    from ihe_engine.config import Settings

    codes_xml = corpus_dir / "nist-iheos-toolkit2/environment/default/codes.xml"
    if not codes_xml.is_file():
        pytest.skip(f"{codes_xml} not found")
    settings = Settings(affinity_domain=DOMAIN, extra={"xds_codes": str(codes_xml), "home_community_id":
                                                       "urn:oid:1.2.3", "xds_max_query_results": "50"})
    registry_settings = RegistrySettings.from_settings(settings)
    assert (registry_settings.affinity_domain, registry_settings.home_community_id,
            registry_settings.max_query_results) == (DOMAIN, "urn:oid:1.2.3", 50)
    assert registry_settings.code_set is not None and "classCode" in registry_settings.code_set.code_types


def test_home_community_id_written_on_objects(db):
    registry = DocumentRegistry(RegistrySettings(affinity_domain=DOMAIN, home_community_id="urn:oid:1.2.3.4"))
    register(db, one_document(ALICE, doc_uid="1.2.3.95"), registry)
    assert leaf(db, uuid_of(db, "1.2.3.95")).get("home") == "urn:oid:1.2.3.4"
