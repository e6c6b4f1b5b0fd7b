"""RegistryStore on SQLite and PostgreSQL: insert a submission, read it back, deprecate, touch folders."""

from __future__ import annotations

import pytest
from lxml import etree
from sqlalchemy import func, select

from ihe_engine.ns import RIM
from ihe_engine.storage import UnitOfWork
from ihe_engine.xds import assign_uuids, constants as c, parse_submission, to_leaf_class
from ihe_engine.xds.registry.store import NewObject, RegistryStore, leaf_class_bytes
from ihe_engine.xds.registry.tables import (ObjectKind, XdsAssociation, XdsAuthorPerson, XdsCode, XdsDocumentEntry,
                                            XdsFolder, XdsObject, XdsReferenceId, XdsSubmissionSet)
from xds_registry_requests import HASH, document_in_folder, entry, pid, request

PATIENT = pid("STORE-1")
KEY = PATIENT


@pytest.fixture
def stored(database):
    """A SubmissionSet, a DocumentEntry (with a reference id) and a Folder holding it, inserted and committed."""
    submission, _ = assign_uuids(parse_submission(document_in_folder(PATIENT)))
    objects = []
    for obj in submission.registry_objects():
        patient = None if obj in submission.associations else KEY
        element = to_leaf_class(obj, status=c.STATUS_APPROVED)
        objects.append(NewObject(obj=obj, leaf_class=leaf_class_bytes(element), status=c.STATUS_APPROVED,
                                 patient_key=patient, last_update_time="20240102030405" if obj in submission.folders
                                 else None))
    with UnitOfWork(database.sessions) as uow:
        RegistryStore(uow.session).insert(objects)
        uow.commit()
    return database, submission


def _session_count(database, model) -> int:
    with database.sessions() as session:
        return session.scalar(select(func.count()).select_from(model))


def test_insert_writes_every_index_table(stored):
    database, submission = stored
    assert _session_count(database, XdsObject) == 7  # SS, DE, Folder, 4 associations
    assert _session_count(database, XdsDocumentEntry) == 1
    assert _session_count(database, XdsSubmissionSet) == 1
    assert _session_count(database, XdsFolder) == 1
    assert _session_count(database, XdsAssociation) == 4
    assert _session_count(database, XdsAuthorPerson) == 1
    with database.sessions() as session:
        codes = set(session.execute(select(XdsCode.attribute, XdsCode.code, XdsCode.scheme)))
        row = session.get(XdsDocumentEntry, submission.entries[0].entry_uuid)
    assert codes == {("confidentialityCode", "N", "2.16.840.1.113883.5.25"),
                     ("contentTypeCode", "22232009", "2.16.840.1.113883.6.96"),
                     ("folderCodeList", "Referrals", "1.3.6.1.4.1.21367.2017.3")}
    assert (row.patient_key, row.status, row.class_code, row.hash, row.size, row.creation_time_key,
            row.service_start_key, row.service_stop_key) == \
        (KEY, c.STATUS_APPROVED, "REPORTS", HASH, 0, "20240102030405", "20240101080000", None)


def test_lookups(stored):
    database, submission = stored
    doc, ss, folder = submission.entries[0], submission.submission_set, submission.folders[0]
    with UnitOfWork(database.sessions, readonly=True) as uow:
        store = RegistryStore(uow.session)
        found = store.get(doc.entry_uuid)
        assert (found.kind, found.lid, found.version, found.status, found.unique_id, found.patient_key) == \
            (ObjectKind.DOCUMENT_ENTRY, doc.entry_uuid, 1, c.STATUS_APPROVED, doc.unique_id, KEY)
        assert store.get("urn:uuid:00000000-0000-0000-0000-000000000000") is None
        assert set(store.find([doc.entry_uuid, ss.entry_uuid, "urn:uuid:nope"])) == {doc.entry_uuid, ss.entry_uuid}
        assert [o.uuid for o in store.by_unique_ids([ss.unique_id, folder.unique_id], kinds=[ObjectKind.FOLDER])] \
            == [folder.entry_uuid]
        [stored_entry] = store.entries_by_unique_ids([doc.unique_id])
        assert (stored_entry.uuid, stored_entry.hash, stored_entry.size) == (doc.entry_uuid, HASH, 0)
        assert [o.uuid for o in store.by_lid(doc.entry_uuid)] == [doc.entry_uuid]
        leaf = etree.fromstring(store.leaf_classes([doc.entry_uuid])[doc.entry_uuid])
        assert leaf.get("id") == doc.entry_uuid and leaf.get("status") == c.STATUS_APPROVED
        members = store.associations(sources=[folder.entry_uuid], types=[c.HAS_MEMBER])
        assert [(a.source_uuid, a.target_uuid) for a in members] == [(folder.entry_uuid, doc.entry_uuid)]
        assert len(store.associations(targets=[doc.entry_uuid])) == 2  # from the SS and from the folder
        assert [a.source_uuid for a in store.folders_containing([doc.entry_uuid])] == [folder.entry_uuid]
        assert store.count(ObjectKind.ASSOCIATION) == 4
        with pytest.raises(ValueError):
            store.associations()


