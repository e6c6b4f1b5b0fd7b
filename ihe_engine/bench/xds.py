"""``ihe-engine bench xds {populate,run}``: the XDS.b figures of issue 3 on a registry of realistic size.

``populate`` feeds patients through :class:`~ihe_engine.identity.store.IdentityStore` and registers generated
ITI-42 submissions through the registry's own code (parse, checks, LeafClass, :class:`RegistryStore` rows),
many submissions per transaction, so the rows are those an ITI-42 writes. ``run`` starts the real ``serve`` on
that store and measures ITI-42, FindDocuments (over SOAP and in process), ITI-41 with 100 KB documents and
ITI-43 of a 50 MB document with the server's peak memory.

Metadata codes come from the NIST test kit's codes.xml (the server checks them against the same file), or from
a small built-in set when the kit is not there.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import random
import re
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from ..ns import LCM, QUERY, RIM, XDS
from .cli import BenchServer, launch
from ..xds import constants as c

__all__ = ["main", "build_parser", "CodePicker", "MetadataFactory", "PopulationPlan", "PlannedSubmission",
           "populate", "DOMAIN", "REPOSITORY_ID"]

DOMAIN = "1.3.6.1.4.1.21367.13.20.1000"
"""The NIST test kit's affinity domain: patients are ``BENCH<n>^^^&DOMAIN&ISO``."""
REPOSITORY_ID = "1.3.6.1.4.1.21367.13.40.216"
CODES_XML = (Path(os.environ.get("IHE_CORPUS_DIR", Path(__file__).resolve().parents[3] / "shared" / "corpus"))
             / "nist-iheos-toolkit2" / "environment" / "default" / "codes.xml")
"""The NIST kit's codes, read in place beside the checkout when present (else a built-in code set is used)."""
_XOP = "http://www.w3.org/2004/08/xop/include"
_EPOCH = datetime(2014, 1, 1, tzinfo=timezone.utc)
_SPAN_SECONDS = int(timedelta(days=365 * 12).total_seconds())

# Built-in codes used when the NIST codes.xml is absent: (code, codingScheme, display) per attribute.
_BUILT_IN_CODES: dict[str, tuple[tuple[str, str, str], ...]] = {
    "classCode": (("REPORTS", "1.3.6.1.4.1.19376.1.2.6.1", "Reports"),
                  ("LABORATORY", "1.3.6.1.4.1.19376.1.2.6.1", "Laboratory")),
    "typeCode": (("11488-4", "2.16.840.1.113883.6.1", "Consultation note"),
                 ("18842-5", "2.16.840.1.113883.6.1", "Discharge summary")),
    "formatCode": (("urn:ihe:pcc:xds-ms:2007", "1.3.6.1.4.1.19376.1.2.3", "XDS-MS"),
                   ("urn:ihe:lab:xd-lab:2008", "1.3.6.1.4.1.19376.1.2.3", "XD-LAB")),
    "healthcareFacilityTypeCode": (("22232009", "2.16.840.1.113883.6.96", "Hospital"),),
    "practiceSettingCode": (("309927009", "2.16.840.1.113883.6.96", "General medicine"),),
    "confidentialityCode": (("N", "2.16.840.1.113883.5.25", "normal"), ("R", "2.16.840.1.113883.5.25", "restricted")),
    "eventCodeList": (("T-D4909", "SNOMED", "Kidney"), ("F-03003", "SNOMED", "Fever")),
    "contentTypeCode": (("34133-9", "2.16.840.1.113883.6.1", "Summary of episode note"),),
    "folderCodeList": (("Referrals", "1.3.6.1.4.1.21367.2017.3", "Referrals"),),
}
_BUILT_IN_MIME_TYPES = ("text/xml", "application/pdf", "text/plain")
_FAMILY_NAMES = ("MARTIN", "BERNARD", "DUBOIS", "THOMAS", "ROBERT", "SMITH", "JONES", "GARCIA", "MULLER", "ROSSI")
_GIVEN_NAMES = ("JEAN", "MARIE", "PIERRE", "ANNE", "JOHN", "MARY", "LUCA", "EMMA", "NOAH", "LEA")


# =============================================================================================================
# Metadata
# =============================================================================================================

class CodePicker:
    """Random (code, codingScheme, display) per coded attribute, from the affinity domain's code set."""

    def __init__(self, codes: dict[str, Sequence[tuple[str, str, str]]], mime_types: Sequence[str]) -> None:
        self.codes = {name: tuple(values) for name, values in codes.items() if values}
        self.mime_types = tuple(mime_types)

    @classmethod
    def load(cls, path: Path | None) -> "CodePicker":
        """The NIST codes.xml when it exists (sorted, so a seed gives the same metadata), else the built-in set."""
        if path is None or not path.is_file():
            return cls(_BUILT_IN_CODES, _BUILT_IN_MIME_TYPES)
        from ..xds.affinity import load_code_set

        code_set = load_code_set(path)
        codes = {name: sorted((code, scheme, code_type.displays.get((code, scheme), code))
                              for code, scheme in code_type.codes)
                 for name, code_type in code_set.code_types.items()}
        return cls({**_BUILT_IN_CODES, **codes}, sorted(code_set.mime_types) or _BUILT_IN_MIME_TYPES)

    def pick(self, rng: random.Random, name: str) -> tuple[str, str, str]:
        return rng.choice(self.codes[name])

    def sample(self, rng: random.Random, name: str, count: int) -> list[tuple[str, str, str]]:
        values = self.codes[name]
        return rng.sample(values, min(count, len(values)))


def patient_id(number: int) -> str:
    return f"BENCH{number:07d}^^^&{DOMAIN}&ISO"


def new_oid() -> str:
    return f"2.25.{_uuid_source.getrandbits(122)}"


_UUID_BITS = random.SystemRandom().getrandbits(64)
_uuid_source = random.Random(_UUID_BITS ^ time.time_ns())


def new_entry_uuid() -> str:
    """A random (version 4) UUID URN; ten times cheaper than ``uuid.uuid4`` and as unique for a benchmark."""
    text = f"{_uuid_source.getrandbits(128):032x}"
    return (f"urn:uuid:{text[:8]}-{text[8:12]}-4{text[13:16]}-{'89ab'[int(text[16], 16) & 3]}{text[17:20]}-"
            f"{text[20:]}")


def _slot(name: str, *values: str) -> str:
    inner = "".join(f"<rim:Value>{escape(value)}</rim:Value>" for value in values)
    return f'<rim:Slot name="{name}"><rim:ValueList>{inner}</rim:ValueList></rim:Slot>'


def _name(text: str) -> str:
    return f"<rim:Name><rim:LocalizedString value={quoteattr(text)}/></rim:Name>"


def _dtm(seconds: int) -> str:
    return (_EPOCH + timedelta(seconds=seconds)).strftime("%Y%m%d%H%M%S")


