"""ITI-19 TLS against an independent implementation: Debian's ``openssl s_client`` / ``s_server``.

Our listener runs in the session reactor thread; openssl runs as a subprocess (with a timeout). Every refusal must
come from our side and be reported exactly once through ``on_failure`` with a reason a person understands.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
from dataclasses import replace

import pytest
from OpenSSL import SSL
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol, wrapClientTLS
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.threads import blockingCallFromThread

from ihe_engine.audit import SECURITY_ALERT, AuditHook
from ihe_engine.config import Settings
from ihe_engine.errors import ConfigurationError
from ihe_engine.plugins import create_plugin_manager, hookimpl
from ihe_engine.transport.tls import (BCP195_CIPHERS, TLSConfig, client_connection_creator,
                                      describe_handshake_failure, listen_tls, peer_identity,
                                      security_alert_reporter, server_context)
from tls_peers import OPENSSL_ENV, WAIT, free_port

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")


class _Recorder(Protocol):
    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self.factory.received.append(data)
        self.factory.identity = peer_identity(self.transport)

    def connectionLost(self, reason) -> None:  # noqa: N802
        self.factory.closed.set()


class _Listener:
    """Our TLS listener on 127.0.0.1:0 with everything a test looks at."""

    def __init__(self, reactor, config: TLSConfig) -> None:
        self.reactor = reactor
        self.failures: list[tuple[str, str]] = []
        self.factory = Factory.forProtocol(_Recorder)
        self.factory.received, self.factory.identity, self.factory.closed = [], None, threading.Event()
        self.port = blockingCallFromThread(reactor, listen_tls, reactor, 0, self.factory, config,
                                           self._on_failure, "127.0.0.1")

    def _on_failure(self, peer: str, reason: str) -> None:
        self.failures.append((peer, reason))

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port.getHost().port}"

    def wait_closed(self) -> None:
        assert self.factory.closed.wait(WAIT), "the server never saw the connection end"

    def stop(self) -> None:
        blockingCallFromThread(self.reactor, self.port.stopListening)


@pytest.fixture
def server_config(pki) -> TLSConfig:
    return TLSConfig(cert=pki.server.cert, key=pki.server.key, ca=pki.ca)


@pytest.fixture
def listen(reactor_thread):
    listeners: list[_Listener] = []

    def start(config: TLSConfig) -> _Listener:
        listeners.append(_Listener(reactor_thread, config))
        return listeners[-1]

    yield start
    for listener in listeners:
        listener.stop()


def s_client(address: str, pki, credential=None, *extra: str, data: bytes = b"hello over tls\n"):
    command = ["openssl", "s_client", "-connect", address, "-servername", "localhost", "-CAfile", str(pki.ca),
               "-verify_return_error", *extra]
    if credential is not None:
        command += ["-cert", str(credential.cert), "-key", str(credential.key)]
    return subprocess.run(command, input=data, capture_output=True, timeout=WAIT, env=OPENSSL_ENV)


def _assert_refused_once(listener: _Listener, *words: str) -> str:
    listener.wait_closed()
    assert listener.factory.received == [], "a refused client must not get bytes to the application"
    assert len(listener.failures) == 1, listener.failures
    peer, reason = listener.failures[0]
    assert peer.startswith("127.0.0.1:")
    for word in words:
        assert word.lower() in reason.lower(), reason
    return reason


# ------------------------------------------------------------------------------------------ server side


def test_good_client_is_accepted_and_identified(listen, server_config, pki):
    listener = listen(server_config)
    result = s_client(listener.address, pki, pki.client)
    listener.wait_closed()
    assert b"".join(listener.factory.received) == b"hello over tls\n", result.stdout[-2000:]
    assert listener.failures == []
    identity = listener.factory.identity
    assert identity.common_name == "client.example.test"
    assert identity.dns_names == ("client.example.test",)
    assert identity.sha256 == pki.client.sha256


def test_good_client_over_tls12_with_each_bcp195_suite(listen, server_config, pki):
    listener = listen(server_config)
    for suite in BCP195_CIPHERS:
        result = s_client(listener.address, pki, pki.client, "-tls1_2", "-cipher", suite)
        assert f"Cipher is {suite}".encode() in result.stdout, (suite, result.stdout[-1500:], result.stderr)
    assert listener.failures == []


def test_tls12_suite_outside_bcp195_is_refused(listen, server_config, pki):
    listener = listen(server_config)
    s_client(listener.address, pki, pki.client, "-tls1_2", "-cipher", "AES128-SHA256")
    _assert_refused_once(listener, "cipher")


def test_client_from_unknown_ca_is_refused(listen, server_config, pki):
    listener = listen(server_config)
    s_client(listener.address, pki, pki.unknown_ca_client)
    _assert_refused_once(listener, "stranger.example.test", "unknown CA")


def test_expired_client_is_refused(listen, server_config, pki):
    listener = listen(server_config)
    s_client(listener.address, pki, pki.expired_client)
    _assert_refused_once(listener, "expired.example.test", "expired")


def test_client_without_certificate_is_refused(listen, server_config, pki):
    listener = listen(server_config)
    s_client(listener.address, pki, None)
    _assert_refused_once(listener, "no client certificate")


@pytest.mark.parametrize("version", ["-tls1", "-tls1_1"])
def test_old_tls_versions_are_refused_by_our_server(listen, server_config, pki, version):
    listener = listen(server_config)
    result = s_client(listener.address, pki, pki.client, version, "-cipher", "DEFAULT:@SECLEVEL=0")
    reason = _assert_refused_once(listener, "1.2")
    # our alert, not a local client refusal, ended the attempt
    assert b"alert protocol version" in result.stdout + result.stderr, (reason, result.stderr[-1500:])


def test_client_without_subject_alt_name_is_refused(listen, server_config, pki):
    listener = listen(server_config)
    s_client(listener.address, pki, pki.no_san_client)
    _assert_refused_once(listener, "nosan.example.test", "subjectAltName")


def test_pinned_fingerprint_mismatch_is_refused(listen, server_config, pki):
    listener = listen(replace(server_config, pinned_sha256=(pki.server.sha256,)))
    s_client(listener.address, pki, pki.client)
    _assert_refused_once(listener, "pinned", pki.client.sha256)


def test_pinned_fingerprint_match_is_accepted(listen, server_config, pki):
    pin = ":".join(pki.client.sha256[i:i + 2] for i in range(0, 64, 2)).upper()
    listener = listen(replace(server_config, pinned_sha256=(pin,)))
    s_client(listener.address, pki, pki.client)
    listener.wait_closed()
    assert listener.failures == [] and listener.factory.received


def test_revoked_client_is_refused_when_a_crl_is_configured(listen, server_config, pki):
    listener = listen(replace(server_config, crl=pki.crl))
    s_client(listener.address, pki, pki.revoked_client)
    _assert_refused_once(listener, "revoked")


def test_crl_still_admits_a_good_client(listen, server_config, pki):
    listener = listen(replace(server_config, crl=pki.crl))
    s_client(listener.address, pki, pki.client)
    listener.wait_closed()
    assert listener.failures == [] and listener.factory.received


def test_plain_tcp_probe_without_bytes_is_not_reported(listen, server_config):
    listener = listen(server_config)
    with socket.create_connection(("127.0.0.1", listener.port.getHost().port), timeout=WAIT):
        pass
    listener.wait_closed()
    assert listener.failures == []


def test_garbage_instead_of_client_hello_is_reported(listen, server_config):
    listener = listen(server_config)
    with socket.create_connection(("127.0.0.1", listener.port.getHost().port), timeout=WAIT) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.recv(100)
    _assert_refused_once(listener, "HTTP")


def test_refusal_becomes_a_security_alert_through_the_audit_hook(reactor_thread, server_config, pki):
    records = []

    class Sink:
        @hookimpl
        def ihe_audit_record(self, record):
            records.append(record)

    manager = create_plugin_manager(load_entry_points=False)
    manager.register(Sink())
    reporter = security_alert_reporter(AuditHook(manager), "node.test")
    factory = Factory.forProtocol(_Recorder)
    factory.received, factory.identity, factory.closed = [], None, threading.Event()
    port = blockingCallFromThread(reactor_thread, listen_tls, reactor_thread, 0, factory, server_config, reporter,
                                  "127.0.0.1")
    try:
        s_client(f"127.0.0.1:{port.getHost().port}", pki, pki.expired_client)
        assert factory.closed.wait(WAIT)
    finally:
        blockingCallFromThread(reactor_thread, port.stopListening)
    [record] = records
    assert record.event_id == SECURITY_ALERT and record.outcome == 4
    assert "expired" in record.outcome_description
    assert record.participants[0].network_access_point == "127.0.0.1"
    assert record.participants[1].user_id == "node.test"


# ------------------------------------------------------------------------------------------ client side


class _Sender(Protocol):
    """Writes one payload and closes; remembers why the connection failed, if it did."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.failure: str | None = None
        self.ended = threading.Event()

    def connectionMade(self) -> None:  # noqa: N802
        self.transport.write(self.payload)
        self.transport.loseConnection()

    def connectionLost(self, reason) -> None:  # noqa: N802
        if not reason.check(ConnectionDone):
            self.failure = describe_handshake_failure(self.transport.getHandle(), reason)
        self.ended.set()


