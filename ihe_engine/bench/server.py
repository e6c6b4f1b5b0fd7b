"""A benchmark server: the engine's real listeners and protocol stacks with benchmark handlers.

- MLLP ``ZBM^Z01``: no-op handler (inline, no storage) -- the transport's own cost.
- MLLP ``ZBM^Z02``: handler that commits (retransmission log written, ACK after commit) -- the storage floor.
- SOAP ``urn:ihe-engine:bench:echo``: answers its body -- the SOAP stack's own cost.
- SOAP ``urn:ihe-engine:bench:upload``: MTOM request whose attachments are stored in the blob store, as ITI-41 does.

Run as ``python -m ihe_engine.bench.server --data-dir DIR``; prints ``listening`` lines and ``ready`` like serve.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lxml import etree

__all__ = ["ECHO_ACTION", "UPLOAD_ACTION", "NOOP_TYPE", "COMMIT_TYPE", "main"]

ECHO_ACTION = "urn:ihe-engine:bench:echo"
UPLOAD_ACTION = "urn:ihe-engine:bench:upload"
BENCH_NS = "urn:ihe-engine:bench"
NOOP_TYPE = "ZBM^Z01"
COMMIT_TYPE = "ZBM^Z02"


def _echo(request):  # type: ignore[no-untyped-def]
    from ..soap.endpoint import SoapResponse

    return SoapResponse(body=request.payload)


def _upload(runtime):  # type: ignore[no-untyped-def]
    from ..soap.endpoint import SoapResponse

    def handler(request):  # type: ignore[no-untyped-def]
        answer = etree.Element(f"{{{BENCH_NS}}}stored")
        for attachment in request.attachments.values():
            with attachment.open() as stream:
                blob = runtime.blobs.put_stream(stream)
            etree.SubElement(answer, f"{{{BENCH_NS}}}blob", sha256=blob.sha256, size=str(blob.size))
        return SoapResponse(body=answer)

    return handler


def _commit(message, uow, context):  # type: ignore[no-untyped-def]
    return None  # the dispatcher records the exchange and commits before answering


def build_factories(runtime):  # type: ignore[no-untyped-def]
    from ..hl7v2.dispatch import Hl7Dispatcher, Hl7Route
    from ..soap.endpoint import Operation, SoapEndpoint
    from ..transport.mllp_twisted import MLLPServerFactory
    from ..web.request import BoundedSite
    from ..web.site import build_root

    settings = runtime.settings
    routes = [Hl7Route(NOOP_TYPE, lambda message, uow, context: None, transaction="bench-noop", blocking=False,
                       record_exchange=False),
              Hl7Route(COMMIT_TYPE, _commit, transaction="bench-commit")]
    endpoint = SoapEndpoint("bench", runtime, max_body=settings.max_soap_body, spool_dir=settings.spool_dir)
    endpoint.register(Operation(ECHO_ACTION, ECHO_ACTION + "Response", _echo, transaction="bench-echo",
                                blocking=False))
    endpoint.register(Operation(UPLOAD_ACTION, UPLOAD_ACTION + "Response", _upload(runtime),
                                transaction="bench-upload", blocking=True))
    site = BoundedSite(build_root(runtime, {"bench": endpoint}), max_body=settings.max_soap_body,
                       spool_dir=settings.spool_dir)
    mllp = MLLPServerFactory(Hl7Dispatcher(runtime, routes), max_message_size=settings.max_mllp_message,
                             idle_timeout=settings.mllp_idle_timeout)
    return site, mllp


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ihe_engine.bench.server")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--db-url")
    parser.add_argument("--db-threads", type=int)
    args = parser.parse_args(argv)

    from twisted.internet import reactor

    from ..bootstrap import build_runtime
    from ..config import Settings
    from ..logconfig import configure_logging
    from ..storage import Database

    configure_logging("text", level=30)
    settings = Settings(data_dir=args.data_dir, db_url=args.db_url, db_threads=args.db_threads, http_port=0,
                        mllp_port=0)
    for path in (settings.data_dir, settings.blob_dir, settings.spool_dir):
        path.mkdir(parents=True, exist_ok=True)
    Database(settings.database_url).upgrade()
    runtime = build_runtime(settings, reactor)
    site, mllp = build_factories(runtime)
    http_port = reactor.listenTCP(0, site, interface="127.0.0.1", backlog=1024)
    mllp_port = reactor.listenTCP(0, mllp, interface="127.0.0.1", backlog=1024)
    print(f"listening bench http://127.0.0.1:{http_port.getHost().port}/bench", flush=True)
    print(f"listening mllp mllp://127.0.0.1:{mllp_port.getHost().port}", flush=True)
    reactor.callWhenRunning(lambda: print("ready", flush=True))
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
