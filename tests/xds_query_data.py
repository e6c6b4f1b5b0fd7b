"""A realistic registry content for the stored query tests, registered through the real ITI-42 actor.

Patients (authority AUTHORITY): P1, P2, and P3 which is merged into P1 after its documents were registered.

* SS1 (P1, author "Dr Henry Ford"): DE1a (stable), DE1b (stable), Folder F1 holding DE1a.
* SS2 (P1): DE1c (on-demand) and DE1d, which replaces DE1a (RPLC): DE1a becomes Deprecated and DE1d joins F1.
* SS3 (P2): DE2a and Folder F2 holding it.
* SS4 (P3): DE3a; then P3 is merged into P1.
* UNFED: nothing at all.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field

from lxml import etree

from ihe_engine.identity.cx import CX
from ihe_engine.identity.store import Demographics, FeedEvent, IdentityStore
from ihe_engine.ns import LCM, RIM
from ihe_engine.storage import UnitOfWork
from ihe_engine.xds import constants as c
from ihe_engine.xds.ebrim import parse_submission
from ihe_engine.xds.registry.actor import DocumentRegistry, RegistrySettings

AUTHORITY = "1.3.6.1.4.1.21367.13.20.1000"
P1, P2, P3, UNFED = (f"{name}^^^&{AUTHORITY}&ISO" for name in ("pat-1", "pat-2", "pat-3", "nobody"))
CONF_SCHEME = "2.16.840.1.113883.5.25"
EVENT_SCHEME = "1.2.840.10008.2.16.4"

_counter = itertools.count(1)


def _uuid() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def _oid() -> str:
    return f"1.2.3.4.5.{uuid.uuid4().int % 10**12}.{next(_counter)}"


def _el(parent, tag, **attrs):  # type: ignore[no-untyped-def]
    return etree.SubElement(parent, f"{{{RIM}}}{tag}", **attrs)


def _slot(parent, name: str, *values: str) -> None:
    value_list = _el(_el(parent, "Slot", name=name), "ValueList")
    for value in values:
        _el(value_list, "Value").text = value


def _name(parent, text: str) -> None:
    _el(_el(parent, "Name"), "LocalizedString", value=text)


def _code(parent, owner: str, scheme: str, code: str, coding_scheme: str) -> None:
    classification = _el(parent, "Classification", id=_uuid(), classificationScheme=scheme, classifiedObject=owner,
                         nodeRepresentation=code)
    _slot(classification, "codingScheme", coding_scheme)
    _name(classification, code)


def _author(parent, owner: str, scheme: str, person: str) -> None:
    classification = _el(parent, "Classification", id=_uuid(), classificationScheme=scheme, classifiedObject=owner,
                         nodeRepresentation="")
    _slot(classification, "authorPerson", person)


def _identifier(parent, owner: str, scheme: str, value: str, name: str) -> None:
    identifier = _el(parent, "ExternalIdentifier", id=_uuid(), identificationScheme=scheme, registryObject=owner,
                     value=value)
    _name(identifier, name)


@dataclass
class Entry:
    """What varies between the test DocumentEntries."""

    key: str
    patient: str
    class_code: str = "A"
    type_code: str = "T1"
    format_code: str = "F1"
    hcft: str = "H1"
    practice: str = "PR1"
    confidentiality: tuple[str, ...] = ("N",)
    events: tuple[str, ...] = ()
    creation: str | None = "20040101"
    service_start: str | None = None
    service_stop: str | None = None
    author: str | None = None
    reference_ids: tuple[str, ...] = ()
    on_demand: bool = False
    availability: str | None = None
    uuid: str = field(default_factory=_uuid)
    unique_id: str = field(default_factory=_oid)


def entry_element(parent, entry: Entry) -> None:  # type: ignore[no-untyped-def]
    object_type = c.DE_ON_DEMAND if entry.on_demand else c.DE_STABLE
    eo = _el(parent, "ExtrinsicObject", id=entry.uuid, mimeType="text/xml", objectType=object_type)
    if entry.creation:
        _slot(eo, "creationTime", entry.creation)
    if not entry.on_demand:
        _slot(eo, "hash", "da39a3ee5e6b4b0d3255bfef95601890afd80709")
        _slot(eo, "size", "0")
    _slot(eo, "languageCode", "en-US")
    _slot(eo, "repositoryUniqueId", "1.19.6.24.109.42.1")
    _slot(eo, "sourcePatientId", "local-1^^^&1.2.3&ISO")
    for name, value in (("serviceStartTime", entry.service_start), ("serviceStopTime", entry.service_stop),
                        ("documentAvailability", entry.availability)):
        if value:
            _slot(eo, name, value)
    if entry.reference_ids:
        _slot(eo, c.SLOT_REFERENCE_ID_LIST, *entry.reference_ids)
    _name(eo, f"Document {entry.key}")
    if entry.author:
        _author(eo, entry.uuid, c.DE_AUTHOR, entry.author)
    _code(eo, entry.uuid, c.DE_CLASS_CODE, entry.class_code, "1.2.1")
    for code in entry.confidentiality:
        _code(eo, entry.uuid, c.DE_CONFIDENTIALITY_CODE, code, CONF_SCHEME)
    for code in entry.events:
        _code(eo, entry.uuid, c.DE_EVENT_CODE_LIST, code, EVENT_SCHEME)
    _code(eo, entry.uuid, c.DE_FORMAT_CODE, entry.format_code, "1.2.2")
    _code(eo, entry.uuid, c.DE_HEALTHCARE_FACILITY_TYPE_CODE, entry.hcft, "1.2.3")
    _code(eo, entry.uuid, c.DE_PRACTICE_SETTING_CODE, entry.practice, "1.2.4")
    _code(eo, entry.uuid, c.DE_TYPE_CODE, entry.type_code, "1.2.5")
    _identifier(eo, entry.uuid, c.DE_PATIENT_ID, entry.patient, "XDSDocumentEntry.patientId")
    _identifier(eo, entry.uuid, c.DE_UNIQUE_ID, entry.unique_id, "XDSDocumentEntry.uniqueId")


@dataclass
class Package:
    key: str
    patient: str
    folder: bool = False
    time: str = "20040101120000"
    author: str | None = None
    source_id: str = "1.3.6.1.4.1.21367.4"
    content_type: str = "CT1"
    codes: tuple[str, ...] = ("FC1",)
    uuid: str = field(default_factory=_uuid)
    unique_id: str = field(default_factory=_oid)


def package_element(parent, package: Package) -> None:  # type: ignore[no-untyped-def]
    rp = _el(parent, "RegistryPackage", id=package.uuid)
    if package.folder:
        _name(rp, f"Folder {package.key}")
        for code in package.codes:
            _code(rp, package.uuid, c.FOLDER_CODE_LIST, code, "1.2.6")
        _identifier(rp, package.uuid, c.FOLDER_PATIENT_ID, package.patient, "XDSFolder.patientId")
        _identifier(rp, package.uuid, c.FOLDER_UNIQUE_ID, package.unique_id, "XDSFolder.uniqueId")
        _el(parent, "Classification", id=_uuid(), classifiedObject=package.uuid,
            classificationNode=c.FOLDER_CLASSIFICATION_NODE)
        return
    _slot(rp, "submissionTime", package.time)
    _name(rp, f"Submission {package.key}")
    if package.author:
        _author(rp, package.uuid, c.SS_AUTHOR, package.author)
    _code(rp, package.uuid, c.SS_CONTENT_TYPE_CODE, package.content_type, "1.2.7")
    _identifier(rp, package.uuid, c.SS_UNIQUE_ID, package.unique_id, "XDSSubmissionSet.uniqueId")
    _identifier(rp, package.uuid, c.SS_SOURCE_ID, package.source_id, "XDSSubmissionSet.sourceId")
    _identifier(rp, package.uuid, c.SS_PATIENT_ID, package.patient, "XDSSubmissionSet.patientId")
    _el(parent, "Classification", id=_uuid(), classifiedObject=package.uuid,
        classificationNode=c.SS_CLASSIFICATION_NODE)


def association_element(parent, source: str, target: str, kind: str = c.HAS_MEMBER,  # type: ignore[no-untyped-def]
                        status: str | None = None, uuid_: str | None = None) -> str:
    identifier = uuid_ or _uuid()
    association = _el(parent, "Association", id=identifier, associationType=kind, sourceObject=source,
                      targetObject=target)
    if status:
        _slot(association, "SubmissionSetStatus", status)
    return identifier


@dataclass
class Dataset:
    entries: dict[str, Entry] = field(default_factory=dict)
    packages: dict[str, Package] = field(default_factory=dict)
    associations: dict[str, str] = field(default_factory=dict)  # name -> uuid

    def uuid(self, key: str) -> str:
        if key in self.entries:
            return self.entries[key].uuid
        if key in self.packages:
            return self.packages[key].uuid
        return self.associations[key]


class Submitter:
    """Builds SubmitObjectsRequests and registers them through DocumentRegistry in their own unit of work."""

    def __init__(self, db, dataset: Dataset) -> None:  # type: ignore[no-untyped-def]
        self.db = db
        self.dataset = dataset
        self.registry = DocumentRegistry(RegistrySettings(affinity_domain=AUTHORITY))

    def submit(self, submission_set: Package, entries=(), folders=(), links=()) -> None:  # type: ignore[no-untyped-def]
        """``links``: (name, source key, target key, type) for associations beyond the SS memberships."""
        request = etree.Element(f"{{{LCM}}}SubmitObjectsRequest", nsmap={"lcm": LCM, "rim": RIM})
        object_list = _el(request, "RegistryObjectList")
        data = self.dataset
        package_element(object_list, submission_set)
        data.packages[submission_set.key] = submission_set
        for entry in entries:
            entry_element(object_list, entry)
            data.entries[entry.key] = entry
            data.associations[f"{submission_set.key}>{entry.key}"] = association_element(
                object_list, submission_set.uuid, entry.uuid, status="Original")
        for folder in folders:
            package_element(object_list, folder)
            data.packages[folder.key] = folder
            data.associations[f"{submission_set.key}>{folder.key}"] = association_element(
                object_list, submission_set.uuid, folder.uuid)
        for name, source, target, kind in links:
            data.associations[name] = association_element(object_list, data.uuid(source), data.uuid(target), kind)
            if kind == c.HAS_MEMBER:  # a folder membership is itself a member of the SubmissionSet
                data.associations[f"{submission_set.key}>{name}"] = association_element(
                    object_list, submission_set.uuid, data.associations[name])
        with UnitOfWork(self.db.sessions) as uow:
            self.registry.register_document_set_b(parse_submission(request), uow)
            uow.commit()


def feed(db, *patients: str) -> None:  # type: ignore[no-untyped-def]
    with UnitOfWork(db.sessions) as uow:
        store = IdentityStore(uow.session)
        for patient in patients:
            store.create_or_update([CX.from_xds(patient)], Demographics(), FeedEvent(kind="A01"))
        uow.commit()


def merge(db, survivor: str, subsumed: str) -> None:  # type: ignore[no-untyped-def]
    with UnitOfWork(db.sessions) as uow:
        IdentityStore(uow.session).merge(CX.from_xds(survivor), CX.from_xds(subsumed), FeedEvent(kind="A40"))
        uow.commit()


def load(db) -> Dataset:  # type: ignore[no-untyped-def]
    """Register the whole data set (see the module docstring)."""
    feed(db, P1, P2, P3)
    data = Dataset()
    submitter = Submitter(db, data)
    submitter.submit(
        Package("SS1", P1, time="20040101120000", author="Dr Henry Ford", content_type="CT1"),
        entries=[Entry("DE1a", P1, class_code="A", type_code="T1", format_code="F1", hcft="H1", practice="PR1",
                       confidentiality=("N", "R"), events=("E1", "E2"), creation="20040101093000",
                       service_start="20040101", service_stop="20040105", author="Dr Henry Ford",
                       reference_ids=("ref-1^^^&1.2.5643.2&ISO^urn:ihe:iti:xds:2013:uniqueId",)),
                 Entry("DE1b", P1, class_code="B", type_code="T2", format_code="F2", hcft="H2", practice="PR2",
                       confidentiality=("N",), events=("E1",), creation="20050615", author="Jane O'Smith")],
        folders=[Package("F1", P1, folder=True, codes=("FC1", "FC2"))],
        links=[("F1>DE1a", "F1", "DE1a", c.HAS_MEMBER)])
    submitter.submit(
        Package("SS2", P1, time="20060301", content_type="CT2", source_id="1.3.6.1.4.1.21367.5"),
        entries=[Entry("DE1c", P1, class_code="A", on_demand=True, creation=None, confidentiality=("V",)),
                 Entry("DE1d", P1, class_code="A", type_code="T1", format_code="F1", confidentiality=("R",),
                       creation="20060301", service_start="20060301", author="Dr Henry Ford",
                       availability=c.AVAILABILITY_OFFLINE)],
        links=[("DE1d-RPLC-DE1a", "DE1d", "DE1a", c.RPLC)])
    submitter.submit(
        Package("SS3", P2, time="20050101"),
        entries=[Entry("DE2a", P2, class_code="A", events=("E1",), creation="20050101")],
        folders=[Package("F2", P2, folder=True, codes=("FC1",))],
        links=[("F2>DE2a", "F2", "DE2a", c.HAS_MEMBER)])
    submitter.submit(Package("SS4", P3, time="20070101"),
                     entries=[Entry("DE3a", P3, class_code="A", creation="20070101")])
    merge(db, P1, P3)
    return data
