"""``ihe-engine bench {mllp,soap,mtom,all,xds,iti8}``: throughput, p50/p99 latency, and server memory.

Each benchmark starts its own benchmark server process (:mod:`ihe_engine.bench.server`) on loopback, drives it
with a lean closed-loop client in this process, and prints a table (``--json FILE`` also writes the rows).
``xds`` (:mod:`ihe_engine.bench.xds`) populates a store and measures the real XDS.b endpoints of ``serve``;
``iti8`` (:mod:`ihe_engine.bench.iti8`) does the same for the ITI-8 feed over MLLP.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .loadgen import http_answer_end, mllp_answer_end, run_closed_loop
from .stats import Summary, machine_description, reset_peak_rss, rss_kib, summarize

__all__ = ["main", "print_table", "soap_envelope", "launch", "BenchServer"]

MIB = 1024 * 1024


class BenchServer:
    def __init__(self, process: subprocess.Popen, endpoints: dict[str, str]) -> None:
        self.process = process
        self.endpoints = endpoints

    @property
    def pid(self) -> int:
        return self.process.pid

    def address(self, name: str) -> tuple[str, int, str]:
        rest = self.endpoints[name].split("://", 1)[1]
        hostport, _, path = rest.partition("/")
        host, port = hostport.rsplit(":", 1)
        return host, int(port), "/" + path


@contextmanager
def launch(command: list[str], *, stderr=None, what: str = "benchmark server",  # type: ignore[no-untyped-def]
           stop_timeout: float = 30.0) -> Iterator[BenchServer]:
    """Start a server that prints ``listening NAME URL`` lines then ``ready``; stop it with SIGTERM."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True)
    endpoints: dict[str, str] = {}
    for line in process.stdout:  # type: ignore[union-attr]
        if line.startswith("listening "):
            _, name, url = line.split()
            endpoints[name] = url
        elif line.strip() == "ready":
            break
    else:
        raise RuntimeError(f"{what} exited before it was ready")
    threading.Thread(target=lambda: [None for _ in process.stdout], daemon=True).start()  # type: ignore
    try:
        yield BenchServer(process, endpoints)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(stop_timeout)
        except subprocess.TimeoutExpired:
            process.kill()


@contextmanager
def bench_server(db_url: str | None) -> Iterator[BenchServer]:
    with tempfile.TemporaryDirectory(prefix="ihe-bench-") as data_dir:
        command = [sys.executable, "-m", "ihe_engine.bench.server", "--data-dir", data_dir]
        if db_url:
            command += ["--db-url", db_url]
        with launch(command) as server:
            yield server


def hl7_message(message_type: str, control_id: str) -> bytes:
    kind, trigger = message_type.split("^")
    text = (f"MSH|^~\\&|BENCH|LAB|IHE_ENGINE|REGION|20261121120000||{kind}^{trigger}|{control_id}|P|2.5\r"
            f"EVN|{trigger}|20261121120000\rPID|||12345^^^HOSP&1.2.3&ISO||DOE^JOHN||19700101|M\r")
    return b"\x0b" + text.encode() + b"\x1c\x0d"


