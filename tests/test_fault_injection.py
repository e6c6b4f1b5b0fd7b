"""Issue 5, fault injection: the real ``serve`` is SIGKILLed under a load of ITI-41 submissions (HTTP), ITI-8 feeds
(python-hl7's MLLP client) and incoming audit messages (octet-counted syslog over TCP), then restarted on the same
data directory and database. Afterwards:

- every acknowledged submission is complete in the registry and the repository, and no submission, acknowledged
  or not, is visible in part (its submission set and all its entries and documents, or nothing);
- every acknowledged feed's patient identifier is stored;
- every audit record in the outbox at the kill is delivered to the repository exactly once after the restart;
- no audit record is stored twice (idempotency key, and each syslog message sent once is stored at most once).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field

import hl7
import requests
from hl7.client import MLLPClient
from lxml import etree
from sqlalchemy import select

from ihe_engine.audit import repository as arr
from ihe_engine.audit.emission import LOCAL_QUEUE, syslog_message
from ihe_engine.audit.tables import AuditRecordRow
from ihe_engine.identity.tables import PatientIdentifier
from ihe_engine.storage import UnitOfWork
from ihe_engine.storage.models import QueueItem
from ihe_engine.xds import constants as c
from ihe_engine.xds.registry.tables import ObjectKind, XdsObject
from ihe_engine.xds.repository import DEFAULT_REPOSITORY_UNIQUE_ID
from ihe_engine.xds.repository.tables import RepositoryDocument
from serving import start_engine
from test_audit_emission import patient_record
from xds_submissions import DOMAIN, Doc, provide_request, retrieve_request
from xds_testing import feed_patients
from xua_testing import envelope

ITI41 = "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b"
ITI43 = "urn:ihe:iti:2007:RetrieveDocumentSet"
SUCCESS = b'status="urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success"'
IPP = "IPP&1.2.250.1.71.1&ISO"
LOAD_SECONDS = 2.5  # how long the clients run before the kill (load duration, never asserted on)
WAIT = 45  # seconds: an upper bound for waits, never asserted on


@dataclass
class Submission:
    set_unique_id: str
    document_ids: list[str]
    sha1s: dict[str, str]
    contents: list[bytes]


@dataclass
class Load:
    """What the clients sent and what the engine acknowledged, filled by the client threads."""

    stop: threading.Event = field(default_factory=threading.Event)
    submitted: list[Submission] = field(default_factory=list)
    acknowledged: list[Submission] = field(default_factory=list)
    fed: list[str] = field(default_factory=list)
    acknowledged_feeds: list[str] = field(default_factory=list)
    syslog_sent: list[str] = field(default_factory=list)
    queued_before_kill: list[bytes] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


# ---- clients ------------------------------------------------------------------------------------------------

def submission_set_unique_id(request: etree._Element) -> str:
    return next(identifier.get("value") for identifier in request.iter("{*}ExternalIdentifier")
                if identifier.get("identificationScheme") == c.SS_UNIQUE_ID)


def provide_documents(engine, patient: str, load: Load) -> None:
    url = engine.url("xds-repository")
    with requests.Session() as http:
        while not load.stop.is_set():
            docs = [Doc(f"fault injection {uuid.uuid4().hex}".encode() * 20) for _ in range(3)]
            request = provide_request(docs, pid=patient)
            submission = Submission(submission_set_unique_id(request), [d.unique_id for d in docs],
                                    {d.unique_id: d.sha1 for d in docs}, [d.content for d in docs])
            load.submitted.append(submission)
            try:
                answer = http.post(url, data=envelope(ITI41, request), timeout=WAIT,
                                   headers={"Content-Type": "application/soap+xml; charset=utf-8"})
            except requests.RequestException:
                return  # the engine was killed
            if answer.status_code == 200 and SUCCESS in answer.content:
                load.acknowledged.append(submission)
            else:
                load.errors.append(f"ITI-41 refused: {answer.status_code} {answer.text[:500]}")
                return


def feed_message(number: int, patient: str) -> str:
    return "\r".join([f"MSH|^~\\&|FAULT|INJECT|ENGINE|SITE|20240101120000||ADT^A01^ADT_A01|FI{number}-"
                      f"{uuid.uuid4().hex[:8]}|P|2.5", "EVN||2024",
                      f"PID|1||{patient}^^^{IPP}^PI||FAULT^INJECTION{number}^^^^^L||19800101|F", "PV1||O"])


def feed_patients_over_mllp(engine, load: Load) -> None:
    host, port = engine.host_port("mllp")
    number = 0
    try:
        with MLLPClient(host, port) as client:
            client.socket.settimeout(WAIT)
            while not load.stop.is_set():
                number += 1
                patient = f"FI8-{uuid.uuid4().hex[:10]}"
                load.fed.append(patient)
                ack = hl7.parse(read_mllp_answer(client, feed_message(number, patient)))
                if str(ack.segment("MSA")[1]) != "AA":
                    load.errors.append(f"ITI-8 not accepted: {ack}")
                    return
                load.acknowledged_feeds.append(patient)
    except (OSError, ConnectionError):
        return  # the engine was killed


def read_mllp_answer(client: MLLPClient, text: str) -> str:
    received = client.send_message(text)
    while not received.endswith(b"\x1c\x0d"):
        more = client.socket.recv(65536)
        if not more:
            raise ConnectionError("engine closed the MLLP connection")
        received += more
    return received[1:-2].decode()


def send_audit_messages(engine, load: Load) -> None:
    host, port = engine.host_port("audit-tcp")
    try:
        with socket.create_connection((host, port), timeout=WAIT) as stream:
            number = 0
            while not load.stop.is_set():
                number += 1
                marker = f"SYSLOG-{uuid.uuid4().hex[:12]}"
                record = patient_record(number)
                record = dataclasses.replace(record, objects=(
                    dataclasses.replace(record.objects[0], object_id=marker),))
                message = syslog_message(record, source_id="sender.test", enterprise_site_id=None,
                                         hostname="sender.test", process_id="77")
                load.syslog_sent.append(marker)
                stream.sendall(str(len(message)).encode() + b" " + message)
                time.sleep(0.002)
    except OSError:
        return  # the engine was killed


# ---- the store, read directly -------------------------------------------------------------------------------

def outbox_keys(database) -> list[bytes]:
    """Idempotency keys of the local audit outbox rows still to deliver (the key leads the payload)."""
    with database.engine.connect() as connection:
        payloads = connection.execute(select(QueueItem.payload).where(
            QueueItem.queue == LOCAL_QUEUE, QueueItem.done_at.is_(None))).scalars()
        return [bytes(payload).partition(b" ")[0] for payload in payloads]


def stored_audit_keys(database) -> list[str]:
    with database.engine.connect() as connection:
        return list(connection.execute(select(AuditRecordRow.idempotency_key).where(
            AuditRecordRow.idempotency_key.is_not(None))).scalars())


def stored_syslog_raws(database) -> list[bytes]:
    with database.engine.connect() as connection:
        return [bytes(raw) for raw in connection.execute(select(AuditRecordRow.raw).where(
            AuditRecordRow.transport == "tcp")).scalars()]


def stored_local_raws(database) -> list[bytes]:
    """The records this engine emitted and delivered to its own repository (they carry an idempotency key)."""
    with database.engine.connect() as connection:
        return [bytes(raw) for raw in connection.execute(select(AuditRecordRow.raw).where(
            AuditRecordRow.idempotency_key.is_not(None))).scalars()]


def registry_unique_ids(database, kind: str) -> set[str]:
    with database.engine.connect() as connection:
        return set(connection.execute(select(XdsObject.unique_id).where(XdsObject.kind == kind)).scalars())


def repository_hashes(database) -> dict[str, str]:
    with database.engine.connect() as connection:
        return dict(connection.execute(select(RepositoryDocument.document_unique_id, RepositoryDocument.sha1)).all())


def stored_feed_ids(database) -> set[str]:
    with database.engine.connect() as connection:
        return set(connection.execute(select(PatientIdentifier.value).where(
            PatientIdentifier.universal_id == "1.2.250.1.71.1")).scalars())


def assert_retrievable(engine, submissions: list[Submission]) -> None:
    """ITI-43 hands out every acknowledged document's content after the restart (its blob survived too)."""
    pairs = [(DEFAULT_REPOSITORY_UNIQUE_ID, d) for submission in submissions for d in submission.document_ids]
    answer = requests.post(engine.url("xds-repository"), data=envelope(ITI43, retrieve_request(*pairs)),
                           timeout=WAIT, headers={"Content-Type": "application/soap+xml; charset=utf-8"})
    assert answer.status_code == 200, answer.text[:2000]
    assert SUCCESS in answer.content, answer.content[:2000]
    for submission in submissions:
        for content in submission.contents:
            assert content in answer.content


