"""XDS.b identifiers: every UUID and URN the metadata model is recognised by.

Named once here so that parsing, validation, storage and queries compare against the same strings
(IHE ITI TF-3 4.2.5 / 4.2.2, MU and RMD supplements; facts in IHE-CONFORMANCE.md A2-A6).
"""

from __future__ import annotations

from types import MappingProxyType

__all__ = [
    "UUID_PREFIX",
    # DocumentEntry
    "DE_STABLE", "DE_ON_DEMAND", "DE_OBJECT_TYPES",
    "DE_AUTHOR", "DE_CLASS_CODE", "DE_CONFIDENTIALITY_CODE", "DE_EVENT_CODE_LIST", "DE_FORMAT_CODE",
    "DE_HEALTHCARE_FACILITY_TYPE_CODE", "DE_PRACTICE_SETTING_CODE", "DE_TYPE_CODE", "DE_PATIENT_ID",
    "DE_UNIQUE_ID", "DE_LIMITED_METADATA",
    # SubmissionSet
    "SS_CLASSIFICATION_NODE", "SS_AUTHOR", "SS_CONTENT_TYPE_CODE", "SS_PATIENT_ID", "SS_SOURCE_ID",
    "SS_UNIQUE_ID", "SS_LIMITED_METADATA",
    # Folder
    "FOLDER_CLASSIFICATION_NODE", "FOLDER_CODE_LIST", "FOLDER_PATIENT_ID", "FOLDER_UNIQUE_ID",
    "FOLDER_LIMITED_METADATA",
    # Association
    "ASSOCIATION_DOCUMENTATION",
    "HAS_MEMBER", "RPLC", "XFRM", "APND", "XFRM_RPLC", "SIGNS", "IS_SNAPSHOT_OF", "UPDATE_AVAILABILITY_STATUS",
    "SUBMIT_ASSOCIATION", "ASSOCIATION_TYPES", "DOCUMENTATION_ASSOCIATION_TYPES", "normalize_association_type",
    "SUBMISSION_SET_STATUS_ORIGINAL", "SUBMISSION_SET_STATUS_REFERENCE",
    # ebRIM object types
    "OBJECT_TYPE_REGISTRY_PACKAGE", "OBJECT_TYPE_ASSOCIATION", "OBJECT_TYPE_CLASSIFICATION",
    "OBJECT_TYPE_EXTERNAL_IDENTIFIER",
    # statuses
    "STATUS_APPROVED", "STATUS_DEPRECATED", "STATUS_SUBMITTED", "STATUS_ASIP_DELETED", "STATUS_ASIP_ARCHIVED",
    "RESPONSE_SUCCESS", "RESPONSE_FAILURE", "RESPONSE_PARTIAL_SUCCESS",
    "SEVERITY_ERROR", "SEVERITY_WARNING",
    "AVAILABILITY_ONLINE", "AVAILABILITY_OFFLINE",
    # slots
    "SLOT_CREATION_TIME", "SLOT_HASH", "SLOT_SIZE", "SLOT_LANGUAGE_CODE", "SLOT_LEGAL_AUTHENTICATOR",
    "SLOT_SERVICE_START_TIME", "SLOT_SERVICE_STOP_TIME", "SLOT_SOURCE_PATIENT_ID", "SLOT_SOURCE_PATIENT_INFO",
    "SLOT_REPOSITORY_UNIQUE_ID", "SLOT_URI", "SLOT_DOCUMENT_AVAILABILITY", "SLOT_REFERENCE_ID_LIST",
    "SLOT_SUBMISSION_TIME", "SLOT_INTENDED_RECIPIENT", "SLOT_LAST_UPDATE_TIME", "SLOT_CODING_SCHEME",
    "SLOT_AUTHOR_PERSON", "SLOT_AUTHOR_INSTITUTION", "SLOT_AUTHOR_ROLE", "SLOT_AUTHOR_SPECIALTY",
    "SLOT_AUTHOR_TELECOMMUNICATION", "SLOT_SUBMISSION_SET_STATUS", "SLOT_PREVIOUS_VERSION", "SLOT_ORIGINAL_STATUS",
    "SLOT_NEW_STATUS", "SLOT_ASSOCIATION_PROPAGATION",
    "EMPTY_SHA1",
    # coded attributes
    "CODED_ATTRIBUTES",
    # stored queries
    "SQ_FIND_DOCUMENTS", "SQ_FIND_SUBMISSION_SETS", "SQ_FIND_FOLDERS", "SQ_GET_ALL", "SQ_GET_DOCUMENTS",
    "SQ_GET_FOLDERS", "SQ_GET_ASSOCIATIONS", "SQ_GET_DOCUMENTS_AND_ASSOCIATIONS", "SQ_GET_SUBMISSION_SETS",
    "SQ_GET_SUBMISSION_SET_AND_CONTENTS", "SQ_GET_FOLDER_AND_CONTENTS", "SQ_GET_FOLDERS_FOR_DOCUMENT",
    "SQ_GET_RELATED_DOCUMENTS", "SQ_FIND_DOCUMENTS_BY_REFERENCE_ID", "SQ_FIND_DOCUMENTS_FOR_MULTIPLE_PATIENTS",
    "SQ_FIND_FOLDERS_FOR_MULTIPLE_PATIENTS", "STORED_QUERIES",
]

