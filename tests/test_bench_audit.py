"""``ihe-engine bench audit`` on tiny sizes, so the harness behind BENCHMARKS.rst's ATNA figures keeps working."""

from __future__ import annotations

import json

import pytest

from ihe_engine.bench.audit import main


def test_search_benchmark_populates_then_measures(tmp_path, capsys):
    rows_file = tmp_path / "rows.json"
    assert main(["--json", str(rows_file), "search", "--records", "300", "--patients", "30", "--queries", "20",
                 "--data-dir", str(tmp_path / "var")]) == 0
    (row,) = json.loads(rows_file.read_text())
    assert row["queries"] == 20 and "300 records" in row["name"] and row["p99_ms"] >= row["p50_ms"] > 0
    # the store it built is a real repository: its chain verifies
    from ihe_engine.audit import repository
    from ihe_engine.storage import Database, UnitOfWork

    db = Database(f"sqlite:///{tmp_path / 'var' / 'audit-bench.sqlite3'}")
    with UnitOfWork(db.sessions, readonly=True) as uow:
        report = repository.verify(uow.session)
    db.dispose()
    assert report.intact and report.checked == 300


@pytest.mark.slow
def test_ingest_benchmark_over_tls(tmp_path, capsys):
    rows_file = tmp_path / "rows.json"
    assert main(["--json", str(rows_file), "ingest", "--messages", "200", "--connections", "2",
                 "--timeout", "120"]) == 0
    (row,) = json.loads(rows_file.read_text())
    assert row["messages"] == 200 and row["stored_per_s"] > 0
