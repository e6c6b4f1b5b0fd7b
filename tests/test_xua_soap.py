"""XUA on the real serve: XUA required on /xds/registry, optional on /xds/repository, off elsewhere.

Raw HTTP POSTs (requests) with and without signed assertions; WS-Security faults read from the wire; the audit
records read back from the engine's own Audit Record Repository (the database the serve writes); the replay
cache on SQLite and PostgreSQL (the ``database`` fixture).
"""

from __future__ import annotations

import time
import uuid

import pytest
import requests
from lxml import etree
from sqlalchemy import text

from ihe_engine.ns import LCM, QUERY, RIM, RS, SOAP12, WSSE, XDS
from serving import start_engine
from xua_testing import AUDIENCE, ISSUER, build_assertion, envelope, security, sign, signed

ITI18 = "urn:ihe:iti:2007:RegistryStoredQuery"
ITI62 = "urn:ihe:iti:2010:DeleteDocumentSet"
ITI43 = "urn:ihe:iti:2007:RetrieveDocumentSet"
PIX_QUERY = "urn:hl7-org:v3:PRPA_IN201309UV02"
ENGINE_FAULT_NS = "urn:ihe-engine:soap:fault"


@pytest.fixture
def engine(database, tmp_path, pki):
    config = tmp_path / "engine.toml"
    config.write_text(f'[xua]\ntrust_anchors = "{pki.ca}"\naudiences = ["{AUDIENCE}"]\n'
                      '[xua.endpoints]\n"xds/registry" = "required"\n"xds/repository" = "optional"\n')
    process = start_engine(tmp_path / "data", "--config", str(config), "--db-url",
                           database.engine.url.render_as_string(hide_password=False))
    try:
        yield process
    finally:
        process.stop()


def url(engine, path: str) -> str:
    return engine.url(path.replace("/", "-"))  # the serve prints one listening line per SOAP endpoint


def post(engine, path: str, data: bytes) -> requests.Response:
    return requests.post(url(engine, path), data=data, timeout=30,
                         headers={"Content-Type": "application/soap+xml; charset=utf-8"})


def find_documents() -> etree._Element:
    request = etree.Element(f"{{{QUERY}}}AdhocQueryRequest", nsmap={"query": QUERY, "rim": RIM})
    etree.SubElement(request, f"{{{QUERY}}}ResponseOption", returnType="ObjectRef", returnComposedObjects="true")
    query = etree.SubElement(request, f"{{{RIM}}}AdhocQuery", id="urn:uuid:14d4debf-8f97-4251-9a74-a90016b0af0d")
    for name, value in (("$XDSDocumentEntryPatientId", "'P1^^^&1.2.3&ISO'"),
                        ("$XDSDocumentEntryStatus", "('urn:oasis:names:tc:ebxml-regrep:StatusType:Approved')")):
        slot = etree.SubElement(query, f"{{{RIM}}}Slot", name=name)
        etree.SubElement(etree.SubElement(slot, f"{{{RIM}}}ValueList"), f"{{{RIM}}}Value").text = value
    return request


def remove_objects() -> etree._Element:
    request = etree.Element(f"{{{LCM}}}RemoveObjectsRequest", nsmap={"lcm": LCM, "rim": RIM})
    refs = etree.SubElement(request, f"{{{RIM}}}ObjectRefList")
    etree.SubElement(refs, f"{{{RIM}}}ObjectRef", id=f"urn:uuid:{uuid.uuid4()}")
    return request


def retrieve() -> etree._Element:
    request = etree.Element(f"{{{XDS}}}RetrieveDocumentSetRequest", nsmap={"xds": XDS})
    item = etree.SubElement(request, f"{{{XDS}}}DocumentRequest")
    etree.SubElement(item, f"{{{XDS}}}RepositoryUniqueId").text = "1.2.3.4"
    etree.SubElement(item, f"{{{XDS}}}DocumentUniqueId").text = "1.2.3.4.5"
    return request


def fault_subcode(response: requests.Response) -> str:
    assert response.status_code == 400, response.text
    root = etree.fromstring(response.content)
    value = root.find(f".//{{{SOAP12}}}Subcode/{{{SOAP12}}}Value")
    prefix, _, local = value.text.partition(":")
    return f"{{{value.nsmap[prefix]}}}{local}"


def wsse(code: str) -> str:
    return f"{{{WSSE}}}{code}"


