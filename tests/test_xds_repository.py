"""The Document Repository actor on SQLite and PostgreSQL: ITI-41 storing and registering, ITI-43, ITI-86."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import select

from ihe_engine.storage import UnitOfWork
from ihe_engine.storage.blobstore import BlobStore
from ihe_engine.xds import constants as c
from ihe_engine.xds.ebrim import parse_submission
from ihe_engine.xds.errors import RegistryResponse, XdsError, registry_response
from ihe_engine.xds.repository import (DocumentRepository, DocumentRequest, EmbeddedRegistryClient,
                                       RepositorySettings, parse_document_requests)
from ihe_engine.xds.repository.tables import RepositoryDocument
from xds_submissions import Doc, feed_patient, make_registry, patient_id, provide_request, retrieve_request

REPOSITORY_ID = "1.3.6.1.4.1.21367.2017.2.7.109"


@pytest.fixture
def blobs(tmp_path):
    return BlobStore(tmp_path / "blobs")


@pytest.fixture
def registry():
    return make_registry()


@pytest.fixture
def repository(database, blobs, registry):
    with UnitOfWork(database.sessions) as uow:
        feed_patient(uow.session)
        uow.commit()
    return DocumentRepository(RepositorySettings(REPOSITORY_ID), blobs, EmbeddedRegistryClient(registry))


def provide(database, repository, request):
    """Run ITI-41 as the SOAP handler does: one unit of work, committed on success; the response or the error."""
    try:
        with UnitOfWork(database.sessions) as uow:
            result = repository.provide_and_register(parse_submission(request), None, uow)
            uow.commit()
        return result.response
    except XdsError as refused:
        return registry_response(refused.errors)


def retrieve(database, repository, *pairs, home=None):
    with UnitOfWork(database.sessions, readonly=True) as uow:
        return repository.retrieve(parse_document_requests(retrieve_request(*pairs, home=home)), uow)


def codes(response: RegistryResponse) -> list[str]:
    return [error.error_code for error in response.errors]


def rows(database) -> list[RepositoryDocument]:
    with database.sessions() as session:
        return list(session.scalars(select(RepositoryDocument)))


# --- ITI-41 ------------------------------------------------------------------------------------------------

def test_provide_stores_registers_and_is_retrievable(database, repository, registry, blobs):
    first, second = Doc(b"<letter>one</letter>", mime_type="text/xml"), Doc(b"%PDF-1.4 two", mime_type="application/pdf")
    response = provide(database, repository, provide_request([first, second]))
    assert response.status == c.RESPONSE_SUCCESS, response.errors
    stored = {row.document_unique_id: row for row in rows(database)}
    assert set(stored) == {first.unique_id, second.unique_id}
    assert stored[first.unique_id].sha1 == first.sha1 and stored[first.unique_id].size == len(first.content)
    assert stored[second.unique_id].mime_type == "application/pdf"
    assert blobs.path_for(hashlib.sha256(second.content).hexdigest()).read_bytes() == second.content
    if hasattr(registry, "registered"):  # the stand-in shows what the registration carried
        assert registry.registered[first.unique_id] == {"repositoryUniqueId": REPOSITORY_ID, "hash": first.sha1,
                                                        "size": str(len(first.content))}
    result = retrieve(database, repository, (REPOSITORY_ID, first.unique_id), (REPOSITORY_ID, second.unique_id))
    assert result.response.status == c.RESPONSE_SUCCESS
    assert [(d.mime_type, d.path.read_bytes()) for d in result.documents] == \
        [("text/xml", first.content), ("application/pdf", second.content)]


def test_submitted_hash_and_size_are_checked_case_insensitively(database, repository):
    content = b"hash me"
    upper = Doc(content, hash=hashlib.sha1(content).hexdigest().upper(), size=str(len(content)))
    assert provide(database, repository, provide_request([upper])).status == c.RESPONSE_SUCCESS


@pytest.mark.parametrize("hash_, size", [("0" * 40, None), (None, "9999"), ("1" * 40, "1")])
def test_wrong_hash_or_size_is_a_repository_metadata_error(database, repository, blobs, hash_, size):
    doc = Doc(b"some bytes", hash=hash_, size=size)
    response = provide(database, repository, provide_request([doc]))
    assert response.status == c.RESPONSE_FAILURE
    assert set(codes(response)) == {"XDSRepositoryMetadataError"}
    assert len(response.errors) == (hash_ is not None) + (size is not None)
    assert rows(database) == []
    assert not blobs.path_for(hashlib.sha256(doc.content).hexdigest()).exists()


def test_entry_without_document_and_document_without_entry(database, repository):
    doc = Doc(b"alone")
    missing = provide(database, repository, provide_request([doc], document_ids=[]))
    assert codes(missing) == ["XDSMissingDocument"] and doc.entry_id in missing.errors[0].code_context
    extra = provide(database, repository, provide_request([doc], document_ids=[doc.entry_id, "Stray"]))
    assert codes(extra) == ["XDSMissingDocumentMetadata"] and "Stray" in extra.errors[0].code_context
    assert rows(database) == []


def test_registry_refusal_rolls_back_the_document(database, repository, blobs):
    doc = Doc(b"for an unknown patient")
    response = provide(database, repository, provide_request([doc], pid=patient_id("NOBODY")))
    assert response.status == c.RESPONSE_FAILURE
    assert "XDSUnknownPatientId" in codes(response)  # the registry's error, relayed (NIST 11986 style)
    assert rows(database) == []
    assert retrieve(database, repository, (REPOSITORY_ID, doc.unique_id)).documents == ()
    assert not blobs.path_for(hashlib.sha256(doc.content).hexdigest()).exists()


def test_identical_resubmission_is_accepted_and_a_different_one_refused(database, repository):
    doc = Doc(b"same bytes")
    assert provide(database, repository, provide_request([doc])).status == c.RESPONSE_SUCCESS
    again = Doc(b"same bytes", unique_id=doc.unique_id)
    assert provide(database, repository, provide_request([again])).status == c.RESPONSE_SUCCESS
    other = Doc(b"other bytes!", unique_id=doc.unique_id)
    refused = provide(database, repository, provide_request([other]))
    assert codes(refused) == ["XDSNonIdenticalHash", "XDSNonIdenticalSize"]
    assert [row.sha1 for row in rows(database)] == [doc.sha1]


class _RefusingRegistry:
    def register_document_set_b(self, submission, uow):
        raise XdsError("XDSPatientIdDoesNotMatch", "the registry says no")


def test_refusal_relays_every_registry_error(database, blobs):
    repository = DocumentRepository(RepositorySettings(REPOSITORY_ID), blobs, EmbeddedRegistryClient(_RefusingRegistry()))
    response = provide(database, repository, provide_request([Doc(b"x")]))
    assert codes(response) == ["XDSPatientIdDoesNotMatch"] and response.errors[0].code_context == "the registry says no"
    assert rows(database) == []


# --- ITI-43 ------------------------------------------------------------------------------------------------

def test_retrieve_partial_and_unknown(database, repository):
    doc = Doc(b"retrievable")
    provide(database, repository, provide_request([doc]))
    partial = retrieve(database, repository, (REPOSITORY_ID, doc.unique_id), (REPOSITORY_ID, "1.2.3.404"),
                       ("1.9.9.9", doc.unique_id))
    assert partial.response.status == c.RESPONSE_PARTIAL_SUCCESS
    assert codes(partial.response) == ["XDSDocumentUniqueIdError", "XDSUnknownRepositoryId"]
    assert [d.request.document_unique_id for d in partial.documents] == [doc.unique_id]
    failure = retrieve(database, repository, (REPOSITORY_ID, "1.2.3.404"))
    assert failure.response.status == c.RESPONSE_FAILURE and failure.documents == ()


def test_home_community_id_is_echoed_only_when_sent(database, repository):
    doc = Doc(b"home")
    provide(database, repository, provide_request([doc]))
    without = retrieve(database, repository, (REPOSITORY_ID, doc.unique_id))
    assert without.documents[0].request.home_community_id is None
    with_home = retrieve(database, repository, (REPOSITORY_ID, doc.unique_id), home="urn:oid:1.2.3")
    assert with_home.documents[0].request.home_community_id == "urn:oid:1.2.3"


# --- ITI-86 ------------------------------------------------------------------------------------------------

def remove(database, repository, *pairs):
    requests = [DocumentRequest(repository_unique_id=r, document_unique_id=d) for r, d in pairs]
    with UnitOfWork(database.sessions) as uow:
        response = repository.remove_documents(requests, uow)
        uow.commit()
    return response


def test_removed_document_is_no_longer_retrievable_and_its_blob_goes(database, repository, blobs):
    kept, gone = Doc(b"shared bytes"), Doc(b"only mine")
    twin = Doc(b"shared bytes")  # another document with the same content: same blob
    provide(database, repository, provide_request([kept, gone, twin]))
    response = remove(database, repository, (REPOSITORY_ID, gone.unique_id), (REPOSITORY_ID, kept.unique_id))
    assert response.status == c.RESPONSE_SUCCESS
    result = retrieve(database, repository, (REPOSITORY_ID, gone.unique_id), (REPOSITORY_ID, twin.unique_id))
    assert codes(result.response) == ["XDSDocumentUniqueIdError"]
    assert [d.request.document_unique_id for d in result.documents] == [twin.unique_id]
    assert not blobs.path_for(hashlib.sha256(gone.content).hexdigest()).exists()
    assert blobs.path_for(hashlib.sha256(kept.content).hexdigest()).exists()  # the twin still uses it


def test_remove_unknown_repository_or_document_fails(database, repository):
    doc = Doc(b"stays")
    provide(database, repository, provide_request([doc]))
    wrong_repository = remove(database, repository, ("1.2.1.1.1", doc.unique_id))
    wrong_document = remove(database, repository, (REPOSITORY_ID, "1.2.3.404"))
    assert (wrong_repository.status, codes(wrong_repository)) == (c.RESPONSE_FAILURE, ["XDSUnknownRepositoryId"])
    assert (wrong_document.status, codes(wrong_document)) == (c.RESPONSE_FAILURE, ["XDSDocumentUniqueIdError"])
    assert retrieve(database, repository, (REPOSITORY_ID, doc.unique_id)).response.status == c.RESPONSE_SUCCESS
    mixed = remove(database, repository, (REPOSITORY_ID, doc.unique_id), (REPOSITORY_ID, "1.2.3.404"))
    assert mixed.status == c.RESPONSE_PARTIAL_SUCCESS


def test_a_removed_document_can_be_provided_again(database, repository):
    doc = Doc(b"back again")
    provide(database, repository, provide_request([doc]))
    remove(database, repository, (REPOSITORY_ID, doc.unique_id))
    different = Doc(b"new content", unique_id=doc.unique_id)
    response = provide(database, repository, provide_request([different]))
    result = retrieve(database, repository, (REPOSITORY_ID, doc.unique_id))
    if response.status == c.RESPONSE_SUCCESS:  # a registry that forgot the entry: the new bytes are served
        assert [d.path.read_bytes() for d in result.documents] == [b"new content"]
    else:  # the registry still holds the entry with the old hash (ITI-86 leaves metadata alone)
        assert "XDSNonIdenticalHash" in codes(response)
        assert result.documents == ()


def test_unreachable_remote_registry(database, blobs):
    import socket

    from ihe_engine.xds.repository import RemoteRegistryClient

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/xds/registry"
    with UnitOfWork(database.sessions) as uow:
        feed_patient(uow.session)
        uow.commit()
    repository = DocumentRepository(RepositorySettings(REPOSITORY_ID), blobs, RemoteRegistryClient(url, timeout=5))
    doc = Doc(b"never registered")
    response = provide(database, repository, provide_request([doc]))
    assert codes(response) == ["XDSRegistryNotAvailable"]
    assert retrieve(database, repository, (REPOSITORY_ID, doc.unique_id)).documents == ()
    assert not blobs.path_for(hashlib.sha256(doc.content).hexdigest()).exists()
