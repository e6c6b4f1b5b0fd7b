"""ebRIM 3.0 <-> the XDS model: parse submissions, serialize LeafClass / ObjectRef answers, assign UUIDs.

Objects are recognised the way IHE defines them and nothing else: an ExtrinsicObject is a DocumentEntry; a
RegistryPackage is a SubmissionSet or a Folder according to the classificationNode of a Classification
pointing at it (nested in the package or a separate top-level rim:Classification); attributes are found by
classificationScheme / identificationScheme UUID and slot name. The parser walks each element's children
once (no XPath), and keeps every element so that answers return what was submitted.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from copy import deepcopy
from dataclasses import dataclass, field, replace

from lxml import etree

from .. import xmlsafe
from ..ns import LCM, RIM, XDS, qn
from . import constants as c
from .errors import XDS_REGISTRY_METADATA_ERROR, RegistryError, XdsError
from .model import (Association, Author, Classification, Code, DocumentContent, DocumentEntry, ExternalIdentifier,
                    Folder, ObjectRef, RegistryObject, Slot, Submission, SubmissionSet, TopLevelObject)

__all__ = [
    "parse_submission", "parse_submit_objects_request", "parse_provide_and_register", "parse_registry_object_list",
    "to_leaf_class", "to_object_ref", "assign_uuids", "new_uuid",
]

_SLOT, _VALUE, _NAME, _DESCRIPTION = qn(RIM, "Slot"), qn(RIM, "Value"), qn(RIM, "Name"), qn(RIM, "Description")
_LOCALIZED, _VERSION_INFO = qn(RIM, "LocalizedString"), qn(RIM, "VersionInfo")
_CLASSIFICATION, _EXTERNAL_ID = qn(RIM, "Classification"), qn(RIM, "ExternalIdentifier")
_EXTRINSIC, _PACKAGE, _ASSOCIATION = qn(RIM, "ExtrinsicObject"), qn(RIM, "RegistryPackage"), qn(RIM, "Association")
_OBJECT_REF, _OBJECT_LIST = qn(RIM, "ObjectRef"), qn(RIM, "RegistryObjectList")
_CONTENT_VERSION_INFO = qn(RIM, "ContentVersionInfo")
_SUBMIT_OBJECTS, _PNR = qn(LCM, "SubmitObjectsRequest"), qn(XDS, "ProvideAndRegisterDocumentSetRequest")
_DOCUMENT = qn(XDS, "Document")

# Attributes that hold an object id, rewritten together when symbolic ids become UUIDs.
_REFERENCE_ATTRIBUTES = ("id", "classifiedObject", "registryObject", "sourceObject", "targetObject", "lid")
# The ebRIM objects that carry an id in an XDS submission (Slots, Names, Values never do).
_IDENTIFIABLE = tuple(qn(RIM, name) for name in (
    "ExtrinsicObject", "RegistryPackage", "Association", "Classification", "ExternalIdentifier", "ObjectRef",
    "ExternalLink", "ClassificationNode", "ClassificationScheme", "RegistryObject"))


def new_uuid() -> str:
    """A fresh ``urn:uuid:`` identifier."""
    return f"{c.UUID_PREFIX}{uuid.uuid4()}"


# =============================================================================================================
# Parsing
# =============================================================================================================

def parse_submission(request: bytes | etree._Element) -> Submission:
    """Parse lcm:SubmitObjectsRequest, xds:ProvideAndRegisterDocumentSetRequest or rim:RegistryObjectList.

    Bytes go through :func:`ihe_engine.xmlsafe.parse`. Raises :class:`XdsError` (XDSRegistryMetadataError,
    every problem found) when the metadata cannot be mapped onto the model.
    """
    root = xmlsafe.parse(request, what="XDS submission") if isinstance(request, bytes) else request
    if root.tag == _PNR:
        return parse_provide_and_register(root)
    if root.tag == _SUBMIT_OBJECTS:
        return parse_submit_objects_request(root)
    if root.tag == _OBJECT_LIST:
        return parse_registry_object_list(root)
    raise XdsError(XDS_REGISTRY_METADATA_ERROR, f"unexpected request element {root.tag}; expected "
                   "lcm:SubmitObjectsRequest, xds:ProvideAndRegisterDocumentSetRequest or rim:RegistryObjectList")


def parse_submit_objects_request(element: etree._Element) -> Submission:
    """An lcm:SubmitObjectsRequest (ITI-42, ITI-57); an empty one gives an empty Submission."""
    object_list = element.find(_OBJECT_LIST)
    if object_list is None:
        return Submission()
    return parse_registry_object_list(object_list)


def parse_provide_and_register(element: etree._Element) -> Submission:
    """An xds:ProvideAndRegisterDocumentSetRequest (ITI-41): the metadata plus its xds:Document elements."""
    sor = element.find(_SUBMIT_OBJECTS)
    if sor is None:
        raise XdsError(XDS_REGISTRY_METADATA_ERROR,
                       "ProvideAndRegisterDocumentSetRequest carries no lcm:SubmitObjectsRequest")
    documents = [DocumentContent(id=doc.get("id", ""), element=doc) for doc in element.iterchildren(_DOCUMENT)]
    object_list = sor.find(_OBJECT_LIST)
    children = _element_children(object_list) if object_list is not None else []
    return _SubmissionBuilder(children, documents).build()


def parse_registry_object_list(element: etree._Element) -> Submission:
    """A rim:RegistryObjectList: the objects of a submission, in document order."""
    return _SubmissionBuilder(_element_children(element), ()).build()


def _element_children(element: etree._Element) -> list[etree._Element]:
    return [child for child in element if isinstance(child.tag, str)]


def _urn(value: str | None) -> str | None:
    """A URN attribute with any whitespace removed: UUIDs never contain it, and some senders wrap lines inside
    them (IPF's sample requests do), which must not hide an attribute."""
    if value is None:
        return None
    return "".join(value.split()) if " " in value or "\n" in value or "\t" in value else value


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _describe(element: etree._Element) -> str:
    """``ExtrinsicObject[@id='Document01']``: the location of an object in the request."""
    return f"{_local(element.tag)}[@id='{element.get('id', '')}']"


@dataclass(kw_only=True)
class _Common:
    """What every RegistryObject element holds, read in one pass over its children."""

    slots: list[Slot] = field(default_factory=list)
    title: str | None = None
    comments: str | None = None
    version: str | None = None
    classifications: list[Classification] = field(default_factory=list)
    identifiers: list[ExternalIdentifier] = field(default_factory=list)


class _SubmissionBuilder:
    """Builds a Submission from the children of a RegistryObjectList, collecting every error."""

    def __init__(self, children: Sequence[etree._Element], documents: Sequence[DocumentContent]) -> None:
        self.children = children
        self.documents = tuple(documents)
        self.errors: list[RegistryError] = []
        self.detached_classifications: dict[str, list[Classification]] = {}
        self.detached_identifiers: dict[str, list[ExternalIdentifier]] = {}

    def build(self) -> Submission:
        self._collect_detached()
        objects = [obj for obj in map(self._build_object, self.children) if obj is not None]
        if self.errors:
            raise XdsError.from_errors(self.errors)
        return Submission(submission_sets=tuple(o for o in objects if isinstance(o, SubmissionSet)),
                          entries=tuple(o for o in objects if isinstance(o, DocumentEntry)),
                          folders=tuple(o for o in objects if isinstance(o, Folder)),
                          associations=tuple(o for o in objects if isinstance(o, Association)),
                          object_refs=tuple(o for o in objects if isinstance(o, ObjectRef)),
                          documents=self.documents, objects=tuple(objects))

    # --- helpers ----------------------------------------------------------------------------------------------

    def error(self, context: str, location: str) -> None:
        self.errors.append(RegistryError(error_code=XDS_REGISTRY_METADATA_ERROR, code_context=context,
                                         location=location))

    def _collect_detached(self) -> None:
        """Top-level Classifications / ExternalIdentifiers, attached later to the object they point at."""
        for child in self.children:
            if child.tag == _CLASSIFICATION:
                classification = self._classification(child, nested=False)
                self.detached_classifications.setdefault(classification.classified_object or "", []).append(
                    classification)
            elif child.tag == _EXTERNAL_ID:
                identifier = self._identifier(child, nested=False)
                self.detached_identifiers.setdefault(identifier.registry_object or "", []).append(identifier)

    def _build_object(self, child: etree._Element) -> TopLevelObject | None:
        tag = child.tag
        if tag == _EXTRINSIC:
            return self._document_entry(child)
        if tag == _PACKAGE:
            return self._package(child)
        if tag == _ASSOCIATION:
            return self._association(child)
        if tag == _OBJECT_REF:
            return ObjectRef(id=child.get("id", ""), home=child.get("home"), element=child)
        if tag == _CLASSIFICATION:
            return next(cl for cl in self.detached_classifications[child.get("classifiedObject") or ""]
                        if cl.element is child)
        if tag == _EXTERNAL_ID:
            return next(ei for ei in self.detached_identifiers[child.get("registryObject") or ""]
                        if ei.element is child)
        return None  # other ebRIM objects (ExternalLink, ...) have no XDS meaning

    def _common(self, element: etree._Element) -> _Common:
        common = _Common()
        seen_slots: set[str] = set()
        for child in element:
            tag = child.tag
            if tag == _SLOT:
                slot = _slot(child)
                if slot.name in seen_slots:
                    self.error(f"{_describe(element)} has two slots named {slot.name!r}",
                               f"{_describe(element)}/Slot[@name='{slot.name}']")
                seen_slots.add(slot.name)
                common.slots.append(slot)
            elif tag == _CLASSIFICATION:
                common.classifications.append(self._classification(child, nested=True))
            elif tag == _EXTERNAL_ID:
                common.identifiers.append(self._identifier(child, nested=True))
            elif tag == _NAME:
                common.title = _localized(child)
            elif tag == _DESCRIPTION:
                common.comments = _localized(child)
            elif tag == _VERSION_INFO:
                common.version = child.get("versionName")
        object_id = element.get("id") or ""
        common.classifications.extend(self.detached_classifications.get(object_id, ()))
        common.identifiers.extend(self.detached_identifiers.get(object_id, ()))
        return common

    def _base_fields(self, element: etree._Element, common: _Common) -> dict:
        entry_uuid = element.get("id")
        if not entry_uuid:
            self.error(f"a {_local(element.tag)} has no id attribute", _local(element.tag))
        return dict(entry_uuid=entry_uuid or "", lid=element.get("lid"), version=common.version,
                    status=element.get("status"), object_type=_urn(element.get("objectType")),
                    home=element.get("home"), title=common.title, comments=common.comments,
                    slots=tuple(common.slots), classifications=tuple(common.classifications),
                    external_identifiers=tuple(common.identifiers), element=element)

    @staticmethod
    def _classification(element: etree._Element, *, nested: bool) -> Classification:
        slots: list[Slot] = []
        name = None
        for child in element:
            if child.tag == _SLOT:
                slots.append(_slot(child))
            elif child.tag == _NAME:
                name = _localized(child)
        return Classification(id=element.get("id"), classified_object=element.get("classifiedObject"),
                              scheme=_urn(element.get("classificationScheme")),
                              node=_urn(element.get("classificationNode")),
                              node_representation=element.get("nodeRepresentation"), name=name,
                              slots=tuple(slots), nested=nested, element=element)

    def _identifier(self, element: etree._Element, *, nested: bool) -> ExternalIdentifier:
        name = next((_localized(child) for child in element if child.tag == _NAME), None)
        value = element.get("value")
        scheme = _urn(element.get("identificationScheme")) or ""
        if value is None:
            self.error(f"ExternalIdentifier {element.get('id', '')} ({scheme}) has no value",
                       _describe(element))
        return ExternalIdentifier(id=element.get("id"), scheme=scheme, registry_object=element.get("registryObject"),
                                  value=(value or "").strip(), name=name, nested=nested, element=element)

    # --- coded values, authors, identifiers ---------------------------------------------------------------------

    def _code(self, owner: etree._Element, classification: Classification, attribute: str) -> Code:
        where = f"{_describe(owner)}/Classification[@id='{classification.id or ''}']"
        code = classification.node_representation
        schemes = classification.slot_values(c.SLOT_CODING_SCHEME)
        if not code:
            self.error(f"{attribute} classification {classification.id} of {owner.get('id')} has no "
                       "nodeRepresentation (the code)", where)
        if len(schemes) != 1 or not schemes[0]:
            self.error(f"{attribute} classification {classification.id} of {owner.get('id')} needs exactly one "
                       f"codingScheme slot value, found {len(schemes)}", where)
        return Code(code=code or "", scheme=schemes[0] if schemes else "", display=classification.name)

    def _single(self, owner: etree._Element, attribute: str, items: list):
        """The only item of a 0..1 attribute; two or more is an error naming the attribute."""
        if len(items) > 1:
            self.error(f"{_describe(owner)} has {len(items)} {attribute} values; at most one is allowed",
                       f"{_describe(owner)}/{attribute}")
        return items[0] if items else None

    def _single_slot(self, owner: etree._Element, common: _Common, name: str) -> str | None:
        slot = next((s for s in common.slots if s.name == name), None)
        if slot is None:
            return None
        if len(slot.values) != 1:
            self.error(f"slot {name} of {owner.get('id')} must have exactly one value, found {len(slot.values)}",
                       f"{_describe(owner)}/Slot[@name='{name}']")
        return slot.values[0] if slot.values else None

    def _identifier_value(self, owner: etree._Element, common: _Common, scheme: str, attribute: str) -> str | None:
        values = [ei.value for ei in common.identifiers if ei.scheme == scheme]
        return self._single(owner, attribute, values)

    @staticmethod
    def _coded(common: _Common) -> dict[str, list]:
        """Classifications grouped by scheme ('node:' + node for internal ones)."""
        grouped: dict[str, list[Classification]] = {}
        for classification in common.classifications:
            key = classification.scheme or f"node:{classification.node or ''}"
            grouped.setdefault(key, []).append(classification)
        return grouped

    def _codes(self, owner: etree._Element, grouped: dict[str, list], scheme: str) -> tuple[Code, ...]:
        attribute = c.CODED_ATTRIBUTES[scheme]
        return tuple(self._code(owner, cl, attribute) for cl in grouped.get(scheme, ()))

    def _one_code(self, owner: etree._Element, grouped: dict[str, list], scheme: str) -> Code | None:
        return self._single(owner, c.CODED_ATTRIBUTES[scheme], list(self._codes(owner, grouped, scheme)))

    # --- the objects ----------------------------------------------------------------------------------------------

    def _document_entry(self, element: etree._Element) -> DocumentEntry:
        common = self._common(element)
        grouped = self._coded(common)
        single = lambda name: self._single_slot(element, common, name)  # noqa: E731
        return DocumentEntry(
            **self._base_fields(element, common),
            mime_type=element.get("mimeType"),
            unique_id=self._identifier_value(element, common, c.DE_UNIQUE_ID, "uniqueId"),
            patient_id=self._identifier_value(element, common, c.DE_PATIENT_ID, "patientId"),
            source_patient_id=single(c.SLOT_SOURCE_PATIENT_ID),
            source_patient_info=_values(common, c.SLOT_SOURCE_PATIENT_INFO),
            class_code=self._one_code(element, grouped, c.DE_CLASS_CODE),
            type_code=self._one_code(element, grouped, c.DE_TYPE_CODE),
            format_code=self._one_code(element, grouped, c.DE_FORMAT_CODE),
            healthcare_facility_type_code=self._one_code(element, grouped, c.DE_HEALTHCARE_FACILITY_TYPE_CODE),
            practice_setting_code=self._one_code(element, grouped, c.DE_PRACTICE_SETTING_CODE),
            confidentiality_codes=self._codes(element, grouped, c.DE_CONFIDENTIALITY_CODE),
            event_codes=self._codes(element, grouped, c.DE_EVENT_CODE_LIST),
            authors=tuple(_author(cl) for cl in grouped.get(c.DE_AUTHOR, ())),
            creation_time=single(c.SLOT_CREATION_TIME),
            service_start_time=single(c.SLOT_SERVICE_START_TIME),
            service_stop_time=single(c.SLOT_SERVICE_STOP_TIME),
            language_code=single(c.SLOT_LANGUAGE_CODE),
            legal_authenticator=single(c.SLOT_LEGAL_AUTHENTICATOR),
            hash=single(c.SLOT_HASH),
            size=single(c.SLOT_SIZE),
            repository_unique_id=single(c.SLOT_REPOSITORY_UNIQUE_ID),
            uri=next(iter(_values(common, c.SLOT_URI)), None),  # legacy senders split long URIs over values
            document_availability=single(c.SLOT_DOCUMENT_AVAILABILITY),
            reference_ids=_values(common, c.SLOT_REFERENCE_ID_LIST),
            limited_metadata=f"node:{c.DE_LIMITED_METADATA}" in grouped,
        )

    def _package(self, element: etree._Element) -> SubmissionSet | Folder | None:
        common = self._common(element)
        grouped = self._coded(common)
        is_set = f"node:{c.SS_CLASSIFICATION_NODE}" in grouped
        is_folder = f"node:{c.FOLDER_CLASSIFICATION_NODE}" in grouped
        if is_set == is_folder:
            what = "both a SubmissionSet and a Folder" if is_set else "neither as SubmissionSet nor as Folder"
            self.error(f"RegistryPackage {element.get('id')} is classified {what} (classificationNode "
                       f"{c.SS_CLASSIFICATION_NODE} or {c.FOLDER_CLASSIFICATION_NODE})", _describe(element))
            return None
        return self._submission_set(element, common, grouped) if is_set else self._folder(element, common, grouped)

    def _submission_set(self, element: etree._Element, common: _Common, grouped: dict) -> SubmissionSet:
        return SubmissionSet(
            **self._base_fields(element, common),
            unique_id=self._identifier_value(element, common, c.SS_UNIQUE_ID, "uniqueId"),
            source_id=self._identifier_value(element, common, c.SS_SOURCE_ID, "sourceId"),
            patient_id=self._identifier_value(element, common, c.SS_PATIENT_ID, "patientId"),
            submission_time=self._single_slot(element, common, c.SLOT_SUBMISSION_TIME),
            content_type_code=self._one_code(element, grouped, c.SS_CONTENT_TYPE_CODE),
            authors=tuple(_author(cl) for cl in grouped.get(c.SS_AUTHOR, ())),
            intended_recipients=_values(common, c.SLOT_INTENDED_RECIPIENT),
            limited_metadata=f"node:{c.SS_LIMITED_METADATA}" in grouped,
        )

    def _folder(self, element: etree._Element, common: _Common, grouped: dict) -> Folder:
        return Folder(
            **self._base_fields(element, common),
            unique_id=self._identifier_value(element, common, c.FOLDER_UNIQUE_ID, "uniqueId"),
            patient_id=self._identifier_value(element, common, c.FOLDER_PATIENT_ID, "patientId"),
            code_list=self._codes(element, grouped, c.FOLDER_CODE_LIST),
            last_update_time=self._single_slot(element, common, c.SLOT_LAST_UPDATE_TIME),
            limited_metadata=f"node:{c.FOLDER_LIMITED_METADATA}" in grouped,
        )

    def _association(self, element: etree._Element) -> Association:
        common = self._common(element)
        grouped = self._coded(common)
        for attribute in ("associationType", "sourceObject", "targetObject"):
            if not element.get(attribute):
                self.error(f"Association {element.get('id')} has no {attribute}", _describe(element))
        single = lambda name: self._single_slot(element, common, name)  # noqa: E731
        return Association(
            **self._base_fields(element, common),
            association_type=c.normalize_association_type(_urn(element.get("associationType")) or ""),
            source=element.get("sourceObject") or "",
            target=element.get("targetObject") or "",
            submission_set_status=single(c.SLOT_SUBMISSION_SET_STATUS),
            previous_version=single(c.SLOT_PREVIOUS_VERSION),
            original_status=single(c.SLOT_ORIGINAL_STATUS),
            new_status=single(c.SLOT_NEW_STATUS),
            association_propagation=single(c.SLOT_ASSOCIATION_PROPAGATION),
            documentation=self._codes(element, grouped, c.ASSOCIATION_DOCUMENTATION),
        )


def _slot(element: etree._Element) -> Slot:
    # Values normally sit in a ValueList; iter() also accepts the rare sender that omits it.
    return Slot(name=element.get("name", ""), values=tuple((v.text or "").strip() for v in element.iter(_VALUE)))


def _values(common: _Common, name: str) -> tuple[str, ...]:
    return next((slot.values for slot in common.slots if slot.name == name), ())


def _localized(element: etree._Element) -> str | None:
    localized = element.find(_LOCALIZED)
    return localized.get("value") if localized is not None else None


def _author(classification: Classification) -> Author:
    persons = classification.slot_values(c.SLOT_AUTHOR_PERSON)
    return Author(person=persons[0] if persons else None,
                  institutions=classification.slot_values(c.SLOT_AUTHOR_INSTITUTION),
                  roles=classification.slot_values(c.SLOT_AUTHOR_ROLE),
                  specialties=classification.slot_values(c.SLOT_AUTHOR_SPECIALTY),
                  telecoms=classification.slot_values(c.SLOT_AUTHOR_TELECOMMUNICATION))


# =============================================================================================================
# Serialization
# =============================================================================================================

_AFTER_SLOTS = frozenset({_NAME, _DESCRIPTION, _VERSION_INFO, _CLASSIFICATION, _EXTERNAL_ID, _CONTENT_VERSION_INFO,
                          _OBJECT_LIST})
_AFTER_VERSION_INFO = frozenset({_CLASSIFICATION, _EXTERNAL_ID, _CONTENT_VERSION_INFO, _OBJECT_LIST})
_AFTER_CLASSIFICATIONS = frozenset({_EXTERNAL_ID, _CONTENT_VERSION_INFO, _OBJECT_LIST})
_AFTER_IDENTIFIERS = frozenset({_CONTENT_VERSION_INFO, _OBJECT_LIST})


def to_leaf_class(obj: RegistryObject, *, status: str | None = None, home: str | None = None,
                  lid: str | None = None, version: str | None = None,
                  slots: Mapping[str, Sequence[str]] | None = None) -> etree._Element:
    """The object's rim element for a LeafClass answer: a copy of what was submitted, plus the registry's values.

    ``status`` sets the status attribute; ``home`` the homeCommunityId attribute; ``lid``/``version`` the
    logical id and VersionInfo/@versionName (Metadata Update); ``slots`` replaces or adds slots (for a
    DocumentEntry registered by a repository: repositoryUniqueId, hash, size; for a Folder: lastUpdateTime).
    Top-level classifications and external identifiers submitted apart from the object are moved inside it,
    and an association's type is given as the full URN. The model object's own element is left untouched.
    """
    if obj.element is None:
        raise ValueError(f"{type(obj).__name__} {obj.entry_uuid} has no submitted element to serialize")
    element = deepcopy(obj.element)
    element.set("id", obj.entry_uuid)
    for attribute, value in (("status", status), ("home", home), ("lid", lid)):
        if value is not None:
            element.set(attribute, value)
    if isinstance(obj, Association):
        element.set("associationType", obj.association_type)
    if version is not None:
        _set_version(element, version)
    for name, values in (slots or {}).items():
        _set_slot(element, name, values)
    for classification in obj.classifications:
        if not classification.nested and classification.element is not None:
            _insert(element, deepcopy(classification.element), _AFTER_CLASSIFICATIONS)
    for identifier in obj.external_identifiers:
        if not identifier.nested and identifier.element is not None:
            _insert(element, deepcopy(identifier.element), _AFTER_IDENTIFIERS)
    return element


def to_object_ref(object_id: str, home: str | None = None) -> etree._Element:
    """A rim:ObjectRef for an ObjectRef answer (``home`` = homeCommunityId, when the registry has one)."""
    element = etree.Element(_OBJECT_REF, id=object_id, nsmap={"rim": RIM})
    if home:
        element.set("home", home)
    return element


def _insert(parent: etree._Element, child: etree._Element, before: frozenset[str]) -> None:
    """Insert child before the first existing child whose tag comes later in the ebRIM sequence."""
    for index, existing in enumerate(parent):
        if existing.tag in before:
            parent.insert(index, child)
            return
    parent.append(child)


def _set_slot(element: etree._Element, name: str, values: Iterable[str]) -> None:
    slot = next((s for s in element.iterchildren(_SLOT) if s.get("name") == name), None)
    if slot is None:
        slot = etree.Element(_SLOT, name=name)
        _insert(element, slot, _AFTER_SLOTS)
    for child in list(slot):
        slot.remove(child)
    value_list = etree.SubElement(slot, qn(RIM, "ValueList"))
    for value in values:
        etree.SubElement(value_list, _VALUE).text = value


def _set_version(element: etree._Element, version: str) -> None:
    info = element.find(_VERSION_INFO)
    if info is None:
        info = etree.Element(_VERSION_INFO)
        _insert(element, info, _AFTER_VERSION_INFO)
    info.set("versionName", version)


# =============================================================================================================
# Symbolic ids
# =============================================================================================================

def assign_uuids(submission: Submission, *, make_uuid: Callable[[], str] = new_uuid,
                 ) -> tuple[Submission, dict[str, str]]:
    """Replace every id that is not a ``urn:uuid:`` by a fresh UUID, consistently, and say which.

    The same symbol gets the same UUID wherever it appears: the ``id`` of every ebRIM object at any depth
    (classifications and external identifiers too), ``classifiedObject``, ``registryObject``, ``sourceObject``,
    ``targetObject``, an xds:Document's ``id``, and ``lid`` when it names a symbol. Existing UUIDs (and
    ObjectRefs, which name objects already registered) are kept. Returns a new Submission over copies of the
    elements (the given one is not changed) and the mapping symbol -> UUID.
    """
    top_level = [obj.element for obj in submission.objects if obj.element is not None]
    mapping = _symbol_mapping(top_level, make_uuid)
    if not mapping:
        return submission, {}
    copies: dict[etree._Element, etree._Element] = {}
    for element in top_level:
        _copy_and_rewrite(element, mapping, copies)
    remapped: dict[int, TopLevelObject] = {id(obj): _remap(obj, mapping, copies) for obj in submission.objects}
    documents = tuple(_remap_document(document, mapping) for document in submission.documents)
    return Submission(
        submission_sets=tuple(remapped[id(o)] for o in submission.submission_sets),
        entries=tuple(remapped[id(o)] for o in submission.entries),
        folders=tuple(remapped[id(o)] for o in submission.folders),
        associations=tuple(remapped[id(o)] for o in submission.associations),
        object_refs=submission.object_refs, documents=documents,
        objects=tuple(remapped[id(o)] for o in submission.objects)), mapping


def _symbol_mapping(elements: Iterable[etree._Element], make_uuid: Callable[[], str]) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for top in elements:
        if top.tag == _OBJECT_REF:
            continue
        for element in top.iter(*_IDENTIFIABLE):
            symbol = element.get("id")
            if symbol and not symbol.startswith(c.UUID_PREFIX) and symbol not in mapping:
                mapping[symbol] = make_uuid()
    return mapping


def _copy_and_rewrite(top: etree._Element, mapping: Mapping[str, str],
                      copies: dict[etree._Element, etree._Element]) -> None:
    """Deep-copy ``top``, rewrite references in the copy, and record original -> copy for every object in it."""
    copy = deepcopy(top)
    for original, copied in zip(top.iter(*_IDENTIFIABLE), copy.iter(*_IDENTIFIABLE)):
        copies[original] = copied
        for attribute in _REFERENCE_ATTRIBUTES:
            value = copied.get(attribute)
            if value is not None and value in mapping:
                copied.set(attribute, mapping[value])


def _remap(obj: TopLevelObject, mapping: Mapping[str, str], copies: Mapping) -> TopLevelObject:
    def ref(value: str | None) -> str | None:
        return mapping.get(value, value) if value is not None else None

    element = copies.get(obj.element, obj.element)
    if isinstance(obj, ObjectRef):
        return replace(obj, element=element)
    if isinstance(obj, Classification):
        return replace(obj, id=ref(obj.id), classified_object=ref(obj.classified_object), element=element)
    if isinstance(obj, ExternalIdentifier):
        return replace(obj, id=ref(obj.id), registry_object=ref(obj.registry_object), element=element)
    changes = dict(entry_uuid=ref(obj.entry_uuid), lid=ref(obj.lid), element=element,
                   classifications=tuple(_remap(cl, mapping, copies) for cl in obj.classifications),
                   external_identifiers=tuple(_remap(ei, mapping, copies) for ei in obj.external_identifiers))
    if isinstance(obj, Association):
        changes.update(source=ref(obj.source), target=ref(obj.target))
    return replace(obj, **changes)


def _remap_document(document: DocumentContent, mapping: Mapping[str, str]) -> DocumentContent:
    if document.id not in mapping:
        return document
    copy = deepcopy(document.element)
    copy.set("id", mapping[document.id])
    return DocumentContent(id=mapping[document.id], element=copy)
