"""``ihe-engine bench audit {ingest,search,emission}``: the ATNA figures of issue 5.

- ``ingest``: the real ``serve`` with mutual TLS (a throw-away PKI is generated), ``--connections`` TLS clients
  (Python's ssl module) sending octet-counted ITI-20 messages as fast as the socket takes them; the rate is
  messages *stored* per second (the clock stops when the repository holds all of them), so parsing, validation,
  hash chain and commit are counted, not just reading.
- ``search``: the repository brought to ``--records`` audit records over ``--patients`` patients (generated
  messages stored with the repository's own ingest, in large batches), then FHIR-style searches for one patient
  (newest 100 records) in process: p50/p99.
- ``emission``: ITI-8 round trips through ``serve`` with the durable audit outbox on (default) and off
  (``[audit] destinations = []``): the cost emission adds to an ITI-8.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import random
import socket
import ssl
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from .stats import machine_description, percentile

__all__ = ["main", "build_parser", "generated_message", "make_pki"]

_EPOCH = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)


def generated_message(number: int, patients: int, rng: random.Random) -> tuple[bytes, Any]:
    """A valid ITI-8/9/43-like audit message for patient ``number % patients`` and the AuditRecord behind it."""
    from ..audit import AuditRecord, Participant, ParticipantObject, dicom

    patient = f"P{number % patients}^^^&1.2.250.1.213.1.4.8&ISO"
    kind = number % 3
    event, action, event_type = [
        (("110110", "DCM", "Patient Record"), "C", ("ITI-8", "IHE Transactions", "Patient Identity Feed")),
        (("110112", "DCM", "Query"), "E", ("ITI-9", "IHE Transactions", "PIX Query")),
        (("110106", "DCM", "Export"), "R", ("ITI-43", "IHE Transactions", "Retrieve Document Set")),
    ][kind]
    objects = [ParticipantObject(object_id=patient, type_code=1, type_code_role=1, id_type=dicom.PATIENT_NUMBER)]
    if kind == 2:
        objects.append(ParticipantObject(object_id=f"1.2.250.1.999.{number}", type_code=2, type_code_role=3,
                                         id_type=("9", "RFC-3881", "Report Number")))
    record = AuditRecord(
        event_id=event, action=action, event_types=(event_type,),
        participants=(Participant(user_id=f"SITE{number % 50}|APP", is_requestor=True,
                                  network_access_point=f"10.0.{number % 250}.{number % 7}"),
                      Participant(user_id="HOPITAL|ENGINE", is_requestor=False, alternative_user_id="1")),
        objects=tuple(objects), when=_EPOCH + dt.timedelta(seconds=rng.randrange(0, 365 * 86400)))
    return dicom.encode(record, source_id="bench-source"), record


# --------------------------------------------------------------------------------------------------- ingest


def make_pki(directory: Path) -> dict[str, Path]:
    """A CA, a server and a client certificate (both with subjectAltName localhost/127.0.0.1)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.timezone.utc)

    def name(text: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

    def certificate(subject: str, key: Any, issuer: str, issuer_key: Any, *, ca: bool) -> x509.Certificate:
        builder = (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(name(issuer))
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=2))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if not ca:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    def write(stem: str, cert: x509.Certificate, key: Any) -> None:
        (directory / f"{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (directory / f"{stem}.key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))

    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # the BCP195 TLS 1.2 suites are RSA
    ca = certificate("bench CA", ca_key, "bench CA", ca_key, ca=True)
    write("ca", ca, ca_key)
    for stem in ("server", "client"):
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        write(stem, certificate(f"bench {stem}", key, "bench CA", ca_key, ca=False), key)
    return {stem: directory / f"{stem}.pem" for stem in ("ca", "server", "client")}


def _stored_count(db_url: str) -> int:
    from sqlalchemy import text

    from ..storage import Database

    db = Database(db_url)
    try:
        with db.read_connection() as connection:
            return connection.execute(text("SELECT last_id FROM audit_chain")).scalar() or 0
    finally:
        db.dispose()


