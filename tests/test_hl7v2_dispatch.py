"""The HL7 v2 dispatcher on a real store: routing, retransmissions, rollback on refusal, concurrent duplicates."""

from __future__ import annotations

import logging

import hl7
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select
from twisted.internet.threads import blockingCallFromThread
from twisted.python.threadpool import ThreadPool

from ihe_engine.audit import AuditHook
from ihe_engine.config import Settings
from ihe_engine.errors import TransactionError
from ihe_engine.hl7v2.dispatch import UNROUTED, Hl7Dispatcher, Hl7Route
from ihe_engine.plugins import create_plugin_manager
from ihe_engine.runtime import Runtime
from ihe_engine.storage import UnitOfWork
from ihe_engine.storage.blobstore import BlobStore
from ihe_engine.storage.models import Hl7Exchange, QueueItem


def message(control_id: str = "C1", kind: str = "ADT^A01^ADT_A01", *, version: str = "2.5", pid: str = "123",
            sender: str = "HIS|HOSP") -> bytes:
    return (f"MSH|^~\\&|{sender}|ENGINE|SITE|20240101120000||{kind}|{control_id}|P|{version}\r"
            f"EVN|A01|20240101120000\rPID|||{pid}^^^HOSP\r").encode()


@pytest.fixture
def runtime(database, reactor_thread, tmp_path):
    pool = ThreadPool(minthreads=1, maxthreads=4, name="test-dispatch")
    pool.start()
    yield Runtime(settings=Settings(data_dir=tmp_path), db=database,
                  audit=AuditHook(create_plugin_manager(load_entry_points=False)), blobs=BlobStore(tmp_path / "blobs"),
                  reactor=reactor_thread, threadpool=pool)
    pool.stop()


def handle(dispatcher: Hl7Dispatcher, raw: bytes) -> bytes:
    reactor = dispatcher.runtime.reactor if dispatcher.runtime else None
    if reactor is None:
        from twisted.internet import reactor
    return blockingCallFromThread(reactor, dispatcher.handle, raw, "10.0.0.1:5000")


def ack_of(answer: bytes) -> hl7.Message:
    return hl7.parse(answer.decode())


def msa(answer: bytes) -> tuple[str, str]:
    segment = ack_of(answer).segment("MSA")
    return str(segment[1]), str(segment[2])


def err(answer: bytes) -> tuple[str, str, str]:
    segment = ack_of(answer).segment("ERR")
    return str(segment[2]), str(segment[3][0][0]), str(segment[4])


def count(runtime: Runtime, model) -> int:
    with runtime.db.sessions() as session:
        return session.scalar(select(func.count()).select_from(model))


class RecordingHandler:
    """A handler that stores the message (its 'work'), then behaves as told."""

    def __init__(self, outcome=None) -> None:
        self.calls = 0
        self.outcome = outcome

    def __call__(self, message, uow, context):
        self.calls += 1
        uow.queue.put("received", message.raw)
        uow.session.flush()
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome


def dispatcher_for(runtime: Runtime, *routes: Hl7Route) -> Hl7Dispatcher:
    return Hl7Dispatcher(runtime, list(routes), sending_application="ENGINE", sending_facility="SITE")


def test_aa_ack_and_exchange_recorded(runtime):
    handler = RecordingHandler()
    answer = handle(dispatcher_for(runtime, Hl7Route("ADT^A01", handler, transaction="ITI-8")), message("C1"))
    assert msa(answer) == ("AA", "C1")
    assert str(ack_of(answer).segment("MSH")[9]) == "ACK^A01^ACK"
    assert count(runtime, QueueItem) == 1
    with UnitOfWork(runtime.db.sessions) as uow:
        stored = uow.hl7_exchanges.find("HIS", "HOSP", "C1")
        assert stored is not None and stored.response == answer and stored.message_type == "ADT^A01^ADT_A01"


def test_retransmission_gets_the_identical_answer_and_the_handler_runs_once(runtime, caplog):
    handler = RecordingHandler()
    dispatcher = dispatcher_for(runtime, Hl7Route("ADT^A01", handler, transaction="ITI-8"))
    first = handle(dispatcher, message("C2"))
    assert handle(dispatcher, message("C2")) == first
    assert handler.calls == 1
    assert count(runtime, QueueItem) == 1 and count(runtime, Hl7Exchange) == 1
    with caplog.at_level(logging.WARNING, logger="ihe_engine.hl7v2"):
        assert handle(dispatcher, message("C2", pid="999")) == first  # same key, other content
    assert handler.calls == 1
    assert "reused for different content" in caplog.text


