"""The Audit Record Repository store on SQLite and PostgreSQL: every message kept (invalid ones flagged), found by
each index, the hash chain catching deleted and altered records, idempotency keys storing nothing twice."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import delete, select, text, update

from ihe_engine.audit import AuditRecord, Participant, ParticipantObject, dicom
from ihe_engine.audit import repository as arr
from ihe_engine.audit.tables import AuditIndexRow, AuditRecordRow
from ihe_engine.storage import UnitOfWork
from ihe_engine.transport.syslog import format_rfc5424, parse_rfc5424

AUDIT_DIR = "oehf-ipf/commons/audit/src/test/resources/audit"
NOW = datetime(2026, 11, 22, 10, 0, tzinfo=timezone.utc)
PATIENT_A = "111^^^&1.2.250.1.71.4.2.1&ISO"
PATIENT_B = "222^^^&1.2.250.1.71.4.2.1&ISO"


def record_xml(*, patients=(PATIENT_A,), event=("110110", "DCM", "Patient Record"), action="C", outcome=0,
               user="LABO|LAB_APP", when=NOW, event_type=("ITI-8", "IHE Transactions", "Patient Identity Feed"),
               documents=(), source="engine-1") -> bytes:
    objects = [ParticipantObject(object_id=p, type_code=1, type_code_role=1, id_type=dicom.PATIENT_NUMBER)
               for p in patients]
    objects += [ParticipantObject(object_id=d, type_code=2, type_code_role=3,
                                  id_type=("9", "RFC-3881", "Report Number")) for d in documents]
    record = AuditRecord(event_id=event, action=action, outcome=outcome, event_types=(event_type,),
                         participants=(Participant(user_id=user, is_requestor=True, network_access_point="192.0.2.9"),
                                       Participant(user_id="HOPITAL|ENGINE", is_requestor=False)),
                         objects=tuple(objects), when=when)
    return dicom.encode(record, source_id=source)


def incoming(raw: bytes, **changes) -> arr.Incoming:
    values = dict(raw=raw, transport="tcp", received_at=NOW, peer="192.0.2.9:5000", msgid=arr.EXPECTED_MSGID,
                  app_name="sender", hostname="sender.test")
    values.update(changes)
    return arr.Incoming(**values)


def store(database, items) -> list[int]:
    with UnitOfWork(database.sessions) as uow:
        ids = arr.ingest(uow.session, items)
        uow.commit()
    return ids


def find(database, **criteria) -> list[int]:
    with UnitOfWork(database.sessions, readonly=True) as uow:
        return [row.id for row in arr.search(uow.session, arr.AuditQuery(**criteria))]


def verify(database) -> arr.VerifyReport:
    with UnitOfWork(database.sessions, readonly=True) as uow:
        return arr.verify(uow.session)


def test_published_samples_are_stored_valid_and_found_by_patient(database, corpus_dir: Path):
    folder = corpus_dir / AUDIT_DIR
    if not folder.is_dir():
        pytest.skip(f"{AUDIT_DIR} not in the corpus")
    samples = sorted(folder.glob("*.xml"))
    ids = store(database, [incoming(path.read_bytes()) for path in samples])
    assert ids == list(range(1, len(samples) + 1))
    assert find(database, valid=False) == []
    pix_query = ids[[path.name for path in samples].index("pixquery.xml")]
    assert pix_query in find(database, patient="78106^^^PKLN&2.16.840.1.113883.3.37.4.1.1.2.511.1&ISO")
    # a PID-3 repetition audited as one ParticipantObjectID is found by each identifier in it
    merge_source = ids[[path.name for path in samples].index("pixfeedsource.xml")]
    assert merge_source in find(database, patient="IHEBLUE-2342^^^IHEBLUE&1.3.6.1.4.1.21367.13.20.3000&ISO^PI")
    assert verify(database).intact


def test_invalid_messages_are_stored_flagged_with_their_problems(database):
    broken = record_xml().replace(b'EventOutcomeIndicator="0"', b'EventOutcomeIndicator="3"')
    ids = store(database, [
        incoming(broken),
        incoming(b"<AuditMessage><unclosed>"),
        incoming(b'<!DOCTYPE x [<!ENTITY a "aaaa">]><AuditMessage>&a;</AuditMessage>'),
        incoming(b""),
        arr.from_syslog(parse_rfc5424(format_rfc5424(timestamp=NOW, hostname="h", app_name="a", procid="1",
                                                     msgid="SOMETHING", msg=record_xml())),
                        peer="192.0.2.9:5000", transport="udp", received_at=NOW),
        arr.from_invalid_frame(b"<13>garbage", ValueError("MSG-LEN must be digits"), peer="192.0.2.1:9",
                               transport="tcp", received_at=NOW),
    ])
    assert find(database, valid=False, limit=10) == sorted(ids, reverse=True)
    with UnitOfWork(database.sessions, readonly=True) as uow:
        rows = {row.id: row for row in uow.session.execute(select(AuditRecordRow.__table__))}
    problems = {ident: json.loads(rows[ident].problems) for ident in ids}
    assert any("@EventOutcomeIndicator" in p and "'3'" in p for p in problems[ids[0]])
    assert "not well-formed" in problems[ids[1]][0]
    assert "document type declaration" in problems[ids[2]][0]
    assert problems[ids[3]] == ["syslog MSG is empty: no audit message"]
    assert "MSGID" in problems[ids[4]][0]
    assert rows[ids[5]].raw_kind == "syslog" and bytes(rows[ids[5]].raw) == b"<13>garbage"
    # what could be read is still indexed: the broken-outcome message is found by its patient
    assert ids[0] in find(database, patient=PATIENT_A)
    assert rows[ids[0]].outcome is None and rows[ids[0]].event_code == "110110"
    assert verify(database).intact


def test_search_by_each_index(database):
    earlier = NOW - timedelta(days=3)
    ids = store(database, [
        incoming(record_xml(patients=(PATIENT_A, PATIENT_B), when=earlier)),
        incoming(record_xml(patients=(PATIENT_B,), event=("110112", "DCM", "Query"), action="E",
                            event_type=("ITI-9", "IHE Transactions", "PIX Query"), user="OTHER|APP")),
        incoming(record_xml(patients=(PATIENT_A,), event=("110106", "DCM", "Export"), action="R", outcome=8,
                            event_type=("ITI-43", "IHE Transactions", "Retrieve Document Set"),
                            documents=("1.2.3.4.5",), source="repository-2")),
    ])
    first, second, third = ids
    assert find(database, patient=PATIENT_A) == [third, first]
    assert find(database, patient=PATIENT_B) == [second, first]  # one record, two patients: found by each
    assert find(database, user="OTHER|APP") == [second]
    assert find(database, user="HOPITAL|ENGINE") == [third, second, first]
    assert find(database, entity="1.2.3.4.5") == [third]
    assert find(database, entity=PATIENT_B) == [second, first]
    assert find(database, event="110112") == [second]
    assert find(database, event="DCM|110106") == [third]
    assert find(database, event="OTHER|110106") == []
    assert find(database, event_type="ITI-8") == [first]
    assert find(database, outcome=8) == [third]
    assert find(database, action="E") == [second]
    assert find(database, source="repository-2") == [third]
    assert find(database, since=NOW - timedelta(days=1)) == [third, second]
    assert find(database, until=NOW - timedelta(days=1)) == [first]
    assert find(database, patient=PATIENT_A, since=NOW - timedelta(days=1)) == [third]
    assert find(database, patient=PATIENT_B, user="OTHER|APP") == [second]
    assert find(database, patient=PATIENT_A, event_type="ITI-9") == []
    assert find(database, patient="999^^^&1.2&ISO") == []
    assert find(database, limit=1, offset=1) == [second]


def test_patient_history_says_who_what_when_and_how(database):
    store(database, [
        incoming(record_xml(patients=(PATIENT_A,), when=NOW - timedelta(hours=2))),
        incoming(record_xml(patients=(PATIENT_A,), event=("110112", "DCM", "Query"), action="E",
                            event_type=("ITI-9", "IHE Transactions", "PIX Query"), when=NOW - timedelta(hours=1))),
        incoming(record_xml(patients=(PATIENT_A,), event=("110106", "DCM", "Export"), action="R",
                            event_type=("ITI-43", "IHE Transactions", "Retrieve Document Set"),
                            documents=("1.2.3.4.5",), user="DR|VIEWER")),
    ])
    with UnitOfWork(database.sessions, readonly=True) as uow:
        history = arr.patient_history(uow.session, PATIENT_A)
    assert [entry["access"] for entry in history] == ["read", "query", "write"]
    read = history[0]
    assert (read["user"], read["system"], read["documents"]) == ("DR|VIEWER", "192.0.2.9", ["1.2.3.4.5"])
    assert read["transactions"] == ["ITI-43"] and read["when"] == NOW.isoformat()


def test_an_idempotency_key_stores_a_record_once(database):
    first = store(database, [incoming(record_xml(), idempotency_key="k1"), incoming(record_xml(),
                                                                                    idempotency_key="k1")])
    again = store(database, [incoming(record_xml(), idempotency_key="k1"),
                             incoming(record_xml(), idempotency_key="k2")])
    assert first == [1] and again == [2]
    assert verify(database).intact


def _tamper(database, statement) -> None:
    with database.engine.begin() as connection:
        connection.execute(statement)


@pytest.fixture
def chain(database):
    store(database, [incoming(record_xml(patients=(f"{n}^^^&1.2&ISO",))) for n in range(1, 7)])
    assert verify(database).intact
    return database


def test_verify_reports_a_deleted_record(chain):
    _tamper(chain, delete(AuditIndexRow).where(AuditIndexRow.record_id == 3))
    _tamper(chain, delete(AuditRecordRow).where(AuditRecordRow.id == 3))
    assert verify(chain).problems == ["record 3 missing (deleted)"]


def test_verify_reports_deleted_newest_records(chain):
    _tamper(chain, delete(AuditIndexRow).where(AuditIndexRow.record_id >= 5))
    _tamper(chain, delete(AuditRecordRow).where(AuditRecordRow.id >= 5))
    assert verify(chain).problems == ["records 5..6 missing (deleted) (the newest records)"]


@pytest.mark.parametrize("change", [
    update(AuditRecordRow).where(AuditRecordRow.id == 4).values(outcome=12),
    update(AuditRecordRow).where(AuditRecordRow.id == 4).values(raw=b"<AuditMessage/>"),
    update(AuditRecordRow).where(AuditRecordRow.id == 4).values(event_time=NOW - timedelta(days=400)),
    update(AuditIndexRow).where(AuditIndexRow.record_id == 4, AuditIndexRow.kind == "P").values(value="x^^^&1&ISO"),
    delete(AuditIndexRow).where(AuditIndexRow.record_id == 4, AuditIndexRow.kind == "U"),
], ids=["column", "raw", "time", "index-value", "index-row"])
def test_verify_reports_an_altered_record(chain, change):
    _tamper(chain, change)
    assert verify(chain).problems == ["record 4: altered (its hash does not match its content)"]


def test_verify_reports_a_rehashed_record_by_its_broken_link(chain):
    """Someone who alters a record and recomputes its own hash still breaks the next record's link."""
    with UnitOfWork(chain.sessions) as uow:
        row = uow.session.execute(select(AuditRecordRow.__table__).where(AuditRecordRow.id == 2)).one()
        columns = dict(row._mapping, outcome=12)
        keys = [(r.kind, r.value) for r in uow.session.execute(select(AuditIndexRow.__table__).where(
            AuditIndexRow.record_id == 2))]
        forged = arr.record_hash(columns, keys)
    _tamper(chain, update(AuditRecordRow).where(AuditRecordRow.id == 2).values(outcome=12, record_hash=forged))
    assert verify(chain).problems == ["record 3: link to the previous record is broken"]


