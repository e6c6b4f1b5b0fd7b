"""The CX (extended composite id) value type: one patient identifier in one assigning authority.

Two textual forms reach the engine:

* HL7 v2 component text, as in PID-3 or MRG-1: ``id^^^NS&OID&ISO^PI`` (escaped with the message's delimiters);
* the XDS form of ``XDSDocumentEntry.patientId``: ``id^^^&OID&ISO`` (no escaping, an ISO OID required).

Identity is decided by :attr:`CX.key`: the id value with the universal id (PID-3.4.2) when there is one, else
the namespace (PID-3.4.1). So ``123^^^HOSP&1.2.3&ISO`` and ``123^^^&1.2.3&ISO`` are the same identifier, which is
what lets the XDS registry find what the ITI-8 feed stored. A namespace-only authority is a different key from
the same namespace with an OID; mapping namespaces to OIDs is configuration (the PIX/PDQ issue).

Errors are :class:`CXError`, naming the component (and subcomponent) at fault and whether it is missing or
malformed, so an HL7 encoder can answer with table 0357 code 101 or 102 and an exact ERR-2 location.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple

from ..hl7v2.message import DEFAULT_ENCODING, Encoding, escape, unescape

__all__ = ["CX", "CXError", "IdentifierKey", "HL7_NULL", "is_oid"]

HL7_NULL = '""'
"""HL7's explicit null: a field or id holding exactly two double quotes means "delete this value"."""

_OID = re.compile(r"[0-2](\.(0|[1-9][0-9]*))+\Z")
_XDS_MAX_COMPONENTS = 5  # id, check digit, check digit scheme, assigning authority, identifier type code


def is_oid(text: str) -> bool:
    """True for a syntactically valid ISO object identifier in dotted form."""
    return bool(_OID.match(text))


class IdentifierKey(NamedTuple):
    """What makes two identifiers the same: (assigning authority key, id value)."""

    authority: str
    value: str


class CXError(ValueError):
    """A CX that cannot be used; ``component``/``subcomponent`` are 1-based positions within the CX."""

    def __init__(self, message: str, *, component: int, subcomponent: int | None = None,
                 missing: bool = False) -> None:
        super().__init__(message)
        self.component = component
        self.subcomponent = subcomponent
        self.missing = missing

    @property
    def hl7_code(self) -> str:
        """HL7 table 0357: 101 required field missing, 102 data type error."""
        return "101" if self.missing else "102"

    def location_in(self, segment: str, field: int, repetition: int = 1, sequence: int = 1) -> str:
        """ERR-2 style location, e.g. ``PID^1^3^2^4^2``."""
        parts = [segment, str(sequence), str(field), str(repetition), str(self.component)]
        if self.subcomponent is not None:
            parts.append(str(self.subcomponent))
        return "^".join(parts)


