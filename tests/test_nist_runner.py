"""WIRE TEST, NOT CONFORMANCE: the NIST replayer against an in-test fake registry/repository and MLLP stub.

The fake answers every request with Success and the right wsa:Action; it proves only the wire path (SOAP 1.2
envelopes with WS-Addressing, MTOM for ITI-41, the ADT^A01 feed over MLLP, state passing between sections)
and the report formats. The real conformance run is against the engine's registry and repository actors.
"""

from __future__ import annotations

import argparse
import json
import socketserver
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from lxml import etree

from ihe_engine import xmlsafe
from ihe_engine.conformance.cli import add_conformance_command
from ihe_engine.conformance.nist.report import FAIL, NOT_RUN, NOT_SUPPORTED, PASS
from ihe_engine.conformance.nist.runner import Replayer, RunnerConfig
from ihe_engine.conformance.nist.testkit import TestKit
from ihe_engine.hl7v2.message import parse as parse_hl7
from ihe_engine.ns import LCM, RIM, RS, SOAP12, WSA, WSA_ANONYMOUS, XDS, qn
from ihe_engine.soap.envelope import envelope_from_element
from ihe_engine.soap.mtom import binary_content, encode_mtom, parse_content_type, parse_mtom, resolve_xop
from ihe_engine.transport.mllp import MLLPFramer, frame

RIM21 = "urn:oasis:names:tc:ebxml-regrep:rim:xsd:2.1"
STATUS = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:"
DE_PID = "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427"
DE_UID = "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab"
SS_UID = "urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8"
SS_PID = "urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446"
SS_NODE = "urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd"

# --------------------------------------------------------------------------- the fake peer


class FakeXds:
    """Records requests; answers Success; a stored query returns one SubmissionSet with one document."""

    def __init__(self) -> None:
        self.requests: list[dict] = []

    def answer(self, content_type: str, body: bytes) -> tuple[str, bytes]:
        ctype = parse_content_type(content_type)
        attachments = {}
        if ctype.media_type == "multipart/related":
            message = parse_mtom([body], ctype)
            root = xmlsafe.parse(message.root.read())
            resolve_xop(root, message.attachments)
            attachments = message.attachments
        else:
            root = xmlsafe.parse(body)
        envelope = envelope_from_element(root)
        action = envelope.header_block(qn(WSA, "Action")).text
        documents = {d.get("id"): binary_content(d, attachments).read()
                     for d in envelope.payload.iter(qn(XDS, "Document"))}
        self.requests.append({"content_type": content_type, "envelope": envelope, "action": action,
                              "documents": documents})
        payload = self._payload(action, envelope.payload)
        response = self._envelope(action + "Response", payload, envelope)
        if action.endswith("ProvideAndRegisterDocumentSet-b"):
            mtom = encode_mtom(response, [], action=action + "Response")
            return mtom.content_type, b"".join(mtom.chunks())
        return "application/soap+xml; charset=utf-8", response

    def _payload(self, action: str, request: etree._Element) -> str:
        if action.endswith("RegistryStoredQuery"):
            ss_uid = request.findtext(f".//{{{RIM}}}Value").strip("'")
            return (f'<query:AdhocQueryResponse xmlns:query="urn:oasis:names:tc:ebxml-regrep:xsd:query:3.0" '
                    f'xmlns:rim="{RIM}" status="{STATUS}Success"><rim:RegistryObjectList>'
                    f'<rim:RegistryPackage id="urn:uuid:s" status="urn:oasis:names:tc:ebxml-regrep:StatusType:Approved">'
                    f'<rim:Classification id="urn:uuid:c" classifiedObject="urn:uuid:s" classificationNode="{SS_NODE}"/>'
                    f'<rim:ExternalIdentifier id="urn:uuid:e" registryObject="urn:uuid:s" identificationScheme="{SS_UID}"'
                    f' value="{ss_uid}"/></rim:RegistryPackage>'
                    f'<rim:ExtrinsicObject id="urn:uuid:d" status="urn:oasis:names:tc:ebxml-regrep:StatusType:Approved"/>'
                    f'<rim:Association id="urn:uuid:a" sourceObject="urn:uuid:s" targetObject="urn:uuid:d" '
                    f'associationType="urn:oasis:names:tc:ebxml-regrep:AssociationType:HasMember"/>'
                    f'</rim:RegistryObjectList></query:AdhocQueryResponse>')
        return f'<rs:RegistryResponse xmlns:rs="{RS}" status="{STATUS}Success"/>'

    @staticmethod
    def _envelope(action: str, payload: str, request) -> bytes:
        message_id = request.header_block(qn(WSA, "MessageID")).text
        return (f'<soap:Envelope xmlns:soap="{SOAP12}" xmlns:wsa="{WSA}"><soap:Header>'
                f'<wsa:Action soap:mustUnderstand="true">{action}</wsa:Action>'
                f'<wsa:RelatesTo>{message_id}</wsa:RelatesTo></soap:Header><soap:Body>{payload}</soap:Body>'
                f'</soap:Envelope>').encode()