def bench_mllp(server: BenchServer, connections: int, count: int, route: str) -> Summary:
    from .server import COMMIT_TYPE, NOOP_TYPE

    host, port, _ = server.address("mllp")
    message_type = NOOP_TYPE if route == "noop" else COMMIT_TYPE
    run_id = uuid.uuid4().hex[:8]
    warmup = min(1000, count // 10)
    run_closed_loop(host, port, b"", connections=connections, total=warmup, answer_end=mllp_answer_end,
                    make_request=lambda n: hl7_message(message_type, f"W{run_id}{n}"))
    latencies, seconds, failures = run_closed_loop(
        host, port, b"", connections=connections, total=count, answer_end=mllp_answer_end,
        make_request=lambda n: hl7_message(message_type, f"{run_id}{n}"), check=lambda answer: b"MSA|AA|" in answer)
    return summarize(f"mllp-{route} x{connections}", latencies, seconds, failed=failures)


def soap_envelope(action: str, body: str) -> bytes:
    return (f'<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" '
            f'xmlns:a="http://www.w3.org/2005/08/addressing"><s:Header>'
            f'<a:Action s:mustUnderstand="1">{action}</a:Action><a:MessageID>urn:uuid:{uuid.uuid4()}</a:MessageID>'
            f'<a:ReplyTo><a:Address>http://www.w3.org/2005/08/addressing/anonymous</a:Address></a:ReplyTo>'
            f'</s:Header><s:Body>{body}</s:Body></s:Envelope>').encode()


def bench_soap(server: BenchServer, connections: int, count: int) -> Summary:
    from .server import ECHO_ACTION

    host, port, path = server.address("bench")
    body = soap_envelope(ECHO_ACTION, '<b:ping xmlns:b="urn:ihe-engine:bench">' + "x" * 512 + "</b:ping>")
    request = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
               f"Content-Type: application/soap+xml; charset=utf-8\r\nContent-Length: {len(body)}\r\n\r\n"
               ).encode() + body
    run_closed_loop(host, port, request, connections=connections, total=min(500, count // 10),
                    answer_end=http_answer_end)
    latencies, seconds, failures = run_closed_loop(host, port, request, connections=connections, total=count,
                                                   answer_end=http_answer_end,
                                                   check=lambda answer: answer.startswith(b"HTTP/1.1 200"))
    return summarize(f"soap-echo x{connections}", latencies, seconds, failed=failures)


def _mtom_parts(size: int, source: Path) -> tuple[bytes, bytes, str]:
    from .server import UPLOAD_ACTION

    boundary = f"MIMEBoundary_{uuid.uuid4().hex}"
    body = ('<b:upload xmlns:b="urn:ihe-engine:bench"><b:Document>'
            '<xop:Include xmlns:xop="http://www.w3.org/2004/08/xop/include" href="cid:doc1@bench"/>'
            '</b:Document></b:upload>')
    head = (f"--{boundary}\r\nContent-Type: application/xop+xml; charset=UTF-8; type=\"application/soap+xml\"\r\n"
            f"Content-Transfer-Encoding: binary\r\nContent-ID: <root@bench>\r\n\r\n").encode()
    head += soap_envelope(UPLOAD_ACTION, body)
    head += (f"\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n"
             f"Content-ID: <doc1@bench>\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    content_type = (f'multipart/related; type="application/xop+xml"; start="<root@bench>"; '
                    f'start-info="application/soap+xml"; boundary="{boundary}"')
    return head, tail, content_type


def _upload_once(host: str, port: int, path: str, source: Path, size: int) -> float:
    import http.client

    head, tail, content_type = _mtom_parts(size, source)

    def chunks() -> Iterator[bytes]:
        yield head
        with open(source, "rb") as handle:
            while chunk := handle.read(MIB):
                yield chunk
        yield tail

    connection = http.client.HTTPConnection(host, port, timeout=300)
    start = time.perf_counter()
    connection.request("POST", path, body=chunks(),
                       headers={"Content-Type": content_type, "Content-Length": str(len(head) + size + len(tail))})
    answer = connection.getresponse()
    payload = answer.read()
    elapsed = time.perf_counter() - start
    connection.close()
    if answer.status != 200 or f'size="{size}"'.encode() not in payload:
        raise RuntimeError(f"upload of {size} bytes failed: HTTP {answer.status} {payload[:300]!r}")
    return elapsed


def bench_mtom(server: BenchServer, size_mib: int, repeat: int) -> Summary:
    host, port, path = server.address("bench")
    size = size_mib * MIB
    with tempfile.NamedTemporaryFile(prefix="ihe-bench-doc-") as source:
        block = os.urandom(MIB)
        for _ in range(size_mib):
            source.write(block)
        source.flush()
        _upload_once(host, port, path, Path(source.name), size)  # warm-up
        before = rss_kib(server.pid)
        peak_reset = reset_peak_rss(server.pid)
        latencies = [_upload_once(host, port, path, Path(source.name), size) for _ in range(repeat)]
        after = rss_kib(server.pid)
    added = (after["peak"] - before["rss"]) / 1024 if peak_reset else float("nan")
    return summarize(f"mtom-upload {size_mib} MiB", latencies, sum(latencies),
                     mib_per_second=round(size_mib * repeat / sum(latencies), 1),
                     server_rss_before_mib=round(before["rss"] / 1024, 1),
                     server_peak_added_mib=round(added, 1))


def print_table(rows: list[dict]) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        for row in rows:
            print(json.dumps(row))
        return
    columns = list(dict.fromkeys(key for row in rows for key in row))  # first-seen order
    table = Table(title=machine_description())
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*[str(row.get(column, "")) for column in columns])
    Console().print(table)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ihe-engine bench", description=__doc__)
    parser.add_argument("--db-url", help="benchmark server store (default: SQLite in a temporary directory)")
    parser.add_argument("--json", type=Path, help="also write the result rows to this file")
    commands = parser.add_subparsers(dest="what", required=True)
    mllp = commands.add_parser("mllp", help="MLLP ACK round trips")
    mllp.add_argument("--connections", type=int, nargs="+", default=[1, 20])
    mllp.add_argument("--messages", type=int, default=20000)
    mllp.add_argument("--route", choices=("noop", "commit"), nargs="+", default=["noop", "commit"])
    soap = commands.add_parser("soap", help="small SOAP 1.2 request round trips")
    soap.add_argument("--connections", type=int, nargs="+", default=[1, 10])
    soap.add_argument("--requests", type=int, default=5000)
    mtom = commands.add_parser("mtom", help="MTOM uploads with the server's added peak RSS")
    mtom.add_argument("--sizes", type=int, nargs="+", default=[1, 50], metavar="MIB")
    mtom.add_argument("--repeat", type=int, default=5)
    commands.add_parser("all", help="every benchmark above with its defaults")
    xds = commands.add_parser("xds", help="XDS.b: populate a store, then measure serve (see `bench xds --help`)",
                              add_help=False)
    xds.add_argument("xds_args", nargs=argparse.REMAINDER)
    iti8 = commands.add_parser("iti8", help="ITI-8 feed throughput on 10k-1M patients (see `bench iti8 --help`)",
                               add_help=False)
    iti8.add_argument("iti8_args", nargs=argparse.REMAINDER)
    pdq = commands.add_parser("pdq", help="PDQ by family name on 1M patients (see `bench pdq --help`)",
                              add_help=False)
    pdq.add_argument("pdq_args", nargs=argparse.REMAINDER)
    audit = commands.add_parser("audit", help="ATNA ingest over TLS, audit search, emission cost "
                                              "(see `bench audit --help`)", add_help=False)
    audit.add_argument("audit_args", nargs=argparse.REMAINDER)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = _command_of(argv)
    if command in _DELEGATED:
        return _delegate(argv, command)
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if args.what == "xds":
        return _xds(args, unknown)
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    rows: list[dict] = []
    with bench_server(args.db_url) as server:
        if args.what in ("mllp", "all"):
            for route in getattr(args, "route", ["noop", "commit"]):
                for connections in getattr(args, "connections", [1, 20]):
                    rows.append(bench_mllp(server, connections, getattr(args, "messages", 20000), route).as_row())
        if args.what in ("soap", "all"):
            for connections in getattr(args, "connections", [1, 10]) if args.what == "soap" else [1, 10]:
                rows.append(bench_soap(server, connections, getattr(args, "requests", 5000)).as_row())
        if args.what in ("mtom", "all"):
            for size in getattr(args, "sizes", [1, 50]):
                rows.append(bench_mtom(server, size, getattr(args, "repeat", 5)).as_row())
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps({"machine": machine_description(), "rows": rows}, indent=2))
    return 0


