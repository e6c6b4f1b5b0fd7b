"""ITI-8 Patient Identity Feed through the real dispatcher and store, corpus messages, audit, and MLLP loopback."""

from __future__ import annotations

import hl7
import pytest
from hl7.client import MLLPClient
from sqlalchemy import func, select
from twisted.internet.threads import blockingCallFromThread
from twisted.python.threadpool import ThreadPool

from ihe_engine.audit import AuditHook
from ihe_engine.config import Settings
from ihe_engine.errors import ConfigurationError
from ihe_engine.hl7v2.dispatch import Hl7Context, Hl7Dispatcher
from ihe_engine.hl7v2.message import parse
from ihe_engine.identity.cx import CX
from ihe_engine.identity.iti8 import Iti8Feed, hl7_routes
from ihe_engine.identity.store import IdentifierState, IdentityStore
from ihe_engine.identity.tables import IdentityEvent, Patient, PatientIdentifier
from ihe_engine.plugins import create_plugin_manager, hookimpl
from ihe_engine.runtime import Runtime
from ihe_engine.storage.blobstore import BlobStore
from ihe_engine.transport.mllp_twisted import MLLPServerFactory

NIST_DOMAIN = "1.3.6.1.4.1.21367.13.20.1000"
NIST_PID3 = f"P1121120000.2^^^&{NIST_DOMAIN}&ISO"
PAM_FR_ADMISSION = "ansforge-hl7V2-exemples/SGL/admission.er7"
PAM_FR_CONSENT = ("ansforge-hl7V2-exemples/Vague 2/Consentement_DMP_PAMFR/"
                  "ConsentementConsultation_NonOppositionAlimentation.er7")
IPF_A01 = "oehf-ipf/commons/ihe/hl7v3/src/test/resources/translation/pixsource/v2/A01.hl7"
IPF_A40 = "oehf-ipf/platform-camel/hl7/src/test/resources/hl7/iti-8.hl7"
IPF_INCOMPLETE = "oehf-ipf/platform-camel/ihe/mllp/src/test/resources/iti8/iti8-a01-incomplete.hl7"


class CapturingSink:
    def __init__(self) -> None:
        self.records: list = []

    @hookimpl
    def ihe_audit_record(self, record) -> None:
        self.records.append(record)


@pytest.fixture
def sink() -> CapturingSink:
    return CapturingSink()


@pytest.fixture
def runtime(database, reactor_thread, tmp_path, sink):
    plugins = create_plugin_manager(load_entry_points=False)
    plugins.register(sink, name="capture")
    pool = ThreadPool(minthreads=1, maxthreads=4, name="test-iti8")
    pool.start()
    yield Runtime(settings=Settings(data_dir=tmp_path), db=database, audit=AuditHook(plugins),
                  blobs=BlobStore(tmp_path / "blobs"), reactor=reactor_thread, threadpool=pool)
    pool.stop()


@pytest.fixture
def dispatcher(runtime) -> Hl7Dispatcher:
    return Hl7Dispatcher(runtime, hl7_routes(runtime), sending_application="ENGINE", sending_facility="SITE")


def adt(trigger: str, control_id: str, pid3: str, *, version: str = "2.5", name: str = "ALPHA^ALAN^^^^^L",
        birth_date: str = "19380224", sex: str = "M", extra: str = "", mrg: str | None = None) -> bytes:
    structure = "ADT_A39" if trigger == "A40" else "ADT_A01"
    msh = f"MSH|^~\\&|PAT_SRC|HOSP|ENGINE|SITE|20240101120000||ADT^{trigger}^{structure}|{control_id}|P|{version}"
    segments = [msh,
                f"EVN|{trigger}|20240101120000",
                f"PID|1||{pid3}||{name}||{birth_date}|{sex}|||1 PINETREE^^WEBSTER^MO^63119{extra}"]
    if mrg is not None:
        segments.append(f"MRG|{mrg}")
    segments.append("PV1||O")
    return ("\r".join(segments) + "\r").encode()


