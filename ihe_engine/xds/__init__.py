"""XDS.b metadata core: the model, ebRIM parsing and serialization, structural validation, affinity domain codes.

Pure and sans-I/O: no database, no network, no Twisted. The registry, stored queries and repository build on it:

* :mod:`.constants` -- every UUID / URN of IHE (classification schemes, statuses, association types, queries);
* :mod:`.errors` -- XDS error codes, :class:`XdsError` (several RegistryErrors at once), rs:RegistryResponse;
* :mod:`.model` -- frozen dataclasses (DocumentEntry, SubmissionSet, Folder, Association, Submission) and
  :func:`dtm_key` for time ranges;
* :mod:`.ebrim` -- parse a submission, answer LeafClass / ObjectRef, turn symbolic ids into UUIDs;
* :mod:`.validation` -- checks that need no database, reporting every problem at once;
* :mod:`.affinity` -- affinity domain code sets (NIST codes.xml, the engine's TOML) and their check.
"""

from .affinity import CodeSet, check_codes, load_code_set
from .ebrim import assign_uuids, parse_submission, to_leaf_class, to_object_ref
from .errors import RegistryError, RegistryResponse, XdsError, registry_response, registry_response_element
from .model import (Association, Author, Classification, Code, DocumentContent, DocumentEntry, ExternalIdentifier,
                    Folder, ObjectRef, Slot, Submission, SubmissionSet, dtm_key)
from .validation import Sender, check_submission, validate_submission

__all__ = [
    "CodeSet", "check_codes", "load_code_set",
    "assign_uuids", "parse_submission", "to_leaf_class", "to_object_ref",
    "RegistryError", "RegistryResponse", "XdsError", "registry_response", "registry_response_element",
    "Association", "Author", "Classification", "Code", "DocumentContent", "DocumentEntry", "ExternalIdentifier",
    "Folder", "ObjectRef", "Slot", "Submission", "SubmissionSet", "dtm_key",
    "Sender", "check_submission", "validate_submission",
]
