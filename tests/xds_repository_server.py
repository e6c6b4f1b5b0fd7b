"""A real repository endpoint on loopback for SOAP tests: Runtime, migrated SQLite store, embedded registry.

Audit records are collected in ``RepositoryServer.audit`` so tests can check what was reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree
from twisted.internet.threads import blockingCallFromThread
from twisted.python.threadpool import ThreadPool
from twisted.web import resource

from ihe_engine.audit import AuditHook
from ihe_engine.config import Settings
from ihe_engine.plugins import create_plugin_manager, hookimpl
from ihe_engine.runtime import Runtime
from ihe_engine.soap import SoapEndpoint
from ihe_engine.storage import Database
from ihe_engine.storage.blobstore import BlobStore
from ihe_engine.web import BoundedSite
from ihe_engine.xds.registry.actor import DocumentRegistry, RegistrySettings
from ihe_engine.xds.repository import (DocumentRepository, RepositorySettings, registry_client_for,
                                       repository_operations)
from xds_testing import corpus_xsd

REPOSITORY_ID = "1.3.6.1.4.1.21367.2017.2.7.109"


class _Recorder:
    def __init__(self) -> None:
        self.records: list = []

    @hookimpl
    def ihe_audit_record(self, record) -> None:
        self.records.append(record)


@dataclass
class RepositoryServer:
    url: str
    runtime: Runtime
    recorder: _Recorder
    port: object = field(repr=False, default=None)

    @property
    def audit(self) -> list:
        return self.recorder.records


def start_repository_server(reactor, base: Path) -> RepositoryServer:
    """Listen on 127.0.0.1:0 with the repository operations at /xds/repository."""
    settings = Settings(data_dir=base / "data", max_soap_body=256 * 1024 * 1024)
    db = Database(settings.database_url)
    db.upgrade()
    threadpool = ThreadPool(minthreads=1, maxthreads=2, name="repository-test")
    threadpool.start()
    plugins = create_plugin_manager()
    recorder = _Recorder()
    plugins.register(recorder, name="recorder")
    runtime = Runtime(settings=settings, db=db, audit=AuditHook(plugins), blobs=BlobStore(settings.blob_dir),
                      reactor=reactor, threadpool=threadpool)
    registry = DocumentRegistry(RegistrySettings())
    repository = DocumentRepository(RepositorySettings(REPOSITORY_ID), runtime.blobs,
                                    registry_client_for(settings, registry, runtime))

    def start():
        endpoint = SoapEndpoint("xds-repository", runtime, max_body=settings.max_soap_body,
                                spool_dir=settings.spool_dir)
        for operation in repository_operations(runtime, repository):
            endpoint.register(operation)
        root, xds = resource.Resource(), resource.Resource()
        xds.putChild(b"repository", endpoint)
        root.putChild(b"xds", xds)
        site = BoundedSite(root, max_body=settings.max_soap_body, spool_dir=settings.spool_dir)
        return reactor.listenTCP(0, site, interface="127.0.0.1")

    port = blockingCallFromThread(reactor, start)
    return RepositoryServer(url=f"http://127.0.0.1:{port.getHost().port}/xds/repository", runtime=runtime,
                            recorder=recorder, port=port)


def stop_repository_server(reactor, server: RepositoryServer) -> None:
    blockingCallFromThread(reactor, server.port.stopListening)
    server.runtime.threadpool.stop()
    server.runtime.db.dispose()


def repository_schema(corpus: Path) -> etree.XMLSchema | None:
    """XDS.b_DocumentRepository.xsd (which imports the ebRS schemas), or None when the corpus lacks it."""
    return corpus_xsd(corpus, "IHE/XDS.b_DocumentRepository.xsd")
