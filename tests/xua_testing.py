"""Signed SAML 2.0 assertions for the XUA tests, made with xmlsec from the test PKI (tests/pki.py).

``build_assertion`` writes the assertion an ITI-40 X-Assertion Provider would; ``sign`` signs it as such a
provider does (enveloped, exclusive c14n, RSA-SHA256, the certificate in KeyInfo); ``envelope`` wraps it in a
wsse:Security header of a SOAP 1.2 request.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterable, Sequence

import xmlsec
from lxml import etree

from ihe_engine.france.nir import nir_key
from ihe_engine.ns import HL7V3, SAML2, SOAP12, WSA, WSSE, XSI

BEARER = "urn:oasis:names:tc:SAML:2.0:cm:bearer"
AUDIENCE = "https://registry.test/xds"
ISSUER = "https://idp.test"
SUBJECT_ID = "urn:oasis:names:tc:xspa:1.0:subject:subject-id"
ROLE = "urn:oasis:names:tc:xacml:2.0:subject:role"
PURPOSE = "urn:oasis:names:tc:xspa:1.0:subject:purposeofuse"
RESOURCE_ID = "urn:oasis:names:tc:xacml:2.0:resource:resource-id"
NIR = "1800175123456" + nir_key("1800175123456")
INS = f"{NIR}^^^&1.2.250.1.213.1.4.8&ISO^NH"


def now() -> datetime:
    return datetime.now(timezone.utc)


def _instant(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def coded(tag: str, code: str, system: str, display: str = "") -> etree._Element:
    element = etree.Element(f"{{{HL7V3}}}{tag}", nsmap={None: HL7V3, "xsi": XSI})
    element.set(f"{{{XSI}}}type", "CE")
    element.set("code", code)
    element.set("codeSystem", system)
    if display:
        element.set("displayName", display)
    return element


def build_assertion(*, issuer: str = ISSUER, name_id: str = "jdoe", audience: str | None = AUDIENCE,
                    not_before: datetime | None = None, not_on_or_after: datetime | None = None,
                    assertion_id: str | None = None, attributes: Sequence[tuple[str, Sequence[object]]] = (),
                    bearer: bool = True, authn: bool = True, sp_provided_id: str | None = None) -> etree._Element:
    """An unsigned assertion; attribute values are strings or elements (CE values)."""
    moment = now()
    not_before = not_before or moment - timedelta(minutes=1)
    not_on_or_after = not_on_or_after or moment + timedelta(minutes=5)
    s = lambda local: f"{{{SAML2}}}{local}"  # noqa: E731
    assertion = etree.Element(s("Assertion"), nsmap={"saml2": SAML2, "xs": "http://www.w3.org/2001/XMLSchema"},
                              ID=assertion_id or f"_{uuid.uuid4().hex}", Version="2.0",
                              IssueInstant=_instant(moment))
    etree.SubElement(assertion, s("Issuer")).text = issuer
    subject = etree.SubElement(assertion, s("Subject"))
    name = etree.SubElement(subject, s("NameID"), Format="urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified")
    name.text = name_id
    if sp_provided_id:
        name.set("SPProvidedID", sp_provided_id)
    confirmation = etree.SubElement(subject, s("SubjectConfirmation"),
                                    Method=BEARER if bearer else "urn:oasis:names:tc:SAML:2.0:cm:sender-vouches")
    etree.SubElement(confirmation, s("SubjectConfirmationData"), NotOnOrAfter=_instant(not_on_or_after))
    conditions = etree.SubElement(assertion, s("Conditions"), NotBefore=_instant(not_before),
                                  NotOnOrAfter=_instant(not_on_or_after))
    if audience is not None:
        etree.SubElement(etree.SubElement(conditions, s("AudienceRestriction")), s("Audience")).text = audience
    if authn:
        statement = etree.SubElement(assertion, s("AuthnStatement"), AuthnInstant=_instant(moment))
        context = etree.SubElement(statement, s("AuthnContext"))
        etree.SubElement(context, s("AuthnContextClassRef")).text = \
            "urn:oasis:names:tc:SAML:2.0:ac:classes:X509"
    if attributes:
        statement = etree.SubElement(assertion, s("AttributeStatement"))
        for attribute_name, values in attributes:
            attribute = etree.SubElement(statement, s("Attribute"), Name=attribute_name)
            for value in values:
                holder = etree.SubElement(attribute, s("AttributeValue"))
                if isinstance(value, etree._Element):
                    holder.append(value)
                else:
                    holder.text = str(value)
    return assertion


def sign(assertion: etree._Element, cert: Path, key: Path, *, method=xmlsec.Transform.RSA_SHA256,
         digest=xmlsec.Transform.SHA256, extra_certs: Iterable[Path] = ()) -> etree._Element:
    """Sign ``assertion`` in place as an assertion provider does; returns it."""
    signature = xmlsec.template.create(assertion, xmlsec.Transform.EXCL_C14N, method, ns="ds")
    assertion.insert(1, signature)  # after Issuer, as the SAML schema wants
    reference = xmlsec.template.add_reference(signature, digest, uri=f"#{assertion.get('ID')}")
    xmlsec.template.add_transform(reference, xmlsec.Transform.ENVELOPED)
    xmlsec.template.add_transform(reference, xmlsec.Transform.EXCL_C14N)
    x509_data = xmlsec.template.add_x509_data(xmlsec.template.ensure_key_info(signature))
    xmlsec.template.x509_data_add_certificate(x509_data)
    context = xmlsec.SignatureContext()
    signing_key = xmlsec.Key.from_file(str(key), xmlsec.KeyFormat.PEM)
    signing_key.load_cert_from_file(str(cert), xmlsec.KeyFormat.PEM)
    context.key = signing_key
    context.register_id(assertion, "ID")
    context.sign(signature)
    for extra in extra_certs:  # intermediates after the signer's certificate
        from cryptography import x509 as cx509
        import base64
        from cryptography.hazmat.primitives.serialization import Encoding

        der = cx509.load_pem_x509_certificate(Path(extra).read_bytes()).public_bytes(Encoding.DER)
        node = etree.SubElement(x509_data, "{http://www.w3.org/2000/09/xmldsig#}X509Certificate")
        node.text = base64.b64encode(der).decode("ascii")
    return assertion


def signed(pki, **kwargs) -> etree._Element:
    """An assertion signed by the test PKI's trusted client credential."""
    return sign(build_assertion(**kwargs), pki.client.cert, pki.client.key)


