"""The SOAP endpoint over real loopback HTTP: zeep as the friendly client, raw sockets as the hostile one."""

from __future__ import annotations

import base64
import hashlib
import http.client
import io
import os
import select
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import zeep
from lxml import etree
from twisted.internet.threads import blockingCallFromThread, deferToThread
from twisted.web import resource
from twisted.web.test.requesthelper import DummyRequest
from zeep.plugins import HistoryPlugin

from ihe_engine.config import Settings
from ihe_engine.errors import TransactionError
from ihe_engine.ns import QUERY, SOAP11, SOAP12, WSA, WSA_ANONYMOUS, WSDL_SOAP12, qn
from ihe_engine.soap import Operation, OutgoingAttachment, SoapEndpoint, SoapResponse
from ihe_engine.soap.client import MtomTransport, post_mtom, request_envelope
from ihe_engine.soap.mtom import new_content_id, xop_include
from ihe_engine.web import BoundedSite

TNS = "urn:ihe-engine:test:echo"
ECHO, FETCH, STORE, CRASH, BUSY = (f"urn:test:{name}" for name in ("Echo", "Fetch", "Store", "Crash", "Busy"))
MAX_BODY = 8 * 1024 * 1024
ROOT = Path(__file__).resolve().parent.parent
NS = {"s": SOAP12, "a": WSA, "t": TNS}

TEST_WSDL = f"""<?xml version="1.0" encoding="UTF-8"?>
<wsdl:definitions targetNamespace="{TNS}" xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/"
    xmlns:soap12="{WSDL_SOAP12}" xmlns:wsaw="http://www.w3.org/2006/05/addressing/wsdl"
    xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:t="{TNS}">
  <wsdl:types>
    <xs:schema targetNamespace="{TNS}" elementFormDefault="qualified">
      <xs:element name="Echo"><xs:complexType><xs:sequence><xs:element name="text" type="xs:string"/>
        </xs:sequence></xs:complexType></xs:element>
      <xs:element name="EchoResponse"><xs:complexType><xs:sequence><xs:element name="text" type="xs:string"/>
        </xs:sequence></xs:complexType></xs:element>
      <xs:element name="Fetch"><xs:complexType><xs:sequence><xs:element name="size" type="xs:int"/>
        </xs:sequence></xs:complexType></xs:element>
      <xs:element name="FetchResponse"><xs:complexType><xs:sequence><xs:element name="data" type="xs:base64Binary"/>
        </xs:sequence></xs:complexType></xs:element>
      <xs:element name="Store"><xs:complexType><xs:sequence><xs:element name="data" type="xs:base64Binary"/>
        </xs:sequence></xs:complexType></xs:element>
      <xs:element name="StoreResponse"><xs:complexType><xs:sequence><xs:element name="size" type="xs:long"/>
        <xs:element name="sha256" type="xs:string"/><xs:element name="spooled" type="xs:boolean"/>
        </xs:sequence></xs:complexType></xs:element>
    </xs:schema>
  </wsdl:types>
  <wsdl:message name="EchoIn"><wsdl:part name="body" element="t:Echo"/></wsdl:message>
  <wsdl:message name="EchoOut"><wsdl:part name="body" element="t:EchoResponse"/></wsdl:message>
  <wsdl:message name="FetchIn"><wsdl:part name="body" element="t:Fetch"/></wsdl:message>
  <wsdl:message name="FetchOut"><wsdl:part name="body" element="t:FetchResponse"/></wsdl:message>
  <wsdl:message name="StoreIn"><wsdl:part name="body" element="t:Store"/></wsdl:message>
  <wsdl:message name="StoreOut"><wsdl:part name="body" element="t:StoreResponse"/></wsdl:message>
  <wsdl:portType name="TestPort">
    <wsdl:operation name="Echo"><wsdl:input message="t:EchoIn" wsaw:Action="{ECHO}"/>
      <wsdl:output message="t:EchoOut" wsaw:Action="{ECHO}Response"/></wsdl:operation>
    <wsdl:operation name="Fetch"><wsdl:input message="t:FetchIn" wsaw:Action="{FETCH}"/>
      <wsdl:output message="t:FetchOut" wsaw:Action="{FETCH}Response"/></wsdl:operation>
    <wsdl:operation name="Store"><wsdl:input message="t:StoreIn" wsaw:Action="{STORE}"/>
      <wsdl:output message="t:StoreOut" wsaw:Action="{STORE}Response"/></wsdl:operation>
  </wsdl:portType>
  <wsdl:binding name="TestBinding" type="t:TestPort">
    <soap12:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>
    <wsdl:operation name="Echo"><soap12:operation soapAction="{ECHO}" soapActionRequired="false"/>
      <wsdl:input><soap12:body use="literal"/></wsdl:input><wsdl:output><soap12:body use="literal"/></wsdl:output>
    </wsdl:operation>
    <wsdl:operation name="Fetch"><soap12:operation soapAction="{FETCH}" soapActionRequired="false"/>
      <wsdl:input><soap12:body use="literal"/></wsdl:input><wsdl:output><soap12:body use="literal"/></wsdl:output>
    </wsdl:operation>
    <wsdl:operation name="Store"><soap12:operation soapAction="{STORE}" soapActionRequired="false"/>
      <wsdl:input><soap12:body use="literal"/></wsdl:input><wsdl:output><soap12:body use="literal"/></wsdl:output>
    </wsdl:operation>
  </wsdl:binding>
  <wsdl:service name="TestService"><wsdl:port name="TestPort" binding="t:TestBinding">
    <soap12:address location="http://placeholder.invalid/svc"/></wsdl:port></wsdl:service>
</wsdl:definitions>""".encode()


