"""Wiring, in one place: the runtime, the routing tables, and the listeners on already-bound sockets.

Each actor issue adds its transactions here (an HL7 route per message type, a SOAP operation per wsa:Action),
so a reader sees in one file what the engine serves where.
"""

from __future__ import annotations

import logging
from typing import Any

from twisted.python.threadpool import ThreadPool

from .audit import AuditHook
from .audit.sinks import LogAuditSink
from .config import Settings
from .plugins import create_plugin_manager
from .runtime import Runtime
from .storage import Database
from .storage.blobstore import BlobStore
from .resources import data_dir

__all__ = ["xds_operations", "hl7v3_operations", "blocking_threads", "build_runtime", "purge_expired", "start_housekeeping", "hl7_routes", "soap_endpoints", "start_listeners", "WSDL_DIR"]

log = logging.getLogger("ihe_engine.bootstrap")
WSDL_DIR = data_dir("schemas/wsdl")


def blocking_threads(settings: Settings, db: Database) -> int:
    """SQLite serialises writers on one lock: more threads only queue on its busy handler and stretch the tail."""
    if settings.db_threads is not None:
        return settings.db_threads
    return 2 if db.is_sqlite else 16


def build_runtime(settings: Settings, reactor: Any) -> Runtime:
    db = Database(settings.database_url)
    threadpool = ThreadPool(minthreads=1, maxthreads=blocking_threads(settings, db), name="ihe-blocking")
    threadpool.start()
    reactor.addSystemEventTrigger("during", "shutdown", threadpool.stop)
    plugins = create_plugin_manager()
    plugins.register(LogAuditSink(), name="log-audit-sink")
    runtime = Runtime(settings=settings, db=db, audit=AuditHook(plugins), blobs=BlobStore(settings.blob_dir),
                      reactor=reactor, threadpool=threadpool)
    from .audit import emission

    emission.install(runtime)  # emit() -> durable outbox -> local ARR and/or remote repositories ([audit])
    return runtime


def hl7_routes(runtime: Runtime) -> list:
    """HL7 v2 message types the MLLP listener serves (the PIX/PDQ and LTW issues add theirs)."""
    from .identity.iti8 import hl7_routes as iti8_routes
    from .identity.iti9 import hl7_routes as iti9_routes
    from .identity.iti21 import hl7_routes as iti21_routes
    from .identity.iti22 import hl7_routes as iti22_routes

    return [*iti8_routes(runtime), *iti9_routes(runtime), *iti21_routes(runtime), *iti22_routes(runtime)]


def _wsdl(name: str) -> bytes | None:
    path = WSDL_DIR / name
    return path.read_bytes() if path.is_file() else None


def soap_endpoints(runtime: Runtime) -> dict:
    """SOAP endpoints by path; the XDS and PIX/PDQ issues register their operations on them."""
    from .soap.endpoint import SoapEndpoint

    settings = runtime.settings
    common = {"max_body": settings.max_soap_body, "spool_dir": settings.spool_dir}
    endpoints = {
        "xds/registry": SoapEndpoint("xds-registry", runtime, wsdl=_wsdl("xds-registry.wsdl"), **common),
        "xds/repository": SoapEndpoint("xds-repository", runtime, wsdl=_wsdl("xds-repository.wsdl"),
                                       **common),
        "pix": SoapEndpoint("pix", runtime, wsdl=_wsdl("pix-manager.wsdl"), **common),
        "pdq": SoapEndpoint("pdq", runtime, wsdl=_wsdl("pdq-supplier.wsdl"), **common),
    }
    for path, operations in [*xds_operations(runtime).items(), *hl7v3_operations(runtime).items()]:
        for operation in operations:
            endpoints[path].register(operation)
    from .xua.soap import install as install_xua

    install_xua(runtime, endpoints)  # XUA (ITI-40) per endpoint, from [xua.endpoints]
    return endpoints


def hl7v3_operations(runtime: Runtime) -> dict[str, list]:
    """PIX Manager (ITI-44, ITI-45) and PDQ Supplier (ITI-47) over HL7 v3, on the identity store."""
    from .identity.hl7v3 import pdq_operations, pix_operations

    return {"pix": pix_operations(runtime), "pdq": pdq_operations(runtime)}


def xds_operations(runtime: Runtime) -> dict[str, list]:
    """The XDS.b registry (ITI-42, 18, 51) and repository (ITI-41, 43, 86), sharing one registry actor."""
    from .xds.query.soap import query_operations
    from .xds.registry.actor import DocumentRegistry, RegistrySettings
    from .xds.registry.soap import registry_operations
    from .xds.registry.remove_soap import remove_operations
    from .xds.registry.update_soap import update_operations
    from .xds.repository import (DEFAULT_REPOSITORY_UNIQUE_ID, DocumentRepository, RepositorySettings,
                                 registry_client_for, repository_operations)

    settings = runtime.settings
    registry_settings = RegistrySettings.from_settings(settings)
    registry = DocumentRegistry(registry_settings)
    repository = DocumentRepository(
        RepositorySettings(settings.repository_id or DEFAULT_REPOSITORY_UNIQUE_ID,
                           home_community_id=registry_settings.home_community_id),
        runtime.blobs, registry_client_for(settings, registry, runtime))
    return {"xds/registry": [*registry_operations(runtime, registry), *remove_operations(runtime, registry),
                            *update_operations(runtime, registry),
                            *query_operations(runtime, registry_settings)],
            "xds/repository": repository_operations(runtime, repository)}


