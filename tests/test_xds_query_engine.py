"""The 16 stored queries against a registry filled through the ITI-42 actor, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from ihe_engine.ns import RIM
from ihe_engine.storage import UnitOfWork
from ihe_engine.xds import constants as c
from ihe_engine.xds.errors import XdsError
from ihe_engine.xds.query.engine import patient_keys, run_stored_query
from ihe_engine.xds.query.params import parse_adhoc_query_request

try:
    from .test_xds_query_params import request
    from .xds_query_data import CONF_SCHEME, EVENT_SCHEME, P1, P2, P3, UNFED, load
except ImportError:  # tests/ is not a package: pytest put it on sys.path
    from test_xds_query_params import request
    from xds_query_data import CONF_SCHEME, EVENT_SCHEME, P1, P2, P3, UNFED, load

APPROVED, DEPRECATED = c.STATUS_APPROVED, c.STATUS_DEPRECATED
BOTH = f"('{APPROVED}', '{DEPRECATED}')"


@pytest.fixture
def registry(database):
    return database, load(database)


def q(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def run(registry, query_id: str, slots, *, return_type: str = "ObjectRef", max_results: int = 1000,
        home: str | None = None):
    db, _ = registry
    parsed = parse_adhoc_query_request(request(query_id, slots, return_type=return_type))
    with UnitOfWork(db.sessions, readonly=True) as uow:
        return run_stored_query(parsed, uow, max_results=max_results, home_community_id=home)


def names(registry, result) -> set[str]:
    """The data set names of the returned objects (unnamed registry-made associations as '?')."""
    _, data = registry
    by_uuid = {data.uuid(key): key for key in (*data.entries, *data.packages, *data.associations)}
    return {by_uuid.get(element.get("id"), "?") for element in result.objects}


def find_documents(registry, *extra, status: str = f"('{APPROVED}')", patient: str = P1, **kwargs):
    slots = [("$XDSDocumentEntryPatientId", [q(patient)]), ("$XDSDocumentEntryStatus", [status]), *extra]
    return names(registry, run(registry, c.SQ_FIND_DOCUMENTS, slots, **kwargs))


def codes(*values: str, scheme: str) -> list[str]:
    return ["(" + ", ".join(q(f"{value}^^{scheme}") for value in values) + ")"]


# ------------------------------------------------------------------------------------------------ FindDocuments

def test_find_documents_by_patient_and_status(registry):
    assert find_documents(registry) == {"DE1b", "DE1d", "DE3a"}
    assert find_documents(registry, status=BOTH) == {"DE1a", "DE1b", "DE1d", "DE3a"}
    assert find_documents(registry, status=f"('{DEPRECATED}')") == {"DE1a"}
    assert find_documents(registry, patient=P2) == {"DE2a"}


def test_find_documents_entry_type(registry):
    on_demand = f"('{c.DE_ON_DEMAND}')"
    assert find_documents(registry, ("$XDSDocumentEntryType", [on_demand])) == {"DE1c"}
    both = f"('{c.DE_STABLE}', '{c.DE_ON_DEMAND}')"
    assert find_documents(registry, ("$XDSDocumentEntryType", [both])) == {"DE1b", "DE1c", "DE1d", "DE3a"}


@pytest.mark.parametrize("name, values, scheme, expected", [
    ("$XDSDocumentEntryClassCode", ("B",), "1.2.1", {"DE1b"}),
    ("$XDSDocumentEntryClassCode", ("A", "B"), "1.2.1", {"DE1b", "DE1d", "DE3a"}),
    ("$XDSDocumentEntryClassCode", ("B",), "9.9.9", set()),  # right code, wrong scheme
    ("$XDSDocumentEntryTypeCode", ("T2",), "1.2.5", {"DE1b"}),
    ("$XDSDocumentEntryFormatCode", ("F1",), "1.2.2", {"DE1d", "DE3a"}),
    ("$XDSDocumentEntryHealthcareFacilityTypeCode", ("H2",), "1.2.3", {"DE1b"}),
    ("$XDSDocumentEntryPracticeSettingCode", ("PR2",), "1.2.4", {"DE1b"}),
    ("$XDSDocumentEntryConfidentialityCode", ("R",), CONF_SCHEME, {"DE1d"}),
    ("$XDSDocumentEntryConfidentialityCode", ("R", "N"), CONF_SCHEME, {"DE1b", "DE1d", "DE3a"}),
    ("$XDSDocumentEntryEventCodeList", ("E1",), EVENT_SCHEME, {"DE1b"}),
])
def test_find_documents_code_filters(registry, name, values, scheme, expected):
    assert find_documents(registry, (name, codes(*values, scheme=scheme))) == expected


def test_event_codes_and_across_slots_or_within(registry):
    both = [("$XDSDocumentEntryEventCodeList", codes("E1", scheme=EVENT_SCHEME)),
            ("$XDSDocumentEntryEventCodeList", codes("E2", scheme=EVENT_SCHEME))]
    assert find_documents(registry, *both, status=BOTH) == {"DE1a"}  # only DE1a has E1 AND E2
    either = [("$XDSDocumentEntryEventCodeList", codes("E1", "E2", scheme=EVENT_SCHEME))]
    assert find_documents(registry, *either, status=BOTH) == {"DE1a", "DE1b"}
    conf_and = [("$XDSDocumentEntryConfidentialityCode", codes("N", scheme=CONF_SCHEME)),
                ("$XDSDocumentEntryConfidentialityCode", codes("R", scheme=CONF_SCHEME))]
    assert find_documents(registry, *conf_and, status=BOTH) == {"DE1a"}


def test_creation_time_range_is_from_inclusive_to_exclusive(registry):
    def between(low, high):
        return find_documents(registry, ("$XDSDocumentEntryCreationTimeFrom", [low]),
                              ("$XDSDocumentEntryCreationTimeTo", [high]), status=BOTH)
    assert between("2004", "2005") == {"DE1a"}
    assert between("20040101093000", "20040101093001") == {"DE1a"}  # From is inclusive
    assert between("20030101", "20040101093000") == set()  # To is exclusive
    assert between("20050615", "2007") == {"DE1b", "DE1d"}
    only_from = find_documents(registry, ("$XDSDocumentEntryCreationTimeFrom", ["2006"]))
    assert only_from == {"DE1d", "DE3a"}


def test_service_time_filters_skip_entries_without_service_time(registry):
    since_2000 = find_documents(registry, ("$XDSDocumentEntryServiceStartTimeFrom", ["2000"]), status=BOTH)
    assert since_2000 == {"DE1a", "DE1d"}  # DE1b and DE3a have no serviceStartTime
    stop_before = find_documents(registry, ("$XDSDocumentEntryServiceStopTimeTo", ["20040106"]), status=BOTH)
    assert stop_before == {"DE1a"}
    start_until = find_documents(registry, ("$XDSDocumentEntryServiceStartTimeTo", ["2005"]), status=BOTH)
    assert start_until == {"DE1a"}


def test_author_person_like_with_wildcards(registry):
    assert find_documents(registry, ("$XDSDocumentEntryAuthorPerson", ["('%Ford%')"]), status=BOTH) == \
        {"DE1a", "DE1d"}
    assert find_documents(registry, ("$XDSDocumentEntryAuthorPerson", ["('Jane O''Sm_th')"])) == {"DE1b"}
    assert find_documents(registry, ("$XDSDocumentEntryAuthorPerson", ["('%ford%', 'Jane%')"])) == {"DE1b", "DE1d"}
    assert find_documents(registry, ("$XDSDocumentEntryAuthorPerson", ["('Ford')"])) == set()


def test_document_availability(registry):
    offline = f"('{c.AVAILABILITY_OFFLINE}')"
    online = f"('{c.AVAILABILITY_ONLINE}')"
    assert find_documents(registry, ("$XDSDocumentEntryDocumentAvailability", [offline])) == {"DE1d"}
    assert find_documents(registry, ("$XDSDocumentEntryDocumentAvailability", [online])) == {"DE1b", "DE3a"}


def test_find_documents_by_reference_id(registry):
    ref = q("ref-1^^^&1.2.5643.2&ISO^urn:ihe:iti:xds:2013:uniqueId")
    slots = [("$XDSDocumentEntryPatientId", [q(P1)]), ("$XDSDocumentEntryStatus", [BOTH]),
             ("$XDSDocumentEntryReferenceIdList", [f"({ref})"])]
    assert names(registry, run(registry, c.SQ_FIND_DOCUMENTS_BY_REFERENCE_ID, slots)) == {"DE1a"}
    slots[-1] = ("$XDSDocumentEntryReferenceIdList", ["('nothing')"])
    assert names(registry, run(registry, c.SQ_FIND_DOCUMENTS_BY_REFERENCE_ID, slots)) == set()


def test_unknown_patient_is_an_empty_success(registry):
    assert find_documents(registry, patient=UNFED) == set()
    assert find_documents(registry, patient="x^^^&1.2.999&ISO") == set()


def test_malformed_patient_id_is_a_registry_error(registry):
    with pytest.raises(XdsError) as caught:
        find_documents(registry, patient="no authority")
    assert caught.value.error_code == "XDSRegistryError" and "no authority" in caught.value.code_context


# ------------------------------------------------------------------------------------------------ merges

def test_subsumed_patient_finds_nothing_and_survivor_finds_the_chain(registry):
    assert find_documents(registry, patient=P3) == set()
    assert "DE3a" in find_documents(registry, patient=P1)
    db, _ = registry
    with UnitOfWork(db.sessions, readonly=True) as uow:
        assert set(patient_keys(uow.session, P1)) == {P1, P3}
        assert patient_keys(uow.session, P3) == ()
        assert patient_keys(uow.session, UNFED) == (UNFED,)


def test_get_all_follows_the_merge(registry):
    result = run(registry, c.SQ_GET_ALL, [("$patientId", [q(P3)]), ("$XDSDocumentEntryStatus", [BOTH]),
                                          ("$XDSSubmissionSetStatus", [BOTH]), ("$XDSFolderStatus", [BOTH])])
    assert len(result) == 0


def test_leaf_class_get_across_a_merged_chain_is_one_patient(registry):
    _, data = registry
    uuids = f"('{data.uuid('DE1b')}', '{data.uuid('DE3a')}')"
    result = run(registry, c.SQ_GET_DOCUMENTS, [("$XDSDocumentEntryEntryUUID", [uuids])], return_type="LeafClass")
    assert len(result) == 2


# ------------------------------------------------------------------------------------------------ LeafClass

def test_leaf_class_returns_the_stored_objects(registry):
    result = run(registry, c.SQ_FIND_DOCUMENTS, [("$XDSDocumentEntryPatientId", [q(P2)]),
                                                 ("$XDSDocumentEntryStatus", [f"('{APPROVED}')"])],
                 return_type="LeafClass", home="urn:oid:1.2.3")
    (element,) = result.objects
    assert element.tag == f"{{{RIM}}}ExtrinsicObject"
    assert element.get("status") == APPROVED and element.get("home") == "urn:oid:1.2.3"
    _, data = registry
    assert element.get("id") == data.uuid("DE2a")
    slots = {slot.get("name") for slot in element.iter(f"{{{RIM}}}Slot")}
    assert {"creationTime", "repositoryUniqueId", "sourcePatientId", "hash", "size"} <= slots
    assert result.patient_ids == (P2,)


def test_deprecated_status_is_in_the_leaf_class(registry):
    _, data = registry
    result = run(registry, c.SQ_GET_DOCUMENTS, [("$XDSDocumentEntryUniqueId", [q(data.entries["DE1a"].unique_id)])],
                 return_type="LeafClass")
    assert [element.get("status") for element in result.objects] == [DEPRECATED]


def test_object_ref_answers(registry):
    result = run(registry, c.SQ_FIND_DOCUMENTS, [("$XDSDocumentEntryPatientId", [q(P2)]),
                                                 ("$XDSDocumentEntryStatus", [f"('{APPROVED}')"])],
                 home="urn:oid:1.2.3")
    (element,) = result.objects
    assert element.tag == f"{{{RIM}}}ObjectRef" and element.get("home") == "urn:oid:1.2.3" and len(element) == 0


# ------------------------------------------------------------------------------------------------ limits

def test_too_many_results(registry):
    with pytest.raises(XdsError) as caught:
        find_documents(registry, status=BOTH, max_results=3)
    assert caught.value.error_code == "XDSTooManyResults"
    assert len(find_documents(registry, status=BOTH, max_results=4)) == 4


def test_leaf_class_get_spanning_two_patients(registry):
    _, data = registry
    uuids = f"('{data.uuid('DE1b')}', '{data.uuid('DE2a')}')"
    slots = [("$XDSDocumentEntryEntryUUID", [uuids])]
    with pytest.raises(XdsError) as caught:
        run(registry, c.SQ_GET_DOCUMENTS, slots, return_type="LeafClass")
    assert caught.value.error_code == "XDSResultNotSinglePatient"
    assert names(registry, run(registry, c.SQ_GET_DOCUMENTS, slots)) == {"DE1b", "DE2a"}
    folders = [("$XDSFolderEntryUUID", [f"('{data.uuid('F1')}', '{data.uuid('F2')}')"])]
    with pytest.raises(XdsError):
        run(registry, c.SQ_GET_FOLDERS, folders, return_type="LeafClass")
    sets = [("$uuid", [f"('{data.uuid('DE1b')}', '{data.uuid('DE2a')}')"])]
    with pytest.raises(XdsError):
        run(registry, c.SQ_GET_SUBMISSION_SETS, sets, return_type="LeafClass")


# ------------------------------------------------------------------------------------------------ Find SS / Folders

def find_submission_sets(registry, *extra, patient=P1):
    slots = [("$XDSSubmissionSetPatientId", [q(patient)]), ("$XDSSubmissionSetStatus", [f"('{APPROVED}')"]), *extra]
    return names(registry, run(registry, c.SQ_FIND_SUBMISSION_SETS, slots))


def test_find_submission_sets(registry):
    assert find_submission_sets(registry) == {"SS1", "SS2", "SS4"}
    assert find_submission_sets(registry, ("$XDSSubmissionSetSourceId", ["('1.3.6.1.4.1.21367.5')"])) == {"SS2"}
    assert find_submission_sets(registry, ("$XDSSubmissionSetSubmissionTimeFrom", ["2005"]),
                                ("$XDSSubmissionSetSubmissionTimeTo", ["2007"])) == {"SS2"}
    assert find_submission_sets(registry, ("$XDSSubmissionSetAuthorPerson", ["'%Ford'"])) == {"SS1"}
    assert find_submission_sets(registry, ("$XDSSubmissionSetContentType", codes("CT2", scheme="1.2.7"))) == {"SS2"}
    assert find_submission_sets(registry, patient=P3) == set()


def test_find_folders(registry):
    def find(*extra, patient=P1):
        slots = [("$XDSFolderPatientId", [q(patient)]), ("$XDSFolderStatus", [f"('{APPROVED}')"]), *extra]
        return names(registry, run(registry, c.SQ_FIND_FOLDERS, slots))
    assert find() == {"F1"}
    assert find(patient=P2) == {"F2"}
    assert find(("$XDSFolderCodeList", codes("FC1", scheme="1.2.6")),
                ("$XDSFolderCodeList", codes("FC2", scheme="1.2.6"))) == {"F1"}
    assert find(("$XDSFolderCodeList", codes("FC3", scheme="1.2.6"))) == set()
    assert find(("$XDSFolderLastUpdateTimeFrom", ["2000"])) == {"F1"}
    assert find(("$XDSFolderLastUpdateTimeTo", ["2000"])) == set()


# ------------------------------------------------------------------------------------------------ Get*

def test_get_all(registry):
    result = run(registry, c.SQ_GET_ALL, [("$patientId", [q(P2)]), ("$XDSDocumentEntryStatus", [BOTH]),
                                          ("$XDSSubmissionSetStatus", [BOTH]), ("$XDSFolderStatus", [BOTH])])
    assert names(registry, result) == {"SS3", "DE2a", "F2", "SS3>DE2a", "SS3>F2", "F2>DE2a", "SS3>F2>DE2a"}
    approved = run(registry, c.SQ_GET_ALL, [("$patientId", [q(P1)]), ("$XDSDocumentEntryStatus", [f"('{APPROVED}')"]),
                                            ("$XDSSubmissionSetStatus", [BOTH]), ("$XDSFolderStatus", [BOTH])])
    found = names(registry, approved)
    assert {"DE1b", "DE1d", "DE3a", "SS1", "SS2", "SS4", "F1", "SS2>DE1d", "SS4>DE3a"} <= found
    assert "DE1a" not in found and "F1>DE1a" not in found and "DE1d-RPLC-DE1a" not in found
    assert "?" in found  # the registry's own F1 -> DE1d membership carried over by the RPLC


def test_get_documents_by_uuid_unique_id_and_logical_id(registry):
    _, data = registry
    by_uuid = run(registry, c.SQ_GET_DOCUMENTS, [("$XDSDocumentEntryEntryUUID",
                                                  [f"('{data.uuid('DE1a')}',", f"'{data.uuid('DE1c')}')"])])
    assert names(registry, by_uuid) == {"DE1a", "DE1c"}  # any status, any type
    by_unique = run(registry, c.SQ_GET_DOCUMENTS, [("$XDSDocumentEntryUniqueId", [q(data.entries["DE1b"].unique_id)])])
    assert names(registry, by_unique) == {"DE1b"}
    by_lid = run(registry, c.SQ_GET_DOCUMENTS, [("$XDSDocumentEntryLogicalID", [q(data.uuid("DE1b"))])])
    assert names(registry, by_lid) == {"DE1b"}
    assert len(run(registry, c.SQ_GET_DOCUMENTS, [("$XDSDocumentEntryEntryUUID", ["('urn:uuid:none')"])])) == 0


def test_get_folders(registry):
    _, data = registry
    assert names(registry, run(registry, c.SQ_GET_FOLDERS, [("$XDSFolderUniqueId",
                                                             [q(data.packages["F2"].unique_id)])])) == {"F2"}
    result = run(registry, c.SQ_GET_FOLDERS, [("$XDSFolderEntryUUID", [f"('{data.uuid('F1')}')"])],
                 return_type="LeafClass")
    (folder,) = result.objects
    assert folder.get("status") == APPROVED
    assert any(slot.get("name") == "lastUpdateTime" for slot in folder.iter(f"{{{RIM}}}Slot"))


def test_get_associations(registry):
    _, data = registry
    result = run(registry, c.SQ_GET_ASSOCIATIONS, [("$uuid", [f"('{data.uuid('DE2a')}')"])])
    assert names(registry, result) == {"SS3>DE2a", "F2>DE2a"}
    result = run(registry, c.SQ_GET_ASSOCIATIONS, [("$uuid", [f"('{data.uuid('DE1a')}')"])],
                 return_type="LeafClass")
    types = sorted(element.get("associationType") for element in result.objects)
    assert types == [c.RPLC, c.HAS_MEMBER, c.HAS_MEMBER]
    deprecated_only = run(registry, c.SQ_GET_ASSOCIATIONS, [("$uuid", [f"('{data.uuid('DE1a')}')"]),
                                                            ("$XDSAssociationStatus", [f"('{DEPRECATED}')"])])
    assert len(deprecated_only) == 0


def test_get_documents_and_associations(registry):
    _, data = registry
    result = run(registry, c.SQ_GET_DOCUMENTS_AND_ASSOCIATIONS, [("$XDSDocumentEntryEntryUUID",
                                                                   [f"('{data.uuid('DE2a')}')"])])
    assert names(registry, result) == {"DE2a", "SS3>DE2a", "F2>DE2a"}


def test_get_submission_sets(registry):
    _, data = registry
    result = run(registry, c.SQ_GET_SUBMISSION_SETS, [("$uuid", [f"('{data.uuid('DE1b')}', '{data.uuid('DE1d')}')"])])
    assert names(registry, result) == {"SS1", "SS2", "SS1>DE1b", "SS2>DE1d"}
    folder = run(registry, c.SQ_GET_SUBMISSION_SETS, [("$uuid", [f"('{data.uuid('F2')}')"])])
    assert names(registry, folder) == {"SS3", "SS3>F2"}


def test_get_submission_set_and_contents(registry):
    _, data = registry
    result = run(registry, c.SQ_GET_SUBMISSION_SET_AND_CONTENTS,
                 [("$XDSSubmissionSetEntryUUID", [q(data.uuid("SS3"))])], return_type="LeafClass")
    assert names(registry, result) == {"SS3", "DE2a", "F2", "SS3>DE2a", "SS3>F2", "F2>DE2a", "SS3>F2>DE2a"}
    filtered = run(registry, c.SQ_GET_SUBMISSION_SET_AND_CONTENTS,
                   [("$XDSSubmissionSetUniqueId", [q(data.packages["SS1"].unique_id)]),
                    ("$XDSDocumentEntryFormatCode", codes("F2", scheme="1.2.2"))])
    assert names(registry, filtered) == {"SS1", "DE1b", "F1", "SS1>DE1b", "SS1>F1"}
    on_demand = run(registry, c.SQ_GET_SUBMISSION_SET_AND_CONTENTS,
                    [("$XDSSubmissionSetEntryUUID", [q(data.uuid("SS2"))]),
                     ("$XDSDocumentEntryType", [f"('{c.DE_ON_DEMAND}')"])])
    assert names(registry, on_demand) == {"SS2", "DE1c", "SS2>DE1c"}
    assert len(run(registry, c.SQ_GET_SUBMISSION_SET_AND_CONTENTS,
                   [("$XDSSubmissionSetEntryUUID", ["'urn:uuid:none'"])])) == 0


def test_get_folder_and_contents(registry):
    _, data = registry
    result = run(registry, c.SQ_GET_FOLDER_AND_CONTENTS, [("$XDSFolderEntryUUID", [q(data.uuid("F1"))])])
    found = names(registry, result)
    assert {"F1", "DE1a", "DE1d", "F1>DE1a"} <= found and found - {"F1", "DE1a", "DE1d", "F1>DE1a"} == {"?"}
    confidential = run(registry, c.SQ_GET_FOLDER_AND_CONTENTS,
                       [("$XDSFolderUniqueId", [q(data.packages["F1"].unique_id)]),
                        ("$XDSDocumentEntryConfidentialityCode", codes("N", scheme=CONF_SCHEME))])
    assert names(registry, confidential) == {"F1", "DE1a", "F1>DE1a"}


def test_get_folders_for_document(registry):
    _, data = registry
    result = run(registry, c.SQ_GET_FOLDERS_FOR_DOCUMENT, [("$XDSDocumentEntryUniqueId",
                                                            [q(data.entries["DE1d"].unique_id)])])
    assert names(registry, result) == {"F1"}
    assert len(run(registry, c.SQ_GET_FOLDERS_FOR_DOCUMENT, [("$XDSDocumentEntryEntryUUID",
                                                              [q(data.uuid("DE1b"))])])) == 0


def test_get_related_documents(registry):
    _, data = registry
    rplc = f"('{c.RPLC}', '{c.APND}')"
    result = run(registry, c.SQ_GET_RELATED_DOCUMENTS, [("$XDSDocumentEntryEntryUUID", [q(data.uuid("DE1a"))]),
                                                        ("$AssociationTypes", [rplc])])
    assert names(registry, result) == {"DE1a", "DE1d", "DE1d-RPLC-DE1a"}
    from_new = run(registry, c.SQ_GET_RELATED_DOCUMENTS, [("$XDSDocumentEntryUniqueId",
                                                           [q(data.entries["DE1d"].unique_id)]),
                                                          ("$AssociationTypes", ["('RPLC')"])],
                   return_type="LeafClass")
    assert names(registry, from_new) == {"DE1a", "DE1d", "DE1d-RPLC-DE1a"}
    unrelated = run(registry, c.SQ_GET_RELATED_DOCUMENTS, [("$XDSDocumentEntryEntryUUID", [q(data.uuid("DE1b"))]),
                                                           ("$AssociationTypes", [rplc])])
    assert len(unrelated) == 0


# ------------------------------------------------------------------------------------------------ ITI-51

def test_find_documents_for_multiple_patients(registry):
    def find(*extra):
        slots = [("$XDSDocumentEntryStatus", [f"('{APPROVED}')"]), *extra]
        return names(registry, run(registry, c.SQ_FIND_DOCUMENTS_FOR_MULTIPLE_PATIENTS, slots,
                                   return_type="LeafClass"))
    class_a = ("$XDSDocumentEntryClassCode", codes("A", scheme="1.2.1"))
    assert find(class_a, ("$XDSDocumentEntryPatientId", [f"({q(P1)}, {q(P2)})"])) == {"DE1d", "DE2a", "DE3a"}
    assert find(class_a) == {"DE1d", "DE2a", "DE3a"}  # every patient
    assert find(class_a, ("$XDSDocumentEntryPatientId", [f"({q(P3)})"])) == set()
    events = ("$XDSDocumentEntryEventCodeList", codes("E1", scheme=EVENT_SCHEME))
    assert find(events) == {"DE1b", "DE2a"}


def test_find_folders_for_multiple_patients(registry):
    slots = [("$XDSFolderStatus", [f"('{APPROVED}')"]), ("$XDSFolderPatientId", [f"({q(P1)}, {q(P2)})"])]
    assert names(registry, run(registry, c.SQ_FIND_FOLDERS_FOR_MULTIPLE_PATIENTS, slots,
                               return_type="LeafClass")) == {"F1", "F2"}
    slots.append(("$XDSFolderCodeList", codes("FC2", scheme="1.2.6")))
    assert names(registry, run(registry, c.SQ_FIND_FOLDERS_FOR_MULTIPLE_PATIENTS, slots)) == {"F1"}