@dataclass
class LoopbackRuntime:
    """Just what the endpoint uses from a Runtime: settings, reactor, run_blocking."""

    settings: Settings
    reactor: Any

    def run_blocking(self, fn, *args, **kwargs):
        return deferToThread(fn, *args, **kwargs)


def t(local: str) -> str:
    return qn(TNS, local)


def echo(request):
    answer = etree.Element(t("EchoResponse"), nsmap={None: TNS})
    etree.SubElement(answer, t("text")).text = request.payload.findtext(t("text"))
    return SoapResponse(answer)


def fetch(request):
    """MTOM answer: bytes from a file on disk, streamed by the endpoint."""
    size = int(request.payload.findtext(t("size")))
    path = FETCH_FILES[size]
    answer = etree.Element(t("FetchResponse"), nsmap={None: TNS})
    content_id = new_content_id()
    xop_include(etree.SubElement(answer, t("data")), content_id)
    return SoapResponse(answer, attachments=(OutgoingAttachment(content_id=content_id, content=path),))


def store(request):
    attachment = request.binary(request.payload.find(t("data")))
    digest = hashlib.sha256()
    with attachment.open() as handle:
        for block in iter(lambda: handle.read(1 << 16), b""):
            digest.update(block)
    answer = etree.Element(t("StoreResponse"), nsmap={None: TNS})
    etree.SubElement(answer, t("size")).text = str(attachment.size)
    etree.SubElement(answer, t("sha256")).text = digest.hexdigest()
    etree.SubElement(answer, t("spooled")).text = "true" if attachment.path is not None else "false"
    return SoapResponse(answer)


def crash(_request):
    raise KeyError("/srv/secret/config.toml")


def busy(_request):
    raise TransactionError("the registry is busy, retry later", code="XDSRegistryBusy")


FETCH_FILES: dict[int, Path] = {}
SPOOL: list[Path] = []


