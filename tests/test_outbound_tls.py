"""ITI-19 on every outbound client (ITI-10 over MLLP, ITI-46 over https, audit records to a ``tls://`` ARR), against
remote systems this project did not write: Python's standard ``ssl`` servers and Debian's ``openssl s_server``.

Each peer demands a client certificate. Delivered: the peer verified our node certificate and got the message.
Refused (a server certificate from an unknown CA, expired, revoked by the configured CRL, for another name with
the name check on, outside the pins, a server speaking only TLS 1.1): nothing reaches the peer, the item stays
queued for a retry with the reason, and exactly one Security Alert (110113) names the peer and the reason.
A Security Alert about the audit channel itself is recorded locally, never queued back to a remote ARR.
On SQLite and PostgreSQL.
"""

from __future__ import annotations

import shutil
import socket
import ssl
from dataclasses import dataclass, replace
from types import SimpleNamespace
from typing import Callable

import pytest
from lxml import etree
from sqlalchemy import select
from twisted.internet.threads import blockingCallFromThread
from twisted.python.threadpool import ThreadPool

from ihe_engine.audit import SECURITY_ALERT, AuditHook, AuditRecord
from ihe_engine.audit.emission import (AuditSettings, Destination, OutboxSink, _audit_channel_alert,
                                       is_audit_channel_alert)
from ihe_engine.audit.tables import AuditRecordRow
from ihe_engine.config import Settings
from ihe_engine.errors import ConfigurationError
from ihe_engine.identity.cx import CX
from ihe_engine.identity.hl7v3.build import update_notification
from ihe_engine.identity.hl7v3.iti46 import PixV3Consumer, PixV3UpdateSender, start_sender
from ihe_engine.identity.hl7v3.iti46 import queue_name as iti46_queue
from ihe_engine.identity.hl7v3.model import InstanceId
from ihe_engine.identity.iti10 import PixConsumer, PixUpdateSender, build_a31
from ihe_engine.identity.iti10 import queue_name as iti10_queue
from ihe_engine.plugins import create_plugin_manager, hookimpl
from ihe_engine.runtime import Runtime
from ihe_engine.storage.blobstore import BlobStore
from ihe_engine.storage.models import QueueItem
from ihe_engine.transport.syslog_twisted import SyslogSender
from ihe_engine.transport.tls import TLSConfig, https_adapter
from tls_peers import HTTPSConsumer, MLLPConsumer, OpenSSLServer, wait_until

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")

X, Y = "1.2.250.1.71.1.2.1", "1.2.250.1.71.1.2.2"
NODE = "node.test"
AUDIT_QUEUE = "atna-out:tls-test"
MARKER = "ZZOUTBOUNDMARKERZZ"  # a patient id that appears in whatever we send, so a peer's output can be searched


class CapturingSink:
    def __init__(self) -> None:
        self.records: list[AuditRecord] = []

    @hookimpl
    def ihe_audit_record(self, record: AuditRecord) -> None:
        self.records.append(record)

    def alerts(self) -> list[AuditRecord]:
        return [record for record in self.records if record.event_id == SECURITY_ALERT]


@pytest.fixture
def sink() -> CapturingSink:
    return CapturingSink()


@pytest.fixture
def runtime(database, reactor_thread, tmp_path, sink):
    plugins = create_plugin_manager(load_entry_points=False)
    plugins.register(sink)
    pool = ThreadPool(minthreads=1, maxthreads=4, name="test-outbound-tls")
    pool.start()
    yield Runtime(settings=Settings(data_dir=tmp_path), db=database, audit=AuditHook(plugins),
                  blobs=BlobStore(tmp_path / "blobs"), reactor=reactor_thread, threadpool=pool, process_id="p1",
                  node_name=NODE)
    pool.stop()


@pytest.fixture
def node_tls(pki) -> TLSConfig:
    """This node's ITI-19 configuration: its certificate is the test PKI's client certificate."""
    return TLSConfig(cert=pki.client.cert, key=pki.client.key, ca=pki.ca)


