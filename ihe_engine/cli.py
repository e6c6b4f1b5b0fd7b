"""The ``ihe-engine`` command."""

from __future__ import annotations

import argparse
import sys

from . import __version__
from .config import add_serve_arguments, add_store_arguments, settings_from_args
from .errors import ConfigurationError

__all__ = ["main", "build_parser"]


def _cmd_serve(args: argparse.Namespace) -> int:
    from .logconfig import configure_logging
    from .server import serve

    settings = settings_from_args(args)
    configure_logging(settings.log_format)
    return serve(settings)


def _cmd_db_upgrade(args: argparse.Namespace) -> int:
    from .storage import Database

    settings = settings_from_args(args)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.database_url)
    db.upgrade()
    print(f"schema up to date: {', '.join(sorted(db.table_names()))}")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from .bench.cli import main as bench_main

    return bench_main(args.bench_args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ihe-engine", description="IHE interoperability engine")
    parser.add_argument("--version", action="version", version=f"ihe-engine {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="start every actor and listener")
    add_serve_arguments(serve)
    serve.set_defaults(run=_cmd_serve)

    db = commands.add_parser("db", help="storage administration")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    upgrade = db_commands.add_parser("upgrade", help="create or upgrade the schema to the newest revision")
    add_store_arguments(upgrade)
    upgrade.set_defaults(run=_cmd_db_upgrade)

    bench = commands.add_parser("bench", help="run the benchmark harness (see `ihe-engine bench --help`)",
                                add_help=False)
    bench.add_argument("bench_args", nargs=argparse.REMAINDER)
    bench.set_defaults(run=_cmd_bench)

    from .conformance.cli import add_conformance_command

    add_conformance_command(commands)

    from .france.cli import add_ins_command

    add_ins_command(commands)

    from .audit.cli import add_audit_command

    add_audit_command(commands)

    from .identity.cli import add_identity_command

    add_identity_command(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:
        # argparse's REMAINDER drops options that come first (``bench --db-url URL xds``): hand them over whole.
        from .bench.cli import main as bench_main

        return bench_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except ConfigurationError as exc:
        print(f"ihe-engine: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