def _run_s_server(pki, reactor, config: TLSConfig, hostname: str, payload: bytes):
    port = free_port()
    server = subprocess.Popen(
        ["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-naccept", "1", "-cert", str(pki.server.cert),
         "-key", str(pki.server.key), "-CAfile", str(pki.ca), "-Verify", "1", "-verify_return_error"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=OPENSSL_ENV)
    try:
        banner = b""
        while b"ACCEPT" not in banner and server.poll() is None:
            banner += server.stdout.readline()
        assert b"ACCEPT" in banner, banner
        endpoint = wrapClientTLS(client_connection_creator(config, hostname),
                                 TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=WAIT))
        sender = _Sender(payload)
        blockingCallFromThread(reactor, connectProtocol, endpoint, sender)
        assert sender.ended.wait(WAIT), "our client never finished"
        server.wait(timeout=WAIT)  # -naccept 1: exits once our connection ends; stdin stays open meanwhile
        output = server.stdout.read()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    return banner + output, sender.failure


@pytest.fixture
def client_config(pki) -> TLSConfig:
    return TLSConfig(cert=pki.client.cert, key=pki.client.key, ca=pki.ca)


def test_our_client_talks_to_openssl_s_server_with_mutual_auth(reactor_thread, pki, client_config):
    output, failure = _run_s_server(pki, reactor_thread, replace(client_config, verify_hostname=True), "localhost",
                                    b"audit bytes from our client\n")
    assert failure is None
    assert b"audit bytes from our client" in output, output[-2000:]
    assert b"client.example.test" in output  # s_server saw and verified our client certificate