def test_the_chain_continues_across_batches_and_units_of_work(database):
    for n in range(4):
        store(database, [incoming(record_xml()) for _ in range(n + 1)])
    report = verify(database)
    assert report.intact and report.checked == 10 and report.last_id == 10
    with database.engine.connect() as connection:
        assert connection.execute(text("SELECT last_id FROM audit_chain")).scalar() == 10


def test_concurrent_writers_extend_one_chain(database):
    """Several writers at once (workers, machines on one PostgreSQL): one gapless chain, nothing lost."""
    import threading

    errors = []

    def writer(number: int) -> None:
        try:
            for batch in range(5):
                store(database, [incoming(record_xml(patients=(f"{number}-{batch}-{n}^^^&1.2&ISO",)))
                                 for n in range(20)])
        except Exception as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(number,)) for number in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    report = verify(database)
    assert report.intact and report.checked == 400 and report.last_id == 400


def test_record_hash_keeps_its_canonical_form():
    """Stores written before keep verifying: sha256(prev, sorted compact JSON of the columns, raw sha256, keys)."""
    import hashlib

    columns = {"id": 7, "idempotency_key": None, "received_at": NOW, "event_time": NOW - timedelta(hours=1),
               "event_code": "110110", "event_system": "DCM", "event_text": "Patient Récord", "action": "C",
               "outcome": 0, "source_id": "src", "valid": 1, "problems": None, "transport": "tls", "peer": "p",
               "hostname": None, "app_name": "a", "msgid": "IHE+RFC-3881", "raw_kind": "xml", "raw": b"<x/>",
               "prev_hash": "ab" * 32}
    keys = [("U", "LABO|LAB"), ("P", PATIENT_A)]
    canonical = {name: value for name, value in columns.items() if name not in ("raw", "prev_hash")}
    canonical.update(received_at="2026-11-22T10:00:00.000000+00:00", event_time="2026-11-22T09:00:00.000000+00:00",
                     valid=True, raw=hashlib.sha256(b"<x/>").hexdigest(), keys=[["P", PATIENT_A], ["U", "LABO|LAB"]])
    text = json.dumps(canonical, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    assert arr.record_hash(columns, keys) == hashlib.sha256(
        b"ab" * 32 + b"\n" + text.encode("utf-8")).hexdigest()


@pytest.mark.parametrize("when", [NOW, datetime(5, 3, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=-3))),
                                  datetime(2025, 12, 31, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=5)))])
