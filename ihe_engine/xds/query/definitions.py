"""The stored queries as data: which parameters each one takes, which are required, which exclude each other.

The 14 ITI-18 queries and the 2 ITI-51 ones (ITI TF-2 3.18.4.1.2.3.7, 3.51.4.1.2.3), with the Metadata Update
additions ($MetadataLevel, logical ids, documentAvailability, $XDSAssociationStatus). Parsing
(:mod:`.params`) checks a request against its :class:`QueryDefinition`; the engine (:mod:`.engine`) reads the
typed values. Keeping the rules in one table means a parameter is spelled, typed and defaulted once.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from ..constants import (DE_STABLE, STATUS_APPROVED, SQ_FIND_DOCUMENTS, SQ_FIND_DOCUMENTS_BY_REFERENCE_ID,
                         SQ_FIND_DOCUMENTS_FOR_MULTIPLE_PATIENTS, SQ_FIND_FOLDERS,
                         SQ_FIND_FOLDERS_FOR_MULTIPLE_PATIENTS, SQ_FIND_SUBMISSION_SETS, SQ_GET_ALL,
                         SQ_GET_ASSOCIATIONS, SQ_GET_DOCUMENTS, SQ_GET_DOCUMENTS_AND_ASSOCIATIONS, SQ_GET_FOLDERS,
                         SQ_GET_FOLDERS_FOR_DOCUMENT, SQ_GET_FOLDER_AND_CONTENTS, SQ_GET_RELATED_DOCUMENTS,
                         SQ_GET_SUBMISSION_SETS, SQ_GET_SUBMISSION_SET_AND_CONTENTS, STORED_QUERIES)

__all__ = ["Kind", "ParamSpec", "QueryDefinition", "QUERY_DEFINITIONS", "definition_for",
           "ITI18", "ITI51", "LEAF_CLASS", "OBJECT_REF"]

ITI18 = "ITI-18"
ITI51 = "ITI-51"
LEAF_CLASS = "LeafClass"
OBJECT_REF = "ObjectRef"


class Kind(enum.Enum):
    """How a parameter's value is written and what it becomes once parsed."""

    STRING = "a quoted string"  # -> str
    STRINGS = "a list of quoted strings"  # -> tuple[str, ...]
    CODES = "a list of 'code^^scheme' values"  # -> tuple[tuple[Code, ...], ...] (AND of ORs)
    TIME = "an unquoted DTM time"  # -> str, the 14-digit dtm_key
    NUMBER = "an unquoted integer"  # -> int


@dataclass(frozen=True)
class ParamSpec:
    """One parameter: its type; ``and_or`` lets the Slot repeat (repetitions are ANDed, values in one Slot ORed)."""

    name: str
    kind: Kind
    and_or: bool = False
    like: bool = False  # SQL LIKE pattern with % and _ wildcards (author person)

    @property
    def multiple(self) -> bool:
        return self.kind in (Kind.STRINGS, Kind.CODES)


@dataclass(frozen=True)
class QueryDefinition:
    """One stored query: its parameters and the rules on them.

    ``exactly_one``: groups of which exactly one member must be given (the xor pairs: none is a missing parameter,
    two are a parameter-number error). ``at_least_one``: groups of which one or more must be given.
    ``defaults``: values used when a parameter is absent (already parsed).
    """

    name: str
    uuid: str
    transaction: str
    params: Mapping[str, ParamSpec]
    required: frozenset[str] = frozenset()
    exactly_one: tuple[tuple[str, ...], ...] = ()
    at_least_one: tuple[tuple[str, ...], ...] = ()
    defaults: Mapping[str, object] = field(default_factory=dict)


def _spec_table(*specs: ParamSpec) -> Mapping[str, ParamSpec]:
    return MappingProxyType({spec.name: spec for spec in specs})


_S, _L, _C, _T, _N = Kind.STRING, Kind.STRINGS, Kind.CODES, Kind.TIME, Kind.NUMBER

