"""The access policy on the real serve: what ITI-18 returns and ITI-43 hands out depends on the verified user.

Two documents of one patient are provided over ITI-41 (XUA optional on the repository, so no assertion is
needed to submit): one with confidentiality N, one with V. A care professional outside emergency access finds
only the N one and is told the V one does not exist when retrieving it; the same professional in emergency access
("bris de glace") reaches both, and that access is audited as an Emergency Override.
"""

from __future__ import annotations

import uuid

import pytest
import requests
from lxml import etree

from ihe_engine.ns import QUERY, RIM
from ihe_engine.xds import constants as c
from ihe_engine.xds.errors import XDS_DOCUMENT_UNIQUE_ID_ERROR
from ihe_engine.xds.repository import DEFAULT_REPOSITORY_UNIQUE_ID
from serving import start_engine
from xds_submissions import DOMAIN, Doc, provide_request, retrieve_request
from xds_testing import feed_patients
from xua_testing import AUDIENCE, coded, envelope, security, signed
from test_xua_soap import audit_records

ITI41 = "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b"
ITI18 = "urn:ihe:iti:2007:RegistryStoredQuery"
ITI43 = "urn:ihe:iti:2007:RetrieveDocumentSet"
ROLE = "urn:oasis:names:tc:xacml:2.0:subject:role"
PURPOSE = "urn:oasis:names:tc:xspa:1.0:subject:purposeofuse"
CONFIDENTIALITY_N = 'nodeRepresentation="N"'


@pytest.fixture
def engine(database, tmp_path, pki):
    config = tmp_path / "engine.toml"
    config.write_text(f'[xua]\ntrust_anchors = "{pki.ca}"\naudiences = ["{AUDIENCE}"]\n'
                      '[xua.endpoints]\n"xds/registry" = "required"\n"xds/repository" = "optional"\n')
    process = start_engine(tmp_path / "data", "--config", str(config), "--affinity-domain", DOMAIN, "--db-url",
                           database.engine.url.render_as_string(hide_password=False))
    try:
        yield process
    finally:
        process.stop()


def post(engine, path: str, data: bytes, content_type: str = "application/soap+xml; charset=utf-8"):
    return requests.post(engine.url(path.replace("/", "-")), data=data, timeout=30,
                         headers={"Content-Type": content_type})


def care_professional(pki, *, emergency: bool) -> etree._Element:
    purpose = "BRIS_DE_GLACE" if emergency else "normal"
    return security(signed(pki, name_id=f"doc-{uuid.uuid4().hex[:6]}", attributes=(
        (ROLE, [coded("Role", "10", "1.2.250.1.213.1.1.5.5")]),
        (PURPOSE, [coded("PurposeOfUse", purpose, "1.2.250.1.213.1.1.4.248")]))))


def provide(engine, patient: str, docs: list[Doc], very_restricted: Doc) -> None:
    request = etree.tostring(provide_request(docs, pid=patient)).decode()
    # the second entry's confidentialityCode becomes V (very restricted)
    start = request.index(f'id="{very_restricted.entry_id}"')
    position = request.index(CONFIDENTIALITY_N, start)
    request = request[:position] + 'nodeRepresentation="V"' + request[position + len(CONFIDENTIALITY_N):]
    answer = post(engine, "xds/repository", envelope(ITI41, etree.fromstring(request.encode())))
    assert answer.status_code == 200, answer.text
    assert b'status="urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success"' in answer.content, answer.text


def find_documents(patient: str) -> etree._Element:
    request = etree.Element(f"{{{QUERY}}}AdhocQueryRequest", nsmap={"query": QUERY, "rim": RIM})
    etree.SubElement(request, f"{{{QUERY}}}ResponseOption", returnType="LeafClass", returnComposedObjects="true")
    query = etree.SubElement(request, f"{{{RIM}}}AdhocQuery", id="urn:uuid:14d4debf-8f97-4251-9a74-a90016b0af0d")
    for name, value in (("$XDSDocumentEntryPatientId", f"'{patient}'"),
                        ("$XDSDocumentEntryStatus", f"('{c.STATUS_APPROVED}')")):
        slot = etree.SubElement(query, f"{{{RIM}}}Slot", name=name)
        etree.SubElement(etree.SubElement(slot, f"{{{RIM}}}ValueList"), f"{{{RIM}}}Value").text = value
    return request


def found_unique_ids(answer: requests.Response) -> set[str]:
    assert answer.status_code == 200, answer.text
    body = etree.fromstring(answer.content)
    return {identifier.get("value") for identifier in body.iter(f"{{{RIM}}}ExternalIdentifier")
            if identifier.get("identificationScheme") == c.DE_UNIQUE_ID}


def test_confidentiality_filters_queries_and_retrievals(engine, database, pki):
    patient = f"XUA-{uuid.uuid4().hex[:8]}^^^&{DOMAIN}&ISO"
    feed_patients(database, patient)
    normal, very_restricted = Doc(b"normal report"), Doc(b"very restricted report")
    provide(engine, patient, [normal, very_restricted], very_restricted)

    routine = post(engine, "xds/registry", envelope(ITI18, find_documents(patient),
                                                     care_professional(pki, emergency=False)))
    assert found_unique_ids(routine) == {normal.unique_id}

    emergency = post(engine, "xds/registry", envelope(ITI18, find_documents(patient),
                                                       care_professional(pki, emergency=True)))
    assert found_unique_ids(emergency) == {normal.unique_id, very_restricted.unique_id}
    assert audit_records(database, 1, contains=b"110127")  # Emergency Override Started

    for user, visible in ((care_professional(pki, emergency=False), False),
                          (care_professional(pki, emergency=True), True)):
        answer = post(engine, "xds/repository", envelope(
            ITI43, retrieve_request((DEFAULT_REPOSITORY_UNIQUE_ID, very_restricted.unique_id)), user))
        assert answer.status_code == 200, answer.text
        hidden = f'errorCode="{XDS_DOCUMENT_UNIQUE_ID_ERROR}"'.encode() in answer.content
        assert hidden is not visible, answer.content[:2000]
        assert (very_restricted.content in answer.content) is visible
