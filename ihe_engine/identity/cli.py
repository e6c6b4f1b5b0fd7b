"""``ihe-engine identity``: the identity-vigilance queue and patient history from the command line.

* ``identity queue list [--status open|accepted|rejected|all] [--json]``
* ``identity queue accept ID --by NAME`` / ``identity queue reject ID --by NAME``
* ``identity history CX [--json]``

They read and write the same store as ``serve`` (``--data-dir``/``--db-url``/``--config``), through the same
:class:`~ihe_engine.identity.vigilance.VigilanceDesk` as the HTTP API, so a decision made here links, records
history, enqueues ITI-10 notifications and is audited exactly as one made over HTTP. Exit status: 0 done,
1 refused (unknown item or patient, already decided, not linkable), 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from typing import Any

from ..config import add_store_arguments, settings_from_args

__all__ = ["add_identity_command"]


def add_identity_command(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    identity = subparsers.add_parser("identity", help="identity vigilance queue and patient history")
    actions = identity.add_subparsers(dest="identity_action", required=True, metavar="ACTION")

    queue = actions.add_parser("queue", help="the identity-vigilance queue")
    queue_actions = queue.add_subparsers(dest="queue_action", required=True, metavar="ACTION")
    listing = queue_actions.add_parser("list", help="list vigilance items (open ones by default)")
    listing.add_argument("--status", choices=("open", "accepted", "rejected", "all"), default="open")
    listing.add_argument("--limit", type=int, default=100)
    listing.add_argument("--json", action="store_true", help="print JSON instead of lines")
    add_store_arguments(listing)
    listing.set_defaults(run=_run_list)
    for name, accept in (("accept", True), ("reject", False)):
        decide = queue_actions.add_parser(name, help=f"{name} one item ({'link the two patients' if accept else 'keep them apart, for good'})")
        decide.add_argument("item", type=int, metavar="ID")
        decide.add_argument("--by", default=None, help="who decides (default: the login name)")
        add_store_arguments(decide)
        decide.set_defaults(run=_run_decide, accept=accept)

    history = actions.add_parser("history", help="what happened to the person a patient identifier designates")
    history.add_argument("identifier", metavar="CX", help="e.g. 'IPP123^^^&1.2.250.1.71.1.2.3&ISO'")
    history.add_argument("--json", action="store_true")
    add_store_arguments(history)
    history.set_defaults(run=_run_history)
    return identity


def _desk(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from ..audit import AuditHook
    from ..audit.sinks import LogAuditSink
    from ..plugins import create_plugin_manager
    from ..storage import Database, UnitOfWork
    from .vigilance import VigilanceDesk

    settings = settings_from_args(args)
    db = Database(settings.database_url)
    db.upgrade()
    plugins = create_plugin_manager()
    plugins.register(LogAuditSink(), name="log-audit-sink")

    def uow(*, readonly: bool = False) -> UnitOfWork:
        return UnitOfWork(db.sessions, readonly=readonly)

    return VigilanceDesk.from_settings(settings, uow, AuditHook(plugins))


def _refused(run):  # type: ignore[no-untyped-def]
    from .vigilance import VigilanceError

    def wrapped(args: argparse.Namespace) -> int:
        try:
            return run(args)
        except VigilanceError as exc:
            print(f"ihe-engine identity: {exc}", file=sys.stderr)
            return 1

    return wrapped


@_refused
def _run_list(args: argparse.Namespace) -> int:
    items = _desk(args).list_items(status=None if args.status == "all" else args.status, limit=args.limit)
    if args.json:
        print(json.dumps({"items": items}, ensure_ascii=False, indent=2))
        return 0
    for item in items:
        print(_item_line(item))
    if not items:
        print(f"no {args.status if args.status != 'all' else ''} vigilance items".replace("  ", " "))
    return 0


@_refused
def _run_decide(args: argparse.Namespace) -> int:
    item = _desk(args).decide(args.item, accept=args.accept, by=args.by or getpass.getuser())
    print(_item_line(item))
    return 0


@_refused
def _run_history(args: argparse.Namespace) -> int:
    history = _desk(args).history(args.identifier)
    if args.json:
        print(json.dumps(history, ensure_ascii=False, indent=2))
        return 0
    print(f"{history['identifier']}: {history['state']}, patient {history['patient_id']}")
    print("identifiers: " + ", ".join(history["identifiers"]))
    for event in history["events"]:
        control = f" MSH-10 {event['control_id']}" if event["control_id"] else ""
        print(f"{event['occurred_at']} {event['kind']:<16} patient {event['patient_id']}"
              f"{' with ' + str(event['other_patient_id']) if event['other_patient_id'] else ''}{control}")
    for item in history["vigilance"]:
        print(_item_line(item))
    return 0


def _item_line(item: dict[str, Any]) -> str:
    decided = f" by {item['decided_by']} at {item['decided_at']}" if item["decided_by"] else ""
    other = ", ".join(item["other_patient_identifiers"]) or "-"
    return (f"#{item['id']} {item['kind']} {item['status']}{decided}: "
            f"{', '.join(item['patient_identifiers'])} <-> {other}: {item['reason']}")