@pytest.fixture
def fake_xds():
    fake = FakeXds()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers["Content-Length"]))
            content_type, answer = fake.answer(self.headers["Content-Type"], body)
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *_args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield fake
    server.shutdown()
    server.server_close()


@pytest.fixture
def mllp_stub():
    """Answers every framed message with an original-mode AA; records what it got."""
    received: list[bytes] = []

    class Handler(socketserver.BaseRequestHandler):
        def handle(self):
            framer = MLLPFramer(1 << 20)
            while True:
                data = self.request.recv(65536)
                if not data:
                    return
                for message in framer.feed(data):
                    received.append(message)
                    control = parse_hl7(message).get("MSH-10")
                    ack = f"MSH|^~\\&|REG|X|R|X|20240101||ACK^A01|A{control}|P|2.3.1\rMSA|AA|{control}\r"
                    self.request.sendall(frame(ack.encode()))

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], received
    server.shutdown()
    server.server_close()


# --------------------------------------------------------------------------- a miniature kit


V2_SUBMISSION = f"""<rs:SubmitObjectsRequest xmlns:rs="urn:oasis:names:tc:ebxml-regrep:registry:xsd:2.1">
 <rim:LeafRegistryObjectList xmlns:rim="{RIM21}">
  <rim:ObjectRef id="urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1"/>
  <rim:ExtrinsicObject id="Document01" mimeType="text/plain" objectType="urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1">
   <rim:Name><rim:LocalizedString value="doc"/></rim:Name>
   <rim:ExternalIdentifier identificationScheme="{DE_PID}" value="$patientid$"/>
   <rim:ExternalIdentifier identificationScheme="{DE_UID}" value="Document01"/>
  </rim:ExtrinsicObject>
  <rim:RegistryPackage id="SubmissionSet01">
   <rim:ExternalIdentifier identificationScheme="{SS_UID}" value="SubmissionSet01"/>
   <rim:ExternalIdentifier identificationScheme="{SS_PID}" value="$patientid$"/>
  </rim:RegistryPackage>
  <rim:Classification classifiedObject="SubmissionSet01" classificationNode="{SS_NODE}"/>
  <rim:Association sourceObject="SubmissionSet01" targetObject="Document01" associationType="HasMember"/>
 </rim:LeafRegistryObjectList>
</rs:SubmitObjectsRequest>"""

QUERY = f"""<query:AdhocQueryRequest xmlns:query="urn:oasis:names:tc:ebxml-regrep:xsd:query:3.0">
 <query:ResponseOption returnComposedObjects="true" returnType="LeafClass"/>
 <rim:AdhocQuery xmlns:rim="{RIM}" id="urn:uuid:e8e3cb2c-e39c-46b9-99e4-c12f57260b83">
  <rim:Slot name="$XDSSubmissionSetUniqueId"><rim:ValueList><rim:Value>'$ssuid$'</rim:Value></rim:ValueList></rim:Slot>
 </rim:AdhocQuery></query:AdhocQueryRequest>"""

