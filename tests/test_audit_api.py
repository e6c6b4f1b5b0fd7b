"""The Audit Record Repository in the real ``serve``: messages sent by clients this project did not write (util-linux
``logger`` over TCP and UDP, ``openssl s_client`` over TLS, python-hl7's MLLP client for an audited ITI-8), then
found through the FHIR AuditEvent API, the patient-history API and the ``ihe-engine audit`` command; hostile
input stored flagged, never dropped."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from hl7.client import MLLPClient

from serving import start_engine

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("logger") is None, reason="needs util-linux logger (bsdutils)")]

AUDIT_DIR = "oehf-ipf/commons/audit/src/test/resources/audit"
WAIT = 30  # seconds: an upper bound for waits, never asserted on
PIXQUERY_PATIENT = "78106^^^PKLN&2.16.840.1.113883.3.37.4.1.1.2.511.1&ISO"
PDQ_PATIENT = "24^^^MPI&2.16.840.1.113883.3.37.4.1.1.2.1.1&ISO^PI"


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("arr") / "var"
    config = data_dir.parent / "engine.toml"
    config.write_text("[api]\nallow_loopback = true\n")  # the API is closed by default (tests/test_api_access.py)
    engine = start_engine(data_dir, "--config", str(config))
    engine.data_dir = data_dir
    yield engine
    engine.stop()


def sample(corpus_dir: Path, name: str) -> str:
    path = corpus_dir / AUDIT_DIR / name
    if not path.is_file():
        pytest.skip(f"{path} not in the corpus")
    return path.read_text(encoding="utf-8").replace("\n", "")  # logger sends one message per line


def logger(engine, protocol: str, message: str, msgid: str = "IHE+RFC-3881") -> None:
    host, port = engine.host_port("audit-tcp" if protocol == "tcp" else "audit-udp")
    flags = ["--tcp", "--octet-count"] if protocol == "tcp" else ["--udp"]
    subprocess.run(["logger", *flags, "--rfc5424", "--msgid", msgid, "-n", host, "-P", str(port),
                    "--size", "300000", "-t", "test-sender", message], check=True, timeout=WAIT)


def get_json(engine, path: str, params: dict | list | None = None) -> tuple[int, dict]:
    base = engine.url("health").rsplit("/health", 1)[0]
    url = f"{base}{path}" + (f"?{urllib.parse.urlencode(params, doseq=True)}" if params else "")
    try:
        with urllib.request.urlopen(url, timeout=WAIT) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def wait_for_events(engine, params, count: int = 1) -> list[dict]:
    deadline = time.monotonic() + WAIT
    while True:
        status, bundle = get_json(engine, "/fhir/AuditEvent", params)
        assert status == 200, bundle
        entries = bundle.get("entry", [])
        if len(entries) >= count:
            return [entry["resource"] for entry in entries]
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {count} AuditEvent(s) matching {params}")
        time.sleep(0.05)


def cli(engine, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ihe_engine.cli", "audit", *args, "--data-dir",
                           str(engine.data_dir)], capture_output=True, text=True, timeout=WAIT)


def test_logger_over_tcp_and_udp_then_fhir_search_and_cli(engine, corpus_dir):
    logger(engine, "tcp", sample(corpus_dir, "pixquery.xml"))
    logger(engine, "udp", sample(corpus_dir, "pdq.xml"))
    (event,) = wait_for_events(engine, {"patient": PIXQUERY_PATIENT})
    assert event["resourceType"] == "AuditEvent"
    assert event["type"] == {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110112",
                             "display": "Query"}
    assert event["subtype"] == [{"system": "urn:ihe:event-type-code", "code": "ITI-9", "display": "PIX Query"}]
    assert (event["action"], event["outcome"], event["recorded"]) == ("E", "0", "2020-03-19T12:34:06.367000+00:00")
    assert event["agent"][0]["who"]["identifier"]["value"] == "MESA_DEPARTMENT|MESA_PIX_CLIENT"
    assert event["agent"][0]["network"] == {"address": "127.0.0.1", "type": "2"}
    assert event["source"]["observer"]["display"] == "MPI" and event["source"]["site"] == "PI"
    query = event["entity"][0]
    assert query["role"]["code"] == "24" and query["query"].startswith("TVNI")  # base64 of "MSH"
    assert "extension" not in event  # stored valid

    (pdq,) = wait_for_events(engine, {"patient": PDQ_PATIENT, "date": ["ge2020-03-19", "le2020-03-19"]})
    assert pdq["subtype"][0]["code"] == "ITI-21"
    assert get_json(engine, "/fhir/AuditEvent", {"patient": PDQ_PATIENT, "date": "ge2020-03-20"})[1].get(
        "entry", []) == []
    assert wait_for_events(engine, {"type": "http://dicom.nema.org/resources/ontology/DCM|110112",
                                    "agent": "MESA_DEPARTMENT|MESA_PIX_CLIENT"}, 1)
    status, read = get_json(engine, f"/fhir/AuditEvent/{event['id']}")
    assert status == 200 and read["id"] == event["id"]

    found = cli(engine, "search", "--patient", PIXQUERY_PATIENT)
    assert found.returncode == 0 and found.stdout.count("\n") == 1 and "110112 Query" in found.stdout
    as_json = cli(engine, "search", "--event", "110112", "--since", "2020-03-19", "--until", "2020-03-19",
                  "--json")
    assert {json.loads(line)["id"] for line in as_json.stdout.splitlines()} >= {event["id"], pdq["id"]}
    verified = cli(engine, "verify")
    assert verified.returncode == 0 and "intact" in verified.stdout


def test_an_iti8_feed_is_audited_into_the_local_repository(engine):
    patient = "ARR-0001^^^&1.2.250.1.213.1.4.8&ISO"
    message = (f"MSH|^~\\&|LAB_APP|LABO|ENGINE|HOPITAL|20260101120000||ADT^A01^ADT_A01|ARR-FEED-1|P|2.5\r"
               f"EVN||20260101120000\rPID|||{patient}||MARTIN^LEA||19800101|F\rPV1||O\r")
    host, port = engine.host_port("mllp")
    with MLLPClient(host, port) as client:
        client.socket.settimeout(WAIT)
        answer = client.send_message(message)
        while not answer.endswith(b"\x1c\x0d"):
            answer += client.socket.recv(4096)
    assert b"MSA|AA|ARR-FEED-1" in answer
    (event,) = wait_for_events(engine, {"patient": patient})
    assert (event["type"]["code"], event["action"], event["subtype"][0]["code"]) == ("110110", "C", "ITI-8")
    assert event["agent"][0]["who"]["identifier"]["value"] == "LABO|LAB_APP"
    status, history = get_json(engine, "/api/audit/patient-history", {"patient": patient})
    assert status == 200
    assert [(e["access"], e["user"], e["transactions"]) for e in history["entries"]] == [
        ("write", "LABO|LAB_APP", ["ITI-8"])]
    shown = cli(engine, "history", "--patient", patient)
    assert shown.returncode == 0 and "write" in shown.stdout and "LABO|LAB_APP" in shown.stdout


def test_hostile_input_is_stored_flagged(engine, corpus_dir):
    big_patient = "BIG-1^^^&1.2.250.1&ISO"
    big = sample(corpus_dir, "pixfeed.xml").replace(
        "7627199^^^HZLN&amp;2.16.840.1.113883.3.37.4.1.1.2.411.1&amp;ISO", "BIG-1^^^&amp;1.2.250.1&amp;ISO"
    ).replace('originalText="Patient Number"/>',
              'originalText="Patient Number"/><ParticipantObjectName>' + "N" * 70_000 + "</ParticipantObjectName>",
              1)
    assert len(big) > 64 * 1024
    logger(engine, "tcp", big)
    (event,) = wait_for_events(engine, {"patient": big_patient})
    assert "extension" not in event and len(event["entity"][0]["name"]) == 70_000

    logger(engine, "tcp", "<AuditMessage><EventIdentification>not closed", msgid="IHE+RFC-3881")
    logger(engine, "udp", '<!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;">]>'
                          "<AuditMessage>&b;</AuditMessage>")
    host, port = engine.host_port("audit-tcp")
    with socket.create_connection((host, port), timeout=WAIT) as raw:  # LF framing: refused, connection closed
        raw.sendall(b"<85>1 - - - - - - not octet counted\n")
        raw.settimeout(WAIT)
        assert raw.recv(10) == b""
    deadline = time.monotonic() + WAIT
    while True:
        found = cli(engine, "search", "--invalid")
        if found.stdout.count("INVALID") >= 3 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    lines = found.stdout.splitlines()
    assert any("not well-formed" in line for line in lines), found.stdout
    assert any("document type declaration" in line for line in lines), found.stdout
    assert any("non-transparent" in line for line in lines), found.stdout
    assert cli(engine, "verify").returncode == 0


@pytest.mark.parametrize("params,status,where", [
    ({"_count": "abc"}, 400, "_count"), ({"date": "yesterday"}, 400, "date"), ({"outcome": "3"}, 400, "outcome"),
])
def test_bad_search_parameters_get_an_operation_outcome(engine, params, status, where):
    code, body = get_json(engine, "/fhir/AuditEvent", params)
    assert code == status and body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["expression"] == [where]


def test_unknown_audit_event_and_missing_patient(engine):
    assert get_json(engine, "/fhir/AuditEvent/999999999")[0] == 404
    code, body = get_json(engine, "/api/audit/patient-history")
    assert code == 400 and body["issue"][0]["expression"] == ["patient"]


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_tls_ingest_with_openssl_s_client(tmp_path, pki, corpus_dir):
    engine = start_engine(tmp_path / "var", "--tls-cert", str(pki.server.cert), "--tls-key", str(pki.server.key),
                          "--tls-ca", str(pki.ca))
    engine.data_dir = tmp_path / "var"
    try:
        xml = sample(corpus_dir, "pixquery.xml").encode()
        message = b"<85>1 2026-11-22T10:00:00Z client.test s_client 1 IHE+RFC-3881 - " + xml
        host, port = engine.host_port("audit-tls")
        subprocess.run(["openssl", "s_client", "-connect", f"{host}:{port}", "-quiet", "-no_ign_eof",
                        "-CAfile", str(pki.ca), "-cert", str(pki.client.cert), "-key", str(pki.client.key)],
                       input=b"%d %b" % (len(message), message), capture_output=True, timeout=WAIT,
                       env={**os.environ, "OPENSSL_CONF": os.devnull})
        deadline = time.monotonic() + WAIT
        while True:
            found = cli(engine, "search", "--patient", PIXQUERY_PATIENT)
            if found.stdout or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert "110112 Query" in found.stdout and "via=tls:" in found.stdout
    finally:
        engine.stop()
