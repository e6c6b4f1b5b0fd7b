"""ITI-57 Update Document Set and ITI-92 Restricted Update against a real store (SQLite and PostgreSQL): each rule
with its exact error code and nothing changed after a refusal, the version chain, status changes, association
propagation, submitted associations, and the committee's Metadata Update example."""

from __future__ import annotations

import re

import pytest
from lxml import etree

from ihe_engine.ns import LCM, RIM
from ihe_engine.storage import UnitOfWork
from ihe_engine.xds import constants as c, parse_submission
from ihe_engine.xds.errors import XdsError
from ihe_engine.xds.registry.actor import DocumentRegistry, RegistrySettings
from ihe_engine.xds.registry.store import RegistryStore
from ihe_engine.xds.registry.tables import XdsFolder
from ihe_engine.xds.registry.update import UNMODIFIABLE_METADATA_ERROR, update_document_set
from xds_registry_requests import (DOMAIN, association, entry, folder, new_oid, one_document, pid, request, slot,
                                   submission_set)
from xds_testing import feed_patients, registry_snapshot

ALICE, BOB = pid("MU-ALICE"), pid("MU-BOB")
REGISTRY = DocumentRegistry(RegistrySettings(affinity_domain=DOMAIN))
FRENCH_REGISTRY = DocumentRegistry(RegistrySettings(affinity_domain=DOMAIN, accept_french_statuses=True))
NS = {"rim": RIM}


# --- helpers --------------------------------------------------------------------------------------------------

def register(database, payload: bytes, registry: DocumentRegistry = REGISTRY) -> None:
    with UnitOfWork(database.sessions) as uow:
        registry.register_document_set_b(parse_submission(payload), uow)
        uow.commit()


def update(database, payload: bytes, *, restricted: bool = False, registry: DocumentRegistry = REGISTRY):
    with UnitOfWork(database.sessions) as uow:
        response = update_document_set(registry, parse_submission(payload), uow, restricted=restricted)
        uow.commit()
    return response


def refused(database, payload: bytes, *, restricted: bool = False,
            registry: DocumentRegistry = REGISTRY) -> list[str]:
    """The error codes of a refused update, after checking that nothing changed."""
    before = registry_snapshot(database)
    with pytest.raises(XdsError) as caught:
        update(database, payload, restricted=restricted, registry=registry)
    assert registry_snapshot(database) == before
    return [error.error_code for error in caught.value.errors]


def read(database, fn):
    with UnitOfWork(database.sessions, readonly=True) as uow:
        return fn(RegistryStore(uow.session))


def versions(database, lid: str) -> list[tuple[int, str]]:
    return [(v.version, v.status.rsplit(":", 1)[-1]) for v in read(database, lambda store: store.by_lid(lid))]


def leaf(database, uuid: str) -> etree._Element:
    return etree.fromstring(read(database, lambda store: store.leaf_classes([uuid])[uuid]))


def uuid_of(database, unique_id: str) -> str:
    return read(database, lambda store: store.by_unique_ids([unique_id]))[0].uuid


def with_lid(element: str, lid: str) -> str:
    """The first ExtrinsicObject / RegistryPackage of ``element`` with a lid attribute."""
    return re.sub(r"<rim:(ExtrinsicObject|RegistryPackage) id=", rf'<rim:\1 lid="{lid}" id=', element, count=1)


def version_link(target: str, previous: str | None, *, status: str | None = "Original",
                 propagation: str | None = None, link_id: str = "ss-new") -> str:
    slots = (slot("SubmissionSetStatus", status) if status else "") + \
            (slot("PreviousVersion", previous) if previous is not None else "") + \
            (slot("AssociationPropagation", propagation) if propagation else "")
    return (f'<rim:Association id="{link_id}" associationType="{c.HAS_MEMBER}" sourceObject="SS" '
            f'targetObject="{target}">{slots}</rim:Association>')


