"""Helpers shared by the PIX/PDQ tests: a runtime with a capturing audit sink, the real dispatcher with the
ITI-8, ITI-9 and ITI-21 routes, a feed helper and readers of the answers (through python-hl7, not our parser).
Each test module declares its own fixtures over these."""

from __future__ import annotations

import itertools
from typing import Iterator

import hl7
from twisted.internet.threads import blockingCallFromThread
from twisted.python.threadpool import ThreadPool

from ihe_engine.audit import AuditHook
from ihe_engine.config import Settings
from ihe_engine.hl7v2.dispatch import Hl7Dispatcher
from ihe_engine.identity import iti8, iti9, iti21
from ihe_engine.plugins import create_plugin_manager, hookimpl
from ihe_engine.runtime import Runtime
from ihe_engine.storage.blobstore import BlobStore

_CONTROL_IDS = itertools.count(1)


class CapturingSink:
    def __init__(self) -> None:
        self.records: list = []

    @hookimpl
    def ihe_audit_record(self, record) -> None:
        self.records.append(record)


def loopback_runtime(database, reactor, tmp_path, sink: CapturingSink) -> Iterator[Runtime]:
    """A Runtime over ``database`` whose audit records land in ``sink`` (use with ``yield from`` in a fixture)."""
    plugins = create_plugin_manager(load_entry_points=False)
    plugins.register(sink, name="capture")
    pool = ThreadPool(minthreads=1, maxthreads=4, name="test-pixpdq")
    pool.start()
    yield Runtime(settings=Settings(data_dir=tmp_path), db=database, audit=AuditHook(plugins),
                  blobs=BlobStore(tmp_path / "blobs"), reactor=reactor, threadpool=pool)
    pool.stop()


def pixpdq_dispatcher(runtime: Runtime, *route_lists: list) -> Hl7Dispatcher:
    """The real dispatcher with the given routes (default: ITI-8, ITI-9 and ITI-21)."""
    routes = [route for routes in route_lists for route in routes] or \
        [*iti8.hl7_routes(runtime), *iti9.hl7_routes(runtime), *iti21.hl7_routes(runtime)]
    return Hl7Dispatcher(runtime, routes, sending_application="ENGINE", sending_facility="SITE")


def handle(dispatcher: Hl7Dispatcher, raw: bytes | str) -> bytes:
    if isinstance(raw, str):
        raw = raw.encode()
    return blockingCallFromThread(dispatcher.runtime.reactor, dispatcher.handle, raw, "10.1.2.3:5000")


def control_id() -> str:
    return f"C{next(_CONTROL_IDS)}"


def feed(dispatcher: Hl7Dispatcher, pid: str, *, trigger: str = "A01") -> None:
    """Feed one patient (an ITI-8 A01 whose PID is given whole, after 'PID|')."""
    raw = "\r".join([f"MSH|^~\\&|SRC|HOSP|ENGINE|SITE|20240101120000||ADT^{trigger}^ADT_A01|{control_id()}|P|2.5",
                     "EVN||20240101120000", f"PID|{pid}", "PV1||O"]) + "\r"
    answer = handle(dispatcher, raw)
    assert b"MSA|AA|" in answer, answer


def qbp(trigger: str, qpd: str, *, rcp: str = "RCP|I", extra: str = "", control: str | None = None,
        sender: str = "CONSUMER|CDEPT") -> str:
    structure = "QBP_Q21"
    msh = f"MSH|^~\\&|{sender}|SUPPLIER|SFAC|20240101120000||QBP^{trigger}^{structure}|{control or control_id()}|P|2.5"
    return "\r".join(segment for segment in [msh, f"QPD|{qpd}", rcp, extra] if segment) + "\r"


def segments(answer: bytes, name: str) -> list:
    message = hl7.parse(answer.decode("utf-8").replace("\n", "\r"))
    return [segment for segment in message if str(segment[0]) == name]


def field(answer: bytes, name: str, number: int) -> str:
    found = segments(answer, name)
    return str(found[0][number]) if found and len(found[0]) > number else ""


def acknowledgment(answer: bytes) -> tuple[str, str]:
    """(MSA-1, QAK-2)."""
    return field(answer, "MSA", 1), field(answer, "QAK", 2)


def errors(answer: bytes) -> list[tuple[str, str]]:
    """(ERR-2, ERR-3.1) of every ERR."""
    return [(str(segment[2]), str(segment[3]).split("^")[0]) for segment in segments(answer, "ERR")]


def pid3_sets(answer: bytes) -> list[set[str]]:
    return [set(str(segment[3]).split("~")) for segment in segments(answer, "PID")]
