"""French identity rules behind the pluggable IdentityRules contract: PID-3 INS checks, PID-32, OIDs, loading."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ihe_engine.config import Settings, load_config_file
from ihe_engine.errors import ConfigurationError, RemoteProtocolError
from ihe_engine.france import ins
from ihe_engine.france.rules import FrenchIdentityRules
from ihe_engine.hl7v2.message import parse
from ihe_engine.identity.cx import CX
from ihe_engine.identity.rules import IdentityRules, NoIdentityRules, load_identity_rules

NIR = "285017512345656"            # key hand-computed: 97 - (2850175123456 mod 97) = 56
OTHER_NIR = "185129900100262"
LOCAL = CX.from_hl7("000003^^^CHU-X&1.2.250.1.71.4.2.2&ISO^PI")
LOCAL_NAMESPACE_ONLY = CX.from_hl7("A123^^^HOSP^PI")


def ins_nir(value: str = NIR, oid: str = ins.INS_NIR_OID, namespace: str = "ASIP-SANTE-INS-NIR",
            type_code: str = "INS") -> CX:
    return CX.from_hl7(f"{value}^^^{namespace}&{oid}&ISO^{type_code}")


def codes(issues):
    return [(issue.severity, issue.code, issue.field, issue.repetition) for issue in issues]


@pytest.fixture
def rules() -> FrenchIdentityRules:
    return FrenchIdentityRules(production=False)


@pytest.fixture
def production() -> FrenchIdentityRules:
    return FrenchIdentityRules(production=True)


# -- the contract and its loading ---------------------------------------------------------------------------------

def test_both_implementations_satisfy_the_contract():
    assert isinstance(FrenchIdentityRules(), IdentityRules)
    assert isinstance(NoIdentityRules(), IdentityRules)


def test_no_rules_is_the_default_and_never_links():
    default = load_identity_rules(Settings())
    assert isinstance(default, NoIdentityRules)
    assert default.check_identity([ins_nir(NIR[:-2] + "00")], None) == []
    assert default.national_identifiers([ins_nir()]) == []
    assert default.is_qualified("QUAL") is False


def test_french_rules_are_loaded_from_the_config_file(tmp_path):
    config = tmp_path / "engine.toml"
    config.write_text('identity_rules = "france"\nproduction = true\n', encoding="utf-8")
    loaded = load_identity_rules(Settings(**load_config_file(config)))
    assert isinstance(loaded, FrenchIdentityRules) and loaded.production is True
    assert isinstance(load_identity_rules(Settings(extra={"identity_rules": "france"})), FrenchIdentityRules)
    assert load_identity_rules(Settings(extra={"identity_rules": "france"})).production is False


@pytest.mark.parametrize("extra, message", [
    ({"identity_rules": "belgium"}, "unknown identity_rules 'belgium'"),
    ({"identity_rules": "france", "production": "yes"}, "production must be true or false"),
])
def test_bad_rule_settings_are_configuration_errors(extra, message):
    with pytest.raises(ConfigurationError, match=message):
        load_identity_rules(Settings(extra=extra))


# -- patients without an INS ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("reliability", [None, "", "PROV", "VALI", "QUAL"])
def test_patients_without_ins_pass(rules, production, reliability):
    for some_rules in (rules, production):
        assert some_rules.check_identity([LOCAL, LOCAL_NAMESPACE_ONLY], reliability) == []
        assert some_rules.national_identifiers([LOCAL, LOCAL_NAMESPACE_ONLY]) == []


@settings(max_examples=200, deadline=None)
@given(values=st.lists(st.text(alphabet="0123456789ABCXYZ", min_size=1, max_size=20), min_size=1, max_size=4),
       reliability=st.one_of(st.none(), st.sampled_from(["PROV", "RECUP", "VALI", "QUAL", "DOUTE", ""])))
def test_identifiers_outside_the_ins_domains_never_raise_an_error(values, reliability):
    identifiers = [CX(id=value, universal_id=f"1.2.250.1.71.4.2.{index}", universal_id_type="ISO")
                   for index, value in enumerate(values, start=1)]
    issues = FrenchIdentityRules(production=True).check_identity(identifiers, reliability)
    assert not [issue for issue in issues if issue.is_error]


@pytest.mark.parametrize("oid", [ins.IDNPS_OID, ins.IDNST_OID, "1.2.250.1.213.1.4.99", "1.2.250.1.213.1.4.1"])
def test_unknown_french_oids_pass(rules, oid):
    identifier = CX(id="not-a-nir", universal_id=oid, universal_id_type="ISO")
    assert rules.check_identity([identifier], None) == []
    assert rules.national_identifiers([identifier]) == []


# -- INS in PID-3 ---------------------------------------------------------------------------------------------------

def test_qualified_ins_passes_and_is_the_national_identifier(rules):
    identity = [LOCAL, ins_nir()]
    assert rules.check_identity(identity, "QUAL") == []
    assert rules.national_identifiers(identity) == [identity[1]]
    assert rules.is_qualified("QUAL")


def test_canonical_hl7_form_of_the_ins_passes(rules):
    identifier = CX.from_hl7(f"{NIR}^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.8&ISO^INS")
    assert rules.check_identity([identifier], "QUAL") == []


def test_nia_is_a_national_identifier_too(rules):
    nia = ins_nir(oid=ins.INS_NIA_OID, namespace="ASIP-SANTE-INS-NIA")
    assert rules.check_identity([nia], "QUAL") == []
    assert rules.national_identifiers([LOCAL, nia]) == [nia]


def test_wrong_nir_key_is_an_error_at_its_repetition(rules):
    bad = ins_nir(NIR[:-2] + "57")
    issues = rules.check_identity([LOCAL, bad], "QUAL")
    assert codes(issues) == [("error", "102", "PID-3", 2)]
    assert issues[0].identifier == bad
    assert "expected key is 56" in issues[0].message and "INS-NIR" in issues[0].message


def test_wrong_nia_key_is_only_a_warning(rules):
    nia = ins_nir(NIR[:-2] + "57", oid=ins.INS_NIA_OID, namespace="ASIP-SANTE-INS-NIA")
    assert codes(rules.check_identity([nia], "QUAL")) == [("warning", "102", "PID-3", 1)]


@pytest.mark.parametrize("first", "5678")
def test_migrant_or_provisional_number_as_ins_is_refused(rules, first):
    from ihe_engine.france.nir import nir_key

    body = first + NIR[1:13]
    issues = rules.check_identity([ins_nir(body + nir_key(body))], "QUAL")
    assert codes(issues) == [("error", "207", "PID-3", 1)]
    assert "never an INS" in issues[0].message


def test_ins_without_its_key_is_refused(rules):
    issues = rules.check_identity([ins_nir(NIR[:13])], "QUAL")
    assert codes(issues) == [("error", "102", "PID-3", 1)]
    assert "no key" in issues[0].message


def test_malformed_ins_is_refused(rules):
    issues = rules.check_identity([ins_nir("28501X512345656")], "QUAL")
    assert codes(issues) == [("error", "102", "PID-3", 1)]
    assert "department" in issues[0].message


def test_ins_named_only_by_its_namespace_is_refused(rules):
    issues = rules.check_identity([CX.from_hl7(f"{NIR}^^^ASIP-SANTE-INS-NIR^INS")], "QUAL")
    assert codes(issues) == [("error", "102", "PID-3", 1)]
    assert "1.2.250.1.213.1.4.8" in issues[0].message


def test_namespace_contradicting_the_oid_is_a_warning(rules):
    issues = rules.check_identity([ins_nir(namespace="ASIP-SANTE-INS-NIA")], "QUAL")
    assert codes(issues) == [("warning", "207", "PID-3", 1)]


def test_ins_type_code_other_than_ins_is_a_warning(rules):
    issues = rules.check_identity([ins_nir(type_code="NH")], "QUAL")
    assert codes(issues) == [("warning", "103", "PID-3", 1)]


def test_identifiers_without_type_codes_skip_the_type_code_rule(rules):
    """HL7 v3 identifiers (II) carry no type code: only the number, OID and status rules apply."""
    assert rules.check_identity([ins_nir(type_code="")], "QUAL", typed=False) == []
    assert codes(rules.check_identity([ins_nir(type_code="")], "QUAL")) == [("warning", "103", "PID-3", 1)]
    assert codes(rules.check_identity([ins_nir(NIR[:-2] + "00")], "QUAL", typed=False))[0][0] == "error"


def test_only_one_ins_may_be_sent(rules):
    identity = [ins_nir(), LOCAL, ins_nir(OTHER_NIR)]
    issues = rules.check_identity(identity, "QUAL")
    assert codes(issues) == [("error", "207", "PID-3", 3)]
    assert "most recent INS" in issues[0].message


def test_the_same_ins_twice_is_not_two_ins(rules):
    assert rules.check_identity([ins_nir(), ins_nir(namespace="")], "QUAL") == []


def test_deleting_the_ins_with_an_hl7_null_is_not_checked(rules):
    deletion = CX.from_hl7('""^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.8&ISO^INS')
    assert rules.check_identity([LOCAL, deletion], None) == []
    assert rules.national_identifiers([LOCAL, deletion]) == []


@pytest.mark.parametrize("oid", [ins.INS_NIR_TEST_OID, ins.INS_NIR_DEMO_OID])
def test_test_and_demonstration_ins_are_refused_in_production_only(rules, production, oid):
    identifier = ins_nir(oid=oid, namespace="")
    assert codes(production.check_identity([LOCAL, identifier], "QUAL")) == [("error", "103", "PID-3", 2)]
    assert codes(rules.check_identity([LOCAL, identifier], "QUAL")) == [("warning", "103", "PID-3", 2)]
    assert rules.national_identifiers([identifier]) == [identifier]


def test_valid_insc_passes_and_is_not_a_national_identifier(rules):
    insc = CX(id="1010326268071057131912", namespace_id="ASIP-SANTE-INS-C", universal_id=ins.INSC_OID,
              universal_id_type="ISO", type_code="INS-C")
    assert rules.check_identity([insc], None) == []
    assert rules.national_identifiers([insc]) == []


@pytest.mark.parametrize("value", ["1010326268071057131913", "10103262680710571319"])
def test_bad_insc_is_refused(rules, value):
    insc = CX(id=value, universal_id=ins.INSC_OID, universal_id_type="ISO")
    assert codes(rules.check_identity([insc], None)) == [("error", "102", "PID-3", 1)]


@pytest.mark.parametrize("oid", [ins.INSC_TEST_OID, ins.INSC_DEMO_OID])
def test_test_and_demonstration_insc_are_refused_in_production(production, oid):
    insc = CX(id="1010326268071057131912", universal_id=oid, universal_id_type="ISO")
    assert codes(production.check_identity([insc], None)) == [("error", "103", "PID-3", 1)]


# -- PID-32 ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("reliability", [None, "", "  "])
def test_pid32_is_required_with_an_ins(rules, reliability):
    issues = rules.check_identity([LOCAL, ins_nir()], reliability)
    assert codes(issues) == [("error", "101", "PID-32", None)]


@pytest.mark.parametrize("status", ["PROV", "RECUP", "VALI"])
def test_ins_without_the_qualified_status_is_accepted_but_not_used(rules, status):
    issues = rules.check_identity([ins_nir()], status)
    assert codes(issues) == [("warning", "207", "PID-32", None)]
    assert "not used" in issues[0].message
    assert not rules.is_qualified(status)


def test_unknown_identity_status_is_a_warning(rules):
    issues = rules.check_identity([LOCAL], "DOUTE")
    assert codes(issues) == [("warning", "103", "PID-32", None)]


@pytest.mark.parametrize("reliability, qualified", [("QUAL", True), (" QUAL ", True), ("qual", False),
                                                    ("VALI", False), (None, False), ("", False)])
def test_only_the_qualified_status_qualifies(rules, reliability, qualified):
    assert rules.is_qualified(reliability) is qualified


def test_several_issues_are_all_reported(production):
    identity = [ins_nir(NIR[:-2] + "57", oid=ins.INS_NIR_TEST_OID, namespace="")]
    issues = production.check_identity(identity, None)
    assert sorted(codes(issues), key=str) == sorted([("error", "103", "PID-3", 1), ("error", "102", "PID-3", 1),
                                                     ("error", "101", "PID-32", None)], key=str)


# -- the public PAM FR examples as input ------------------------------------------------------------------------------

def _pids(corpus_dir):
    folder = corpus_dir / "ansforge-hl7V2-exemples"
    if not folder.is_dir():
        pytest.skip(f"{folder} not found")
    for path in sorted([*folder.rglob("*.er7"), *folder.rglob("*.hl7")]):
        try:
            message = parse(path.read_bytes())
        except RemoteProtocolError:
            continue  # a few examples are damaged (e.g. a typographic tilde in MSH-2): not identity material
        for pid in message.segments("PID"):
            identifiers = [CX.from_hl7(text, message.encoding) for text in pid.repetitions(3)]
            yield path, identifiers, pid.get(32)


@pytest.mark.corpus
def test_pam_fr_admission_example(corpus_dir, rules, production):
    path = corpus_dir / "ansforge-hl7V2-exemples" / "SGL" / "admission.er7"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    message = parse(path.read_bytes())
    pid = message.segment("PID")
    identifiers = [CX.from_hl7(text, message.encoding) for text in pid.repetitions(3)]
    assert [identifier.universal_id for identifier in rules.national_identifiers(identifiers)] == \
        [ins.INS_NIR_TEST_OID]
    # A 2010 example: test INS, status VALI (before the qualified status existed), so the INS is accepted, not used.
    assert codes(rules.check_identity(identifiers, pid.get(32))) == [("warning", "103", "PID-3", 2),
                                                                      ("warning", "207", "PID-32", None)]
    assert ("error", "103", "PID-3", 2) in codes(production.check_identity(identifiers, pid.get(32)))


@pytest.mark.corpus
def test_every_ins_of_the_public_examples_is_checked(corpus_dir, rules):
    pids = list(_pids(corpus_dir))
    refused = {issue.identifier.id for _, identifiers, reliability in pids
               for issue in rules.check_identity(identifiers, reliability) if issue.is_error}
    assert len(pids) >= 20
    # 2760375106693 mod 97 gives key 26, not the 80 these document-sharing examples carry.
    assert refused == {"276037510669380"}