def entry_version(lid: str, doc_uid: str, previous: str | None = "1", *, patient: str = ALICE,
                  propagation: str | None = None, entry_id: str = "NewDoc", **entry_kw) -> bytes:
    """An ITI-57 request with a new version of DocumentEntry ``lid``."""
    return request(with_lid(entry(entry_id, patient, unique_id=doc_uid, **entry_kw), lid),
                   submission_set("SS", patient),
                   version_link(entry_id, previous, propagation=propagation))


def folder_version(lid: str, folder_uid: str, previous: str = "1", *, patient: str = ALICE,
                   propagation: str | None = None) -> bytes:
    return request(with_lid(folder("NewFolder", patient, unique_id=folder_uid), lid), submission_set("SS", patient),
                   version_link("NewFolder", previous, status=None, propagation=propagation))


def status_change(target: str, original: str, new: str, *, patient: str = ALICE) -> bytes:
    return request(submission_set("SS", patient),
                   f'<rim:Association id="uas" associationType="{c.UPDATE_AVAILABILITY_STATUS}" sourceObject="SS" '
                   f'targetObject="{target}">{slot("OriginalStatus", original)}{slot("NewStatus", new)}'
                   "</rim:Association>")


def submitted_association(kind: str, source: str, target: str, *, patient: str = ALICE) -> bytes:
    return request(submission_set("SS", patient), association("link", c.SUBMIT_ASSOCIATION, "SS", "new"),
                   association("new", kind, source, target))


@pytest.fixture
def db(database):
    feed_patients(database, ALICE, BOB)
    return database


@pytest.fixture
def document(db):
    """A registered DocumentEntry of ALICE: (database, entryUUID = lid, uniqueId)."""
    doc_uid = new_oid()
    register(db, one_document(ALICE, doc_uid=doc_uid))
    return db, uuid_of(db, doc_uid), doc_uid


@pytest.fixture
def filed_document(db):
    """A DocumentEntry in a Folder: (database, entry uuid, entry uid, folder uuid, folder uid)."""
    doc_uid, folder_uid = new_oid(), new_oid()
    register(db, request(entry("Doc1", ALICE, unique_id=doc_uid), submission_set("SS", ALICE),
                         folder("F1", ALICE, unique_id=folder_uid),
                         association("ss-doc", c.HAS_MEMBER, "SS", "Doc1", status="Original"),
                         association("ss-f", c.HAS_MEMBER, "SS", "F1"),
                         association("f-doc", c.HAS_MEMBER, "F1", "Doc1"),
                         association("ss-fdoc", c.HAS_MEMBER, "SS", "f-doc")))
    return db, uuid_of(db, doc_uid), doc_uid, uuid_of(db, folder_uid), folder_uid


def approved(status: str) -> bool:
    return status == c.STATUS_APPROVED


# --- new versions of DocumentEntries ----------------------------------------------------------------------------

def test_new_document_version(document):
    db, lid, doc_uid = document
    response = update(db, entry_version(lid, doc_uid, class_code="History and Physical", hash_="ab" * 20, size="7"))
    assert response.status == c.RESPONSE_SUCCESS
    assert versions(db, lid) == [(1, "Deprecated"), (2, "Approved")]
    new = read(db, lambda store: store.by_lid(lid))[-1]
    assert new.uuid != lid and new.unique_id == doc_uid
    element = leaf(db, new.uuid)
    assert element.get("lid") == lid and element.get("status") == c.STATUS_APPROVED
    assert element.find("rim:VersionInfo", NS).get("versionName") == "2"
    hash_value = element.find("rim:Slot[@name='hash']/rim:ValueList/rim:Value", NS).text
    assert hash_value == "ab" * 20  # as the update says (the kit's 15801 hash / size sections)
    original = leaf(db, lid)
    assert original.get("status") == c.STATUS_DEPRECATED and original.get("lid") == lid
    assert original.find("rim:VersionInfo", NS).get("versionName") == "1"