@pytest.fixture(scope="module")
def server(reactor_thread, tmp_path_factory):
    base = tmp_path_factory.mktemp("soap")
    for size in (0, 3 * 1024 * 1024 + 17):
        path = base / f"fetch-{size}.bin"
        path.write_bytes(b"\r\n" + bytes(range(256)) * (size // 256) + b"\r\n" if size else b"")
        FETCH_FILES[path.stat().st_size] = path
    runtime = LoopbackRuntime(settings=Settings(data_dir=base / "data"), reactor=reactor_thread)
    SPOOL.append(base / "spool")

    def start():
        endpoint = SoapEndpoint("test", runtime, wsdl=TEST_WSDL, max_body=MAX_BODY, spool_dir=base / "spool")
        endpoint.register(Operation(ECHO, ECHO + "Response", echo, transaction="TEST-echo", blocking=False))
        endpoint.register(Operation(FETCH, FETCH + "Response", fetch, transaction="TEST-fetch", mtom_response=True))
        endpoint.register(Operation(STORE, STORE + "Response", store, transaction="TEST-store"))
        endpoint.register(Operation(CRASH, CRASH + "Response", crash, transaction="TEST-crash"))
        endpoint.register(Operation(BUSY, BUSY + "Response", busy, transaction="TEST-busy", blocking=False))
        registry = SoapEndpoint("registry", runtime, wsdl=(ROOT / "schemas/wsdl/xds-registry.wsdl").read_bytes())
        registry.register(Operation("urn:ihe:iti:2007:RegistryStoredQuery",
                                    "urn:ihe:iti:2007:RegistryStoredQueryResponse", stored_query,
                                    transaction="ITI-18"))
        root = resource.Resource()
        root.putChild(b"svc", endpoint)
        xds = resource.Resource()
        xds.putChild(b"registry", registry)
        root.putChild(b"xds", xds)
        site = BoundedSite(root, max_body=MAX_BODY, spool_dir=base / "spool")
        return reactor_thread.listenTCP(0, site, interface="127.0.0.1")

    port = blockingCallFromThread(reactor_thread, start)
    yield f"http://127.0.0.1:{port.getHost().port}"
    blockingCallFromThread(reactor_thread, port.stopListening)


def stored_query(request):
    answer = etree.Element(qn(QUERY, "AdhocQueryResponse"), nsmap={"query": QUERY})
    answer.set("status", "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success")
    return SoapResponse(answer)


# ---------------------------------------------------------------------- helpers


def soap_bytes(action: str | None, body: str = f'<t:Echo xmlns:t="{TNS}"><t:text>hi</t:text></t:Echo>',
               extra_headers: str = "", message_id: str = "urn:uuid:11111111-2222-3333-4444-555555555555") -> bytes:
    action_header = f'<a:Action s:mustUnderstand="1">{action}</a:Action>' if action else ""
    return (f'<s:Envelope xmlns:s="{SOAP12}" xmlns:a="{WSA}"><s:Header>{action_header}'
            f"<a:MessageID>{message_id}</a:MessageID>{extra_headers}</s:Header><s:Body>{body}</s:Body>"
            "</s:Envelope>").encode()


def post(url: str, data: bytes, content_type: str = "application/soap+xml; charset=utf-8") -> requests.Response:
    return requests.post(url, data=data, headers={"Content-Type": content_type}, timeout=30)


def fault_of(response: requests.Response) -> tuple[str, list[str], str]:
    root = etree.fromstring(response.content)
    fault = root.find("s:Body/s:Fault", NS)
    assert fault is not None, response.content

    def resolve(value):
        prefix, local = value.text.split(":")
        return qn(value.nsmap[prefix], local)

    code = resolve(fault.find("s:Code/s:Value", NS))
    subcodes, node = [], fault.find("s:Code", NS)
    while (node := node.find("s:Subcode", NS)) is not None:
        subcodes.append(resolve(node.find("s:Value", NS)))
    return code, subcodes, fault.findtext("s:Reason/s:Text", namespaces=NS)


def assert_still_serving(server: str) -> None:
    response = post(server + "/svc", soap_bytes(ECHO))
    assert response.status_code == 200
    assert etree.fromstring(response.content).findtext("s:Body/t:EchoResponse/t:text", namespaces=NS) == "hi"


def zeep_client(server: str, **transport_options) -> tuple[zeep.Client, HistoryPlugin]:
    """zeep adds wsa:Action/MessageID/To itself for operations whose WSDL carries wsaw:Action."""
    history = HistoryPlugin()
    client = zeep.Client(server + "/svc?wsdl", transport=MtomTransport(**transport_options),
                         plugins=[history])
    return client, history


# ---------------------------------------------------------------------- friendly clients


def test_zeep_calls_echo_through_the_served_wsdl_and_reply_relates_to_request(server):
    client, history = zeep_client(server)
    assert client.service.Echo(text="héllo wörld") == "héllo wörld"
    sent_id = history.last_sent["envelope"].find("s:Header/a:MessageID", NS).text
    received = history.last_received["envelope"]
    assert received.find("s:Header/a:RelatesTo", NS).text == sent_id
    assert received.find("s:Header/a:Action", NS).text == ECHO + "Response"
    assert received.find("s:Header/a:Action", NS).get(qn(SOAP12, "mustUnderstand")) == "true"
    assert received.find("s:Header/a:MessageID", NS).text.startswith("urn:uuid:")
    assert history.last_received["http_headers"]["Content-Type"].startswith("application/soap+xml")


def test_wsdl_address_is_rewritten_to_the_real_host_and_port(server):
    wsdl = requests.get(server + "/svc?wsdl", timeout=10)
    assert wsdl.status_code == 200 and wsdl.headers["Content-Type"].startswith("text/xml")
    location = etree.fromstring(wsdl.content).find(f".//{{{WSDL_SOAP12}}}address").get("location")
    assert location == server + "/svc"
    spoofed = requests.get(server + "/svc?wsdl", headers={"Host": 'evil.example/"><x'}, timeout=10)
    assert b"evil" not in spoofed.content
    info = requests.get(server + "/svc", timeout=10)
    assert info.status_code == 200 and ECHO in info.text


def test_xds_registry_wsdl_loads_in_zeep_from_the_endpoint(server):
    client = zeep.Client(server + "/xds/registry?wsdl")
    (service,) = client.wsdl.services.values()
    (port,) = service.ports.values()
    assert port.binding_options["address"] == server + "/xds/registry"
    operations = port.binding._operations
    assert {op.abstract.wsa_action for op in operations.values()} == {
        "urn:ihe:iti:2007:RegisterDocumentSet-b", "urn:ihe:iti:2007:RegistryStoredQuery",
        "urn:ihe:iti:2010:UpdateDocumentSet", "urn:ihe:iti:2010:DeleteDocumentSet",
        "urn:ihe:iti:2009:MultiPatientStoredQuery"}
    query = etree.Element(qn("urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0", "AdhocQuery"), id="urn:uuid:x")
    result = client.service.DocumentRegistry_RegistryStoredQuery(_value_1=[query])
    assert result._attr_1["status"] == "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success"


def test_xds_repository_wsdl_loads_in_zeep():
    client = zeep.Client(str(ROOT / "schemas/wsdl/xds-repository.wsdl"))
    (service,) = client.wsdl.services.values()
    (port,) = service.ports.values()
    assert {op.abstract.wsa_action for op in port.binding._operations.values()} == {
        "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b", "urn:ihe:iti:2007:RetrieveDocumentSet",
        "urn:ihe:iti:2017:RemoveDocuments"}


def test_zeep_sends_mtom_through_our_transport_and_the_part_is_spooled(server):
    client, history = zeep_client(server, optimized_tags=[t("data")])
    content = b"\r\n" + bytes(range(256)) * 1024 + b"\r\n"  # 256 KB, above the in-memory threshold
    result = client.service.Store(data=content)
    assert result.size == len(content) and result.sha256 == hashlib.sha256(content).hexdigest()
    assert result.spooled is True
    assert not list(SPOOL[0].glob("mtom-*")), "spooled parts are removed once the answer is written"


@pytest.mark.parametrize("size", [21, 300_000])  # the larger body is parsed in the thread pool
def test_inline_base64_reaches_the_handler_through_the_same_api(server, size):
    client, history = zeep_client(server, optimized_tags=[])
    content = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    result = client.service.Store(data=content)
    assert result.size == size and result.spooled is False
    assert result.sha256 == hashlib.sha256(content).hexdigest()


def test_transactions_are_counted(server):
    from prometheus_client import REGISTRY

    def count(transaction, outcome):
        return REGISTRY.get_sample_value("ihe_transactions_total",
                                         {"transaction": transaction, "outcome": outcome}) or 0.0

    before = count("TEST-echo", "ok"), count("TEST-crash", "error")
    assert_still_serving(server)
    post(server + "/svc", soap_bytes(CRASH))
    assert (count("TEST-echo", "ok"), count("TEST-crash", "error")) == (before[0] + 1, before[1] + 1)


def test_mtom_response_streams_from_disk_to_zeep_and_to_post_mtom(server, tmp_path):
    (size,) = [key for key in FETCH_FILES if key]
    expected = FETCH_FILES[size].read_bytes()
    stock = zeep.Client(server + "/svc?wsdl")
    # zeep's own multipart decoder reads our MTOM answer, but strips CR/LF from the ends of binary parts
    assert stock.service.Fetch(size=size) == expected.strip(b"\r\n")
    ours, _ = zeep_client(server)
    assert ours.service.Fetch(size=size) == expected  # our transport keeps every byte

    payload = etree.Element(t("Fetch"), nsmap={None: TNS})
    etree.SubElement(payload, t("size")).text = str(size)
    answer = post_mtom(server + "/svc", request_envelope(payload, FETCH, to=server + "/svc"), {}, FETCH,
                       spool_dir=tmp_path)
    assert answer.status == 200 and answer.content_type.startswith("multipart/related")
    attachment = answer.binary(answer.envelope.payload.find(t("data")))
    assert attachment.path is not None and attachment.path.parent == tmp_path
    with attachment.open() as handle:
        assert handle.read() == expected
    answer.dispose()
    assert not attachment.path.exists()


def test_post_mtom_sends_files_and_bytes(server, tmp_path):
    document = tmp_path / "doc.bin"
    document.write_bytes(b"--" + b"x" * 200_000)
    for content in (document, b"from bytes"):
        content_id = f"{uuid.uuid4().hex}@client"
        payload = etree.Element(t("Store"), nsmap={None: TNS})
        xop_include(etree.SubElement(payload, t("data")), content_id)
        answer = post_mtom(server + "/svc", request_envelope(payload, STORE), {content_id: content}, STORE)
        raw = content.read_bytes() if isinstance(content, Path) else content
        assert answer.status == 200 and not answer.is_fault
        assert answer.envelope.payload.findtext(t("sha256")) == hashlib.sha256(raw).hexdigest()


def test_non_blocking_transaction_error_is_a_receiver_fault_with_its_message(server):
    response = post(server + "/svc", soap_bytes(BUSY))
    code, subcodes, reason = fault_of(response)
    assert response.status_code == 500 and code == qn(SOAP12, "Receiver")
    assert subcodes == [qn("urn:ihe-engine:soap:fault", "XDSRegistryBusy")] and "busy" in reason


# ---------------------------------------------------------------------- hostile clients

BILLION_LAUGHS = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
                  + b"".join(f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10 if i > 1 else "&lol;" * 10}">'
                             .encode() for i in range(1, 10))
                  + b"]>" + soap_bytes(ECHO, body=f'<t:Echo xmlns:t="{TNS}"><t:text>&lol9;</t:text></t:Echo>'))