PARAMETERS = _spec_table(
    # DocumentEntry
    ParamSpec("$XDSDocumentEntryPatientId", _S),
    ParamSpec("$XDSDocumentEntryClassCode", _C),
    ParamSpec("$XDSDocumentEntryTypeCode", _C),
    ParamSpec("$XDSDocumentEntryPracticeSettingCode", _C),
    ParamSpec("$XDSDocumentEntryHealthcareFacilityTypeCode", _C),
    ParamSpec("$XDSDocumentEntryFormatCode", _C),
    ParamSpec("$XDSDocumentEntryEventCodeList", _C, and_or=True),
    ParamSpec("$XDSDocumentEntryConfidentialityCode", _C, and_or=True),
    ParamSpec("$XDSDocumentEntryCreationTimeFrom", _T),
    ParamSpec("$XDSDocumentEntryCreationTimeTo", _T),
    ParamSpec("$XDSDocumentEntryServiceStartTimeFrom", _T),
    ParamSpec("$XDSDocumentEntryServiceStartTimeTo", _T),
    ParamSpec("$XDSDocumentEntryServiceStopTimeFrom", _T),
    ParamSpec("$XDSDocumentEntryServiceStopTimeTo", _T),
    ParamSpec("$XDSDocumentEntryAuthorPerson", _L, like=True),
    ParamSpec("$XDSDocumentEntryStatus", _L),
    ParamSpec("$XDSDocumentEntryType", _L),
    ParamSpec("$XDSDocumentEntryReferenceIdList", _L),
    ParamSpec("$XDSDocumentEntryDocumentAvailability", _L),
    ParamSpec("$XDSDocumentEntryEntryUUID", _L),
    ParamSpec("$XDSDocumentEntryUniqueId", _L),
    ParamSpec("$XDSDocumentEntryLogicalID", _L),
    # SubmissionSet
    ParamSpec("$XDSSubmissionSetPatientId", _S),
    ParamSpec("$XDSSubmissionSetSourceId", _L),
    ParamSpec("$XDSSubmissionSetSubmissionTimeFrom", _T),
    ParamSpec("$XDSSubmissionSetSubmissionTimeTo", _T),
    ParamSpec("$XDSSubmissionSetAuthorPerson", _S, like=True),
    ParamSpec("$XDSSubmissionSetContentType", _C),
    ParamSpec("$XDSSubmissionSetStatus", _L),
    ParamSpec("$XDSSubmissionSetEntryUUID", _S),
    ParamSpec("$XDSSubmissionSetUniqueId", _S),
    # Folder
    ParamSpec("$XDSFolderPatientId", _S),
    ParamSpec("$XDSFolderLastUpdateTimeFrom", _T),
    ParamSpec("$XDSFolderLastUpdateTimeTo", _T),
    ParamSpec("$XDSFolderCodeList", _C, and_or=True),
    ParamSpec("$XDSFolderStatus", _L),
    ParamSpec("$XDSFolderEntryUUID", _L),
    ParamSpec("$XDSFolderUniqueId", _L),
    ParamSpec("$XDSFolderLogicalID", _L),
    # others
    ParamSpec("$patientId", _S),
    ParamSpec("$uuid", _L),
    ParamSpec("$AssociationTypes", _L),
    ParamSpec("$XDSAssociationStatus", _L),
    ParamSpec("$MetadataLevel", _N),
    ParamSpec("$homeCommunityId", _S),
)

# ITI-51 takes several patients where ITI-18 takes one.
_MULTI_PATIENT = {name: ParamSpec(name, _L) for name in ("$XDSDocumentEntryPatientId", "$XDSFolderPatientId")}

