"""``serve`` with --tls-*: every listener demands a client certificate; refusals become Security Alert audits."""

import json
import socket
import ssl
import time
import urllib.request

import pytest

from serving import start_engine

pytestmark = pytest.mark.slow


def client_context(pki, credential=None):
    context = ssl.create_default_context(cafile=str(pki.ca))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if credential is not None:
        context.load_cert_chain(str(credential.cert), str(credential.key))
    return context


@pytest.fixture
def tls_engine(tmp_path, pki):
    engine = start_engine(tmp_path / "var", "--host", "127.0.0.1", "--tls-cert", str(pki.server.cert),
                          "--tls-key", str(pki.server.key), "--tls-ca", str(pki.ca))
    yield engine
    engine.stop()


def test_good_client_reaches_https_and_mllps(tls_engine, pki):
    assert tls_engine.url("health").startswith("https://")
    assert tls_engine.url("mllp").startswith("mllps://")
    with urllib.request.urlopen(tls_engine.url("health").replace("127.0.0.1", "localhost"),
                                context=client_context(pki, pki.client), timeout=10) as answer:
        assert json.loads(answer.read())["status"] == "ok"

    host, port = tls_engine.host_port("mllp")
    with client_context(pki, pki.client).wrap_socket(socket.create_connection((host, port), timeout=10),
                                                     server_hostname="localhost") as tls:
        tls.sendall(b"\x0bMSH|^~\\&|LAB|HOSP|E|R|20260101||ZZZ^Z99|T1|P|2.5\r\x1c\x0d")
        answer = b""
        while not answer.endswith(b"\x1c\x0d"):
            answer += tls.recv(65536)
    assert b"MSA|AR|T1" in answer


@pytest.mark.parametrize("listener", ["health", "mllp", "audit-tls"])
def test_client_without_certificate_is_refused_and_audited(tls_engine, pki, listener):
    host, port = tls_engine.host_port(listener)
    context = client_context(pki, None)
    context.maximum_version = ssl.TLSVersion.TLSv1_2  # under 1.2 the refusal is visible in the handshake itself
    with pytest.raises((ssl.SSLError, ConnectionError)):
        with context.wrap_socket(socket.create_connection((host, port), timeout=10),
                                 server_hostname="localhost") as tls:
            tls.sendall(b"x")
            tls.recv(10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        alerts = [line for line in tls_engine.output if "audit event=110113" in line]
        if alerts:
            break
        time.sleep(0.05)
    assert alerts, "a refused handshake must produce a Security Alert audit record:\n" + "\n".join(tls_engine.output)
