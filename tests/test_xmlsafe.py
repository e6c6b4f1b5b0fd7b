"""Hostile XML is refused before it can cost memory, read files or reach the network."""

import pytest

from ihe_engine import xmlsafe
from ihe_engine.errors import MessageTooLarge, RemoteProtocolError, XMLSecurityError

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<lolz>&lol3;</lolz>"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE x [<!ENTITY secret SYSTEM "file:///etc/passwd">]><x>&secret;</x>"""

EXTERNAL_SUBSET = b'<!DOCTYPE x SYSTEM "file:///etc/passwd"><x/>'
NETWORK_SUBSET = b'<!DOCTYPE x SYSTEM "http://127.0.0.1:9/evil.dtd"><x/>'


@pytest.mark.parametrize("document", [BILLION_LAUGHS, EXTERNAL_ENTITY, EXTERNAL_SUBSET, NETWORK_SUBSET])
def test_any_document_type_declaration_is_refused(document):
    with pytest.raises(XMLSecurityError, match="document type declaration"):
        xmlsafe.parse(document)


def test_doctype_hidden_in_utf16_is_refused():
    document = '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>'
    with pytest.raises(XMLSecurityError):
        xmlsafe.parse(document.encode("utf-16"))


def test_too_deep_is_refused():
    depth = 150
    document = b"<a>" + b"<b>" * depth + b"</b>" * depth + b"</a>"
    with pytest.raises(XMLSecurityError, match="deeper than 100"):
        xmlsafe.parse(document, max_depth=100)


def test_too_large_is_refused_before_parsing():
    with pytest.raises(MessageTooLarge, match="above the limit of 10"):
        xmlsafe.parse(b"<a>0123456789</a>", max_bytes=10)


def test_malformed_xml_says_where():
    with pytest.raises(RemoteProtocolError) as info:
        xmlsafe.parse(b"<a>\n<b></a>", what="SOAP envelope")
    assert "SOAP envelope is not well-formed" in str(info.value)
    assert info.value.location == "line 2"


def test_good_document_parses_with_namespaces():
    root = xmlsafe.parse(b'<s:Envelope xmlns:s="urn:x"><s:Body>caf\xc3\xa9</s:Body></s:Envelope>')
    assert root.tag == "{urn:x}Envelope"
    assert root[0].text == "caf\u00e9"


@pytest.mark.parametrize("encoding", ["utf-32", "utf-32-le", "utf-32-be", "cp500"])
def test_encodings_that_hide_a_doctype_are_refused(encoding, tmp_path):
    target = tmp_path / "probe.dtd"
    document = f'<?xml version="1.0" encoding="{encoding.upper()}"?><!DOCTYPE x SYSTEM "{target}"><x/>'
    with pytest.raises(XMLSecurityError):
        xmlsafe.parse(document.encode(encoding))


def test_no_external_resource_is_ever_opened(tmp_path, monkeypatch):
    """Even if a DOCTYPE slipped past the byte check, the resolver refuses to open anything."""
    monkeypatch.setattr(xmlsafe, "_has_doctype", lambda data: False)
    opened = tmp_path / "opened.dtd"
    opened.write_text('<!ENTITY leak "secret">')
    for document in (f'<!DOCTYPE x SYSTEM "{opened}"><x>&leak;</x>', f'<!DOCTYPE x SYSTEM "{opened}"><x/>'):
        with pytest.raises(XMLSecurityError, match="refers to an external resource") as info:
            xmlsafe.parse(document.encode())
        assert "secret" not in str(info.value)
