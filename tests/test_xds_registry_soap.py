"""ITI-42 over real loopback HTTP: a SoapEndpoint with the registry's operations, raw SOAP 1.2 POSTs as the client,
answers checked against the official ebRS rs.xsd and the registry's audit record."""

from __future__ import annotations

import pytest
import requests
from lxml import etree
from sqlalchemy import func, select

from ihe_engine.config import Settings
from ihe_engine.ns import RS, SOAP12, WSA, qn
from ihe_engine.xds import constants as c
from ihe_engine.xds.registry.actor import DocumentRegistry, RegistrySettings
from ihe_engine.xds.registry.soap import registry_operations
from ihe_engine.xds.registry.tables import XdsObject
from xds_registry_requests import DOMAIN, one_document, pid, request
from xds_testing import LoopbackRuntime, feed_patients, registry_endpoint

ACTION = "urn:ihe:iti:2007:RegisterDocumentSet-b"
NS = {"s": SOAP12, "a": WSA, "rs": RS}
ALICE = pid("SOAP-ALICE")
MESSAGE_ID = "urn:uuid:0b7a3c52-5a8e-4c61-9d55-7f4f0c1d2e3a"


@pytest.fixture
def server(database, reactor_thread, tmp_path):
    feed_patients(database, ALICE)
    runtime = LoopbackRuntime(settings=Settings(data_dir=tmp_path / "data"), reactor=reactor_thread, db=database)
    registry = DocumentRegistry(RegistrySettings(affinity_domain=DOMAIN))
    with registry_endpoint(reactor_thread, runtime, registry_operations(runtime, registry), tmp_path / "spool") as url:
        yield url, runtime


def envelope(body: bytes, action: str = ACTION, url: str = "http://registry.example/xds/registry") -> bytes:
    return (f'<s:Envelope xmlns:s="{SOAP12}" xmlns:a="{WSA}"><s:Header>'
            f'<a:Action s:mustUnderstand="1">{action}</a:Action><a:MessageID>{MESSAGE_ID}</a:MessageID>'
            f'<a:ReplyTo><a:Address>{WSA}/anonymous</a:Address></a:ReplyTo><a:To>{url}</a:To>'
            f"</s:Header><s:Body>").encode() + body + b"</s:Body></s:Envelope>"


def post(url: str, body: bytes, **kw) -> requests.Response:
    return requests.post(url, data=envelope(body, url=url, **kw),
                         headers={"Content-Type": "application/soap+xml; charset=utf-8"}, timeout=30)


def registry_response(response: requests.Response, rs_schema) -> etree._Element:
    """The rs:RegistryResponse of a 200 answer, after checking its WS-A headers and the official schema."""
    assert response.status_code == 200, response.content
    assert response.headers["content-type"].startswith("application/soap+xml")
    root = etree.fromstring(response.content)
    assert root.findtext("s:Header/a:Action", namespaces=NS) == ACTION + "Response"
    assert root.findtext("s:Header/a:RelatesTo", namespaces=NS) == MESSAGE_ID
    body = root.find("s:Body/rs:RegistryResponse", NS)
    assert body is not None, response.content
    rs_schema.assertValid(body)
    return body


def stored_objects(runtime) -> int:
    with runtime.db.sessions() as session:
        return session.scalar(select(func.count()).select_from(XdsObject))


def test_success(server, rs_schema):
    url, runtime = server
    body = registry_response(post(url, one_document(ALICE, ss_uid="1.2.3.700")), rs_schema)
    assert body.get("status") == c.RESPONSE_SUCCESS
    assert body.find("rs:RegistryErrorList", NS) is None
    assert stored_objects(runtime) == 3
    [record] = runtime.audit.records
    assert (record.event_id[0], record.action, record.outcome, record.event_types[0][0], record.transaction) == \
        ("110107", "C", 0, "ITI-42", "ITI-42")
    source, destination = record.participants
    assert (source.is_requestor, source.network_access_point, source.role[0]) == (True, "127.0.0.1", "110153")
    assert (destination.user_id, destination.is_requestor, destination.alternative_user_id,
            destination.role[0]) == (url, False, "4242", "110152")
    patient, submission_set = record.objects
    assert (patient.object_id, patient.type_code, patient.type_code_role) == (ALICE, 1, 1)
    assert (submission_set.object_id, submission_set.type_code, submission_set.type_code_role,
            submission_set.id_type[0]) == ("1.2.3.700", 2, 20, c.SS_CLASSIFICATION_NODE)