def test_the_sqlite_insert_writes_times_as_sqlalchemy_does(when):
    from sqlalchemy.dialects import sqlite

    dialect = sqlite.dialect()
    column_type = AuditRecordRow.__table__.c.event_time.type
    assert arr.sqlite_utc_text(when) == column_type.dialect_impl(dialect).bind_processor(dialect)(when)
    with pytest.raises(ValueError):
        arr.sqlite_utc_text(when.replace(tzinfo=None))


def test_a_failed_insert_stores_nothing_and_says_why_as_sqlalchemy_does(database):
    """The bulk insert (COPY on PostgreSQL) reports the database's refusal as SQLAlchemy's exception class, which
    is what the receiver uses to tell "database away, retry" from "bad batch"; the transaction stores nothing."""
    from sqlalchemy.exc import IntegrityError

    store(database, [incoming(record_xml()) for _ in range(3)])

    def counts():
        with database.engine.connect() as connection:
            return [connection.execute(text(f"SELECT count(*) FROM {table}")).scalar()
                    for table in ("audit_record", "audit_index")]

    before = counts()
    with database.engine.begin() as connection:  # a head moved back: the next id already exists
        connection.execute(text("UPDATE audit_chain SET last_id = 1"))
    with pytest.raises(IntegrityError):
        store(database, [incoming(record_xml()) for _ in range(2)])
    assert counts() == before and before[0] == 3


def test_hostile_text_is_stored_exactly_whatever_the_bulk_path(database):
    """Tabs, newlines, backslashes, a COPY null marker and non-ASCII in indexed columns and keys come back as
    sent (PostgreSQL stores through COPY, whose text format escapes them)."""
    tricky = "a\tb\nc\\d \\N é\u2028"
    xml = record_xml(event=("110110", "DCM", tricky), patients=(tricky + "^^^&1.2&ISO",), user=tricky,
                     source="\\N")
    xml = xml.replace(b"a\tb\nc", b"a&#9;b&#10;c")  # attribute values keep tabs and newlines only as references
    (ident,) = store(database, [incoming(xml, hostname=None, peer="\\N")])
    with UnitOfWork(database.sessions, readonly=True) as uow:
        row = arr.get(uow.session, ident)
        assert arr.verify(uow.session).intact
    assert (row.event_text, row.source_id, row.peer, row.hostname) == (tricky, "\\N", "\\N", None)
    assert bytes(row.raw) == xml
    assert find(database, patient=tricky + "^^^&1.2&ISO") == [ident] and find(database, user=tricky) == [ident]
