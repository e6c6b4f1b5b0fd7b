"""ITI-42 over real loopback HTTP: a SoapEndpoint with the registry's operations, raw SOAP 1.2 POSTs as the client,
answers checked against the official ebRS rs.xsd and the registry's audit record."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from lxml import etree
from sqlalchemy import func, select
from twisted.internet.threads import blockingCallFromThread, deferToThread
from twisted.web import resource

from ihe_engine.config import Settings
from ihe_engine.identity.cx import CX
from ihe_engine.identity.store import Demographics, FeedEvent, IdentityStore
from ihe_engine.ns import RS, SOAP12, WSA, qn
from ihe_engine.soap import SoapEndpoint
from ihe_engine.storage import UnitOfWork
from ihe_engine.web import BoundedSite
from ihe_engine.xds import constants as c
from ihe_engine.xds.registry.actor import DocumentRegistry, RegistrySettings
from ihe_engine.xds.registry.soap import registry_operations
from ihe_engine.xds.registry.tables import XdsObject
from xds_registry_requests import DOMAIN, one_document, pid, request

ACTION = "urn:ihe:iti:2007:RegisterDocumentSet-b"
ROOT = Path(__file__).resolve().parent.parent
NS = {"s": SOAP12, "a": WSA, "rs": RS}
ALICE = pid("SOAP-ALICE")
MESSAGE_ID = "urn:uuid:0b7a3c52-5a8e-4c61-9d55-7f4f0c1d2e3a"


class RecordingAudit:
    def __init__(self) -> None:
        self.records: list = []

    def emit(self, record) -> None:
        self.records.append(record)


@dataclass
class LoopbackRuntime:
    """What the registry binding and the endpoint use from a Runtime."""

    settings: Settings
    reactor: Any
    db: Any
    audit: RecordingAudit = field(default_factory=RecordingAudit)
    process_id: str = "4242"

    def uow(self, *, readonly: bool = False) -> UnitOfWork:
        return UnitOfWork(self.db.sessions, readonly=readonly)

    def run_blocking(self, fn, *args, **kwargs):
        return deferToThread(fn, *args, **kwargs)


@pytest.fixture
def server(database, reactor_thread, tmp_path):
    with UnitOfWork(database.sessions) as uow:
        IdentityStore(uow.session).create_or_update([CX.from_xds(ALICE)], Demographics(), FeedEvent(kind="A01"))
        uow.commit()
    runtime = LoopbackRuntime(settings=Settings(data_dir=tmp_path / "data"), reactor=reactor_thread, db=database)
    registry = DocumentRegistry(RegistrySettings(affinity_domain=DOMAIN))

    def start():
        endpoint = SoapEndpoint("xds-registry", runtime,
                                wsdl=(ROOT / "schemas/wsdl/xds-registry.wsdl").read_bytes())
        for operation in registry_operations(runtime, registry):
            endpoint.register(operation)
        root, xds = resource.Resource(), resource.Resource()
        xds.putChild(b"registry", endpoint)
        root.putChild(b"xds", xds)
        return reactor_thread.listenTCP(0, BoundedSite(root, max_body=1 << 20, spool_dir=tmp_path / "spool"),
                                        interface="127.0.0.1")

    port = blockingCallFromThread(reactor_thread, start)
    yield f"http://127.0.0.1:{port.getHost().port}/xds/registry", runtime
    blockingCallFromThread(reactor_thread, port.stopListening)


class _LocalXmlXsd(etree.Resolver):
    """rim.xsd imports the W3C xml.xsd by URL: serve the test kit's local copy instead (no network)."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def resolve(self, url, pubid, context):
        return self.resolve_filename(str(self.path), context) if url.endswith("/xml.xsd") else None


@pytest.fixture(scope="module")
def rs_schema():
    from conftest import CORPUS

    schema_path = CORPUS / "ihe-iti-info/schema/ebRS/rs.xsd"
    xml_xsd = CORPUS / "nist-iheos-toolkit2/schema/v3/xml.xsd"
    if not schema_path.is_file() or not xml_xsd.is_file():
        pytest.skip(f"ebRS schemas not found under {CORPUS}")
    parser = etree.XMLParser(no_network=True)
    parser.resolvers.add(_LocalXmlXsd(xml_xsd))
    return etree.XMLSchema(etree.parse(str(schema_path), parser))


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

    with UnitOfWork(database.sessions) as uow:
        IdentityStore(uow.session).create_or_update([CX.from_xds(ALICE)], Demographics(), FeedEvent(kind="A01"))
        uow.commit()
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