def pid3(value: str, oid: str = NIST_DOMAIN) -> str:
    return f"{value}^^^&{oid}&ISO"


def nist_a01(control_id: str = "NIST-1") -> bytes:
    return (f"MSH|^~\\&|NIST_SENDER^^|NIST^^|ENGINE|SITE|20240101120000||ADT^A01^ADT_A01|{control_id}|P|2.3.1\r"
            f"EVN||20240101120000\r"
            f"PID|||{NIST_PID3}||ALPHA^ALAN^^^^^L||19380224|M|||1 PINETREE^^WEBSTER^MO^63119\r"
            f"PV1||O\r").encode()


def handle(dispatcher: Hl7Dispatcher, raw: bytes) -> bytes:
    return blockingCallFromThread(dispatcher.runtime.reactor, dispatcher.handle, raw, "10.1.2.3:5000")


def msa(answer: bytes) -> tuple[str, str]:
    segment = hl7.parse(answer.decode()).segment("MSA")
    return str(segment[1]), str(segment[2])


def err(answer: bytes) -> tuple[str, str]:
    segment = hl7.parse(answer.decode()).segment("ERR")
    return str(segment[2]), str(segment[3][0][0])


def resolve(runtime: Runtime, text: str):
    with runtime.uow() as uow:
        return IdentityStore(uow.session).resolve(CX.from_hl7(text))


def known(runtime: Runtime, text: str, domain: str = NIST_DOMAIN) -> bool:
    with runtime.uow() as uow:
        return IdentityStore(uow.session).is_known_in_domain(CX.from_hl7(text), domain)


def patient_traits(runtime: Runtime, text: str, *names: str) -> tuple:
    with runtime.uow() as uow:
        store = IdentityStore(uow.session)
        patient = store.patient(store.resolve(CX.from_hl7(text)).patient_id)
        return tuple(getattr(patient, name) for name in names)


def state(runtime: Runtime) -> tuple:
    """Everything a refused message must leave untouched."""
    with runtime.db.sessions() as session:
        patients = session.execute(select(Patient.id, Patient.status, Patient.merged_into_id)
                                   .order_by(Patient.id)).all()
        identifiers = session.execute(select(PatientIdentifier.authority_key, PatientIdentifier.value,
                                             PatientIdentifier.status, PatientIdentifier.patient_id)
                                      .order_by(PatientIdentifier.id)).all()
        events = session.scalar(select(func.count()).select_from(IdentityEvent))
    return patients, identifiers, events


def corpus_message(corpus_dir, relative: str) -> bytes:
    path = corpus_dir / relative
    if not path.is_file():
        pytest.skip(f"corpus file {relative} is absent")
    return path.read_bytes()


# -- create and update -----------------------------------------------------------------------------------------

def test_nist_v231_a01_is_accepted_and_makes_the_id_known(dispatcher, runtime):
    assert msa(handle(dispatcher, nist_a01())) == ("AA", "NIST-1")
    assert known(runtime, NIST_PID3)
    assert patient_traits(runtime, NIST_PID3, "family_name", "given_name", "birth_date", "sex", "city",
                          "postal_code") == ("ALPHA", "ALAN", "19380224", "M", "WEBSTER", "63119")


@pytest.mark.parametrize("trigger", ["A01", "A04", "A05", "A08"])
def test_each_feed_event_creates_the_patient(dispatcher, runtime, trigger):
    """A08 on an unknown patient creates it too (see the module's docstring)."""
    assert msa(handle(dispatcher, adt(trigger, f"C-{trigger}", pid3(f"ID-{trigger}"))))[0] == "AA"
    assert resolve(runtime, pid3(f"ID-{trigger}")).state is IdentifierState.ACTIVE


