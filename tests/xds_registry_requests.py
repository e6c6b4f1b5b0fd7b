"""Builders of ITI-42 requests for the registry tests: small pieces joined into an lcm:SubmitObjectsRequest.

Codes are taken from the NIST test kit's codes.xml, so the same requests pass an affinity domain configured with
it. Unique ids are fresh ``2.25.<uuid>`` OIDs unless given.
"""

from __future__ import annotations

import uuid
from xml.sax.saxutils import quoteattr

from ihe_engine.ns import LCM, RIM
from ihe_engine.xds import constants as c

DOMAIN = "1.3.6.1.4.1.21367.13.20.1000"
OTHER_DOMAIN = "1.3.6.1.4.1.21367.13.20.2000"
HASH = "da39a3ee5e6b4b0d3255bfef95601890afd80709"
LOINC, SNOMED, CONFIDENTIALITY = "2.16.840.1.113883.6.1", "2.16.840.1.113883.6.96", "2.16.840.1.113883.5.25"


def pid(value: str, domain: str = DOMAIN) -> str:
    return f"{value}^^^&{domain}&ISO"


def new_oid() -> str:
    return f"2.25.{uuid.uuid4().int}"


def slot(name: str, *values: str) -> str:
    inner = "".join(f"<rim:Value>{value}</rim:Value>" for value in values)
    return f'<rim:Slot name="{name}"><rim:ValueList>{inner}</rim:ValueList></rim:Slot>'


def code(scheme: str, owner: str, value: str, coding_scheme: str) -> str:
    return (f'<rim:Classification id="cl-{uuid.uuid4().hex[:10]}" classificationScheme="{scheme}" '
            f'classifiedObject="{owner}" nodeRepresentation="{value}">{slot("codingScheme", coding_scheme)}'
            f'<rim:Name><rim:LocalizedString value="{value}"/></rim:Name></rim:Classification>')


def identifier(scheme: str, owner: str, value: str, name: str) -> str:
    return (f'<rim:ExternalIdentifier id="ei-{uuid.uuid4().hex[:10]}" identificationScheme="{scheme}" '
            f'registryObject="{owner}" value={quoteattr(value)}>'
            f'<rim:Name><rim:LocalizedString value="{name}"/></rim:Name></rim:ExternalIdentifier>')


def entry(entry_id: str, patient: str, *, unique_id: str | None = None, hash_: str = HASH, size: str = "0",
          class_code: str = "REPORTS", reference_ids: tuple[str, ...] = ()) -> str:
    """A stable DocumentEntry as a repository registers it (hash, size, repositoryUniqueId present)."""
    refs = slot(c.SLOT_REFERENCE_ID_LIST, *reference_ids) if reference_ids else ""
    return (f'<rim:ExtrinsicObject id="{entry_id}" mimeType="text/xml" objectType="{c.DE_STABLE}">'
            + slot("creationTime", "20240102030405") + slot("hash", hash_) + slot("size", size)
            + slot("languageCode", "en-us") + slot("repositoryUniqueId", "1.19.6.24.109.42.1")
            + slot("serviceStartTime", "202401010800") + slot("sourcePatientId", "L-1^^^&amp;1.2.3&amp;ISO")
            + slot("urn:example:extra", "kept") + refs
            + '<rim:Name><rim:LocalizedString value="Discharge letter"/></rim:Name>'
            + f'<rim:Classification id="au-{entry_id}" classificationScheme="{c.DE_AUTHOR}" '
              f'classifiedObject="{entry_id}" nodeRepresentation="">{slot("authorPerson", "^Doe^Jane")}'
              "</rim:Classification>"
            + code(c.DE_CLASS_CODE, entry_id, class_code, "1.3.6.1.4.1.19376.1.2.6.1")
            + code(c.DE_CONFIDENTIALITY_CODE, entry_id, "N", CONFIDENTIALITY)
            + code(c.DE_FORMAT_CODE, entry_id, "urn:ihe:pcc:xds-ms:2007", "1.3.6.1.4.1.19376.1.2.3")
            + code(c.DE_HEALTHCARE_FACILITY_TYPE_CODE, entry_id, "22232009", SNOMED)
            + code(c.DE_PRACTICE_SETTING_CODE, entry_id, "309927009", SNOMED)
            + code(c.DE_TYPE_CODE, entry_id, "11488-4", LOINC)
            + identifier(c.DE_PATIENT_ID, entry_id, patient, "XDSDocumentEntry.patientId")
            + identifier(c.DE_UNIQUE_ID, entry_id, unique_id or new_oid(), "XDSDocumentEntry.uniqueId")
            + "</rim:ExtrinsicObject>")


