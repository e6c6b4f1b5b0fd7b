"""The XDS.b Document Repository: ITI-41 (storing and registering), ITI-43 (retrieval), ITI-86 (removal).

* :mod:`.tables` -- ``xds_repository_document``, one row per document held (bytes in the BlobStore);
* :mod:`.actor` -- :class:`DocumentRepository` and the registry clients (embedded in process, or remote ITI-42);
* :mod:`.soap` -- the endpoint operations and their audit records.
"""

from .actor import (DEFAULT_REPOSITORY_UNIQUE_ID, DocumentRepository, DocumentRequest, EmbeddedRegistryClient,
                    ProvideResult, RegistryClient, RemoteRegistryClient, RepositorySettings, RetrievedDocument,
                    RetrieveResult, parse_document_requests, registry_client_for)
from .soap import repository_operations, retrieve_response_element

__all__ = [
    "DEFAULT_REPOSITORY_UNIQUE_ID", "DocumentRepository", "DocumentRequest", "EmbeddedRegistryClient",
    "ProvideResult", "RegistryClient", "RemoteRegistryClient", "RepositorySettings", "RetrievedDocument",
    "RetrieveResult", "parse_document_requests", "registry_client_for",
    "repository_operations", "retrieve_response_element",
]
