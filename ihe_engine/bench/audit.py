"""``ihe-engine bench audit {ingest,search,emission}``: the ATNA figures of issue 5.

- ``ingest``: the real ``serve`` with mutual TLS (a throw-away PKI is generated), ``--connections`` TLS clients
  (Python's ssl module, or ``--client openssl``: ``openssl s_client`` processes) sending octet-counted ITI-20
  messages as fast as the socket takes them; the rate is messages *stored* per second (the clock stops when the
  repository holds all of them), so parsing, validation, hash chain and commit are counted, not just reading.
- ``search``: the repository brought to ``--records`` audit records over ``--patients`` patients (the bulk loader
  :func:`populate`: generated messages stored exactly as ingest stores them, hash chain included), then searches
  for one patient (newest 100 records) in process and, with ``--http``, through ``GET /fhir/AuditEvent``: p50/p99.
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


class _StoredCount:
    """The chain head's last id, polled on one pooled connection (a new engine per poll cost the machine a
    PostgreSQL backend start 20 times a second)."""

    def __init__(self, db_url: str) -> None:
        from ..storage import Database

        self.db = Database(db_url)

    def __call__(self) -> int:
        from sqlalchemy import text

        with self.db.read_connection() as connection:
            return connection.execute(text("SELECT last_id FROM audit_chain")).scalar() or 0

    def close(self) -> None:
        self.db.dispose()


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
            stored_count = _StoredCount(db_url)
            before = stored_count()
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

            frame_files = (_frame_files(Path(scratch), payloads, share, args.connections)
                           if args.client == "openssl" else [])
            load = os.getloadavg()[0]
            cpu_before = _cpu_seconds(server.pid)
            started = time.perf_counter()
            expected = before + share * args.connections
            if args.client == "openssl":
                senders = _openssl_senders(frame_files, pki, host, port)
                threads = []
            else:
                senders = []
                threads = [threading.Thread(target=send, args=(i * share,)) for i in range(args.connections)]
            for thread in threads:
                thread.start()
            try:
                while stored_count() < expected:
                    if errors:
                        raise RuntimeError(f"a sending connection failed: {errors[0]}")
                    if any(sender.poll() is not None for sender in senders):
                        raise RuntimeError(f"an openssl sender exited early: {_sender_output(senders)}")
                    if time.perf_counter() - started > args.timeout:
                        raise RuntimeError(f"only {stored_count() - before} of {expected - before} stored")
                    time.sleep(0.05)
                elapsed = time.perf_counter() - started
                cpu = _cpu_seconds(server.pid) - cpu_before
            finally:
                stored_count.close()
                for sender in senders:
                    sender.terminate()
                    sender.wait()
            for thread in threads:
                thread.join()
    total = share * args.connections
    return {"name": f"ATNA ingest over TLS x{args.connections} (workers {args.workers}, {args.client} client)",
            "messages": total,
            "seconds": round(elapsed, 2), "stored_per_s": round(total / elapsed),
            "server_cpu_us_per_msg": round(cpu * 1e6 / total), "load_avg_1m": round(load, 2),
            "database": "postgresql" if args.db_url and "postgres" in args.db_url else "sqlite"}


def _frame_files(scratch: Path, payloads: list[bytes], share: int, connections: int) -> list[Path]:
    """Each connection's share of octet-counted frames, written before the clock starts."""
    files = []
    for index in range(connections):
        frames = scratch / f"frames-{index}.bin"
        with open(frames, "wb") as handle:
            for n in range(share):
                handle.write(payloads[(index * share + n) % len(payloads)])
        files.append(frames)
    return files


def _openssl_senders(frame_files: list[Path], pki: dict[str, Path], host: str, port: int) -> list[Any]:
    """One ``openssl s_client`` per connection, fed a pre-built file of octet-counted frames: a sender in C that
    costs far less CPU than the Python client, so on two cores the figure measures the server. ``-quiet``
    implies ``-ign_eof``: each keeps its connection open after its file, until the benchmark ends it."""
    import subprocess

    senders = []
    for frames in frame_files:
        command = ["openssl", "s_client", "-connect", f"{host}:{port}", "-servername", "localhost", "-tls1_2",
                   "-cert", str(pki["client"]), "-key", str(pki["client"].with_suffix(".key")),
                   "-CAfile", str(pki["ca"]), "-verify_return_error", "-quiet"]
        with open(frames, "rb") as stdin:
            senders.append(subprocess.Popen(command, stdin=stdin, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.PIPE))
    return senders


