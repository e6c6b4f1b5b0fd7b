"""Tables of the XDS Document Registry: one row per registry object, plus one table per query need.

Contract for readers (stored queries, ITI-57/62, the repository); names here are stable.

``xds_object`` -- every registry object (DocumentEntry ``DE``, SubmissionSet ``SS``, Folder ``FOLDER``,
Association ``ASSOC``), keyed by its entryUUID (``urn:uuid:...``).

* ``leaf_class``: the complete rim element a LeafClass answer returns (UTF-8 XML bytes, namespaces declared on
  it): what was submitted, symbolic ids replaced, status, lid/VersionInfo and the registry-assigned slots
  (Folder lastUpdateTime) included. The store keeps it in step with ``status`` and ``last_update_time``: a
  query answers with these bytes as they are.
* ``patient_key``: the canonical XDS form ``id^^^&OID&ISO`` of the patientId (namespace and type code
  dropped), NULL for associations. It is the id submitted; a later merge (ITI-8 A40) does not rewrite it --
  :meth:`RegistryStore.repoint_patient` exists for a merge policy that wants to. Queries that follow merges
  resolve the asked id through ``IdentityStore`` and match every identifier of the surviving patient.
* ``lid`` / ``version``: logical id (the entryUUID for a first version) and version number 1, 2, ...
  (Metadata Update).
* ``unique_id``: uniqueId of DE / SS / FOLDER. Several DocumentEntries may share one (re-submission with the
  same hash and size, new versions); SS and Folder uniqueIds are unique by rule, not by constraint.

``xds_document_entry`` -- one row per DocumentEntry with every single-valued FindDocuments parameter as a
column. ``patient_key``, ``status`` and ``object_type`` repeat those of ``xds_object`` (kept in step by the
store) so FindDocuments is answered from this table's composite indexes and joins ``xds_object`` by primary key
only for ``leaf_class``. Times are :func:`ihe_engine.xds.model.dtm_key` strings (14 digits, lexical = time
order): ``From <= value < To`` is ``key >= dtm_key(From) AND key < dtm_key(To)``.

Child tables for multi-valued parameters (``object_uuid`` -> ``xds_object.uuid``, ON DELETE CASCADE):

* ``xds_code``: ``attribute`` is the IHE name (``confidentialityCode``, ``eventCodeList``, ``folderCodeList``,
  ``contentTypeCode``), with ``code`` and ``scheme``; ``(attribute, code, scheme, object_uuid)`` answers "which
  objects carry this code", ``(object_uuid, attribute)`` "does this object carry it".
* ``xds_author_person``: authorPerson of DocumentEntries and SubmissionSets (one row per author classification).
* ``xds_reference_id``: values of ``urn:ihe:iti:xds:2013:referenceIdList``, as submitted.

``xds_submission_set`` / ``xds_folder`` -- the SubmissionSet and Folder columns queries filter on.

``xds_association`` -- type (full URN), source/target entryUUIDs (not foreign keys: ITI-62 removes objects in any
order within a transaction), status, the SubmissionSetStatus / PreviousVersion / OriginalStatus / NewStatus /
AssociationPropagation slots; indexed ``(source_uuid, type)`` and ``(target_uuid, type)``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from ...storage.base import Base, utcnow

__all__ = [
    "XdsObject", "XdsDocumentEntry", "XdsCode", "XdsAuthorPerson", "XdsReferenceId", "XdsSubmissionSet",
    "XdsFolder", "XdsAssociation", "ObjectKind", "REGISTRY_TABLES",
    "ATTRIBUTE_CONFIDENTIALITY_CODE", "ATTRIBUTE_EVENT_CODE_LIST", "ATTRIBUTE_FOLDER_CODE_LIST",
    "ATTRIBUTE_CONTENT_TYPE_CODE",
]

UUID_LENGTH = 64  # "urn:uuid:" + 36; room for the odd non-UUID id of another community
KEY_LENGTH = 14  # dtm_key
CODE_LENGTH = 256
TEXT_LENGTH = 512

ATTRIBUTE_CONFIDENTIALITY_CODE = "confidentialityCode"
ATTRIBUTE_EVENT_CODE_LIST = "eventCodeList"
ATTRIBUTE_FOLDER_CODE_LIST = "folderCodeList"
ATTRIBUTE_CONTENT_TYPE_CODE = "contentTypeCode"


class ObjectKind:
    """Values of ``xds_object.kind``."""

    DOCUMENT_ENTRY = "DE"
    SUBMISSION_SET = "SS"
    FOLDER = "FOLDER"
    ASSOCIATION = "ASSOC"


def _object_fk() -> ForeignKey:
    return ForeignKey("xds_object.uuid", ondelete="CASCADE")


class XdsObject(Base):
    __tablename__ = "xds_object"
    __table_args__ = (
        Index("ix_xds_object_patient_kind_status", "patient_key", "kind", "status"),
        Index("ix_xds_object_unique_id", "unique_id"),
        Index("ix_xds_object_lid_version", "lid", "version"),
    )

    uuid: Mapped[str] = mapped_column(String(UUID_LENGTH), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))
    lid: Mapped[str] = mapped_column(String(UUID_LENGTH))
    version: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(String(80))
    patient_key: Mapped[str | None] = mapped_column(String(CODE_LENGTH))
    unique_id: Mapped[str | None] = mapped_column(String(CODE_LENGTH))
    home: Mapped[str | None] = mapped_column(String(CODE_LENGTH))
    object_type: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    leaf_class: Mapped[bytes] = mapped_column(LargeBinary)


class XdsDocumentEntry(Base):
    __tablename__ = "xds_document_entry"
    __table_args__ = (
        # FindDocuments: patient + status (+ type), ordered/ranged by creation time; the code filters below
        Index("ix_xds_de_patient_status_created", "patient_key", "status", "object_type", "creation_time_key"),
        Index("ix_xds_de_patient_class", "patient_key", "class_code", "class_scheme"),
        Index("ix_xds_de_patient_type", "patient_key", "type_code", "type_scheme"),
        Index("ix_xds_de_patient_format", "patient_key", "format_code", "format_scheme"),
        Index("ix_xds_de_patient_service_start", "patient_key", "service_start_key"),
    )

    uuid: Mapped[str] = mapped_column(String(UUID_LENGTH), _object_fk(), primary_key=True)
    patient_key: Mapped[str] = mapped_column(String(CODE_LENGTH))
    status: Mapped[str] = mapped_column(String(80))
    object_type: Mapped[str] = mapped_column(String(128))
    class_code: Mapped[str | None] = mapped_column(String(CODE_LENGTH))
    class_scheme: Mapped[str | None] = mapped_column(String(CODE_LENGTH))
    type_code: Mapped[str | None] = mapped_column(String(CODE_LENGTH))
    type_scheme: Mapped[str | None] = mapped_column(String(CODE_LENGTH))
    format_code: Mapped[str | None] = mapped_column(String(CODE_LENGTH))
    format_scheme: Mapped[str | None] = mapped_column(String(CODE_LENGTH))
    hcft_code: Mapped[str | None] = mapped_column(String(CODE_LENGTH))
    hcft_scheme: Mapped[str | None] = mapped_column(String(CODE_LENGTH))
    practice_code: Mapped[str | None] = mapped_column(String(CODE_LENGTH))
    practice_scheme: Mapped[str | None] = mapped_column(String(CODE_LENGTH))
    creation_time_key: Mapped[str | None] = mapped_column(String(KEY_LENGTH))
    service_start_key: Mapped[str | None] = mapped_column(String(KEY_LENGTH))
    service_stop_key: Mapped[str | None] = mapped_column(String(KEY_LENGTH))
    repository_unique_id: Mapped[str | None] = mapped_column(String(CODE_LENGTH))
    hash: Mapped[str | None] = mapped_column(String(40))  # lower-case hex
    size: Mapped[int | None] = mapped_column(BigInteger)
    mime_type: Mapped[str | None] = mapped_column(String(CODE_LENGTH))
    availability: Mapped[str | None] = mapped_column(String(80))  # documentAvailability; NULL = Online
    language_code: Mapped[str | None] = mapped_column(String(80))


class XdsCode(Base):
    __tablename__ = "xds_code"
    __table_args__ = (
        Index("ix_xds_code_attribute_code", "attribute", "code", "scheme", "object_uuid"),
        Index("ix_xds_code_object_attribute", "object_uuid", "attribute"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    object_uuid: Mapped[str] = mapped_column(String(UUID_LENGTH), _object_fk())
    attribute: Mapped[str] = mapped_column(String(40))
    code: Mapped[str] = mapped_column(String(CODE_LENGTH))
    scheme: Mapped[str] = mapped_column(String(CODE_LENGTH))


class XdsAuthorPerson(Base):
    __tablename__ = "xds_author_person"
    __table_args__ = (
        Index("ix_xds_author_person_object", "object_uuid"),
        Index("ix_xds_author_person_value", "value"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    object_uuid: Mapped[str] = mapped_column(String(UUID_LENGTH), _object_fk())
    value: Mapped[str] = mapped_column(String(TEXT_LENGTH))


class XdsReferenceId(Base):
    __tablename__ = "xds_reference_id"
    __table_args__ = (
        Index("ix_xds_reference_id_value", "value", "object_uuid"),
        Index("ix_xds_reference_id_object", "object_uuid"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    object_uuid: Mapped[str] = mapped_column(String(UUID_LENGTH), _object_fk())
    value: Mapped[str] = mapped_column(String(TEXT_LENGTH))


class XdsSubmissionSet(Base):
    __tablename__ = "xds_submission_set"
    __table_args__ = (Index("ix_xds_submission_set_source_id", "source_id"),)

    uuid: Mapped[str] = mapped_column(String(UUID_LENGTH), _object_fk(), primary_key=True)
    source_id: Mapped[str | None] = mapped_column(String(CODE_LENGTH))
    submission_time_key: Mapped[str | None] = mapped_column(String(KEY_LENGTH))
    content_type_code: Mapped[str | None] = mapped_column(String(CODE_LENGTH))
    content_type_scheme: Mapped[str | None] = mapped_column(String(CODE_LENGTH))


class XdsFolder(Base):
    __tablename__ = "xds_folder"

    uuid: Mapped[str] = mapped_column(String(UUID_LENGTH), _object_fk(), primary_key=True)
    last_update_time: Mapped[str] = mapped_column(String(KEY_LENGTH))  # as in the LeafClass slot (UTC, seconds)
    last_update_time_key: Mapped[str] = mapped_column(String(KEY_LENGTH))


class XdsAssociation(Base):
    __tablename__ = "xds_association"
    __table_args__ = (
        Index("ix_xds_association_source_type", "source_uuid", "type"),
        Index("ix_xds_association_target_type", "target_uuid", "type"),
    )

    uuid: Mapped[str] = mapped_column(String(UUID_LENGTH), _object_fk(), primary_key=True)
    type: Mapped[str] = mapped_column(String(80))
    source_uuid: Mapped[str] = mapped_column(String(UUID_LENGTH))
    target_uuid: Mapped[str] = mapped_column(String(UUID_LENGTH))
    status: Mapped[str] = mapped_column(String(80))
    submission_set_status: Mapped[str | None] = mapped_column(String(20))
    previous_version: Mapped[str | None] = mapped_column(String(20))
    original_status: Mapped[str | None] = mapped_column(String(80))
    new_status: Mapped[str | None] = mapped_column(String(80))
    association_propagation: Mapped[str | None] = mapped_column(String(8))


REGISTRY_TABLES = (XdsObject, XdsDocumentEntry, XdsCode, XdsAuthorPerson, XdsReferenceId, XdsSubmissionSet,
                   XdsFolder, XdsAssociation)
"""Every registry table, parents first (the insert order; delete in reverse)."""