@dataclass
class PlannedSubmission:
    """One generated submission: its patient, entries and what else it carries (folder, replaced entry)."""

    patient: int
    entry_uuids: list[str]
    with_folder: bool = False
    replaces: str | None = None


class MetadataFactory:
    """ebRIM 3.0 metadata as a repository sends it: realistic codes, times spread over 12 years, authors."""

    def __init__(self, codes: CodePicker, rng: random.Random) -> None:
        self.codes = codes
        self.rng = rng
        self._serial = 0

    def _id(self, prefix: str) -> str:
        self._serial += 1
        return f"{prefix}{self._serial}"

    def _code(self, scheme: str, owner: str, name: str, value: tuple[str, str, str] | None = None) -> str:
        code, coding_scheme, display = value or self.codes.pick(self.rng, name)
        return (f'<rim:Classification id="{self._id("cl")}" classificationScheme="{scheme}" classifiedObject="{owner}" '
                f'nodeRepresentation={quoteattr(code)}>{_slot("codingScheme", coding_scheme)}{_name(display)}'
                "</rim:Classification>")

    def _identifier(self, scheme: str, owner: str, value: str, name: str) -> str:
        return (f'<rim:ExternalIdentifier id="{self._id("ei")}" identificationScheme="{scheme}" '
                f'registryObject="{owner}" value={quoteattr(value)}>{_name(name)}</rim:ExternalIdentifier>')

    def _author(self, scheme: str, owner: str) -> str:
        rng = self.rng
        person = f"{rng.randrange(10**6)}^{rng.choice(_FAMILY_NAMES).title()}^{rng.choice(_GIVEN_NAMES).title()}" \
                 f"^^^Dr^^^&1.2.250.1.71.4.2.1&ISO"
        institution = f"Hospital {rng.randrange(200)}^^^^^^^^^1.2.250.1.71.4.2.2.{rng.randrange(200)}"
        return (f'<rim:Classification id="{self._id("au")}" classificationScheme="{scheme}" classifiedObject="{owner}" '
                f'nodeRepresentation="">{_slot(c.SLOT_AUTHOR_PERSON, person)}'
                f'{_slot(c.SLOT_AUTHOR_INSTITUTION, institution)}{_slot(c.SLOT_AUTHOR_ROLE, "Attending")}'
                f'{_slot(c.SLOT_AUTHOR_SPECIALTY, "Cardiology")}</rim:Classification>')

    def entry(self, entry_id: str, patient: str, *, content: bytes | None = None) -> str:
        """A stable DocumentEntry; with ``content`` (ITI-41) no hash/size/repositoryUniqueId (the repository
        sets them), without it (ITI-42) the slots a repository adds, for a document of plausible size."""
        rng = self.rng
        created = rng.randrange(_SPAN_SECONDS)
        start = max(0, created - rng.randrange(3 * 86400))
        local = f"L{rng.randrange(10**8)}^^^&1.2.250.1.71.4.2.7&ISO"
        return (f'<rim:ExtrinsicObject id="{entry_id}" mimeType="{rng.choice(self.codes.mime_types)}" '
                f'objectType="{c.DE_STABLE}">'
                + _slot("creationTime", _dtm(created)) + (self._repository_slots(entry_id) if content is None else "")
                + _slot("languageCode", rng.choice(("en-US", "fr-FR")))
                + _slot("serviceStartTime", _dtm(start)) + _slot("serviceStopTime", _dtm(created))
                + _slot("sourcePatientId", local)
                + _slot("sourcePatientInfo", f"PID-3|{local}", "PID-5|DOE^JOHN^^^", "PID-7|19560527", "PID-8|M")
                + _name(f"Document {rng.randrange(10**6)}")
                + "".join(self._author(c.DE_AUTHOR, entry_id) for _ in range(rng.choice((1, 1, 1, 2))))
                + self._entry_codes(entry_id)
                + self._identifier(c.DE_PATIENT_ID, entry_id, patient, "XDSDocumentEntry.patientId")
                + self._identifier(c.DE_UNIQUE_ID, entry_id, new_oid(), "XDSDocumentEntry.uniqueId")
                + "</rim:ExtrinsicObject>")

    def _repository_slots(self, entry_id: str) -> str:
        size = self.rng.randrange(2_000, 2_000_000)
        return (_slot("hash", hashlib.sha1(entry_id.encode()).hexdigest()) + _slot("size", str(size))
                + _slot("repositoryUniqueId", REPOSITORY_ID))

    def _entry_codes(self, entry_id: str) -> str:
        """classCode, 1-2 confidentialityCodes, 0-3 eventCodes, formatCode, facility, practice, typeCode."""
        rng = self.rng
        confidentiality = self.codes.sample(rng, "confidentialityCode", rng.choice((1, 1, 1, 2)))
        events = self.codes.sample(rng, "eventCodeList", rng.choice((0, 0, 1, 1, 2, 3)))
        return (self._code(c.DE_CLASS_CODE, entry_id, "classCode")
                + "".join(self._code(c.DE_CONFIDENTIALITY_CODE, entry_id, "", value) for value in confidentiality)
                + "".join(self._code(c.DE_EVENT_CODE_LIST, entry_id, "", value) for value in events)
                + self._code(c.DE_FORMAT_CODE, entry_id, "formatCode")
                + self._code(c.DE_HEALTHCARE_FACILITY_TYPE_CODE, entry_id, "healthcareFacilityTypeCode")
                + self._code(c.DE_PRACTICE_SETTING_CODE, entry_id, "practiceSettingCode")
                + self._code(c.DE_TYPE_CODE, entry_id, "typeCode"))

    def submission_set(self, set_id: str, patient: str) -> str:
        return (f'<rim:RegistryPackage id="{set_id}">'
                + _slot("submissionTime", _dtm(self.rng.randrange(_SPAN_SECONDS))) + _name("Bench submission")
                + self._author(c.SS_AUTHOR, set_id) + self._code(c.SS_CONTENT_TYPE_CODE, set_id, "contentTypeCode")
                + self._identifier(c.SS_UNIQUE_ID, set_id, new_oid(), "XDSSubmissionSet.uniqueId")
                + self._identifier(c.SS_SOURCE_ID, set_id, "1.3.6.1.4.1.21367.4", "XDSSubmissionSet.sourceId")
                + self._identifier(c.SS_PATIENT_ID, set_id, patient, "XDSSubmissionSet.patientId")
                + "</rim:RegistryPackage>"
                + f'<rim:Classification id="{self._id("node")}" classifiedObject="{set_id}" '
                  f'classificationNode="{c.SS_CLASSIFICATION_NODE}"/>')

    def folder(self, folder_id: str, patient: str) -> str:
        return (f'<rim:RegistryPackage id="{folder_id}">{_name("Episode of care")}'
                f'<rim:Classification id="{self._id("node")}" classifiedObject="{folder_id}" '
                f'classificationNode="{c.FOLDER_CLASSIFICATION_NODE}"/>'
                + self._code(c.FOLDER_CODE_LIST, folder_id, "folderCodeList")
                + self._identifier(c.FOLDER_UNIQUE_ID, folder_id, new_oid(), "XDSFolder.uniqueId")
                + self._identifier(c.FOLDER_PATIENT_ID, folder_id, patient, "XDSFolder.patientId")
                + "</rim:RegistryPackage>")

    def association(self, kind: str, source: str, target: str, *, status: str | None = None) -> str:
        inner = _slot("SubmissionSetStatus", status) if status else ""
        return (f'<rim:Association id="{self._id("as")}" associationType="{kind}" sourceObject="{source}" '
                f'targetObject="{target}">{inner}</rim:Association>')

    def registry_object_list(self, planned: PlannedSubmission, *, contents: Sequence[bytes] = ()) -> str:
        """The objects of one submission: SubmissionSet, entries, HasMembers, optional Folder and RPLC."""
        patient = patient_id(planned.patient)
        pieces = [self.submission_set("SubmissionSet", patient)]
        for index, entry_uuid in enumerate(planned.entry_uuids):
            pieces.append(self.entry(entry_uuid, patient, content=contents[index] if contents else None))
            pieces.append(self.association(c.HAS_MEMBER, "SubmissionSet", entry_uuid, status="Original"))
        if planned.with_folder:
            pieces.append(self.folder("Folder", patient))
            pieces.append(self.association(c.HAS_MEMBER, "SubmissionSet", "Folder"))
            for entry_uuid in planned.entry_uuids:
                membership = self._id("fm")
                pieces.append(f'<rim:Association id="{membership}" associationType="{c.HAS_MEMBER}" '
                              f'sourceObject="Folder" targetObject="{entry_uuid}"/>')
                pieces.append(self.association(c.HAS_MEMBER, "SubmissionSet", membership))
        if planned.replaces:
            pieces.append(self.association(c.RPLC, planned.entry_uuids[0], planned.replaces))
        return "<rim:RegistryObjectList>" + "".join(pieces) + "</rim:RegistryObjectList>"

    def submit_objects_request(self, planned: PlannedSubmission) -> bytes:
        """An ITI-42 body (lcm:SubmitObjectsRequest)."""
        return (f'<lcm:SubmitObjectsRequest xmlns:lcm="{LCM}" xmlns:rim="{RIM}">'
                + self.registry_object_list(planned) + "</lcm:SubmitObjectsRequest>").encode()

    def provide_and_register(self, planned: PlannedSubmission, contents: Sequence[bytes]) -> bytes:
        """An ITI-41 body whose documents are XOP includes of MIME parts ``doc<i>@bench``."""
        documents = "".join(f'<xds:Document id="{entry_uuid}"><xop:Include xmlns:xop="{_XOP}" href="cid:doc{i}@bench"/>'
                            "</xds:Document>" for i, entry_uuid in enumerate(planned.entry_uuids))
        return (f'<xds:ProvideAndRegisterDocumentSetRequest xmlns:xds="{XDS}" xmlns:lcm="{LCM}" xmlns:rim="{RIM}">'
                f"<lcm:SubmitObjectsRequest>{self.registry_object_list(planned, contents=contents)}"
                f"</lcm:SubmitObjectsRequest>{documents}</xds:ProvideAndRegisterDocumentSetRequest>").encode()