PLANS = {
    "register": """<TestPlan><Test>90001/register</Test><TestStep id="submit">
  <ExpectedStatus>Success</ExpectedStatus><RegisterTransaction><XDSb/><AssignUuids/>
  <MetadataFile>doc.xml</MetadataFile></RegisterTransaction></TestStep></TestPlan>""",
    "pnr": """<TestPlan><Test>90001/pnr</Test><TestStep id="submit">
  <ExpectedStatus>Success</ExpectedStatus><ProvideAndRegisterTransaction><XDSb/><AssignUuids/>
  <MetadataFile>doc.xml</MetadataFile><Document id="Document01">my_document.txt</Document>
  </ProvideAndRegisterTransaction></TestStep></TestPlan>""",
    "query": """<TestPlan><Test>90001/query</Test><TestStep id="by_ss">
  <ExpectedStatus>Success</ExpectedStatus><StoredQueryTransaction><XDSb/>
  <UseId testdir="../register" step="submit" section="AssignedUids" id="SubmissionSet01" symbol="$ssuid$"/>
  <MetadataFile>query.xml</MetadataFile><ExpectedContents><SSwithOneDoc/><DocApp/></ExpectedContents>
  </StoredQueryTransaction></TestStep>
  <TestStep id="check"><NullTransaction><Assertions><DataRef file="THIS" as="output"/>
  <Assert id="approved">//*[local-name()='ExtrinsicObject']/@status = 'urn:oasis:names:tc:ebxml-regrep:StatusType:Approved'</Assert>
  </Assertions></NullTransaction></TestStep></TestPlan>""",
}


def write_kit(root: Path) -> Path:
    test = root / "testkit" / "tests" / "90001"
    for section, plan in PLANS.items():
        (test / section).mkdir(parents=True)
        (test / section / "testplan.xml").write_text(plan, encoding="utf-8")
    for section in ("register", "pnr"):
        (test / section / "doc.xml").write_text(V2_SUBMISSION, encoding="utf-8")
    (test / "pnr" / "my_document.txt").write_bytes(b"\r\nhello\r\n")
    (test / "query" / "query.xml").write_text(QUERY, encoding="utf-8")
    (test / "index.idx").write_text("register\npnr\nquery\n", encoding="utf-8")
    (test / "collections.txt").write_text("reg\n", encoding="utf-8")
    (test / "readme.txt").write_text("wire test\n", encoding="utf-8")

    failing = root / "testkit" / "tests" / "90002"
    (failing / "a").mkdir(parents=True)
    (failing / "a" / "doc.xml").write_text(V2_SUBMISSION, encoding="utf-8")
    (failing / "a" / "testplan.xml").write_text("""<TestPlan><Test>90002/a</Test>
  <TestStep id="must_fail"><ExpectedStatus>Failure</ExpectedStatus><ExpectedErrorCode>XDSUnknownPatientId</ExpectedErrorCode>
  <RegisterTransaction><XDSb/><MetadataFile>doc.xml</MetadataFile></RegisterTransaction></TestStep>
  <TestStep id="after"><NullTransaction/></TestStep></TestPlan>""", encoding="utf-8")
    (failing / "b").mkdir()
    (failing / "b" / "testplan.xml").write_text("<TestPlan><Test>90002/b</Test><TestStep id='x'><NullTransaction/>"
                                                "</TestStep></TestPlan>", encoding="utf-8")
    (failing / "index.idx").write_text("a\nb\n", encoding="utf-8")
    (failing / "collections.txt").write_text("reg\n", encoding="utf-8")

    unsupported = root / "testkit" / "tests" / "90003"
    unsupported.mkdir(parents=True)
    (unsupported / "testplan.xml").write_text("""<TestPlan><Test>90003</Test><TestStep id="xcq">
  <ExpectedStatus>Success</ExpectedStatus><XCQTransaction><MetadataFile>q.xml</MetadataFile></XCQTransaction>
  </TestStep></TestPlan>""", encoding="utf-8")
    (unsupported / "collections.txt").write_text("reg\n", encoding="utf-8")
    return root