_DE_FILTERS = (
    "$XDSDocumentEntryClassCode", "$XDSDocumentEntryTypeCode", "$XDSDocumentEntryPracticeSettingCode",
    "$XDSDocumentEntryHealthcareFacilityTypeCode", "$XDSDocumentEntryFormatCode", "$XDSDocumentEntryEventCodeList",
    "$XDSDocumentEntryConfidentialityCode", "$XDSDocumentEntryCreationTimeFrom", "$XDSDocumentEntryCreationTimeTo",
    "$XDSDocumentEntryServiceStartTimeFrom", "$XDSDocumentEntryServiceStartTimeTo",
    "$XDSDocumentEntryServiceStopTimeFrom", "$XDSDocumentEntryServiceStopTimeTo", "$XDSDocumentEntryAuthorPerson",
    "$XDSDocumentEntryType", "$XDSDocumentEntryDocumentAvailability", "$MetadataLevel",
)
_CONTENT_FILTERS = ("$XDSDocumentEntryFormatCode", "$XDSDocumentEntryConfidentialityCode", "$XDSDocumentEntryType")
_COMMON = ("$MetadataLevel", "$homeCommunityId")
_WITH_ASSOCIATIONS = (*_COMMON, "$XDSAssociationStatus")

_STABLE_ONLY = MappingProxyType({"$XDSDocumentEntryType": (DE_STABLE,)})
_APPROVED_ASSOCIATIONS = {"$XDSAssociationStatus": (STATUS_APPROVED,)}
_DE_IDS = ("$XDSDocumentEntryEntryUUID", "$XDSDocumentEntryUniqueId")
_FOLDER_IDS = ("$XDSFolderEntryUUID", "$XDSFolderUniqueId")
_SS_IDS = ("$XDSSubmissionSetEntryUUID", "$XDSSubmissionSetUniqueId")


def _define(uuid: str, *, required: Iterable[str] = (), optional: Iterable[str] = (),
            exactly_one: tuple[tuple[str, ...], ...] = (), at_least_one: tuple[tuple[str, ...], ...] = (),
            defaults: Mapping[str, object] | None = None, transaction: str = ITI18,
            overrides: Mapping[str, ParamSpec] | None = None) -> QueryDefinition:
    required = frozenset(required)
    names = {*required, *optional, *(name for group in exactly_one + at_least_one for name in group)}
    table = {**PARAMETERS, **(overrides or {})}
    return QueryDefinition(
        name=STORED_QUERIES[uuid], uuid=uuid, transaction=transaction,
        params=MappingProxyType({name: table[name] for name in sorted(names)}), required=required,
        exactly_one=exactly_one, at_least_one=at_least_one, defaults=MappingProxyType(dict(defaults or {})))


_FIND_DOCUMENTS_REQUIRED = ("$XDSDocumentEntryPatientId", "$XDSDocumentEntryStatus")