def test_a08_updates_sent_traits_and_keeps_the_others(dispatcher, runtime):
    handle(dispatcher, adt("A01", "U1", pid3("UPD"), extra="||0102030405"))
    answer = handle(dispatcher, adt("A08", "U2", f"{pid3('UPD')}~LOC-7^^^HOSP^PI", name="BETA^ALAN^^^^^L",
                                    birth_date="", sex='""'))
    assert msa(answer) == ("AA", "U2")
    assert patient_traits(runtime, pid3("UPD"), "family_name", "family_name_key", "birth_date", "sex", "phone") == \
        ("BETA", "BETA", "19380224", None, "0102030405")
    assert resolve(runtime, "LOC-7^^^HOSP").patient_id == resolve(runtime, pid3("UPD")).patient_id
    with runtime.db.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Patient)) == 1


def test_v25_with_identity_reliability(dispatcher, runtime):
    message = adt("A01", "V25", pid3("V25"), version="2.5.1",
                  extra="|" * 21 + "VALI")  # PID-11 .. PID-32
    assert msa(handle(dispatcher, message)) == ("AA", "V25")
    assert patient_traits(runtime, pid3("V25"), "identity_reliability") == ("VALI",)


def test_pam_fr_admission_from_the_ansforge_corpus(dispatcher, runtime, corpus_dir):
    raw = corpus_message(corpus_dir, PAM_FR_ADMISSION)
    assert parse(raw).header.version_field == "2.5^FRA^2.11"
    assert msa(handle(dispatcher, raw)) == ("AA", "3975")
    ipp, ins = "000003^^^CHU-X&000897406&N^PI", "279035121518989^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.10&ISO^INS"
    assert resolve(runtime, ipp).patient_id == resolve(runtime, ins).patient_id
    assert patient_traits(runtime, ipp, "family_name", "birth_name", "family_name_key", "given_name", "birth_date",
                          "sex", "birthplace", "city", "postal_code", "identity_reliability") == \
        ("PAT-TROIS", "PAT-TROIS", "PAT TROIS", "DOMINIQUE", "19790328", "F", "63220", "PARIS", "75007", "VALI")
    with runtime.uow() as uow:
        store = IdentityStore(uow.session)
        [event] = store.history(store.resolve(CX.from_hl7(ipp)).patient_id)
        assert event.kind == "A01" and event.control_id == "3975"
        assert "ZBE|001^CHU-X^000897406|" in event.raw_message and "ZFA|ACTIF|" in event.raw_message
        assert CX.from_hl7(ins).type_code == "INS"
        assert [cx.type_code for cx in store.identifiers_of(event.patient_id)] == ["PI", "INS"]


def test_pam_fr_consent_message_from_the_ansforge_corpus(dispatcher, corpus_dir):
    assert msa(handle(dispatcher, corpus_message(corpus_dir, PAM_FR_CONSENT)))[0] == "AA"


def test_ipf_a01_with_a_null_identifier_repetition(dispatcher, runtime, corpus_dir):
    """pixsource/v2/A01.hl7 carries ``""^^^&2.71&ISO``: no identifier in that domain, the other two kept."""
    assert msa(handle(dispatcher, corpus_message(corpus_dir, IPF_A01))) == ("AA", "371601")
    mpi = "306563^^^MPI&2.16.840.1.113883.3.37.4.1.1.2.1.1&ISO"
    local = "30753^^^KHKN&2.16.840.1.113883.3.37.4.1.1.2.611.1&ISO"
    assert resolve(runtime, mpi).patient_id == resolve(runtime, local).patient_id
    assert patient_traits(runtime, mpi, "family_name", "given_name") == ("Bob", "Barker")


def test_ipf_incomplete_a01_is_refused(dispatcher, runtime, corpus_dir):
    answer = handle(dispatcher, corpus_message(corpus_dir, IPF_INCOMPLETE))
    assert msa(answer) == ("AE", "123456")
    assert err(answer) == ("PID^1", "100")
    assert state(runtime) == ([], [], 0)