class PopulationPlan:
    """Who gets which submission: patients drawn uniformly; in ``replace_share`` of submissions an RPLC of the
    patient's latest entry (a replacement can itself be replaced later: chains), otherwise one of the
    prototypes (1-5 entries, a Folder in some)."""

    def __init__(self, rng: random.Random, patients: int, *, replace_share: float = 0.02) -> None:
        self.rng = rng
        self.patients = patients
        self.replace_share = replace_share
        self.latest: dict[int, str] = {}

    def shape(self, patient: int, *, folder_share: float = 0.05) -> PlannedSubmission:
        """A new submission of 1-5 entries (a Folder holding them in ``folder_share``)."""
        count = self.rng.choice((1, 1, 2, 2, 3, 4, 5))
        return PlannedSubmission(patient=patient, entry_uuids=[new_entry_uuid() for _ in range(count)],
                                 with_folder=self.rng.random() < folder_share)

    def next_patient(self) -> tuple[int, str | None]:
        """(patient, entryUUID to replace or None)."""
        patient = self.rng.randrange(self.patients)
        replaces = self.latest.get(patient) if self.rng.random() < self.replace_share else None
        return patient, replaces


# =============================================================================================================
# Population
# =============================================================================================================

_ID_ATTRIBUTE = re.compile(rb' id="(urn:uuid:[0-9a-f-]{36})"')
PROTOTYPE_PATIENT = 0
"""Prototypes are registered for patient 0; each copy names its own patient."""


@dataclass(frozen=True)
class Prototype:
    """A submission registered by :meth:`DocumentRegistry.register_document_set_b` on a scratch store, kept as
    the :class:`NewObject` list the registry handed to ``RegistryStore.insert``, with the tokens a copy renews:
    every object id (UUIDs), every uniqueId and the patient."""

    objects: tuple  # tuple[NewObject, ...]
    pieces: tuple[list[bytes], ...]
    """Per object, its LeafClass split at the tokens: even items literal bytes, odd items tokens."""
    id_tokens: tuple[bytes, ...]
    unique_id_tokens: tuple[bytes, ...]
    entry_count: int


class _RecordingStore:
    """Stands in for ``RegistryStore`` in the registry module while prototypes are registered: keeps what the
    registry asked to insert, then inserts it for real (so the scratch registry's checks stay true)."""

    recorded: list = []

    def __new__(cls, session):  # type: ignore[no-untyped-def]
        from ..xds.registry.store import RegistryStore

        class Recording(RegistryStore):
            def insert(self, objects, *, now=None):  # type: ignore[no-untyped-def]
                cls.recorded.extend(objects)
                super().insert(objects, now=now)

        return Recording(session)


def _tokens_of(objects: Sequence) -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
    """(object ids, uniqueIds) appearing in the LeafClass bytes of a registered submission."""
    ids = dict.fromkeys(match for new in objects for match in _ID_ATTRIBUTE.findall(new.leaf_class))
    unique_ids = dict.fromkeys(new.obj.unique_id.encode() for new in objects if getattr(new.obj, "unique_id", None))
    return tuple(ids), tuple(unique_ids)


