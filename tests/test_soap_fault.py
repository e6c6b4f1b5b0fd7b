"""SOAP 1.2 faults: structure, QName values that resolve, error mapping without leaks."""

import pytest
from lxml import etree

from ihe_engine.errors import ConfigurationError, LocalProtocolError, MessageTooLarge, RemoteProtocolError, \
    TransactionError, XMLSecurityError
from ihe_engine.ns import SOAP11, SOAP12, WSA, qn
from ihe_engine.soap.addressing import action_not_supported
from ihe_engine.soap.envelope import parse_envelope
from ihe_engine.soap.fault import ENGINE_FAULT_NS, RECEIVER, SENDER, VERSION_MISMATCH, WSA_FAULT_ACTION, \
    SoapFault, fault_envelope, fault_from_exception, soap11_version_mismatch

NS = {"s": SOAP12, "a": WSA}


def resolve(element: etree._Element) -> str:
    prefix, local = element.text.split(":")
    return qn(element.nsmap[prefix], local)


def test_fault_envelope_structure_and_wsa_fault_action():
    parsed = parse_envelope(fault_envelope(action_not_supported("urn:x"), relates_to="urn:uuid:abc"))
    assert parsed.header_block(qn(WSA, "Action")).text == WSA_FAULT_ACTION
    assert parsed.header_block(qn(WSA, "RelatesTo")).text == "urn:uuid:abc"
    fault = parsed.payload
    assert fault.tag == qn(SOAP12, "Fault")
    assert resolve(fault.find("s:Code/s:Value", NS)) == qn(SOAP12, "Sender")
    assert resolve(fault.find("s:Code/s:Subcode/s:Value", NS)) == qn(WSA, "ActionNotSupported")
    text = fault.find("s:Reason/s:Text", NS)
    assert text.get("{http://www.w3.org/XML/1998/namespace}lang") == "en" and "urn:x" in text.text
    assert fault.find("s:Detail/a:ProblemAction/a:Action", NS).text == "urn:x"


def test_subcode_chain_in_any_namespace():
    fault = SoapFault(RECEIVER, "busy", subcodes=("{urn:a}One", "{urn:b}Two"))
    element = parse_envelope(fault_envelope(fault)).payload
    first = element.find("s:Code/s:Subcode/s:Value", NS)
    second = element.find("s:Code/s:Subcode/s:Subcode/s:Value", NS)
    assert resolve(first) == "{urn:a}One" and resolve(second) == "{urn:b}Two"
    assert element.find("s:Detail", NS) is None


def test_unknown_code_is_refused():
    with pytest.raises(ValueError):
        SoapFault("{urn:x}Whatever", "no")


@pytest.mark.parametrize("error,status,subcode", [
    (RemoteProtocolError("bad framing"), 400, "RemoteProtocolError"),
    (XMLSecurityError("a DTD"), 400, "XMLSecurityError"),
    (MessageTooLarge("too big"), 413, "MessageTooLarge"),
])
def test_peer_errors_are_sender_faults(error, status, subcode):
    fault = fault_from_exception(error)
    assert fault.code == SENDER and fault.http_status == status
    assert fault.subcodes == (qn(ENGINE_FAULT_NS, subcode),)
    assert fault.reason == str(error)


def test_transaction_error_is_receiver_with_its_message():
    fault = fault_from_exception(TransactionError("registry busy", code="XDSRegistryBusy"))
    assert fault.code == RECEIVER and fault.http_status == 500
    assert fault.subcodes == (qn(ENGINE_FAULT_NS, "XDSRegistryBusy"),) and fault.reason == "registry busy"


@pytest.mark.parametrize("error", [KeyError("/var/secret/path"), LocalProtocolError("bug at engine.py:12"),
                                   ConfigurationError("password=hunter2"), ZeroDivisionError("x")])
def test_internal_errors_do_not_leak(error):
    fault = fault_from_exception(error)
    assert fault.code == RECEIVER and fault.http_status == 500 and fault.subcodes == ()
    wire = fault_envelope(fault)
    for secret in (b"/var/secret", b"engine.py", b"hunter2", type(error).__name__.encode()):
        assert secret not in wire


def test_soap_fault_passes_through():
    fault = SoapFault(SENDER, "x")
    assert fault_from_exception(fault) is fault


def test_soap11_version_mismatch_is_readable_by_a_soap11_sender():
    root = etree.fromstring(soap11_version_mismatch("use SOAP 1.2"))
    assert root.tag == qn(SOAP11, "Envelope")
    code = root.find(f"{{{SOAP11}}}Body/{{{SOAP11}}}Fault/faultcode")
    assert resolve(code) == qn(SOAP11, "VersionMismatch")
    supported = root.find(f"{{{SOAP11}}}Header/{{{SOAP12}}}Upgrade/{{{SOAP12}}}SupportedEnvelope")
    prefix, local = supported.get("qname").split(":")
    assert qn(supported.nsmap[prefix], local) == qn(SOAP12, "Envelope")
    assert VERSION_MISMATCH.endswith("VersionMismatch")