def audit_records(database, wanted: int, *, contains: bytes = b"", seconds: float = 30.0) -> list[bytes]:
    """The raw audit messages containing ``contains``, once at least ``wanted`` arrived (a loop guard, not a
    timing assertion: delivery to the local repository is asynchronous)."""
    end = time.monotonic() + seconds
    while True:
        with database.engine.connect() as connection:
            raws = [bytes(row[0]) for row in connection.execute(text("SELECT raw FROM audit_record"))]
        found = [raw for raw in raws if contains in raw]
        if len(found) >= wanted or time.monotonic() > end:
            return found
        time.sleep(0.1)


def test_registry_requires_a_valid_assertion(engine, database, pki):
    without = post(engine, "xds/registry", envelope(ITI18, find_documents()))
    assert fault_subcode(without) == wsse("InvalidSecurity")

    header = security(signed(pki, name_id="jdoe"))
    accepted = post(engine, "xds/registry", envelope(ITI18, find_documents(), header))
    assert accepted.status_code == 200, accepted.text
    body = etree.fromstring(accepted.content).find(f"{{{SOAP12}}}Body")[0]
    assert body.tag == f"{{{QUERY}}}AdhocQueryResponse" and body.get("status").endswith(":Success")

    replayed = post(engine, "xds/registry", envelope(ITI18, find_documents(), header))
    assert fault_subcode(replayed) == wsse("FailedAuthentication") and b"replay" in replayed.content

    tampered = signed(pki, name_id="jdoe")
    tampered.find(".//{urn:oasis:names:tc:SAML:2.0:assertion}NameID").text = "mallory"
    assert fault_subcode(post(engine, "xds/registry", envelope(ITI18, find_documents(),
                                                               security(tampered)))) == wsse("FailedCheck")

    stranger = sign(build_assertion(), pki.unknown_ca_client.cert, pki.unknown_ca_client.key)
    assert fault_subcode(post(engine, "xds/registry", envelope(ITI18, find_documents(), security(stranger)))) \
        == wsse("FailedAuthentication")

    failures = audit_records(database, 4, contains=b"110114")  # User Authentication, one per refusal
    assert len(failures) == 4 and all(b'EventOutcomeIndicator="4"' in raw for raw in failures)
    assert any(f"&lt;mallory@{ISSUER}&gt;".encode() in raw for raw in failures)  # the claimed identity


def test_transaction_audit_names_the_verified_user(engine, database, pki):
    header = security(signed(pki, name_id="jdoe", sp_provided_id="Dr Doe"))
    answer = post(engine, "xds/registry", envelope(ITI62, remove_objects(), header))
    assert answer.status_code == 200 and etree.fromstring(answer.content).find(f".//{{{RS}}}RegistryResponse") \
        is not None
    [record] = audit_records(database, 1, contains=b"ITI-62")
    assert f'UserName="Dr Doe&lt;jdoe@{ISSUER}&gt;"'.encode() in record


def test_optional_endpoint_and_endpoint_without_xua(engine, pki):
    plain = post(engine, "xds/repository", envelope(ITI43, retrieve()))
    assert plain.status_code == 200, plain.text  # optional: no header, no user, answered as usual
    unsigned = post(engine, "xds/repository", envelope(ITI43, retrieve(), security(build_assertion())))
    assert fault_subcode(unsigned) == wsse("FailedAuthentication")  # present, so it must be valid
    good = post(engine, "xds/repository", envelope(ITI43, retrieve(), security(signed(pki))))
    assert good.status_code == 200, good.text
    # XUA off on /pix: a mustUnderstand wsse:Security is not understood there
    off = post(engine, "pix", envelope(PIX_QUERY, etree.Element("{urn:hl7-org:v3}PRPA_IN201309UV02"),
                                       security(signed(pki))))
    root = etree.fromstring(off.content)
    assert root.find(f".//{{{SOAP12}}}Code/{{{SOAP12}}}Value").text.endswith("MustUnderstand")


def test_hostile_headers_are_refused_before_any_processing(engine, pki):
    bomb = envelope(ITI18, find_documents(), security(signed(pki))).replace(
        b"<?xml version='1.0' encoding='utf-8'?>",
        b"<?xml version='1.0' encoding='utf-8'?><!DOCTYPE x [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;\">]>")
    assert fault_subcode(post(engine, "xds/registry", bomb)) == f"{{{ENGINE_FAULT_NS}}}XMLSecurityError"
    huge = security(sign(build_assertion(attributes=[("urn:x", ["x" * 200_000])]), pki.client.cert, pki.client.key))
    response = post(engine, "xds/registry", envelope(ITI18, find_documents(), huge))
    assert fault_subcode(response) == wsse("InvalidSecurityToken") and b"above the limit" in response.content
    wrapped = signed(pki, name_id="jdoe")
    evil = build_assertion(name_id="admin", assertion_id="_evil")
    evil.insert(1, wrapped.find("{http://www.w3.org/2000/09/xmldsig#}Signature"))
    etree.SubElement(evil, "{urn:oasis:names:tc:SAML:2.0:assertion}Advice").append(wrapped)
    assert fault_subcode(post(engine, "xds/registry", envelope(ITI18, find_documents(), security(evil)))) \
        == wsse("InvalidSecurityToken")