def test_the_key_is_application_facility_and_control_id(runtime):
    handler = RecordingHandler()
    dispatcher = dispatcher_for(runtime, Hl7Route("ADT^A01", handler, transaction="ITI-8"))
    handle(dispatcher, message("C3"))
    handle(dispatcher, message("C3", sender="HIS|OTHER"))
    handle(dispatcher, message("C3", sender="LAB|HOSP"))
    assert handler.calls == 3


def test_transaction_error_rolls_back_and_answers_ae_with_err(runtime):
    refusal = TransactionError("unknown domain", code="204", location="PID^1^3^1^4")
    handler = RecordingHandler(refusal)
    dispatcher = dispatcher_for(runtime, Hl7Route("ADT^A01", handler, transaction="ITI-8"))
    answer = handle(dispatcher, message("C4"))
    assert msa(answer) == ("AE", "C4")
    assert err(answer) == ("PID^1^3^1^4", "204", "E")
    assert count(runtime, QueueItem) == 0  # the handler's work was rolled back
    assert handle(dispatcher, message("C4")) == answer  # the refusal is the recorded answer
    assert handler.calls == 1


def test_unexpected_exception_answers_ae_207_and_commits_nothing(runtime, caplog):
    handler = RecordingHandler(RuntimeError("bug"))
    dispatcher = dispatcher_for(runtime, Hl7Route("ADT^A01", handler, transaction="ITI-8"))
    with caplog.at_level(logging.ERROR, logger="ihe_engine.hl7v2"):
        answer = handle(dispatcher, message("C5"))
    assert msa(answer) == ("AE", "C5")
    assert err(answer)[1] == "207"
    assert "bug" in caplog.text
    assert count(runtime, QueueItem) == 0 and count(runtime, Hl7Exchange) == 0
    handle(dispatcher, message("C5"))
    assert handler.calls == 2  # nothing recorded: a retransmission is tried again


def test_handler_reply_is_returned_and_recorded(runtime):
    def query(message, uow, context):
        return context.ack("AA", text="custom")

    dispatcher = dispatcher_for(runtime, Hl7Route("QBP^Q23", query, transaction="ITI-9"))
    answer = handle(dispatcher, message("C6", "QBP^Q23^QBP_Q21"))
    assert str(ack_of(answer).segment("MSA")[3]) == "custom"
    assert handle(dispatcher, message("C6", "QBP^Q23^QBP_Q21")) == answer


def test_routing_exact_then_type_wildcard(runtime):
    exact, wildcard = RecordingHandler(), RecordingHandler()
    dispatcher = dispatcher_for(runtime, Hl7Route("ADT^A01", exact, transaction="ITI-8"),
                                Hl7Route("ADT", wildcard, transaction="ITI-8"))
    handle(dispatcher, message("R1", "ADT^A01^ADT_A01"))
    handle(dispatcher, message("R2", "ADT^A40^ADT_A39"))
    assert (exact.calls, wildcard.calls) == (1, 1)


def test_unknown_type_and_unknown_trigger_are_rejected(runtime):
    dispatcher = dispatcher_for(runtime, Hl7Route("ADT^A01", RecordingHandler(), transaction="ITI-8"))
    unknown_type = handle(dispatcher, message("U1", "ORU^R01^ORU_R01"))
    assert msa(unknown_type) == ("AR", "U1")
    assert err(unknown_type) == ("MSH^1^9^1^1", "200", "E")
    unknown_trigger = handle(dispatcher, message("U2", "ADT^A99^ADT_A01"))
    assert msa(unknown_trigger) == ("AR", "U2")
    assert err(unknown_trigger) == ("MSH^1^9^1^2", "201", "E")
    assert count(runtime, Hl7Exchange) == 0


@pytest.mark.parametrize(("raw", "location", "code"), [
    (b"PID|||1\r", "MSH^1", "100"),
    (b"\x00\x01\x02\xff", "MSH^1", "100"),
    (b"MSH|^~|A|B\r", "MSH^1^2", "102"),
    (b"MSH|^~\\&|HIS|HOSP|E|S|2024||ADT^A01|C9|P|2.5\rbad segment\r", "bad^1", "100"),
    (b"MSH|^~\\&|HIS|HOSP|E|S|2024|||C9|P|2.5\r", "MSH^1^9^1^1", "101"),
    (b"MSH|^~\\&|HIS|HOSP|E|S|2024||ADT^A01||P|2.5\r", "MSH^1^10", "101"),
])
def test_unparseable_messages_get_ar(runtime, raw, location, code):
    dispatcher = dispatcher_for(runtime, Hl7Route("ADT^A01", RecordingHandler(), transaction="ITI-8"))
    answer = handle(dispatcher, raw)
    assert msa(answer)[0] == "AR"
    assert err(answer) == (location, code, "E")


