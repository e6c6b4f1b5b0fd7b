"""ITI-62 over real loopback HTTP: the registry endpoint with the ITI-42 and ITI-62 operations, the committee's
RemoveMetadataRequest SOAP example sent as published (only its entryUUIDs patched to registered ones), answers
checked against the official rs.xsd, and the ITI-62 audit record."""

from __future__ import annotations

import uuid

import pytest
import requests
from lxml import etree
from sqlalchemy import func, select

from ihe_engine.config import Settings
from ihe_engine.ns import LCM, RIM, RS, SOAP12, WSA
from ihe_engine.xds import constants as c
from ihe_engine.xds.registry.actor import DocumentRegistry, RegistrySettings
from ihe_engine.xds.registry.remove_soap import remove_operations
from ihe_engine.xds.registry.soap import registry_operations
from ihe_engine.xds.registry.tables import XdsObject
from test_xds_registry_soap import envelope
from xds_registry_requests import DOMAIN, association, entry, pid, request, submission_set
from xds_testing import LoopbackRuntime, feed_patients, registry_endpoint

REGISTER = "urn:ihe:iti:2007:RegisterDocumentSet-b"
REMOVE = "urn:ihe:iti:2010:DeleteDocumentSet"
NS = {"s": SOAP12, "a": WSA, "rs": RS}
ALICE = pid("RMD-SOAP-ALICE")
EXAMPLE_IDS = ("urn:uuid:b2632452-1de7-480d-94b1-c2074d79c871", "urn:uuid:b2632df2-1de7-480d-1045-c2074d79aabd",
               "urn:uuid:b2632132-1de7-480d-88bd-c2074d79009b", "urn:uuid:b2632cd2-1de7-480d-108c-c2074d797777")


@pytest.fixture
def server(database, reactor_thread, tmp_path):
    feed_patients(database, ALICE)
    runtime = LoopbackRuntime(settings=Settings(data_dir=tmp_path / "data"), reactor=reactor_thread, db=database)
    registry = DocumentRegistry(RegistrySettings(affinity_domain=DOMAIN))
    operations = (*registry_operations(runtime, registry), *remove_operations(runtime, registry))
    with registry_endpoint(reactor_thread, runtime, operations, tmp_path / "spool") as url:
        yield url, runtime


def post_envelope(url: str, data: bytes) -> requests.Response:
    return requests.post(url, data=data, headers={"Content-Type": "application/soap+xml; charset=utf-8"},
                         timeout=30)


def post(url: str, body: bytes, action: str) -> requests.Response:
    return post_envelope(url, envelope(body, action=action, url=url))


def registry_response(response: requests.Response, rs_schema, action: str = REMOVE) -> etree._Element:  # noqa: F811
    """The answer's rs:RegistryResponse, after checking status, response action and the official schema."""
    assert response.status_code == 200, response.content
    root = etree.fromstring(response.content)
    assert root.findtext("s:Header/a:Action", namespaces=NS) == action + "Response"
    body = root.find("s:Body/rs:RegistryResponse", NS)
    assert body is not None, response.content
    rs_schema.assertValid(body)
    return body


def error_codes(body: etree._Element) -> list[str]:
    return [error.get("errorCode") for error in body.findall("rs:RegistryErrorList/rs:RegistryError", NS)]


def remove_request(*ids: str) -> bytes:
    refs = "".join(f'<rim:ObjectRef id="{object_id}"/>' for object_id in ids)
    return (f'<lcm:RemoveObjectsRequest xmlns:lcm="{LCM}" xmlns:rim="{RIM}"><rim:ObjectRefList>{refs}'
            f"</rim:ObjectRefList></lcm:RemoveObjectsRequest>").encode()


def stored_objects(runtime) -> int:
    with runtime.db.sessions() as session:
        return session.scalar(select(func.count()).select_from(XdsObject))


