"""Group commit in the HL7 v2 dispatcher: messages arriving while a transaction runs share the next one.

Each message of a batch runs in its own savepoint: a failure undoes that message alone; one COMMIT; ACKs only after
it. A failed commit answers AE 207 to every message of the batch and commits nothing. Audit records follow the
outcome of their own message. Also the savepoint-aware after-commit effects (``storage/effects.py``).
"""

from __future__ import annotations

import dataclasses
import json
import random
import string
import threading
from concurrent.futures import ThreadPoolExecutor

import hl7
import pytest
from hl7.client import MLLPClient
from sqlalchemy import event, func, select, text
from twisted.internet.threads import blockingCallFromThread
from twisted.python.threadpool import ThreadPool

from ihe_engine.audit import AuditHook
from ihe_engine.bench.cli import main as bench_main
from ihe_engine.config import Settings
from ihe_engine.errors import ConfigurationError, TransactionError
from ihe_engine.hl7v2.dispatch import Hl7Dispatcher, Hl7Route
from ihe_engine.identity.iti8 import Iti8Feed, hl7_routes
from ihe_engine.identity.tables import Patient
from ihe_engine.plugins import create_plugin_manager, hookimpl
from ihe_engine.runtime import Runtime
from ihe_engine.storage import Database, UnitOfWork
from ihe_engine.storage.blobstore import BlobStore
from ihe_engine.storage.effects import after_commit, pending_count
from ihe_engine.storage.models import Hl7Exchange, QueueItem
from ihe_engine.transport.mllp_twisted import MLLPServerFactory

DOMAIN = "1.2.250.1.999.1"


class CapturingSink:
    def __init__(self) -> None:
        self.records: list = []

    @hookimpl
    def ihe_audit_record(self, record) -> None:
        self.records.append(record)


@pytest.fixture
def sink() -> CapturingSink:
    return CapturingSink()


def make_runtime(database, reactor, tmp_path, sink, threads: int) -> Runtime:
    plugins = create_plugin_manager(load_entry_points=False)
    plugins.register(sink, name="capture")
    pool = ThreadPool(minthreads=1, maxthreads=threads, name="test-group-commit")
    pool.start()
    return Runtime(settings=Settings(data_dir=tmp_path), db=database, audit=AuditHook(plugins),
                   blobs=BlobStore(tmp_path / "blobs"), reactor=reactor, threadpool=pool)


@pytest.fixture
def runtime(database, reactor_thread, tmp_path, sink):
    """One thread: batches run one after the other, so what queues while one runs is exactly the next batch."""
    runtime = make_runtime(database, reactor_thread, tmp_path, sink, threads=1)
    yield runtime
    runtime.threadpool.stop()


@pytest.fixture
def wide_runtime(database, reactor_thread, tmp_path, sink):
    """Four threads: on PostgreSQL several batches run at once (SQLite keeps one, its write lock being one)."""
    runtime = make_runtime(database, reactor_thread, tmp_path, sink, threads=4)
    yield runtime
    runtime.threadpool.stop()


def adt(control_id: str, patient: str, *, trigger: str = "A01", authority: str = DOMAIN,
        sender: str = "HIS|HOSP") -> bytes:
    """An ADT for a person of their own: name and birth date drawn from the id, so no two look alike to the
    linking policy."""
    rng = random.Random(patient)
    family = "".join(rng.choice(string.ascii_uppercase) for _ in range(12))
    birth = f"{rng.randrange(1920, 2020)}{rng.randrange(1, 13):02d}{rng.randrange(1, 29):02d}"
    return (f"MSH|^~\\&|{sender}|ENGINE|SITE|20240101120000||ADT^{trigger}^ADT_A01|{control_id}|P|2.5\r"
            f"EVN|{trigger}|20240101120000\r"
            f"PID|||{patient}^^^&{authority}&ISO||{family}^PRENOM||{birth}|F\rPV1||I\r").encode()


