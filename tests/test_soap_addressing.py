"""WS-Addressing 1.0: reading request headers, faults with the right subcodes, reply headers."""

import uuid

import pytest
from lxml import etree

from ihe_engine.ns import SOAP12, WSA, WSA_ANONYMOUS, qn
from ihe_engine.soap.addressing import action_not_supported, read_addressing, reply_headers
from ihe_engine.soap.envelope import parse_envelope
from ihe_engine.soap.fault import SENDER, SoapFault


def blocks(headers: str):
    data = (f'<s:Envelope xmlns:s="{SOAP12}" xmlns:a="{WSA}"><s:Header>{headers}</s:Header>'
            f"<s:Body><x xmlns='urn:t'/></s:Body></s:Envelope>").encode()
    return parse_envelope(data).header_blocks


def epr(name: str, address: str) -> str:
    return f"<a:{name}><a:Address>{address}</a:Address></a:{name}>"


def test_reads_every_header():
    headers = read_addressing(blocks(
        '<a:Action s:mustUnderstand="1"> urn:ihe:iti:2007:RegistryStoredQuery </a:Action>'
        "<a:MessageID>urn:uuid:1</a:MessageID><a:To>http://x/y</a:To>"
        + epr("ReplyTo", WSA_ANONYMOUS) + epr("From", "http://client") + epr("FaultTo", WSA_ANONYMOUS)
        + '<a:RelatesTo>urn:uuid:0</a:RelatesTo><a:RelatesTo RelationshipType="urn:r">urn:uuid:9</a:RelatesTo>'))
    assert headers.action == "urn:ihe:iti:2007:RegistryStoredQuery"
    assert headers.message_id == "urn:uuid:1" and headers.to == "http://x/y"
    assert headers.reply_to.is_anonymous and headers.fault_to.is_anonymous
    assert headers.from_.address == "http://client"
    assert headers.relates_to == (("urn:uuid:0", "http://www.w3.org/2005/08/addressing/reply"),
                                  ("urn:uuid:9", "urn:r"))


def subcode_locals(fault: SoapFault):
    return [code.split("}")[1] for code in fault.subcodes]


@pytest.mark.parametrize("headers", ["", "<a:MessageID>m</a:MessageID>", "<a:Action>  </a:Action>"])
def test_missing_action_is_message_addressing_header_required(headers):
    with pytest.raises(SoapFault) as caught:
        read_addressing(blocks(headers))
    fault = caught.value
    assert fault.code == SENDER and subcode_locals(fault) == ["MessageAddressingHeaderRequired"]
    (problem,) = fault.detail
    assert problem.tag == qn(WSA, "ProblemHeaderQName") and problem.text == "wsa:Action"


def test_message_id_can_be_required():
    with pytest.raises(SoapFault) as caught:
        read_addressing(blocks("<a:Action>urn:x</a:Action>"), require_message_id=True)
    assert caught.value.detail[0].text == "wsa:MessageID"


def test_non_anonymous_reply_to_is_refused_on_synchronous_endpoints():
    with pytest.raises(SoapFault) as caught:
        read_addressing(blocks("<a:Action>urn:x</a:Action>" + epr("ReplyTo", "http://elsewhere/cb")))
    assert subcode_locals(caught.value) == ["InvalidAddressingHeader", "OnlyAnonymousAddressSupported"]
    assert "http://elsewhere/cb" in caught.value.reason
    read_addressing(blocks("<a:Action>urn:x</a:Action>" + epr("ReplyTo", "http://elsewhere/cb")),
                    synchronous=False)


def test_non_anonymous_fault_to_is_refused_too():
    with pytest.raises(SoapFault):
        read_addressing(blocks("<a:Action>urn:x</a:Action>" + epr("FaultTo", "http://elsewhere/f")))


def test_repeated_action_is_invalid_cardinality():
    with pytest.raises(SoapFault) as caught:
        read_addressing(blocks("<a:Action>urn:x</a:Action><a:Action>urn:y</a:Action>"))
    assert subcode_locals(caught.value) == ["InvalidAddressingHeader", "InvalidCardinality"]


def test_reply_to_without_address_is_refused():
    with pytest.raises(SoapFault):
        read_addressing(blocks("<a:Action>urn:x</a:Action><a:ReplyTo/>"))


def test_action_not_supported_names_the_action():
    fault = action_not_supported("urn:nope")
    assert fault.code == SENDER and subcode_locals(fault) == ["ActionNotSupported"]
    assert fault.detail[0].find(qn(WSA, "Action")).text == "urn:nope"


def test_reply_headers_relate_to_the_request():
    action, message_id, relates = reply_headers("urn:x:Response", relates_to="urn:uuid:req")
    assert action.tag == qn(WSA, "Action") and action.text == "urn:x:Response"
    assert action.get(qn(SOAP12, "mustUnderstand")) == "true"
    assert message_id.text.startswith("urn:uuid:")
    uuid.UUID(message_id.text[len("urn:uuid:"):])
    assert relates.tag == qn(WSA, "RelatesTo") and relates.text == "urn:uuid:req"
    assert len(reply_headers("urn:x", relates_to=None)) == 2
    assert etree.tostring(action)  # serializable on its own