def new_id() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def register_appendix(url: str, rs_schema) -> tuple[list[str], list[str]]:  # noqa: F811
    """An original document set, then a second set appending to it: (original's ids, appendix's 4 ids)."""
    original = [new_id() for _ in range(3)]
    de0, hm0, ss0 = original
    appendix = [new_id() for _ in range(4)]
    apnd, de1, hm1, ss1 = appendix
    for pieces in ((submission_set(ss0, ALICE), entry(de0, ALICE),
                    association(hm0, c.HAS_MEMBER, ss0, de0, status="Original")),
                   (submission_set(ss1, ALICE), entry(de1, ALICE),
                    association(hm1, c.HAS_MEMBER, ss1, de1, status="Original"), association(apnd, c.APND, de1, de0))):
        body = registry_response(post(url, request(*pieces), REGISTER), rs_schema, REGISTER)
        assert body.get("status") == c.RESPONSE_SUCCESS, etree.tostring(body)
    return original, appendix


def test_committee_example_is_answered_like_the_committee_response(server, rs_schema, corpus_dir):  # noqa: F811
    examples = corpus_dir / "ihe-iti-info/examples/RMD"
    if not (examples / "RemoveMetadataRequest_SOAP.xml").is_file():
        pytest.skip(f"RMD examples not found under {examples}")
    url, runtime = server
    original, appendix = register_appendix(url, rs_schema)
    data = (examples / "RemoveMetadataRequest_SOAP.xml").read_bytes()
    for example_id, real_id in zip(EXAMPLE_IDS, appendix):
        assert data.count(example_id.encode()) == 1
        data = data.replace(example_id.encode(), real_id.encode())
    body = registry_response(post_envelope(url, data), rs_schema)
    expected = etree.parse(str(examples / "RemoveMetadataResponse.xml")).getroot()
    assert body.get("status") == expected.get("status") == c.RESPONSE_SUCCESS
    assert error_codes(body) == []
    assert stored_objects(runtime) == len(original)
    record = runtime.audit.records[-1]
    assert (record.event_id[0], record.action, record.outcome, record.event_types[0][0], record.transaction) == \
        ("110110", "D", 0, "ITI-62", "ITI-62")
    patient, *removed = record.objects
    assert (patient.object_id, patient.type_code, patient.type_code_role) == (ALICE, 1, 1)
    assert [(o.object_id, o.type_code, o.type_code_role) for o in removed] == [(i, 2, 3) for i in appendix]
    assert [o.name for o in removed] == ["Association", "DocumentEntry", "Association", "SubmissionSet"]


def test_still_referenced_object_is_a_failure_response_and_nothing_goes(server, rs_schema):  # noqa: F811
    url, runtime = server
    original, _ = register_appendix(url, rs_schema)
    body = registry_response(post(url, remove_request(*original), REMOVE), rs_schema)
    assert body.get("status") == c.RESPONSE_FAILURE
    assert error_codes(body) == ["ReferencesExistException"]
    assert stored_objects(runtime) == 7
    record = runtime.audit.records[-1]
    assert record.outcome == 8 and "ReferencesExistException" in record.outcome_description
    assert [o.object_id for o in record.objects[1:]] == original


def test_unknown_object_is_unresolved(server, rs_schema):  # noqa: F811
    url, runtime = server
    unknown = "urn:uuid:11111111-2222-3333-4444-999999999999"
    body = registry_response(post(url, remove_request(unknown), REMOVE), rs_schema)
    assert (body.get("status"), error_codes(body)) == (c.RESPONSE_FAILURE, ["UnresolvedReferenceException"])
    [record] = runtime.audit.records
    assert [o.object_id for o in record.objects] == [unknown]


def test_object_ref_without_id_is_a_metadata_error(server, rs_schema):  # noqa: F811
    url, _ = server
    body = registry_response(post(url, remove_request("") .replace(b' id=""', b""), REMOVE), rs_schema)
    assert error_codes(body) == ["XDSRegistryMetadataError"]


def test_a_body_that_is_not_a_remove_request_is_a_sender_fault(server):
    url, runtime = server
    response = post(url, f'<rs:RegistryResponse xmlns:rs="{RS}" status="{c.RESPONSE_SUCCESS}"/>'.encode(), REMOVE)
    assert response.status_code == 400
    root = etree.fromstring(response.content)
    assert root.find("s:Body/s:Fault/s:Code/s:Value", NS).text.endswith(":Sender")
    assert runtime.audit.records[0].outcome == 8