def _sender_output(senders: list[Any]) -> str:
    for sender in senders:
        if sender.poll() is not None and sender.stderr is not None:
            return sender.stderr.read().decode("utf-8", "replace")[-500:]
    return ""


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


def populate(db_url: str, records: int, patients: int, *, batch: int = 20_000, progress=print) -> int:  # type: ignore
    """Bring the repository to ``records`` records, exactly as ``repository.ingest`` would store them.

    The messages are :func:`generated_message`'s, written from a byte template instead of through lxml
    (:func:`bulk_message`, the same bytes), and their facts are built from the numbers they were made from instead
    of being re-read; :func:`repository.prepare` and :func:`repository.store_prepared` then give the columns,
    index keys, ids and hash chain of the real ingest path. On SQLite the secondary indexes are dropped for the
    load and rebuilt once at the end (sorting once is far cheaper than 40 M random B-tree inserts), and the load
    runs with ``synchronous=OFF``: a benchmark store, rebuilt if the machine crashes. The test suite checks the
    rows against the ones the real ingest stores from the same bytes.
    """
    from sqlalchemy import text

    from ..audit import repository
    from ..storage import Database, UnitOfWork

    db = Database(db_url)
    db.upgrade()
    with db.read_connection() as connection:
        present = connection.execute(text("SELECT last_id FROM audit_chain")).scalar() or 0
    sqlite = db.engine.dialect.name == "sqlite"
    started, first = time.perf_counter(), present
    if present < records and sqlite:
        _drop_search_indexes(db)
        _load_without_sync(db)
    rng = random.Random(present)
    facts = _FactsMaker()
    while present < records:
        prepared = []
        for number in range(present, min(records, present + batch)):
            when = _EPOCH + dt.timedelta(seconds=rng.randrange(0, 365 * 86400))
            raw = bulk_message(number, patients, when)
            item = repository.Incoming(raw=raw, transport="tls", received_at=when, peer="10.0.0.1:1",
                                       msgid=repository.EXPECTED_MSGID)
            prepared.append(repository.prepare(item, lambda _raw: facts.make(number, patients, when)))
        with UnitOfWork(db.sessions) as uow:
            repository.store_prepared(uow.session, prepared)
            uow.commit()
        present += len(prepared)
        if present % 100_000 < batch:
            progress(f"  {present} records ({(present - first) / (time.perf_counter() - started):.0f}/s)")
    if sqlite:
        _create_search_indexes(db, progress)
    db.dispose()
    return present


_DEFERRED_INDEXES = ("ix_audit_record_event_time", "ix_audit_record_event_code_time", "ix_audit_record_outcome_time",
                     "ix_audit_record_source_time", "ix_audit_record_received_at", "ix_audit_index_lookup")


def _load_without_sync(db: Any) -> None:
    from sqlalchemy import event

    def pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA synchronous=OFF")
        cursor.execute("PRAGMA cache_size=-262144")  # 256 MiB: the id-ordered B-trees' right edges stay cached
        cursor.close()

    event.listen(db.engine, "connect", pragmas)
    db.engine.dispose()  # pooled connections opened before the listener are replaced


def _search_indexes() -> list[Any]:
    from ..audit.tables import AuditIndexRow, AuditRecordRow

    indexes = [*AuditRecordRow.__table__.indexes, *AuditIndexRow.__table__.indexes]
    return [index for index in indexes if index.name in _DEFERRED_INDEXES]


def _drop_search_indexes(db: Any) -> None:
    with db.engine.begin() as connection:
        for index in _search_indexes():
            index.drop(connection, checkfirst=True)


def _create_search_indexes(db: Any, progress: Any) -> None:
    """The model's own Index objects, so the rebuilt indexes are the ones the migration made; one transaction each,
    so the write-ahead log holds one index at a time, and a sampled ANALYZE (a full one reads every index)."""
    for index in _search_indexes():
        with db.engine.begin() as connection:
            if connection.exec_driver_sql("SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?",
                                          (index.name,)).first():
                continue
            progress(f"  building {index.name}")
            connection.exec_driver_sql("PRAGMA cache_size=-1000000")
            index.create(connection)
    with db.engine.begin() as connection:
        connection.exec_driver_sql("PRAGMA analysis_limit=1000")
        connection.exec_driver_sql("ANALYZE")