XXE = (b'<?xml version="1.0"?><!DOCTYPE e [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
       + soap_bytes(ECHO, body=f'<t:Echo xmlns:t="{TNS}"><t:text>&xxe;</t:text></t:Echo>'))
TRUNCATED_MTOM = (b"--b\r\nContent-Type: application/xop+xml; type=\"application/soap+xml\"\r\nContent-ID: <r>\r\n\r\n"
                  + soap_bytes(ECHO) + b"\r\n--b\r\nContent-ID: <a>\r\n\r\npartial attachment")


ANSWERED_AFTER_PARSING = {"missing action", "unknown action", "non-anonymous ReplyTo", "mustUnderstand",
                          "internal error"}


@pytest.mark.parametrize("name,data,content_type,status,code,subcode,reason_part", [
    ("billion laughs", BILLION_LAUGHS, None, 400, "Sender", "{urn:ihe-engine:soap:fault}XMLSecurityError",
     "document type"),
    ("external entity", XXE, None, 400, "Sender", "{urn:ihe-engine:soap:fault}XMLSecurityError", "document type"),
    ("not xml", b"\x00\xffgarbage", None, 400, "Sender", "{urn:ihe-engine:soap:fault}RemoteProtocolError",
     "not well-formed"),
    ("missing action", soap_bytes(None), None, 400, "Sender", qn(WSA, "MessageAddressingHeaderRequired"),
     "wsa:Action"),
    ("unknown action", soap_bytes("urn:test:Nope"), None, 400, "Sender", qn(WSA, "ActionNotSupported"),
     "urn:test:Nope"),
    ("non-anonymous ReplyTo", soap_bytes(ECHO, extra_headers="<a:ReplyTo><a:Address>http://attacker/cb"
                                                             "</a:Address></a:ReplyTo>"),
     None, 400, "Sender", qn(WSA, "OnlyAnonymousAddressSupported"), "anonymous"),
    ("mustUnderstand", soap_bytes(ECHO, extra_headers='<x:Secret xmlns:x="urn:x" s:mustUnderstand="1"/>'),
     None, 500, "MustUnderstand", None, "urn:x"),
    ("soap 1.2 content type, soap 1.1 envelope",
     f'<e:Envelope xmlns:e="{SOAP11}"><e:Body><x/></e:Body></e:Envelope>'.encode(), None, 500, "VersionMismatch",
     None, "SOAP 1.1"),
    ("truncated multipart", TRUNCATED_MTOM, 'multipart/related; boundary=b; type="application/xop+xml"', 400,
     "Sender", "{urn:ihe-engine:soap:fault}RemoteProtocolError", "truncated"),
    ("dangling xop", b"--b\r\nContent-ID: <r>\r\nContent-Type: application/xop+xml; type=\"application/soap+xml\""
                     b"\r\n\r\n" + soap_bytes(
        ECHO, body=f'<t:Store xmlns:t="{TNS}"><t:data><xop:Include xmlns:xop="http://www.w3.org/2004/08/xop/include"'
                   ' href="cid:nowhere"/></t:data></t:Store>') + b"\r\n--b--\r\n",
     "multipart/related; boundary=b", 400, "Sender", "{urn:ihe-engine:soap:fault}RemoteProtocolError", "nowhere"),
    ("unsupported media type", soap_bytes(ECHO), "application/json", 415, "Sender", None, "Content-Type"),
    ("internal error", soap_bytes(CRASH), None, 500, "Receiver", None, "internal error"),
])
def test_hostile_request_gets_a_fault_and_the_server_keeps_serving(server, name, data, content_type, status, code,
                                                                   subcode, reason_part):
    response = post(server + "/svc", data, content_type or "application/soap+xml; charset=utf-8")
    assert response.status_code == status, response.content
    assert response.headers["Content-Type"].startswith("application/soap+xml")
    fault_code, subcodes, reason = fault_of(response)
    assert fault_code == qn(SOAP12, code)
    if subcode:
        assert subcode in subcodes
    assert reason_part in reason
    assert b"root:" not in response.content and b"secret" not in response.content
    if name in ANSWERED_AFTER_PARSING:  # the envelope was read, so the fault relates to its MessageID
        relates = etree.fromstring(response.content).find("s:Header/a:RelatesTo", NS)
        assert relates is not None and relates.text.endswith("555555555555")
    assert_still_serving(server)


