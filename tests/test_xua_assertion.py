"""ITI-40 assertion verification: real assertions signed with xmlsec by the test PKI, and every way to break one."""

from __future__ import annotations

import copy
from datetime import timedelta

import pytest
import xmlsec
from lxml import etree

from ihe_engine.ns import SAML2
from ihe_engine.xua.assertion import (FAILED_AUTHENTICATION, FAILED_CHECK, INVALID_SECURITY, INVALID_SECURITY_TOKEN,
                                      SECURITY_TOKEN_UNAVAILABLE, UNSUPPORTED_ALGORITHM, TrustAnchors,
                                      VerifierSettings, XuaError, verify_security_header)
from ihe_engine.xua.replay import purge_expired, remember
from xua_testing import (AUDIENCE, ISSUER, PURPOSE, RESOURCE_ID, ROLE, SUBJECT_ID, build_assertion, coded, now,
                         reparsed, security, sign, signed)

SETTINGS = VerifierSettings(audiences=(AUDIENCE,), clock_skew=timedelta(seconds=30))


@pytest.fixture(scope="module")
def anchors(pki):
    return TrustAnchors.from_pem_file(pki.ca)


def verify(header, anchors, settings=SETTINGS, at=None):
    return verify_security_header(reparsed(header), anchors, settings, at or now())


def refused(header, anchors, settings=SETTINGS, at=None) -> XuaError:
    with pytest.raises(XuaError) as caught:
        verify(header, anchors, settings, at)
    return caught.value


def s(local: str) -> str:
    return f"{{{SAML2}}}{local}"


def test_a_valid_assertion_gives_the_user_and_its_attributes(pki, anchors):
    assertion = signed(pki, name_id="jdoe", sp_provided_id="Dr John", attributes=[
        (SUBJECT_ID, ["John Doe"]), ("urn:oasis:names:tc:xspa:1.0:subject:organization", ["Hôpital Test"]),
        ("urn:oasis:names:tc:xspa:1.0:subject:organization-id", ["urn:oid:1.2.3"]),
        (ROLE, [coded("Role", "112247003", "2.16.840.1.113883.6.96", "Medical doctor")]),
        (PURPOSE, [coded("PurposeOfUse", "TREATMENT", "2.16.840.1.113883.3.18.7.1")]),
        ("urn:ihe:iti:xca:2010:homeCommunityId", ["urn:oid:1.2.3.4"]),
        (RESOURCE_ID, ["123^^^&1.2.3&ISO"])])
    user = verify(security(assertion), anchors)
    assert (user.name_id, user.issuer, user.subject_id) == ("jdoe", ISSUER, "John Doe")
    assert user.alias == f"Dr John<jdoe@{ISSUER}>"
    assert user.organization == "Hôpital Test" and user.organization_id == "urn:oid:1.2.3"
    assert [(r.code, r.system) for r in user.roles] == [("112247003", "2.16.840.1.113883.6.96")]
    assert user.purposes_of_use[0].code == "TREATMENT" and not user.emergency
    assert user.home_community_id == "urn:oid:1.2.3.4" and user.resource_id == "123^^^&1.2.3&ISO"
    assert user.assertion_id == assertion.get("ID")
    assert "client.example.test" in user.signer_subject


def test_alias_without_sp_provided_id(pki, anchors):
    assert verify(security(signed(pki, name_id="u1")), anchors).alias == f"<u1@{ISSUER}>"


def test_break_the_glass_purpose_sets_emergency(pki, anchors):
    assertion = signed(pki, attributes=[(PURPOSE, [coded("PurposeOfUse", "BTG", "2.16.840.1.113883.5.8")])])
    assert verify(security(assertion), anchors).emergency


def test_tampered_assertion_fails_its_check(pki, anchors):
    assertion = signed(pki, name_id="jdoe")
    assertion.find(f"{s('Subject')}/{s('NameID')}").text = "admin"
    error = refused(security(assertion), anchors)
    assert error.code == FAILED_CHECK and error.claimed == f"<admin@{ISSUER}>"


