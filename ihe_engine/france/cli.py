"""``ihe-engine ins``: check a NIR/NIA and compute an INS-C from the command line, for integrators and support."""

from __future__ import annotations

import argparse
import sys

from .insc import InscError, compute_insc
from .nir import NirCheck, NumberKind, check_nir

__all__ = ["add_ins_command"]

_KIND_WORDS = {NumberKind.REGULAR: "regular (first digit 1 or 2)", NumberKind.MIGRANT: "migrant number (5/6)",
               NumberKind.PROVISIONAL: "provisional number NNP (7/8)", NumberKind.UNKNOWN: "unknown"}


def add_ins_command(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``ins nir-check`` and ``ins insc`` to an argparse sub-command set (the ``ihe-engine`` top level)."""
    ins = subparsers.add_parser("ins", help="French national identifiers: check a NIR/NIA, compute an INS-C")
    actions = ins.add_subparsers(dest="ins_action", required=True, metavar="ACTION")

    nir = actions.add_parser("nir-check", help="check a NIR (15 characters, or 13 to get its key); exit 1 if invalid")
    nir.add_argument("nir", metavar="NIR", help="the number; spaces are ignored (1 61 02 75 754 289 92)")
    nir.add_argument("--nia", action="store_true", help="check it as a NIA (a wrong key is only a warning)")
    nir.set_defaults(run=run_nir_check)

    insc = actions.add_parser("insc", help="compute the 22-digit INS-C from Carte Vitale data")
    insc.add_argument("--first-name", required=True, metavar="NAME", help="first name as on the card (A-Z, spaces)")
    insc.add_argument("--birth-date", required=True, metavar="YYMMDD", help="birth date exactly as on the card")
    insc.add_argument("--nir", required=True, metavar="NIR13", help="the beneficiary's own NIR, 13 characters, no key")
    insc.set_defaults(run=run_insc)
    return ins


def run_nir_check(args: argparse.Namespace) -> int:
    text = args.nir.replace(" ", "")
    check = check_nir(text, nia=args.nia, require_key=False)
    print("\n".join(describe(check)))
    return 0 if check.valid else 1


def describe(check: NirCheck) -> list[str]:
    """The verdict, the decoded parts and the expected key, one per line."""
    label = "NIA" if check.nia else "NIR"
    lines = [f"{label} {check.text}: {'valid' if check.valid else 'INVALID'}"]
    if check.expected_key is not None:
        lines += [f"  kind: {_KIND_WORDS[check.kind]}",
                  f"  sex: {check.sex or 'not stated by this number'}",
                  f"  birth year: {check.year}",
                  f"  birth month: {check.month}",
                  f"  place of birth: {check.place_of_birth}",
                  f"  rank: {check.rank}",
                  f"  key: {check.key or 'none given'} (expected {check.expected_key})"]
    lines += [f"  error: {message}" for message in check.errors]
    lines += [f"  warning: {message}" for message in check.warnings]
    return lines


def run_insc(args: argparse.Namespace) -> int:
    try:
        print(compute_insc(args.first_name, args.birth_date, args.nir))
    except InscError as exc:
        print(f"ihe-engine ins insc: {exc}", file=sys.stderr)
        return 1
    return 0