# --------------------------------------------------------------------------- the tests


def test_wire_path_against_a_fake_registry_not_conformance(tmp_path, fake_xds, mllp_stub):
    port, feeds = mllp_stub
    kit = TestKit(write_kit(tmp_path))
    config = RunnerConfig(registry_url=fake_xds.url + "/xds/registry", repository_url=fake_xds.url + "/xds/repository",
                          mllp=("127.0.0.1", port), log_dir=tmp_path / "logs", timeout=30)
    replayer = Replayer(kit, config)
    report = replayer.run(["reg"])

    # Patient identity feed: five ADT^A01 v2.3.1 with PID-3 = the allocated ids, all acknowledged AA.
    assert len(feeds) == 5
    first = parse_hl7(feeds[0])
    assert first.get("MSH-9.1") == "ADT" and first.get("MSH-9.2") == "A01" and first.get("MSH-12") == "2.3.1"
    assert first.segment("PID")[3] == replayer.patients["register"]
    assert [t.outcome for t in report.support] == [PASS] * 5

    by_id = {t.test: t for t in report.tests}
    assert by_id["90001"].outcome == PASS, by_id["90001"]

    assert [r["action"].rsplit(":", 1)[-1] for r in fake_xds.requests] == [
        "RegisterDocumentSet-b", "ProvideAndRegisterDocumentSet-b", "RegistryStoredQuery", "RegisterDocumentSet-b"]
    register, pnr, query = fake_xds.requests[:3]
    # ITI-42: simple SOAP 1.2, WS-Addressing headers, a converted v3 request with the session patient id.
    assert register["action"] == "urn:ihe:iti:2007:RegisterDocumentSet-b"
    assert register["content_type"].startswith("application/soap+xml")
    headers = register["envelope"]
    assert headers.header_block(qn(WSA, "Action")).get(qn(SOAP12, "mustUnderstand")) in ("true", "1")
    assert headers.header_block(qn(WSA, "MessageID")).text.startswith("urn:uuid:")
    assert headers.header_block(qn(WSA, "ReplyTo")).findtext(qn(WSA, "Address")) == WSA_ANONYMOUS
    assert headers.header_block(qn(WSA, "To")).text.endswith("/xds/registry")
    submit = headers.payload
    assert submit.tag == qn(LCM, "SubmitObjectsRequest")
    assert not submit.findall(f".//{{{RIM}}}ObjectRef")
    pids = {e.get("value") for e in submit.iter(qn(RIM, "ExternalIdentifier")) if e.get("identificationScheme") == DE_PID}
    assert pids == {replayer.patients["register"]}

    # ITI-41: MTOM multipart/related with the document as an XOP part, bytes intact, id = the assigned uuid.
    assert pnr["action"] == "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b"
    assert pnr["content_type"].startswith("multipart/related")
    assert pnr["envelope"].payload.tag == qn(XDS, "ProvideAndRegisterDocumentSetRequest")
    (doc_id, content), = pnr["documents"].items()
    assert content == b"\r\nhello\r\n"
    extrinsic = pnr["envelope"].payload.find(f".//{{{RIM}}}ExtrinsicObject")
    assert doc_id == extrinsic.get("id") and doc_id.startswith("urn:uuid:")

    # ITI-18: the SubmissionSet uniqueId allocated in section "register" reached the query through UseId.
    assert query["action"] == "urn:ihe:iti:2007:RegistryStoredQuery"
    ss_uid = next(e.get("value") for e in submit.iter(qn(RIM, "ExternalIdentifier"))
                  if e.get("identificationScheme") == SS_UID)
    assert query["envelope"].payload.findtext(f".//{{{RIM}}}Value") == f"'{ss_uid}'"

    # Logs on disk, in the TestResults shape the assertions read.
    log = etree.parse(str(tmp_path / "logs" / "90001" / "register" / "log.xml")).getroot()
    assert log.find("TestStep/RegisterTransaction/AssignedUids/Assign[@symbol='SubmissionSet01']").get("id") == ss_uid
    assert log.find("TestStep/RegisterTransaction/Result")[0].tag == qn(RS, "RegistryResponse")
    assert (tmp_path / "logs" / "15817" / "pif" / "log.xml").is_file()