QUERY_DEFINITIONS: Mapping[str, QueryDefinition] = MappingProxyType({definition.uuid: definition for definition in (
    _define(SQ_FIND_DOCUMENTS, required=_FIND_DOCUMENTS_REQUIRED, optional=_DE_FILTERS, defaults=_STABLE_ONLY),
    _define(SQ_FIND_DOCUMENTS_BY_REFERENCE_ID,
            required=(*_FIND_DOCUMENTS_REQUIRED, "$XDSDocumentEntryReferenceIdList"), optional=_DE_FILTERS,
            defaults=_STABLE_ONLY),
    _define(SQ_FIND_SUBMISSION_SETS, required=("$XDSSubmissionSetPatientId", "$XDSSubmissionSetStatus"),
            optional=("$XDSSubmissionSetSourceId", "$XDSSubmissionSetSubmissionTimeFrom",
                      "$XDSSubmissionSetSubmissionTimeTo", "$XDSSubmissionSetAuthorPerson",
                      "$XDSSubmissionSetContentType", "$MetadataLevel")),
    _define(SQ_FIND_FOLDERS, required=("$XDSFolderPatientId", "$XDSFolderStatus"),
            optional=("$XDSFolderLastUpdateTimeFrom", "$XDSFolderLastUpdateTimeTo", "$XDSFolderCodeList",
                      "$MetadataLevel")),
    _define(SQ_GET_ALL,
            required=("$patientId", "$XDSDocumentEntryStatus", "$XDSSubmissionSetStatus", "$XDSFolderStatus"),
            optional=(*_CONTENT_FILTERS, *_WITH_ASSOCIATIONS),
            defaults={**_STABLE_ONLY, **_APPROVED_ASSOCIATIONS}),
    _define(SQ_GET_DOCUMENTS, optional=_COMMON, exactly_one=((*_DE_IDS, "$XDSDocumentEntryLogicalID"),)),
    _define(SQ_GET_FOLDERS, optional=_COMMON, exactly_one=((*_FOLDER_IDS, "$XDSFolderLogicalID"),)),
    _define(SQ_GET_ASSOCIATIONS, required=("$uuid",), optional=_WITH_ASSOCIATIONS,
            defaults=_APPROVED_ASSOCIATIONS),
    _define(SQ_GET_DOCUMENTS_AND_ASSOCIATIONS, optional=_WITH_ASSOCIATIONS, exactly_one=(_DE_IDS,),
            defaults=_APPROVED_ASSOCIATIONS),
    _define(SQ_GET_SUBMISSION_SETS, required=("$uuid",), optional=_WITH_ASSOCIATIONS,
            defaults=_APPROVED_ASSOCIATIONS),
    _define(SQ_GET_SUBMISSION_SET_AND_CONTENTS, optional=(*_CONTENT_FILTERS, *_WITH_ASSOCIATIONS),
            exactly_one=(_SS_IDS,), defaults={**_STABLE_ONLY, **_APPROVED_ASSOCIATIONS}),
    _define(SQ_GET_FOLDER_AND_CONTENTS, optional=(*_CONTENT_FILTERS, *_WITH_ASSOCIATIONS),
            exactly_one=((_FOLDER_IDS[0], _FOLDER_IDS[1]),), defaults={**_STABLE_ONLY, **_APPROVED_ASSOCIATIONS},
            overrides={name: ParamSpec(name, _S) for name in _FOLDER_IDS}),
    _define(SQ_GET_FOLDERS_FOR_DOCUMENT, optional=_WITH_ASSOCIATIONS, exactly_one=(_DE_IDS,),
            defaults=_APPROVED_ASSOCIATIONS, overrides={name: ParamSpec(name, _S) for name in _DE_IDS}),
    _define(SQ_GET_RELATED_DOCUMENTS, required=("$AssociationTypes",),
            optional=("$XDSDocumentEntryType", *_WITH_ASSOCIATIONS), exactly_one=(_DE_IDS,),
            defaults={**_STABLE_ONLY, **_APPROVED_ASSOCIATIONS},
            overrides={name: ParamSpec(name, _S) for name in _DE_IDS}),
    _define(SQ_FIND_DOCUMENTS_FOR_MULTIPLE_PATIENTS, transaction=ITI51, required=("$XDSDocumentEntryStatus",),
            optional=("$XDSDocumentEntryPatientId", *_DE_FILTERS), defaults=_STABLE_ONLY, overrides=_MULTI_PATIENT,
            at_least_one=(("$XDSDocumentEntryClassCode", "$XDSDocumentEntryEventCodeList",
                           "$XDSDocumentEntryHealthcareFacilityTypeCode"),)),
    _define(SQ_FIND_FOLDERS_FOR_MULTIPLE_PATIENTS, transaction=ITI51, required=("$XDSFolderStatus",),
            optional=("$XDSFolderPatientId", "$XDSFolderLastUpdateTimeFrom", "$XDSFolderLastUpdateTimeTo",
                      "$XDSFolderCodeList", "$MetadataLevel"), overrides=_MULTI_PATIENT),
)})
"""Stored query UUID -> its definition."""


def definition_for(query_id: str) -> QueryDefinition | None:
    """The definition of a stored query id (``urn:uuid:...``, case-insensitive), None when unknown."""
    return QUERY_DEFINITIONS.get(query_id.strip().lower())