UUID_PREFIX = "urn:uuid:"

# --- DocumentEntry (A2) -------------------------------------------------------------------------------------
DE_STABLE = "urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1"
DE_ON_DEMAND = "urn:uuid:34268e47-fdf5-41a6-ba33-82133c465248"
DE_OBJECT_TYPES = frozenset({DE_STABLE, DE_ON_DEMAND})
DE_AUTHOR = "urn:uuid:93606bcf-9494-43ec-9b4e-a7748d1a838d"
DE_CLASS_CODE = "urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a"
DE_CONFIDENTIALITY_CODE = "urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f"
DE_EVENT_CODE_LIST = "urn:uuid:2c6b8cb7-8b2a-4051-b291-b1ae6a575ef4"
DE_FORMAT_CODE = "urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d"
DE_HEALTHCARE_FACILITY_TYPE_CODE = "urn:uuid:f33fb8ac-18af-42cc-ae0e-ed0b0bdb91e1"
DE_PRACTICE_SETTING_CODE = "urn:uuid:cccf5598-8b07-4b77-a05e-ae952c785ead"
DE_TYPE_CODE = "urn:uuid:f0306f51-975f-434e-a61c-c59651d33983"
DE_PATIENT_ID = "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427"
DE_UNIQUE_ID = "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab"
DE_LIMITED_METADATA = "urn:uuid:ab9b591b-83ab-4d03-8f5d-f93b1fb92e85"

# --- SubmissionSet ------------------------------------------------------------------------------------------
SS_CLASSIFICATION_NODE = "urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd"
SS_AUTHOR = "urn:uuid:a7058bb9-b4e4-4307-ba5b-e3f0ab85e12d"
SS_CONTENT_TYPE_CODE = "urn:uuid:aa543740-bdda-424e-8c96-df4873be8500"
SS_PATIENT_ID = "urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446"
SS_SOURCE_ID = "urn:uuid:554ac39e-e3fe-47fe-b233-965d2a147832"
SS_UNIQUE_ID = "urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8"
SS_LIMITED_METADATA = "urn:uuid:5003a9db-8d8d-49e6-bf0c-990e34ac7707"

