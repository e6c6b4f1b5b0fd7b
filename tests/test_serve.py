"""The real ``ihe-engine serve`` process: listening lines, /health, /metrics, clean SIGTERM, several workers."""

import json
import socket
import urllib.request

import pytest

from serving import start_engine

pytestmark = pytest.mark.slow


def get(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as answer:
        return answer.status, answer.headers.get("content-type"), answer.read()


def test_serve_prints_every_listener_then_ready_and_stops_on_sigterm(tmp_path):
    engine = start_engine(tmp_path / "var")
    try:
        names = set(engine.endpoints)
        assert {"xds-registry", "xds-repository", "pix", "pdq", "metrics", "health", "mllp", "audit-tcp",
                "audit-udp"} <= names
        assert engine.output.index("ready") > max(i for i, l in enumerate(engine.output) if l.startswith("listening"))
        assert engine.url("mllp").startswith("mllp://127.0.0.1:")
        assert engine.host_port("mllp")[1] != 0, "port 0 must be reported as the real port"

        status, content_type, body = get(engine.url("health"))
        assert status == 200 and json.loads(body) == {"status": "ok", "database": "ok"}
        assert (tmp_path / "var" / "engine.sqlite3").is_file()
    finally:
        code = engine.stop()
    assert code == 0, "\n".join(engine.output)


def test_metrics_count_transactions_and_connections(tmp_path):
    engine = start_engine(tmp_path / "var")
    try:
        host, port = engine.host_port("mllp")
        with socket.create_connection((host, port), timeout=10) as sock:
            sock.sendall(b"\x0bMSH|^~\\&|LAB|HOSP|ENGINE|REGION|20260101||ZZZ^Z99|MSG1|P|2.5\r\x1c\x0d")
            answer = b""
            while not answer.endswith(b"\x1c\x0d"):
                answer += sock.recv(65536)
        assert b"MSA|AR|MSG1" in answer, answer
        _, content_type, body = get(engine.url("metrics"))
        text = body.decode()
        assert content_type.startswith("text/plain")
        assert 'ihe_listener_connections_total{listener="mllp"} 1.0' in text
        assert 'ihe_transactions_total{outcome="error",transaction="HL7v2-unrouted"} 1.0' in text, text
        assert 'ihe_transaction_errors_total{code="200",transaction="HL7v2-unrouted"} 1.0' in text, text
    finally:
        engine.stop()


def test_workers_share_the_listeners(tmp_path):
    engine = start_engine(tmp_path / "var", "--workers", "2")
    try:
        for _ in range(20):
            status, _, _ = get(engine.url("health"))
            assert status == 200
        host, port = engine.host_port("mllp")
        for index in range(10):
            with socket.create_connection((host, port), timeout=10) as sock:
                sock.sendall(b"\x0bMSH|^~\\&|LAB|HOSP|E|R|20260101||ZZZ^Z99|W%d|P|2.5\r\x1c\x0d" % index)
                answer = b""
                while not answer.endswith(b"\x1c\x0d"):
                    answer += sock.recv(65536)
                assert b"MSA|AR|W%d" % index in answer
        _, _, body = get(engine.url("metrics"))
        assert 'ihe_listener_connections_total{listener="mllp"} 10.0' in body.decode(), \
            "metrics must sum over every worker"
    finally:
        code = engine.stop()
    assert code == 0, "\n".join(engine.output)


def test_port_in_use_is_reported(tmp_path):
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    try:
        import subprocess
        import sys

        result = subprocess.run([sys.executable, "-m", "ihe_engine.cli", "serve", "--data-dir", str(tmp_path),
                                 "--http-port", str(blocker.getsockname()[1])], capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 2
        assert f"cannot bind stream 127.0.0.1:{blocker.getsockname()[1]}" in result.stderr
    finally:
        blocker.close()


def test_sigterm_while_workers_start_exits_cleanly(tmp_path):
    import os
    import signal
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-m", "ihe_engine.cli", "serve", "--data-dir", str(tmp_path),
                                "--http-port", "0", "--mllp-port", "0", "--audit-tcp-port", "0",
                                "--audit-udp-port", "0", "--workers", "2"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env=dict(os.environ, PYTHONUNBUFFERED="1"))
    line = process.stdout.readline()
    while line and not line.startswith("listening "):  # log lines come first (schema upgrade)
        line = process.stdout.readline()
    assert line.startswith("listening "), "the engine exited before listening"
    process.send_signal(signal.SIGTERM)  # the workers are being started now
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    assert "Traceback" not in output, output