def test_version_chain_keeps_one_approved_version(document):
    db, lid, doc_uid = document
    update(db, entry_version(lid, doc_uid, "1"))
    update(db, entry_version(lid, doc_uid, "2"))
    assert versions(db, lid) == [(1, "Deprecated"), (2, "Deprecated"), (3, "Approved")]
    assert leaf(db, read(db, lambda store: store.by_lid(lid))[-1].uuid) \
        .find("rim:VersionInfo", NS).get("versionName") == "3"


def test_previous_version_must_be_the_latest(document):
    db, lid, doc_uid = document
    assert refused(db, entry_version(lid, doc_uid, "4")) == ["XDSMetadataVersionError"]
    update(db, entry_version(lid, doc_uid, "1"))
    assert refused(db, entry_version(lid, doc_uid, "1")) == ["XDSMetadataVersionError"]


def test_unknown_logical_object(db):
    unknown = "urn:uuid:47ab75ca-9e83-4abc-bc01-b342156b07e4"
    assert refused(db, entry_version(unknown, new_oid())) == ["XDSMetadataVersionError"]


def test_initial_version_is_refused(db):
    assert refused(db, one_document(ALICE)) == ["XDSMetadataUpdateError"]
    assert refused(db, request(with_lid(entry("D", ALICE), "D"), submission_set("SS", ALICE),
                               version_link("D", "1"))) == ["XDSMetadataUpdateError"]


def test_unique_id_and_object_type_cannot_change(document):
    db, lid, doc_uid = document
    assert refused(db, entry_version(lid, new_oid())) == ["XDSMetadataIdentifierError"]
    on_demand = entry_version(lid, doc_uid).replace(c.DE_STABLE.encode(), c.DE_ON_DEMAND.encode())
    assert refused(db, on_demand) == ["XDSMetadataIdentifierError"]


def test_logical_id_of_another_kind(filed_document):
    db, _, doc_uid, folder_uuid, _ = filed_document
    assert refused(db, entry_version(folder_uuid, doc_uid)) == ["XDSMetadataIdentifierError"]


def test_incomplete_new_version(document):
    db, lid, doc_uid = document
    payload = entry_version(lid, doc_uid).replace(slot("repositoryUniqueId", "1.19.6.24.109.42.1").encode(), b"")
    assert refused(db, payload) == ["XDSRegistryMetadataError"]


def test_two_updates_of_one_logical_object(document):
    db, lid, doc_uid = document
    payload = request(with_lid(entry("A", ALICE, unique_id=doc_uid), lid),
                      with_lid(entry("B", ALICE, unique_id=doc_uid), lid),
                      submission_set("SS", ALICE), version_link("A", "1", link_id="l1"),
                      version_link("B", "2", link_id="l2"))
    assert "XDSMetadataUpdateError" in refused(db, payload)


@pytest.mark.parametrize("link, code", [
    (dict(previous=None), "XDSRegistryMetadataError"),
    (dict(previous="no"), "XDSRegistryMetadataError"),
    (dict(previous="1", propagation="maybe"), "XDSRegistryMetadataError"),
    (dict(previous="1", status="Duplicate"), "XDSRegistryMetadataError"),
    (dict(previous="1", status=None), "XDSRegistryMetadataError"),
])
def test_malformed_version_links(document, link, code):
    db, lid, doc_uid = document
    payload = request(with_lid(entry("NewDoc", ALICE, unique_id=doc_uid), lid), submission_set("SS", ALICE),
                      version_link("NewDoc", **link))
    assert refused(db, payload) == [code]


def test_status_slots_only_on_update_availability_status(document):
    db, lid, doc_uid = document
    payload = entry_version(lid, doc_uid).replace(
        b'</rim:Association>', slot("OriginalStatus", c.STATUS_APPROVED).encode() + b"</rim:Association>")
    assert refused(db, payload) == ["XDSRegistryMetadataError"]


def test_update_needs_a_submission_set(document):
    db, lid, doc_uid = document
    payload = request(with_lid(entry("NewDoc", ALICE, unique_id=doc_uid), lid))
    assert "XDSRegistryMetadataError" in refused(db, payload)


