"""ITI-8 against the public corpus: every IPF ITI-8 sample and every ANS PAM FR admission gets its expected ACK.

Expected answers (the corpus' MANIFEST says where outcomes are stated; where it states none, the answer follows
from the IHE text, given beside each case):

* IPF ``iti8-a01-incomplete.hl7`` "must be rejected": AE, 100 at PID^1 (no PID segment).
* IPF samples whose PID-3 or MRG-1 has no assigning authority: AE 101 at the component (ITI-8 requires PID-3.4).
* IPF merges: AA once both ids are known; AE 204 at MRG-1 in an empty store; AE 103 when MRG-1 is in another
  domain than every PID-3 id.
* IPF A10 (not an ITI-8 event): AR 201 at MSH^1^9^1^2.
* ANS PAM FR admissions (A01, ``2.5^FRA^2.11``, ZBE/ZFA/ZFD/ZFM): AA (the repository has no ACK for ADT; these are
  the reference admissions); with the French rules, AA with warnings (test INS OID, identity not qualified).
  The discharge (A03) is not an ITI-8 event: AR 201.
"""

from __future__ import annotations

import hl7
import pytest
from twisted.internet.threads import blockingCallFromThread
from twisted.python.threadpool import ThreadPool

from ihe_engine.audit import AuditHook
from ihe_engine.config import Settings
from ihe_engine.hl7v2.dispatch import Hl7Dispatcher
from ihe_engine.identity.iti8 import hl7_routes
from ihe_engine.plugins import create_plugin_manager
from ihe_engine.runtime import Runtime
from ihe_engine.storage.blobstore import BlobStore

IPF_MLLP = "oehf-ipf/platform-camel/ihe/mllp/src/test/resources/iti8/"
IPF_SOURCE = "oehf-ipf/commons/ihe/hl7v3/src/test/resources/translation/pixsource/v2/"
IPF_FEED = "oehf-ipf/commons/ihe/hl7v3/src/test/resources/translation/pixfeed/v2/"
IPF_CAMEL = "oehf-ipf/platform-camel/hl7/src/test/resources/hl7/iti-8.hl7"
ANS = "ansforge-hl7V2-exemples/"
ANS_ADMISSIONS = [ANS + "SGL/admission.er7"] + [
    ANS + "Vague 2/Consentement_DMP_PAMFR/" + name for name in (
        "ConsentementConsultation_NonOppositionAlimentation.er7",
        "NonConsentementConsultation_NonOppositionAlimentation.er7",
        "NonConsentementConsultation_OppositionAlimentation.er7",
        "NonRecueillieConsentementConsultation_NonOppositionAlimentation.er7",
        "NonRecueillieConsentementConsultation_NonRecueillieOppositionAlimentation.er7")]


def a01(control_id: str, pid3: str) -> bytes:
    return (f"MSH|^~\\&|SETUP|SETUP|ENGINE|SITE|20240101120000||ADT^A01^ADT_A01|{control_id}|P|2.3.1\r"
            f"EVN|A01|20240101120000\rPID|||{pid3}||SETUP^PATIENT\rPV1||O\r").encode()


HIMSS = "HIMSS2005&1.3.6.1.4.1.21367.2005.1.1&ISO"
ICW = "130&2.16.840.1.113883.3.37.4.1.1.2.1.1&ISO"

# (corpus file, messages fed first, MSA-1, (ERR-2, ERR-3) or None)
CASES = [
    (IPF_MLLP + "iti8-a01-incomplete.hl7", [], "AE", ("PID^1", "100")),
    (IPF_MLLP + "hl7v2message.hl7", [], "AE", ("PID^1^3^1^4", "101")),
    (IPF_MLLP + "iti8-a40.hl7", [], "AE", ("MRG^1^1^1^4", "101")),
    (IPF_MLLP + "iti8-a40-iso-8859-1.hl7", [], "AE", ("MRG^1^1^1^4", "101")),
    (IPF_CAMEL, [], "AE", ("MRG^1^1^1^1", "204")),
    (IPF_CAMEL, [a01("S1", f"PDQ113XX35^^^{HIMSS}"), a01("S2", f"PDQ113XX03^^^{HIMSS}")], "AA", None),
    (IPF_SOURCE + "A01.hl7", [], "AA", None),
    (IPF_SOURCE + "A01_with_BR.hl7", [], "AA", None),
    (IPF_SOURCE + "A04.hl7", [], "AA", None),
    (IPF_SOURCE + "A08.hl7", [], "AA", None),
    (IPF_SOURCE + "A10.hl7", [], "AR", ("MSH^1^9^1^2", "201")),
    (IPF_SOURCE + "A40.hl7", [], "AE", ("MRG^1^1^1^1", "204")),
    (IPF_SOURCE + "A40.hl7", [a01("S1", f"142025^^^{ICW}"), a01("S2", f"704686^^^{ICW}")], "AA", None),
    (IPF_FEED + "PIX_FEED_REG_Maximal_Request.hl7", [], "AA", None),
    (IPF_FEED + "PIX_FEED_REV_Maximal_Request.hl7", [], "AA", None),
    (IPF_FEED + "PIX_FEED_MERGE_Maximal_Request.hl7", [a01("S1", "120-01^^^&1.2.3.4.5.1000&ISO")], "AE",
     ("MRG^1^1^1^4", "103")),
    (ANS + "SGL/sortie.er7", [], "AR", ("MSH^1^9^1^2", "201")),
    *[(path, [], "AA", None) for path in ANS_ADMISSIONS],
]