def test_failure_is_a_registry_response_not_a_fault(server, rs_schema):
    url, runtime = server
    stranger = pid("NOBODY")
    body = registry_response(post(url, one_document(stranger)), rs_schema)
    assert body.get("status") == c.RESPONSE_FAILURE
    errors = body.findall("rs:RegistryErrorList/rs:RegistryError", NS)
    assert [e.get("errorCode") for e in errors] == ["XDSUnknownPatientId"]
    assert stranger in errors[0].get("codeContext") and errors[0].get("severity") == c.SEVERITY_ERROR
    assert stored_objects(runtime) == 0
    [record] = runtime.audit.records
    assert record.outcome == 8 and "XDSUnknownPatientId" in record.outcome_description
    assert record.objects[0].object_id == stranger


def test_a_failed_commit_is_audited_once_as_a_failure(server, rs_schema, monkeypatch):
    """The record queued in the transaction comes back as rolled back; the handler adds no second one."""
    from sqlalchemy.exc import OperationalError

    from ihe_engine.storage import UnitOfWork

    url, runtime = server

    def failing_commit(self):
        raise OperationalError("COMMIT", None, Exception("disk I/O error"))

    monkeypatch.setattr(UnitOfWork, "commit", failing_commit)
    body = registry_response(post(url, one_document(ALICE, ss_uid="1.2.3.701")), rs_schema)
    assert body.get("status") == c.RESPONSE_FAILURE
    assert stored_objects(runtime) == 0
    [record] = runtime.audit.records
    assert record.outcome == 8 and "rolled back" in record.outcome_description
    assert record.objects[1].object_id == "1.2.3.701"


def test_malformed_metadata_is_a_metadata_error(server, rs_schema):
    url, runtime = server
    package = b'<rim:RegistryPackage id="P"/>'
    body = registry_response(post(url, request(package.decode())), rs_schema)
    assert body.get("status") == c.RESPONSE_FAILURE
    codes = {e.get("errorCode") for e in body.findall("rs:RegistryErrorList/rs:RegistryError", NS)}
    assert codes == {"XDSRegistryMetadataError"}
    assert stored_objects(runtime) == 0
    assert runtime.audit.records[0].objects == ()


def test_a_body_that_is_not_a_submission_is_a_sender_fault(server):
    url, runtime = server
    response = post(url, f'<rs:RegistryResponse xmlns:rs="{RS}" status="{c.RESPONSE_SUCCESS}"/>'.encode())
    assert response.status_code == 400
    root = etree.fromstring(response.content)
    assert root.find("s:Body/s:Fault/s:Code/s:Value", NS).text.endswith(":Sender")
    assert root.findtext("s:Header/a:RelatesTo", namespaces=NS) == MESSAGE_ID
    assert runtime.audit.records[0].outcome == 8


def test_second_registration_in_the_same_set_is_refused_with_duplicate_unique_id(server, rs_schema):
    url, runtime = server
    registry_response(post(url, one_document(ALICE, ss_uid="1.2.3.701")), rs_schema)
    body = registry_response(post(url, one_document(ALICE, ss_uid="1.2.3.701")), rs_schema)
    assert [e.get("errorCode") for e in body.findall("rs:RegistryErrorList/rs:RegistryError", NS)] == \
        ["XDSDuplicateUniqueIdInRegistry"]
    assert stored_objects(runtime) == 3
    assert qn(RS, "RegistryResponse") == body.tag


def test_register_in_process_uses_the_callers_unit_of_work(database, tmp_path):
    from ihe_engine.xds import parse_submission
    from ihe_engine.xds.errors import XdsError
    from ihe_engine.xds.registry.soap import register_in_process

    feed_patients(database, ALICE)
    runtime = LoopbackRuntime(settings=Settings(data_dir=tmp_path / "data"), reactor=None, db=database)
    registry = DocumentRegistry(RegistrySettings(affinity_domain=DOMAIN))
    with runtime.uow() as uow:  # not committed: nothing stays
        response = register_in_process(runtime, registry, parse_submission(one_document(ALICE)), uow)
        assert response.status == c.RESPONSE_SUCCESS
    assert stored_objects(runtime) == 0
    with runtime.uow() as uow, pytest.raises(XdsError) as refusal:
        register_in_process(runtime, registry, parse_submission(one_document(pid("NOBODY"))), uow)
    assert refusal.value.error_code == "XDSUnknownPatientId"
    assert runtime.audit.records == []  # grouped actors: the repository's ITI-41 record tells
    with runtime.uow() as uow:
        register_in_process(runtime, registry, parse_submission(one_document(ALICE)), uow)
        uow.commit()
    assert stored_objects(runtime) == 3