# --- Folder -------------------------------------------------------------------------------------------------
FOLDER_CLASSIFICATION_NODE = "urn:uuid:d9d542f3-6cc4-48b6-8870-ea235fbc94c2"
FOLDER_CODE_LIST = "urn:uuid:1ba97051-7806-41a8-a48b-8fce7af683c5"
FOLDER_PATIENT_ID = "urn:uuid:f64ffdf0-4b97-4e06-b79f-a52b38ec2f8a"
FOLDER_UNIQUE_ID = "urn:uuid:75df8f67-9973-4fbe-a900-df66cefecc5a"
FOLDER_LIMITED_METADATA = "urn:uuid:2c144a76-29a9-4b7c-af54-b25409fe7d03"

# --- Associations (A3) --------------------------------------------------------------------------------------
ASSOCIATION_DOCUMENTATION = "urn:uuid:abd807a3-4432-4053-87b4-fd82c643d1f3"
HAS_MEMBER = "urn:oasis:names:tc:ebxml-regrep:AssociationType:HasMember"
RPLC = "urn:ihe:iti:2007:AssociationType:RPLC"
XFRM = "urn:ihe:iti:2007:AssociationType:XFRM"
APND = "urn:ihe:iti:2007:AssociationType:APND"
XFRM_RPLC = "urn:ihe:iti:2007:AssociationType:XFRM_RPLC"
SIGNS = "urn:ihe:iti:2007:AssociationType:signs"
IS_SNAPSHOT_OF = "urn:ihe:iti:2010:AssociationType:IsSnapshotOf"
UPDATE_AVAILABILITY_STATUS = "urn:ihe:iti:2010:AssociationType:UpdateAvailabilityStatus"
SUBMIT_ASSOCIATION = "urn:ihe:iti:2010:AssociationType:SubmitAssociation"
ASSOCIATION_TYPES = frozenset({HAS_MEMBER, RPLC, XFRM, APND, XFRM_RPLC, SIGNS, IS_SNAPSHOT_OF,
                               UPDATE_AVAILABILITY_STATUS, SUBMIT_ASSOCIATION})
DOCUMENTATION_ASSOCIATION_TYPES = frozenset({RPLC, XFRM, APND, XFRM_RPLC})
SUBMISSION_SET_STATUS_ORIGINAL = "Original"
SUBMISSION_SET_STATUS_REFERENCE = "Reference"

# ebRIM 2.1 senders (and the committee examples) write the bare last segment: "HasMember", "RPLC".
_SHORT_ASSOCIATION_TYPES = MappingProxyType({urn.rsplit(":", 1)[1]: urn for urn in ASSOCIATION_TYPES})


def normalize_association_type(value: str) -> str:
    """The full URN for a bare association type name ("HasMember" -> the ebRIM URN); anything else unchanged."""
    return _SHORT_ASSOCIATION_TYPES.get(value, value)


# --- ebRIM objectType values (optional on submission, informative only) --------------------------------------
OBJECT_TYPE_REGISTRY_PACKAGE = "urn:oasis:names:tc:ebxml-regrep:ObjectType:RegistryObject:RegistryPackage"
OBJECT_TYPE_ASSOCIATION = "urn:oasis:names:tc:ebxml-regrep:ObjectType:RegistryObject:Association"
OBJECT_TYPE_CLASSIFICATION = "urn:oasis:names:tc:ebxml-regrep:ObjectType:RegistryObject:Classification"
OBJECT_TYPE_EXTERNAL_IDENTIFIER = "urn:oasis:names:tc:ebxml-regrep:ObjectType:RegistryObject:ExternalIdentifier"