def queued(runtime: Runtime, queue: str) -> list[QueueItem]:
    with runtime.db.sessions() as session:
        return list(session.scalars(select(QueueItem).where(QueueItem.queue == queue, QueueItem.done_at.is_(None))))


def put(runtime: Runtime, queue: str, payload: bytes) -> None:
    with runtime.uow() as uow:
        uow.queue.put(queue, payload)
        uow.commit()


# ------------------------------------------------------------------------------------------ the three senders


@dataclass
class Outbound:
    """One outbound client driven for one attempt at a time: ``attempt()`` sends what is queued once."""

    queue: str
    attempt: Callable[[], object]
    stop: Callable[[], object]


def iti10_sender(runtime: Runtime, config: TLSConfig, port: int) -> Outbound:
    consumer = PixConsumer(name="dpi", host="127.0.0.1", port=port, tls=True)
    put(runtime, iti10_queue(consumer), build_a31([CX(id=MARKER, universal_id=X, universal_id_type="ISO"),
                                                   CX(id="B2", universal_id=Y, universal_id_type="ISO")],
                                                  consumer=consumer, sending_application="ENGINE",
                                                  sending_facility="SITE"))
    sender = PixUpdateSender(runtime, [consumer], tls_config=config, retry_backoff=60, answer_timeout=10)
    return Outbound(iti10_queue(consumer), lambda: blockingCallFromThread(runtime.reactor, sender.pump),
                    lambda: blockingCallFromThread(runtime.reactor, sender.stop))


def iti46_sender(runtime: Runtime, config: TLSConfig, port: int, path: str = "/pix-consumer") -> Outbound:
    consumer = PixV3Consumer(name="dpi-v3", url=f"https://127.0.0.1:{port}{path}")
    message = update_notification([CX(id=MARKER, universal_id=X, universal_id_type="ISO"),
                                   CX(id="B2", universal_id=Y, universal_id_type="ISO")],
                                  receiver=InstanceId(null_flavor="UNK"), sender=InstanceId(null_flavor="UNK"))
    put(runtime, iti46_queue(consumer), etree.tostring(message))
    sender = PixV3UpdateSender(runtime, [consumer], tls_config=config, retry_backoff=60, timeout=10)
    return Outbound(iti46_queue(consumer), lambda: sender.drain(consumer), lambda: None)


def syslog_sender(runtime: Runtime, config: TLSConfig, port: int) -> Outbound:
    """The audit emission's remote sender; its refusals go to the audit hook as the emission wires them."""
    put(runtime, AUDIT_QUEUE, f"<85>1 2026-01-01T00:00:00Z {NODE} ihe-engine p1 IHE+RFC-3881 - {MARKER}".encode())
    sender = SyslogSender(runtime, queue=AUDIT_QUEUE, host="127.0.0.1", port=port, protocol="tls",
                          tls_config=config, retry_backoff=60, connect_timeout=10,
                          on_tls_failure=_audit_channel_alert(runtime, Destination("tls", "127.0.0.1", port)))
    return Outbound(AUDIT_QUEUE, lambda: blockingCallFromThread(runtime.reactor, sender.pump),
                    lambda: blockingCallFromThread(runtime.reactor, sender.stop))


SENDERS = {"ITI-10": iti10_sender, "ITI-46": iti46_sender, "audit-tls": syslog_sender}


# ------------------------------------------------------------------------------------------ delivered


def test_iti10_a31_reaches_a_tls_mllp_consumer_that_requires_our_certificate(runtime, node_tls, pki, sink):
    consumer = MLLPConsumer(pki.server.cert, pki.server.key, pki.ca)
    try:
        outbound = iti10_sender(runtime, replace(node_tls, verify_hostname=True), consumer.port)
        outbound.attempt()
        outbound.stop()
    finally:
        consumer.close()
    [message] = consumer.received
    assert message.startswith(b"MSH|") and b"ADT^A31^ADT_A05" in message and MARKER.encode() in message
    assert consumer.peer_names == ["client.example.test"] and consumer.failed_handshakes == []
    assert queued(runtime, outbound.queue) == []
    [record] = [record for record in sink.records if record.transaction == "ITI-10"]
    assert record.outcome == 0
    assert sink.alerts() == []