def wait_until(predicate, what: str, pause: float = 0.1):
    """The predicate's first true value (a loop guard, not a timing assertion)."""
    deadline = time.monotonic() + WAIT
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting: {what}")
        time.sleep(pause)
    return value


# ---- the test -----------------------------------------------------------------------------------------------

def run_load_and_kill(engine, database, patient: str) -> Load:
    load = Load()
    clients = [threading.Thread(target=target, args=args, daemon=True) for target, args in (
        (provide_documents, (engine, patient, load)), (provide_documents, (engine, patient, load)),
        (feed_patients_over_mllp, (engine, load)), (send_audit_messages, (engine, load)))]
    for client in clients:
        client.start()
    load.stop.wait(LOAD_SECONDS)
    load.queued_before_kill = wait_until(lambda: outbox_keys(database), "audit records in the outbox", pause=0.002)
    os.kill(engine.process.pid, signal.SIGKILL)  # mid-load: requests in flight, audit records not yet delivered
    engine.process.wait(WAIT)
    load.stop.set()
    for client in clients:
        client.join(WAIT)
        assert not client.is_alive(), "a client thread hung after the kill"
    return load


def test_acknowledged_work_survives_a_sigkill_under_load(database, tmp_path):
    patient = f"FI41-{uuid.uuid4().hex[:8]}^^^&{DOMAIN}&ISO"
    feed_patients(database, patient)
    args = ("--affinity-domain", DOMAIN, "--db-url", database.engine.url.render_as_string(hide_password=False))
    engine = start_engine(tmp_path / "data", *args)
    try:
        load = run_load_and_kill(engine, database, patient)
    finally:
        if engine.process.poll() is None:
            engine.process.kill()
    assert not load.errors, load.errors
    assert load.acknowledged and load.acknowledged_feeds and load.syslog_sent, "the load did not run"
    queued_at_kill = outbox_keys(database)

    restarted = start_engine(tmp_path / "data", *args)
    try:
        wait_until(lambda: not outbox_keys(database), "the outbox left by the killed engine is delivered")
        assert_audit_delivered_once(database, load.queued_before_kill + queued_at_kill)
        assert_submissions_whole(database, load)
        assert set(load.acknowledged_feeds) <= stored_feed_ids(database)
        assert_retrievable(restarted, load.acknowledged)
        assert_incoming_audit_stored_at_most_once(database, load.syslog_sent)
        assert_acknowledged_work_audited(database, load)
    finally:
        restarted.stop()