def _command_of(argv: list[str]) -> str | None:
    """The benchmark named on the command line: the first word that is not a global option or its value."""
    words = iter(argv)
    for word in words:
        if word in ("--db-url", "--json"):
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


_DELEGATED = {"iti8": "ihe_engine.bench.iti8", "pdq": "ihe_engine.bench.pdq", "audit": "ihe_engine.bench.audit"}


def _delegate(argv: list[str], command: str) -> int:
    """``bench [--db-url U] [--json F] NAME ...`` for the benchmarks with parsers of their own: the global options
    apply unless given again after NAME (split by hand: argparse's REMAINDER drops an option that comes first)."""
    import importlib

    split = argv.index(command)
    args = build_parser().parse_args([*argv[:split], command])
    extra = argv[split + 1:]
    inherited = [item for flag, value in (("--db-url", args.db_url), ("--json", args.json))
                 if value is not None and flag not in extra for item in (flag, str(value))]
    return importlib.import_module(_DELEGATED[command]).main([*inherited, *extra])


def _xds(args: argparse.Namespace, unknown: list[str]) -> int:
    """``bench [--db-url U] [--json F] xds ...``: the global options apply unless given after ``xds``."""
    from .xds import main as xds_main

    extra = [*unknown, *args.xds_args] if unknown[:1] == ["--help"] or unknown[:1] == ["-h"] else \
        [*args.xds_args, *unknown]
    if extra and extra[0] in ("populate", "run"):
        for flag, value in (("--db-url", args.db_url), ("--json", args.json)):
            if value is not None and flag not in extra:
                extra += [flag, str(value)]
    return xds_main(extra)