def test_expired_assertion_is_refused(pki, anchors):
    past = now() - timedelta(hours=1)
    error = refused(security(signed(pki, not_before=past - timedelta(minutes=5), not_on_or_after=past)), anchors)
    assert error.code == INVALID_SECURITY_TOKEN and "expired" in error.reason


def test_not_yet_valid_assertion_is_refused_but_skew_is_tolerated(pki, anchors):
    soon = now() + timedelta(seconds=10)
    verify(security(signed(pki, not_before=soon)), anchors)  # within the 30 s skew
    later = now() + timedelta(minutes=10)
    error = refused(security(signed(pki, not_before=later, not_on_or_after=later + timedelta(minutes=5))), anchors)
    assert error.code == INVALID_SECURITY_TOKEN and "not valid before" in error.reason


def test_wrong_audience_is_refused(pki, anchors):
    error = refused(security(signed(pki, audience="https://elsewhere.test")), anchors)
    assert error.code == FAILED_AUTHENTICATION and "elsewhere" in error.reason
    assert refused(security(signed(pki, audience=None)), anchors).code == FAILED_AUTHENTICATION


def test_untrusted_signer_is_refused(pki, anchors):
    assertion = sign(build_assertion(), pki.unknown_ca_client.cert, pki.unknown_ca_client.key)
    error = refused(security(assertion), anchors)
    assert error.code == FAILED_AUTHENTICATION and "does not chain" in error.reason


def test_expired_signer_certificate_is_refused(pki, anchors):
    assertion = sign(build_assertion(), pki.expired_client.cert, pki.expired_client.key)
    error = refused(security(assertion), anchors)
    assert error.code == FAILED_AUTHENTICATION and "validity period" in error.reason


def test_unsigned_assertion_is_refused(anchors):
    error = refused(security(build_assertion()), anchors)
    assert error.code == FAILED_AUTHENTICATION and "not signed" in error.reason


def test_a_signature_without_certificate_is_refused(pki, anchors):
    assertion = signed(pki)
    x509_data = assertion.find(".//{http://www.w3.org/2000/09/xmldsig#}X509Data")
    x509_data.getparent().remove(x509_data)
    assert refused(security(assertion), anchors).code == SECURITY_TOKEN_UNAVAILABLE


def test_sha1_is_refused_unless_allowed(pki, anchors):
    assertion = sign(build_assertion(), pki.client.cert, pki.client.key, method=xmlsec.Transform.RSA_SHA1,
                     digest=xmlsec.Transform.SHA1)
    assert refused(security(copy.deepcopy(assertion)), anchors).code == UNSUPPORTED_ALGORITHM
    verify(security(assertion), anchors, VerifierSettings(audiences=(AUDIENCE,), allow_sha1=True))


def test_missing_pieces_are_invalid_tokens(pki, anchors):
    assert "SubjectConfirmation" in refused(security(signed(pki, bearer=False)), anchors).reason
    assert "AuthnStatement" in refused(security(signed(pki, authn=False)), anchors).reason


def test_issuer_allow_list(pki, anchors):
    settings = VerifierSettings(audiences=(AUDIENCE,), issuers=("https://other-idp.test",))
    assert refused(security(signed(pki)), anchors, settings).code == FAILED_AUTHENTICATION


def test_no_or_several_assertions_are_invalid_security(pki, anchors):
    assert refused(security(), anchors).code == INVALID_SECURITY
    assert refused(security(signed(pki), signed(pki)), anchors).code == INVALID_SECURITY


def test_huge_assertion_is_refused_before_any_crypto(pki, anchors):
    assertion = build_assertion(attributes=[(SUBJECT_ID, ["x" * 100_000])])
    error = refused(security(assertion), anchors)
    assert error.code == INVALID_SECURITY_TOKEN and "above the limit" in error.reason


# ---------------------------------------------------------------------------------------------- wrapping attacks

