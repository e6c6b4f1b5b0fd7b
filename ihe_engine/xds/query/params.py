"""query:AdhocQueryRequest -> a typed :class:`StoredQueryRequest`, every wrong parameter reported at once.

Stored query values follow ebRS/IHE conventions (ITI TF-2 3.18.4.1.2.3.5): strings in single quotes with ``''``
for a quote, numbers (times) unquoted, lists in parentheses (``('a','b')``) which senders may split across several
``rim:Value`` elements; values inside one Slot are ORed, a repeated Slot (allowed only for the AND/OR
parameters) is ANDed with the others. Codes are ``code^^scheme``. Values are tokenised per ``rim:Value`` and the
tokens of a Slot read as one stream, so ``('a',`` + ``'b')`` and ``('a')`` + ``('b')`` both give ``a`` and ``b``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from lxml import etree

from ...ns import QUERY, RIM, qn
from ..constants import (SEVERITY_WARNING, STATUS_APPROVED, STATUS_DEPRECATED, STATUS_SUBMITTED,
                         normalize_association_type)
from ..errors import (RegistryError, XdsError, XDS_REGISTRY_ERROR, XDS_STORED_QUERY_MISSING_PARAM,
                      XDS_STORED_QUERY_PARAM_NUMBER, XDS_UNKNOWN_STORED_QUERY)
from ..model import Code, dtm_key
from .definitions import LEAF_CLASS, OBJECT_REF, Kind, ParamSpec, QueryDefinition, definition_for

__all__ = ["StoredQueryRequest", "parse_adhoc_query_request", "bind_parameters", "tokenize", "parse_code",
           "ParameterSyntaxError"]

_ADHOC_QUERY_REQUEST = qn(QUERY, "AdhocQueryRequest")
_RESPONSE_OPTION = qn(QUERY, "ResponseOption")
_ADHOC_QUERY = qn(RIM, "AdhocQuery")
_SLOT = qn(RIM, "Slot")
_VALUE = qn(RIM, "Value")

# Senders write the bare last segment, or even the response-status namespace (the committee example does).
_STATUS_BY_SEGMENT = MappingProxyType({url.rsplit(":", 1)[1]: url
                                       for url in (STATUS_APPROVED, STATUS_DEPRECATED, STATUS_SUBMITTED)})
_STANDARD_STATUS_PREFIXES = ("urn:oasis:names:tc:ebxml-regrep:StatusType:",
                             "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:")
_STATUS_PARAMS = frozenset({"$XDSDocumentEntryStatus", "$XDSSubmissionSetStatus", "$XDSFolderStatus",
                            "$XDSAssociationStatus"})


class ParameterSyntaxError(ValueError):
    """A value that is not written as its parameter requires; the message says how it is wrong."""


@dataclass(frozen=True)
class _Token:
    kind: str  # "(" ")" "," "string" "bare"
    text: str = ""


@dataclass(frozen=True, kw_only=True)
class StoredQueryRequest:
    """A checked stored query request: which query, how to answer, and its typed parameters (defaults applied)."""

    definition: QueryDefinition
    return_type: str
    return_composed_objects: bool = True
    home: str | None = None
    request_id: str | None = None
    params: Mapping[str, object] = field(default_factory=dict)
    given: frozenset[str] = frozenset()  # parameters the request actually carried
    warnings: tuple[RegistryError, ...] = ()  # e.g. parameters the query does not define, ignored

    @property
    def query_id(self) -> str:
        return self.definition.uuid

    @property
    def leaf_class(self) -> bool:
        return self.return_type == LEAF_CLASS

    def get(self, name: str, default: object = None) -> object:
        return self.params.get(name, default)


# ---------------------------------------------------------------------------------------------------- tokens

_BARE_END = re.compile(r"[\s(),']")


def tokenize(text: str) -> list[_Token]:
    """Split one rim:Value into parentheses, commas, quoted strings and bare words (numbers, or lax senders)."""
    tokens: list[_Token] = []
    position, length = 0, len(text)
    while position < length:
        char = text[position]
        if char.isspace():
            position += 1
        elif char in "(),":
            tokens.append(_Token(char))
            position += 1
        elif char == "'":
            value, position = _quoted(text, position + 1)
            tokens.append(_Token("string", value))
        else:
            end = _BARE_END.search(text, position)
            stop = end.start() if end else length
            tokens.append(_Token("bare", text[position:stop]))
            position = stop
    return tokens


def _quoted(text: str, position: int) -> tuple[str, int]:
    """The string starting after an opening quote (``''`` stands for one quote) and the position after it."""
    parts: list[str] = []
    while True:
        end = text.find("'", position)
        if end < 0:
            raise ParameterSyntaxError(f"unterminated quoted string in {text!r}")
        parts.append(text[position:end])
        if text.startswith("''", end):
            parts.append("'")
            position = end + 2
            continue
        return "".join(parts), end + 1


def _stream(values: list[str]):  # type: ignore[no-untyped-def]
    for text in values:
        yield None
        yield from tokenize(text)


def _items(values: list[str]) -> tuple[list[_Token], bool]:
    """The value tokens of one Slot (all its rim:Value read as one stream) and whether a list was written."""
    depth, items, listed = 0, [], False
    for token in _stream(values):
        if token is None:  # a new rim:Value: separates values like a comma
            previous = None
            continue
        if token.kind == "(":
            depth, listed = depth + 1, True
            if depth > 1:
                raise ParameterSyntaxError("nested parentheses")
        elif token.kind == ")":
            depth -= 1
            if depth < 0:
                raise ParameterSyntaxError("a ')' closes no list")
        elif token.kind == ",":
            if depth == 0 and not listed:
                raise ParameterSyntaxError("a list must be written in parentheses: ('a','b')")
        else:
            if previous is not None and previous.kind in ("string", "bare"):
                raise ParameterSyntaxError("values must be separated by commas")
            items.append(token)
        previous = token
    if depth:
        raise ParameterSyntaxError("a '(' is never closed")
    return items, listed


# ---------------------------------------------------------------------------------------------------- values

def parse_code(text: str) -> Code:
    """``code^^scheme`` (``code^display^scheme`` tolerated, display ignored) -> Code; both parts required."""
    parts = text.split("^")
    if len(parts) != 3 or not parts[0].strip() or not parts[2].strip():
        raise ParameterSyntaxError(f"{text!r} is not a coded value in the form 'code^^scheme'")
    return Code(code=parts[0], scheme=parts[2])


def _strings(spec: ParamSpec, items: list[_Token]) -> list[str]:
    values = []
    for token in items:
        if token.kind == "bare" and spec.kind is not Kind.STRING:
            raise ParameterSyntaxError(f"{token.text!r} must be a quoted string: '{token.text}'")
        values.append(token.text)
    return values


def _time_key(spec: ParamSpec, items: list[_Token]) -> str:
    text = items[0].text
    try:
        if not text.isdigit():
            raise ValueError
        return dtm_key(text)
    except ValueError:
        raise ParameterSyntaxError(f"{text!r} is not a time (YYYY[MM[DD[hh[mm[ss]]]]], unquoted)") from None


def _number(items: list[_Token]) -> int:
    text = items[0].text
    if not text.isdigit():
        raise ParameterSyntaxError(f"{text!r} is not an integer")
    return int(text)


def _canonical(name: str, value: str) -> str:
    """Statuses and association types in their full URN, whatever short form the sender used."""
    if name in _STATUS_PARAMS:
        segment = value.rsplit(":", 1)[-1]
        if value.startswith(_STANDARD_STATUS_PREFIXES) or ":" not in value:
            return _STATUS_BY_SEGMENT.get(segment, value)
        return value
    if name == "$AssociationTypes":
        return normalize_association_type(value)
    return value


def _slot_value(spec: ParamSpec, values: list[str]) -> object:
    """The typed value of one Slot occurrence (for CODES: one OR group)."""
    items, _listed = _items(values)
    if not items:
        raise ParameterSyntaxError("no value")
    if not spec.multiple and len(items) > 1:
        raise _TooMany(f"takes one value, {len(items)} were given")
    if spec.kind is Kind.TIME:
        return _time_key(spec, items)
    if spec.kind is Kind.NUMBER:
        return _number(items)
    strings = _strings(spec, items)
    if spec.kind is Kind.STRING:
        return strings[0]
    if spec.kind is Kind.CODES:
        return tuple(parse_code(text) for text in strings)
    return tuple(dict.fromkeys(_canonical(spec.name, text) for text in strings))


class _TooMany(ParameterSyntaxError):
    """More values than the parameter allows: XDSStoredQueryParamNumber rather than a syntax error."""


# ---------------------------------------------------------------------------------------------------- binding

def unknown_parameter_warnings(definition: QueryDefinition, slots: list[tuple[str, list[str]]]
                               ) -> tuple[RegistryError, ...]:
    """Parameters the query does not define are ignored, with a Warning naming each.

    Consumers still send obsolete ones (the NIST kit's ``...PracticeSettingCodeScheme``), and the kit expects the
    query to succeed; a Warning keeps the answer honest without failing it.
    """
    names = dict.fromkeys(name for name, _ in slots if name not in definition.params)
    return tuple(RegistryError(error_code=XDS_REGISTRY_ERROR, severity=SEVERITY_WARNING, location=name,
                               code_context=f"{definition.name} has no parameter {name}; it was ignored")
                 for name in names)


def bind_parameters(definition: QueryDefinition, slots: list[tuple[str, list[str]]]) -> dict[str, object]:
    """Check the request's Slots against the query definition; the typed values, defaults applied.

    Raises one :class:`XdsError` carrying every problem found (each naming its parameter). Parameters the query
    does not define are skipped here (see :func:`unknown_parameter_warnings`).
    """
    errors: list[RegistryError] = []
    grouped: dict[str, list[list[str]]] = {}
    for name, values in slots:
        grouped.setdefault(name, []).append(values)
    params: dict[str, object] = {}
    for name, occurrences in grouped.items():
        spec = definition.params.get(name)
        if spec is None:
            continue
        value = _bind_one(spec, occurrences, definition, errors)
        if value is not None:
            params[name] = value
    errors.extend(_presence_errors(definition, grouped.keys()))
    errors.extend(_range_errors(definition, params))
    if errors:
        raise XdsError.from_errors(errors)
    return {**definition.defaults, **params}


def _bind_one(spec: ParamSpec, occurrences: list[list[str]], definition: QueryDefinition,
              errors: list[RegistryError]) -> object | None:
    if len(occurrences) > 1 and not spec.and_or:
        errors.append(_error(XDS_STORED_QUERY_PARAM_NUMBER, f"parameter {spec.name} of {definition.name} appears "
                                                             f"{len(occurrences)} times; it may appear once",
                             spec.name))
        return None
    try:
        parsed = [_slot_value(spec, values) for values in occurrences]
    except _TooMany as exc:
        errors.append(_error(XDS_STORED_QUERY_PARAM_NUMBER, f"parameter {spec.name} {exc}", spec.name))
        return None
    except ParameterSyntaxError as exc:
        errors.append(_error(XDS_REGISTRY_ERROR, f"parameter {spec.name} must be {spec.kind.value}: {exc}",
                             spec.name))
        return None
    if spec.kind is Kind.CODES:
        return tuple(parsed)  # AND of OR groups; a plain code list has a single group
    return parsed[0]


def _presence_errors(definition: QueryDefinition, given) -> list[RegistryError]:  # type: ignore[no-untyped-def]
    errors = [_error(XDS_STORED_QUERY_MISSING_PARAM, f"{definition.name} requires parameter {name}", name)
              for name in sorted(definition.required - set(given))]
    for group in definition.exactly_one:
        present = [name for name in group if name in given]
        if not present:
            errors.append(_error(XDS_STORED_QUERY_MISSING_PARAM,
                                 f"{definition.name} requires one of {_or(group)}", group[0]))
        elif len(present) > 1:
            errors.append(_error(XDS_STORED_QUERY_PARAM_NUMBER,
                                 f"{definition.name} takes only one of {_or(group)}; {' and '.join(present)} "
                                 "were both given", present[1]))
    for group in definition.at_least_one:
        if not any(name in given for name in group):
            errors.append(_error(XDS_STORED_QUERY_MISSING_PARAM,
                                 f"{definition.name} requires at least one of {_or(group)}", group[0]))
    return errors


def _range_errors(definition: QueryDefinition, params: Mapping[str, object]) -> list[RegistryError]:
    level = params.get("$MetadataLevel")
    if level is not None and level not in (1, 2):
        return [_error(XDS_REGISTRY_ERROR, f"parameter $MetadataLevel must be 1 or 2, not {level}",
                       "$MetadataLevel")]
    return []


def _or(names: tuple[str, ...]) -> str:
    return ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else names[0]


def _error(code: str, context: str, location: str | None = None) -> RegistryError:
    return RegistryError(error_code=code, code_context=context, location=location)


# ---------------------------------------------------------------------------------------------------- request

def parse_adhoc_query_request(element: etree._Element) -> StoredQueryRequest:
    """The typed request; :class:`XdsError` (XDSUnknownStoredQuery, XDSStoredQueryMissingParam, ...) otherwise."""
    if element.tag != _ADHOC_QUERY_REQUEST:
        raise XdsError(XDS_REGISTRY_ERROR, f"expected query:AdhocQueryRequest, got {element.tag}")
    return_type, composed = _response_option(element.find(_RESPONSE_OPTION))
    query = element.find(_ADHOC_QUERY)
    if query is None:
        raise XdsError(XDS_REGISTRY_ERROR, "AdhocQueryRequest has no rim:AdhocQuery", location="AdhocQuery")
    query_id = (query.get("id") or "").strip()
    definition = definition_for(query_id)
    if definition is None:
        raise XdsError(XDS_UNKNOWN_STORED_QUERY, f"{query_id or '(no id)'} is not a stored query this registry "
                                                 "knows", location=query_id or None)
    slots = [(slot.get("name", "").strip(), [value.text or "" for value in slot.iter(_VALUE)])
             for slot in query.findall(_SLOT)]
    params = bind_parameters(definition, slots)
    return StoredQueryRequest(definition=definition, return_type=return_type, return_composed_objects=composed,
                              home=(query.get("home") or "").strip() or None, request_id=element.get("id"),
                              params=MappingProxyType(params), given=frozenset(name for name, _ in slots),
                              warnings=unknown_parameter_warnings(definition, slots))


def _response_option(option: etree._Element | None) -> tuple[str, bool]:
    """returnType (absent: LeafClass, the full objects) and returnComposedObjects."""
    if option is None:
        raise XdsError(XDS_REGISTRY_ERROR, "AdhocQueryRequest has no query:ResponseOption", location="ResponseOption")
    return_type = (option.get("returnType") or LEAF_CLASS).strip()
    if return_type not in (LEAF_CLASS, OBJECT_REF):
        raise XdsError(XDS_REGISTRY_ERROR, f"returnType {return_type!r} is not supported: use LeafClass or ObjectRef",
                       location="ResponseOption/@returnType")
    composed = (option.get("returnComposedObjects") or "false").strip().lower() in ("true", "1")
    return return_type, composed