def other(control_id: str, kind: str = "ZGT^Z01") -> bytes:
    return f"MSH|^~\\&|HIS|HOSP|ENGINE|SITE|20240101120000||{kind}|{control_id}|P|2.5\r".encode()


def msa(answer: bytes) -> tuple[str, str]:
    segment = hl7.parse(answer.decode()).segment("MSA")
    return str(segment[1]), str(segment[2])


def err_code(answer: bytes) -> str:
    return str(hl7.parse(answer.decode()).segment("ERR")[3][0][0])


def count(runtime: Runtime, model, *where) -> int:
    with runtime.db.sessions() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where))


class Gate:
    """A handler that holds its batch open until the test has queued the messages meant for the next batch."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, message, uow, context):
        self.entered.set()
        assert self.release.wait(30), "the test never opened the gate"
        return None


class Recorder:
    """Stores each message as a queue item (its 'work') and notes which unit of work ran it."""

    def __init__(self, fail: dict[str, BaseException] | None = None) -> None:
        self.fail = fail or {}
        self.calls: list[tuple[str, object]] = []

    def __call__(self, message, uow, context):
        control_id = message.header.control_id
        self.calls.append((control_id, uow))  # the object itself: an id could be reused once it is freed
        uow.queue.put("work", control_id.encode())
        if control_id in self.fail:
            raise self.fail[control_id]
        return None


def dispatcher_for(runtime: Runtime, routes, **options) -> Hl7Dispatcher:
    return Hl7Dispatcher(runtime, routes, sending_application="ENGINE", sending_facility="SITE", **options)


def in_one_batch(runtime: Runtime, dispatcher: Hl7Dispatcher, gate: Gate, messages: list[bytes]) -> list[bytes]:
    """Hold a first transaction open with ``gate``, queue ``messages`` meanwhile, then let everything run:
    ``messages`` make up the next batch. Returns their answers, in order."""
    reactor = runtime.reactor
    gate_answer = blockingCallFromThread(reactor, lambda: _collect([dispatcher.handle(other("GATE"), "p:1")]))
    assert gate.entered.wait(30)
    answers = blockingCallFromThread(reactor, lambda: _collect([dispatcher.handle(raw, "p:2") for raw in messages]))
    gate.release.set()
    assert msa(_wait(gate_answer)[0]) == ("AA", "GATE")
    return _wait(answers)


class _Answers:
    def __init__(self, size: int) -> None:
        self.values: list = [None] * size
        self.done = threading.Event()
        self.left = size


def _collect(deferreds) -> _Answers:
    answers = _Answers(len(deferreds))

    def keep(value, index):
        answers.values[index] = value
        answers.left -= 1
        if not answers.left:
            answers.done.set()

    for index, deferred in enumerate(deferreds):
        deferred.addCallback(keep, index)
    return answers


def _wait(answers: _Answers) -> list:
    assert answers.done.wait(60), "answers did not all arrive"
    return answers.values


def commits_counter(runtime: Runtime) -> list[int]:
    commits = [0]

    def counted(connection):
        commits[0] += 1

    event.listen(runtime.db.engine, "commit", counted)
    return commits


# -- batches ----------------------------------------------------------------------------------------------------

def test_messages_queued_while_a_transaction_runs_share_the_next_one(runtime):
    gate, work = Gate(), Recorder()
    dispatcher = dispatcher_for(runtime, [Hl7Route("ZGT^Z01", gate, transaction="gate"),
                                          Hl7Route("ZWK^Z01", work, transaction="work")])
    commits = commits_counter(runtime)
    answers = in_one_batch(runtime, dispatcher, gate, [other(f"W{n}", "ZWK^Z01") for n in range(10)])
    assert [msa(answer) for answer in answers] == [("AA", f"W{n}") for n in range(10)]
    assert len({id(uow) for _, uow in work.calls}) == 1  # one unit of work ran all ten
    assert commits[0] == 2  # the gate's transaction, then one for the ten
    assert count(runtime, QueueItem) == 10 and count(runtime, Hl7Exchange) == 11


def test_batch_size_bounds_a_transaction(runtime):
    gate, work = Gate(), Recorder()
    dispatcher = dispatcher_for(runtime, [Hl7Route("ZGT^Z01", gate, transaction="gate"),
                                          Hl7Route("ZWK^Z01", work, transaction="work")], batch_size=4)
    answers = in_one_batch(runtime, dispatcher, gate, [other(f"B{n}", "ZWK^Z01") for n in range(10)])
    assert all(msa(answer)[0] == "AA" for answer in answers)
    sizes: dict[int, int] = {}
    for _, uow in work.calls:
        sizes[id(uow)] = sizes.get(id(uow), 0) + 1
    assert sorted(sizes.values()) == [2, 4, 4]  # oldest first, at most four per transaction
    assert [control_id for control_id, _ in work.calls] == [f"B{n}" for n in range(10)]


def test_batch_size_comes_from_the_settings_and_must_be_positive(runtime):
    assert Hl7Dispatcher(runtime, []).batch_size == 64
    configured = dataclasses.replace(runtime, settings=Settings(data_dir=runtime.settings.data_dir,
                                                                hl7_batch_size=8))
    assert Hl7Dispatcher(configured, []).batch_size == 8
    with pytest.raises(ConfigurationError):
        Settings(hl7_batch_size=0)
    with pytest.raises(ValueError):
        Hl7Dispatcher(runtime, [], batch_size=-1)


def test_a_failed_message_is_rolled_back_alone_and_the_others_commit(runtime):
    gate = Gate()
    refusal = TransactionError("unknown domain", code="204", location="PID^1^3^1^4")
    work = Recorder(fail={"F2": refusal, "F4": RuntimeError("bug")})
    dispatcher = dispatcher_for(runtime, [Hl7Route("ZGT^Z01", gate, transaction="gate"),
                                          Hl7Route("ZWK^Z01", work, transaction="work")])
    answers = in_one_batch(runtime, dispatcher, gate, [other(f"F{n}", "ZWK^Z01") for n in range(6)])
    assert [msa(answer)[0] for answer in answers] == ["AA", "AA", "AE", "AA", "AE", "AA"]
    assert err_code(answers[2]) == "204" and err_code(answers[4]) == "207"
    with UnitOfWork(runtime.db.sessions) as uow:
        kept = sorted(item.payload.decode() for item in uow.queue.claim("work", "test"))
        assert kept == ["F0", "F1", "F3", "F5"]  # the failed messages' work was undone, theirs only
        assert uow.hl7_exchanges.find("HIS", "HOSP", "F2").response == answers[2]  # a refusal is recorded
        assert uow.hl7_exchanges.find("HIS", "HOSP", "F4") is None  # a crash is not: a retry gets a new attempt
    retried = blockingCallFromThread(runtime.reactor, lambda: _collect(
        [dispatcher.handle(other("F2", "ZWK^Z01"), "p"), dispatcher.handle(other("F4", "ZWK^Z01"), "p")]))
    again = _wait(retried)
    assert again[0] == answers[2]
    assert msa(again[1])[0] == "AE" and [c for c, _ in work.calls].count("F4") == 2


def test_the_same_control_id_twice_in_one_batch_runs_once_and_gets_the_same_answer(runtime):
    gate, work = Gate(), Recorder()
    dispatcher = dispatcher_for(runtime, [Hl7Route("ZGT^Z01", gate, transaction="gate"),
                                          Hl7Route("ZWK^Z01", work, transaction="work")])
    answers = in_one_batch(runtime, dispatcher, gate, [other("D1", "ZWK^Z01"), other("D2", "ZWK^Z01"),
                                                       other("D1", "ZWK^Z01")])
    assert answers[0] == answers[2] and msa(answers[0]) == ("AA", "D1")
    assert [control_id for control_id, _ in work.calls] == ["D1", "D2"]
    assert count(runtime, Hl7Exchange, Hl7Exchange.control_id == "D1") == 1


def test_a_duplicate_of_a_refused_message_in_the_same_batch_gets_the_refusal(runtime):
    gate = Gate()
    work = Recorder(fail={"R1": TransactionError("no", code="204", location="PID^1^3")})
    dispatcher = dispatcher_for(runtime, [Hl7Route("ZGT^Z01", gate, transaction="gate"),
                                          Hl7Route("ZWK^Z01", work, transaction="work")])
    answers = in_one_batch(runtime, dispatcher, gate, [other("R1", "ZWK^Z01"), other("R1", "ZWK^Z01")])
    assert answers[0] == answers[1] and msa(answers[0])[0] == "AE"
    assert len(work.calls) == 1


def test_a_failed_commit_answers_ae_207_to_every_message_and_commits_nothing(runtime, sink, caplog):
    gate, work = Gate(), Recorder()

    def poison(message, uow, context):  # makes the batch's COMMIT fail, after every message went well
        def refuse_commit(session):
            if session.get_nested_transaction() is None:
                raise RuntimeError("disk full")
        event.listen(uow.session, "before_commit", refuse_commit)
        return None

    feed = Iti8Feed()
    dispatcher = dispatcher_for(runtime, [Hl7Route("ZGT^Z01", gate, transaction="gate"),
                                          Hl7Route("ZWK^Z01", work, transaction="work"),
                                          Hl7Route("ZPO^Z01", poison, transaction="poison"),
                                          *feed.routes()])
    messages = [other("P1", "ZWK^Z01"), adt("P2", "PAT-P2"), other("P3", "ZPO^Z01"), other("P4", "ZWK^Z01")]
    answers = in_one_batch(runtime, dispatcher, gate, messages)
    assert [msa(answer)[0] for answer in answers] == ["AE"] * 4
    assert {err_code(answer) for answer in answers} == {"207"}
    assert count(runtime, QueueItem) == 0 and count(runtime, Patient) == 0
    assert count(runtime, Hl7Exchange) == 1  # the gate's own, committed before
    assert [(record.action, record.outcome) for record in sink.records] == [("C", 8)]  # P2: not committed
    again = _wait(blockingCallFromThread(runtime.reactor, lambda: _collect(
        [dispatcher.handle(raw, "p") for raw in messages if b"ZPO" not in raw])))
    assert [msa(answer)[0] for answer in again] == ["AA"] * 3  # nothing was recorded: retries are fresh


def test_audit_records_follow_their_own_message(runtime, sink):
    """Committed: outcome 0 after the commit; refused: 4; rolled back alone in its savepoint: 8."""
    gate, feed = Gate(), Iti8Feed(accepted_authorities=[DOMAIN])
    emitted_before_commit: list = []

    def feed_then_crash(message, uow, context):
        feed.handle_patient(message, uow, context)
        emitted_before_commit.append(len(sink.records))
        raise RuntimeError("crash after the feed did its work")

    dispatcher = dispatcher_for(runtime, [Hl7Route("ZGT^Z01", gate, transaction="gate"),
                                          Hl7Route("ADT^A04", feed_then_crash, transaction="ITI-8"),
                                          *[route for route in feed.routes() if route.message_type != "ADT^A04"]])
    messages = [adt("A1", "PAT-1"), adt("A2", "PAT-2", authority="9.9.9"), adt("A3", "PAT-3", trigger="A04"),
                adt("A4", "PAT-4", trigger="A05")]
    answers = in_one_batch(runtime, dispatcher, gate, messages)
    assert [msa(answer)[0] for answer in answers] == ["AA", "AE", "AE", "AA"]
    assert emitted_before_commit == [1]  # only A2's refusal was out while the batch ran; A1's waited for commit
    by_message = {record.objects[0].details[0][1].decode(): (record.action, record.outcome)
                  for record in sink.records}
    assert by_message == {"A1": ("C", 0), "A2": ("C", 4), "A3": ("C", 8), "A4": ("C", 0)}
    assert len(sink.records) == 4
    assert count(runtime, Patient) == 2  # A1 and A4; A3's patient went with its savepoint


def test_concurrent_duplicate_from_another_worker_inside_a_batch(runtime):
    """Another worker commits the same MSH-3/4/10 while this batch runs: its answer wins, this copy of the work
    is undone, and the rest of the batch commits."""
    if runtime.db.is_sqlite:
        pytest.skip("SQLite: the batch holds the write lock from its first statement (BEGIN IMMEDIATE), so no other "
                    "writer can commit in between")
    other_answer = b"MSH|^~\\&|ENGINE|SITE|HIS|HOSP|2024||ACK^Z01^ACK|OTHER|P|2.5\rMSA|AA|X2\r"
    gate, work = Gate(), Recorder()

    def racing(message, uow, context):
        with UnitOfWork(runtime.db.sessions) as elsewhere:
            elsewhere.hl7_exchanges.add(sending_application="HIS", sending_facility="HOSP", control_id="X2",
                                        message_type="ZRC^Z01", message_sha256="0" * 64, response=other_answer)
            elsewhere.commit()
        uow.queue.put("work", b"X2")
        return None

    dispatcher = dispatcher_for(runtime, [Hl7Route("ZGT^Z01", gate, transaction="gate"),
                                          Hl7Route("ZWK^Z01", work, transaction="work"),
                                          Hl7Route("ZRC^Z01", racing, transaction="race")])
    answers = in_one_batch(runtime, dispatcher, gate, [other("X1", "ZWK^Z01"), other("X2", "ZRC^Z01"),
                                                       other("X3", "ZWK^Z01")])
    assert answers[1] == other_answer
    assert [msa(answer) for answer in (answers[0], answers[2])] == [("AA", "X1"), ("AA", "X3")]
    with UnitOfWork(runtime.db.sessions) as uow:
        assert sorted(item.payload for item in uow.queue.claim("work", "test")) == [b"X1", b"X3"]


# -- over a real MLLP listener, with python-hl7's client --------------------------------------------------------

def _send_all(port: int, messages: list[bytes]) -> list[bytes]:
    answers = []
    with MLLPClient("127.0.0.1", port) as client:
        client.socket.settimeout(60)
        for raw in messages:
            received = client.send_message(raw)
            while not received.endswith(b"\x1c\x0d"):
                more = client.socket.recv(65536)
                assert more, "server closed before answering"
                received += more
            answers.append(received[1:-2])
    return answers


@pytest.fixture
def listen(reactor_thread):
    ports = []

    def start(dispatcher: Hl7Dispatcher) -> int:
        factory = MLLPServerFactory(dispatcher, max_message_size=1024 * 1024)
        port = blockingCallFromThread(reactor_thread, reactor_thread.listenTCP, 0, factory, interface="127.0.0.1")
        ports.append(port)
        return port.getHost().port

    yield start
    for port in ports:
        blockingCallFromThread(reactor_thread, port.stopListening)


def test_many_clients_at_once_every_message_committed_exactly_once(wide_runtime, sink, listen):
    runtime = wide_runtime
    port = listen(dispatcher_for(runtime, hl7_routes(runtime)))
    clients, per_client = 12, 15
    plan = [[adt(f"M{c}-{n}", f"PAT-{c}-{n}") for n in range(per_client)] for c in range(clients)]
    plan[5][2] = adt("M5-2", "")  # refused: PID-3 without an identifier
    commits = commits_counter(runtime)
    with ThreadPoolExecutor(clients) as pool:
        answers = list(pool.map(lambda messages: _send_all(port, messages), plan))
    total = clients * per_client
    codes = {msa(answer)[1]: msa(answer)[0] for per in answers for answer in per}
    assert len(codes) == total
    assert codes.pop("M5-2") == "AE"
    assert set(codes.values()) == {"AA"}
    assert count(runtime, Hl7Exchange) == total
    assert count(runtime, Patient) == total - 1
    assert sorted(record.outcome for record in sink.records) == [0] * (total - 1) + [4]
    assert commits[0] <= total  # one transaction per batch, never more than one per message
    repeated = _send_all(port, plan[0][:3])  # retransmissions: same answers, nothing added
    assert repeated == answers[0][:3]
    assert count(runtime, Patient) == total - 1


def test_a_bad_message_among_concurrent_clients_changes_nothing_but_its_answer(wide_runtime, listen):
    runtime = wide_runtime
    work = Recorder(fail={"BAD": TransactionError("refused", code="103", location="PID^1^3")})
    port = listen(dispatcher_for(runtime, [Hl7Route("ZWK^Z01", work, transaction="work")]))
    plan = [[other(f"C{c}-{n}", "ZWK^Z01") for n in range(10)] for c in range(8)]
    plan[4][5] = other("BAD", "ZWK^Z01")
    with ThreadPoolExecutor(len(plan)) as pool:
        answers = list(pool.map(lambda messages: _send_all(port, messages), plan))
    assert msa(answers[4][5]) == ("AE", "BAD") and err_code(answers[4][5]) == "103"
    assert sum(msa(answer)[0] == "AA" for per in answers for answer in per) == 79
    with UnitOfWork(runtime.db.sessions) as uow:
        stored = {item.payload for item in uow.queue.claim("work", "test", limit=1000)}
    assert len(stored) == 79 and b"BAD" not in stored


# -- savepoint-aware after-commit effects -----------------------------------------------------------------------

class Log:
    def __init__(self) -> None:
        self.events: list[str] = []

    def effect(self, session, name: str) -> None:
        after_commit(session, lambda: self.events.append(f"{name} committed"),
                     lambda: self.events.append(f"{name} undone"))


def test_effects_wait_for_the_outer_commit_and_a_rolled_back_savepoint_undoes_only_its_own(database):
    log = Log()
    with UnitOfWork(database.sessions) as uow:
        session = uow.session
        log.effect(session, "outer")
        first = session.begin_nested()
        log.effect(session, "kept")
        first.commit()
        assert log.events == []  # a released savepoint is not a commit
        second = session.begin_nested()
        log.effect(session, "dropped")
        inner = session.begin_nested()
        log.effect(session, "dropped-inner")
        inner.commit()
        second.rollback()
        assert log.events == ["dropped undone", "dropped-inner undone"]
        assert pending_count(session) == 2
        uow.commit()
    assert log.events[2:] == ["outer committed", "kept committed"]


def test_effects_of_a_rolled_back_or_abandoned_transaction_are_undone(database):
    log = Log()
    with UnitOfWork(database.sessions) as uow:
        log.effect(uow.session, "a")
        savepoint = uow.session.begin_nested()
        log.effect(uow.session, "b")
        savepoint.commit()
        uow.rollback()
    assert log.events == ["a undone", "b undone"]
    session = database.sessions()
    log.effect(session, "c")
    session.close()  # closed without commit, nor even a statement: the work never happened
    assert log.events[-1] == "c undone"
    with database.sessions() as session:
        log.effect(session, "d")
        session.commit()
    assert log.events[-1] == "d committed"


def test_a_failing_effect_does_not_stop_the_others(database, caplog):
    ran = []
    with UnitOfWork(database.sessions) as uow:
        uow.session.connection()
        after_commit(uow.session, lambda: 1 / 0)
        after_commit(uow.session, lambda: ran.append("second"))
        uow.commit()
    assert ran == ["second"]
    assert "after-commit effect failed" in caplog.text


# -- the ITI-8 benchmark, on a tiny store ----------------------------------------------------------------------

def test_iti8_benchmark_feeds_the_real_serve_and_every_answer_is_aa(tmp_path):
    """``ihe-engine bench iti8``: population, then unique A01s and A08s over 1 and 4 connections to serve."""
    out = tmp_path / "iti8.json"
    assert bench_main(["--json", str(out), "iti8", "--data-dir", str(tmp_path / "var"), "--patients", "150", "300",
                       "--messages", "60", "--warmup", "10", "--connections", "1", "4", "--update-share", "0.3"]) == 0
    rows = json.loads(out.read_text())["rows"]
    populations = [row for row in rows if row["benchmark"].startswith("populate")]
    feeds = [row for row in rows if row["benchmark"].startswith("ITI-8")]
    assert [row["added"] for row in populations] == [150, 150]  # the second size adds to the first
    assert len(feeds) == 4 and all(row["count"] == 60 and row["failed"] == 0 for row in feeds)
    db = Database(f"sqlite:///{tmp_path / 'var' / 'engine.sqlite3'}")
    with db.engine.connect() as connection:
        events = dict(connection.execute(text("SELECT kind, count(*) FROM identity_event GROUP BY kind")).all())
        exchanges = connection.execute(text("SELECT count(*) FROM hl7_exchange")).scalar_one()
    db.dispose()
    assert exchanges == 2 * (10 + 2 * 60)  # every message recorded once: warm-up and two runs per size
    assert events["A08"] > 0 and events["A01"] == 300 + exchanges - events["A08"]


# -- read-only routes -------------------------------------------------------------------------------------------

class Reader:
    """A query handler: counts the work committed so far and parks an after-commit effect."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, bool, int]] = []
        self.committed: list[str] = []

    def __call__(self, message, uow, context):
        control_id = message.header.control_id
        self.seen.append((control_id, uow.readonly, uow.queue.pending_count("work")))
        after_commit(uow.session, lambda: self.committed.append(control_id))
        return None