def test_our_client_refuses_a_server_name_mismatch_when_asked(reactor_thread, pki, client_config):
    output, failure = _run_s_server(pki, reactor_thread, replace(client_config, verify_hostname=True),
                                    "wrong.example.test", b"must not arrive\n")
    assert b"must not arrive" not in output
    assert "does not match the name 'wrong.example.test'" in failure


def test_our_client_refuses_an_unpinned_server(reactor_thread, pki, client_config):
    output, failure = _run_s_server(pki, reactor_thread, replace(client_config, pinned_sha256=(pki.client.sha256,)),
                                    "localhost", b"must not arrive\n")
    assert b"must not arrive" not in output
    assert "not one of the pinned fingerprints" in failure and "CN=localhost" in failure


def test_our_client_without_hostname_check_accepts_any_name_the_ca_vouches_for(reactor_thread, pki, client_config):
    output, failure = _run_s_server(pki, reactor_thread, client_config, "alias.example.test", b"alias ok\n")
    assert failure is None and b"alias ok" in output


# ------------------------------------------------------------------------------------------ configuration


def test_context_offers_only_bcp195_suites_in_tls12(server_config):
    offered = SSL.Connection(server_context(server_config), None).get_cipher_list()
    tls12 = [name for name in offered if not name.startswith("TLS_")]
    assert sorted(tls12) == sorted(BCP195_CIPHERS)
    assert set(offered) - set(tls12) <= {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384"}


def test_config_from_settings_normalizes_pins(pki):
    pin = ":".join(pki.client.sha256[i:i + 2] for i in range(0, 64, 2)).upper()
    settings = Settings(tls_cert=pki.server.cert, tls_key=pki.server.key, tls_ca=pki.ca, tls_pinned=(pin,),
                        tls_crl=pki.crl, tls_verify_hostname=True)
    config = TLSConfig.from_settings(settings)
    assert config.pinned_sha256 == (pki.client.sha256,)
    assert config.crl == pki.crl and config.verify_hostname


def test_config_errors_are_configuration_errors(pki, tmp_path):
    with pytest.raises(ConfigurationError, match="SHA-256"):
        TLSConfig(cert=pki.server.cert, key=pki.server.key, ca=pki.ca, pinned_sha256=("abc",))
    with pytest.raises(ConfigurationError, match="needs"):
        TLSConfig.from_settings(Settings())
    with pytest.raises(ConfigurationError, match="does not exist"):
        server_context(TLSConfig(cert=tmp_path / "none.pem", key=pki.server.key, ca=pki.ca))
    with pytest.raises(ConfigurationError, match="cannot load"):
        server_context(TLSConfig(cert=pki.server.cert, key=pki.client.key, ca=pki.ca))