def test_concurrent_duplicate_answers_with_what_the_other_worker_stored(runtime):
    """Another worker commits the same MSH-3/4/10 while this one runs the handler: its answer wins."""
    if runtime.db.is_sqlite:
        pytest.skip("on SQLite every unit of work holds the write lock from its first statement (BEGIN IMMEDIATE): "
                    "another writer cannot commit in between, so this interleaving cannot happen")
    other_answer = b"MSH|^~\\&|ENGINE|SITE|HIS|HOSP|2024||ACK^A01^ACK|OTHER|P|2.5\rMSA|AA|D1\r"

    def racing_handler(message, uow, context):
        with UnitOfWork(runtime.db.sessions) as other:  # commits after this worker looked, before it writes
            other.hl7_exchanges.add(sending_application="HIS", sending_facility="HOSP", control_id="D1",
                                    message_type="ADT^A01", message_sha256="0" * 64, response=other_answer)
            other.commit()
        uow.queue.put("received", message.raw)
        return None

    dispatcher = dispatcher_for(runtime, Hl7Route("ADT^A01", racing_handler, transaction="ITI-8"))
    assert handle(dispatcher, message("D1")) == other_answer
    assert count(runtime, QueueItem) == 0  # this worker's copy of the work rolled back
    assert count(runtime, Hl7Exchange) == 1


def test_record_exchange_false_runs_the_handler_every_time(runtime):
    handler = RecordingHandler()
    dispatcher = dispatcher_for(runtime, Hl7Route("QBP^Q22", handler, transaction="ITI-21", record_exchange=False))
    first = handle(dispatcher, message("Q1", "QBP^Q22^QBP_Q21"))
    second = handle(dispatcher, message("Q1", "QBP^Q22^QBP_Q21"))
    assert msa(first) == msa(second) == ("AA", "Q1")
    assert handler.calls == 2
    assert count(runtime, QueueItem) == 2 and count(runtime, Hl7Exchange) == 0


def test_v231_errors_fill_err_1(runtime):
    def refuse(message, uow, context):
        raise TransactionError("no such patient", code="204", location="PID^1^3")

    answer = handle(dispatcher_for(runtime, Hl7Route("ADT", refuse, transaction="ITI-8")),
                    message("V1", "ADT^A08", version="2.3.1"))
    assert str(ack_of(answer).segment("ERR")[1]) == "PID^1^3^204&Unknown key identifier&HL70357"
    assert str(ack_of(answer).segment("MSH")[12]) == "2.3.1"


# -- non-blocking routes need no runtime and run inline --------------------------------------------------------

def test_non_blocking_route_runs_inline_without_storage():
    seen = []

    def noop(message, uow, context):
        seen.append((uow, context.peer, context.transaction))
        return None

    dispatcher = Hl7Dispatcher(None, [Hl7Route("ZBM^Z01", noop, transaction="bench", blocking=False,
                                               record_exchange=False)])
    answers = []
    dispatcher.handle(message("N1", "ZBM^Z01"), "peer:1").addCallback(answers.append)
    assert seen == [(None, "peer:1", "bench")]
    assert msa(answers[0]) == ("AA", "N1")


def test_non_blocking_refusal():
    def refuse(message, uow, context):
        raise TransactionError("nope", code="207")

    dispatcher = Hl7Dispatcher(None, [Hl7Route("ZBM", refuse, transaction="bench", blocking=False)])
    answers = []
    dispatcher.handle(message("N2", "ZBM^Z01"), "peer:1").addCallback(answers.append)
    assert msa(answers[0]) == ("AE", "N2")


def test_route_validation():
    with pytest.raises(ValueError):
        Hl7Route("ADT-A01", lambda *a: None, transaction="x")
    with pytest.raises(ValueError):
        Hl7Dispatcher(None, [Hl7Route("ADT", lambda *a: None, transaction="x", blocking=False),
                             Hl7Route("ADT", lambda *a: None, transaction="y", blocking=False)])
    with pytest.raises(ValueError):
        Hl7Dispatcher(None, [Hl7Route("ADT", lambda *a: None, transaction="x")])


