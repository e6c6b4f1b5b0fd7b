"""``ihe-engine conformance nist TESTKIT_DIR --registry URL --repository URL ...``.

Registered by :func:`add_conformance_command` on the main parser's sub-commands; the exit status is 0 when
every selected step passed, 1 when any failed or could not be run, 2 on a usage problem.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["add_conformance_command", "run_nist"]


def _collections(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def add_conformance_command(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``conformance nist`` to an argparse sub-command set (the ``ihe-engine`` top level)."""
    from .nist.testkit import TARGET_COLLECTIONS

    conformance = subparsers.add_parser("conformance", help="replay public conformance test kits against an engine")
    kits = conformance.add_subparsers(dest="conformance_kit", required=True, metavar="KIT")
    nist = kits.add_parser("nist", help="the NIST XDS Toolkit test kit (registry and repository collections)")
    nist.add_argument("testkit", type=Path, metavar="TESTKIT_DIR",
                      help="the nist-iheos-toolkit2 checkout or its testkit directory (read in place)")
    nist.add_argument("--registry", required=True, metavar="URL", help="the registry SOAP endpoint")
    nist.add_argument("--repository", required=True, metavar="URL", help="the repository SOAP endpoint")
    nist.add_argument("--mllp", metavar="HOST:PORT", help="the patient identity feed (ITI-8) listener")
    nist.add_argument("--collections", type=_collections, default=list(TARGET_COLLECTIONS),
                      metavar="A,B,...", help=f"collections to run (default {','.join(TARGET_COLLECTIONS)})")
    nist.add_argument("--tests", nargs="+", metavar="ID", help="only these tests (set-up tests always run)")
    nist.add_argument("--report-json", type=Path, metavar="FILE", help="write the results as JSON")
    nist.add_argument("--junit", type=Path, metavar="FILE", help="write the results as JUnit XML")
    nist.add_argument("--log-dir", type=Path, metavar="DIR", help="write <DIR>/<test>/<section>/log.xml")
    nist.add_argument("--timeout", type=float, default=120.0, help="seconds per request (default 120)")
    nist.add_argument("--keep-going", action="store_true",
                      help="run the next sections of a test after a failed one (the toolkit stops)")
    nist.set_defaults(run=run_nist)
    return nist


def run_nist(args: argparse.Namespace) -> int:
    from .nist.report import PASS, summary_lines, write_json, write_junit
    from .nist.runner import Replayer, RunnerConfig, parse_hostport
    from .nist.testkit import TestKit

    try:
        kit = TestKit(args.testkit)
        mllp = parse_hostport(args.mllp) if args.mllp else None
        for name in args.collections:
            kit.collection(name)
    except (FileNotFoundError, KeyError, ValueError) as exc:
        print(f"ihe-engine conformance nist: {exc}", file=sys.stderr)
        return 2
    config = RunnerConfig(registry_url=args.registry, repository_url=args.repository, mllp=mllp,
                          log_dir=args.log_dir, timeout=args.timeout, stop_on_first_failure=not args.keep_going)
    report = Replayer(kit, config).run(args.collections, tests=args.tests)
    for line in summary_lines(report):
        print(line)
    if args.report_json:
        write_json(report, args.report_json)
    if args.junit:
        write_junit(report, args.junit)
    return 0 if all(t.outcome == PASS for t in report.tests) else 1
