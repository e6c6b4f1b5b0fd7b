"""``ihe-engine bench pdq {populate,run}``: PDQ (ITI-21) by family name on a store of a million patients (issue 4).

``populate`` writes patients as the ITI-8 feed stores them -- ``patient`` rows from the store's own trait helper
(search keys included), their identifiers (a local IPP, and an INS for half of them) and their ``patient_name_key``
rows from :func:`~ihe_engine.identity.names.name_key_rows` -- many patients per multi-row INSERT (no
``identity_event`` rows: PDQ never reads them). Names are drawn from syllables, so some family names are shared by
hundreds of patients and most by a few dozen; 8 % are hyphenated compound names, 20 % of patients have a birth name
besides their used name.

``run`` measures a query by family name (exact), by family name prefix (``ABC*``) and by family and given name,
RCP-2 ``10^RD``: in process (:func:`~ihe_engine.identity.pdq_search.search_patients` in a read-only unit of work)
and over MLLP against the real ``serve`` (closed loop, 1 and 4 connections). Every MLLP answer must be an AA. The
load average when each row started is printed with it: the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

from .cli import launch, print_table
from .loadgen import mllp_answer_end, run_closed_loop
from .stats import machine_description, summarize

__all__ = ["main", "build_parser", "populate", "fed_person", "family_query", "FAMILY", "IPP_DOMAIN"]

IPP_DOMAIN = "1.2.250.1.71.4.99.1"
INS_DOMAIN = "1.2.250.1.213.1.4.8"
_SYLLABLES = ("BER", "NAR", "DU", "MO", "REAU", "LE", "ROY", "FON", "TAI", "NE", "GAR", "CIA", "PE", "TIT", "VAL",
              "LIN", "CHA", "MBON", "RO", "SEAU", "GI", "RARD", "FAU", "RE", "MAS", "SON", "BLAN", "CHET")
_GIVEN = ("JEAN", "MARIE", "PIERRE", "ANNE", "LOUIS", "JULIE", "PAUL", "CLAIRE", "HUGO", "LEA", "NOAH", "EMMA",
          "LUCAS", "CHLOE", "ADAM", "INES", "JULES", "ZOE", "ARTHUR", "ALICE")
_CITIES = (("PARIS", "75011"), ("LYON", "69003"), ("NANTES", "44000"), ("LILLE", "59000"), ("NICE", "06000"))
FAMILY = "family"
_KINDS = (FAMILY, "prefix", "family+given")


def _name(rng: random.Random) -> str:
    return "".join(rng.choice(_SYLLABLES) for _ in range(2 if rng.random() < 0.4 else 3))


def fed_person(number: int) -> tuple[list, object]:
    """(identifiers, Demographics) of benchmark patient ``number``, the same on every call."""
    from ..identity.cx import CX
    from ..identity.store import Demographics

    rng = random.Random(number)
    family = _name(rng)
    if rng.random() < 0.08:
        family = f"{family}-{_name(rng)}"
    birth_name = _name(rng) if rng.random() < 0.2 else None
    city, postal = rng.choice(_CITIES)
    identifiers = [CX(id=f"PDQB{number:07d}", namespace_id="BENCH-IPP", universal_id=IPP_DOMAIN,
                      universal_id_type="ISO", type_code="PI")]
    if number % 2 == 0:
        identifiers.append(CX(id=f"{1 + number % 2}{number:014d}", namespace_id="ASIP-SANTE-INS-NIR",
                              universal_id=INS_DOMAIN, universal_id_type="ISO", type_code="INS"))
    return identifiers, Demographics(
        family_name=family, birth_name=birth_name, given_name=rng.choice(_GIVEN),
        birth_date=f"{rng.randrange(1930, 2024)}{rng.randrange(1, 13):02d}{rng.randrange(1, 29):02d}",
        sex=rng.choice("MF"), street=f"{rng.randrange(1, 200)} RUE DES LILAS", city=city, postal_code=postal,
        country="FRA", phone=f"06{rng.randrange(10 ** 8):08d}")


def _insert_batch(session, numbers: Sequence[int]) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import insert

    from ..identity.names import name_key_rows
    from ..identity.store import _identifier_values, _trait_values
    from ..identity.tables import Patient, PatientIdentifier, PatientNameKey

    people = [fed_person(number) for number in numbers]
    traits = [_trait_values(demographics) for _, demographics in people]
    ids = session.scalars(insert(Patient).returning(Patient.id, sort_by_parameter_order=True), traits).all()
    session.execute(insert(PatientIdentifier), [_identifier_values(patient, cx) for patient, (identifiers, _) in
                                                zip(ids, people) for cx in identifiers])
    keys = [row for patient, values in zip(ids, traits) for row in name_key_rows(patient, values)]
    session.execute(insert(PatientNameKey), keys)


def _present(db) -> int:  # type: ignore[no-untyped-def]
    from sqlalchemy import func, select

    from ..identity.tables import PatientIdentifier

    with db.sessions() as session:
        return session.scalar(select(func.count()).select_from(PatientIdentifier)
                              .where(PatientIdentifier.authority_key == IPP_DOMAIN)) or 0


def _search_indexes() -> list:  # type: ignore[type-arg]
    """The secondary indexes of the tables populated (unique constraints and primary keys stay)."""
    from ..identity.tables import Patient, PatientIdentifier, PatientNameKey

    return [index for model in (Patient, PatientIdentifier, PatientNameKey)
            for index in sorted(model.__table__.indexes, key=lambda index: index.name or "")]


def populate(db_url: str, patients: int, *, batch: int = 5000, progress: Callable[[str], None] = print,
             rebuild_indexes_above: int = 100_000) -> dict:
    """Add benchmark patients until ``patients`` exist, then ANALYZE.

    Above ``rebuild_indexes_above`` new patients, the secondary indexes are dropped first and built again at the
    end (a sorted build instead of a million random inserts into each). An interrupted populate leaves them
    missing; populating again (even with nothing to add) builds them.
    """
    from sqlalchemy import event, text

    from ..storage import Database, UnitOfWork

    db = Database(db_url)
    db.upgrade()
    if db.is_sqlite:  # a 1M-patient store's indexes do not fit SQLite's default 2 MB page cache
        event.listen(db.engine, "connect", lambda connection, _record: connection.execute("PRAGMA cache_size=-1048576"))
        db.engine.dispose()
    start = time.perf_counter()
    try:
        present = _present(db)
        rebuild = patients - present > rebuild_indexes_above
        if rebuild:
            for index in _search_indexes():
                index.drop(db.engine, checkfirst=True)
        for first in range(present, patients, batch):
            with UnitOfWork(db.sessions) as uow:
                _insert_batch(uow.session, range(first, min(patients, first + batch)))
                uow.commit()
            if (first // batch) % 20 == 0:
                progress(f"  populated {min(patients, first + batch):,} / {patients:,}")
        for index in _search_indexes():
            index.create(db.engine, checkfirst=True)
        loaded = time.perf_counter() - start
        with db.engine.connect() as connection:
            connection.execute(text("ANALYZE"))
            connection.commit()
    finally:
        db.dispose()
    added = max(0, patients - present)
    return {"benchmark": f"pdq populate to {patients:,}", "added": added, "seconds": round(loaded, 1),
            "per_second": round(added / loaded, 1) if loaded and added else 0.0}


# -- queries ---------------------------------------------------------------------------------------------------

def family_query(kind: str, number: int) -> tuple[str, dict]:
    """(QPD-3 text, PatientQuery arguments) of a query of ``kind`` aimed at benchmark patient ``number``."""
    _, person = fed_person(number)
    family = person.family_name.split("-")[0]  # type: ignore[attr-defined]
    if kind == "prefix":
        return f"@PID.5.1.1^{family[:5]}*", {"family_name": f"{family[:5]}*"}
    if kind == "family+given":
        given = person.given_name  # type: ignore[attr-defined]
        return f"@PID.5.1.1^{family}~@PID.5.2^{given}", {"family_name": family, "given_name": given}
    return f"@PID.5.1.1^{family}", {"family_name": family}


def _qbp(kind: str, sequence: int, patients: int, rng: random.Random) -> bytes:
    qpd, _ = family_query(kind, rng.randrange(patients))
    text = (f"MSH|^~\\&|BENCH_PDC|BENCH|IHE_ENGINE|REGION|20261122010000||QBP^Q22^QBP_Q21|PDQ{sequence}|P|2.5\r"
            f"QPD|IHE PDQ Query|T{sequence}|{qpd}\rRCP|I|10^RD\r")
    return b"\x0b" + text.encode() + b"\x1c\x0d"


def bench_in_process(db_url: str, kind: str, patients: int, count: int, seed: int = 7) -> dict:
    from ..identity.pdq_search import PatientQuery, search_patients
    from ..storage import Database, UnitOfWork

    db = Database(db_url)
    rng = random.Random(seed)
    load = os.getloadavg()[0]
    latencies = []
    try:
        for _ in range(count):
            _, arguments = family_query(kind, rng.randrange(patients))
            started = time.perf_counter()
            with UnitOfWork(db.sessions, readonly=True) as uow:
                search_patients(uow.session, PatientQuery(**arguments), limit=11)
            latencies.append(time.perf_counter() - started)
    finally:
        db.dispose()
    return summarize(f"pdq {kind} in process", latencies, sum(latencies), patients=patients,
                     backend=_backend(db_url), load_1m=round(load, 2)).as_row()


def bench_mllp(host: str, port: int, kind: str, patients: int, count: int, connections: int,
               db_url: str) -> dict:
    rng = random.Random(connections)
    load = os.getloadavg()[0]
    latencies, seconds, failures = run_closed_loop(
        host, port, b"", connections=connections, total=count, answer_end=mllp_answer_end,
        check=lambda answer: b"MSA|AA|" in answer, make_request=lambda sequence: _qbp(kind, sequence, patients, rng))
    if failures:
        raise RuntimeError(f"{failures} PDQ answers were not AA")
    return summarize(f"pdq {kind} MLLP x{connections}", latencies, seconds, patients=patients,
                     backend=_backend(db_url), load_1m=round(load, 2)).as_row()


def _backend(db_url: str) -> str:
    return "postgresql" if db_url.startswith("postgresql") else "sqlite"


def _serve_command(data_dir: Path, db_url: str | None) -> list[str]:
    command = [sys.executable, "-m", "ihe_engine.cli", "serve", "--data-dir", str(data_dir), "--http-port", "0",
               "--mllp-port", "0", "--audit-tcp-port", "0", "--audit-udp-port", "0"]
    return command + (["--db-url", db_url] if db_url else [])


def run(data_dir: Path, db_url: str | None, patients: int, count: int, connections: Sequence[int],
        kinds: Sequence[str]) -> list[dict]:
    url = db_url or f"sqlite:///{(data_dir / 'engine.sqlite3').resolve()}"
    rows = [bench_in_process(url, kind, patients, count) for kind in kinds]
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / "bench-serve.log", "ab") as log:
        with launch(_serve_command(data_dir, db_url), stderr=log, stop_timeout=60.0, what="serve") as engine:
            host, port, _ = engine.address("mllp")
            for kind in kinds:
                for connection_count in connections:
                    rows.append(bench_mllp(host, port, kind, patients, count, connection_count, url))
    return rows


# -- command line ----------------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ihe-engine bench pdq", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=("populate", "run"))
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="store directory (SQLite store and serve's files; default: a temporary directory)")
    parser.add_argument("--db-url", help="PostgreSQL URL instead of SQLite in --data-dir")
    parser.add_argument("--patients", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--queries", type=int, default=2000, help="queries per row")
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--kinds", nargs="+", choices=_KINDS, default=list(_KINDS))
    parser.add_argument("--json", type=Path, help="also write the result rows to this file")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="ihe-bench-pdq-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    url = args.db_url or f"sqlite:///{(data_dir / 'engine.sqlite3').resolve()}"
    if args.step == "populate":
        rows = [populate(url, args.patients, batch=args.batch)]
    else:
        rows = run(data_dir, args.db_url, args.patients, args.queries, args.connections, args.kinds)
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps({"machine": machine_description(), "rows": rows}, indent=2))
    return 0