# --- patients ---------------------------------------------------------------------------------------------------

def test_patient_of_a_lone_document_may_change(document):
    db, lid, doc_uid = document
    update(db, entry_version(lid, doc_uid, patient=BOB))
    assert [v.patient_key for v in read(db, lambda store: store.by_lid(lid))] == [ALICE, BOB]


def test_patient_change_refused_when_propagation_would_cross_patients(filed_document):
    db, doc_uuid, doc_uid, _, _ = filed_document
    assert refused(db, entry_version(doc_uuid, doc_uid, patient=BOB)) == ["XDSPatientIDReconciliationError"]
    update(db, entry_version(doc_uuid, doc_uid, patient=BOB, propagation="no"))
    assert versions(db, doc_uuid) == [(1, "Deprecated"), (2, "Approved")]


def test_unknown_patient(document):
    db, lid, doc_uid = document
    assert refused(db, entry_version(lid, doc_uid, patient=pid("NOBODY"))) == ["XDSUnknownPatientId"]


# --- folders and association propagation -------------------------------------------------------------------------

def folder_members(db, folder_uuid: str) -> set[str]:
    rows = read(db, lambda store: store.associations(sources=[folder_uuid], types=[c.HAS_MEMBER],
                                                     statuses=[c.STATUS_APPROVED]))
    return {row.target_uuid for row in rows}


def test_folder_update_propagates_memberships(filed_document):
    db, doc_uuid, _, folder_uuid, folder_uid = filed_document
    update(db, folder_version(folder_uuid, folder_uid))
    assert versions(db, folder_uuid) == [(1, "Deprecated"), (2, "Approved")]
    new = read(db, lambda store: store.by_lid(folder_uuid))[-1]
    assert folder_members(db, new.uuid) == {doc_uuid}
    assert folder_members(db, folder_uuid) == {doc_uuid}  # the old version keeps its own
    slot_value = leaf(db, new.uuid).find("rim:Slot[@name='lastUpdateTime']/rim:ValueList/rim:Value", NS).text
    with db.sessions() as session:
        assert session.get(XdsFolder, new.uuid).last_update_time == slot_value


def test_folder_update_without_propagation(filed_document):
    db, doc_uuid, _, folder_uuid, folder_uid = filed_document
    update(db, folder_version(folder_uuid, folder_uid, propagation="no"))
    new = read(db, lambda store: store.by_lid(folder_uuid))[-1]
    assert folder_members(db, new.uuid) == set() and folder_members(db, folder_uuid) == {doc_uuid}


def test_folder_patient_may_change_without_propagation(filed_document):
    db, _, _, folder_uuid, folder_uid = filed_document
    assert refused(db, folder_version(folder_uuid, folder_uid, patient=BOB)) == ["XDSPatientIDReconciliationError"]
    update(db, folder_version(folder_uuid, folder_uid, patient=BOB, propagation="no"))


def test_document_update_joins_the_folders_of_its_previous_version(filed_document):
    db, doc_uuid, doc_uid, folder_uuid, _ = filed_document
    with db.sessions() as session:
        before = session.get(XdsFolder, folder_uuid).last_update_time
    update(db, entry_version(doc_uuid, doc_uid))
    new = read(db, lambda store: store.by_lid(doc_uuid))[-1]
    assert folder_members(db, folder_uuid) == {doc_uuid, new.uuid}
    with db.sessions() as session:
        assert session.get(XdsFolder, folder_uuid).last_update_time >= before


def test_folder_version_mismatch(filed_document):
    db, _, _, folder_uuid, folder_uid = filed_document
    assert refused(db, folder_version(folder_uuid, folder_uid, "2")) == ["XDSMetadataVersionError"]


# --- UpdateAvailabilityStatus -----------------------------------------------------------------------------------