_KINDS = (
    (b"C", b"110110", b"Patient Record", b"ITI-8", b"Patient Identity Feed"),
    (b"E", b"110112", b"Query", b"ITI-9", b"PIX Query"),
    (b"R", b"110106", b"Export", b"ITI-43", b"Retrieve Document Set"),
)
_OBJECT_TEMPLATE = (b'<ParticipantObjectIdentification ParticipantObjectID="1.2.250.1.999.%d" '
                    b'ParticipantObjectTypeCode="2" ParticipantObjectTypeCodeRole="3"><ParticipantObjectIDTypeCode '
                    b'csd-code="9" codeSystemName="RFC-3881" originalText="Report Number"/>'
                    b'</ParticipantObjectIdentification>')


def bulk_message(number: int, patients: int, when: dt.datetime) -> bytes:
    """The bytes :func:`generated_message` encodes for ``number`` at ``when``, from a template (no lxml)."""
    action, event, event_text, event_type, event_type_text = _KINDS[number % 3]
    return (b"<?xml version='1.0' encoding='UTF-8'?>\n<AuditMessage><EventIdentification EventActionCode=\"%b\" "
            b'EventDateTime="%b.000Z" EventOutcomeIndicator="0"><EventID csd-code="%b" codeSystemName="DCM" '
            b'originalText="%b"/><EventTypeCode csd-code="%b" codeSystemName="IHE Transactions" originalText="%b"/>'
            b'</EventIdentification><ActiveParticipant UserID="SITE%d|APP" UserIsRequestor="true" '
            b'NetworkAccessPointID="10.0.%d.%d" NetworkAccessPointTypeCode="2"/><ActiveParticipant '
            b'UserID="HOPITAL|ENGINE" AlternativeUserID="1" UserIsRequestor="false"/><AuditSourceIdentification '
            b'AuditSourceID="bench-source"><AuditSourceTypeCode csd-code="4" codeSystemName="DCM" '
            b'originalText="Application Server process or thread"/></AuditSourceIdentification>'
            b'<ParticipantObjectIdentification ParticipantObjectID="P%d^^^&amp;1.2.250.1.213.1.4.8&amp;ISO" '
            b'ParticipantObjectTypeCode="1" ParticipantObjectTypeCodeRole="1"><ParticipantObjectIDTypeCode '
            b'csd-code="2" codeSystemName="RFC-3881" originalText="Patient Number"/>'
            b'</ParticipantObjectIdentification>%b</AuditMessage>') % (
        action, when.strftime("%Y-%m-%dT%H:%M:%S").encode("ascii"), event, event_text, event_type,
        event_type_text, number % 50, number % 250, number % 7, number % patients,
        _OBJECT_TEMPLATE % number if number % 3 == 2 else b"")


class _FactsMaker:
    """What ``dicom.analyse`` reads from :func:`bulk_message`'s bytes, built from the numbers behind them: one real
    analysis per message kind gives the constant parts (constructors with the template's other fields, because
    ``dataclasses.replace`` cost a quarter of the load)."""

    def __init__(self) -> None:
        from ..audit import dicom

        self._templates = []
        for kind in range(3):
            template = dicom.analyse(bulk_message(kind, 1, _EPOCH))
            assert template.valid, template.problems
            requestor, engine = template.participants
            patient, *others = template.objects
            self._templates.append((
                _fields(template, "event_time", "participants", "objects"),
                _fields(requestor, "user_id", "network_access_point"), engine,
                _fields(patient, "object_id"), _fields(others[0], "object_id") if others else None))

    def make(self, number: int, patients: int, when: dt.datetime) -> Any:
        from ..audit.dicom import ActiveParticipantFacts, AuditFacts, ObjectFacts

        facts, requestor, engine, patient, document = self._templates[number % 3]
        objects = [ObjectFacts(object_id=f"P{number % patients}^^^&1.2.250.1.213.1.4.8&ISO", **patient)]
        if document is not None:
            objects.append(ObjectFacts(object_id=f"1.2.250.1.999.{number}", **document))
        participants = (ActiveParticipantFacts(user_id=f"SITE{number % 50}|APP",
                                               network_access_point=f"10.0.{number % 250}.{number % 7}",
                                               **requestor), engine)
        return AuditFacts(event_time=when, participants=participants, objects=tuple(objects), **facts)