def test_iti46_reaches_an_https_consumer_that_requires_our_certificate(runtime, node_tls, pki, sink):
    consumer = HTTPSConsumer(pki.server.cert, pki.server.key, pki.ca)
    try:
        outbound = iti46_sender(runtime, replace(node_tls, verify_hostname=True), consumer.port)
        assert outbound.attempt() == 1
    finally:
        consumer.close()
    [body] = consumer.received
    assert b"PRPA_IN201302UV02" in body and MARKER.encode() in body
    assert consumer.peer_names == ["client.example.test"]
    assert queued(runtime, outbound.queue) == []
    [record] = [record for record in sink.records if record.transaction == "ITI-46"]
    assert record.outcome == 0
    assert sink.alerts() == []


def test_iti46_ignores_a_proxy_in_the_environment(runtime, node_tls, pki, sink, monkeypatch):
    """A proxy would get urllib3's default context (system CAs, no client certificate): the environment is not
    read, so the delivery still goes straight to the consumer with our certificate."""
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    consumer = HTTPSConsumer(pki.server.cert, pki.server.key, pki.ca)
    try:
        outbound = iti46_sender(runtime, node_tls, consumer.port)
        assert outbound.attempt() == 1
    finally:
        consumer.close()
    assert consumer.peer_names == ["client.example.test"]
    assert queued(runtime, outbound.queue) == []


def test_the_https_adapter_refuses_to_go_through_a_proxy(node_tls):
    import requests

    session = requests.Session()
    session.mount("https://", https_adapter(node_tls))
    with pytest.raises(ConfigurationError, match="proxies"):
        session.post("https://127.0.0.1:9/x", data=b"", proxies={"https": "http://127.0.0.1:9"})


def test_audit_records_reach_a_tls_arr_that_requires_our_certificate(runtime, node_tls, pki, sink):
    arr = OpenSSLServer(pki.server.cert, pki.server.key, pki.ca)
    try:
        outbound = syslog_sender(runtime, replace(node_tls, verify_hostname=True), arr.port)
        outbound.attempt()
        wait_until(lambda: MARKER.encode() in arr.output, "the ARR received the record")
        outbound.stop()
    finally:
        output = arr.stop()
    assert b"client.example.test" in output  # s_server verified our certificate and names it
    assert queued(runtime, outbound.queue) == []
    assert sink.alerts() == []


# ------------------------------------------------------------------------------------------ refused


@dataclass(frozen=True)
class Refusal:
    server_credential: str  # attribute of the test PKI the remote server presents
    node_change: dict  # how this node's TLSConfig differs from the default
    server_options: tuple[str, ...]
    words: tuple[str, ...]  # what the reason must say


REFUSALS = {
    "unknown-ca": Refusal("unknown_ca_client", {}, (), ("stranger.example.test", "unknown CA")),
    "expired": Refusal("expired_client", {}, (), ("expired.example.test", "expired")),
    "hostname-mismatch": Refusal("client", {"verify_hostname": True}, (), ("does not match", "127.0.0.1")),
    "pin-mismatch": Refusal("server", {"pinned": "client"}, (), ("pinned fingerprints",)),
    "revoked-with-crl": Refusal("revoked_client", {"crl": True}, (), ("revoked.example.test", "revoked")),
    "tls-1.1-only": Refusal("server", {}, ("-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"), ("TLS 1.2",)),
}


def node_config(node_tls: TLSConfig, pki, change: dict) -> TLSConfig:
    if "pinned" in change:
        return replace(node_tls, pinned_sha256=(getattr(pki, change["pinned"]).sha256,))
    if "crl" in change:
        return replace(node_tls, crl=pki.crl)
    return replace(node_tls, **change)