def test_wrapping_signed_original_hidden_in_advice_with_evil_assertion_outside(pki, anchors):
    """The evil assertion carries the original's signature, the signed original hides inside it (Advice)."""
    original = signed(pki, name_id="jdoe")
    evil = build_assertion(name_id="admin", assertion_id="_evil")
    evil.insert(1, copy.deepcopy(original.find("{http://www.w3.org/2000/09/xmldsig#}Signature")))
    etree.SubElement(evil, s("Advice")).append(original)
    error = refused(security(evil), anchors)
    assert error.code == INVALID_SECURITY_TOKEN and "does not reference the Assertion" in error.reason


def test_wrapping_evil_assertion_reusing_the_signed_id(pki, anchors):
    """Same ID on the evil assertion and on the hidden signed one: the signature is checked on the evil one."""
    original = signed(pki, name_id="jdoe", assertion_id="_shared")
    evil = build_assertion(name_id="admin", assertion_id="_shared")
    evil.insert(1, copy.deepcopy(original.find("{http://www.w3.org/2000/09/xmldsig#}Signature")))
    etree.SubElement(evil, s("Advice")).append(original)
    error = refused(security(evil), anchors)
    assert error.code == INVALID_SECURITY_TOKEN and "used again" in error.reason


def test_wrapping_signed_assertion_elsewhere_in_the_header(pki, anchors):
    """The signed assertion moved under another header child, an evil copy with its signature in its place."""
    original = signed(pki, name_id="jdoe")
    evil = copy.deepcopy(original)
    evil.find(f"{s('Subject')}/{s('NameID')}").text = "admin"
    wrapper = etree.Element("{urn:evil}Wrapper")
    wrapper.append(original)
    assert refused(security(evil, wrapper), anchors).code == FAILED_CHECK


def test_signature_with_a_second_reference_is_refused(pki, anchors):
    assertion = signed(pki)
    signed_info = assertion.find(".//{http://www.w3.org/2000/09/xmldsig#}SignedInfo")
    signed_info.append(copy.deepcopy(signed_info.find("{http://www.w3.org/2000/09/xmldsig#}Reference")))
    assert "exactly one Reference" in refused(security(assertion), anchors).reason


def test_an_added_unsigned_attribute_statement_breaks_the_signature(pki, anchors):
    assertion = signed(pki)
    statement = etree.SubElement(assertion, s("AttributeStatement"))
    attribute = etree.SubElement(statement, s("Attribute"), Name=PURPOSE)
    etree.SubElement(attribute, s("AttributeValue")).text = "BTG"
    assert refused(security(assertion), anchors).code == FAILED_CHECK


def test_keys_are_cached_per_certificate(pki, anchors):
    header = security(signed(pki))
    verify(header, anchors)
    cached = dict(anchors._cache)
    verify(security(signed(pki)), anchors)
    assert anchors._cache == cached and len(cached) >= 1


# ---------------------------------------------------------------------------------------------- replay cache

def test_replay_cache_refuses_a_second_use_and_purges_expired_rows(database):
    expires = now() + timedelta(minutes=5)
    with database.sessions() as session:
        assert remember(session, ISSUER, "_a1", expires)
        session.commit()
    with database.sessions() as session:  # another worker, another transaction
        assert not remember(session, ISSUER, "_a1", expires)
        assert remember(session, "https://other.test", "_a1", expires)  # IDs are per issuer
        assert remember(session, ISSUER, "_old", now() - timedelta(seconds=1))
        session.commit()
    with database.sessions() as session:
        assert remember(session, ISSUER, "_old", expires)  # an expired row is taken over
        session.commit()
    with database.sessions() as session:
        assert purge_expired(session, now() + timedelta(hours=1)) == 3
        session.commit()


def test_replay_cache_race_has_exactly_one_winner(database):
    """Eight workers present the same assertion at once: one unique-key insert wins, whatever the timing."""
    import threading

    from ihe_engine.storage import UnitOfWork

    expires = now() + timedelta(minutes=5)
    start, results = threading.Barrier(8), []

    def present() -> None:
        start.wait()
        with UnitOfWork(database.sessions) as uow:
            first = remember(uow.session, ISSUER, "_raced", expires)
            uow.commit()
        results.append(first)

    threads = [threading.Thread(target=present) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(results) == [False] * 7 + [True]