def bench_ingest(args: argparse.Namespace) -> dict:
    from ..transport.syslog import format_rfc5424, frame_octet_counted
    from .cli import launch

    rng = random.Random(5)
    payloads = []
    for number in range(min(args.messages, 2000)):  # a pool of distinct messages, reused round-robin
        xml, _ = generated_message(number, 1000, rng)
        payloads.append(frame_octet_counted(format_rfc5424(
            timestamp=dt.datetime.now(dt.timezone.utc), hostname="bench.client", app_name="bench", procid="1",
            msgid="IHE+RFC-3881", msg=xml)))
    with tempfile.TemporaryDirectory(prefix="ihe-bench-audit-") as scratch:
        data_dir, pki = Path(scratch) / "var", make_pki(Path(scratch))
        db_url = args.db_url or f"sqlite:///{(data_dir / 'engine.sqlite3').resolve()}"
        command = [sys.executable, "-m", "ihe_engine.cli", "serve", "--data-dir", str(data_dir), "--db-url", db_url,
                   "--http-port", "0", "--mllp-port", "0", "--audit-tcp-port", "0", "--audit-udp-port", "0",
                   "--tls-cert", str(pki["server"]), "--tls-key", str(pki["server"].with_suffix(".key")),
                   "--tls-ca", str(pki["ca"]), "--workers", str(args.workers)]
        with open(Path(scratch) / "serve.log", "ab") as log, launch(command, stderr=log) as server:
            host, port, _ = server.address("audit-tls")
            before = _stored_count(db_url)
            context = ssl.create_default_context(cafile=str(pki["ca"]))
            context.load_cert_chain(str(pki["client"]), str(pki["client"].with_suffix(".key")))
            context.maximum_version = ssl.TLSVersion.TLSv1_2
            share = args.messages // args.connections

            errors: list[BaseException] = []

            def send(offset: int) -> None:
                try:
                    _send_share(offset)
                except BaseException as error:  # reported by the waiting loop
                    errors.append(error)

            def _send_share(offset: int) -> None:
                with context.wrap_socket(socket.create_connection((host, port)), server_hostname="localhost") as tls:
                    chunk: list[bytes] = []
                    for n in range(share):
                        chunk.append(payloads[(offset + n) % len(payloads)])
                        if len(chunk) == 100:
                            tls.sendall(b"".join(chunk))
                            chunk = []
                    if chunk:
                        tls.sendall(b"".join(chunk))
                    time.sleep(0.5)  # the server may still be reading: do not close under it

            load = os.getloadavg()[0]
            cpu_before = _cpu_seconds(server.pid)
            started = time.perf_counter()
            threads = [threading.Thread(target=send, args=(i * share,)) for i in range(args.connections)]
            for thread in threads:
                thread.start()
            expected = before + share * args.connections
            while _stored_count(db_url) < expected:
                if errors:
                    raise RuntimeError(f"a sending connection failed: {errors[0]}")
                if time.perf_counter() - started > args.timeout:
                    raise RuntimeError(f"only {_stored_count(db_url) - before} of {expected - before} stored")
                time.sleep(0.05)
            elapsed = time.perf_counter() - started
            cpu = _cpu_seconds(server.pid) - cpu_before
            for thread in threads:
                thread.join()
    total = share * args.connections
    return {"name": f"ATNA ingest over TLS x{args.connections} (workers {args.workers})", "messages": total,
            "seconds": round(elapsed, 2), "stored_per_s": round(total / elapsed),
            "server_cpu_us_per_msg": round(cpu * 1e6 / total), "load_avg_1m": round(load, 2),
            "database": "postgresql" if args.db_url and "postgres" in args.db_url else "sqlite"}


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its child processes (``--workers``): a rate on a shared machine
    says little alone, the CPU each message cost says what the engine needs."""
    ticks = os.sysconf("SC_CLK_TCK")
    pids = [pid] + [int(entry) for entry in os.listdir("/proc") if entry.isdigit() and _parent(entry) == pid]
    total = 0.0
    for candidate in pids:
        try:
            with open(f"/proc/{candidate}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
        except (OSError, IndexError, ValueError):
            continue
    return total


def _parent(pid: str) -> int:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return int(handle.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


# --------------------------------------------------------------------------------------------------- search


def populate(db_url: str, records: int, patients: int, *, batch: int = 5000, progress=print) -> int:  # type: ignore
    """Bring the repository to ``records`` records through ``repository.ingest`` (facts known, not re-parsed)."""
    from sqlalchemy import text

    from ..audit import dicom, repository
    from ..storage import Database, UnitOfWork

    db = Database(db_url)
    db.upgrade()
    with db.read_connection() as connection:
        present = connection.execute(text("SELECT last_id FROM audit_chain")).scalar() or 0
    rng = random.Random(present)
    templates: dict[int, dicom.AuditFacts] = {}
    started = time.perf_counter()
    while present < records:
        known: dict[bytes, dicom.AuditFacts] = {}
        items = []
        for number in range(present, min(records, present + batch)):
            xml, record = generated_message(number, patients, rng)
            kind = number % 3
            if kind not in templates:
                templates[kind] = dicom.analyse(xml)
            known[xml] = _facts_like(templates[kind], record)
            items.append(repository.Incoming(raw=xml, transport="tls", received_at=record.when, peer="10.0.0.1:1",
                                             msgid=repository.EXPECTED_MSGID))
        with UnitOfWork(db.sessions) as uow:
            repository.ingest(uow.session, items, analyse=known.__getitem__)
            uow.commit()
        present += len(items)
        if present % 100_000 < batch:
            progress(f"  {present} records ({present / (time.perf_counter() - started):.0f}/s)")
    db.dispose()
    return present


def _facts_like(template: Any, record: Any) -> Any:
    """The facts of a generated message: the template's, with this record's patient, objects, users and time."""
    objects = tuple(dataclasses.replace(template.objects[0], object_id=item.object_id)
                    if item.type_code == 1 else dataclasses.replace(template.objects[-1], object_id=item.object_id)
                    for item in record.objects)
    participants = (dataclasses.replace(template.participants[0], user_id=record.participants[0].user_id,
                                        network_access_point=record.participants[0].network_access_point),
                    template.participants[1])
    return dataclasses.replace(template, objects=objects, participants=participants,
                               event_time=record.when.replace(microsecond=record.when.microsecond // 1000 * 1000))


def bench_search(args: argparse.Namespace) -> dict:
    from ..audit import repository
    from ..storage import Database, UnitOfWork

    db_url = args.db_url or f"sqlite:///{(Path(args.data_dir) / 'audit-bench.sqlite3').resolve()}"
    Path(args.data_dir).mkdir(parents=True, exist_ok=True)
    total = populate(db_url, args.records, args.patients)
    db = Database(db_url)
    rng = random.Random(7)
    latencies = []
    load = os.getloadavg()[0]
    for _ in range(args.queries):
        patient = f"P{rng.randrange(args.patients)}^^^&1.2.250.1.213.1.4.8&ISO"
        started = time.perf_counter()
        with UnitOfWork(db.sessions, readonly=True) as uow:
            rows = repository.search(uow.session, repository.AuditQuery(patient=patient, limit=100))
        latencies.append((time.perf_counter() - started) * 1000)
        assert rows, patient
    db.dispose()
    latencies.sort()
    return {"name": f"audit search one patient, newest 100 ({total} records, {args.patients} patients)",
            "queries": args.queries, "p50_ms": round(percentile(latencies, 0.5), 2),
            "p99_ms": round(percentile(latencies, 0.99), 2), "load_avg_1m": round(load, 2),
            "database": "postgresql" if "postgres" in db_url else "sqlite"}


# --------------------------------------------------------------------------------------------------- emission


def bench_emission(args: argparse.Namespace) -> list[dict]:
    from .cli import launch
    from .loadgen import mllp_answer_end, run_closed_loop
    from .stats import summarize

    rows = []
    for label, audit in (("outbox off", "destinations = []\n"), ("outbox on (local ARR)", "")):
        with tempfile.TemporaryDirectory(prefix="ihe-bench-emission-") as scratch:
            config = Path(scratch) / "engine.toml"
            config.write_text(f"[audit]\n{audit}")
            command = [sys.executable, "-m", "ihe_engine.cli", "serve", "--config", str(config), "--data-dir",
                       str(Path(scratch) / "var"), "--http-port", "0", "--mllp-port", "0", "--audit-tcp-port", "0",
                       "--audit-udp-port", "0"]
            if args.db_url:
                command += ["--db-url", args.db_url]
            with open(Path(scratch) / "serve.log", "ab") as log, launch(command, stderr=log) as server:
                host, port, _ = server.address("mllp")
                frames = [_a01(n, label) for n in range(args.messages)]
                load = os.getloadavg()[0]
                cpu_before = _cpu_seconds(server.pid)
                latencies, seconds, failures = run_closed_loop(
                    host, port, b"", connections=args.connections, total=len(frames), answer_end=mllp_answer_end,
                    make_request=lambda n: frames[n], check=lambda answer: b"MSA|AA|" in answer)
                rows.append(summarize(f"ITI-8 A01 x{args.connections}, {label}", latencies, seconds,
                                      failed=failures, load_avg_1m=round(load, 2),
                                      server_cpu_ms_per_msg=round((_cpu_seconds(server.pid) - cpu_before) * 1000
                                                                  / len(frames), 3)).as_row())
    return rows


def _a01(number: int, label: str) -> bytes:
    tag = "ON" if "on" in label.split()[1] else "OFF"
    message = (f"MSH|^~\\&|BENCH|SITE|ENGINE|HOPITAL|20260101120000||ADT^A01^ADT_A01|{tag}{number}|P|2.5\r"
               f"EVN||20260101120000\rPID|||{tag}{number}^^^&1.2.250.1.213.1.4.8&ISO||NOM{number}^PRENOM||19800101|F"
               f"\rPV1||O\r")
    return b"\x0b" + message.encode() + b"\x1c\x0d"


# --------------------------------------------------------------------------------------------------- cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ihe-engine bench audit", description=__doc__.split("\n\n")[0])
    parser.add_argument("--db-url", help="store (default: SQLite in a scratch or --data-dir directory)")
    parser.add_argument("--json", type=Path, help="also write the rows to this file")
    commands = parser.add_subparsers(dest="what", required=True)
    ingest = commands.add_parser("ingest", help="messages stored per second over mutual TLS")
    ingest.add_argument("--messages", type=int, default=50_000)
    ingest.add_argument("--connections", type=int, default=4)
    ingest.add_argument("--workers", type=int, default=1)
    ingest.add_argument("--timeout", type=float, default=600.0)
    search = commands.add_parser("search", help="one patient's newest records among many: p50/p99")
    search.add_argument("--records", type=int, default=1_000_000)
    search.add_argument("--patients", type=int, default=100_000)
    search.add_argument("--queries", type=int, default=2000)
    search.add_argument("--data-dir", default="./var/bench-audit")
    emission = commands.add_parser("emission", help="ITI-8 round trips with the audit outbox off and on")
    emission.add_argument("--messages", type=int, default=3000)
    emission.add_argument("--connections", type=int, default=4)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    print(f"# {machine_description()}")
    if args.what == "ingest":
        rows = [bench_ingest(args)]
    elif args.what == "search":
        rows = [bench_search(args)]
    else:
        rows = bench_emission(args)
    for row in rows:
        print(json.dumps(row))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