@pytest.mark.parametrize("case", sorted(REFUSALS))
@pytest.mark.parametrize("kind", sorted(SENDERS))
def test_refused_server_gets_nothing_keeps_the_item_and_raises_one_security_alert(runtime, node_tls, pki, sink,
                                                                                  kind, case):
    refusal = REFUSALS[case]
    credential = getattr(pki, refusal.server_credential)
    server = OpenSSLServer(credential.cert, credential.key, pki.ca, *refusal.server_options)
    try:
        outbound = SENDERS[kind](runtime, node_config(node_tls, pki, refusal.node_change), server.port)
        outbound.attempt()
        outbound.stop()
        wait_until(lambda: server.process.poll() is not None, "s_server saw our connection end")
    finally:
        output = server.stop()
    assert MARKER.encode() not in output and b"POST" not in output, output[-1500:]
    [item] = queued(runtime, outbound.queue)
    assert item.attempts == 1 and item.done_at is None
    [alert] = sink.alerts()
    assert (alert.action, alert.outcome) == ("E", 4)
    assert alert.participants[0].user_id == f"127.0.0.1:{server.port}"
    assert alert.participants[1].user_id == NODE
    for word in refusal.words:
        assert word.lower() in alert.outcome_description.lower(), alert.outcome_description
        assert word.lower() in item.last_error.lower(), item.last_error


@pytest.mark.parametrize("kind", ["ITI-10", "ITI-46"])
def test_a_server_that_does_not_trust_our_certificate_is_a_security_alert(runtime, node_tls, pki, sink, kind):
    """The peer refuses us (its CA bundle does not hold our issuer); under TLS 1.3 it says so after our side of
    the handshake is over, and the refusal is still seen and reported."""
    server = OpenSSLServer(pki.server.cert, pki.server.key, pki.server.cert)  # trusts no CA of ours
    try:
        outbound = SENDERS[kind](runtime, node_tls, server.port)
        outbound.attempt()
        outbound.stop()
    finally:
        output = server.stop()
    assert MARKER.encode() not in output
    [item] = queued(runtime, outbound.queue)
    assert item.attempts == 1 and "refused" in item.last_error, item.last_error
    [alert] = sink.alerts()
    assert alert.participants[0].user_id == f"127.0.0.1:{server.port}"