def test_a_read_only_route_cannot_record_its_exchange():
    with pytest.raises(ValueError, match="read-only"):
        Hl7Route("QBP^Q23", Reader(), transaction="ITI-9", readonly=True)
    assert Hl7Route("QBP^Q23", Reader(), transaction="ITI-9", readonly=True, record_exchange=False).readonly


def test_a_read_only_message_cuts_the_batch_and_sees_what_arrived_before_it(runtime):
    gate, work, reader = Gate(), Recorder(), Reader()
    dispatcher = dispatcher_for(runtime, [
        Hl7Route("ZGT^Z01", gate, transaction="gate"), Hl7Route("ZWK^Z01", work, transaction="work"),
        Hl7Route("QBP^Q23", reader, transaction="query", readonly=True, record_exchange=False)])
    messages = [other("W0", "ZWK^Z01"), other("W1", "ZWK^Z01"), other("R0", "QBP^Q23"), other("W2", "ZWK^Z01"),
                other("W3", "ZWK^Z01")]
    answers = in_one_batch(runtime, dispatcher, gate, messages)
    assert [msa(answer) for answer in answers] == [("AA", c) for c in ("W0", "W1", "R0", "W2", "W3")]
    assert reader.seen == [("R0", True, 2)]  # alone, read-only, after W0 and W1 committed, before W2
    assert reader.committed == ["R0"]  # its snapshot ended as a commit: after-commit effects (audit) ran
    by_uow: dict[int, list[str]] = {}
    for control_id, uow in work.calls:
        by_uow.setdefault(id(uow), []).append(control_id)
    assert sorted(by_uow.values()) == [["W0", "W1"], ["W2", "W3"]]  # no write batch spans the query
    assert count(runtime, Hl7Exchange, Hl7Exchange.control_id == "R0") == 0


def test_a_read_only_route_answers_while_another_transaction_holds_the_write_lock(runtime):
    reader = Reader()
    dispatcher = dispatcher_for(runtime, [
        Hl7Route("QBP^Q23", reader, transaction="query", readonly=True, record_exchange=False)])
    with UnitOfWork(runtime.db.sessions) as writer:  # BEGIN IMMEDIATE on SQLite: the write lock, held
        writer.queue.put("work", b"not committed")
        writer.session.flush()
        answer = _wait(blockingCallFromThread(runtime.reactor,
                                              lambda: _collect([dispatcher.handle(other("R1", "QBP^Q23"), "p")])))
    assert msa(answer[0]) == ("AA", "R1")
    assert reader.seen == [("R1", True, 0)]  # its snapshot does not see the uncommitted write
