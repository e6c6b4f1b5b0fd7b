"""ebRIM 2.1 -> 3.0 conversion of test kit templates, and wrapping into ITI-41/42 request bodies.

Many kit templates are ebRIM 2.1 (``rs:SubmitObjectsRequest`` / ``rim:LeafRegistryObjectList``); the toolkit
converts them before sending, so the registry never sees 2.1. The rules reproduced here: recreate every
element in the rim 3.0 namespace, drop ObjectRef, order children Slot, Name, Description, VersionInfo,
Classification, ExternalIdentifier then the rest, prefix bare status and associationType values, force the
objectType of packages/associations/classifications/identifiers, and give ids to objects that lack one.
"""

from __future__ import annotations

import copy
from typing import Mapping

from lxml import etree

from ...ns import LCM, RIM, XDS, XOP, qn

__all__ = [
    "RIM21",
    "RS21",
    "convert_submit_objects_request",
    "is_v2",
    "submit_objects_request",
    "wrap_provide_and_register",
]

RIM21 = "urn:oasis:names:tc:ebxml-regrep:rim:xsd:2.1"
RS21 = "urn:oasis:names:tc:ebxml-regrep:registry:xsd:2.1"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"

_STATUS_PREFIX = "urn:oasis:names:tc:ebxml-regrep:StatusType:"
_IHE_ASSOCIATION_PREFIX = "urn:ihe:iti:2007:AssociationType:"
_OASIS_ASSOCIATION_PREFIX = "urn:oasis:names:tc:ebxml-regrep:AssociationType:"
_IHE_ASSOCIATION_TYPES = frozenset({"APND", "XFRM", "RPLC", "XFRM_RPLC", "signs"})
_OBJECT_TYPE_PREFIX = "urn:oasis:names:tc:ebxml-regrep:ObjectType:RegistryObject:"
_FORCED_OBJECT_TYPES = frozenset({"RegistryPackage", "Association", "Classification", "ExternalIdentifier"})
_CHILD_ORDER = {"Slot": 0, "Name": 1, "Description": 2, "VersionInfo": 3, "Classification": 4,
                "ExternalIdentifier": 5}
_DROPPED_ATTRIBUTES = frozenset({"majorVersion", "minorVersion"})
_NEEDS_ID = frozenset({"Association", "Classification", "ExternalIdentifier"})


def _local(element: etree._Element) -> str:
    return etree.QName(element).localname


def is_v2(root: etree._Element) -> bool:
    """True when the template's object list (or the root itself) is in an ebRIM/ebRS 2.1 namespace."""
    namespaces = {etree.QName(element).namespace for element in root.iter() if isinstance(element.tag, str)}
    return bool(namespaces & {RIM21, RS21})


class _IdCounter:
    """``id_<n>`` for objects the 2.1 file left without an id (unique within one request)."""

    def __init__(self) -> None:
        self.next = 1

    def new(self) -> str:
        value = f"id_{self.next}"
        self.next += 1
        return value


def _convert_attribute(local: str, name: str, value: str) -> tuple[str, str] | None:
    if name in _DROPPED_ATTRIBUTES:
        return None
    if name == "lang":
        return XML_LANG, value
    if name == "status" and ":" not in value:
        return name, _STATUS_PREFIX + value
    if name == "associationType" and ":" not in value:
        prefix = _IHE_ASSOCIATION_PREFIX if value in _IHE_ASSOCIATION_TYPES else _OASIS_ASSOCIATION_PREFIX
        return name, prefix + value
    if name == "objectType" and local in _FORCED_OBJECT_TYPES:
        return None  # forced below
    return name, value


def _convert_element(element: etree._Element, counter: _IdCounter, parent_id: str | None) -> etree._Element:
    local = _local(element)
    converted = etree.Element(qn(RIM, local))
    for name, value in element.attrib.items():
        kept = _convert_attribute(local, name, value)
        if kept is not None:
            converted.set(*kept)
    if local in _FORCED_OBJECT_TYPES:
        converted.set("objectType", _OBJECT_TYPE_PREFIX + local)
    if local in _NEEDS_ID and not converted.get("id"):
        converted.set("id", counter.new())
    if local == "ExternalIdentifier" and not converted.get("registryObject") and parent_id:
        converted.set("registryObject", parent_id)
    if element.text and element.text.strip():
        converted.text = element.text
    own_id = converted.get("id") or parent_id
    children = [child for child in element if isinstance(child.tag, str) and _local(child) != "ObjectRef"]
    children.sort(key=lambda child: _CHILD_ORDER.get(_local(child), len(_CHILD_ORDER)))
    for child in children:
        converted.append(_convert_element(child, counter, own_id))
    return converted


def _object_list(root: etree._Element) -> etree._Element | None:
    if _local(root) in ("LeafRegistryObjectList", "RegistryObjectList"):
        return root
    for element in root.iter():
        if isinstance(element.tag, str) and _local(element) in ("LeafRegistryObjectList", "RegistryObjectList"):
            return element
    return None


def convert_submit_objects_request(root: etree._Element) -> etree._Element:
    """A new ``lcm:SubmitObjectsRequest`` holding the 3.0 form of a 2.1 template's objects (pure)."""
    request = etree.Element(qn(LCM, "SubmitObjectsRequest"), nsmap={"lcm": LCM, "rim": RIM})
    target = etree.SubElement(request, qn(RIM, "RegistryObjectList"))
    source = _object_list(root)
    if source is None:
        return request
    counter = _IdCounter()
    for child in source:
        if isinstance(child.tag, str) and _local(child) != "ObjectRef":
            target.append(_convert_element(child, counter, None))
    return request


def submit_objects_request(template: etree._Element, *, convert: bool = True) -> etree._Element:
    """The SubmitObjectsRequest to send: 2.1 converted, 3.0 copied; a PnR template gives its inner request."""
    if _local(template) == "ProvideAndRegisterDocumentSetRequest":
        inner = next((c for c in template if isinstance(c.tag, str) and _local(c) == "SubmitObjectsRequest"), None)
        if inner is None:
            raise ValueError("the ProvideAndRegisterDocumentSetRequest template has no SubmitObjectsRequest")
        template = inner
    if convert and is_v2(template):
        return convert_submit_objects_request(template)
    return copy.deepcopy(template)


def wrap_provide_and_register(submit: etree._Element, documents: Mapping[str, str]) -> etree._Element:
    """``xds:ProvideAndRegisterDocumentSetRequest`` = the request + one Document per id, as xop:Include cid."""
    wrapper = etree.Element(qn(XDS, "ProvideAndRegisterDocumentSetRequest"), nsmap={"xds": XDS})
    wrapper.append(copy.deepcopy(submit))
    for document_id, content_id in documents.items():
        document = etree.SubElement(wrapper, qn(XDS, "Document"), id=document_id)
        include = etree.SubElement(document, qn(XOP, "Include"), nsmap={"xop": XOP})
        include.set("href", f"cid:{content_id}")
    return wrapper