@pytest.mark.parametrize(("pid_3", "location", "code"), [
    ("72001173A", "PID^1^3^1^4", "101"),  # no assigning authority
    (f"{pid3('OK')}~9^^^&1.2.3", "PID^1^3^2^4^3", "101"),
    ("9^^^&1.x&ISO", "PID^1^3^1^4^2", "102"),
    ("", "PID^1^3", "101"),
    ('""^^^&1.2.3&ISO', "PID^1^3", "101"),
])
def test_bad_pid3_is_refused_with_its_location(dispatcher, runtime, pid_3, location, code):
    answer = handle(dispatcher, adt("A01", "BAD", pid_3))
    assert msa(answer)[0] == "AE"
    assert err(answer) == (location, code)
    assert state(runtime) == ([], [], 0)


def test_unsupported_version(dispatcher, runtime):
    answer = handle(dispatcher, adt("A01", "OLD", pid3("OLD"), version="2.2"))
    assert err(answer) == ("MSH^1^12", "203")
    assert state(runtime) == ([], [], 0)


def test_accepted_authorities_restrict_the_domains(runtime):
    restricted = Hl7Dispatcher(runtime, Iti8Feed(accepted_authorities=[NIST_DOMAIN]).routes())
    assert msa(handle(restricted, adt("A01", "D1", pid3("IN"))))[0] == "AA"
    answer = handle(restricted, adt("A01", "D2", f"{pid3('IN2')}~X^^^OTHER"))
    assert err(answer) == ("PID^1^3^2^4", "204")


def test_feed_for_identifiers_of_two_patients_is_refused(dispatcher, runtime):
    handle(dispatcher, adt("A01", "T1", pid3("TWO-A")))
    handle(dispatcher, adt("A01", "T2", pid3("TWO-B")))
    before = state(runtime)
    answer = handle(dispatcher, adt("A08", "T3", f"{pid3('TWO-A')}~{pid3('TWO-B')}"))
    assert err(answer) == ("PID^1^3^2^1", "205")
    assert state(runtime) == before


# -- merge -----------------------------------------------------------------------------------------------------

def test_a40_merges_and_the_subsumed_id_leaves_the_domain(dispatcher, runtime, sink):
    handle(dispatcher, adt("A01", "M1", pid3("SURVIVOR")))
    handle(dispatcher, adt("A01", "M2", pid3("SUBSUMED")))
    sink.records.clear()
    answer = handle(dispatcher, adt("A40", "M3", pid3("SURVIVOR"), mrg=pid3("SUBSUMED")))
    assert msa(answer) == ("AA", "M3")
    assert not known(runtime, pid3("SUBSUMED")) and known(runtime, pid3("SURVIVOR"))
    assert resolve(runtime, pid3("SUBSUMED")).patient_id == resolve(runtime, pid3("SURVIVOR")).patient_id
    assert [(record.action, record.outcome, record.objects[0].object_id) for record in sink.records] == [
        ("D", 0, pid3("SUBSUMED")), ("U", 0, pid3("SURVIVOR"))]
    # later feeds for the subsumed id are refused
    assert err(handle(dispatcher, adt("A08", "M4", pid3("SUBSUMED")))) == ("PID^1^3^1^1", "204")


def test_ipf_a40_from_the_corpus(dispatcher, runtime, corpus_dir):
    raw = corpus_message(corpus_dir, IPF_A40)
    domain = "HIMSS2005&1.3.6.1.4.1.21367.2005.1.1&ISO"
    handle(dispatcher, adt("A01", "I1", f"PDQ113XX35^^^{domain}", version="2.3.1"))
    handle(dispatcher, adt("A01", "I2", f"PDQ113XX03^^^{domain}", version="2.3.1"))
    assert msa(handle(dispatcher, raw)) == ("AA", "128856")
    assert resolve(runtime, f"PDQ113XX03^^^{domain}").state is IdentifierState.SUBSUMED