class PrototypeRegistrar:
    """Registers prototype submissions through the real ITI-42 code on an in-memory SQLite registry."""

    def __init__(self, code_set_path: Path | None) -> None:
        from ..storage import Database
        from ..xds.affinity import load_code_set
        from ..xds.registry.actor import DocumentRegistry, RegistrySettings

        self.db = Database("sqlite://")
        self.db.upgrade()
        code_set = load_code_set(code_set_path) if code_set_path and code_set_path.is_file() else None
        self.registry = DocumentRegistry(RegistrySettings(affinity_domain=DOMAIN, code_set=code_set))
        with self.uow() as uow:
            feed_patient_batch(uow.session, [PROTOTYPE_PATIENT])
            uow.commit()

    def uow(self):  # type: ignore[no-untyped-def]
        from ..storage.uow import UnitOfWork

        return UnitOfWork(self.db.sessions)

    def register(self, request: bytes) -> tuple:
        """The NewObjects ITI-42 writes for this SubmitObjectsRequest (raises XdsError when refused)."""
        from unittest import mock

        from ..xds.ebrim import parse_submission
        from ..xds.registry import actor

        _RecordingStore.recorded = []
        with mock.patch.object(actor, "RegistryStore", _RecordingStore), self.uow() as uow:
            self.registry.register_document_set_b(parse_submission(request), uow)
            uow.commit()
        return tuple(_RecordingStore.recorded)

    def prototype(self, request: bytes) -> Prototype:
        objects = self.register(request)
        ids, unique_ids = _tokens_of(objects)
        patient = patient_id(PROTOTYPE_PATIENT).split("^", 1)[0].encode()
        pattern = re.compile(b"(" + b"|".join(re.escape(token) for token in (*ids, *unique_ids, patient)) + b")")
        entries = sum(1 for new in objects if type(new.obj).__name__ == "DocumentEntry")
        return Prototype(objects=objects, pieces=tuple(pattern.split(new.leaf_class) for new in objects),
                         id_tokens=ids, unique_id_tokens=unique_ids, entry_count=entries)


def copy_submission(prototype: Prototype, patient: int) -> list:
    """NewObjects of a copy of ``prototype`` for ``patient``: new UUIDs and uniqueIds everywhere (LeafClass bytes,
    model fields), the patient renamed; everything else -- codes, times, slots -- as registered."""
    mapping = {token: new_entry_uuid().encode() for token in prototype.id_tokens}
    mapping.update((token, new_oid().encode()) for token in prototype.unique_id_tokens)
    mapping[patient_id(PROTOTYPE_PATIENT).split("^", 1)[0].encode()] = patient_id(patient).split("^", 1)[0].encode()
    patient_text = patient_id(patient)
    text = {old.decode(): new.decode() for old, new in mapping.items()}
    return [_copy_object(new, _renamed(pieces, mapping), text, patient_text)
            for new, pieces in zip(prototype.objects, prototype.pieces)]


def _renamed(pieces: list[bytes], mapping: dict[bytes, bytes]) -> bytes:
    renamed = pieces.copy()
    for index in range(1, len(renamed), 2):
        renamed[index] = mapping[renamed[index]]
    return b"".join(renamed)


def _copy_object(new, leaf_class: bytes, text: dict[str, str], patient_text: str):  # type: ignore[no-untyped-def]
    """One NewObject of a copy: the model fields the store indexes renamed like the LeafClass bytes (shallow
    copies with fields set directly: ``dataclasses.replace`` re-runs validation and costs 10 times more)."""
    obj = new.obj
    changes: dict[str, object] = {"entry_uuid": text[obj.entry_uuid]}
    if obj.lid:
        changes["lid"] = text.get(obj.lid, obj.lid)
    if getattr(obj, "unique_id", None):
        changes["unique_id"] = text[obj.unique_id]
    if getattr(obj, "patient_id", None):
        changes["patient_id"] = patient_text
    if hasattr(obj, "source") and hasattr(obj, "target"):
        changes.update(source=text.get(obj.source, obj.source), target=text.get(obj.target, obj.target))
    return _with(new, obj=_with(obj, **changes), leaf_class=leaf_class,
                 patient_key=patient_text if new.patient_key else None,
                 lid=text.get(new.lid, new.lid) if new.lid else None)


def _with(frozen, **changes):  # type: ignore[no-untyped-def]
    duplicate = copy.copy(frozen)
    for name, value in changes.items():
        object.__setattr__(duplicate, name, value)
    return duplicate


def _fed_patient(number: int):  # type: ignore[no-untyped-def]
    """(identifier, demographics, event) of the A01 that makes patient ``number`` known."""
    from ..identity.cx import CX
    from ..identity.store import Demographics, FeedEvent

    rng = random.Random(number)
    return (CX(id=f"BENCH{number:07d}", namespace_id="", universal_id=DOMAIN, universal_id_type="ISO"),
            Demographics(family_name=rng.choice(_FAMILY_NAMES), given_name=rng.choice(_GIVEN_NAMES),
                         birth_date=f"{rng.randrange(1930, 2024)}{rng.randrange(1, 13):02d}{rng.randrange(1, 29):02d}",
                         sex=rng.choice("MF")),
            FeedEvent(kind="A01", sending_application="BENCH", sending_facility="BENCH",
                      control_id=f"bench-feed-{number}"))


def feed_patient_batch(session, numbers: Sequence[int]) -> None:  # type: ignore[no-untyped-def]
    """ITI-8 A01 for each patient, one ``IdentityStore.create_or_update`` each (the feed's own path)."""
    from ..identity.store import IdentityStore

    store = IdentityStore(session)
    for number in numbers:
        identifier, demographics, event = _fed_patient(number)
        store.create_or_update([identifier], demographics, event)


def feed_patient_bulk(session, numbers: Sequence[int]) -> None:  # type: ignore[no-untyped-def]
    """The rows ``create_or_update`` writes for new patients (patient, identifier, A01 event), three multi-row
    INSERTs per batch instead of four round trips per patient: 100,000 patients in seconds, not minutes.
    Built with the identity store's own row helpers so the rows are the same."""
    from sqlalchemy import insert

    from ..identity.store import _identifier_values, _trait_values
    from ..identity.tables import IdentityEvent, Patient, PatientIdentifier

    fed = [_fed_patient(number) for number in numbers]
    ids = session.scalars(insert(Patient).returning(Patient.id, sort_by_parameter_order=True),
                          [_trait_values(demographics) for _, demographics, _ in fed]).all()
    session.execute(insert(PatientIdentifier), [_identifier_values(patient, identifier)
                                                for patient, (identifier, _, _) in zip(ids, fed)])
    session.execute(insert(IdentityEvent), [_event_values(patient, identifier, event)
                                            for patient, (identifier, _, event) in zip(ids, fed)])


def _event_values(patient: int, identifier, event) -> dict:  # type: ignore[no-untyped-def]
    details = {"identifiers": [str(identifier)], "created": True, **event.details}
    return dict(kind=event.kind, patient_id=patient, other_patient_id=None,
                sending_application=event.sending_application, sending_facility=event.sending_facility,
                control_id=event.control_id, details=json.dumps(details, ensure_ascii=False, sort_keys=True),
                raw_message=event.raw_message)


