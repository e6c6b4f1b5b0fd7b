"""The French VIHF profile (FRANCE.md section 7) on real signed assertions."""

from __future__ import annotations

import pytest

from ihe_engine.xua.assertion import INVALID_SECURITY_TOKEN, TrustAnchors, VerifierSettings, \
    verify_security_header
from ihe_engine.xua.vihf import VihfSettings, check_vihf, vihf_problems
from xua_testing import AUDIENCE, NIR, build_assertion, coded, now, reparsed, security, sign, vihf_attributes

SIGNER_DN = "CN=client.example.test,O=ihe-engine tests"


@pytest.fixture(scope="module")
def anchors(pki):
    return TrustAnchors.from_pem_file(pki.ca)


def vihf_user(pki, anchors, *, issuer=SIGNER_DN, **attributes):
    assertion = sign(build_assertion(issuer=issuer, name_id="899700012345",
                                     attributes=vihf_attributes(**attributes)), pki.client.cert, pki.client.key)
    return verify_security_header(reparsed(security(assertion)), anchors, VerifierSettings(audiences=(AUDIENCE,)),
                                  now())


def test_a_complete_vihf_is_accepted(pki, anchors):
    user = vihf_user(pki, anchors)
    check_vihf(user)
    assert user.resource_id.startswith(NIR) and user.alias == f"<899700012345@{SIGNER_DN}>"


def test_issuer_in_x500_order_is_the_same_dn(pki, anchors):
    assert vihf_problems(vihf_user(pki, anchors, issuer="O=ihe-engine tests,CN=client.example.test")) == []


@pytest.mark.parametrize("name", ["Identifiant_Structure", "Secteur_Activite",
                                  "urn:oasis:names:tc:xspa:1.0:subject:subject-id",
                                  "urn:oasis:names:tc:xacml:2.0:subject:role", "Authentification_Mode",
                                  "urn:oasis:names:tc:xacml:2.0:resource:resource-id", "Ressource_URN",
                                  "urn:oasis:names:tc:xspa:1.0:subject:purposeofuse", "LPS_Nom", "LPS_Version",
                                  "LPS_ID_HOMOLOGATION_DMP", "VIHF_Version"])
def test_each_missing_attribute_is_named(pki, anchors, name):
    with pytest.raises(Exception) as caught:
        check_vihf(vihf_user(pki, anchors, drop=[name]))
    assert caught.value.code == INVALID_SECURITY_TOKEN
    short = name.rsplit(":", 1)[-1]
    assert short in caught.value.reason or short.replace("-", "") in caught.value.reason.replace("-", "")


@pytest.mark.parametrize("changes, expected", [
    ({"secteur": "SA07"}, "SAxx^1.2.250.1.71.4.2.4"),
    ({"mode": "PASSWORD"}, "Authentification_Mode"),
    ({"urn": "urn:other"}, "urn:dmp"),
    ({"resource": "123^^^&1.2.3.4&ISO^NH"}, "not an INS"),
    ({"resource": NIR[:-2] + "00^^^&1.2.250.1.213.1.4.8&ISO^NH"}, "key"),
    ({"resource": f"{NIR}^^^&1.2.250.1.213.1.4.10&ISO^NH"}, "refused in production"),
    ({"resource": f"{NIR}^^^&1.2.250.1.213.1.4.8&ISO^PI"}, "type NH"),
    ({"purpose": coded("PurposeOfUse", "normal", "2.16.840.1.113883.5.8")}, "1.2.250.1.213.1.1.4.248"),
    ({"role": "médecin"}, "coded value"),
])
def test_wrong_values_are_refused(pki, anchors, changes, expected):
    problems = vihf_problems(vihf_user(pki, anchors, **changes))
    assert any(expected in problem for problem in problems), problems


def test_automate_role_is_accepted(pki, anchors):
    assert vihf_problems(vihf_user(pki, anchors, role="AUTOMATE")) == []


def test_issuer_must_be_the_signing_certificate_subject(pki, anchors):
    problems = vihf_problems(vihf_user(pki, anchors, issuer="CN=someone else,O=elsewhere"))
    assert any("subject DN of the signing certificate" in p for p in problems)
    assert vihf_problems(vihf_user(pki, anchors, issuer="CN=x"), VihfSettings(issuer_is_signer=False)) == []


def test_configured_role_systems_and_versions(pki, anchors):
    settings = VihfSettings(role_code_systems=frozenset({"1.2.250.1.213.1.1.4.6"}),
                            vihf_versions=frozenset({"3.0"}))
    problems = vihf_problems(vihf_user(pki, anchors, version="2.0"), settings)
    assert any("code system" in p for p in problems) and any("VIHF_Version 2.0" in p for p in problems)


def test_test_ins_accepted_outside_production(pki, anchors):
    user = vihf_user(pki, anchors, resource=f"{NIR}^^^&1.2.250.1.213.1.4.10&ISO^NH")
    assert vihf_problems(user, VihfSettings(production=False)) == []