def submission_set(set_id: str, patient: str, *, unique_id: str | None = None) -> str:
    return (f'<rim:RegistryPackage id="{set_id}">' + slot("submissionTime", "20240102030500")
            + code(c.SS_CONTENT_TYPE_CODE, set_id, "22232009", SNOMED)
            + identifier(c.SS_UNIQUE_ID, set_id, unique_id or new_oid(), "XDSSubmissionSet.uniqueId")
            + identifier(c.SS_SOURCE_ID, set_id, "1.3.6.1.4.1.21367.4", "XDSSubmissionSet.sourceId")
            + identifier(c.SS_PATIENT_ID, set_id, patient, "XDSSubmissionSet.patientId")
            + "</rim:RegistryPackage>"
            + f'<rim:Classification id="node-{set_id}" classifiedObject="{set_id}" '
              f'classificationNode="{c.SS_CLASSIFICATION_NODE}"/>')


def folder(folder_id: str, patient: str, *, unique_id: str | None = None) -> str:
    return (f'<rim:RegistryPackage id="{folder_id}"><rim:Name><rim:LocalizedString value="Referrals"/></rim:Name>'
            f'<rim:Classification id="node-{folder_id}" classifiedObject="{folder_id}" '
            f'classificationNode="{c.FOLDER_CLASSIFICATION_NODE}"/>'
            + code(c.FOLDER_CODE_LIST, folder_id, "Referrals", "1.3.6.1.4.1.21367.2017.3")
            + identifier(c.FOLDER_UNIQUE_ID, folder_id, unique_id or new_oid(), "XDSFolder.uniqueId")
            + identifier(c.FOLDER_PATIENT_ID, folder_id, patient, "XDSFolder.patientId")
            + "</rim:RegistryPackage>")


def association(association_id: str, kind: str, source: str, target: str, *, status: str | None = None) -> str:
    inner = slot("SubmissionSetStatus", status) if status else ""
    return (f'<rim:Association id="{association_id}" associationType="{kind}" sourceObject="{source}" '
            f'targetObject="{target}">{inner}</rim:Association>')


def request(*pieces: str) -> bytes:
    return (f'<lcm:SubmitObjectsRequest xmlns:lcm="{LCM}" xmlns:rim="{RIM}"><rim:RegistryObjectList>'
            + "".join(pieces) + "</rim:RegistryObjectList></lcm:SubmitObjectsRequest>").encode()


def one_document(patient: str, *, doc_uid: str | None = None, ss_uid: str | None = None, hash_: str = HASH,
                 size: str = "0", entry_id: str = "Doc1", extra: tuple[str, ...] = (),
                 class_code: str = "REPORTS") -> bytes:
    """SubmissionSet + one DocumentEntry (+ extra pieces, e.g. relationship associations)."""
    return request(entry(entry_id, patient, unique_id=doc_uid, hash_=hash_, size=size, class_code=class_code),
                   submission_set("SS", patient, unique_id=ss_uid),
                   association("ss-doc", c.HAS_MEMBER, "SS", entry_id, status="Original"), *extra)


def document_in_folder(patient: str, *, folder_patient: str | None = None, folder_uid: str | None = None) -> bytes:
    """SubmissionSet + DocumentEntry + Folder holding it."""
    return request(entry("Doc1", patient), submission_set("SS", patient),
                   folder("F1", folder_patient or patient, unique_id=folder_uid),
                   association("ss-doc", c.HAS_MEMBER, "SS", "Doc1", status="Original"),
                   association("ss-f", c.HAS_MEMBER, "SS", "F1"),
                   association("f-doc", c.HAS_MEMBER, "F1", "Doc1"),
                   association("ss-fdoc", c.HAS_MEMBER, "SS", "f-doc"))
