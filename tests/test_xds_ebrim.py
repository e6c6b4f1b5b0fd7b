"""ebRIM parsing, LeafClass serialization and symbolic ids, on the committee examples and IPF's sample requests.

The corpus is read in place (``corpus_dir``); a missing file or schema skips, saying which.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from lxml import etree

from ihe_engine import xmlsafe
from ihe_engine.ns import LCM, QUERY, RIM, SOAP12, qn
from ihe_engine.xds import constants as c
from ihe_engine.xds.ebrim import assign_uuids, parse_submission, to_leaf_class, to_object_ref
from ihe_engine.xds.errors import (XDS_REGISTRY_METADATA_ERROR, RegistryError, XdsError, registry_response,
                                   registry_response_element)
from ihe_engine.xds.model import Association, DocumentEntry, Folder, Submission, SubmissionSet

EXAMPLES = "ihe-iti-info/examples"
IPF = "oehf-ipf/commons/ihe/xds/src/test/resources"
REQUESTS = [
    f"{EXAMPLES}/XDS.b/RegisterDocumentSet-bRequest.xml",
    f"{EXAMPLES}/XDS.b/RegisterDocumentSet-bRequest_SOAP.xml",
    f"{EXAMPLES}/XDS.b/ProvideAndRegisterDocumentSet-bRequest.xml",
    f"{EXAMPLES}/XDS.b/ProvideAndRegisterDocumentSet-bRequest_SOAP.xml",
    f"{EXAMPLES}/XDS.b/RegisterOnDemandDocumentEntryRequest_SOAP.xml",
    f"{EXAMPLES}/MU/example01/update.xml",
    f"{IPF}/SubmitObjectsRequest_ebrs30.xml",
    f"{IPF}/SubmitObjectsRequest_ebrs30_2.xml",
    f"{IPF}/SubmitObjectsRequest_ebrs3_extra_metadata.xml",
    f"{IPF}/SubmitObjectsRequest_ebrs30_update.xml",
    f"{IPF}/SubmitObjectsRequest_ebrs30_update_sameLid.xml",
    f"{IPF}/SubmitObjectsRequest_ebrs30_update_nonstandard_association.xml",
]


def _request_root(corpus: Path, relative: str) -> etree._Element:
    path = corpus / relative
    if not path.is_file():
        pytest.skip(f"corpus file {path} not found")
    root = xmlsafe.parse(path.read_bytes())
    if root.tag == qn(SOAP12, "Envelope"):
        root = next(iter(root.find(qn(SOAP12, "Body"))))
    return root


def _load(corpus: Path, relative: str) -> Submission:
    return parse_submission(_request_root(corpus, relative))


# --- model values -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("relative", REQUESTS)
def test_every_example_parses_into_one_submission_set(corpus_dir, relative):
    submission = _load(corpus_dir, relative)
    assert len(submission.submission_sets) == 1
    assert len(submission.objects) >= len(submission.registry_objects())


def test_register_example_values(corpus_dir):
    submission = _load(corpus_dir, REQUESTS[0])
    entry, = submission.entries
    assert entry.entry_uuid == "Document01" and entry.mime_type == "text/xml" and entry.object_type == c.DE_STABLE
    assert entry.patient_id == "SELF-5^^^&1.3.6.1.4.1.21367.2005.3.7&ISO"
    assert entry.unique_id == "1.3.6.1.4.1.21367.2005.3.9999.32"
    assert entry.source_patient_id == "ST-1000^^^&1.3.6.1.4.1.21367.2003.3.9&ISO"
    assert len(entry.source_patient_info) == 5 and entry.source_patient_info[1] == "PID-5|Doe^John^^^"
    assert entry.creation_time == "20051224" and entry.creation_time_key == "20051224000000"
    assert (entry.service_start_time, entry.service_stop_time) == ("200412230800", "200412230801")
    assert entry.language_code == "en-us" and entry.title == "Physical"
    assert entry.class_code.code == "History and Physical"
    assert entry.class_code.scheme == "Connect-a-thon classCodes"
    assert [code.code for code in entry.confidentiality_codes] == ["1.3.6.1.4.1.21367.2006.7.101"]
    assert entry.confidentiality_codes[0].display == "Clinical-Staff"
    assert entry.type_code.query_form() == "34108-1^^LOINC"
    assert entry.format_code.code == "CDAR2/IHE 1.0"
    assert entry.healthcare_facility_type_code.code == "Outpatient"
    assert entry.practice_setting_code.code == "General Medicine"
    author, = entry.authors
    assert author.person == "Gerald Smitty"
    assert author.institutions == ("Cleveland Clinic", "Parma Community")
    assert author.roles == ("Attending",) and author.specialties == ("Orthopedic",)
    assert entry.hash is None and entry.size is None and entry.repository_unique_id is None

    submission_set = submission.submission_set
    assert submission_set.unique_id == "1.3.6.1.4.1.21367.2005.3.9999.33"
    assert submission_set.source_id == "3670984664"
    assert submission_set.patient_id == entry.patient_id
    assert submission_set.submission_time == "20041225235050"
    assert submission_set.content_type_code.code == "History and Physical"
    assert submission_set.comments == "Annual physical"
    assert submission_set.authors[0].person == "Sherry Dopplemeyer"
    # The SubmissionSet node classification is a separate top-level element there.
    node, = [cl for cl in submission_set.classifications if cl.node == c.SS_CLASSIFICATION_NODE]
    assert not node.nested and node.id == "cl10"

    association, = submission.associations
    assert association.association_type == c.HAS_MEMBER  # submitted as the bare "HasMember"
    assert (association.source, association.target) == ("SubmissionSet01", "Document01")
    assert association.submission_set_status == "Original"


def test_soap_and_plain_examples_agree(corpus_dir):
    plain, soap = _load(corpus_dir, REQUESTS[0]), _load(corpus_dir, REQUESTS[1])
    assert plain.entries == soap.entries and plain.submission_sets == soap.submission_sets


def test_provide_and_register_documents(corpus_dir):
    submission = _load(corpus_dir, REQUESTS[2])
    document, = submission.documents
    assert document.id == "Document01" and document.xop_href is None
    content = document.inline_bytes()
    assert content == base64.b64decode("UjBsR09EbGhjZ0dTQUxNQUFBUUNBRU1tQ1p0dU1GUXhEUzhi")
    assert submission.entries[0].entry_uuid == document.id


def test_on_demand_example(corpus_dir):
    entry, = _load(corpus_dir, REQUESTS[4]).entries
    assert entry.object_type == c.DE_ON_DEMAND and entry.on_demand and entry.creation_time is None


def test_metadata_update_example(corpus_dir):
    submission = _load(corpus_dir, REQUESTS[5])
    entry, = submission.entries
    assert entry.lid == "urn:uuid:20744602-ba65-44e9-87ee-a52303a5183e" and entry.version == "1"
    assert entry.status == c.STATUS_APPROVED
    assert entry.hash == "31e311402a7e717d1bede88df6b42c0b8e91ea91" and entry.size == "1459"
    assert entry.size_int == 1459 and entry.repository_unique_id == "1.19.6.24.109.42.1.5"
    assert entry.uri == "http://129.6.24.109:9080/Repository/1.42.20100709101812.2.txt"
    assert [a.person for a in entry.authors] == ["^Smitty^Gerald^^^", "^Dopplemeyer^Sherry^^^"]
    association, = submission.associations
    assert association.previous_version == "1" and association.submission_set_status == "Original"


def test_ipf_examples(corpus_dir):
    first = _load(corpus_dir, REQUESTS[6])
    # identificationScheme values are wrapped inside the UUID there ("...-92fd- a8ffeff98427"): still recognised.
    assert first.entries[0].patient_id == "SELF-5^^^&1.3.6.1.4.1.21367.2005.3.7&ISO"
    assert first.submission_set.content_type_code.code == "History and Physical"
    snapshot = first.associations[1]
    assert snapshot.association_type == c.IS_SNAPSHOT_OF
    assert snapshot.target == "urn:uuid:e0985823-dc50-45a5-a6c8-a11a829893bd"
    # _2 nests the SubmissionSet classification inside the package.
    nested = _load(corpus_dir, REQUESTS[7]).submission_set
    assert [cl.nested for cl in nested.classifications if cl.node == c.SS_CLASSIFICATION_NODE] == [True]
    extra = _load(corpus_dir, REQUESTS[8]).entries[0]
    assert extra.slot_values("urn:my:company:slot") == ("somevalue",)
    update = _load(corpus_dir, REQUESTS[9])
    availability = update.associations[1]
    assert availability.association_type == c.UPDATE_AVAILABILITY_STATUS
    assert (availability.original_status, availability.new_status) == (c.STATUS_APPROVED, c.STATUS_DEPRECATED)
    assert update.entries[0].document_availability == c.AVAILABILITY_OFFLINE
    nonstandard = _load(corpus_dir, REQUESTS[11])
    assert nonstandard.submission_set.entry_uuid == "urn:uuid:e2ad0bfe-4e04-41ae-99ab-f0e6ce6f7fcc"
    assert nonstandard.associations[0].association_type == "urn:elga-bes:AssociationType:NonVersioningUpdate"


def test_unknown_root_is_refused():
    with pytest.raises(XdsError) as caught:
        parse_submission(b"<nothing/>")
    assert caught.value.error_code == XDS_REGISTRY_METADATA_ERROR


# --- LeafClass round trip ------------------------------------------------------------------------------------------

def _structure(element: etree._Element, detached: list[etree._Element] = ()) -> dict:
    """Everything submitted about an object, order-free: slots, classifications, external identifiers, texts."""
    def slots(owner):
        return sorted((s.get("name"), tuple((v.text or "").strip() for v in s.iter(qn(RIM, "Value"))))
                      for s in owner.iterchildren(qn(RIM, "Slot")))

    def localized(owner, tag):
        found = owner.find(qn(RIM, tag))
        string = found.find(qn(RIM, "LocalizedString")) if found is not None else None
        return string.get("value") if string is not None else None

    classifications = [*element.iterchildren(qn(RIM, "Classification")), *detached]
    return {
        "slots": slots(element),
        "name": localized(element, "Name"),
        "description": localized(element, "Description"),
        "classifications": sorted(
            (cl.get("classificationScheme") or "", cl.get("classificationNode") or "",
             cl.get("nodeRepresentation") or "", repr(slots(cl)), localized(cl, "Name") or "")
            for cl in classifications),
        "identifiers": sorted((ei.get("identificationScheme"), ei.get("value"))
                              for ei in element.iterchildren(qn(RIM, "ExternalIdentifier"))),
    }


@pytest.mark.parametrize("relative", REQUESTS)
def test_leaf_class_keeps_everything_submitted(corpus_dir, relative):
    submission = _load(corpus_dir, relative)
    for obj in submission.registry_objects():
        detached = [cl.element for cl in obj.classifications if not cl.nested]
        expected = _structure(obj.element, detached)
        leaf = to_leaf_class(obj, status=c.STATUS_APPROVED)
        assert _structure(leaf) == expected, obj.entry_uuid
        assert leaf.get("status") == c.STATUS_APPROVED and leaf.get("id") == obj.entry_uuid
        assert obj.element.get("status") in (None, c.STATUS_APPROVED)  # the kept original is untouched


def test_leaf_class_adds_registry_values(corpus_dir):
    entry = _load(corpus_dir, REQUESTS[8]).entries[0]
    leaf = to_leaf_class(entry, status=c.STATUS_APPROVED, home="urn:oid:1.2.3",
                         slots={"repositoryUniqueId": ["1.2.3.4"], "hash": ["ab" * 20], "size": ["36"]},
                         lid="urn:uuid:11111111-2222-3333-4444-555555555555", version="2")
    reparsed = parse_submission(_wrap([leaf, _submission_set_of(corpus_dir, REQUESTS[8])])).entries[0]
    assert reparsed.repository_unique_id == "1.2.3.4" and reparsed.hash == "ab" * 20 and reparsed.size == "36"
    assert reparsed.home == "urn:oid:1.2.3" and reparsed.version == "2" and reparsed.lid.endswith("5555")
    assert reparsed.slot_values("urn:my:company:slot") == ("somevalue",)  # the extra slot is still there
    # Setting an existing slot replaces its values instead of adding a second slot.
    again = to_leaf_class(reparsed.__class__(**{**reparsed.__dict__, "element": leaf}), slots={"size": ["37"]})
    assert [s.get("name") for s in again.iterchildren(qn(RIM, "Slot"))].count("size") == 1


def test_leaf_class_of_folder_and_association():
    from test_xds_validation import valid_request
    submission = parse_submission(valid_request())
    folder = submission.folders[0]
    leaf = to_leaf_class(folder, status=c.STATUS_APPROVED, slots={"lastUpdateTime": ["20240102030405"]})
    assert parse_submission(_wrap([leaf, to_leaf_class(submission.submission_set)])).folders[0].last_update_time \
        == "20240102030405"
    bare = etree.fromstring(valid_request().replace(c.HAS_MEMBER.encode(), b"HasMember"))
    association = parse_submission(bare).associations[0]
    assert to_leaf_class(association).get("associationType") == c.HAS_MEMBER


def test_object_ref():
    ref = to_object_ref("urn:uuid:11111111-2222-3333-4444-555555555555", home="urn:oid:1.2.3")
    assert ref.tag == qn(RIM, "ObjectRef") and ref.get("home") == "urn:oid:1.2.3"
    assert to_object_ref("urn:uuid:x").get("home") is None


def _submission_set_of(corpus: Path, relative: str) -> etree._Element:
    return to_leaf_class(_load(corpus, relative).submission_set)


def _wrap(elements) -> etree._Element:
    root = etree.Element(qn(LCM, "SubmitObjectsRequest"), nsmap={"lcm": LCM, "rim": RIM})
    object_list = etree.SubElement(root, qn(RIM, "RegistryObjectList"))
    object_list.extend(elements)
    return root


# --- symbolic ids ----------------------------------------------------------------------------------------------------

def _ids(element: etree._Element) -> list[str]:
    return [e.get("id") for e in element.iter(etree.Element) if e.get("id")]


@pytest.mark.parametrize("relative", REQUESTS)
def test_assign_uuids_is_consistent(corpus_dir, relative):
    submission = _load(corpus_dir, relative)
    before = [etree.tostring(obj.element) for obj in submission.objects]
    counter = iter(range(10_000))
    assigned, mapping = assign_uuids(
        submission, make_uuid=lambda: f"urn:uuid:00000000-0000-0000-0000-{next(counter):012d}")
    assert [etree.tostring(obj.element) for obj in submission.objects] == before  # input untouched
    assert len(set(mapping.values())) == len(mapping)
    for obj in assigned.objects:
        if obj.element is not None and obj.element.tag != qn(RIM, "ObjectRef"):
            assert all(i.startswith("urn:uuid:") for i in _ids(obj.element))
    originals = submission.by_id()
    for obj in assigned.registry_objects():
        for classification in obj.classifications:
            assert classification.classified_object == obj.entry_uuid
            assert classification.element.get("classifiedObject") == obj.entry_uuid
            if classification.nested:
                assert classification.element.getparent() is obj.element
        for identifier in obj.external_identifiers:
            assert identifier.registry_object == obj.entry_uuid
    for old, new in zip(submission.associations, assigned.associations):
        assert new.source == mapping.get(old.source, old.source)
        assert new.target == mapping.get(old.target, old.target)
    for old_id, old in originals.items():
        new_id = mapping.get(old_id, old_id)
        assert assigned.by_id()[new_id].__class__ is old.__class__
        if old_id.startswith("urn:uuid:"):
            assert old_id not in mapping  # existing UUIDs are kept
    for old, new in zip(submission.documents, assigned.documents):
        assert new.id == mapping[old.id] == assigned.entries[0].entry_uuid


def test_assign_uuids_keeps_lid_and_existing_uuids(corpus_dir):
    submission = _load(corpus_dir, f"{IPF}/SubmitObjectsRequest_ebrs30_update_sameLid.xml")
    assigned, mapping = assign_uuids(submission)
    existing, second = assigned.entries
    assert existing.entry_uuid == "urn:uuid:3add0984-7adf-4e05-913d-20c65ef6a464"
    assert second.entry_uuid == mapping["Document02"]
    assert existing.lid == second.lid == "urn:uuid:20744602-ba65-44e9-87ee-a52303a5183e"


def test_assign_uuids_rewrites_a_symbolic_lid():
    from test_xds_validation import valid_request
    root = etree.fromstring(valid_request())
    root.find(f".//{{{RIM}}}ExtrinsicObject").set("lid", "Doc1")
    assigned, mapping = assign_uuids(parse_submission(root))
    assert assigned.entries[0].lid == assigned.entries[0].entry_uuid == mapping["Doc1"]
    # the folder-membership association (a3) is the target of a4: references between associations follow too
    a3, a4 = assigned.associations[2], assigned.associations[3]
    assert a4.target == a3.entry_uuid == mapping["a3"]


def test_assign_uuids_without_symbols_is_identity():
    from test_xds_validation import valid_request
    once, _ = assign_uuids(parse_submission(valid_request()))
    twice, mapping = assign_uuids(once)
    assert mapping == {} and twice is once


# --- schema validity ------------------------------------------------------------------------------------------

def _adhoc_response(elements) -> etree._Element:
    response = etree.Element(qn(QUERY, "AdhocQueryResponse"), status=c.RESPONSE_SUCCESS,
                             nsmap={"query": QUERY, "rim": RIM})
    etree.SubElement(response, qn(RIM, "RegistryObjectList")).extend(elements)
    return response


@pytest.mark.parametrize("relative", REQUESTS)
def test_leaf_class_validates_against_the_official_schema(corpus_dir, query_schema, relative):
    submission = _load(corpus_dir, relative)
    assigned, _ = assign_uuids(submission)
    elements = []
    for obj in assigned.registry_objects():
        extra = {}
        if isinstance(obj, DocumentEntry):
            extra = {"slots": {"repositoryUniqueId": ["1.2.3"], "hash": ["ab" * 20], "size": ["1"]},
                     "lid": obj.lid or obj.entry_uuid, "version": "1"}
        elif isinstance(obj, Folder):
            extra = {"slots": {"lastUpdateTime": ["20240101000000"]}}
        elements.append(to_leaf_class(obj, status=c.STATUS_APPROVED, **extra))
    elements.append(to_object_ref("urn:uuid:e0985823-dc50-45a5-a6c8-a11a829893bd"))
    response = _adhoc_response(elements)
    assert query_schema.validate(response), query_schema.error_log


def test_schema_check_is_strict(query_schema):
    from test_xds_validation import valid_request
    leaf = to_leaf_class(parse_submission(valid_request()).entries[0])
    leaf.append(etree.Element(qn(RIM, "Slot"), name="misplaced"))  # a Slot after ExternalIdentifier
    assert not query_schema.validate(_adhoc_response([leaf]))


def test_registry_response_validates(query_schema):
    errors = [RegistryError(error_code=XDS_REGISTRY_METADATA_ERROR, code_context="DocumentEntry D: bad",
                            location="ExtrinsicObject[@id='D']"),
              RegistryError(error_code="XDSExtraMetadataNotSaved", code_context="extra", severity=c.SEVERITY_WARNING)]
    failure = registry_response_element(registry_response(errors))
    assert failure.get("status") == c.RESPONSE_FAILURE
    assert query_schema.validate(failure), query_schema.error_log
    warning_only = registry_response(errors[1:])
    assert warning_only.status == c.RESPONSE_SUCCESS
    assert query_schema.validate(registry_response_element(warning_only)), query_schema.error_log
    assert registry_response(errors, partial_allowed=True, any_success=True).status == c.RESPONSE_PARTIAL_SUCCESS
    element = registry_response_element(registry_response())
    assert len(element) == 0 and element.get("status") == c.RESPONSE_SUCCESS


def test_xds_error_carries_every_error():
    errors = [RegistryError(error_code="A", code_context="first"), RegistryError(error_code="B", code_context="2nd")]
    error = XdsError.from_errors(errors)
    assert error.errors == tuple(errors) and error.code == "A" and str(error) == "first"
    with pytest.raises(ValueError):
        XdsError.from_errors([])


def test_many_entries_in_one_submission():
    from test_xds_validation import valid_request
    root = etree.fromstring(valid_request())
    object_list = root.find(qn(RIM, "RegistryObjectList"))
    template = object_list.find(qn(RIM, "ExtrinsicObject"))
    for n in range(100):
        copy = etree.fromstring(etree.tostring(template).replace(b'"Doc1"', f'"Doc{n + 2}"'.encode()))
        object_list.append(copy)
    submission = parse_submission(root)
    assert len(submission.entries) == 101
    assert isinstance(submission.entries[-1], DocumentEntry) and isinstance(submission.submission_set, SubmissionSet)
    assert all(isinstance(a, Association) for a in submission.associations)