def assert_audit_delivered_once(database, queued: list[bytes]) -> None:
    """Records seen queued just before the kill (perhaps delivered by then) or still queued after it."""
    delivered = stored_audit_keys(database)
    assert len(delivered) == len(set(delivered)), "an audit record was stored twice"
    assert {key.decode() for key in queued} <= set(delivered)
    with UnitOfWork(database.sessions, readonly=True) as uow:
        assert arr.verify(uow.session).intact, "the audit hash chain is broken after the kill"


def assert_acknowledged_work_audited(database, load: Load) -> None:
    """Each acknowledged submission and feed has its audit record (ITI-41 Import naming the SubmissionSet, ITI-8
    naming the patient): the records were queued in the work's own transaction, so the kill could not lose them."""
    raws = b"\n".join(stored_local_raws(database))
    missing_sets = [s.set_unique_id for s in load.acknowledged if s.set_unique_id.encode() not in raws]
    missing_feeds = [patient for patient in load.acknowledged_feeds if patient.encode() not in raws]
    assert not missing_sets, f"acknowledged ITI-41 submissions without their audit record: {missing_sets}"
    assert not missing_feeds, f"acknowledged ITI-8 feeds without their audit record: {missing_feeds}"


def assert_submissions_whole(database, load: Load) -> None:
    entries = registry_unique_ids(database, ObjectKind.DOCUMENT_ENTRY)
    sets = registry_unique_ids(database, ObjectKind.SUBMISSION_SET)
    documents = repository_hashes(database)
    for submission in load.acknowledged:
        assert submission.set_unique_id in sets
        assert set(submission.document_ids) <= entries
        assert {d: documents.get(d) for d in submission.document_ids} == submission.sha1s
    for submission in load.submitted:  # acknowledged or cut by the kill: all of it or nothing
        present = [submission.set_unique_id in sets] + [d in entries for d in submission.document_ids] + \
            [d in documents for d in submission.document_ids]
        assert all(present) or not any(present), f"partial submission visible: {submission}, {present}"


def assert_incoming_audit_stored_at_most_once(database, markers: list[str]) -> None:
    """Syslog has no acknowledgement: a message sent once is stored at most once (and the load did reach it)."""
    raws = stored_syslog_raws(database)
    for marker in markers:
        assert sum(marker.encode() in raw for raw in raws) <= 1, f"{marker} stored twice"
    assert any(markers[0].encode() in raw for raw in raws), "no incoming audit message was stored"
