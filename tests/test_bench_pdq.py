"""The PDQ benchmark harness on a tiny store: its population is what the feed would store (PDQ finds the people
it generated), and a run measures in process and over MLLP against the real serve with AA answers only."""

from __future__ import annotations

from ihe_engine.bench.pdq import IPP_DOMAIN, family_query, fed_person, main, populate, run
from ihe_engine.identity.pdq_search import PatientQuery, search_patients
from ihe_engine.storage import Database


def test_population_is_searchable_as_fed(tmp_path):
    url = f"sqlite:///{tmp_path / 'engine.sqlite3'}"
    assert populate(url, 120, batch=50, progress=lambda _: None)["added"] == 120
    assert populate(url, 120, batch=50, progress=lambda _: None)["added"] == 0
    db = Database(url)
    try:
        with db.sessions() as session:
            for number in (0, 7, 119):
                identifiers, person = fed_person(number)
                _, arguments = family_query("family+given", number)
                matches = search_patients(session, PatientQuery(**arguments, birth_date=person.birth_date),
                                          limit=50)
                assert identifiers[0] in {cx for match in matches for cx in match.identifiers}
                assert identifiers[0].universal_id == IPP_DOMAIN
    finally:
        db.dispose()


def test_run_measures_in_process_and_over_mllp(tmp_path):
    data_dir = tmp_path / "store"
    data_dir.mkdir()
    assert main(["populate", "--data-dir", str(data_dir), "--patients", "60", "--batch", "30"]) == 0
    rows = run(data_dir, None, 60, 8, [1, 2], ["family", "prefix"])
    assert [row["benchmark"] for row in rows] == [
        "pdq family in process", "pdq prefix in process", "pdq family MLLP x1", "pdq family MLLP x2",
        "pdq prefix MLLP x1", "pdq prefix MLLP x2"]
    assert all(row["count"] == 8 and row["patients"] == 60 and row["backend"] == "sqlite" for row in rows)
