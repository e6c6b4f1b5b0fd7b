"""``ihe-engine bench audit`` on tiny sizes, so the harness behind BENCHMARKS.rst's ATNA figures keeps working."""

from __future__ import annotations

import json

import pytest

from ihe_engine.bench.audit import main


def test_search_benchmark_populates_then_measures(tmp_path, capsys):
    rows_file = tmp_path / "rows.json"
    assert main(["--json", str(rows_file), "search", "--records", "300", "--patients", "30", "--queries", "20",
                 "--data-dir", str(tmp_path / "var"), "--http"]) == 0
    in_process, http = json.loads(rows_file.read_text())
    for row in (in_process, http):
        assert row["queries"] == 20 and "300 records" in row["name"] and row["p99_ms"] >= row["p50_ms"] > 0
    assert "in process" in in_process["name"] and "GET /fhir/AuditEvent" in http["name"]
    # the store it built is a real repository: its chain verifies
    from ihe_engine.audit import repository
    from ihe_engine.storage import Database, UnitOfWork

    db = Database(f"sqlite:///{tmp_path / 'var' / 'audit-bench.sqlite3'}")
    with UnitOfWork(db.sessions, readonly=True) as uow:
        report = repository.verify(uow.session)
    db.dispose()
    assert report.intact and report.checked >= 300  # the HTTP searches are audited into the same store


@pytest.mark.slow
@pytest.mark.parametrize("client", ["python", "openssl"])
def test_ingest_benchmark_over_tls(tmp_path, capsys, client):
    rows_file = tmp_path / "rows.json"
    assert main(["--json", str(rows_file), "ingest", "--messages", "200", "--connections", "2",
                 "--timeout", "120", "--client", client]) == 0
    (row,) = json.loads(rows_file.read_text())
    assert row["messages"] == 200 and row["stored_per_s"] > 0 and f"{client} client" in row["name"]


def test_bulk_messages_are_the_generated_messages_and_their_facts_what_analyse_reads():
    import datetime as dt
    import random

    from ihe_engine.audit import dicom
    from ihe_engine.bench.audit import _EPOCH, _FactsMaker, bulk_message, generated_message

    generated, bulk, facts = random.Random(11), random.Random(11), _FactsMaker()
    for number in range(120):
        xml, _record = generated_message(number, 17, generated)
        when = _EPOCH + dt.timedelta(seconds=bulk.randrange(0, 365 * 86400))
        assert bulk_message(number, 17, when) == xml
        assert facts.make(number, 17, when) == dicom.analyse(xml)


def test_bulk_population_stores_exactly_what_ingest_stores(database, tmp_path):
    """Same rows, index keys, ids and hashes as the real ingest (real parsing) of the same bytes; chain intact."""
    import random

    from sqlalchemy import select

    from ihe_engine.audit import repository
    from ihe_engine.audit.tables import AuditIndexRow, AuditRecordRow
    from ihe_engine.bench.audit import generated_message, populate
    from ihe_engine.storage import Database, UnitOfWork

    url = database.engine.url.render_as_string(hide_password=False)
    assert populate(url, 250, 40, batch=100, progress=lambda _text: None) == 250
    reference = Database(f"sqlite:///{tmp_path / 'reference.sqlite3'}")
    reference.upgrade()
    rng, items = random.Random(0), []
    for number in range(250):
        xml, record = generated_message(number, 40, rng)
        items.append(repository.Incoming(raw=xml, transport="tls", received_at=record.when, peer="10.0.0.1:1",
                                         msgid=repository.EXPECTED_MSGID))
    with UnitOfWork(reference.sessions) as uow:
        repository.ingest(uow.session, items)
        uow.commit()

    def content(db):
        with UnitOfWork(db.sessions, readonly=True) as uow:
            records = [tuple(row) for row in uow.session.execute(select(AuditRecordRow.__table__)
                                                                  .order_by(AuditRecordRow.id))]
            index = AuditIndexRow.__table__
            keys = sorted(tuple(row) for row in uow.session.execute(
                select(index.c.record_id, index.c.kind, index.c.value, index.c.event_time)))
            return records, keys, repository.verify(uow.session)

    loaded, expected = content(database), content(reference)
    reference.dispose()
    assert [row[:-3] + (bytes(row[-3]),) + row[-2:] for row in loaded[0]] == \
        [row[:-3] + (bytes(row[-3]),) + row[-2:] for row in expected[0]]
    assert loaded[1] == expected[1] and len(loaded[1]) > 3 * 250
    assert loaded[2].intact and loaded[2].checked == 250
    if database.engine.dialect.name == "sqlite":  # the search indexes dropped for the load are back
        with database.engine.connect() as connection:
            names = {row[0] for row in connection.exec_driver_sql("SELECT name FROM sqlite_master WHERE type='index'")}
        assert {"ix_audit_index_lookup", "ix_audit_record_event_time", "ix_audit_record_received_at"} <= names