# --- Statuses (A4) ------------------------------------------------------------------------------------------
STATUS_APPROVED = "urn:oasis:names:tc:ebxml-regrep:StatusType:Approved"
STATUS_DEPRECATED = "urn:oasis:names:tc:ebxml-regrep:StatusType:Deprecated"
STATUS_SUBMITTED = "urn:oasis:names:tc:ebxml-regrep:StatusType:Submitted"
STATUS_ASIP_DELETED = "urn:asip:ci-sis:2010:StatusType:Deleted"  # French CI-SIS extension
STATUS_ASIP_ARCHIVED = "urn:asip:ci-sis:2010:StatusType:Archived"  # French CI-SIS extension
RESPONSE_SUCCESS = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success"
RESPONSE_FAILURE = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Failure"
RESPONSE_PARTIAL_SUCCESS = "urn:ihe:iti:2007:ResponseStatusType:PartialSuccess"
SEVERITY_ERROR = "urn:oasis:names:tc:ebxml-regrep:ErrorSeverityType:Error"
SEVERITY_WARNING = "urn:oasis:names:tc:ebxml-regrep:ErrorSeverityType:Warning"
AVAILABILITY_ONLINE = "urn:ihe:iti:2010:DocumentAvailability:Online"
AVAILABILITY_OFFLINE = "urn:ihe:iti:2010:DocumentAvailability:Offline"

# --- Slot names (A5) ----------------------------------------------------------------------------------------
SLOT_CREATION_TIME = "creationTime"
SLOT_HASH = "hash"
SLOT_SIZE = "size"
SLOT_LANGUAGE_CODE = "languageCode"
SLOT_LEGAL_AUTHENTICATOR = "legalAuthenticator"
SLOT_SERVICE_START_TIME = "serviceStartTime"
SLOT_SERVICE_STOP_TIME = "serviceStopTime"
SLOT_SOURCE_PATIENT_ID = "sourcePatientId"
SLOT_SOURCE_PATIENT_INFO = "sourcePatientInfo"
SLOT_REPOSITORY_UNIQUE_ID = "repositoryUniqueId"
SLOT_URI = "URI"
SLOT_DOCUMENT_AVAILABILITY = "documentAvailability"
SLOT_REFERENCE_ID_LIST = "urn:ihe:iti:xds:2013:referenceIdList"
SLOT_SUBMISSION_TIME = "submissionTime"
SLOT_INTENDED_RECIPIENT = "intendedRecipient"
SLOT_LAST_UPDATE_TIME = "lastUpdateTime"
SLOT_CODING_SCHEME = "codingScheme"
SLOT_AUTHOR_PERSON = "authorPerson"
SLOT_AUTHOR_INSTITUTION = "authorInstitution"
SLOT_AUTHOR_ROLE = "authorRole"
SLOT_AUTHOR_SPECIALTY = "authorSpecialty"
SLOT_AUTHOR_TELECOMMUNICATION = "authorTelecommunication"
SLOT_SUBMISSION_SET_STATUS = "SubmissionSetStatus"
SLOT_PREVIOUS_VERSION = "PreviousVersion"
SLOT_ORIGINAL_STATUS = "OriginalStatus"
SLOT_NEW_STATUS = "NewStatus"
SLOT_ASSOCIATION_PROPAGATION = "AssociationPropagation"

EMPTY_SHA1 = "da39a3ee5e6b4b0d3255bfef95601890afd80709"  # SHA-1 of no bytes: the delayed-assembly marker

# classificationScheme -> the attribute name IHE (and the NIST codes.xml CodeType@name) uses for it.
CODED_ATTRIBUTES = MappingProxyType({
    DE_CLASS_CODE: "classCode",
    DE_CONFIDENTIALITY_CODE: "confidentialityCode",
    DE_EVENT_CODE_LIST: "eventCodeList",
    DE_FORMAT_CODE: "formatCode",
    DE_HEALTHCARE_FACILITY_TYPE_CODE: "healthcareFacilityTypeCode",
    DE_PRACTICE_SETTING_CODE: "practiceSettingCode",
    DE_TYPE_CODE: "typeCode",
    SS_CONTENT_TYPE_CODE: "contentTypeCode",
    FOLDER_CODE_LIST: "folderCodeList",
    ASSOCIATION_DOCUMENTATION: "associationDocumentation",
})

