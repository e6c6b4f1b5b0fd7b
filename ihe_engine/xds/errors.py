"""XDS error codes, the error that carries them, and the rs:RegistryResponse they end up in.

A request can be wrong in several ways at once, and IHE lets a registry report all of them in one
RegistryErrorList; so :class:`XdsError` carries a tuple of :class:`RegistryError` rather than a single code.
Only :func:`registry_response_element` turns them into XML.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from lxml import etree

from ..errors import TransactionError
from ..ns import RS, qn
from .constants import (RESPONSE_FAILURE, RESPONSE_PARTIAL_SUCCESS, RESPONSE_SUCCESS, SEVERITY_ERROR,
                        SEVERITY_WARNING)

__all__ = [
    "RegistryError", "XdsError", "RegistryResponse",
    "response_status", "registry_response", "registry_error_list_element", "registry_response_element",
    "ERROR_CODES",
    "XDS_MISSING_DOCUMENT", "XDS_MISSING_DOCUMENT_METADATA", "XDS_REGISTRY_METADATA_ERROR",
    "XDS_REPOSITORY_METADATA_ERROR", "XDS_UNKNOWN_PATIENT_ID", "XDS_PATIENT_ID_DOES_NOT_MATCH",
    "XDS_DUPLICATE_UNIQUE_ID_IN_REGISTRY", "XDS_REGISTRY_DUPLICATE_UNIQUE_ID_IN_MESSAGE",
    "XDS_REPOSITORY_DUPLICATE_UNIQUE_ID_IN_MESSAGE", "XDS_NON_IDENTICAL_HASH", "XDS_NON_IDENTICAL_SIZE",
    "XDS_REGISTRY_DEPRECATED_DOCUMENT_ERROR", "UNRESOLVED_REFERENCE_EXCEPTION", "XDS_EXTRA_METADATA_NOT_SAVED",
    "XDS_REGISTRY_NOT_AVAILABLE", "XDS_REGISTRY_BUSY", "XDS_REPOSITORY_BUSY", "XDS_REGISTRY_OUT_OF_RESOURCES",
    "XDS_REPOSITORY_OUT_OF_RESOURCES", "XDS_REGISTRY_ERROR", "XDS_REPOSITORY_ERROR",
    "XDS_UNKNOWN_STORED_QUERY", "XDS_STORED_QUERY_MISSING_PARAM", "XDS_STORED_QUERY_PARAM_NUMBER",
    "XDS_TOO_MANY_RESULTS", "XDS_RESULT_NOT_SINGLE_PATIENT", "XDS_DOCUMENT_UNIQUE_ID_ERROR",
    "XDS_UNKNOWN_REPOSITORY_ID", "XDS_MISSING_HOME_COMMUNITY_ID", "XDS_UNKNOWN_COMMUNITY",
    "XDS_UNAVAILABLE_COMMUNITY", "XDS_METADATA_UPDATE_ERROR", "XDS_METADATA_UPDATE_OPERATION_ERROR",
    "XDS_METADATA_VERSION_ERROR", "XDS_METADATA_IDENTIFIER_ERROR", "XDS_PATIENT_ID_RECONCILIATION_ERROR",
    "XDS_INVALID_REQUEST_EXCEPTION", "REFERENCES_EXIST_EXCEPTION", "XDS_UNREFERENCED_OBJECT_EXCEPTION",
]

# --- Error codes (A7) ---------------------------------------------------------------------------------------
XDS_MISSING_DOCUMENT = "XDSMissingDocument"
XDS_MISSING_DOCUMENT_METADATA = "XDSMissingDocumentMetadata"
XDS_REGISTRY_METADATA_ERROR = "XDSRegistryMetadataError"
XDS_REPOSITORY_METADATA_ERROR = "XDSRepositoryMetadataError"
XDS_UNKNOWN_PATIENT_ID = "XDSUnknownPatientId"
XDS_PATIENT_ID_DOES_NOT_MATCH = "XDSPatientIdDoesNotMatch"
XDS_DUPLICATE_UNIQUE_ID_IN_REGISTRY = "XDSDuplicateUniqueIdInRegistry"
XDS_REGISTRY_DUPLICATE_UNIQUE_ID_IN_MESSAGE = "XDSRegistryDuplicateUniqueIdInMessage"
XDS_REPOSITORY_DUPLICATE_UNIQUE_ID_IN_MESSAGE = "XDSRepositoryDuplicateUniqueIdInMessage"
XDS_NON_IDENTICAL_HASH = "XDSNonIdenticalHash"
XDS_NON_IDENTICAL_SIZE = "XDSNonIdenticalSize"
XDS_REGISTRY_DEPRECATED_DOCUMENT_ERROR = "XDSRegistryDeprecatedDocumentError"
UNRESOLVED_REFERENCE_EXCEPTION = "UnresolvedReferenceException"
XDS_EXTRA_METADATA_NOT_SAVED = "XDSExtraMetadataNotSaved"
XDS_REGISTRY_NOT_AVAILABLE = "XDSRegistryNotAvailable"
XDS_REGISTRY_BUSY = "XDSRegistryBusy"
XDS_REPOSITORY_BUSY = "XDSRepositoryBusy"
XDS_REGISTRY_OUT_OF_RESOURCES = "XDSRegistryOutOfResources"
XDS_REPOSITORY_OUT_OF_RESOURCES = "XDSRepositoryOutOfResources"
XDS_REGISTRY_ERROR = "XDSRegistryError"
XDS_REPOSITORY_ERROR = "XDSRepositoryError"
XDS_UNKNOWN_STORED_QUERY = "XDSUnknownStoredQuery"
XDS_STORED_QUERY_MISSING_PARAM = "XDSStoredQueryMissingParam"
XDS_STORED_QUERY_PARAM_NUMBER = "XDSStoredQueryParamNumber"
XDS_TOO_MANY_RESULTS = "XDSTooManyResults"
XDS_RESULT_NOT_SINGLE_PATIENT = "XDSResultNotSinglePatient"
XDS_DOCUMENT_UNIQUE_ID_ERROR = "XDSDocumentUniqueIdError"
XDS_UNKNOWN_REPOSITORY_ID = "XDSUnknownRepositoryId"
XDS_MISSING_HOME_COMMUNITY_ID = "XDSMissingHomeCommunityId"
XDS_UNKNOWN_COMMUNITY = "XDSUnknownCommunity"
XDS_UNAVAILABLE_COMMUNITY = "XDSUnavailableCommunity"
XDS_METADATA_UPDATE_ERROR = "XDSMetadataUpdateError"
XDS_METADATA_UPDATE_OPERATION_ERROR = "XDSMetadataUpdateOperationError"
XDS_METADATA_VERSION_ERROR = "XDSMetadataVersionError"
XDS_METADATA_IDENTIFIER_ERROR = "XDSMetadataIdentifierError"
XDS_PATIENT_ID_RECONCILIATION_ERROR = "XDSPatientIDReconciliationError"
XDS_INVALID_REQUEST_EXCEPTION = "XDSInvalidRequestException"
REFERENCES_EXIST_EXCEPTION = "ReferencesExistException"
XDS_UNREFERENCED_OBJECT_EXCEPTION = "XDSUnreferencedObjectException"

ERROR_CODES = frozenset(value for name, value in dict(globals()).items()
                        if name.isupper() and name.startswith(("XDS_", "UNRESOLVED_", "REFERENCES_")))
"""Every error code of IHE-CONFORMANCE.md A7, for checks that a code is a real one."""


@dataclass(frozen=True, kw_only=True)
class RegistryError:
    """One rs:RegistryError: what went wrong (code), in words naming the object (code_context), and where."""

    error_code: str
    code_context: str
    location: str | None = None
    severity: str = SEVERITY_ERROR

    @property
    def is_error(self) -> bool:
        """Warnings (XDSExtraMetadataNotSaved...) do not make a request fail."""
        return self.severity != SEVERITY_WARNING


class XdsError(TransactionError):
    """A refused XDS request; carries one or more RegistryErrors for the RegistryErrorList.

    ``code``/``message``/``location``/``severity`` mirror the first error, so generic encoders still work.
    """

    default_code = XDS_REGISTRY_ERROR

    def __init__(self, error_code: str, code_context: str, *, location: str | None = None,
                 severity: str = SEVERITY_ERROR, more: Iterable[RegistryError] = ()) -> None:
        first = RegistryError(error_code=error_code, code_context=code_context, location=location,
                              severity=severity)
        super().__init__(code_context, code=error_code, location=location, severity=severity)
        self.errors: tuple[RegistryError, ...] = (first, *more)

    @classmethod
    def from_errors(cls, errors: Sequence[RegistryError]) -> XdsError:
        """One exception carrying every error of a validation pass (which must not be empty)."""
        if not errors:
            raise ValueError("XdsError.from_errors needs at least one RegistryError")
        first, *rest = errors
        return cls(first.error_code, first.code_context, location=first.location, severity=first.severity,
                   more=rest)

    @property
    def error_code(self) -> str:
        return self.errors[0].error_code

    @property
    def code_context(self) -> str:
        return self.errors[0].code_context


@dataclass(frozen=True, kw_only=True)
class RegistryResponse:
    """The content of an rs:RegistryResponse, before it becomes XML."""

    status: str
    errors: tuple[RegistryError, ...] = ()
    request_id: str | None = None


def response_status(errors: Iterable[RegistryError], *, partial_allowed: bool = False,
                    any_success: bool = False) -> str:
    """Success when no error-severity entry; otherwise Failure, or PartialSuccess when the transaction allows it
    (ITI-18/43, never ITI-41/42) and part of the request succeeded."""
    if not any(error.is_error for error in errors):
        return RESPONSE_SUCCESS
    return RESPONSE_PARTIAL_SUCCESS if partial_allowed and any_success else RESPONSE_FAILURE


def registry_response(errors: Iterable[RegistryError] = (), *, partial_allowed: bool = False,
                      any_success: bool = False, request_id: str | None = None) -> RegistryResponse:
    """The response for a request that produced these errors (warnings alone still give Success)."""
    errors = tuple(errors)
    status = response_status(errors, partial_allowed=partial_allowed, any_success=any_success)
    return RegistryResponse(status=status, errors=errors, request_id=request_id)


def registry_error_list_element(errors: Sequence[RegistryError]) -> etree._Element:
    """rs:RegistryErrorList with highestSeverity, one rs:RegistryError per entry, in the given order."""
    highest = SEVERITY_ERROR if any(error.is_error for error in errors) else SEVERITY_WARNING
    element = etree.Element(qn(RS, "RegistryErrorList"), highestSeverity=highest, nsmap={"rs": RS})
    for error in errors:
        child = etree.SubElement(element, qn(RS, "RegistryError"), errorCode=error.error_code,
                                 codeContext=error.code_context, severity=error.severity)
        if error.location:
            child.set("location", error.location)
    return element


def registry_response_element(response: RegistryResponse) -> etree._Element:
    """rs:RegistryResponse; the error list is present only when there are errors or warnings."""
    element = etree.Element(qn(RS, "RegistryResponse"), status=response.status, nsmap={"rs": RS})
    if response.request_id:
        element.set("requestId", response.request_id)
    if response.errors:
        element.append(registry_error_list_element(response.errors))
    return element