@pytest.mark.parametrize(("survivor", "subsumed", "location", "code"), [
    (pid3("KEEP"), pid3("KEEP"), "MRG^1^1^1^1", "205"),
    (pid3("KEEP"), "GONE^^^OTHER", "MRG^1^1^1^4", "103"),
    (pid3("KEEP"), pid3("NEVER-FED"), "MRG^1^1^1^1", "204"),
    (pid3("NEVER-FED"), pid3("GONE"), "PID^1^3^1^1", "204"),
    (pid3("KEEP"), pid3("OLD"), "MRG^1^1^1^1", "204"),  # already subsumed
    (pid3("OLD"), pid3("GONE"), "PID^1^3^1^1", "204"),  # survivor already subsumed
    (pid3("KEEP"), pid3("REMOVED"), "MRG^1^1^1^1", "204"),  # inactive
    (pid3("KEEP"), "", "MRG^1^1", "101"),
    (pid3("KEEP"), "NO-AUTHORITY", "MRG^1^1^1^4", "101"),
    (pid3("KEEP"), None, "MRG^1", "100"),
])
def test_a40_refusals_answer_ae_with_err_and_change_nothing(dispatcher, runtime, sink, survivor, subsumed,
                                                            location, code):
    handle(dispatcher, adt("A01", "S1", pid3("KEEP")))
    handle(dispatcher, adt("A01", "S2", pid3("GONE")))
    handle(dispatcher, adt("A01", "S3", pid3("OLD")))
    handle(dispatcher, adt("A40", "S4", pid3("KEEP"), mrg=pid3("OLD")))
    handle(dispatcher, adt("A01", "S5", f"{pid3('REMOVED')}~H-1^^^HOSP"))
    handle(dispatcher, adt("A08", "S6", f"H-1^^^HOSP~\"\"^^^&{NIST_DOMAIN}&ISO"))
    assert resolve(runtime, pid3("REMOVED")).state is IdentifierState.INACTIVE
    before = state(runtime)
    sink.records.clear()
    message = adt("A40", "REFUSED", survivor, mrg=subsumed)
    answer = handle(dispatcher, message)
    assert msa(answer) == ("AE", "REFUSED")
    assert err(answer) == (location, code)
    assert state(runtime) == before
    assert [(record.action, record.outcome) for record in sink.records] == [("D", 4), ("U", 4)]
    assert handle(dispatcher, message) == answer  # a retransmission gets the same answer


# -- retransmission and audit ----------------------------------------------------------------------------------

def test_retransmission_gets_the_same_answer_and_changes_nothing(dispatcher, runtime, sink):
    first = handle(dispatcher, nist_a01("R1"))
    after_first = state(runtime)
    assert handle(dispatcher, nist_a01("R1")) == first
    assert state(runtime) == after_first
    assert len(sink.records) == 1


def test_audit_records_for_create_update_and_refusal(dispatcher, sink):
    handle(dispatcher, nist_a01("AU1"))
    handle(dispatcher, adt("A08", "AU2", NIST_PID3))
    handle(dispatcher, adt("A01", "AU3", "NO-AUTHORITY"))
    assert [(record.event_id, record.action, record.outcome, record.transaction) for record in sink.records] == [
        (("110110", "DCM", "Patient Record"), "C", 0, "ITI-8"),
        (("110110", "DCM", "Patient Record"), "U", 0, "ITI-8"),
        (("110110", "DCM", "Patient Record"), "C", 4, "ITI-8")]
    created = sink.records[0]
    assert created.event_types == (("ITI-8", "IHE Transactions", "Patient Identity Feed"),)
    source, destination = created.participants
    assert (source.user_id, source.is_requestor, source.role, source.network_access_point) == \
        ("NIST^^|NIST_SENDER^^", True, ("110153", "DCM", "Source"), "10.1.2.3")
    assert (destination.user_id, destination.is_requestor, destination.role) == \
        ("SITE|ENGINE", False, ("110152", "DCM", "Destination"))
    [patient] = created.objects
    assert (patient.object_id, patient.type_code, patient.type_code_role, patient.details) == \
        (NIST_PID3, 1, 1, (("MSH-10", b"AU1"),))
    assert sink.records[2].outcome_description


