"""Helpers shared by the XDS tests: a loopback runtime and registry endpoint, the patient feed, the official
XML schemas (loaded without network), and a snapshot of the registry tables to show a refusal changed nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from sqlalchemy import select
from twisted.internet.threads import blockingCallFromThread, deferToThread
from twisted.web import resource

from ihe_engine.audit.hook import AuditHook
from ihe_engine.config import Settings
from ihe_engine.identity.cx import CX
from ihe_engine.identity.store import Demographics, FeedEvent, IdentityStore
from ihe_engine.plugins import create_plugin_manager, hookimpl
from ihe_engine.soap import SoapEndpoint
from ihe_engine.storage import UnitOfWork
from ihe_engine.web import BoundedSite
from ihe_engine.xds.registry.tables import REGISTRY_TABLES

__all__ = ["ROOT", "RecordingAudit", "LoopbackRuntime", "feed_patients", "registry_endpoint", "load_xsd",
           "corpus_xsd", "corpus_xsd_or_skip", "registry_snapshot"]

ROOT = Path(__file__).resolve().parent.parent
_XML_XSD = "nist-iheos-toolkit2/schema/v3/xml.xsd"


class RecordingAudit(AuditHook):
    """The real audit hook with one sink that keeps every record it hears (after commit for ``emit_with``)."""

    def __init__(self) -> None:
        super().__init__(create_plugin_manager(load_entry_points=False))
        self.records: list = []
        self.plugin_manager.register(self, name="recording-sink")

    @hookimpl
    def ihe_audit_record(self, record) -> None:
        self.records.append(record)


@dataclass
class LoopbackRuntime:
    """What the XDS SOAP bindings and the endpoint use from a Runtime."""

    settings: Settings
    reactor: Any
    db: Any
    audit: RecordingAudit = field(default_factory=RecordingAudit)
    process_id: str = "4242"
    node_name: str = "registry.test"

    def uow(self, *, readonly: bool = False) -> UnitOfWork:
        return UnitOfWork(self.db.sessions, readonly=readonly)

    def run_blocking(self, fn, *args, **kwargs):
        return deferToThread(fn, *args, **kwargs)


def feed_patients(database, *patients: str) -> None:
    """Make patients known to the identity store, as an ITI-8 A01 would, so the registry accepts them."""
    with UnitOfWork(database.sessions) as uow:
        store = IdentityStore(uow.session)
        for patient in patients:
            store.create_or_update([CX.from_xds(patient)], Demographics(), FeedEvent(kind="A01"))
        uow.commit()


@contextmanager
def registry_endpoint(reactor, runtime, operations: Iterable, spool_dir: Path) -> Iterator[str]:
    """Serve ``operations`` at http://127.0.0.1:<port>/xds/registry while in the block; yields that URL."""
    def start():
        endpoint = SoapEndpoint("xds-registry", runtime, wsdl=(ROOT / "schemas/wsdl/xds-registry.wsdl").read_bytes())
        for operation in operations:
            endpoint.register(operation)
        root, xds = resource.Resource(), resource.Resource()
        xds.putChild(b"registry", endpoint)
        root.putChild(b"xds", xds)
        return reactor.listenTCP(0, BoundedSite(root, max_body=1 << 20, spool_dir=spool_dir), interface="127.0.0.1")

    port = blockingCallFromThread(reactor, start)
    try:
        yield f"http://127.0.0.1:{port.getHost().port}/xds/registry"
    finally:
        blockingCallFromThread(reactor, port.stopListening)


class _LocalXmlXsd(etree.Resolver):
    """rim.xsd imports the W3C xml.xsd by URL: serve the test kit's local copy instead (no network)."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def resolve(self, url, pubid, context):
        return self.resolve_filename(str(self.path), context) if url.endswith("/xml.xsd") else None


def load_xsd(schema_path: Path, xml_xsd: Path) -> etree.XMLSchema:
    """An XML schema whose xml.xsd import is served from ``xml_xsd``; nothing is fetched from the network."""
    parser = etree.XMLParser(no_network=True)
    parser.resolvers.add(_LocalXmlXsd(xml_xsd))
    return etree.XMLSchema(etree.parse(str(schema_path), parser))


def corpus_xsd(corpus: Path, relative: str) -> etree.XMLSchema | None:
    """``ihe-iti-info/schema/<relative>`` of the corpus, or None when the corpus lacks it or xml.xsd."""
    schema_path, xml_xsd = corpus / "ihe-iti-info/schema" / relative, corpus / _XML_XSD
    if not schema_path.is_file() or not xml_xsd.is_file():
        return None
    return load_xsd(schema_path, xml_xsd)


def corpus_xsd_or_skip(relative: str) -> etree.XMLSchema:
    """:func:`corpus_xsd` of the test corpus, skipping the test when it is not there."""
    from conftest import CORPUS

    schema = corpus_xsd(CORPUS, relative)
    if schema is None:
        pytest.skip(f"schema {relative} not found under {CORPUS}")
    return schema


def registry_snapshot(database) -> dict:
    """Every registry row, so a refusal can be shown to have changed nothing."""
    with database.sessions() as session:
        return {table.__tablename__: sorted(tuple(map(str, row)) for row in session.execute(select(table.__table__)))
                for table in REGISTRY_TABLES}