# -- key fields are checked before the database sees them ------------------------------------------------------

@pytest.mark.parametrize(("sender", "control_id", "location"), [
    ("LAB|HOSP", "MSG\x001", "MSH^1^10"),
    ("L\x00AB|HOSP", "K1", "MSH^1^3"),
    ("LAB|HO\x7fSP", "K2", "MSH^1^4"),
    ("LAB|HOSP", "K\x1b3", "MSH^1^10"),
])
def test_control_characters_in_key_fields_get_ar_102_and_never_reach_storage(runtime, sender, control_id,
                                                                             location):
    handler = RecordingHandler()
    answer = handle(dispatcher_for(runtime, Hl7Route("ADT^A01", handler, transaction="ITI-8")),
                    message(control_id, sender=sender))
    assert msa(answer)[0] == "AR"
    assert err(answer) == (location, "102", "E")
    assert handler.calls == 0 and count(runtime, Hl7Exchange) == 0


def test_too_long_key_field_is_value_too_long_104(runtime):
    answer = handle(dispatcher_for(runtime, Hl7Route("ADT^A01", RecordingHandler(), transaction="ITI-8")),
                    message("C" * 200))
    assert msa(answer)[0] == "AR"
    assert err(answer) == ("MSH^1^10", "104", "E")


# -- every answer is counted -----------------------------------------------------------------------------------

def samples(transaction: str) -> dict[str, float]:
    values = {outcome: REGISTRY.get_sample_value("ihe_transactions_total",
                                                 {"transaction": transaction, "outcome": outcome})
              for outcome in ("ok", "error")}
    return {outcome: value or 0.0 for outcome, value in values.items()}


def error_sample(transaction: str, code: str) -> float:
    return REGISTRY.get_sample_value("ihe_transaction_errors_total", {"transaction": transaction, "code": code}) \
        or 0.0


def test_aa_ae_and_ar_answers_are_all_counted(runtime):
    refusal = TransactionError("unknown domain", code="204", location="PID^1^3^1^4")
    dispatcher = dispatcher_for(runtime, Hl7Route("ADT^A01", RecordingHandler(), transaction="ITI-8-metrics"),
                                Hl7Route("ADT^A08", RecordingHandler(refusal), transaction="ITI-8-metrics"))
    before, unrouted_before = samples("ITI-8-metrics"), samples(UNROUTED)
    errors_before = (error_sample("ITI-8-metrics", "204"), error_sample(UNROUTED, "200"),
                     error_sample(UNROUTED, "100"))
    assert msa(handle(dispatcher, message("M1")))[0] == "AA"
    assert msa(handle(dispatcher, message("M2", "ADT^A08^ADT_A01")))[0] == "AE"
    assert msa(handle(dispatcher, message("M3", "ORU^R01^ORU_R01")))[0] == "AR"
    assert msa(handle(dispatcher, b"PID|||1\r"))[0] == "AR"
    after, unrouted_after = samples("ITI-8-metrics"), samples(UNROUTED)
    assert after["ok"] - before["ok"] == 1
    assert after["error"] - before["error"] == 1
    assert unrouted_after["error"] - unrouted_before["error"] == 2
    assert unrouted_after["ok"] == unrouted_before["ok"]
    assert (error_sample("ITI-8-metrics", "204") - errors_before[0], error_sample(UNROUTED, "200") - errors_before[1],
            error_sample(UNROUTED, "100") - errors_before[2]) == (1, 1, 1)


def test_ar_for_a_routed_type_counts_under_its_transaction(runtime):
    dispatcher = dispatcher_for(runtime, Hl7Route("ADT^A01", RecordingHandler(), transaction="ITI-8-keys"))
    before, errors_before = samples("ITI-8-keys"), error_sample("ITI-8-keys", "102")
    assert msa(handle(dispatcher, message("K\x004")))[0] == "AR"
    assert samples("ITI-8-keys")["error"] - before["error"] == 1
    assert error_sample("ITI-8-keys", "102") - errors_before == 1


def test_non_blocking_refusal_counts_as_an_error():
    def refuse(message, uow, context):
        raise TransactionError("nope", code="207")

    dispatcher = Hl7Dispatcher(None, [Hl7Route("ZBM", refuse, transaction="bench-refusal", blocking=False)])
    before = samples("bench-refusal")
    dispatcher.handle(message("N3", "ZBM^Z01"), "peer:1")
    assert samples("bench-refusal")["error"] - before["error"] == 1
    assert samples("bench-refusal")["ok"] == before["ok"]