def security(*children: etree._Element) -> etree._Element:
    header = etree.Element(f"{{{WSSE}}}Security", nsmap={"wsse": WSSE})
    header.set(f"{{{SOAP12}}}mustUnderstand", "true")
    for child in children:
        header.append(child)
    return header


def reparsed(element: etree._Element) -> etree._Element:
    """``element`` as a receiver sees it: serialized, then parsed again."""
    return etree.fromstring(etree.tostring(element))


def envelope(action: str, body: etree._Element, *header_blocks: etree._Element, to: str = AUDIENCE) -> bytes:
    root = etree.Element(f"{{{SOAP12}}}Envelope", nsmap={"soap": SOAP12, "wsa": WSA})
    header = etree.SubElement(root, f"{{{SOAP12}}}Header")
    etree.SubElement(header, f"{{{WSA}}}Action").text = action
    etree.SubElement(header, f"{{{WSA}}}MessageID").text = f"urn:uuid:{uuid.uuid4()}"
    etree.SubElement(header, f"{{{WSA}}}To").text = to
    header.extend(header_blocks)
    etree.SubElement(root, f"{{{SOAP12}}}Body").append(body)
    return etree.tostring(root, xml_declaration=True, encoding="utf-8")


def vihf_attributes(*, structure_id: str = "10B0012345", secteur: str = "SA07^1.2.250.1.71.4.2.4",
                    role: etree._Element | str | None = None, mode: str = "INDIRECTE", resource: str = INS,
                    urn: str = "urn:dmp", purpose: etree._Element | None = None, version: str = "3.0",
                    drop: Sequence[str] = ()) -> list[tuple[str, Sequence[object]]]:
    attributes = [
        ("Identifiant_Structure", [structure_id]),
        ("Secteur_Activite", [secteur]),
        (SUBJECT_ID, ["DUPONT Jean"]),
        (ROLE, [role if role is not None else coded("Role", "10", "1.2.250.1.71.1.2.7", "Médecin")]),
        ("Authentification_Mode", [mode]),
        (RESOURCE_ID, [resource]),
        ("Ressource_URN", [urn]),
        (PURPOSE, [purpose if purpose is not None else coded("PurposeOfUse", "normal", "1.2.250.1.213.1.1.4.248")]),
        ("LPS_Nom", ["ihe-engine tests"]),
        ("LPS_Version", ["1.0"]),
        ("LPS_ID_HOMOLOGATION_DMP", ["TEST-0001"]),
        ("VIHF_Version", [version]),
    ]
    return [(name, values) for name, values in attributes if name not in drop]