def test_deprecate_changes_columns_and_leaf_class(stored):
    database, submission = stored
    doc = submission.entries[0]
    membership = next(a for a in submission.associations if a.source == submission.folders[0].entry_uuid)
    with UnitOfWork(database.sessions) as uow:
        assert RegistryStore(uow.session).deprecate([doc.entry_uuid, membership.entry_uuid]) == 2
        uow.commit()
    with UnitOfWork(database.sessions, readonly=True) as uow:
        store = RegistryStore(uow.session)
        assert store.get(doc.entry_uuid).status == c.STATUS_DEPRECATED
        assert uow.session.get(XdsDocumentEntry, doc.entry_uuid).status == c.STATUS_DEPRECATED
        assert uow.session.get(XdsAssociation, membership.entry_uuid).status == c.STATUS_DEPRECATED
        leaf = etree.fromstring(store.leaf_classes([doc.entry_uuid])[doc.entry_uuid])
        assert leaf.get("status") == c.STATUS_DEPRECATED
        assert store.folders_containing([doc.entry_uuid]) == []  # the membership is no longer Approved


def test_touch_folders_sets_column_and_slot(stored):
    database, submission = stored
    folder = submission.folders[0]
    with UnitOfWork(database.sessions) as uow:
        assert RegistryStore(uow.session).touch_folders([folder.entry_uuid], "20250607080910") == 1
        uow.commit()
    with UnitOfWork(database.sessions, readonly=True) as uow:
        row = uow.session.get(XdsFolder, folder.entry_uuid)
        assert (row.last_update_time, row.last_update_time_key) == ("20250607080910", "20250607080910")
        leaf = etree.fromstring(RegistryStore(uow.session).leaf_classes([folder.entry_uuid])[folder.entry_uuid])
    slots = leaf.findall(f"{{{RIM}}}Slot")
    assert [(s.get("name"), [v.text for v in s.iter(f"{{{RIM}}}Value")]) for s in slots] == \
        [("lastUpdateTime", ["20250607080910"])]
    assert leaf[0].tag == f"{{{RIM}}}Slot"  # slots come first in ebRIM


def test_repoint_patient(stored):
    database, submission = stored
    other = pid("STORE-2")
    with UnitOfWork(database.sessions) as uow:
        assert RegistryStore(uow.session).repoint_patient(KEY, other) == 3  # SS, DE, folder
        uow.commit()
    with database.sessions() as session:
        assert session.get(XdsDocumentEntry, submission.entries[0].entry_uuid).patient_key == other


def test_rollback_leaves_nothing(database):
    payload = request(entry("D", PATIENT, reference_ids=("R1^^^&amp;1.2&amp;ISO",)))
    submission, _ = assign_uuids(parse_submission(payload))
    [doc] = submission.entries
    new = NewObject(obj=doc, leaf_class=leaf_class_bytes(to_leaf_class(doc)), status=c.STATUS_APPROVED,
                    patient_key=KEY)
    with UnitOfWork(database.sessions) as uow:
        RegistryStore(uow.session).insert([new])
        assert RegistryStore(uow.session).count() == 1
        assert uow.session.scalar(select(XdsReferenceId.value)) == "R1^^^&1.2&ISO"
    for model in (XdsObject, XdsDocumentEntry, XdsCode, XdsReferenceId, XdsAuthorPerson):
        assert _session_count(database, model) == 0


def test_registration_lookup_in_one_statement_and_beyond_a_chunk(stored):
    """look_up: registered objects by entryUUID, holders of uniqueIds (entries with hash and size) and the
    patient's state; more than 500 ids of a kind still find everything (extra statements)."""
    from ihe_engine.identity.cx import CX
    from ihe_engine.xds.registry.lookup import look_up
    from xds_testing import feed_patients

    database, submission = stored
    feed_patients(database, PATIENT)
    doc, ss, folder = submission.entries[0], submission.submission_set, submission.folders[0]
    unknown = [f"urn:uuid:00000000-0000-0000-0000-{n:012d}" for n in range(1100)]
    with UnitOfWork(database.sessions, readonly=True) as uow:
        found = look_up(uow.session, [*unknown[:700], doc.entry_uuid, *unknown[700:], folder.entry_uuid],
                        [f"1.2.999.{n}" for n in range(600)] + [doc.unique_id, ss.unique_id],
                        CX.from_xds(PATIENT))
        assert set(found.by_uuid) == {doc.entry_uuid, folder.entry_uuid}
        assert found.by_uuid[doc.entry_uuid].kind == ObjectKind.DOCUMENT_ENTRY
        assert {(o.uuid, o.kind) for o in found.holders} == {(doc.entry_uuid, ObjectKind.DOCUMENT_ENTRY),
                                                             (ss.entry_uuid, ObjectKind.SUBMISSION_SET)}
        assert [(e.uuid, e.hash, e.size) for e in found.entries] == [(doc.entry_uuid, HASH, 0)]
        assert found.patient_state == ("active", "active")
        nobody = look_up(uow.session, [], [], CX.from_xds(pid("NOBODY")))
        assert (nobody.by_uuid, nobody.holders, nobody.patient_state) == ({}, [], None)