def _fields(instance: Any, *without: str) -> dict[str, Any]:
    return {item.name: getattr(instance, item.name) for item in dataclasses.fields(instance)
            if item.name not in without}


def bench_search(args: argparse.Namespace) -> list[dict]:
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
        patient = _bench_patient(rng, args.patients)
        started = time.perf_counter()
        with UnitOfWork(db.sessions, readonly=True) as uow:
            rows = repository.search(uow.session, repository.AuditQuery(patient=patient, limit=100))
        latencies.append((time.perf_counter() - started) * 1000)
        assert rows, patient
    db.dispose()
    store = "postgresql" if "postgres" in db_url else "sqlite"
    results = [_latency_row(f"audit search one patient, newest 100, in process ({total} records, {args.patients} "
                            f"patients)", latencies, load, store)]
    if args.http:
        results.append(_bench_search_http(args, db_url, total, store))
    return results


def _bench_patient(rng: random.Random, patients: int) -> str:
    return f"P{rng.randrange(patients)}^^^&1.2.250.1.213.1.4.8&ISO"


def _latency_row(name: str, latencies: list[float], load: float, store: str) -> dict:
    latencies.sort()
    return {"name": name, "queries": len(latencies), "p50_ms": round(percentile(latencies, 0.5), 2),
            "p99_ms": round(percentile(latencies, 0.99), 2), "load_avg_1m": round(load, 2), "database": store}


def _bench_search_http(args: argparse.Namespace, db_url: str, total: int, store: str) -> dict:
    """The same searches as ``GET /fhir/AuditEvent?patient=..&_count=100`` on the real ``serve`` (one worker, one
    keep-alive connection, a bearer token with the ``audit:read`` scope): search plus rendering 100 AuditEvent
    resources from their stored messages."""
    import hashlib
    import http.client
    import secrets
    from urllib.parse import urlencode

    from .cli import launch

    rng = random.Random(8)
    latencies = []
    token = secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory(prefix="ihe-bench-audit-http-") as scratch:
        config = Path(scratch) / "engine.toml"
        config.write_text(f'[[api.tokens]]\nname = "bench"\nsha256 = "{hashlib.sha256(token.encode()).hexdigest()}"\n'
                          f'scopes = ["audit:read"]\n')
        command = [sys.executable, "-m", "ihe_engine.cli", "serve", "--config", str(config), "--data-dir",
                   str(Path(scratch) / "var"), "--db-url", db_url, "--http-port", "0", "--mllp-port", "0",
                   "--audit-tcp-port", "0", "--audit-udp-port", "0"]
        with open(Path(scratch) / "serve.log", "ab") as log, launch(command, stderr=log) as server:
            host, port, _ = server.address("xds-registry")  # every HTTP path shares one port
            connection = http.client.HTTPConnection(host, port, timeout=60)
            load = os.getloadavg()[0]
            for _ in range(args.queries):
                query = urlencode({"patient": _bench_patient(rng, args.patients), "_count": "100"})
                started = time.perf_counter()
                connection.request("GET", f"/fhir/AuditEvent?{query}", headers={"Authorization": f"Bearer {token}"})
                response = connection.getresponse()
                body = response.read()
                latencies.append((time.perf_counter() - started) * 1000)
                if response.status != 200 or b'"AuditEvent"' not in body:
                    raise RuntimeError(f"AuditEvent search answered {response.status}: {body[:200]!r}")
            connection.close()
    return _latency_row(f"audit search one patient, newest 100, GET /fhir/AuditEvent ({total} records, "
                        f"{args.patients} patients)", latencies, load, store)


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
    ingest.add_argument("--client", choices=("python", "openssl"), default="python",
                        help="python: TLS sockets in this process (its CPU competes with the server's); openssl: "
                             "one `openssl s_client` per connection fed pre-built frame files")
    search = commands.add_parser("search", help="one patient's newest records among many: p50/p99")
    search.add_argument("--records", type=int, default=1_000_000)
    search.add_argument("--patients", type=int, default=100_000)
    search.add_argument("--queries", type=int, default=2000)
    search.add_argument("--data-dir", default="./var/bench-audit")
    search.add_argument("--http", action="store_true", help="also search through GET /fhir/AuditEvent on serve")
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
        rows = bench_search(args)
    else:
        rows = bench_emission(args)
    for row in rows:
        print(json.dumps(row))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