def test_soap11_request_gets_a_soap11_version_mismatch(server):
    body = f'<e:Envelope xmlns:e="{SOAP11}"><e:Body><x/></e:Body></e:Envelope>'.encode()
    response = requests.post(server + "/svc", data=body, timeout=10,
                             headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": ECHO})
    assert response.status_code == 500 and response.headers["Content-Type"].startswith("text/xml")
    root = etree.fromstring(response.content)
    assert root.tag == qn(SOAP11, "Envelope")
    assert root.findtext(f"{{{SOAP11}}}Body/{{{SOAP11}}}Fault/faultcode").endswith(":VersionMismatch")
    assert_still_serving(server)


def read_response(sock: socket.socket) -> tuple[int, bytes]:
    sock.settimeout(10)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data


def host_port(server: str) -> tuple[str, int]:
    host, port = server.split("//")[1].split(":")
    return host, int(port)


def test_declared_200_mb_body_is_refused_before_it_is_read(server):
    with socket.create_connection(host_port(server)) as sock:
        sock.sendall(b"POST /svc HTTP/1.1\r\nHost: x\r\nContent-Type: application/soap+xml\r\n"
                     b"Content-Length: 209715200\r\n\r\n" + b"<" * 65536)
        status, data = read_response(sock)
    assert status == 413 and b"MessageTooLarge" in data  # answered after 64 KB of the 200 MB
    assert_still_serving(server)


def test_chunked_body_past_the_limit_is_cut_off_with_413(server):
    chunk = b"%x\r\n%s\r\n" % (256 * 1024, b"x" * 256 * 1024)
    sent = 0
    with socket.create_connection(host_port(server)) as sock:
        sock.sendall(b"POST /svc HTTP/1.1\r\nHost: x\r\nContent-Type: application/soap+xml\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        while sent < 200 * 1024 * 1024:
            readable, _, _ = select.select([sock], [], [], 0.005)
            if readable:
                break
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += 256 * 1024
        status, data = read_response(sock)
    assert status == 413 and b"MessageTooLarge" in data
    assert sent < MAX_BODY + 8 * 1024 * 1024, f"the server kept reading: {sent} bytes sent"
    assert_still_serving(server)


def test_small_request_over_http_client_keeps_the_connection_alive(server):
    connection = http.client.HTTPConnection(*host_port(server), timeout=10)
    for _ in range(3):
        connection.request("POST", "/svc", soap_bytes(ECHO), {"Content-Type": "application/soap+xml"})
        response = connection.getresponse()
        assert response.status == 200 and b"EchoResponse" in response.read()
    connection.close()


def test_reply_to_anonymous_is_accepted(server):
    headers = f"<a:ReplyTo><a:Address>{WSA_ANONYMOUS}</a:Address></a:ReplyTo>"
    assert post(server + "/svc", soap_bytes(ECHO, extra_headers=headers)).status_code == 200
    inline = base64.b64encode(b"abc").decode()
    store_body = f'<t:Store xmlns:t="{TNS}"><t:data>{inline}</t:data></t:Store>'
    assert b"<size>3</size>" in post(server + "/svc", soap_bytes(STORE, body=store_body)).content.replace(
        b' xmlns="urn:ihe-engine:test:echo"', b"")


# ---------------------------------------------------------------------- spool files and size limits


class GatedEndpoint(SoapEndpoint):
    """Holds a parsed request in the pool until its client has gone, to replay a disconnect during parsing."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.parsed, self.client_gone, self.dispatched = threading.Event(), threading.Event(), threading.Event()

    def render_POST(self, request):
        request.notifyFinish().addErrback(lambda _: self.client_gone.set())  # asked while still connected
        return super().render_POST(request)

    def _parse_stored(self, content, kind, ctype):
        parsed = super()._parse_stored(content, kind, ctype)
        self.parsed.set()
        self.client_gone.wait(WAIT)
        return parsed

    def _dispatch(self, request, parsed, ctype):
        try:
            super()._dispatch(request, parsed, ctype)
        finally:
            self.dispatched.set()


WAIT = 20  # seconds: an upper bound for waits, never asserted on


def test_client_gone_during_mtom_parsing_leaves_no_spool_file_and_runs_no_handler(reactor_thread, tmp_path):
    spool = tmp_path / "spool"
    spool.mkdir()
    stale = spool / "mtom-crashed.part"
    stale.write_bytes(b"left by a killed process")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    calls = []
    runtime = LoopbackRuntime(settings=Settings(data_dir=tmp_path / "data"), reactor=reactor_thread)

    def start():
        endpoint = GatedEndpoint("gated", runtime, spool_dir=spool)
        endpoint.register(Operation(STORE, STORE + "Response", calls.append, transaction="TEST-gated"))
        return endpoint, reactor_thread.listenTCP(0, BoundedSite(endpoint, max_body=MAX_BODY, spool_dir=spool),
                                                  interface="127.0.0.1")

    endpoint, port = blockingCallFromThread(reactor_thread, start)
    assert not stale.exists()  # swept when the endpoint started
    body = (b"--B\r\nContent-Type: application/xop+xml; type=\"application/soap+xml\"\r\nContent-ID: <root>\r\n\r\n"
            + soap_bytes(STORE) + b"\r\n--B\r\nContent-ID: <att>\r\n\r\n" + b"z" * 300_000 + b"\r\n--B--\r\n")
    try:
        with socket.create_connection(("127.0.0.1", port.getHost().port)) as sock:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/related; boundary=B; "
                         b'type="application/xop+xml"; start="<root>"\r\nContent-Length: %d\r\n\r\n' % len(body)
                         + body)
            assert endpoint.parsed.wait(WAIT)
            assert list(spool.glob("mtom-*"))  # the attachment was spooled
        assert endpoint.dispatched.wait(WAIT)
        assert list(spool.glob("mtom-*")) == []
        assert calls == []
    finally:
        blockingCallFromThread(reactor_thread, port.stopListening)


class ReadCounter(io.BytesIO):
    """A request body that counts the bytes read from it."""

    bytes_read = 0

    def read(self, size=-1):
        data = super().read(size)
        self.bytes_read += len(data)
        return data


def test_simple_body_above_max_xml_bytes_is_refused_before_it_is_read():
    endpoint = SoapEndpoint("small", LoopbackRuntime(settings=None, reactor=None), max_xml_bytes=1024)
    endpoint.register(Operation(ECHO, ECHO + "Response", echo, transaction="TEST-small", blocking=False))
    envelope = soap_bytes(ECHO)
    body = ReadCounter(envelope.replace(b"<s:Body>", b"<s:Body>" + b" " * (1025 - len(envelope))))
    assert len(body.getvalue()) == 1025
    request = DummyRequest([b""])
    request.method = b"POST"
    request.requestHeaders.setRawHeaders(b"content-type", [b"application/soap+xml; charset=utf-8"])
    request.content = body
    request._disconnected = False  # what a real twisted.web request has
    endpoint.render_POST(request)
    assert request.responseCode == 413
    assert b"MessageTooLarge" in b"".join(request.written)
    assert body.bytes_read == 0