@dataclass
class PopulationReport:
    patients: int = 0
    entries: int = 0
    submissions: int = 0
    replacements: int = 0
    feed_seconds: float = 0.0
    prototype_seconds: float = 0.0
    register_seconds: float = 0.0
    analyze_seconds: float = 0.0
    rows: dict[str, int] = field(default_factory=dict)

    def as_row(self) -> dict:
        return {"benchmark": "populate", "patients": self.patients, "entries": self.entries,
                "submissions": self.submissions, "rplc_submissions": self.replacements,
                "feed_s": round(self.feed_seconds, 1), "feed_per_s": _rate(self.patients, self.feed_seconds),
                "prototypes_s": round(self.prototype_seconds, 1), "register_s": round(self.register_seconds, 1),
                "entries_per_s": _rate(self.entries, self.register_seconds),
                "analyze_s": round(self.analyze_seconds, 1), **{f"rows_{k}": v for k, v in self.rows.items()}}


def _rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1) if seconds else 0.0


class Populator:
    """Fills a store: patients fed, then submissions copied from prototypes (``RegistryStore.insert``, one
    transaction per batch) and RPLC submissions registered live by ``register_document_set_b``."""

    def __init__(self, db_url: str, *, seed: int, codes: Path | None, prototypes: int, batch_entries: int) -> None:
        from ..storage import Database
        from ..xds.affinity import load_code_set
        from ..xds.registry.actor import DocumentRegistry, RegistrySettings

        self.db = Database(db_url)
        self.db.upgrade()
        if self.db.is_sqlite:
            _large_sqlite_cache(self.db.engine)
        self.rng = random.Random(seed)
        self.factory = MetadataFactory(CodePicker.load(codes), self.rng)
        self.codes_path = codes
        self.prototype_count = prototypes
        self.batch_entries = batch_entries
        code_set = load_code_set(codes) if codes and codes.is_file() else None
        self.registry = DocumentRegistry(RegistrySettings(affinity_domain=DOMAIN, code_set=code_set))
        self.report = PopulationReport()

    def uow(self):  # type: ignore[no-untyped-def]
        from ..storage.uow import UnitOfWork

        return UnitOfWork(self.db.sessions)

    def feed(self, patients: int, progress, *, bulk: bool, batch: int = 2000) -> None:  # type: ignore[no-untyped-def]
        how = feed_patient_bulk if bulk else feed_patient_batch
        task = progress.add_task(f"feeding patients ({'bulk rows' if bulk else 'IdentityStore'})", total=patients)
        start = time.perf_counter()
        for first in range(0, patients, batch):
            numbers = range(first, min(patients, first + batch))
            with self.uow() as uow:
                how(uow.session, numbers)
                uow.commit()
            progress.advance(task, len(numbers))
        self.report.patients = patients
        self.report.feed_seconds = time.perf_counter() - start

    def make_prototypes(self, plan: PopulationPlan, progress) -> list[Prototype]:  # type: ignore[no-untyped-def]
        task = progress.add_task("registering prototypes (register_document_set_b)", total=self.prototype_count)
        start = time.perf_counter()
        registrar = PrototypeRegistrar(self.codes_path)
        prototypes = []
        for _ in range(self.prototype_count):
            request = self.factory.submit_objects_request(plan.shape(PROTOTYPE_PATIENT))
            prototypes.append(registrar.prototype(request))
            progress.advance(task)
        self.report.prototype_seconds = time.perf_counter() - start
        return prototypes

    def register(self, entries: int, plan: PopulationPlan, prototypes: list[Prototype],
                 progress) -> None:  # type: ignore[no-untyped-def]
        task = progress.add_task("registering DocumentEntries", total=entries)
        start = time.perf_counter()
        while self.report.entries < entries:
            copies, replacements = self._next_batch(plan, prototypes, entries)
            self._write_batch(copies, replacements)
            progress.update(task, completed=min(entries, self.report.entries))
        self.report.register_seconds = time.perf_counter() - start

    def _next_batch(self, plan: PopulationPlan, prototypes: list[Prototype], goal: int) -> tuple[list, list[bytes]]:
        """NewObjects of the batch's copies and the RPLC requests to register after them."""
        copies: list = []
        replacements: list[bytes] = []
        batch_goal = min(goal, self.report.entries + self.batch_entries)
        while self.report.entries < batch_goal:
            patient, replaces = plan.next_patient()
            if replaces:
                planned = PlannedSubmission(patient=patient, entry_uuids=[new_entry_uuid()], replaces=replaces)
                replacements.append(self.factory.submit_objects_request(planned))
                plan.latest[patient] = planned.entry_uuids[0]
                self.report.entries += 1
                self.report.replacements += 1
            else:
                prototype = self.rng.choice(prototypes)
                objects = copy_submission(prototype, patient)
                copies.extend(objects)
                plan.latest[patient] = _first_entry_uuid(objects)
                self.report.entries += prototype.entry_count
            self.report.submissions += 1
        return copies, replacements

    def _write_batch(self, copies: list, replacements: list[bytes]) -> None:
        from ..xds.ebrim import parse_submission
        from ..xds.registry.store import RegistryStore

        with self.uow() as uow:
            RegistryStore(uow.session).insert(copies)
            for request in replacements:
                self.registry.register_document_set_b(parse_submission(request), uow)
            uow.commit()

    def analyze(self) -> None:
        """Planner statistics, as an administrator runs after a bulk load (PostgreSQL's autovacuum would too)."""
        from sqlalchemy import text

        start = time.perf_counter()
        with self.db.engine.connect() as connection:
            connection.execute(text("ANALYZE"))
            connection.commit()
        self.report.analyze_seconds = time.perf_counter() - start

    def count_rows(self) -> None:
        from sqlalchemy import text

        with self.db.engine.connect() as connection:
            for table in ("patient", "xds_object", "xds_document_entry", "xds_association", "xds_code",
                          "xds_author_person"):
                self.report.rows[table] = connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()


def _large_sqlite_cache(engine, mib: int = 512) -> None:  # type: ignore[no-untyped-def]
    """The loader's own connections keep the indexes in memory (SQLite's default page cache is 2 MiB); the
    data written does not change."""
    from sqlalchemy import event

    event.listen(engine, "connect", lambda connection, _record: connection.execute(f"PRAGMA cache_size=-{mib * 1024}"))


def _first_entry_uuid(objects: Sequence) -> str:
    return next(new.obj.entry_uuid for new in objects if type(new.obj).__name__ == "DocumentEntry")