def test_audit_waits_for_commit_and_reports_rolled_back_work_as_failed(runtime, sink):
    feed = Iti8Feed()
    message = parse(nist_a01("RB1"))
    context = Hl7Context(peer="10.1.2.3:5000", transaction="ITI-8", message=message, runtime=runtime,
                         sending_application="ENGINE", sending_facility="SITE")
    with runtime.uow() as uow:
        feed.handle_patient(message, uow, context)
        assert sink.records == []  # nothing before the outcome is known
        uow.rollback()
    assert [(record.action, record.outcome) for record in sink.records] == [("C", 8)]
    assert not known(runtime, NIST_PID3)
    with runtime.uow() as uow:
        feed.handle_patient(message, uow, context)
        uow.commit()
    assert [(record.action, record.outcome) for record in sink.records] == [("C", 8), ("C", 0)]


# -- over a real socket, with a client this project did not write ---------------------------------------------

def test_loopback_nist_a01_with_python_hl7_client(dispatcher, runtime, reactor_thread):
    factory = MLLPServerFactory(dispatcher, max_message_size=1024 * 1024)
    port = blockingCallFromThread(reactor_thread, reactor_thread.listenTCP, 0, factory, interface="127.0.0.1")
    try:
        with MLLPClient("127.0.0.1", port.getHost().port) as client:
            client.socket.settimeout(10)
            received = client.send_message(nist_a01("LOOP-1"))
            while not received.endswith(b"\x1c\x0d"):
                more = client.socket.recv(4096)
                assert more, "server closed before answering"
                received += more
    finally:
        blockingCallFromThread(reactor_thread, port.stopListening)
    ack = hl7.parse(received[1:-2].decode())
    assert (str(ack.segment("MSA")[1]), str(ack.segment("MSA")[2])) == ("AA", "LOOP-1")
    assert str(ack.segment("MSH")[12]) == "2.3.1"
    assert known(runtime, NIST_PID3)


# -- versions, national rules, configuration ---------------------------------------------------------------------

@pytest.mark.parametrize(("version", "accepted"), [
    ("2.3.1", True), ("2.5", True), ("2.5.1", True), ("2.5^FRA^2.11", True), ("2.2", False), ("2.6", False),
    ("3.0", False), ("2.x", False)])
def test_versions(dispatcher, runtime, version, accepted):
    answer = handle(dispatcher, adt("A01", f"V-{version}", pid3("VER"), version=version))
    if accepted:
        assert msa(answer)[0] == "AA"
    else:
        assert msa(answer)[0] == "AE" and err(answer) == ("MSH^1^12", "203")
        assert state(runtime) == ([], [], 0)


def runtime_with(runtime, **extra) -> Runtime:
    return Runtime(settings=Settings(data_dir=runtime.settings.data_dir, extra=extra), db=runtime.db,
                   audit=runtime.audit, blobs=runtime.blobs, reactor=runtime.reactor, threadpool=runtime.threadpool)


def errs(answer: bytes) -> list[tuple[str, str, str]]:
    return [(str(segment[2]), str(segment[3][0][0]), str(segment[4]))
            for segment in hl7.parse(answer.decode()).segments("ERR")]


def test_french_rules_warn_in_the_aa_and_drop_an_unqualified_ins(runtime, corpus_dir):
    french = runtime_with(runtime, identity_rules="france")
    dispatcher = Hl7Dispatcher(french, hl7_routes(french))
    answer = handle(dispatcher, corpus_message(corpus_dir, PAM_FR_ADMISSION))
    assert msa(answer) == ("AA", "3975")
    assert ("PID^1^3^2", "103", "W") in errs(answer)  # an INS-NIR test OID: refused only in production
    assert ("PID^1^32", "207", "W") in errs(answer)  # VALI is not qualified: the INS is not used
    ipp = "000003^^^CHU-X&000897406&N^PI"
    assert resolve(french, ipp).state is IdentifierState.ACTIVE
    assert resolve(french, "279035121518989^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.10&ISO^INS") is None


