"""Test helpers for the XDS repository tests: ITI-41 requests built from parts, a patient feed, registries.

``provide_request`` writes an xds:ProvideAndRegisterDocumentSetRequest with one DocumentEntry per
:class:`Doc` (codes from the NIST codes.xml), a SubmissionSet and its HasMember associations; documents are
inline base64 (``optimize`` in the SOAP tests turns them into XOP parts).
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import itertools
from dataclasses import dataclass

from lxml import etree

from ihe_engine.identity.cx import CX
from ihe_engine.identity.store import Demographics, FeedEvent, IdentityStore
from ihe_engine.ns import LCM, RIM, XDS
from ihe_engine.xds import constants as c
from ihe_engine.xds.errors import XDS_UNKNOWN_PATIENT_ID, XdsError, registry_response

DOMAIN = "1.3.6.1.4.1.21367.13.20.1000"
_serial = itertools.count(1)


def unique_oid(prefix: str = "1.3.6.1.4.1.21367.2005.3.7.9") -> str:
    return f"{prefix}.{next(_serial)}.{id(_serial) % 100000}"


def patient_id(value: str = "REPO-1") -> str:
    return f"{value}^^^&{DOMAIN}&ISO"


def feed_patient(session, value: str = "REPO-1") -> None:
    """Make the patient known in the affinity domain, as an ITI-8 feed would."""
    IdentityStore(session).create_or_update(
        [CX(id=value, namespace_id="", universal_id=DOMAIN, universal_id_type="ISO")], Demographics(),
        FeedEvent(kind="A01", control_id=f"feed-{value}"))


@dataclass
class Doc:
    content: bytes
    unique_id: str = ""
    mime_type: str = "text/plain"
    hash: str | None = None
    size: str | None = None
    entry_id: str = ""

    def __post_init__(self) -> None:
        self.unique_id = self.unique_id or unique_oid()
        self.entry_id = self.entry_id or f"Doc{next(_serial)}"

    @property
    def sha1(self) -> str:
        return hashlib.sha1(self.content).hexdigest()


def _slot(name: str, *values: str) -> str:
    inner = "".join(f"<rim:Value>{v}</rim:Value>" for v in values)
    return f'<rim:Slot name="{name}"><rim:ValueList>{inner}</rim:ValueList></rim:Slot>'


def _code(owner: str, scheme: str, code: str, coding_scheme: str, display: str) -> str:
    return (f'<rim:Classification id="cl{next(_serial)}" classificationScheme="{scheme}" classifiedObject="{owner}" '
            f'nodeRepresentation="{code}">{_slot("codingScheme", coding_scheme)}'
            f'<rim:Name><rim:LocalizedString value="{display}"/></rim:Name></rim:Classification>')


def _identifier(owner: str, scheme: str, value: str, name: str) -> str:
    return (f'<rim:ExternalIdentifier id="ei{next(_serial)}" identificationScheme="{scheme}" registryObject="{owner}" '
            f'value="{value}"><rim:Name><rim:LocalizedString value="{name}"/></rim:Name></rim:ExternalIdentifier>')


def _entry(doc: Doc, pid: str) -> str:
    snomed, loinc = "2.16.840.1.113883.6.96", "2.16.840.1.113883.6.1"
    optional = (_slot("hash", doc.hash) if doc.hash is not None else "") + \
        (_slot("size", doc.size) if doc.size is not None else "")
    return (f'<rim:ExtrinsicObject id="{doc.entry_id}" mimeType="{doc.mime_type}" objectType="{c.DE_STABLE}">'
            + _slot("creationTime", "20240102030405") + _slot("languageCode", "en-us") + optional
            + _slot("sourcePatientId", "L-1^^^&amp;1.2.3&amp;ISO")
            + _code(doc.entry_id, c.DE_CLASS_CODE, "REPORTS", "1.3.6.1.4.1.19376.1.2.6.1", "Reports")
            + _code(doc.entry_id, c.DE_CONFIDENTIALITY_CODE, "N", "2.16.840.1.113883.5.25", "normal")
            + _code(doc.entry_id, c.DE_FORMAT_CODE, "urn:ihe:pcc:xds-ms:2007", "1.3.6.1.4.1.19376.1.2.3", "XDS-MS")
            + _code(doc.entry_id, c.DE_HEALTHCARE_FACILITY_TYPE_CODE, "22232009", snomed, "Hospital")
            + _code(doc.entry_id, c.DE_PRACTICE_SETTING_CODE, "309927009", snomed, "General medicine")
            + _code(doc.entry_id, c.DE_TYPE_CODE, "11488-4", loinc, "Consultation note")
            + _identifier(doc.entry_id, c.DE_PATIENT_ID, pid.replace("&", "&amp;"), "XDSDocumentEntry.patientId")
            + _identifier(doc.entry_id, c.DE_UNIQUE_ID, doc.unique_id, "XDSDocumentEntry.uniqueId")
            + "</rim:ExtrinsicObject>")


def provide_request(docs: list[Doc], *, pid: str | None = None, entry_pid: str | None = None,
                    document_ids: list[str] | None = None) -> etree._Element:
    """An ITI-41 request; ``document_ids`` overrides which xds:Document elements are sent (default: one per doc)."""
    pid = pid or patient_id()
    entries = "".join(_entry(doc, entry_pid or pid) for doc in docs)
    members = "".join(f'<rim:Association id="as{next(_serial)}" associationType="{c.HAS_MEMBER}" sourceObject="SS" '
                      f'targetObject="{doc.entry_id}">{_slot("SubmissionSetStatus", "Original")}</rim:Association>'
                      for doc in docs)
    submission_set = (
        '<rim:RegistryPackage id="SS">' + _slot("submissionTime", "20240102030500")
        + _code("SS", c.SS_CONTENT_TYPE_CODE, "22232009", "2.16.840.1.113883.6.96", "Hospital")
        + _identifier("SS", c.SS_UNIQUE_ID, unique_oid("1.3.6.1.4.1.21367.2005.3.8"), "XDSSubmissionSet.uniqueId")
        + _identifier("SS", c.SS_SOURCE_ID, "1.3.6.1.4.1.21367.4", "XDSSubmissionSet.sourceId")
        + _identifier("SS", c.SS_PATIENT_ID, pid.replace("&", "&amp;"), "XDSSubmissionSet.patientId")
        + "</rim:RegistryPackage>"
        + f'<rim:Classification id="ssnode" classifiedObject="SS" classificationNode="{c.SS_CLASSIFICATION_NODE}"/>')
    by_id = {doc.entry_id: doc for doc in docs}
    ids = document_ids if document_ids is not None else list(by_id)
    documents = "".join(
        f'<xds:Document id="{doc_id}">{base64.b64encode(by_id[doc_id].content if doc_id in by_id else b"x").decode()}'
        "</xds:Document>" for doc_id in ids)
    xml = (f'<xds:ProvideAndRegisterDocumentSetRequest xmlns:xds="{XDS}" xmlns:lcm="{LCM}" xmlns:rim="{RIM}">'
           f"<lcm:SubmitObjectsRequest><rim:RegistryObjectList>{entries}{submission_set}{members}"
           f"</rim:RegistryObjectList></lcm:SubmitObjectsRequest>{documents}"
           "</xds:ProvideAndRegisterDocumentSetRequest>")
    return etree.fromstring(xml.encode())


def retrieve_request(*pairs: tuple[str, str], home: str | None = None) -> etree._Element:
    """xds:RetrieveDocumentSetRequest for (repositoryUniqueId, documentUniqueId) pairs."""
    root = etree.Element(f"{{{XDS}}}RetrieveDocumentSetRequest", nsmap={"xds": XDS})
    for repository_id, document_id in pairs:
        item = etree.SubElement(root, f"{{{XDS}}}DocumentRequest")
        if home:
            etree.SubElement(item, f"{{{XDS}}}HomeCommunityId").text = home
        etree.SubElement(item, f"{{{XDS}}}RepositoryUniqueId").text = repository_id
        etree.SubElement(item, f"{{{XDS}}}DocumentUniqueId").text = document_id
    return root


# --- registries --------------------------------------------------------------------------------------------

def real_registry_available() -> bool:
    return importlib.util.find_spec("ihe_engine.xds.registry.actor") is not None


def make_registry():
    """The engine's registry when it is there, else :class:`PatientCheckingRegistry`."""
    if real_registry_available():
        from ihe_engine.xds.registry.actor import DocumentRegistry, RegistrySettings

        return DocumentRegistry(RegistrySettings(affinity_domain=DOMAIN))
    return PatientCheckingRegistry()


class PatientCheckingRegistry:
    """A stand-in registry honouring the embedded interface: refuses unknown patients, records submissions.

    Registrations it accepts are kept in ``registered`` (by unique id of each DocumentEntry), with the slot
    values the repository set, so tests can check what an ITI-42 would carry.
    """

    def __init__(self) -> None:
        self.registered: dict[str, dict[str, str | None]] = {}

    def register_document_set_b(self, submission, uow):
        store = IdentityStore(uow.session)
        for entry in submission.entries:
            cx = CX(id=entry.patient_id.split("^", 1)[0], namespace_id="", universal_id=DOMAIN,
                    universal_id_type="ISO")
            if not store.is_known_in_domain(cx, DOMAIN):
                raise XdsError(XDS_UNKNOWN_PATIENT_ID, f"patient {entry.patient_id} is not known")
        for entry in submission.entries:
            self.registered[entry.unique_id] = {"repositoryUniqueId": entry.repository_unique_id,
                                                "hash": entry.hash, "size": entry.size}
        return registry_response()
