"""ITI-57 / ITI-92 over real loopback HTTP: the update operations on a SoapEndpoint, raw SOAP 1.2 POSTs as the client,
answers checked against the official ebRS rs.xsd, and the registry's Import / U audit record."""

from __future__ import annotations

import pytest
import requests
from lxml import etree

from ihe_engine.config import Settings
from ihe_engine.ns import RS, SOAP12, WSA
from ihe_engine.xds import constants as c, parse_submission
from ihe_engine.xds.registry.actor import DocumentRegistry, RegistrySettings
from ihe_engine.xds.registry.store import RegistryStore
from ihe_engine.xds.registry.update_soap import ITI57, ITI92, update_operations
from xds_registry_requests import DOMAIN, entry, new_oid, one_document, pid, request, slot, submission_set
from xds_testing import LoopbackRuntime, feed_patients, registry_endpoint

NS = {"s": SOAP12, "a": WSA, "rs": RS}
ALICE = pid("MU-SOAP-ALICE")
MESSAGE_ID = "urn:uuid:5d1c0c36-2f0e-4c8e-9a11-3c7e8f9b0a21"


@pytest.fixture
def server(database, reactor_thread, tmp_path):
    feed_patients(database, ALICE)
    runtime = LoopbackRuntime(settings=Settings(data_dir=tmp_path / "data"), reactor=reactor_thread, db=database)
    registry = DocumentRegistry(RegistrySettings(affinity_domain=DOMAIN))
    with registry_endpoint(reactor_thread, runtime, update_operations(runtime, registry), tmp_path / "spool") as url:
        yield url, runtime, registry


def registered_document(runtime, registry) -> tuple[str, str]:
    """Register one DocumentEntry of ALICE directly; returns (entryUUID, uniqueId)."""
    doc_uid = new_oid()
    with runtime.uow() as uow:
        registry.register_document_set_b(parse_submission(one_document(ALICE, doc_uid=doc_uid)), uow)
        uow.commit()
    with runtime.uow(readonly=True) as uow:
        return RegistryStore(uow.session).by_unique_ids([doc_uid])[0].uuid, doc_uid


def new_version(lid: str, doc_uid: str, previous: str, ss_uid: str) -> bytes:
    link = (f'<rim:Association id="ss-new" associationType="{c.HAS_MEMBER}" sourceObject="SS" targetObject="New">'
            + slot("SubmissionSetStatus", "Original") + slot("PreviousVersion", previous) + "</rim:Association>")
    document = entry("New", ALICE, unique_id=doc_uid).replace('<rim:ExtrinsicObject id="New"',
                                                               f'<rim:ExtrinsicObject id="New" lid="{lid}"', 1)
    return request(document, submission_set("SS", ALICE, unique_id=ss_uid), link)


def post(url: str, body: bytes, action: str) -> requests.Response:
    envelope = (f'<s:Envelope xmlns:s="{SOAP12}" xmlns:a="{WSA}"><s:Header>'
                f'<a:Action s:mustUnderstand="1">{action}</a:Action><a:MessageID>{MESSAGE_ID}</a:MessageID>'
                f'<a:ReplyTo><a:Address>{WSA}/anonymous</a:Address></a:ReplyTo><a:To>{url}</a:To>'
                "</s:Header><s:Body>").encode() + body + b"</s:Body></s:Envelope>"
    return requests.post(url, data=envelope, headers={"Content-Type": "application/soap+xml; charset=utf-8"},
                         timeout=30)


def answer(response: requests.Response, action: str, schema) -> etree._Element:
    assert response.status_code == 200, response.content
    root = etree.fromstring(response.content)
    assert root.findtext("s:Header/a:Action", namespaces=NS) == action + "Response"
    assert root.findtext("s:Header/a:RelatesTo", namespaces=NS) == MESSAGE_ID
    body = root.find("s:Body/rs:RegistryResponse", NS)
    assert body is not None, response.content
    schema.assertValid(body)
    return body


def error_codes(body: etree._Element) -> list[str]:
    return [e.get("errorCode") for e in body.findall("rs:RegistryErrorList/rs:RegistryError", NS)]


def statuses(runtime, lid: str) -> list[str]:
    with runtime.uow(readonly=True) as uow:
        return [v.status for v in RegistryStore(uow.session).by_lid(lid)]


def test_iti57_success_and_audit(server, rs_schema):
    url, runtime, registry = server
    lid, doc_uid = registered_document(runtime, registry)
    body = answer(post(url, new_version(lid, doc_uid, "1", "1.2.3.57"), ITI57.action), ITI57.action, rs_schema)
    assert body.get("status") == c.RESPONSE_SUCCESS and error_codes(body) == []
    assert statuses(runtime, lid) == [c.STATUS_DEPRECATED, c.STATUS_APPROVED]
    [record] = runtime.audit.records
    assert (record.event_id[0], record.action, record.outcome, record.event_types[0][0], record.transaction) == \
        ("110107", "U", 0, "ITI-57", "ITI-57")
    source, destination = record.participants
    assert source.is_requestor and source.network_access_point == "127.0.0.1"
    assert (destination.user_id, destination.alternative_user_id) == (url, "4242")
    patient, submission_set_object = record.objects
    assert (patient.object_id, patient.type_code, patient.type_code_role) == (ALICE, 1, 1)
    assert (submission_set_object.object_id, submission_set_object.type_code_role) == ("1.2.3.57", 20)


def test_iti57_failure_is_a_registry_response(server, rs_schema):
    url, runtime, registry = server
    lid, doc_uid = registered_document(runtime, registry)
    body = answer(post(url, new_version(lid, doc_uid, "3", "1.2.3.58"), ITI57.action), ITI57.action, rs_schema)
    assert body.get("status") == c.RESPONSE_FAILURE
    assert error_codes(body) == ["XDSMetadataVersionError"]
    assert statuses(runtime, lid) == [c.STATUS_APPROVED]
    [record] = runtime.audit.records
    assert record.outcome == 8 and "XDSMetadataVersionError" in record.outcome_description


def test_iti92_restricted_update(server, rs_schema):
    url, runtime, registry = server
    lid, doc_uid = registered_document(runtime, registry)
    changed = new_version(lid, doc_uid, "1", "1.2.3.92").replace(b"1.19.6.24.109.42.1<", b"1.19.6.24.109.42.9<")
    body = answer(post(url, changed, ITI92.action), ITI92.action, rs_schema)
    assert error_codes(body) == ["UnmodifiableMetadataError"]
    body = answer(post(url, new_version(lid, doc_uid, "1", "1.2.3.93"), ITI92.action), ITI92.action, rs_schema)
    assert body.get("status") == c.RESPONSE_SUCCESS
    assert [r.transaction for r in runtime.audit.records] == ["ITI-92", "ITI-92"]


def test_a_body_that_is_not_a_submission_is_a_sender_fault(server):
    url, runtime, _ = server
    response = post(url, f'<rs:RegistryResponse xmlns:rs="{RS}" status="{c.RESPONSE_SUCCESS}"/>'.encode(),
                    ITI57.action)
    assert response.status_code == 400
    root = etree.fromstring(response.content)
    assert root.find("s:Body/s:Fault/s:Code/s:Value", NS).text.endswith(":Sender")
    assert runtime.audit.records[0].outcome == 8