def test_french_rules_in_production_refuse_a_test_ins(runtime, corpus_dir):
    production = runtime_with(runtime, identity_rules="france", production=True)
    answer = handle(Hl7Dispatcher(production, hl7_routes(production)), corpus_message(corpus_dir, PAM_FR_ADMISSION))
    assert msa(answer) == ("AE", "3975")
    assert errs(answer)[0] == ("PID^1^3^2", "103", "E")
    assert state(runtime) == ([], [], 0)


def test_qualified_ins_links_a_second_hospital(runtime):
    french = runtime_with(runtime, identity_rules="france")
    dispatcher = Hl7Dispatcher(french, hl7_routes(french))
    ins = "161027575428992^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.8&ISO^INS"
    qual = "|" * 21 + "QUAL"
    assert msa(handle(dispatcher, adt("A01", "Q1", f"IPP1^^^&1.2.250.1.71.1.2.1&ISO^PI~{ins}", extra=qual)))[0] == "AA"
    assert msa(handle(dispatcher, adt("A01", "Q2", f"IPP2^^^&1.2.250.1.71.1.2.2&ISO^PI~{ins}", extra=qual)))[0] == "AA"
    assert resolve(french, "IPP1^^^&1.2.250.1.71.1.2.1&ISO").patient_id == \
        resolve(french, "IPP2^^^&1.2.250.1.71.1.2.2&ISO").patient_id


def test_accepted_authorities_from_the_config_file(runtime, tmp_path):
    from ihe_engine.config import load_config_file

    config = tmp_path / "engine.toml"
    config.write_text(f'accepted_authorities = ["{NIST_DOMAIN}"]\n')
    configured = runtime_with(runtime, **load_config_file(config)["extra"])
    dispatcher = Hl7Dispatcher(configured, hl7_routes(configured))
    assert msa(handle(dispatcher, adt("A01", "C1", pid3("IN"))))[0] == "AA"
    assert err(handle(dispatcher, adt("A01", "C2", "X^^^OTHER"))) == ("PID^1^3^1^4", "204")
    with pytest.raises(ConfigurationError):
        hl7_routes(runtime_with(runtime, accepted_authorities=NIST_DOMAIN))


# -- A24 link, A37 unlink, A47 change of identifier ----------------------------------------------------------------

def two_pids(trigger: str, control_id: str, first: str, second: str, *, version: str = "2.5") -> bytes:
    structure = {"A24": "ADT_A24", "A37": "ADT_A37"}[trigger]
    return ("\r".join([
        f"MSH|^~\\&|PAT_SRC|HOSP|ENGINE|SITE|20240101120000||ADT^{trigger}^{structure}|{control_id}|P|{version}",
        f"EVN|{trigger}|20240101120000",
        f"PID|1||{first}||ALPHA^ALAN^^^^^L||19380224|M", "PV1||O",
        f"PID|2||{second}||ALPHA^ALAN^^^^^L||19380224|M", "PV1||O"]) + "\r").encode()


OTHER_DOMAIN = "1.2.250.1.71.1.2.9"


