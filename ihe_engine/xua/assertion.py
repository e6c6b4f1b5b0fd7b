"""XUA (ITI-40) on the receiving side: the SAML 2.0 assertion of a wsse:Security header, verified. Sans-I/O.

:func:`verify_security_header` takes the wsse:Security element (already parsed by :mod:`ihe_engine.xmlsafe`), the
trust anchors, the settings and the current time, and returns a frozen :class:`UserAssertion` or raises
:class:`XuaError` carrying the WS-Security fault code (WS-Security 1.1 section 12) the peer gets.

Signature wrapping is closed by construction: the one Assertion child of wsse:Security is copied into a document
of its own; its enveloped signature must have exactly one Reference, to that Assertion's ``ID``, with only the
enveloped and exclusive-c14n transforms; the signature is verified on the copy and every value is then read from
that same copy. Nothing outside the copy can be referenced, and nothing unsigned can be read.

Loaded keys are cached per certificate chain: parsing the certificates, validating the chain and loading the
xmlsec key cost several times the verification itself (about 10 ms the first time, under 1 ms cached on the
development machine). A chain is validated once; its validity period is checked at every use.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import xmlsec
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from lxml import etree

from ..errors import ConfigurationError
from ..ns import DS, SAML2, WSSE, WSU, qn

__all__ = [
    "WSSE_SECURITY", "XuaError", "CodedValue", "UserAssertion", "VerifierSettings", "TrustAnchors",
    "verify_security_header", "find_assertion", "INVALID_SECURITY", "INVALID_SECURITY_TOKEN",
    "FAILED_AUTHENTICATION", "FAILED_CHECK", "SECURITY_TOKEN_UNAVAILABLE", "UNSUPPORTED_ALGORITHM",
    "UNSUPPORTED_SECURITY_TOKEN", "SUBJECT_ID", "ORGANIZATION", "ORGANIZATION_ID", "PURPOSE_OF_USE",
    "HOME_COMMUNITY_ID", "ROLE", "RESOURCE_ID", "DEFAULT_EMERGENCY_PURPOSES",
]

WSSE_SECURITY = qn(WSSE, "Security")

# WS-Security 1.1 section 12 fault codes (local names in the wsse namespace).
INVALID_SECURITY = "InvalidSecurity"
"""The wsse:Security header is absent where required, or unusable (no assertion, several assertions)."""
INVALID_SECURITY_TOKEN = "InvalidSecurityToken"
"""The assertion is malformed, outside its validity period, or breaks the configured profile (VIHF)."""
FAILED_AUTHENTICATION = "FailedAuthentication"
"""Unsigned, signed by a certificate that is not trusted, unknown issuer, another audience, or replayed."""
FAILED_CHECK = "FailedCheck"
"""The signature or a digest does not verify: the assertion was changed after signing."""
SECURITY_TOKEN_UNAVAILABLE = "SecurityTokenUnavailable"
"""The signature names no X.509 certificate to verify it with."""
UNSUPPORTED_ALGORITHM = "UnsupportedAlgorithm"
UNSUPPORTED_SECURITY_TOKEN = "UnsupportedSecurityToken"

# Attribute names of ITI-40 (IHE-CONFORMANCE.md E).
SUBJECT_ID = "urn:oasis:names:tc:xspa:1.0:subject:subject-id"
ORGANIZATION = "urn:oasis:names:tc:xspa:1.0:subject:organization"
ORGANIZATION_ID = "urn:oasis:names:tc:xspa:1.0:subject:organization-id"
PURPOSE_OF_USE = "urn:oasis:names:tc:xspa:1.0:subject:purposeofuse"
HOME_COMMUNITY_ID = "urn:ihe:iti:xca:2010:homeCommunityId"
ROLE = "urn:oasis:names:tc:xacml:2.0:subject:role"
RESOURCE_ID = "urn:oasis:names:tc:xacml:2.0:resource:resource-id"

DEFAULT_EMERGENCY_PURPOSES = frozenset({"BTG", "ETREAT", "EMERGENCY", "BRIS_DE_GLACE"})
"""Purpose-of-use codes meaning emergency access: HL7 ActReason BTG (break the glass) and ETREAT, and the French
"bris de glace". Configurable (``[xua] emergency_purposes``), as the French code value is not confirmed."""

_BEARER = "urn:oasis:names:tc:SAML:2.0:cm:bearer"
_ASSERTION = qn(SAML2, "Assertion")
_ENCRYPTED_ASSERTION = qn(SAML2, "EncryptedAssertion")
_SIGNATURE = qn(DS, "Signature")
_ID_ATTRIBUTES = ("ID", "Id", "id", qn(WSU, "Id"), "{http://www.w3.org/XML/1998/namespace}id")

_EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
_ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
_SIGNATURE_METHODS = {
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256": xmlsec.Transform.RSA_SHA256,
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384": xmlsec.Transform.RSA_SHA384,
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512": xmlsec.Transform.RSA_SHA512,
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256": xmlsec.Transform.ECDSA_SHA256,
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384": xmlsec.Transform.ECDSA_SHA384,
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512": xmlsec.Transform.ECDSA_SHA512,
}
_DIGEST_METHODS = {
    "http://www.w3.org/2001/04/xmlenc#sha256": xmlsec.Transform.SHA256,
    "http://www.w3.org/2001/04/xmldsig-more#sha384": xmlsec.Transform.SHA384,
    "http://www.w3.org/2001/04/xmlenc#sha512": xmlsec.Transform.SHA512,
}
_SHA1_SIGNATURE = {"http://www.w3.org/2000/09/xmldsig#rsa-sha1": xmlsec.Transform.RSA_SHA1}
_SHA1_DIGEST = {"http://www.w3.org/2000/09/xmldsig#sha1": xmlsec.Transform.SHA1}
_MAX_CHAIN = 5


class XuaError(Exception):
    """A refused assertion: ``code`` is the WS-Security fault code (local name), ``claimed`` the identity the
    assertion claimed when it could be read (for the failure's audit record, never trusted)."""

    def __init__(self, code: str, reason: str, *, claimed: str | None = None) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.claimed = claimed


@dataclass(frozen=True)
class CodedValue:
    """A CE value (role, purpose of use): code, codeSystem, displayName; a plain-text value has no system."""

    code: str
    system: str = ""
    display: str = ""


@dataclass(frozen=True, kw_only=True)
class UserAssertion:
    """What a verified assertion says about the user; everything here was covered by the signature."""

    assertion_id: str
    issuer: str
    name_id: str
    sp_provided_id: str = ""
    subject_id: str | None = None
    organization: str | None = None
    organization_id: str | None = None
    purposes_of_use: tuple[CodedValue, ...] = ()
    roles: tuple[CodedValue, ...] = ()
    home_community_id: str | None = None
    resource_id: str | None = None
    emergency: bool = False
    not_on_or_after: datetime
    signer_subject: str = ""
    signer: x509.Certificate | None = field(default=None, compare=False, repr=False)
    attributes: Mapping[str, tuple[str, ...]] = field(default_factory=dict, compare=False, repr=False)
    """Every attribute by Name, as the text of its values (for profiles such as the French VIHF)."""
    coded_attributes: Mapping[str, tuple[CodedValue, ...]] = field(default_factory=dict, compare=False, repr=False)

    @property
    def alias(self) -> str:
        """The audit UserName of ITI-40: ``alias<user@issuer>`` (alias = the NameID's SPProvidedID, often empty)."""
        return _alias(self.sp_provided_id, self.name_id, self.issuer)


def _alias(alias: str, user: str, issuer: str) -> str:
    return f"{alias}<{user}@{issuer}>"


@dataclass(frozen=True, kw_only=True)
class VerifierSettings:
    """What an assertion must satisfy besides a trusted signature."""

    audiences: tuple[str, ...] = ()
    """Accepted Audience values; empty accepts any (not recommended: the assertion could be meant for another)."""
    issuers: tuple[str, ...] = ()
    """Accepted Issuer values; empty accepts any issuer whose signature chains to a trust anchor."""
    clock_skew: timedelta = timedelta(seconds=60)
    max_assertion_bytes: int = 64 * 1024
    allow_sha1: bool = False
    emergency_purposes: frozenset[str] = DEFAULT_EMERGENCY_PURPOSES


# ---------------------------------------------------------------------------------------------- trust anchors

@dataclass
class _CachedSigner:
    key: xmlsec.Key
    certificate: x509.Certificate
    not_before: datetime
    not_after: datetime


class TrustAnchors:
    """CA certificates (and self-signed assertion providers) whose signatures are trusted, with a key cache.

    A signer is trusted when its certificate chains, through the intermediates sent beside it, to one of the
    anchors, every link inside its validity period. Thread-safe: the cache is shared by the pool threads.
    """

    _CACHE_SIZE = 256

    def __init__(self, anchors: Sequence[x509.Certificate]) -> None:
        if not anchors:
            raise ConfigurationError("XUA needs at least one trust anchor certificate")
        self._anchors = list(anchors)
        self._by_subject: dict[bytes, list[x509.Certificate]] = {}
        for anchor in anchors:
            self._by_subject.setdefault(anchor.subject.public_bytes(), []).append(anchor)
        self._anchor_der = {anchor.public_bytes(serialization.Encoding.DER) for anchor in anchors}
        self._cache: dict[bytes, _CachedSigner] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_pem_file(cls, path: str | Path) -> "TrustAnchors":
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise ConfigurationError(f"XUA trust anchors {path}: {exc.strerror}") from None
        try:
            return cls(x509.load_pem_x509_certificates(data))
        except ValueError as exc:
            raise ConfigurationError(f"XUA trust anchors {path} is not a PEM certificate bundle: {exc}") from None

    def signer_key(self, chain: Sequence[bytes], now: datetime) -> _CachedSigner:
        """The xmlsec key of the leaf of ``chain`` (DER certificates, as sent), once it is trusted at ``now``."""
        fingerprint = hashlib.sha256(b"".join(chain)).digest()
        with self._lock:
            cached = self._cache.get(fingerprint)
        if cached is None:
            cached = self._validate(chain, now)
            with self._lock:
                if len(self._cache) >= self._CACHE_SIZE:
                    self._cache.pop(next(iter(self._cache)))
                self._cache[fingerprint] = cached
        if not cached.not_before <= now <= cached.not_after:
            raise XuaError(FAILED_AUTHENTICATION, "the assertion signer's certificate (or one of its issuers) is "
                                                  "outside its validity period")
        return cached

    def _validate(self, chain: Sequence[bytes], now: datetime) -> _CachedSigner:
        try:
            certificates = [x509.load_der_x509_certificate(der) for der in chain]
        except ValueError:
            raise XuaError(INVALID_SECURITY_TOKEN, "an X509Certificate of the signature is not a certificate") \
                from None
        leaf = _leaf_of(certificates)
        path = self._path(leaf, [c for c in certificates if c is not leaf])
        not_before = max(_aware(c.not_valid_before_utc) for c in path)
        not_after = min(_aware(c.not_valid_after_utc) for c in path)
        pem = leaf.public_bytes(serialization.Encoding.PEM)
        try:
            key = xmlsec.Key.from_memory(pem, xmlsec.KeyFormat.CERT_PEM)
        except xmlsec.Error:
            raise XuaError(UNSUPPORTED_ALGORITHM, "the signer's certificate key type is not supported") from None
        return _CachedSigner(key=key, certificate=leaf, not_before=not_before, not_after=not_after)

    def _path(self, leaf: x509.Certificate, intermediates: list[x509.Certificate]) -> list[x509.Certificate]:
        """leaf .. anchor, each certificate issued (and signed) by the next; refused if none reaches an anchor."""
        path = [leaf]
        current = leaf
        for _ in range(_MAX_CHAIN):
            if current.public_bytes(serialization.Encoding.DER) in self._anchor_der:
                return path
            anchor = self._issuer_among(current, self._by_subject.get(current.issuer.public_bytes(), []))
            if anchor is not None:
                return [*path, anchor]
            issuer = self._issuer_among(current, [c for c in intermediates if _is_ca(c)])
            if issuer is None or issuer in path:
                break
            path.append(issuer)
            current = issuer
        raise XuaError(FAILED_AUTHENTICATION, f"the assertion signer ({leaf.subject.rfc4514_string()}) does not "
                                              "chain to a trusted certificate authority")

    @staticmethod
    def _issuer_among(certificate: x509.Certificate, candidates: Iterable[x509.Certificate]
                      ) -> x509.Certificate | None:
        for candidate in candidates:
            if candidate.subject != certificate.issuer:
                continue
            try:
                certificate.verify_directly_issued_by(candidate)
            except (ValueError, TypeError, InvalidSignature):
                continue
            return candidate
        return None


def _leaf_of(certificates: list[x509.Certificate]) -> x509.Certificate:
    """The certificate that issued none of the others (the signer); the first one when that is ambiguous."""
    issuers = {c.issuer.public_bytes() for c in certificates}
    for certificate in certificates:
        if certificate.subject.public_bytes() not in issuers or len(certificates) == 1:
            return certificate
    return certificates[0]


def _is_ca(certificate: x509.Certificate) -> bool:
    try:
        return bool(certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


# ---------------------------------------------------------------------------------------------- verification

def find_assertion(security: etree._Element) -> etree._Element:
    """The one SAML 2.0 Assertion child of wsse:Security (InvalidSecurity when there is none or several)."""
    if any(child.tag == _ENCRYPTED_ASSERTION for child in security):
        raise XuaError(UNSUPPORTED_SECURITY_TOKEN, "encrypted assertions are not supported")
    assertions = [child for child in security if child.tag == _ASSERTION]
    if not assertions:
        raise XuaError(INVALID_SECURITY, "the wsse:Security header carries no SAML 2.0 Assertion")
    if len(assertions) > 1:
        raise XuaError(INVALID_SECURITY, f"the wsse:Security header carries {len(assertions)} SAML 2.0 "
                                         "Assertions; exactly one is accepted")
    return assertions[0]


def verify_security_header(security: etree._Element, anchors: TrustAnchors, settings: VerifierSettings,
                           now: datetime) -> UserAssertion:
    """Verify the assertion of a wsse:Security header and read the user from it (the signed copy only)."""
    original = find_assertion(security)
    size = len(etree.tostring(original))
    if size > settings.max_assertion_bytes:
        raise XuaError(INVALID_SECURITY_TOKEN, f"the assertion is {size} bytes, above the limit of "
                                               f"{settings.max_assertion_bytes}")
    assertion = copy.deepcopy(original)  # a document of its own: the signature can reference nothing else
    claimed = _claimed(assertion)
    try:
        signer = _verify_signature(assertion, anchors, settings, now)
        return _read_user(assertion, signer, settings, now)
    except XuaError as error:
        error.claimed = error.claimed or claimed
        raise


def _claimed(assertion: etree._Element) -> str | None:
    """The identity the assertion claims (unverified), for the audit record of a refusal."""
    issuer = _text(assertion.find(qn(SAML2, "Issuer")))
    name_id = assertion.find(f"{qn(SAML2, 'Subject')}/{qn(SAML2, 'NameID')}")
    if not issuer or name_id is None or not _text(name_id):
        return None
    return _alias(name_id.get("SPProvidedID", ""), _text(name_id), issuer)[:512]


def _verify_signature(assertion: etree._Element, anchors: TrustAnchors, settings: VerifierSettings,
                      now: datetime) -> _CachedSigner:
    assertion_id = assertion.get("ID") or ""
    if not assertion_id:
        raise XuaError(INVALID_SECURITY_TOKEN, "the Assertion has no ID")
    signatures = [child for child in assertion if child.tag == _SIGNATURE]
    if not signatures:
        raise XuaError(FAILED_AUTHENTICATION, "the assertion is not signed")
    if len(signatures) > 1:
        raise XuaError(INVALID_SECURITY_TOKEN, "the assertion carries several signatures")
    _check_unique_id(assertion, assertion_id)
    signature = signatures[0]
    signature_transform, digest_transform = _check_signed_info(signature, assertion_id, settings)
    signer = anchors.signer_key(_certificates(signature), now)
    context = xmlsec.SignatureContext()
    context.key = signer.key
    context.register_id(assertion, "ID")
    for transform in (xmlsec.Transform.EXCL_C14N, signature_transform):
        context.enable_signature_transform(transform)
    for transform in (xmlsec.Transform.ENVELOPED, xmlsec.Transform.EXCL_C14N, digest_transform):
        context.enable_reference_transform(transform)
    try:
        context.verify(signature)
    except xmlsec.Error:
        raise XuaError(FAILED_CHECK, "the assertion's signature does not verify: it was changed after signing "
                                     "or signed with another key") from None
    return signer


def _check_unique_id(assertion: etree._Element, assertion_id: str) -> None:
    for element in assertion.iter():
        if element is assertion or not isinstance(element.tag, str):
            continue
        if any(element.get(name) == assertion_id for name in _ID_ATTRIBUTES):
            raise XuaError(INVALID_SECURITY_TOKEN, f"the ID {assertion_id!r} of the Assertion is used again "
                                                   "inside it")


def _check_signed_info(signature: etree._Element, assertion_id: str, settings: VerifierSettings
                       ) -> tuple[object, object]:
    """The signature and digest transforms, once SignedInfo references exactly the Assertion, safely."""
    signed_info = signature.find(qn(DS, "SignedInfo"))
    if signed_info is None:
        raise XuaError(INVALID_SECURITY_TOKEN, "the signature has no SignedInfo")
    c14n = _algorithm(signed_info.find(qn(DS, "CanonicalizationMethod")))
    if c14n != _EXC_C14N:
        raise XuaError(UNSUPPORTED_ALGORITHM, f"canonicalization {c14n or '(none)'} is not accepted; use "
                                              f"{_EXC_C14N}")
    signature_methods = {**_SIGNATURE_METHODS, **(_SHA1_SIGNATURE if settings.allow_sha1 else {})}
    digest_methods = {**_DIGEST_METHODS, **(_SHA1_DIGEST if settings.allow_sha1 else {})}
    method = _algorithm(signed_info.find(qn(DS, "SignatureMethod")))
    if method not in signature_methods:
        raise XuaError(UNSUPPORTED_ALGORITHM, f"signature algorithm {method or '(none)'} is not accepted")
    references = signed_info.findall(qn(DS, "Reference"))
    if len(references) != 1:
        raise XuaError(INVALID_SECURITY_TOKEN, f"the signature must have exactly one Reference, not "
                                               f"{len(references)}")
    reference = references[0]
    if reference.get("URI") != f"#{assertion_id}":
        raise XuaError(INVALID_SECURITY_TOKEN, "the signature does not reference the Assertion it is in "
                                               f"(URI {reference.get('URI')!r}, Assertion ID {assertion_id!r})")
    transforms = [_algorithm(t) for t in reference.iterfind(f"{qn(DS, 'Transforms')}/{qn(DS, 'Transform')}")]
    if not transforms or transforms[0] != _ENVELOPED or any(t not in (_ENVELOPED, _EXC_C14N) for t in transforms):
        raise XuaError(UNSUPPORTED_ALGORITHM, "the Reference transforms must be enveloped-signature then "
                                              f"exclusive canonicalization, not {transforms}")
    digest = _algorithm(reference.find(qn(DS, "DigestMethod")))
    if digest not in digest_methods:
        raise XuaError(UNSUPPORTED_ALGORITHM, f"digest algorithm {digest or '(none)'} is not accepted")
    return signature_methods[method], digest_methods[digest]


def _algorithm(element: etree._Element | None) -> str:
    return (element.get("Algorithm") or "").strip() if element is not None else ""


def _certificates(signature: etree._Element) -> list[bytes]:
    values = signature.findall(f"{qn(DS, 'KeyInfo')}/{qn(DS, 'X509Data')}/{qn(DS, 'X509Certificate')}")
    if not values:
        raise XuaError(SECURITY_TOKEN_UNAVAILABLE, "the signature's KeyInfo carries no X509Certificate")
    if len(values) > _MAX_CHAIN:
        raise XuaError(INVALID_SECURITY_TOKEN, f"the signature carries more than {_MAX_CHAIN} certificates")
    try:
        return [base64.b64decode("".join((value.text or "").split()), validate=True) for value in values]
    except (binascii.Error, ValueError):
        raise XuaError(INVALID_SECURITY_TOKEN, "an X509Certificate of the signature is not base64") from None


# ---------------------------------------------------------------------------------------------- content

def _read_user(assertion: etree._Element, signer: _CachedSigner, settings: VerifierSettings,
               now: datetime) -> UserAssertion:
    if assertion.get("Version") != "2.0":
        raise XuaError(INVALID_SECURITY_TOKEN, f"the Assertion Version is {assertion.get('Version')!r}, not 2.0")
    issuer = _text(assertion.find(qn(SAML2, "Issuer")))
    if not issuer:
        raise XuaError(INVALID_SECURITY_TOKEN, "the Assertion has no Issuer")
    if settings.issuers and issuer not in settings.issuers:
        raise XuaError(FAILED_AUTHENTICATION, f"the issuer {issuer!r} is not an accepted assertion provider")
    name_id = _subject(assertion, settings, now)
    not_on_or_after = _conditions(assertion, settings, now)
    if assertion.find(qn(SAML2, "AuthnStatement")) is None:
        raise XuaError(INVALID_SECURITY_TOKEN, "the Assertion has no AuthnStatement")
    texts, coded = _attributes(assertion)
    purposes = coded.get(PURPOSE_OF_USE, ())
    return UserAssertion(
        assertion_id=assertion.get("ID", ""), issuer=issuer, name_id=_text(name_id),
        sp_provided_id=name_id.get("SPProvidedID", ""), subject_id=_first(texts, SUBJECT_ID),
        organization=_first(texts, ORGANIZATION), organization_id=_first(texts, ORGANIZATION_ID),
        purposes_of_use=purposes, roles=coded.get(ROLE, ()), home_community_id=_first(texts, HOME_COMMUNITY_ID),
        resource_id=_first(texts, RESOURCE_ID),
        emergency=any(purpose.code in settings.emergency_purposes for purpose in purposes),
        not_on_or_after=not_on_or_after, signer_subject=signer.certificate.subject.rfc4514_string(),
        signer=signer.certificate, attributes=texts, coded_attributes=coded)


def _subject(assertion: etree._Element, settings: VerifierSettings, now: datetime) -> etree._Element:
    subject = assertion.find(qn(SAML2, "Subject"))
    name_id = subject.find(qn(SAML2, "NameID")) if subject is not None else None
    if name_id is None or not _text(name_id):
        raise XuaError(INVALID_SECURITY_TOKEN, "the Assertion has no Subject/NameID")
    bearer = [c for c in subject.iterfind(qn(SAML2, "SubjectConfirmation")) if c.get("Method") == _BEARER]
    if not bearer:
        raise XuaError(INVALID_SECURITY_TOKEN, f"the Subject has no SubjectConfirmation with Method {_BEARER}")
    data = bearer[0].find(qn(SAML2, "SubjectConfirmationData"))
    limit = _instant(data.get("NotOnOrAfter"), "SubjectConfirmationData/@NotOnOrAfter") if data is not None \
        else None
    if limit is not None and now - settings.clock_skew >= limit:
        raise XuaError(INVALID_SECURITY_TOKEN, f"the subject confirmation expired at {limit.isoformat()}")
    return name_id


def _conditions(assertion: etree._Element, settings: VerifierSettings, now: datetime) -> datetime:
    conditions = assertion.find(qn(SAML2, "Conditions"))
    if conditions is None:
        raise XuaError(INVALID_SECURITY_TOKEN, "the Assertion has no Conditions")
    not_before = _instant(conditions.get("NotBefore"), "Conditions/@NotBefore")
    not_on_or_after = _instant(conditions.get("NotOnOrAfter"), "Conditions/@NotOnOrAfter")
    if not_on_or_after is None:
        raise XuaError(INVALID_SECURITY_TOKEN, "the Assertion's Conditions have no NotOnOrAfter")
    if not_before is not None and now + settings.clock_skew < not_before:
        raise XuaError(INVALID_SECURITY_TOKEN, f"the assertion is not valid before {not_before.isoformat()}")
    if now - settings.clock_skew >= not_on_or_after:
        raise XuaError(INVALID_SECURITY_TOKEN, f"the assertion expired at {not_on_or_after.isoformat()}")
    restrictions = conditions.findall(qn(SAML2, "AudienceRestriction"))
    if settings.audiences:
        if not restrictions:
            raise XuaError(FAILED_AUTHENTICATION, "the assertion names no Audience; this service accepts only "
                                                  "assertions restricted to it")
        for restriction in restrictions:  # SAML core 2.5.1.4: every restriction must be met
            audiences = {_text(a) for a in restriction.iterfind(qn(SAML2, "Audience"))}
            if not audiences & set(settings.audiences):
                raise XuaError(FAILED_AUTHENTICATION, f"the assertion is meant for {sorted(audiences)}, not "
                                                      "this service")
    return not_on_or_after


def _instant(text: str | None, where: str) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise XuaError(INVALID_SECURITY_TOKEN, f"{where} {text!r} is not an xs:dateTime") from None
    return _aware(moment)


def _attributes(assertion: etree._Element
                ) -> tuple[dict[str, tuple[str, ...]], dict[str, tuple[CodedValue, ...]]]:
    texts: dict[str, list[str]] = {}
    coded: dict[str, list[CodedValue]] = {}
    for attribute in assertion.iterfind(f"{qn(SAML2, 'AttributeStatement')}/{qn(SAML2, 'Attribute')}"):
        name = attribute.get("Name") or ""
        for value in attribute.iterfind(qn(SAML2, "AttributeValue")):
            code = _coded(value)
            texts.setdefault(name, []).append(code.code if code.system or not _text(value) else _text(value))
            coded.setdefault(name, []).append(code)
    return ({name: tuple(values) for name, values in texts.items()},
            {name: tuple(values) for name, values in coded.items()})


def _coded(value: etree._Element) -> CodedValue:
    """A CE child (hl7:Role, hl7:PurposeOfUse, any element with @code), else the value's text as the code."""
    for child in value:
        if isinstance(child.tag, str) and child.get("code") is not None:
            return CodedValue(code=child.get("code", "").strip(), system=(child.get("codeSystem") or "").strip(),
                              display=(child.get("displayName") or "").strip())
    return CodedValue(code=_text(value))


def _first(values: Mapping[str, tuple[str, ...]], name: str) -> str | None:
    found = values.get(name)
    return found[0] if found else None


def _text(element: etree._Element | None) -> str:
    return (element.text or "").strip() if element is not None else ""