def test_deprecate_and_approve_again(document):
    db, lid, _ = document
    update(db, status_change(lid, c.STATUS_APPROVED, c.STATUS_DEPRECATED))
    assert versions(db, lid) == [(1, "Deprecated")]
    assert leaf(db, lid).get("status") == c.STATUS_DEPRECATED
    update(db, status_change(lid, c.STATUS_DEPRECATED, c.STATUS_APPROVED))
    assert versions(db, lid) == [(1, "Approved")]


def test_only_the_latest_version_changes_status(document):
    db, lid, doc_uid = document
    update(db, entry_version(lid, doc_uid))
    assert refused(db, status_change(lid, c.STATUS_DEPRECATED, c.STATUS_APPROVED)) == ["XDSMetadataVersionError"]


def test_original_status_must_be_the_current_one(document):
    db, lid, _ = document
    assert refused(db, status_change(lid, c.STATUS_DEPRECATED, c.STATUS_APPROVED)) == ["XDSMetadataUpdateError"]


def test_submission_set_status_cannot_change(document):
    db, lid, _ = document
    ss_uuid = read(db, lambda store: store.associations(targets=[lid], types=[c.HAS_MEMBER]))[0].source_uuid
    assert refused(db, status_change(ss_uuid, c.STATUS_APPROVED, c.STATUS_DEPRECATED)) == \
        ["XDSMetadataUpdateOperationError"]


def test_unknown_target(db):
    assert refused(db, status_change("urn:uuid:00000000-0000-4000-8000-000000000000", c.STATUS_APPROVED,
                                     c.STATUS_DEPRECATED)) == ["UnresolvedReferenceException"]


def test_french_statuses_need_the_setting(document):
    db, lid, _ = document
    assert refused(db, status_change(lid, c.STATUS_APPROVED, c.STATUS_ASIP_ARCHIVED)) == ["XDSMetadataUpdateError"]
    update(db, status_change(lid, c.STATUS_APPROVED, c.STATUS_ASIP_DELETED), registry=FRENCH_REGISTRY)
    assert read(db, lambda store: store.get(lid)).status == c.STATUS_ASIP_DELETED


def test_iti57_updates_only_an_approved_latest_version_iti92_also_a_deprecated_one(document):
    db, lid, doc_uid = document
    update(db, status_change(lid, c.STATUS_APPROVED, c.STATUS_DEPRECATED))
    assert refused(db, entry_version(lid, doc_uid)) == ["XDSMetadataUpdateError"]
    update(db, entry_version(lid, doc_uid), restricted=True)
    assert versions(db, lid) == [(1, "Deprecated"), (2, "Deprecated")]


# --- SubmitAssociation ------------------------------------------------------------------------------------------

@pytest.fixture
def two_documents(db):
    uids = new_oid(), new_oid()
    for doc_uid in uids:
        register(db, one_document(ALICE, doc_uid=doc_uid))
    return db, *(uuid_of(db, doc_uid) for doc_uid in uids)


def test_submit_association_between_existing_documents(two_documents):
    db, first, second = two_documents
    update(db, submitted_association(c.APND, first, second))
    [link] = read(db, lambda store: store.associations(sources=[first], types=[c.APND]))
    assert link.target_uuid == second and approved(link.status)
    update(db, status_change(link.uuid, c.STATUS_APPROVED, c.STATUS_DEPRECATED))
    assert read(db, lambda store: store.get(link.uuid)).status == c.STATUS_DEPRECATED


def test_submitted_association_of_an_unknown_type(two_documents):
    db, first, second = two_documents
    payload = submitted_association("urn:ihe:iti:2007:AssociationType:APND_TXFM", first, second)
    assert refused(db, payload) == ["XDSRegistryMetadataError"]


def test_submitted_association_across_patients(db):
    alice_uid, bob_uid = new_oid(), new_oid()
    register(db, one_document(ALICE, doc_uid=alice_uid))
    register(db, one_document(BOB, doc_uid=bob_uid))
    payload = submitted_association(c.APND, uuid_of(db, alice_uid), uuid_of(db, bob_uid))
    assert refused(db, payload) == ["XDSPatientIDReconciliationError"]