def test_a24_links_and_a37_unlinks(dispatcher, runtime, sink):
    handle(dispatcher, adt("A01", "K1", pid3("LEFT"), name="UN^A^^^^^L"))
    handle(dispatcher, adt("A01", "K2", pid3("RIGHT", OTHER_DOMAIN), name="DEUX^B^^^^^L"))
    sink.records.clear()
    assert msa(handle(dispatcher, two_pids("A24", "K3", pid3("LEFT"), pid3("RIGHT", OTHER_DOMAIN)))) == ("AA", "K3")
    assert resolve(runtime, pid3("RIGHT", OTHER_DOMAIN)).patient_id == resolve(runtime, pid3("LEFT")).patient_id
    assert [(record.action, record.outcome) for record in sink.records] == [("U", 0), ("U", 0)]
    assert msa(handle(dispatcher, two_pids("A37", "K4", pid3("LEFT"), pid3("RIGHT", OTHER_DOMAIN)))) == ("AA", "K4")
    assert resolve(runtime, pid3("RIGHT", OTHER_DOMAIN)).patient_id != resolve(runtime, pid3("LEFT")).patient_id
    assert patient_traits(runtime, pid3("RIGHT", OTHER_DOMAIN), "family_name") == ("ALPHA",)  # the A37's PID 2
    before = state(runtime)
    answer = handle(dispatcher, two_pids("A37", "K5", pid3("LEFT"), pid3("RIGHT", OTHER_DOMAIN)))
    assert (msa(answer)[0], err(answer)) == ("AE", ("PID^2^3^1^1", "205"))  # no longer linked
    answer = handle(dispatcher, two_pids("A24", "K6", pid3("LEFT"), pid3("NOBODY", OTHER_DOMAIN)))
    assert (msa(answer)[0], err(answer)) == ("AE", ("PID^2^3^1^1", "204"))
    answer = handle(dispatcher, two_pids("A24", "K7", pid3("LEFT"), "NO-AUTHORITY"))
    assert (msa(answer)[0], err(answer)) == ("AE", ("PID^2^3^1^4", "101"))
    answer = handle(dispatcher, adt("A24", "K8", pid3("LEFT")).replace(b"ADT_A01", b"ADT_A24"))
    assert (msa(answer)[0], err(answer)) == ("AE", ("PID^2", "100"))
    assert state(runtime) == before


def test_a47_changes_an_identifier(dispatcher, runtime):
    handle(dispatcher, adt("A01", "C1", f"{pid3('OLD-ID')}~{pid3('R', OTHER_DOMAIN)}"))
    change = adt("A47", "C2", pid3("NEW-ID"), mrg=pid3("OLD-ID")).replace(b"ADT_A39", b"ADT_A30")
    assert msa(handle(dispatcher, change)) == ("AA", "C2")
    assert resolve(runtime, pid3("NEW-ID")).patient_id == resolve(runtime, pid3("R", OTHER_DOMAIN)).patient_id
    assert resolve(runtime, pid3("OLD-ID")).state is IdentifierState.INACTIVE
    assert not known(runtime, pid3("OLD-ID")) and known(runtime, pid3("NEW-ID"))
    before = state(runtime)
    for control_id, pid_3, mrg, location, code in [
            ("C3", pid3("OTHER"), pid3("OLD-ID"), "MRG^1^1^1^1", "204"),   # old already changed (inactive)
            ("C4", pid3("R", OTHER_DOMAIN), pid3("NEW-ID"), "MRG^1^1^1^4", "103"),
            ("C5", pid3("NEW-ID"), pid3("NEW-ID"), "MRG^1^1^1^1", "205")]:
        answer = handle(dispatcher, adt("A47", control_id, pid_3, mrg=mrg))
        assert (msa(answer)[0], err(answer)) == ("AE", (location, code)), control_id
    assert state(runtime) == before


def test_a08_adding_an_identifier_notifies_consumers_in_the_same_transaction(runtime):
    configured = runtime_with(runtime, pix_consumers=[{"name": "dpi", "address": "127.0.0.1:9"}])
    dispatcher = Hl7Dispatcher(configured, hl7_routes(configured))
    handle(dispatcher, adt("A01", "N1", pid3("ONE")))
    assert pending(runtime) == 0  # one id: no cross-reference yet
    handle(dispatcher, adt("A08", "N2", f"{pid3('ONE')}~LOC-1^^^&{OTHER_DOMAIN}&ISO"))
    assert pending(runtime) == 1
    handle(dispatcher, adt("A08", "N3", f"{pid3('ONE')}~{pid3('TWO')}~LOC-1^^^&{OTHER_DOMAIN}&ISO"))
    before = state(runtime)
    handle(dispatcher, adt("A08", "N4", f"{pid3('ONE')}~X^^^&1.x&ISO"))  # refused: nothing enqueued either
    assert (pending(runtime), state(runtime)) == (2, before)


def pending(runtime) -> int:
    with runtime.uow() as uow:
        return uow.queue.pending_count("iti10:dpi")
