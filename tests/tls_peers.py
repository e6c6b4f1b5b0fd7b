"""Remote systems for TLS tests that this project did not write: Debian's ``openssl s_server`` and small servers on
Python's standard ``ssl`` module (an MLLP consumer, an HTTPS SOAP consumer), each demanding a client certificate.

Shared by tests/test_tls.py and tests/test_outbound_tls.py. Waits are bounded by ``WAIT`` only so that a broken
test ends; nothing here asserts on time.
"""

from __future__ import annotations

import http.server
import os
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable

WAIT = 15  # seconds: an upper bound for waits, never asserted on
# The system openssl.cnf may forbid old protocols; with no configuration, openssl does what the test asks.
OPENSSL_ENV = {**os.environ, "OPENSSL_CONF": os.devnull}
START, END = b"\x0b", b"\x1c\x0d"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(condition: Callable[[], object], what: str, seconds: float = WAIT) -> None:
    """Poll ``condition`` until true; fail naming ``what`` if it never becomes true (a guard, not a timing test)."""
    end = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.02)


class OpenSSLServer:
    """``openssl s_server`` on 127.0.0.1 requiring a client certificate from ``ca``; its output is collected."""

    def __init__(self, cert: Path, key: Path, ca: Path, *extra: str, naccept: int = 1) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            ["openssl", "s_server", "-accept", f"127.0.0.1:{self.port}", "-naccept", str(naccept), "-cert",
             str(cert), "-key", str(key), "-CAfile", str(ca), "-Verify", "1", "-verify_return_error", *extra],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=OPENSSL_ENV)
        self._output = bytearray()
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()
        wait_until(lambda: b"ACCEPT" in self.output or self.process.poll() is not None, "s_server started")
        assert b"ACCEPT" in self.output, self.output

    def _read(self) -> None:
        assert self.process.stdout is not None
        while chunk := self.process.stdout.read1(65536):
            with self._lock:
                self._output += chunk

    @property
    def output(self) -> bytes:
        with self._lock:
            return bytes(self._output)

    def stop(self) -> bytes:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=WAIT)
        return self.output


class _TLSListener:
    """A thread accepting TLS connections with the standard ``ssl`` module; each connection is handed to
    ``serve(tls_socket)`` in its own thread once its handshake succeeded. Failed handshakes are counted."""

    def __init__(self, cert: Path, key: Path, ca: Path) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(ca))
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.context.load_cert_chain(str(cert), str(key))
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.2)
        self.port = self.server.getsockname()[1]
        self.peer_names: list[str] = []
        self.failed_handshakes: list[str] = []
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self.server.accept()
            except (socket.timeout, OSError):
                continue
            threading.Thread(target=self._handshake, args=(connection,), daemon=True).start()

    def _handshake(self, connection: socket.socket) -> None:
        connection.settimeout(WAIT)
        try:
            tls = self.context.wrap_socket(connection, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            self.failed_handshakes.append(str(exc))
            connection.close()
            return
        subject = dict(item[0] for item in tls.getpeercert()["subject"])
        self.peer_names.append(subject["commonName"])
        with tls:
            self.serve(tls)

    def serve(self, tls: ssl.SSLSocket) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self._stop.set()
        self.server.close()


class MLLPConsumer(_TLSListener):
    """A TLS MLLP consumer answering every message with an ACK whose MSA-1 is ``code``."""

    def __init__(self, cert: Path, key: Path, ca: Path, code: str = "AA") -> None:
        self.code = code
        self.received: list[bytes] = []
        super().__init__(cert, key, ca)

    def serve(self, tls: ssl.SSLSocket) -> None:
        buffer = b""
        while True:
            try:
                data = tls.recv(65536)
            except OSError:
                return
            if not data:
                return
            buffer += data
            while END in buffer:
                frame, buffer = buffer.split(END, 1)
                message = frame[frame.index(START) + 1:]
                self.received.append(message)
                control_id = message.split(b"\r", 1)[0].split(b"|")[9].decode()
                tls.sendall(START + (f"MSH|^~\\&|DPI|CHU|ENGINE|SITE|20260101||ACK^A31^ACK|A-{control_id}|P|2.5\r"
                                     f"MSA|{self.code}|{control_id}\r").encode() + END)


_MCCI_AA = """<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"
 xmlns:wsa="http://www.w3.org/2005/08/addressing"><soap:Header>
<wsa:Action>urn:hl7-org:v3:MCCI_IN000002UV01</wsa:Action></soap:Header><soap:Body>
<MCCI_IN000002UV01 xmlns="urn:hl7-org:v3" ITSVersion="XML_1.0"><id root="1.2.3.4.5" extension="ack-1"/>
<creationTime value="20260101000000"/><interactionId root="2.16.840.1.113883.1.6" extension="MCCI_IN000002UV01"/>
<processingCode code="P"/><processingModeCode code="T"/><acceptAckCode code="NE"/>
<receiver typeCode="RCV"><device classCode="DEV" determinerCode="INSTANCE"><id nullFlavor="UNK"/></device></receiver>
<sender typeCode="SND"><device classCode="DEV" determinerCode="INSTANCE"><id nullFlavor="UNK"/></device></sender>
<acknowledgement><typeCode code="AA"/><targetMessage><id nullFlavor="UNK"/></targetMessage></acknowledgement>
</MCCI_IN000002UV01></soap:Body></soap:Envelope>""".encode()


class HTTPSConsumer:
    """An HTTPS SOAP 1.2 endpoint (``http.server`` over ``ssl``) answering every POST with an MCCI_IN000002UV01
    AA; it records each body and the common name of each client certificate."""

    def __init__(self, cert: Path, key: Path, ca: Path) -> None:
        self.received: list[bytes] = []
        self.peer_names: list[str] = []
        consumer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server API)
                consumer.received.append(self.rfile.read(int(self.headers["Content-Length"])))
                subject = dict(item[0] for item in self.connection.getpeercert()["subject"])
                consumer.peer_names.append(subject["commonName"])
                self.send_response(200)
                self.send_header("Content-Type", "application/soap+xml; charset=utf-8")
                self.send_header("Content-Length", str(len(_MCCI_AA)))
                self.end_headers()
                self.wfile.write(_MCCI_AA)

            def log_message(self, *args: object) -> None:
                """Quiet."""

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(ca))
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_cert_chain(str(cert), str(key))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.url = f"https://127.0.0.1:{self.port}/pix-consumer"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
