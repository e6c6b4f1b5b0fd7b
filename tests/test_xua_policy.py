"""The access policy on plain data: the default's table, ITI-18 answers filtered, ITI-43 retrievals judged,
emergency access audited, a custom policy loaded from the configuration."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from lxml import etree

from ihe_engine.errors import ConfigurationError
from ihe_engine.ns import RIM
from ihe_engine.xua.assertion import CodedValue, UserAssertion
from ihe_engine.xua.policy import (EMERGENCY_OVERRIDE, FR_CONFIDENTIALITY, HL7_CONFIDENTIALITY, Decision,
                                   DefaultPolicy, Protected, apply_policy_to_query_response, check_retrieve,
                                   decide_retrievals, filter_query_objects, load_policy, policy_for)

N, R, V = ((code, HL7_CONFIDENTIALITY) for code in "NRV")
MASQUE_PS, INVISIBLE_PATIENT, INVISIBLE_REP = ((code, FR_CONFIDENTIALITY) for code in (
    "MASQUE_PS", "INVISIBLE_PATIENT", "INVISIBLE_REPRESENTANTS_LEGAUX"))
POLICY = DefaultPolicy(patient_roles={"PATIENT"}, representative_roles={"REPRESENTANT_LEGAL"})
CONFIDENTIALITY_SCHEME = "urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f"


def user(role: str | None = "10", *, emergency: bool = False) -> UserAssertion:
    purpose = CodedValue("BRIS_DE_GLACE" if emergency else "normal", "1.2.250.1.213.1.1.4.248")
    return UserAssertion(assertion_id="_1", issuer="idp", name_id="u", roles=(CodedValue(role, "1.2.3"),) if role
                         else (), purposes_of_use=(purpose,), emergency=emergency,
                         not_on_or_after=datetime.now(timezone.utc) + timedelta(minutes=5))


PRO, PRO_EMERGENCY, PATIENT, REP, AUTOMATE, NO_ROLE = (
    user(), user(emergency=True), user("PATIENT"), user("REPRESENTANT_LEGAL"), user("AUTOMATE"), user(None))


@pytest.mark.parametrize("who, code, allowed, emergency", [
    (PRO, N, True, False), (PATIENT, N, True, False), (AUTOMATE, N, True, False), (NO_ROLE, N, True, False),
    (PRO, R, True, False), (PATIENT, R, False, False), (AUTOMATE, R, False, False),
    (PRO, V, False, False), (PRO_EMERGENCY, V, True, True), (PATIENT, V, False, False),
    (PRO, MASQUE_PS, False, False), (PRO_EMERGENCY, MASQUE_PS, True, True), (PATIENT, MASQUE_PS, True, False),
    (REP, MASQUE_PS, True, False),
    (PATIENT, INVISIBLE_PATIENT, False, False), (PRO, INVISIBLE_PATIENT, True, False),
    (REP, INVISIBLE_PATIENT, True, False),
    (REP, INVISIBLE_REP, False, False), (PATIENT, INVISIBLE_REP, True, False), (PRO, INVISIBLE_REP, True, False),
    (PRO_EMERGENCY, ("X", "9.9.9"), False, False),
])
def test_default_policy_table(who, code, allowed, emergency):
    decision = POLICY.may_retrieve(who, Protected("doc", (code,)))
    assert (decision.allowed, decision.emergency) == (allowed, emergency), decision.reason


def test_every_code_must_allow_and_no_code_is_refused():
    assert not POLICY.may_retrieve(PRO, Protected("d", (N, MASQUE_PS))).allowed
    assert POLICY.may_retrieve(PATIENT, Protected("d", (N, MASQUE_PS))).allowed
    assert not POLICY.may_retrieve(PRO_EMERGENCY, Protected("d", ())).allowed


def test_filter_entries_keeps_order_and_reports_denials():
    entries = [Protected("a", (N,)), Protected("b", (V,)), Protected("c", (R,))]
    allowed, denied = POLICY.filter_entries(PRO, entries)
    assert [e.id for e in allowed] == ["a", "c"] and set(denied) == {"b"}
    assert isinstance(denied["b"], Decision) and "V" in denied["b"].reason


# ---------------------------------------------------------------------------------------------- ITI-18 answers

def extrinsic(uuid: str, *codes: tuple[str, str]) -> etree._Element:
    element = etree.Element(f"{{{RIM}}}ExtrinsicObject", id=uuid)
    for code, scheme in codes:
        classification = etree.SubElement(element, f"{{{RIM}}}Classification",
                                          classificationScheme=CONFIDENTIALITY_SCHEME, nodeRepresentation=code)
        slot = etree.SubElement(classification, f"{{{RIM}}}Slot", name="codingScheme")
        etree.SubElement(etree.SubElement(slot, f"{{{RIM}}}ValueList"), f"{{{RIM}}}Value").text = scheme
    return element


def association(uuid: str, source: str, target: str) -> etree._Element:
    return etree.Element(f"{{{RIM}}}Association", id=uuid, sourceObject=source, targetObject=target)


def test_leaf_class_answer_loses_hidden_documents_and_their_associations():
    objects = [extrinsic("urn:uuid:a", N), extrinsic("urn:uuid:b", MASQUE_PS),
               etree.Element(f"{{{RIM}}}RegistryPackage", id="urn:uuid:ss"),
               association("urn:uuid:as1", "urn:uuid:ss", "urn:uuid:a"),
               association("urn:uuid:as2", "urn:uuid:ss", "urn:uuid:b")]
    outcome = filter_query_objects(PRO, objects, POLICY)
    assert [o.get("id") for o in outcome.objects] == ["urn:uuid:a", "urn:uuid:ss", "urn:uuid:as1"]
    assert set(outcome.denied) == {"urn:uuid:b"} and outcome.emergency == ()
    in_emergency = filter_query_objects(PRO_EMERGENCY, objects, POLICY)
    assert len(in_emergency.objects) == 5 and in_emergency.emergency == ("urn:uuid:b",)


def test_object_ref_answer_uses_the_lookup():
    refs = [etree.Element(f"{{{RIM}}}ObjectRef", id=f"urn:uuid:{name}") for name in "abc"]
    codes = {"urn:uuid:a": (N,), "urn:uuid:b": (INVISIBLE_PATIENT,)}
    outcome = filter_query_objects(PATIENT, refs, POLICY, lambda ids: {i: codes[i] for i in ids if i in codes})
    assert [o.get("id") for o in outcome.objects] == ["urn:uuid:a"]  # c: no codes known, refused


def test_no_user_means_no_filtering():
    objects = [extrinsic("urn:uuid:v", V)]
    assert filter_query_objects(None, objects, POLICY).objects == tuple(objects)
    assert decide_retrievals(None, [Protected("1.2", (V,))], POLICY).allowed == ("1.2",)


def test_decide_retrievals():
    check = decide_retrievals(PRO_EMERGENCY, [Protected("1", (N,)), Protected("2", (V,)),
                                              Protected("3", (INVISIBLE_PATIENT, R))], POLICY)
    assert check.allowed == ("1", "2", "3") and check.emergency == ("2",)
    check = decide_retrievals(PATIENT, [Protected("1", (N,)), Protected("3", (INVISIBLE_PATIENT,))], POLICY)
    assert check.allowed == ("1",) and set(check.denied) == {"3"}


# ---------------------------------------------------------------------------------------------- runtime contract

class Recorder:
    def __init__(self):
        self.records = []

    def emit(self, record):
        self.records.append(record)


def runtime_with(extra: dict):
    return SimpleNamespace(settings=SimpleNamespace(extra=extra), audit=Recorder())


def test_emergency_access_is_always_audited_even_without_sensitive_documents():
    runtime = runtime_with({})
    request = SimpleNamespace(user=PRO_EMERGENCY, peer="10.0.0.5:4242", endpoint="xds-registry")
    outcome = apply_policy_to_query_response(runtime, request, [extrinsic("urn:uuid:a", N)], session=None)
    assert len(outcome.objects) == 1
    [record] = runtime.audit.records
    assert record.event_types == (EMERGENCY_OVERRIDE,) and record.participants[0].user_name == "<u@idp>"
    assert record.objects == () and record.purposes_of_use[0][0] == "BRIS_DE_GLACE"


def test_runtime_functions_without_user_do_nothing():
    runtime = runtime_with({})
    request = SimpleNamespace(user=None)
    assert check_retrieve(runtime, request, ["1.2.3"], session=None).allowed == ("1.2.3",)
    assert apply_policy_to_query_response(runtime, request, [], session=None).objects == ()
    assert runtime.audit.records == []


class OnlyN:
    """A custom policy: N only, whoever asks."""

    def __init__(self, label="x"):
        self.label = label

    def may_retrieve(self, user, document):
        return Decision(document.codes == (N,), self.label)

    def filter_entries(self, user, entries):
        allowed = [e for e in entries if self.may_retrieve(user, e).allowed]
        return allowed, {e.id: self.may_retrieve(user, e) for e in entries if e not in allowed}


def test_custom_policy_from_configuration():
    settings = SimpleNamespace(extra={"xua": {"policy": f"{__name__}:OnlyN", "policy_options": {"label": "ours"}}})
    policy = policy_for(settings)
    assert isinstance(policy, OnlyN) and policy.label == "ours" and policy_for(settings) is policy
    assert not policy.may_retrieve(PRO, Protected("d", (R,))).allowed
    with pytest.raises(ConfigurationError):
        load_policy("no.such.module:Policy")
    with pytest.raises(ConfigurationError):
        load_policy(f"{__name__}:Recorder")


def test_registry_lookups(database):
    from ihe_engine.xds.registry.tables import XdsCode, XdsObject
    from ihe_engine.xua.policy import confidentiality_by_unique_id, confidentiality_by_uuid

    with database.sessions() as session:
        for uuid, unique_id, codes in [("urn:uuid:1", "1.2.3", [N]), ("urn:uuid:2", "1.2.3", [V]),
                                       ("urn:uuid:3", "1.2.4", [R, MASQUE_PS])]:
            session.add(XdsObject(uuid=uuid, kind="DE", lid=uuid, status="approved", unique_id=unique_id,
                                  leaf_class=b"<x/>"))
            session.flush()
            for code, scheme in codes:
                session.add(XdsCode(object_uuid=uuid, attribute="confidentialityCode", code=code, scheme=scheme))
        session.flush()
        by_uuid = confidentiality_by_uuid(session, ["urn:uuid:3", "urn:uuid:9"])
        assert set(by_uuid) == {"urn:uuid:3"} and set(by_uuid["urn:uuid:3"]) == {R, MASQUE_PS}
        by_unique = confidentiality_by_unique_id(session, ["1.2.3", "1.2.4", "9.9"])
        assert by_unique == {"1.2.3": tuple(sorted([N, V])), "1.2.4": tuple(sorted([R, MASQUE_PS]))}
        runtime = runtime_with({"xua": {"policy_options": {"patient_roles": ["PATIENT"]}}})
        check = check_retrieve(runtime, SimpleNamespace(user=PRO, peer="h:1", endpoint="e"),
                               ["1.2.3", "1.2.4", "9.9"], session)
        assert check.allowed == () and set(check.denied) == {"1.2.3", "1.2.4", "9.9"}
        check = check_retrieve(runtime, SimpleNamespace(user=PATIENT, peer="h:1", endpoint="e"), ["1.2.4"], session)
        assert check.allowed == ()  # R is for care roles
