"""``ihe-engine audit search|history|verify``: read the Audit Record Repository a running ``serve`` writes."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["add_audit_command"]


def add_audit_command(commands: Any) -> None:
    from ..config import add_store_arguments

    audit = commands.add_parser("audit", help="Audit Record Repository: search, patient history, verify")
    actions = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")

    search = actions.add_parser("search", help="find audit records (newest first)")
    add_store_arguments(search)
    search.add_argument("--patient", metavar="CX", help="patient id as audited (e.g. 123^^^&1.2.3&ISO)")
    search.add_argument("--event", metavar="CODE", help="EventID code, or codeSystemName|code (e.g. DCM|110112)")
    search.add_argument("--type", dest="event_type", metavar="CODE", help="EventTypeCode (e.g. ITI-8)")
    search.add_argument("--since", metavar="T", help="event time from (date or ISO 8601 date-time)")
    search.add_argument("--until", metavar="T", help="event time up to (a date means its whole day)")
    search.add_argument("--user", metavar="U", help="ActiveParticipant UserID")
    search.add_argument("--entity", metavar="ID", help="any ParticipantObjectID")
    search.add_argument("--outcome", type=int, choices=(0, 4, 8, 12))
    search.add_argument("--source", metavar="ID", help="AuditSourceID")
    search.add_argument("--invalid", action="store_true", help="only messages stored as invalid")
    search.add_argument("--limit", type=int, default=100)
    search.add_argument("--json", action="store_true", help="FHIR AuditEvent JSON, one per line")
    search.set_defaults(run=_cmd_search)

    history = actions.add_parser("history", help="a patient's access history: who, what, when, how")
    add_store_arguments(history)
    history.add_argument("--patient", metavar="CX", required=True)
    history.add_argument("--since", metavar="T")
    history.add_argument("--until", metavar="T")
    history.add_argument("--json", action="store_true")
    history.set_defaults(run=_cmd_history)

    verify = actions.add_parser("verify", help="check the hash chain: report deleted or altered records")
    add_store_arguments(verify)
    verify.set_defaults(run=_cmd_verify)


def _open(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from ..config import settings_from_args
    from ..storage import Database, UnitOfWork

    settings = settings_from_args(args)
    db = Database(settings.database_url)
    db.upgrade()
    return db, UnitOfWork(db.sessions, readonly=True)


def _times(args: argparse.Namespace) -> tuple[Any, Any]:
    from ..errors import ConfigurationError
    from .fhir import parse_time

    try:
        since = parse_time(args.since) if args.since else None
        until = parse_time(args.until, end=True) if args.until else None
    except ValueError as error:
        raise ConfigurationError(f"--since/--until: {error}") from None
    return since, until


def _cmd_search(args: argparse.Namespace) -> int:
    from . import fhir, repository

    since, until = _times(args)
    query = repository.AuditQuery(patient=args.patient, event=args.event, event_type=args.event_type, since=since,
                                  until=until, user=args.user, entity=args.entity, outcome=args.outcome,
                                  source=args.source, valid=False if args.invalid else None, limit=args.limit)
    db, uow = _open(args)
    try:
        with uow:
            rows = repository.search(uow.session, query)
            for row in rows:
                if args.json:
                    print(json.dumps(fhir.audit_event(row), ensure_ascii=False))
                else:
                    print(_line(row))
    finally:
        db.dispose()
    if not args.json:
        print(f"{len(rows)} record(s)", file=sys.stderr)
    return 0


def _line(row: Any) -> str:
    flag = "" if row.valid else "  INVALID: " + "; ".join(json.loads(row.problems or "[]"))[:300]
    return (f"{row.id}\t{row.event_time.isoformat()}\t{row.event_code or '-'} {row.event_text or ''}\t"
            f"action={row.action or '-'}\toutcome={row.outcome if row.outcome is not None else '-'}\t"
            f"source={row.source_id or '-'}\tvia={row.transport}:{row.peer or '-'}{flag}")


def _cmd_history(args: argparse.Namespace) -> int:
    from . import repository

    since, until = _times(args)
    db, uow = _open(args)
    try:
        with uow:
            entries = repository.patient_history(uow.session, args.patient, since=since, until=until)
    finally:
        db.dispose()
    if args.json:
        print(json.dumps({"patient": args.patient, "entries": entries}, ensure_ascii=False, indent=1))
        return 0
    for entry in entries:
        documents = ",".join(entry["documents"]) or "-"
        print(f"{entry['when']}\t{entry['access']}\t{entry['event']['display'] or entry['event']['code']}\t"
              f"user={entry['user'] or '-'}\tsystem={entry['system'] or '-'}\tdocuments={documents}\t"
              f"outcome={entry['outcome']}")
    print(f"{len(entries)} access(es)", file=sys.stderr)
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from . import repository

    db, uow = _open(args)
    try:
        with uow:
            report = repository.verify(uow.session)
    finally:
        db.dispose()
    for problem in report.problems:
        print(problem)
    state = "intact" if report.intact else f"NOT intact ({len(report.problems)} problem(s))"
    print(f"audit chain {state}: {report.checked} record(s) checked, last id {report.last_id}")
    return 0 if report.intact else 1