def test_failures_and_unsupported_steps_are_reported_with_reasons(tmp_path, fake_xds, mllp_stub):
    port, _feeds = mllp_stub
    kit = TestKit(write_kit(tmp_path))
    config = RunnerConfig(registry_url=fake_xds.url, repository_url=fake_xds.url, mllp=("127.0.0.1", port))
    report = Replayer(kit, config).run(["reg"], tests=["90002", "90003"])
    by_id = {t.test: t for t in report.tests}
    assert set(by_id) == {"90002", "90003"}

    failed = by_id["90002"]
    first, after = failed.sections[0].steps
    assert first.outcome == FAIL and first.actual_status == "Success"
    assert any("expected status Failure, got Success" in r for r in first.reasons)
    assert any("expected error code XDSUnknownPatientId" in r for r in first.reasons)
    assert after.outcome == NOT_RUN
    assert failed.sections[1].outcome == NOT_RUN  # a failed section stops the test, as in the toolkit

    unsupported = by_id["90003"].sections[0].steps[0]
    assert unsupported.outcome == NOT_SUPPORTED
    assert "XCQTransaction is not supported" in unsupported.reasons[0]


def test_without_mllp_the_feed_is_reported_not_supported(tmp_path, fake_xds):
    kit = TestKit(write_kit(tmp_path))
    config = RunnerConfig(registry_url=fake_xds.url, repository_url=fake_xds.url)
    report = Replayer(kit, config).run(["reg"], tests=["90003"])
    assert {t.outcome for t in report.support} == {NOT_SUPPORTED}
    assert "no --mllp" in report.support[0].sections[0].steps[0].reasons[0]


def test_cli_writes_json_and_junit_reports(tmp_path, fake_xds, mllp_stub, capsys):
    port, _feeds = mllp_stub
    write_kit(tmp_path)
    parser = argparse.ArgumentParser()
    add_conformance_command(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["conformance", "nist", str(tmp_path), "--registry", fake_xds.url, "--repository",
                              fake_xds.url, "--mllp", f"127.0.0.1:{port}", "--collections", "reg",
                              "--report-json", str(tmp_path / "r.json"), "--junit", str(tmp_path / "r.xml")])
    assert args.run(args) == 1  # 90002 fails and 90003 is not supported
    out = capsys.readouterr().out
    assert "reg      tests 1/3 pass" in out
    assert "FAIL" in out and "NOT SUPPORTED" in out

    data = json.loads((tmp_path / "r.json").read_text())
    assert data["collections"]["reg"] == ["90001", "90002", "90003"]
    outcomes = {t["test"]: t["outcome"] for t in data["tests"]}
    assert outcomes == {"90001": PASS, "90002": FAIL, "90003": NOT_SUPPORTED}
    step = data["tests"][1]["sections"][0]["steps"][0]
    assert step["expected_status"] == ["Failure"] and step["actual_status"] == "Success" and step["reasons"]

    junit = etree.parse(str(tmp_path / "r.xml")).getroot()
    suite = junit.find("testsuite[@name='nist.90002']")
    assert suite.get("failures") == "1" and suite.get("skipped") == "2"
    assert junit.find("testsuite[@name='nist.90003']/testcase/skipped").get("message").startswith("not supported")


def test_cli_usage_errors_exit_2(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_conformance_command(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["conformance", "nist", str(tmp_path), "--registry", "http://x", "--repository",
                              "http://y"])
    assert args.run(args) == 2
    assert "no NIST test kit" in capsys.readouterr().err