# ---------------------------------------------------------------------------------------------- in process

def test_the_guard_hands_the_user_to_blocking_and_inline_handlers(database, reactor_thread, pki, tmp_path):
    """install() on a bare endpoint: both handler kinds get ``request.user``; a refusal never reaches them."""
    from twisted.internet.threads import blockingCallFromThread
    from twisted.web import resource

    from ihe_engine.config import Settings
    from ihe_engine.soap import Operation, SoapEndpoint, SoapResponse
    from ihe_engine.web import BoundedSite
    from ihe_engine.xua.soap import install
    from xds_testing import LoopbackRuntime

    settings = Settings(data_dir=tmp_path, extra={"xua": {
        "trust_anchors": str(pki.ca), "audiences": [AUDIENCE], "endpoints": {"svc": "required"}}})
    runtime = LoopbackRuntime(settings=settings, reactor=reactor_thread, db=database)
    seen = []

    def answer(request):
        seen.append(request.user_alias)
        reply = etree.Element("{urn:test}Who")
        reply.text = request.user_alias
        return SoapResponse(reply)

    def start():
        endpoint = SoapEndpoint("svc", runtime)
        endpoint.register(Operation("urn:test:blocking", "urn:test:blockingResponse", answer, transaction="T-1"))
        endpoint.register(Operation("urn:test:inline", "urn:test:inlineResponse", answer, transaction="T-2",
                                    blocking=False))
        assert set(install(runtime, {"svc": endpoint})) == {"svc"}
        root = resource.Resource()
        root.putChild(b"svc", endpoint)
        return reactor_thread.listenTCP(0, BoundedSite(root, max_body=1 << 20, spool_dir=tmp_path),
                                        interface="127.0.0.1")

    port = blockingCallFromThread(reactor_thread, start)
    address = f"http://127.0.0.1:{port.getHost().port}/svc"
    try:
        for action in ("urn:test:blocking", "urn:test:inline"):
            data = envelope(action, etree.Element("{urn:test}Ask"), security(signed(pki, name_id="ann")))
            response = requests.post(address, data=data, timeout=30,
                                     headers={"Content-Type": "application/soap+xml"})
            assert response.status_code == 200 and f"&lt;ann@{ISSUER}&gt;".encode() in response.content
            refused = requests.post(address, data=envelope(action, etree.Element("{urn:test}Ask")), timeout=30,
                                    headers={"Content-Type": "application/soap+xml"})
            assert fault_subcode(refused) == wsse("InvalidSecurity")
    finally:
        blockingCallFromThread(reactor_thread, port.stopListening)
    assert seen == [f"<ann@{ISSUER}>"] * 2
    failures = [r for r in runtime.audit.records if r.event_id[0] == "110114"]
    assert [r.transaction for r in failures] == ["T-1", "T-2"]


@pytest.mark.parametrize("xua, message", [
    ({"endpoints": {"xds/registry": "sometimes"}, "trust_anchors": "x.pem"}, "off, optional, required"),
    ({"endpoints": {"xds/registry": "required"}}, "trust_anchors"),
    ({"endpoints": {"xds/registry": "required"}, "trust_anchors": "x.pem", "profile": "saml"}, "ihe or vihf"),
    ({"endpoints": {"nowhere": "required"}, "trust_anchors": "x.pem"}, "unknown endpoints"),
    ({"endpoints": {"xds/registry": "required"}, "trust_anchors": "/no/such/file.pem"}, "/no/such/file.pem"),
])
def test_configuration_errors_are_named(xua, message):
    from types import SimpleNamespace

    from ihe_engine.errors import ConfigurationError
    from ihe_engine.xua.soap import install

    runtime = SimpleNamespace(settings=SimpleNamespace(extra={"xua": xua}))
    with pytest.raises(ConfigurationError, match=message.replace("/", ".")):
        install(runtime, {"xds/registry": object()})


def test_xua_off_by_default_installs_nothing():
    from types import SimpleNamespace

    from ihe_engine.xua.soap import install, start_housekeeping

    runtime = SimpleNamespace(settings=SimpleNamespace(extra={}))
    assert install(runtime, {"xds/registry": object()}) == {} and start_housekeeping(runtime) is None