@dataclass(frozen=True, kw_only=True, slots=True)
class CX:
    """A patient identifier. Only the components identity needs are kept (id, authority, PID-3.5 type code)."""

    id: str
    namespace_id: str = ""
    universal_id: str = ""
    universal_id_type: str = ""
    type_code: str = ""

    def __post_init__(self) -> None:
        _check_parts(self)

    # -- identity ------------------------------------------------------------------------------------------------

    @property
    def authority_key(self) -> str:
        """The universal id when present (the stable, global name of the domain), else the namespace id."""
        return self.universal_id or self.namespace_id

    @property
    def key(self) -> IdentifierKey:
        return IdentifierKey(self.authority_key, self.id)

    @property
    def is_null(self) -> bool:
        """The id is HL7's explicit null: the sender asks to remove its identifier in this authority."""
        return self.id == HL7_NULL

    # -- parsing -------------------------------------------------------------------------------------------------

    @classmethod
    def from_hl7(cls, text: str, encoding: Encoding = DEFAULT_ENCODING, charset: str = "utf-8") -> "CX":
        """Parse one repetition of a CX field as it appears in the message (still escaped)."""
        components = text.split(encoding.component)
        authority = _at(components, 4).split(encoding.subcomponent)

        def value(parts: list[str], number: int) -> str:
            return unescape(_at(parts, number), encoding, charset)

        return cls(id=value(components, 1), namespace_id=value(authority, 1), universal_id=value(authority, 2),
                   universal_id_type=value(authority, 3), type_code=value(components, 5))

    @classmethod
    def from_xds(cls, text: str) -> "CX":
        """Parse ``id^^^&OID&ISO`` (optionally ``^type`` after it), the form XDS metadata carries."""
        components = text.split("^")
        if len(components) > _XDS_MAX_COMPONENTS:
            raise CXError(f"an XDS patient id has at most {_XDS_MAX_COMPONENTS} components: {text!r}",
                          component=_XDS_MAX_COMPONENTS + 1)
        for number in (2, 3):
            if _at(components, number):
                raise CXError(f"component {number} of an XDS patient id must be empty: {text!r}",
                              component=number)
        authority = _at(components, 4).split("&")
        if len(authority) > 3:
            raise CXError(f"the assigning authority has at most 3 subcomponents: {text!r}", component=4,
                          subcomponent=4)
        if not _at(authority, 2):
            raise CXError(f"an XDS patient id needs the assigning authority's OID: {text!r}", component=4,
                          subcomponent=2, missing=True)
        if _at(authority, 3) != "ISO":
            raise CXError(f"the universal id type of an XDS patient id must be ISO: {text!r}", component=4,
                          subcomponent=3, missing=not _at(authority, 3))
        return cls(id=components[0], namespace_id=_at(authority, 1), universal_id=authority[1],
                   universal_id_type="ISO", type_code=_at(components, 5))

    # -- formatting ----------------------------------------------------------------------------------------------

    def to_hl7(self, encoding: Encoding = DEFAULT_ENCODING) -> str:
        """``id^^^NS&OID&ISO^TYPE`` in ``encoding``'s delimiters, escaped, trailing empties dropped."""
        authority = _join_trimmed(encoding.subcomponent, [escape(part, encoding) for part in
                                  (self.namespace_id, self.universal_id, self.universal_id_type)])
        return _join_trimmed(encoding.component, [escape(self.id, encoding), "", "", authority,
                                                  escape(self.type_code, encoding)])

    def to_xds(self, *, with_type_code: bool = False) -> str:
        """``id^^^&OID&ISO``: the authority by OID only, as XDS requires."""
        if not self.universal_id or self.universal_id_type != "ISO":
            raise CXError(f"{self.to_hl7()!r} has no ISO universal id, so it has no XDS form", component=4,
                          subcomponent=2, missing=True)
        text = f"{self.id}^^^&{self.universal_id}&ISO"
        return f"{text}^{self.type_code}" if with_type_code and self.type_code else text

    def __str__(self) -> str:
        return self.to_hl7()


def _check_parts(cx: CX) -> None:
    """The rules any usable identifier meets, whichever form it came from."""
    if not cx.id:
        raise CXError("the identifier (CX.1) is empty", component=1, missing=True)
    if not cx.namespace_id and not cx.universal_id:
        raise CXError(f"identifier {cx.id!r} has no assigning authority (CX.4 needs a namespace or a universal id)",
                      component=4, missing=True)
    if cx.universal_id and not cx.universal_id_type:
        raise CXError(f"universal id {cx.universal_id!r} has no universal id type (CX.4.3)", component=4,
                      subcomponent=3, missing=True)
    if cx.universal_id_type and not cx.universal_id:
        raise CXError(f"universal id type {cx.universal_id_type!r} without a universal id (CX.4.2)", component=4,
                      subcomponent=2, missing=True)
    if cx.universal_id_type == "ISO" and not is_oid(cx.universal_id):
        raise CXError(f"{cx.universal_id!r} is not an ISO OID", component=4, subcomponent=2)


def _at(parts: list[str], number: int) -> str:
    return parts[number - 1] if number <= len(parts) else ""


def _join_trimmed(separator: str, parts: list[str]) -> str:
    while parts and not parts[-1]:
        parts = parts[:-1]
    return separator.join(parts)
