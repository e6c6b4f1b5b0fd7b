"""``ihe-engine bench iti8``: ITI-8 Patient Identity Feed throughput (issue 4) on stores of growing size.

For each population size, in ascending order, the store is brought to that many patients with the XDS
benchmark's bulk loader (the rows ``create_or_update`` writes for an A01), then the real ``serve`` is started on it
and driven over MLLP by the closed-loop client: unique A01s (new people, each with a name and birth date of their
own, so the linking policy meets realistic near-match candidates: the populated patients born that day) mixed
with A08 updates of populated patients, on 1 and 20 connections. Every answer must be an AA; the rate counts
messages acknowledged (after commit).

Each row also gives the server's CPU time per message and the load average when the run started: the machine is
shared, so a rate alone does not say how much of the machine the engine had.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .xds import DOMAIN, _fed_patient, feed_patient_bulk, serve_command

__all__ = ["main", "build_parser", "FeedWorkload", "populate_to", "bench_feed"]

_CONSONANTS, _VOWELS = "BCDFGHJKLMNPRSTVZ", "AEIOUY"
_GIVEN = ("JEAN", "MARIE", "PIERRE", "ANNE", "LOUIS", "JULIE", "PAUL", "CLAIRE", "HUGO", "LEA", "NOAH", "EMMA",
          "LUCAS", "CHLOE", "ADAM", "INES", "JULES", "ZOE", "ARTHUR", "ALICE")
_CITIES = (("PARIS", "75011"), ("LYON", "69003"), ("NANTES", "44000"), ("LILLE", "59000"), ("NICE", "06000"),
           ("RENNES", "35000"), ("DIJON", "21000"), ("BREST", "29200"))
_ACCEPTED = b"MSA|AA|"


@dataclass
class FeedWorkload:
    """Pre-built MLLP frames: unique A01s for new patients and A08s for populated ones (``update_share``)."""

    populated: int
    update_share: float
    rng: random.Random
    run_id: str

    def frames(self, count: int, first: int) -> list[bytes]:
        return [self.frame(first + index) for index in range(count)]

    def frame(self, number: int) -> bytes:
        control_id = f"{self.run_id}-{number}"
        if self.populated and self.rng.random() < self.update_share:
            text = self._a08(control_id, self.rng.randrange(self.populated))
        else:
            text = self._a01(control_id, number)
        return b"\x0b" + text.encode() + b"\x1c\x0d"

    def _a01(self, control_id: str, number: int) -> str:
        rng = self.rng
        family = _family_name(rng)
        birth = f"{rng.randrange(1930, 2024)}{rng.randrange(1, 13):02d}{rng.randrange(1, 29):02d}"
        city, postal = rng.choice(_CITIES)
        pid3 = f"F{self.run_id}{number:07d}^^^&{DOMAIN}&ISO"
        return _adt("A01", control_id, pid3, f"{family}^{rng.choice(_GIVEN)}^^^^^L", birth, rng.choice("MF"),
                    f"{rng.randrange(1, 200)} RUE DES LILAS^^{city}^^{postal}^FRA", f"06{rng.randrange(10**8):08d}")

    def _a08(self, control_id: str, patient: int) -> str:
        """An update of populated patient ``patient``: same name and birth date, a new address and phone."""
        identifier, demographics, _ = _fed_patient(patient)
        city, postal = self.rng.choice(_CITIES)
        return _adt("A08", control_id, identifier.to_hl7(),
                    f"{demographics.family_name}^{demographics.given_name}^^^^^L", demographics.birth_date or "",
                    demographics.sex or "", f"{self.rng.randrange(1, 200)} AVENUE FOCH^^{city}^^{postal}^FRA",
                    f"07{self.rng.randrange(10**8):08d}")


def _family_name(rng: random.Random) -> str:
    """A pronounceable name of 6 to 10 letters: two new people born the same day rarely have names one or two
    typing errors apart, as in a real population (the linking policy would send such pairs to vigilance)."""
    return "".join(rng.choice(_CONSONANTS) + rng.choice(_VOWELS) for _ in range(rng.randrange(3, 6)))


def _adt(trigger: str, control_id: str, pid3: str, name: str, birth: str, sex: str, address: str,
         phone: str) -> str:
    return (f"MSH|^~\\&|BENCH_ADT|BENCH_HOSP|IHE_ENGINE|REGION|20261122010000||ADT^{trigger}^ADT_A01|{control_id}|P|"
            f"2.5\rEVN|{trigger}|20261122010000\rPID|||{pid3}||{name}||{birth}|{sex}|||{address}||{phone}\r"
            f"PV1||I\r")


# -- population ------------------------------------------------------------------------------------------------

def populated_count(db_url: str) -> int:
    """Patients the bulk loader already wrote (``BENCH<n>`` identifiers in the benchmark domain)."""
    from sqlalchemy import text

    from ..storage import Database

    db = Database(db_url)
    db.upgrade()
    try:
        with db.engine.connect() as connection:
            return connection.execute(text(
                "SELECT count(*) FROM patient_identifier WHERE authority_key = :domain AND value >= 'BENCH' "
                "AND value < 'BENCI'"), {"domain": DOMAIN}).scalar_one()
    finally:
        db.dispose()


def stored_patients(db_url: str) -> int:
    """Every patient record in the store (populated ones and those earlier runs' A01s created)."""
    from sqlalchemy import func, select

    from ..identity.tables import Patient
    from ..storage import Database

    db = Database(db_url)
    try:
        with db.engine.connect() as connection:
            return connection.execute(select(func.count()).select_from(Patient)).scalar_one()
    finally:
        db.dispose()


def populate_to(db_url: str, patients: int, *, batch: int = 5000,
                progress=print) -> dict:  # type: ignore[no-untyped-def]
    """Add populated patients until ``patients`` exist, then ANALYZE; returns what it did and how long it took."""
    from sqlalchemy import text

    from ..storage import Database, UnitOfWork

    present = populated_count(db_url)
    db = Database(db_url)
    start = time.perf_counter()
    try:
        for first in range(present, patients, batch):
            with UnitOfWork(db.sessions) as uow:
                feed_patient_bulk(uow.session, range(first, min(patients, first + batch)))
                uow.commit()
            if (first // batch) % 20 == 0:
                progress(f"  populated {min(patients, first + batch):,} / {patients:,}")
        loaded = time.perf_counter() - start
        with db.engine.connect() as connection:
            connection.execute(text("ANALYZE"))
            connection.commit()
    finally:
        db.dispose()
    added = max(0, patients - present)
    return {"benchmark": f"populate to {patients:,}", "added": added, "seconds": round(loaded, 1),
            "per_second": round(added / loaded, 1) if loaded and added else 0.0,
            "analyze_s": round(time.perf_counter() - start - loaded, 1)}


# -- measurement -----------------------------------------------------------------------------------------------

def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` and its children processes (``--workers``)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for candidate in [pid, *_children(pid)]:
        try:
            with open(f"/proc/{candidate}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
        except (OSError, IndexError, ValueError):
            continue
    return total


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    if int(handle.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    return found


def bench_feed(engine, frames: Sequence[bytes], *, connections: int,  # type: ignore[no-untyped-def]
               label: str) -> dict:
    """Closed loop over ``connections`` MLLP connections; every answer checked AA."""
    from .loadgen import mllp_answer_end, run_closed_loop
    from .stats import summarize

    host, port, _ = engine.address("mllp")
    load = os.getloadavg()[0]
    cpu_before = _cpu_seconds(engine.pid)
    latencies, seconds, failures = run_closed_loop(
        host, port, b"", connections=connections, total=len(frames), answer_end=mllp_answer_end,
        make_request=lambda n: frames[n], check=lambda answer: _ACCEPTED in answer)
    cpu = _cpu_seconds(engine.pid) - cpu_before
    return summarize(f"ITI-8 {label} x{connections}", latencies, seconds, failed=failures,
                     server_cpu_ms_per_msg=round(cpu * 1000 / max(1, len(frames)), 3),
                     load_avg_1m=round(load, 2)).as_row()


def _serve(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from .cli import launch

    command = serve_command(args.data_dir, args.db_url, None, engine_path=args.engine_path)
    for flag, value in (("--workers", args.workers), ("--db-threads", args.db_threads),
                        ("--hl7-batch-size", args.hl7_batch_size), ("--config", args.config)):
        if value is not None:
            command += [flag, str(value)]
    args.data_dir.mkdir(parents=True, exist_ok=True)
    log = open(args.data_dir / "bench-serve.log", "ab")
    return log, launch(command, stderr=log, stop_timeout=60.0,
                       what=f"serve (see {args.data_dir / 'bench-serve.log'})")


def measure(args: argparse.Namespace, patients: int) -> list[dict]:
    rows = []
    rng = random.Random(f"{args.seed}:{stored_patients(_database_url(args))}")
    log, server = _serve(args)
    with log, server as engine:
        workload = FeedWorkload(populated=patients, update_share=args.update_share, rng=rng,
                                run_id=uuid.uuid4().hex[:8])
        bench_feed(engine, workload.frames(args.warmup, 0), connections=1, label="warm-up")
        first = args.warmup
        for connections in args.connections:
            frames = workload.frames(args.messages, first)
            first += args.messages
            label = f"{patients:,} patients, {args.update_share:.0%} A08"
            rows.append({**bench_feed(engine, frames, connections=connections, label=label), "patients": patients})
    return rows


def _database_url(args: argparse.Namespace) -> str:
    from ..config import Settings

    return Settings(data_dir=args.data_dir, db_url=args.db_url).database_url


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ihe-engine bench iti8", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db-url", help="store (default: SQLite in --data-dir, as serve)")
    parser.add_argument("--data-dir", type=Path, default=Path("./var-bench-iti8"),
                        help="engine data directory (SQLite file, serve log); the store grows across runs")
    parser.add_argument("--patients", type=int, nargs="+", default=[10_000, 100_000],
                        help="population sizes measured, ascending (each adds patients to the same store)")
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 20])
    parser.add_argument("--messages", type=int, default=5000, help="messages per measurement")
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--update-share", type=float, default=0.1, help="share of A08 updates of populated patients")
    parser.add_argument("--workers", type=int, help="serve --workers")
    parser.add_argument("--db-threads", type=int, help="serve --db-threads")
    parser.add_argument("--hl7-batch-size", type=int, help="serve --hl7-batch-size (1 turns group commit off)")
    parser.add_argument("--config", type=Path, help="serve --config (a TOML file: audit destinations, linking, ...)")
    parser.add_argument("--engine-path", type=Path,
                        help="serve another checkout of the engine (A/B on one store: the directory holding its "
                             "ihe_engine package)")
    parser.add_argument("--seed", type=int, default=8,
                        help="workload seed, mixed with the store's patient count: a run on a store an earlier run "
                             "grew sends new people, not the earlier run's again (which the linking policy would "
                             "send to vigilance, every one)")
    parser.add_argument("--json", type=Path, help="also write the result rows to this file")
    return parser


def main(argv: list[str] | None = None) -> int:
    from .cli import print_table
    from .stats import machine_description

    args = build_parser().parse_args(argv)
    rows: list[dict] = []
    for patients in sorted(args.patients):
        print(f"populating to {patients:,} patients", file=sys.stderr)
        rows.append(populate_to(_database_url(args), patients, progress=lambda line: print(line, file=sys.stderr)))
        rows.extend(measure(args, patients))
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps({"machine": machine_description(), "rows": rows}, indent=2))
    return 0
