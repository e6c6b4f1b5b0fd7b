"""SOAP 1.2 envelope parsing and building: structure, version, mustUnderstand, hostile XML."""

import pytest
from lxml import etree

from ihe_engine.errors import XMLSecurityError
from ihe_engine.ns import SOAP12, WSA, WSSE, qn
from ihe_engine.soap.envelope import ROLE_NONE, WSA_HEADERS, build_envelope, check_must_understand, parse_envelope
from ihe_engine.soap.fault import MUST_UNDERSTAND, SENDER, VERSION_MISMATCH, SoapFault

S12 = f'xmlns:s="{SOAP12}" xmlns:a="{WSA}"'


def envelope(headers: str = "", body: str = "<p:Ping xmlns:p='urn:test'/>", ns: str = S12) -> bytes:
    return f"<s:Envelope {ns}><s:Header>{headers}</s:Header><s:Body>{body}</s:Body></s:Envelope>".encode()


def test_parse_gives_header_blocks_and_single_payload():
    parsed = parse_envelope(envelope("<a:Action>urn:x</a:Action><!-- note --><a:MessageID>m</a:MessageID>"))
    assert [block.tag for block in parsed.header_blocks] == [qn(WSA, "Action"), qn(WSA, "MessageID")]
    assert parsed.payload.tag == "{urn:test}Ping"
    assert parsed.body.tag == qn(SOAP12, "Body")
    assert parsed.header_block(qn(WSA, "MessageID")).text == "m"


def test_envelope_without_header_is_fine():
    parsed = parse_envelope(f"<s:Envelope {S12}><s:Body><x xmlns='urn:t'/></s:Body></s:Envelope>".encode())
    assert parsed.header is None and parsed.header_blocks == ()


def test_soap11_envelope_is_a_version_mismatch():
    soap11 = b'<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Body><x/></e:Body></e:Envelope>'
    with pytest.raises(SoapFault) as caught:
        parse_envelope(soap11)
    assert caught.value.code == VERSION_MISMATCH
    assert "SOAP 1.1" in caught.value.reason


def test_non_envelope_root_is_a_version_mismatch():
    with pytest.raises(SoapFault) as caught:
        parse_envelope(b"<Envelope><Body/></Envelope>")
    assert caught.value.code == VERSION_MISMATCH


@pytest.mark.parametrize("body", ["", "<a xmlns='urn:t'/><b xmlns='urn:t'/>"])
def test_body_must_hold_exactly_one_element(body):
    with pytest.raises(SoapFault) as caught:
        parse_envelope(envelope(body=body))
    assert caught.value.code == SENDER and caught.value.http_status == 400


def test_missing_body_and_misplaced_header_are_sender_faults():
    with pytest.raises(SoapFault):
        parse_envelope(f"<s:Envelope {S12}><s:Header/></s:Envelope>".encode())
    with pytest.raises(SoapFault):
        parse_envelope(f"<s:Envelope {S12}><s:Body><x/></s:Body><s:Header/></s:Envelope>".encode())


def test_unqualified_header_block_is_refused():
    with pytest.raises(SoapFault):
        parse_envelope(envelope("<plain/>"))


def test_hostile_xml_goes_through_xmlsafe():
    laughs = b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]>' + envelope("&b;")
    with pytest.raises(XMLSecurityError):
        parse_envelope(laughs)


@pytest.mark.parametrize("value", ["1", "true", " true "])
def test_must_understand_unknown_header_faults_with_not_understood(value):
    headers = f'<w:Security xmlns:w="{WSSE}" s:mustUnderstand="{value}"/>'
    parsed = parse_envelope(envelope(headers))
    with pytest.raises(SoapFault) as caught:
        check_must_understand(parsed)
    fault = caught.value
    assert fault.code == MUST_UNDERSTAND and fault.http_status == 500
    (not_understood,) = fault.header_blocks
    assert not_understood.tag == qn(SOAP12, "NotUnderstood")
    prefix, local = not_understood.get("qname").split(":")
    assert local == "Security" and not_understood.nsmap[prefix] == WSSE


def test_understood_set_is_extensible():
    parsed = parse_envelope(envelope(f'<w:Security xmlns:w="{WSSE}" s:mustUnderstand="1"/>'))
    check_must_understand(parsed, WSA_HEADERS | {qn(WSSE, "Security")})


@pytest.mark.parametrize("attributes", ['s:mustUnderstand="false"', 's:mustUnderstand="0"', "",
                                        f's:mustUnderstand="1" s:role="{ROLE_NONE}"',
                                        's:mustUnderstand="1" s:role="urn:some:other:node"'])
def test_headers_not_demanding_or_not_for_us_are_ignored(attributes):
    check_must_understand(parse_envelope(envelope(f'<x:H xmlns:x="urn:x" {attributes}/>')))


def test_wsa_headers_are_understood():
    check_must_understand(parse_envelope(envelope('<a:Action s:mustUnderstand="1">urn:x</a:Action>')))


def test_invalid_must_understand_value_is_a_sender_fault():
    with pytest.raises(SoapFault) as caught:
        check_must_understand(parse_envelope(envelope('<x:H xmlns:x="urn:x" s:mustUnderstand="yes"/>')))
    assert caught.value.code == SENDER


def test_build_envelope_round_trips():
    body = etree.Element("{urn:t}Answer")
    body.text = "42"
    header = etree.Element("{urn:t}Trace")
    parsed = parse_envelope(build_envelope(body, [header]))
    assert parsed.payload.text == "42"
    assert [block.tag for block in parsed.header_blocks] == ["{urn:t}Trace"]
    assert b"<soap:Header" not in build_envelope(etree.Element("{urn:t}A"))