# --- Stored queries (A6) ------------------------------------------------------------------------------------
SQ_FIND_DOCUMENTS = "urn:uuid:14d4debf-8f97-4251-9a74-a90016b0af0d"
SQ_FIND_SUBMISSION_SETS = "urn:uuid:f26abbcb-ac74-4422-8a30-edb644bbc1a9"
SQ_FIND_FOLDERS = "urn:uuid:958f3006-baad-4929-a4de-ff1114824431"
SQ_GET_ALL = "urn:uuid:10b545ea-725c-446d-9b95-8aeb444eddf3"
SQ_GET_DOCUMENTS = "urn:uuid:5c4f972b-d56b-40ac-a5fc-c8ca9b40b9d4"
SQ_GET_FOLDERS = "urn:uuid:5737b14c-8a1a-4539-b659-e03a34a5e1e4"
SQ_GET_ASSOCIATIONS = "urn:uuid:a7ae438b-4bc2-4642-93e9-be891f7bb155"
SQ_GET_DOCUMENTS_AND_ASSOCIATIONS = "urn:uuid:bab9529a-4a10-40b3-a01f-f68a615d247a"
SQ_GET_SUBMISSION_SETS = "urn:uuid:51224314-5390-4169-9b91-b1980040715a"
SQ_GET_SUBMISSION_SET_AND_CONTENTS = "urn:uuid:e8e3cb2c-e39c-46b9-99e4-c12f57260b83"
SQ_GET_FOLDER_AND_CONTENTS = "urn:uuid:b909a503-523d-4517-8acf-8e5834dfc4c7"
SQ_GET_FOLDERS_FOR_DOCUMENT = "urn:uuid:10cae35a-c7f9-4cf5-b61e-fc3278ffb578"
SQ_GET_RELATED_DOCUMENTS = "urn:uuid:d90e5407-b356-4d91-a89f-873917b4b0e6"
SQ_FIND_DOCUMENTS_BY_REFERENCE_ID = "urn:uuid:12941a89-e02e-4be5-967c-ce4bfc8fe492"
SQ_FIND_DOCUMENTS_FOR_MULTIPLE_PATIENTS = "urn:uuid:3d1bdb10-39a2-11de-89c2-2f44d94eaa9f"
SQ_FIND_FOLDERS_FOR_MULTIPLE_PATIENTS = "urn:uuid:50d3f5ac-39a2-11de-a1ca-b366239e58df"

STORED_QUERIES = MappingProxyType({
    SQ_FIND_DOCUMENTS: "FindDocuments",
    SQ_FIND_SUBMISSION_SETS: "FindSubmissionSets",
    SQ_FIND_FOLDERS: "FindFolders",
    SQ_GET_ALL: "GetAll",
    SQ_GET_DOCUMENTS: "GetDocuments",
    SQ_GET_FOLDERS: "GetFolders",
    SQ_GET_ASSOCIATIONS: "GetAssociations",
    SQ_GET_DOCUMENTS_AND_ASSOCIATIONS: "GetDocumentsAndAssociations",
    SQ_GET_SUBMISSION_SETS: "GetSubmissionSets",
    SQ_GET_SUBMISSION_SET_AND_CONTENTS: "GetSubmissionSetAndContents",
    SQ_GET_FOLDER_AND_CONTENTS: "GetFolderAndContents",
    SQ_GET_FOLDERS_FOR_DOCUMENT: "GetFoldersForDocument",
    SQ_GET_RELATED_DOCUMENTS: "GetRelatedDocuments",
    SQ_FIND_DOCUMENTS_BY_REFERENCE_ID: "FindDocumentsByReferenceId",
    SQ_FIND_DOCUMENTS_FOR_MULTIPLE_PATIENTS: "FindDocumentsForMultiplePatients",
    SQ_FIND_FOLDERS_FOR_MULTIPLE_PATIENTS: "FindFoldersForMultiplePatients",
})
"""Stored query id -> its name in the Technical Framework (14 ITI-18 queries, then the 2 ITI-51 ones)."""
