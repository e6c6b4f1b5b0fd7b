"""The one way into XML: hardened lxml parsing.

No DTD, no entity expansion, no network, a size limit and a depth limit. Every XML that comes from a peer
goes through :func:`parse`; anything hostile raises :class:`XMLSecurityError` and anything malformed raises
:class:`RemoteProtocolError`, both carrying a message a person understands.
"""

from __future__ import annotations

from lxml import etree

from .errors import MessageTooLarge, RemoteProtocolError, XMLSecurityError

__all__ = ["parse", "DEFAULT_MAX_BYTES", "DEFAULT_MAX_DEPTH"]

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_DEPTH = 200


class _RefuseEveryResource(etree.Resolver):
    """libxml2 opens external subsets even with load_dtd off: no URL or path is ever resolved."""

    def resolve(self, system_url, public_id, context):  # type: ignore[no-untyped-def]
        raise XMLSecurityError(f"XML document refers to an external resource ({system_url}), which is not allowed")


def _make_parser() -> etree.XMLParser:
    parser = etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        dtd_validation=False,
        load_dtd=False,
        huge_tree=False,
        remove_comments=False,
        collect_ids=False,
    )
    parser.resolvers.add(_RefuseEveryResource())
    return parser


_PARSER = _make_parser()


def parse(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES, max_depth: int = DEFAULT_MAX_DEPTH,
          what: str = "XML document") -> etree._Element:
    """Parse untrusted bytes into an element, refusing DTDs, entities, excess size and depth."""
    if len(data) > max_bytes:
        raise MessageTooLarge(f"{what} is {len(data)} bytes, above the limit of {max_bytes}")
    if data[:4] in _UNSUPPORTED_SIGNATURES:
        # UCS-4 and EBCDIC: legal XML encodings, but the DOCTYPE check below cannot see through them.
        raise XMLSecurityError(f"{what} is encoded in UCS-4 or EBCDIC; use UTF-8 or UTF-16")
    if _has_doctype(data):
        # Refused before libxml2 sees it: even with load_dtd off it reads a SYSTEM external subset.
        raise XMLSecurityError(f"{what} carries a document type declaration, which is not allowed")
    try:
        tree = etree.fromstring(data, _PARSER).getroottree()
    except etree.XMLSyntaxError as exc:
        raise RemoteProtocolError(f"{what} is not well-formed XML: {exc.msg}",
                                  location=f"line {exc.lineno}") from None
    if tree.docinfo.doctype or tree.docinfo.internalDTD is not None:
        raise XMLSecurityError(f"{what} carries a document type declaration, which is not allowed")
    root = tree.getroot()
    _check_tree(root, max_depth, what)
    return root


_UNSUPPORTED_SIGNATURES = frozenset({
    b"\x00\x00\x00\x3c", b"\x3c\x00\x00\x00", b"\x00\x00\x3c\x00", b"\x00\x3c\x00\x00",  # UCS-4, any order
    b"\x00\x00\xfe\xff", b"\xff\xfe\x00\x00",  # UTF-32 byte order marks
    b"\x4c\x6f\xa7\x94",  # EBCDIC "<?xm"
})
_DOCTYPE_MARKERS = (b"<!DOCTYPE", "<!DOCTYPE".encode("utf-16-le"), "<!DOCTYPE".encode("utf-16-be"))


def _has_doctype(data: bytes) -> bool:
    return any(marker in data for marker in _DOCTYPE_MARKERS)


def _check_tree(root: etree._Element, max_depth: int, what: str) -> None:
    """Refuse entity references left unexpanded, and trees deeper than max_depth (iteratively)."""
    stack = [(root, 1)]
    while stack:
        element, depth = stack.pop()
        if depth > max_depth:
            raise XMLSecurityError(f"{what} is nested deeper than {max_depth} elements")
        for child in element:
            if isinstance(child, etree._Entity):
                raise XMLSecurityError(f"{what} uses an entity reference (&{child.name};), which is not allowed")
            stack.append((child, depth + 1))