def populate(db_url: str, *, entries: int, patients: int, seed: int = 42, codes: Path | None = CODES_XML,
             prototypes: int = 500, batch_entries: int = 3000, bulk_feed: bool = True) -> PopulationReport:
    """Feed ``patients`` and register ``entries`` DocumentEntries into the store at ``db_url``."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
        TimeRemainingColumn

    populator = Populator(db_url, seed=seed, codes=codes, prototypes=prototypes, batch_entries=batch_entries)
    plan = PopulationPlan(populator.rng, patients)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn())
    with Progress(*columns) as progress:
        populator.feed(patients, progress, bulk=bulk_feed)
        made = populator.make_prototypes(plan, progress)
        populator.register(entries, plan, made, progress)
    populator.analyze()
    populator.count_rows()
    return populator.report


# =============================================================================================================
# Measurements against a running engine
# =============================================================================================================

_SUCCESS = b"ResponseStatusType:Success"
_STATUS_APPROVED = c.STATUS_APPROVED


Engine = BenchServer
"""A real ``ihe-engine serve`` on the populated store (one worker), with its endpoints and pid."""


def serve_command(data_dir: Path, db_url: str | None, codes: Path | None, workers: int = 1,
                  engine_path: Path | None = None) -> list[str]:
    """``serve`` on the store; ``engine_path`` serves another checkout of the engine (A/B comparisons)."""
    prefix = ["env", f"PYTHONPATH={engine_path.resolve()}"] if engine_path else []
    command = [*prefix, sys.executable, "-m", "ihe_engine.cli", "serve", "--data-dir", str(data_dir),
               "--http-port", "0", "--mllp-port", "0", "--audit-tcp-port", "0", "--audit-udp-port", "0",
               "--affinity-domain", DOMAIN, "--repository-id", REPOSITORY_ID, "--workers", str(workers)]
    if db_url:
        command += ["--db-url", db_url]
    if codes and codes.is_file():
        command += ["--xds-codes", str(codes)]
    return command


@contextmanager
def running_engine(data_dir: Path, db_url: str | None, codes: Path | None, workers: int = 1,
                   engine_path: Path | None = None) -> Iterator[Engine]:
    """Start ``serve`` (its log, audit lines included, goes to DATA_DIR/bench-serve.log), stop it with SIGTERM."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / "bench-serve.log", "ab") as log:
        with launch(serve_command(data_dir, db_url, codes, workers, engine_path), stderr=log, stop_timeout=60.0,
                    what=f"serve (see {data_dir / 'bench-serve.log'})") as engine:
            yield engine


def _post(host: str, port: int, path: str, body: bytes, content_type: str) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def _soap_content_type(action: str) -> str:
    return f'application/soap+xml; charset=utf-8; action="{action}"'


def _actions() -> dict[str, str]:
    from ..profiles import transactions

    found = transactions()
    return {name: found[name].action for name in ("ITI-41", "ITI-42", "ITI-43", "ITI-18")}  # type: ignore[misc]


@dataclass
class Workload:
    """What the measurements ask for: the fed patients and the generator of fresh metadata."""

    patients: int
    factory: MetadataFactory
    rng: random.Random

    def patient(self) -> int:
        return self.rng.randrange(self.patients)

    def one_entry(self) -> PlannedSubmission:
        return PlannedSubmission(patient=self.patient(), entry_uuids=[f"Document{self.rng.randrange(10**9)}"])