def start_listeners(runtime: Runtime, sockets: list) -> list:
    """Adopt each bound socket into the reactor with its protocol factory, TLS-wrapped when configured."""
    from .hl7v2.dispatch import Hl7Dispatcher
    from .transport.mllp_twisted import MLLPServerFactory
    from .transport.syslog_twisted import SyslogDatagramProtocol, SyslogStreamFactory
    from .web.request import BoundedSite
    from .web.site import build_root
    from .audit import emission
    from .audit.receiver import IngestBatcher

    settings, reactor = runtime.settings, runtime.reactor
    secure = _tls_wrapper(runtime)
    audit_ingest = IngestBatcher(runtime)  # the ARR: every received message stored, invalid ones flagged
    on_audit, on_audit_invalid = audit_ingest.callbacks("tls" if settings.tls_enabled else "tcp")
    on_udp_audit, on_udp_audit_invalid = audit_ingest.callbacks("udp")
    factories = {
        "http": BoundedSite(build_root(runtime, soap_endpoints(runtime)), max_body=settings.max_soap_body,
                            spool_dir=settings.spool_dir, timeout=settings.http_idle_timeout),
        "mllp": MLLPServerFactory(Hl7Dispatcher(runtime, hl7_routes(runtime)),
                                  max_message_size=settings.max_mllp_message, idle_timeout=settings.mllp_idle_timeout),
        "audit-tcp": SyslogStreamFactory(on_audit, on_invalid=on_audit_invalid,
                                         listener_name="audit-tls" if settings.tls_enabled else "audit-tcp"),
    }
    start_housekeeping(runtime)
    from .xua.soap import start_housekeeping as start_xua_housekeeping

    start_xua_housekeeping(runtime)  # expired assertion ids leave the replay cache
    from .identity.hl7v3.iti46 import start_sender as start_iti46_sender

    start_iti46_sender(runtime)
    emission.start(runtime)  # local ARR delivery and remote syslog senders for the audit outbox
    from .identity.iti10 import start_pix_update_sender

    start_pix_update_sender(runtime)  # ITI-10: drains the PIX update notification queues, when consumers are set
    ports = []
    for bound in sockets:
        if bound.kind == "stream":
            factory = secure(factories[bound.name], bound.name)
            ports.append(reactor.adoptStreamPort(bound.sock.fileno(), bound.family, factory))
        else:
            protocol = SyslogDatagramProtocol(on_udp_audit, on_invalid=on_udp_audit_invalid,
                                              listener_name=bound.name)
            ports.append(reactor.adoptDatagramPort(bound.sock.fileno(), bound.family, protocol,
                                                   maxPacketSize=65535))
    return ports


def purge_expired(uow: Any, hl7_retention: Any) -> tuple[int, int]:
    """Delete retransmission answers older than the retention and expired continuation pointers."""
    from .storage.base import utcnow

    return uow.hl7_exchanges.purge_before(utcnow() - hl7_retention), uow.continuations.purge_expired()


def start_housekeeping(runtime: Runtime, *, every: float = 3600.0) -> Any:
    """Purge what only needs keeping for a while: retransmission answers past retention, expired pointers.

    Every worker runs it; the deletes are idempotent, so several workers doing it is harmless.
    """
    from datetime import timedelta

    from twisted.internet.task import LoopingCall

    retention = timedelta(days=runtime.settings.hl7_exchange_retention_days)

    def purge() -> tuple[int, int]:
        with runtime.uow() as uow:
            counts = purge_expired(uow, retention)
            uow.commit()
        return counts

    def run() -> Any:
        def report(counts: tuple[int, int]) -> None:
            if any(counts):
                log.info("housekeeping purged %d HL7 answers and %d continuation pointers", *counts)

        return runtime.run_blocking(purge).addCallbacks(report, lambda f: log.error("housekeeping: %s",
                                                                                   f.getErrorMessage()))

    loop = LoopingCall(run)
    loop.clock = runtime.reactor
    loop.start(every, now=True)
    return loop


def _tls_wrapper(runtime: Runtime):  # type: ignore[no-untyped-def]
    settings = runtime.settings
    if not settings.tls_enabled:
        return lambda factory, _name: factory
    from .transport.tls import TLSConfig, wrap_server_factory

    config = TLSConfig.from_settings(settings)

    def wrap(factory, name):  # type: ignore[no-untyped-def]
        def on_failure(peer: str, reason: str) -> None:
            log.warning("TLS handshake refused on %s from %s: %s", name, peer, reason)
            runtime.audit.security_alert(description=f"{name}: {reason}", peer=peer, node=runtime.node_name)

        return wrap_server_factory(factory, config, on_failure)

    return wrap