def test_a_peer_that_refuses_tcp_is_not_a_security_alert(runtime, node_tls, sink):
    """No handshake took place: a retry, but nothing to alert about."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    for kind in sorted(SENDERS):
        outbound = SENDERS[kind](runtime, node_tls, port)
        outbound.attempt()
        outbound.stop()
        [item] = queued(runtime, outbound.queue)
        assert item.attempts == 1
    assert sink.alerts() == []


# ------------------------------------------------------------------------------------------ audit channel alerts


def test_an_alert_about_an_audit_destination_is_queued_locally_only(database, sink):
    """A refused audit channel must not be told about itself (or feed another failing channel) forever."""
    local, arr_a, arr_b = Destination("local"), Destination("tls", "arr-a.test", 6514), Destination("tls", "b", 1)
    outbox = OutboxSink(database, AuditSettings(destinations=(local, arr_a, arr_b)), node_name=NODE, process_id="p1")
    plugins = create_plugin_manager(load_entry_points=False)
    plugins.register(sink)
    runtime = SimpleNamespace(audit=AuditHook(plugins), node_name=NODE)
    _audit_channel_alert(runtime, arr_a)("arr-a.test:6514", "peer certificate refused: it has expired")
    runtime.audit.security_alert(description="ITI-10 to PIX consumer 'dpi' (x:1): expired", peer="x:1", node=NODE)
    channel_alert, other_alert = sink.alerts()
    assert is_audit_channel_alert(channel_alert) and not is_audit_channel_alert(other_alert)
    with database.sessions() as session:
        outbox.write_in(session, [channel_alert, other_alert])
        session.commit()
        queues = [(row.queue, b"expired" in row.payload)
                  for row in session.scalars(select(QueueItem).order_by(QueueItem.id))]
    assert queues == [(local.queue, True), (local.queue, True), (arr_a.queue, True), (arr_b.queue, True)]


# ------------------------------------------------------------------------------------------ configuration


def test_https_consumer_without_node_certificate_is_a_configuration_error(tmp_path):
    consumer = PixV3Consumer(name="dpi-v3", url="https://dpi.example/pix")
    with pytest.raises(ConfigurationError, match="--tls-cert"):
        PixV3UpdateSender(object(), [consumer])
    runtime = SimpleNamespace(settings=Settings(extra={"pixv3_consumers": [
        {"name": "dpi-v3", "url": "https://dpi.example/pix"}]}))
    with pytest.raises(ConfigurationError, match="--tls-cert"):
        start_sender(runtime)


def test_https_adapter_cannot_be_loosened(node_tls, pki):
    import requests

    session = requests.Session()
    session.mount("https://", https_adapter(node_tls))
    with pytest.raises(ConfigurationError, match="verify"):
        session.post("https://127.0.0.1:9/x", data=b"", verify=False)
    with pytest.raises(ConfigurationError, match="cert"):
        session.post("https://127.0.0.1:9/x", data=b"", cert=(str(pki.client.cert), str(pki.client.key)))
    with pytest.raises(ConfigurationError, match="does not exist"):
        https_adapter(replace(node_tls, cert=pki.directory / "missing.pem"))


# ------------------------------------------------------------------------------------------ through serve


def _engine_config(path, *, mllp_port: int, https_url: str, arr_port: int):
    path.write_text(f'[[pix_consumers]]\nname = "dpi"\naddress = "127.0.0.1:{mllp_port}"\ntls = true\n'
                    f'[[pixv3_consumers]]\nname = "dpi-v3"\nurl = "{https_url}"\n'
                    f'[audit]\ndestinations = ["local", "tls://127.0.0.1:{arr_port}"]\n')
    return path


def _start_tls_engine(tmp_path, database, pki, config):
    from serving import start_engine

    return start_engine(tmp_path / "data", "--host", "127.0.0.1", "--config", str(config), "--db-url",
                        database.url.render_as_string(hide_password=False), "--tls-cert", str(pki.server.cert),
                        "--tls-key", str(pki.server.key), "--tls-ca", str(pki.ca))


def _feed_over_mllps(engine, pki, control_id: str) -> bytes:
    context = ssl.create_default_context(cafile=str(pki.ca))
    context.load_cert_chain(str(pki.client.cert), str(pki.client.key))
    message = (f"MSH|^~\\&|SRC|HOSP|ENGINE|SITE|20260101120000||ADT^A01^ADT_A01|{control_id}|P|2.3.1\r"
               f"EVN|A01|20260101120000\rPID|||{MARKER}^^^&{X}&ISO~S2^^^&{Y}&ISO||ALPHA^ALAN||19380224|M\r"
               f"PV1||O\r").encode()
    with context.wrap_socket(socket.create_connection(engine.host_port("mllp"), timeout=15),
                             server_hostname="localhost") as tls:
        tls.sendall(b"\x0b" + message + b"\x1c\x0d")
        answer = b""
        while not answer.endswith(b"\x1c\x0d"):
            answer += tls.recv(65536)
    return answer


@pytest.mark.slow
def test_serve_delivers_a31_iti46_and_audit_over_mutual_tls(tmp_path, database, pki):
    """One feed over mllps; the engine tells an MLLP consumer and an https consumer and ships its audit records
    to a TLS ARR, presenting its node certificate (CN localhost) to each."""
    mllp, https = MLLPConsumer(pki.server.cert, pki.server.key, pki.ca), HTTPSConsumer(pki.server.cert,
                                                                                       pki.server.key, pki.ca)
    arr = OpenSSLServer(pki.server.cert, pki.server.key, pki.ca)
    config = _engine_config(tmp_path / "engine.toml", mllp_port=mllp.port, https_url=https.url, arr_port=arr.port)
    engine = _start_tls_engine(tmp_path, database, pki, config)
    try:
        assert b"MSA|AA|S1" in _feed_over_mllps(engine, pki, "S1")
        wait_until(lambda: mllp.received and https.received, "both consumers were notified")
        wait_until(lambda: MARKER.encode() in arr.output, "the ARR received an audit record", seconds=30)
    finally:
        engine.stop()
        mllp.close()
        https.close()
        output = arr.stop()
    assert MARKER.encode() in mllp.received[0] and MARKER.encode() in https.received[0]
    assert mllp.peer_names == ["localhost"] and https.peer_names == ["localhost"]
    assert b"CN = localhost" in output or b"CN=localhost" in output, output[:3000]
    assert not [line for line in engine.output if "audit event=110113" in line], "\n".join(engine.output)


@pytest.mark.slow
def test_serve_alerts_on_a_refused_arr_without_feeding_the_alert_back_to_it(tmp_path, database, pki):
    """The remote ARR presents an expired certificate: each attempt is a Security Alert, recorded by the local
    repository, and none of them is queued to the refused ARR."""
    mllp, https = MLLPConsumer(pki.server.cert, pki.server.key, pki.ca), HTTPSConsumer(pki.server.cert,
                                                                                       pki.server.key, pki.ca)
    arr = OpenSSLServer(pki.expired_client.cert, pki.expired_client.key, pki.ca, naccept=1000)
    config = _engine_config(tmp_path / "engine.toml", mllp_port=mllp.port, https_url=https.url, arr_port=arr.port)
    engine = _start_tls_engine(tmp_path, database, pki, config)
    try:
        assert b"MSA|AA|R1" in _feed_over_mllps(engine, pki, "R1")
        wait_until(lambda: [line for line in engine.output if "audit event=110113" in line],
                   "a Security Alert about the ARR", seconds=30)
        wait_until(lambda: mllp.received and https.received, "both consumers were notified")
    finally:
        engine.stop()
        mllp.close()
        https.close()
        output = arr.stop()
    assert MARKER.encode() not in output
    arr_queue = Destination("tls", "127.0.0.1", arr.port).queue
    with database.sessions() as session:
        to_arr = [bytes(row.payload) for row in session.scalars(select(QueueItem).where(QueueItem.queue == arr_queue))]
        alerts = session.execute(select(AuditRecordRow.raw).where(AuditRecordRow.event_code == "110113")).all()
    assert to_arr and all(b"audit destination" not in payload for payload in to_arr)
    assert any(MARKER.encode() in payload for payload in to_arr)  # the feed's records wait for the ARR
    assert alerts and all(b"expired" in bytes(raw) and b"audit destination tls://" in bytes(raw) for (raw,) in alerts)


@pytest.mark.slow
def test_serve_refuses_to_start_with_an_https_consumer_and_no_node_certificate(tmp_path):
    import subprocess
    import sys

    config = tmp_path / "engine.toml"
    config.write_text('[[pixv3_consumers]]\nname = "dpi-v3"\nurl = "https://127.0.0.1:9/pix-consumer"\n')
    process = subprocess.Popen([sys.executable, "-m", "ihe_engine.cli", "serve", "--data-dir", str(tmp_path / "data"),
                                "--http-port", "0", "--mllp-port", "0", "--audit-tcp-port", "0", "--audit-udp-port",
                                "0", "--config", str(config)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    try:
        lines = []
        for line in process.stdout:  # ends with the process, or at the error line
            lines.append(line)
            if "configuration error" in line or line.strip() == "ready":
                break
        exit_code = process.wait(timeout=30)  # it leaves by itself: no pool thread keeps it alive
    finally:
        process.kill()
        process.wait()
    assert "configuration error: PIXv3 consumer 'dpi-v3' is reached over https" in lines[-1], lines
    assert exit_code != 0