def test_submitted_association_to_a_deprecated_document(two_documents):
    db, first, second = two_documents
    update(db, status_change(second, c.STATUS_APPROVED, c.STATUS_DEPRECATED))
    assert refused(db, submitted_association(c.APND, first, second)) == ["XDSRegistryDeprecatedDocumentError"]


def test_submitted_association_to_an_unknown_object(two_documents):
    db, first, _ = two_documents
    unknown = "urn:uuid:00000000-0000-4000-8000-000000000001"
    assert refused(db, submitted_association(c.APND, first, unknown)) == ["UnresolvedReferenceException"]


def test_folder_membership_submitted_twice(filed_document):
    db, doc_uuid, _, folder_uuid, _ = filed_document
    assert refused(db, submitted_association(c.HAS_MEMBER, folder_uuid, doc_uuid)) == ["XDSMetadataUpdateError"]


def test_new_folder_membership_touches_the_folder(filed_document, db):
    _, _, _, folder_uuid, _ = filed_document
    other_uid = new_oid()
    register(db, one_document(ALICE, doc_uid=other_uid))
    other = uuid_of(db, other_uid)
    update(db, submitted_association(c.HAS_MEMBER, folder_uuid, other))
    assert other in folder_members(db, folder_uuid)


def test_submission_set_link_to_an_existing_submission_set(document):
    db, lid, _ = document
    ss_uuid = read(db, lambda store: store.associations(targets=[lid], types=[c.HAS_MEMBER]))[0].source_uuid
    payload = request(submission_set("SS", ALICE), version_link(ss_uuid, "1"))
    assert refused(db, payload) == ["XDSMetadataUpdateOperationError"]


# --- ITI-92 Restricted Update -----------------------------------------------------------------------------------

def test_restricted_update(document):
    db, lid, doc_uid = document
    update(db, entry_version(lid, doc_uid, class_code="History and Physical"), restricted=True)
    assert versions(db, lid) == [(1, "Deprecated"), (2, "Approved")]


@pytest.mark.parametrize("change, code", [
    (lambda p: p.replace(b"1.19.6.24.109.42.1<", b"1.19.6.24.109.42.2<"), UNMODIFIABLE_METADATA_ERROR),
    (lambda p: p.replace(b"L-1^^^", b"L-2^^^"), UNMODIFIABLE_METADATA_ERROR),
    (lambda p: p.replace(c.DE_STABLE.encode(), c.DE_ON_DEMAND.encode()), UNMODIFIABLE_METADATA_ERROR),
    (lambda p: p.replace(b"<rim:Name>", slot("documentAvailability", c.AVAILABILITY_OFFLINE).encode()
                         + b"<rim:Name>", 1), UNMODIFIABLE_METADATA_ERROR),
    (lambda p: p.replace(ALICE.replace("&", "&amp;").encode(), BOB.replace("&", "&amp;").encode()),
     "XDSPatientIDReconciliationError"),
])
def test_restricted_update_refuses_unmodifiable_attributes(document, change, code):
    db, lid, doc_uid = document
    assert refused(db, change(entry_version(lid, doc_uid)), restricted=True) == [code]


def test_restricted_update_refuses_a_new_unique_id(document):
    db, lid, _ = document
    assert refused(db, entry_version(lid, new_oid()), restricted=True) == ["XDSMetadataIdentifierError"]


def test_restricted_update_has_no_folder_or_status_operations(filed_document):
    db, doc_uuid, _, folder_uuid, folder_uid = filed_document
    assert refused(db, folder_version(folder_uuid, folder_uid), restricted=True) == \
        ["XDSMetadataUpdateOperationError"]
    assert refused(db, status_change(doc_uuid, c.STATUS_APPROVED, c.STATUS_DEPRECATED), restricted=True) == \
        ["XDSMetadataUpdateOperationError"]


# --- ITI-42 does not update -------------------------------------------------------------------------------------