def bench_iti42(engine: Engine, workload: Workload, *, count: int, connections: int) -> dict:
    """Closed-loop ITI-42, one SubmissionSet + one DocumentEntry per request, every answer checked Success."""
    from .cli import soap_envelope
    from .loadgen import http_answer_end, run_closed_loop
    from .stats import summarize

    action = _actions()["ITI-42"]
    host, port, path = engine.address("xds-registry")
    warmup = min(100, count // 10)
    requests = [_post(host, port, path, soap_envelope(action, workload.factory.submit_objects_request(
        workload.one_entry()).decode()), _soap_content_type(action)) for _ in range(count + warmup)]
    run_closed_loop(host, port, b"", connections=connections, total=warmup, answer_end=http_answer_end,
                    make_request=lambda n: requests[count + n])
    cpu: dict = {}
    with server_cpu(engine, count, cpu):
        latencies, seconds, failures = run_closed_loop(
            host, port, b"", connections=connections, total=count, answer_end=http_answer_end,
            make_request=lambda n: requests[n], check=lambda answer: _SUCCESS in answer)
    return summarize(f"ITI-42 register x{connections}", latencies, seconds, failed=failures,
                     request_kib=round(len(requests[0]) / 1024, 1), **cpu).as_row()


def find_documents_query(patient: int) -> bytes:
    """ITI-18 FindDocuments (LeafClass) for one patient's Approved entries."""
    return (f'<query:AdhocQueryRequest xmlns:query="{QUERY}" xmlns:rim="{RIM}">'
            '<query:ResponseOption returnComposedObjects="true" returnType="LeafClass"/>'
            f'<rim:AdhocQuery id="{c.SQ_FIND_DOCUMENTS}">'
            + _slot("$XDSDocumentEntryPatientId", f"'{patient_id(patient)}'")
            + _slot("$XDSDocumentEntryStatus", f"('{_STATUS_APPROVED}')")
            + "</rim:AdhocQuery></query:AdhocQueryRequest>").encode()


def bench_find_documents(engine: Engine, patients: Sequence[int], *, connections: int) -> dict:
    """FindDocuments by patient over SOAP, random fed patients, every answer checked Success."""
    from .cli import soap_envelope
    from .loadgen import http_answer_end, run_closed_loop
    from .stats import summarize

    action = _actions()["ITI-18"]
    host, port, path = engine.address("xds-registry")
    requests = [_post(host, port, path, soap_envelope(action, find_documents_query(p).decode()),
                      _soap_content_type(action)) for p in patients]
    sizes: list[int] = []

    def check(answer: bytes) -> bool:
        sizes.append(answer.count(b"<rim:ExtrinsicObject"))
        return _SUCCESS in answer

    run_closed_loop(host, port, b"", connections=connections, total=min(100, len(requests)),
                    answer_end=http_answer_end, make_request=lambda n: requests[-1 - n])
    sizes.clear()
    cpu: dict = {}
    with server_cpu(engine, len(requests), cpu):
        latencies, seconds, failures = run_closed_loop(host, port, b"", connections=connections,
                                                       total=len(requests), answer_end=http_answer_end,
                                                       make_request=lambda n: requests[n], check=check)
    return summarize(f"ITI-18 FindDocuments over SOAP x{connections}", latencies, seconds, failed=failures,
                     entries_per_answer=round(sum(sizes) / max(1, len(sizes)), 1),
                     max_entries=max(sizes, default=0), **cpu).as_row()


def bench_find_documents_in_process(db_url: str, patients: Sequence[int]) -> dict:
    """The same queries answered by ``run_stored_query`` in this process: storage and LeafClass work without
    HTTP, SOAP or the engine's thread hop (parsing the AdhocQueryRequest is outside the timing)."""
    from lxml import etree

    from ..storage import Database
    from ..storage.uow import UnitOfWork
    from ..xds.query.engine import run_stored_query
    from ..xds.query.params import parse_adhoc_query_request
    from .stats import summarize

    db = Database(db_url)
    parsed = [parse_adhoc_query_request(etree.fromstring(find_documents_query(p))) for p in patients]
    latencies: list[float] = []
    begin = time.perf_counter()
    for request in parsed:
        start = time.perf_counter()
        with UnitOfWork(db.sessions, readonly=True) as uow:
            run_stored_query(request, uow)
        latencies.append(time.perf_counter() - start)
    seconds = time.perf_counter() - begin
    db.dispose()
    return summarize("ITI-18 FindDocuments in process (run_stored_query)", latencies, seconds).as_row()


def _mtom_request(host: str, port: int, path: str, action: str, envelope: bytes,
                  parts: Sequence[bytes]) -> bytes:
    """One MTOM POST: the envelope as root part, ``parts`` as ``doc<i>@bench``."""
    boundary = f"MIMEBoundary_{uuid.uuid4().hex}"
    pieces = [f"--{boundary}\r\nContent-Type: application/xop+xml; charset=UTF-8; "
              f'type="application/soap+xml"\r\nContent-Transfer-Encoding: binary\r\nContent-ID: <root@bench>\r\n\r\n'
              .encode(), envelope]
    for index, content in enumerate(parts):
        pieces.append(f"\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: "
                      f"binary\r\nContent-ID: <doc{index}@bench>\r\n\r\n".encode())
        pieces.append(content)
    pieces.append(f"\r\n--{boundary}--\r\n".encode())
    content_type = (f'multipart/related; type="application/xop+xml"; start="<root@bench>"; '
                    f'start-info="application/soap+xml"; boundary="{boundary}"; action="{action}"')
    return _post(host, port, path, b"".join(pieces), content_type)


def _provide_envelope(workload: Workload, planned: PlannedSubmission, contents: Sequence[bytes]) -> bytes:
    from .cli import soap_envelope

    return soap_envelope(_actions()["ITI-41"], workload.factory.provide_and_register(planned, contents).decode())


def bench_iti41(engine: Engine, workload: Workload, *, count: int, connections: int, size: int) -> dict:
    """Closed-loop ITI-41 (MTOM, one document of ``size`` random bytes each), every answer checked Success."""
    from .loadgen import http_answer_end, run_closed_loop
    from .stats import summarize

    action = _actions()["ITI-41"]
    host, port, path = engine.address("xds-repository")
    warmup = min(50, count // 10)

    def request() -> bytes:
        planned, content = workload.one_entry(), os.urandom(size)
        return _mtom_request(host, port, path, action, _provide_envelope(workload, planned, [content]), [content])

    requests = [request() for _ in range(count + warmup)]
    run_closed_loop(host, port, b"", connections=connections, total=warmup, answer_end=http_answer_end,
                    make_request=lambda n: requests[count + n])
    cpu: dict = {}
    with server_cpu(engine, count, cpu):
        latencies, seconds, failures = run_closed_loop(
            host, port, b"", connections=connections, total=count, answer_end=http_answer_end,
            make_request=lambda n: requests[n], check=lambda answer: _SUCCESS in answer)
    return summarize(f"ITI-41 {size // 1024} KB MTOM x{connections}", latencies, seconds, failed=failures,
                     **cpu).as_row()


def _stream_upload(host: str, port: int, path: str, request_head: bytes, source: Path, tail: bytes) -> bytes:
    """POST a request whose body is ``head + file + tail`` without holding the file in memory; the answer."""
    import http.client

    http_head, _, body_head = request_head.partition(b"\r\n\r\n")
    headers = dict(line.split(": ", 1) for line in http_head.decode().split("\r\n")[1:])
    size = source.stat().st_size
    headers["Content-Length"] = str(len(body_head) + size + len(tail))

    def chunks() -> Iterator[bytes]:
        yield body_head
        with open(source, "rb") as handle:
            while chunk := handle.read(1 << 20):
                yield chunk
        yield tail

    connection = http.client.HTTPConnection(host, port, timeout=600)
    connection.request("POST", path, body=chunks(), headers=headers)
    answer = connection.getresponse().read()
    connection.close()
    return answer


def provide_large_document(engine: Engine, workload: Workload, source: Path) -> str:
    """ITI-41 of the file at ``source`` (streamed); returns the DocumentEntry uniqueId to retrieve."""
    from lxml import etree

    host, port, path = engine.address("xds-repository")
    action = _actions()["ITI-41"]
    planned = workload.one_entry()
    envelope = _provide_envelope(workload, planned, [b""])
    marker = b"\x00bench-large-document\x00"
    request = _mtom_request(host, port, path, action, envelope, [marker])
    head, tail = request.split(marker)
    answer = _stream_upload(host, port, path, head, source, tail)
    if _SUCCESS not in answer:
        raise RuntimeError(f"ITI-41 of the large document failed: {answer[-600:]!r}")
    root = etree.fromstring(envelope)
    return next(element.get("value") for element in root.iter(f"{{{RIM}}}ExternalIdentifier")
                if element.get("identificationScheme") == c.DE_UNIQUE_ID)


def _retrieve_once(engine: Engine, unique_id: str) -> tuple[float, int]:
    """ITI-43 of one document, the answer read in 1 MiB chunks and discarded: (seconds, bytes received)."""
    import http.client

    from .cli import soap_envelope

    host, port, path = engine.address("xds-repository")
    action = _actions()["ITI-43"]
    body = soap_envelope(action, (
        f'<xds:RetrieveDocumentSetRequest xmlns:xds="{XDS}"><xds:DocumentRequest>'
        f"<xds:RepositoryUniqueId>{REPOSITORY_ID}</xds:RepositoryUniqueId>"
        f"<xds:DocumentUniqueId>{unique_id}</xds:DocumentUniqueId></xds:DocumentRequest>"
        "</xds:RetrieveDocumentSetRequest>"))
    connection = http.client.HTTPConnection(host, port, timeout=600)
    start = time.perf_counter()
    connection.request("POST", path, body=body, headers={"Content-Type": _soap_content_type(action)})
    answer = connection.getresponse()
    received, first = 0, b""
    while chunk := answer.read(1 << 20):
        first = first or chunk[:4096]
        received += len(chunk)
    elapsed = time.perf_counter() - start
    connection.close()
    if answer.status != 200 or _SUCCESS not in first:
        raise RuntimeError(f"ITI-43 failed: HTTP {answer.status} {first[:400]!r}")
    return elapsed, received


def server_cpu_seconds(pid: int) -> float:
    """User + system CPU consumed so far by ``serve`` and its workers (robust to other load, unlike rates)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for process in {pid, *serving_pids(pid)}:
        try:
            fields = Path(f"/proc/{process}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return total


@contextmanager
def server_cpu(engine: Engine, count: int, into: dict) -> Iterator[None]:
    """Put the server's CPU milliseconds per request of the enclosed run into ``into``."""
    before = server_cpu_seconds(engine.pid)
    yield
    into["server_cpu_ms"] = round((server_cpu_seconds(engine.pid) - before) * 1000 / max(1, count), 2)


def serving_pids(pid: int) -> list[int]:
    """The processes that answer: ``serve`` itself, or its workers when it supervises some."""
    try:
        children = [int(child) for task in Path(f"/proc/{pid}/task").iterdir()
                    for child in (task / "children").read_text().split()]
    except OSError:
        children = []
    return children or [pid]


def bench_iti43(engine: Engine, workload: Workload, *, size_mib: int, repeat: int) -> dict:
    """ITI-41 of a ``size_mib`` MiB document, then ITI-43 of it ``repeat`` times with the server's added peak RSS."""
    import tempfile

    from .stats import reset_peak_rss, rss_kib, summarize

    with tempfile.NamedTemporaryFile(prefix="ihe-bench-xds-") as source:
        for _ in range(size_mib):
            source.write(os.urandom(1 << 20))
        source.flush()
        unique_id = provide_large_document(engine, workload, Path(source.name))
    _retrieve_once(engine, unique_id)  # warm-up
    pids = serving_pids(engine.pid)
    before = {pid: rss_kib(pid) for pid in pids}
    peak_reset = all([reset_peak_rss(pid) for pid in pids])
    timings = [_retrieve_once(engine, unique_id) for _ in range(repeat)]
    after = {pid: rss_kib(pid) for pid in pids}
    seconds = sum(elapsed for elapsed, _ in timings)
    added = max((after[pid]["peak"] - before[pid]["rss"]) / 1024 for pid in pids) if peak_reset else float("nan")
    return summarize(f"ITI-43 retrieve {size_mib} MiB", [elapsed for elapsed, _ in timings], seconds,
                     received_mib=round(timings[0][1] / (1 << 20), 1),
                     mib_per_second=round(size_mib * repeat / seconds, 1),
                     server_rss_before_mib=round(max(before[pid]["rss"] for pid in pids) / 1024, 1),
                     server_peak_added_mib=round(added, 1)).as_row()


# =============================================================================================================
# Command line
# =============================================================================================================

BENCHMARKS = ("iti42", "find", "iti41", "iti43")


def _database_url(args: argparse.Namespace) -> str:
    from ..config import Settings

    return Settings(data_dir=args.data_dir, db_url=args.db_url).database_url


def run_measurements(args: argparse.Namespace) -> list[dict]:
    """Every asked benchmark against one ``serve`` on the populated store."""
    rng = random.Random(args.seed + 1)
    workload = Workload(args.patients, MetadataFactory(CodePicker.load(args.codes), rng), rng)
    rows: list[dict] = []
    with running_engine(args.data_dir, args.db_url, args.codes, args.workers, args.engine_path) as engine:
        if "find" in args.only:
            patients = [workload.patient() for _ in range(args.queries)]
            rows.extend(bench_find_documents(engine, patients, connections=n) for n in args.query_connections)
            rows.append(bench_find_documents_in_process(_database_url(args), patients))
        if "iti42" in args.only:
            rows.extend(bench_iti42(engine, workload, count=args.registrations, connections=n)
                        for n in args.connections)
        if "iti41" in args.only:
            rows.extend(bench_iti41(engine, workload, count=args.provides, connections=n, size=args.document_kib * 1024)
                        for n in args.connections)
        if "iti43" in args.only:
            rows.append(bench_iti43(engine, workload, size_mib=args.retrieve_mib, repeat=args.retrieve_repeat))
    return [{**row, "workers": args.workers} for row in rows]


def _populate_command(args: argparse.Namespace) -> list[dict]:
    report = populate(_database_url(args), entries=args.entries, patients=args.patients, seed=args.seed,
                      codes=args.codes, prototypes=args.prototypes, batch_entries=args.batch_entries,
                      bulk_feed=args.feed == "bulk")
    return [report.as_row()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ihe-engine bench xds", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    fill = commands.add_parser("populate", help="feed patients and register DocumentEntries into a store")
    measure = commands.add_parser("run", help="measure ITI-42, FindDocuments, ITI-41 and ITI-43 on a populated store")
    for sub in (fill, measure):
        sub.add_argument("--db-url", help="store (default: SQLite in --data-dir, as serve)")
        sub.add_argument("--data-dir", type=Path, default=Path("./var-bench-xds"),
                         help="engine data directory (SQLite file, blobs, serve log)")
        sub.add_argument("--patients", type=int, default=100_000)
        sub.add_argument("--seed", type=int, default=42)
        sub.add_argument("--codes", type=Path, default=CODES_XML,
                         help="NIST codes.xml for the metadata and the server's affinity domain (built-in set "
                              "when absent)")
        sub.add_argument("--json", type=Path, help="also write the result rows to this file")
    fill.add_argument("--entries", type=int, default=1_000_000)
    fill.add_argument("--prototypes", type=int, default=500,
                      help="submissions registered by register_document_set_b and copied")
    fill.add_argument("--batch-entries", type=int, default=3000, help="entries per transaction")
    fill.add_argument("--feed", choices=("bulk", "store"), default="bulk",
                      help="patient rows in bulk (same rows) or one IdentityStore.create_or_update each")
    measure.add_argument("--only", nargs="+", choices=BENCHMARKS, default=list(BENCHMARKS))
    measure.add_argument("--workers", type=int, default=1, help="serve --workers: processes answering (default 1)")
    measure.add_argument("--engine-path", type=Path,
                         help="serve the engine package found in this directory (PYTHONPATH), e.g. an older "
                              "checkout for an A/B comparison; in-process rows still run this harness's code")
    measure.add_argument("--connections", type=int, nargs="+", default=[1, 4])
    measure.add_argument("--query-connections", type=int, nargs="+", default=[1, 4])
    measure.add_argument("--registrations", type=int, default=2000)
    measure.add_argument("--queries", type=int, default=2000)
    measure.add_argument("--provides", type=int, default=1000)
    measure.add_argument("--document-kib", type=int, default=100)
    measure.add_argument("--retrieve-mib", type=int, default=50)
    measure.add_argument("--retrieve-repeat", type=int, default=3)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .cli import print_table
    from .stats import machine_description

    args = build_parser().parse_args(argv)
    load_before = os.getloadavg()  # others' work on the machine changes the figures: record it
    rows = _populate_command(args) if args.command == "populate" else run_measurements(args)
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps({"machine": machine_description(), "load_average_before": load_before,
                                         "load_average_after": os.getloadavg(), "rows": rows}, indent=2))
    return 0