@pytest.fixture
def make_dispatcher(database, reactor_thread, tmp_path):
    pools = []

    def make(**extra) -> Hl7Dispatcher:
        pool = ThreadPool(minthreads=1, maxthreads=2, name="test-iti8-corpus")
        pool.start()
        pools.append(pool)
        runtime = Runtime(settings=Settings(data_dir=tmp_path, extra=extra), db=database,
                          audit=AuditHook(create_plugin_manager(load_entry_points=False)),
                          blobs=BlobStore(tmp_path / "blobs"), reactor=reactor_thread, threadpool=pool)
        return Hl7Dispatcher(runtime, hl7_routes(runtime), sending_application="ENGINE", sending_facility="SITE")

    yield make
    for pool in pools:
        pool.stop()


def corpus_bytes(corpus_dir, relative: str) -> bytes:
    path = corpus_dir / relative
    if not path.is_file():
        pytest.skip(f"corpus file {relative} is absent")
    return path.read_bytes()


def handle(dispatcher: Hl7Dispatcher, raw: bytes) -> bytes:
    return blockingCallFromThread(dispatcher.runtime.reactor, dispatcher.handle, raw, "10.0.0.1:1")


def answer_of(answer: bytes) -> tuple[str, str, list[tuple[str, str, str]]]:
    """(MSA-1, MSA-2, [(ERR-2, ERR-3.1, ERR-4)]) read with python-hl7, a parser this project did not write."""
    message = hl7.parse(answer.decode("latin-1"))
    msa = message.segment("MSA")
    errors = [(str(err[2]), str(err[3][0][0]), str(err[4])) for err in message.segments("ERR")] \
        if "ERR" in [str(segment[0]) for segment in message] else []
    return str(msa[1]), str(msa[2]), errors


def control_id_of(raw: bytes) -> str:
    text = raw.decode("latin-1").lstrip("\r\n")
    return text.split("\r", 1)[0].split("\n", 1)[0].split("|")[9]


@pytest.mark.parametrize(("relative", "setup", "code", "error"), CASES,
                         ids=[f"{case[0].rsplit('/', 1)[1]}-{case[2]}" for case in CASES])
def test_corpus_message_gets_its_expected_ack(make_dispatcher, corpus_dir, relative, setup, code, error):
    raw = corpus_bytes(corpus_dir, relative)
    dispatcher = make_dispatcher()
    for message in setup:
        assert answer_of(handle(dispatcher, message))[0] == "AA"
    msa_1, msa_2, errors = answer_of(handle(dispatcher, raw))
    assert (msa_1, msa_2) == (code, control_id_of(raw))
    if error is None:
        assert errors == []
    else:
        assert errors[0][:2] == error and errors[0][2] == "E"


@pytest.mark.parametrize("relative", ANS_ADMISSIONS, ids=[path.rsplit("/", 1)[1] for path in ANS_ADMISSIONS])
def test_pam_fr_admissions_with_the_french_rules(make_dispatcher, corpus_dir, relative):
    raw = corpus_bytes(corpus_dir, relative)
    msa_1, msa_2, errors = answer_of(handle(make_dispatcher(identity_rules="france"), raw))
    assert (msa_1, msa_2) == ("AA", control_id_of(raw))
    assert errors and all(severity == "W" for _, _, severity in errors)
    assert {location for location, _, _ in errors} == {"PID^1^3^2", "PID^1^32"}


def test_every_pam_fr_admission_in_sequence_updates_one_patient(make_dispatcher, corpus_dir):
    """The five consent variants and the SGL admission are the same patient: one person, one IPP."""
    dispatcher = make_dispatcher()
    for relative in ANS_ADMISSIONS:
        assert answer_of(handle(dispatcher, corpus_bytes(corpus_dir, relative)))[0] == "AA"
    from sqlalchemy import func, select

    from ihe_engine.identity.tables import Patient

    with dispatcher.runtime.db.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Patient)) == 1