def test_register_refuses_a_new_version(document):
    db, lid, doc_uid = document
    with pytest.raises(XdsError) as caught:
        register(db, entry_version(lid, doc_uid))
    errors = caught.value.errors
    assert [e.error_code for e in errors] == ["XDSRegistryMetadataError"] * 2
    assert "lid" in errors[0].code_context and "PreviousVersion" in errors[1].code_context


# --- the committee example --------------------------------------------------------------------------------------

def test_committee_metadata_update_example(database, corpus_dir):
    example = corpus_dir / "ihe-iti-info/examples/MU/example01"
    if not example.is_dir():
        pytest.skip("committee MU example not in the corpus")
    registry = DocumentRegistry(RegistrySettings())
    original = etree.parse(str(example / "query_result.xml")).find(f".//{{{RIM}}}ExtrinsicObject")
    patient = original.find(f"{{{RIM}}}ExternalIdentifier[@identificationScheme='{c.DE_PATIENT_ID}']").get("value")
    feed_patients(database, patient)
    lid = original.get("id")
    submission = (f'<lcm:SubmitObjectsRequest xmlns:lcm="{LCM}" xmlns:rim="{RIM}"><rim:RegistryObjectList>'
                  + etree.tostring(original, encoding="unicode")
                  + submission_set("SS", patient)
                  + association("ss-doc", c.HAS_MEMBER, "SS", lid, status="Original")
                  + "</rim:RegistryObjectList></lcm:SubmitObjectsRequest>")
    register(database, submission.encode(), registry)
    response = update(database, (example / "update.xml").read_bytes(), registry=registry)
    assert response.status == c.RESPONSE_SUCCESS
    assert versions(database, lid) == [(1, "Deprecated"), (2, "Approved")]
    new = read(database, lambda store: store.by_lid(lid))[-1]
    class_code = leaf(database, new.uuid).find(f"rim:Classification[@classificationScheme='{c.DE_CLASS_CODE}']", NS)
    assert class_code is not None and class_code.get("classifiedObject") == new.uuid


# --- what queries see of versions ($MetadataLevel) -------------------------------------------------------------

def get_documents_by_unique_id(database, doc_uid: str, level: int | None) -> list[str]:
    from ihe_engine.xds.query.engine import run_stored_query
    from ihe_engine.xds.query.params import parse_adhoc_query_request
    from ihe_engine.ns import QUERY

    level_slot = (f'<rim:Slot name="$MetadataLevel"><rim:ValueList><rim:Value>{level}</rim:Value>'
                  "</rim:ValueList></rim:Slot>") if level is not None else ""
    query = etree.fromstring(
        f'<query:AdhocQueryRequest xmlns:query="{QUERY}" xmlns:rim="{RIM}">'
        '<query:ResponseOption returnType="ObjectRef"/>'
        f'<rim:AdhocQuery id="{c.SQ_GET_DOCUMENTS}">'
        f'<rim:Slot name="$XDSDocumentEntryUniqueId"><rim:ValueList><rim:Value>(\'{doc_uid}\')</rim:Value>'
        f"</rim:ValueList></rim:Slot>{level_slot}</rim:AdhocQuery></query:AdhocQueryRequest>")
    with UnitOfWork(database.sessions, readonly=True) as uow:
        result = run_stored_query(parse_adhoc_query_request(query), uow, max_results=100, home_community_id=None)
    return sorted(element.get("id") for element in result.objects)


def test_by_unique_id_a_level_1_consumer_sees_only_the_newest_version(document):
    """NIST 20000e query_by_uniqueid: versions share a uniqueId; level 1 (or no level) gets the latest alone."""
    db, lid, doc_uid = document
    update(db, entry_version(lid, doc_uid))
    newest = read(db, lambda store: store.by_lid(lid))[-1].uuid
    assert get_documents_by_unique_id(db, doc_uid, 1) == [newest]
    assert get_documents_by_unique_id(db, doc_uid, None) == [newest]
    assert get_documents_by_unique_id(db, doc_uid, 2) == sorted([lid, newest])
