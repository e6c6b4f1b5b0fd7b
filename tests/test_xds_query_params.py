"""Stored query parameter parsing: value syntax, lists, AND/OR, codes, and each error code naming its parameter."""

from __future__ import annotations

import pytest
from lxml import etree

from ihe_engine.ns import QUERY, RIM
from ihe_engine.xds.constants import (DE_ON_DEMAND, DE_STABLE, RPLC, SQ_FIND_DOCUMENTS,
                                      SQ_FIND_DOCUMENTS_FOR_MULTIPLE_PATIENTS, SQ_GET_DOCUMENTS,
                                      SQ_GET_RELATED_DOCUMENTS, STATUS_APPROVED, STATUS_DEPRECATED, STORED_QUERIES)
from ihe_engine.xds.errors import XdsError
from ihe_engine.xds.model import Code
from ihe_engine.xds.query.definitions import QUERY_DEFINITIONS, Kind
from ihe_engine.xds.query.params import ParameterSyntaxError, parse_adhoc_query_request, parse_code, tokenize

PID = "'st3498702^^^&1.3.6.1.4.1.21367.2005.3.7&ISO'"
APPROVED = f"('{STATUS_APPROVED}')"


def request(query_id: str, slots: list[tuple[str, list[str]]], *, return_type: str | None = "LeafClass",
            home: str | None = None) -> etree._Element:
    root = etree.Element(f"{{{QUERY}}}AdhocQueryRequest", nsmap={"query": QUERY, "rim": RIM})
    option = etree.SubElement(root, f"{{{QUERY}}}ResponseOption", returnComposedObjects="true")
    if return_type is not None:
        option.set("returnType", return_type)
    query = etree.SubElement(root, f"{{{RIM}}}AdhocQuery", id=query_id)
    if home:
        query.set("home", home)
    for name, values in slots:
        value_list = etree.SubElement(etree.SubElement(query, f"{{{RIM}}}Slot", name=name), f"{{{RIM}}}ValueList")
        for value in values:
            etree.SubElement(value_list, f"{{{RIM}}}Value").text = value
    return root


def find_documents(*extra: tuple[str, list[str]], **kwargs):
    slots = [("$XDSDocumentEntryPatientId", [PID]), ("$XDSDocumentEntryStatus", [APPROVED]), *extra]
    return parse_adhoc_query_request(request(SQ_FIND_DOCUMENTS, slots, **kwargs))


def refusal(element) -> XdsError:
    with pytest.raises(XdsError) as caught:
        parse_adhoc_query_request(element)
    return caught.value


# -------------------------------------------------------------------------------------------- definitions

def test_every_stored_query_is_defined_once():
    assert set(QUERY_DEFINITIONS) == set(STORED_QUERIES)
    assert {d.name for d in QUERY_DEFINITIONS.values()} == set(STORED_QUERIES.values())
    for definition in QUERY_DEFINITIONS.values():
        assert definition.required <= set(definition.params)


def test_multi_patient_queries_take_patient_lists():
    definition = QUERY_DEFINITIONS[SQ_FIND_DOCUMENTS_FOR_MULTIPLE_PATIENTS]
    assert definition.params["$XDSDocumentEntryPatientId"].kind is Kind.STRINGS
    assert QUERY_DEFINITIONS[SQ_FIND_DOCUMENTS].params["$XDSDocumentEntryPatientId"].kind is Kind.STRING


# -------------------------------------------------------------------------------------------- syntax

def test_quoting_with_doubled_quote():
    parsed = find_documents(("$XDSDocumentEntryAuthorPerson", ["('%O''Brien%', 'Dr _mith')"]))
    assert parsed.params["$XDSDocumentEntryAuthorPerson"] == ("%O'Brien%", "Dr _mith")


def test_tokenizer_keeps_commas_and_parentheses_inside_quotes():
    tokens = tokenize("('a,b', '(c)')")
    assert [t.text for t in tokens if t.kind == "string"] == ["a,b", "(c)"]


def test_list_split_across_values_in_both_ways():
    uuids = ("urn:uuid:1", "urn:uuid:2", "urn:uuid:3")
    for values in (["('urn:uuid:1',", "'urn:uuid:2',", "'urn:uuid:3')"],
                   ["('urn:uuid:1')", "('urn:uuid:2', 'urn:uuid:3')"],
                   ["'urn:uuid:1'", "'urn:uuid:2'", "'urn:uuid:3'"]):
        parsed = parse_adhoc_query_request(request(SQ_GET_DOCUMENTS, [("$XDSDocumentEntryEntryUUID", values)]))
        assert parsed.params["$XDSDocumentEntryEntryUUID"] == uuids


def test_single_quoted_value_for_a_list_parameter():
    parsed = find_documents(("$XDSDocumentEntryAuthorPerson", ["'%Smith%'"]))
    assert parsed.params["$XDSDocumentEntryAuthorPerson"] == ("%Smith%",)


def test_unquoted_patient_id_is_tolerated():
    parsed = parse_adhoc_query_request(request(SQ_FIND_DOCUMENTS, [
        ("$XDSDocumentEntryPatientId", ["st3498702^^^&1.3.6.1.4.1.21367.2005.3.7&ISO"]),
        ("$XDSDocumentEntryStatus", [APPROVED])]))
    assert parsed.params["$XDSDocumentEntryPatientId"] == "st3498702^^^&1.3.6.1.4.1.21367.2005.3.7&ISO"


def test_times_become_range_keys():
    parsed = find_documents(("$XDSDocumentEntryCreationTimeFrom", ["2004"]),
                            ("$XDSDocumentEntryCreationTimeTo", ["200412252300"]))
    assert parsed.params["$XDSDocumentEntryCreationTimeFrom"] == "20040000000000"
    assert parsed.params["$XDSDocumentEntryCreationTimeTo"] == "20041225230000"


def test_defaults_and_given():
    parsed = find_documents()
    assert parsed.params["$XDSDocumentEntryType"] == (DE_STABLE,)
    assert "$XDSDocumentEntryType" not in parsed.given
    both = find_documents(("$XDSDocumentEntryType", [f"('{DE_STABLE}','{DE_ON_DEMAND}')"]))
    assert both.params["$XDSDocumentEntryType"] == (DE_STABLE, DE_ON_DEMAND)


def test_statuses_and_association_types_are_canonical():
    parsed = find_documents()
    assert parsed.params["$XDSDocumentEntryStatus"] == (STATUS_APPROVED,)
    short = parse_adhoc_query_request(request(SQ_FIND_DOCUMENTS, [
        ("$XDSDocumentEntryPatientId", [PID]),
        ("$XDSDocumentEntryStatus", ["('urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Approved',",
                                     "'Deprecated')"])]))
    assert short.params["$XDSDocumentEntryStatus"] == (STATUS_APPROVED, STATUS_DEPRECATED)
    related = parse_adhoc_query_request(request(SQ_GET_RELATED_DOCUMENTS, [
        ("$XDSDocumentEntryEntryUUID", ["'urn:uuid:1'"]), ("$AssociationTypes", ["('RPLC')"])]))
    assert related.params["$AssociationTypes"] == (RPLC,)


def test_code_parsing():
    assert parse_code("11369-6^^2.16.840.1.113883.6.1") == Code(code="11369-6", scheme="2.16.840.1.113883.6.1")
    assert parse_code("R^Restricted^2.16.840.1.113883.5.25").scheme == "2.16.840.1.113883.5.25"
    for wrong in ("Dialysis", "a^^", "^^1.2.3", "a^^b^c"):
        with pytest.raises(ParameterSyntaxError):
            parse_code(wrong)


def test_or_within_a_slot_and_across_values():
    parsed = find_documents(("$XDSDocumentEntryClassCode", ["('A^^1.2', 'B^^1.2')", "('C^^1.3')"]))
    groups = parsed.params["$XDSDocumentEntryClassCode"]
    assert len(groups) == 1 and [c.code for c in groups[0]] == ["A", "B", "C"]


def test_repeated_slot_is_and():
    parsed = find_documents(("$XDSDocumentEntryEventCodeList", ["('E1^^1.2')"]),
                            ("$XDSDocumentEntryEventCodeList", ["('E2^^1.2', 'E3^^1.2')"]))
    groups = parsed.params["$XDSDocumentEntryEventCodeList"]
    assert [[c.code for c in group] for group in groups] == [["E1"], ["E2", "E3"]]


def test_response_option_and_home():
    parsed = find_documents(return_type="ObjectRef", home="urn:oid:1.1.1")
    assert not parsed.leaf_class and parsed.home == "urn:oid:1.1.1"
    assert find_documents(return_type=None).leaf_class


def test_query_id_is_trimmed_and_case_insensitive():
    element = request(f"  {SQ_FIND_DOCUMENTS.upper().replace('URN:UUID', 'urn:uuid')}  ",
                      [("$XDSDocumentEntryPatientId", [PID]), ("$XDSDocumentEntryStatus", [APPROVED])])
    assert parse_adhoc_query_request(element).definition.name == "FindDocuments"


# -------------------------------------------------------------------------------------------- errors

def codes(error: XdsError) -> list[tuple[str, str | None]]:
    return [(e.error_code, e.location) for e in error.errors]


def test_unknown_stored_query():
    error = refusal(request("urn:uuid:00000000-0000-0000-0000-000000000000", []))
    assert error.error_code == "XDSUnknownStoredQuery"
    assert "00000000-0000-0000-0000-000000000000" in error.code_context


def test_missing_required_parameters_are_each_named():
    error = refusal(request(SQ_FIND_DOCUMENTS, []))
    assert codes(error) == [("XDSStoredQueryMissingParam", "$XDSDocumentEntryPatientId"),
                            ("XDSStoredQueryMissingParam", "$XDSDocumentEntryStatus")]
    assert "$XDSDocumentEntryPatientId" in error.errors[0].code_context


def test_xor_pair_missing_and_both():
    missing = refusal(request(SQ_GET_DOCUMENTS, []))
    assert missing.error_code == "XDSStoredQueryMissingParam"
    assert "$XDSDocumentEntryEntryUUID" in missing.code_context and "$XDSDocumentEntryUniqueId" in missing.code_context
    both = refusal(request(SQ_GET_DOCUMENTS, [("$XDSDocumentEntryEntryUUID", ["('urn:uuid:1')"]),
                                              ("$XDSDocumentEntryUniqueId", ["('1.2.3')"])]))
    assert both.error_code == "XDSStoredQueryParamNumber"
    assert "$XDSDocumentEntryEntryUUID" in both.code_context and "$XDSDocumentEntryUniqueId" in both.code_context


def test_several_values_where_one_is_allowed():
    error = refusal(request(SQ_FIND_DOCUMENTS, [
        ("$XDSDocumentEntryPatientId", [f"({PID}, 'other^^^&1.2&ISO')"]),
        ("$XDSDocumentEntryStatus", [APPROVED])]))
    assert codes(error) == [("XDSStoredQueryParamNumber", "$XDSDocumentEntryPatientId")]
    single_folder = refusal(request(QUERY_ID_GET_FOLDER_AND_CONTENTS, [
        ("$XDSFolderEntryUUID", ["('urn:uuid:1', 'urn:uuid:2')"])]))
    assert codes(single_folder) == [("XDSStoredQueryParamNumber", "$XDSFolderEntryUUID")]


QUERY_ID_GET_FOLDER_AND_CONTENTS = "urn:uuid:b909a503-523d-4517-8acf-8e5834dfc4c7"


def test_repeated_slot_of_a_plain_parameter():
    error = refusal(request(SQ_FIND_DOCUMENTS, [
        ("$XDSDocumentEntryPatientId", [PID]), ("$XDSDocumentEntryStatus", [APPROVED]),
        ("$XDSDocumentEntryClassCode", ["('A^^1.2')"]), ("$XDSDocumentEntryClassCode", ["('B^^1.2')"])]))
    assert codes(error) == [("XDSStoredQueryParamNumber", "$XDSDocumentEntryClassCode")]
    assert "2 times" in error.code_context


@pytest.mark.parametrize("name, value, why", [
    ("$XDSDocumentEntryClassCode", "('DEMO-Lab^^1.3.6.1.4.1.21367.100.1', 'a^^')", "code^^scheme"),
    ("$XDSDocumentEntryPracticeSettingCode", "('Dialysis')", "code^^scheme"),
    ("$XDSDocumentEntryHealthcareFacilityTypeCode", "(\u2018Emergency Department\u2019)", "commas"),
    ("$XDSDocumentEntryCreationTimeFrom", "'yesterday'", "time"),
    ("$XDSDocumentEntryCreationTimeFrom", "2004-12-25", "time"),
    ("$XDSDocumentEntryAuthorPerson", "(Smith)", "quoted"),
    ("$XDSDocumentEntryStatus", "('unterminated", "unterminated"),
    ("$XDSDocumentEntryStatus", "(('nested'))", "nested"),
    ("$XDSDocumentEntryStatus", "('a'))", "closes no list"),
    ("$XDSDocumentEntryStatus", "'a','b'", "parentheses"),
    ("$XDSDocumentEntryStatus", "()", "no value"),
])
def test_malformed_values_name_parameter_and_reason(name, value, why):
    slots = [("$XDSDocumentEntryPatientId", [PID]), ("$XDSDocumentEntryStatus", [APPROVED])]
    slots = [slot for slot in slots if slot[0] != name] + [(name, [value])]
    error = refusal(request(SQ_FIND_DOCUMENTS, slots))
    assert codes(error) == [("XDSRegistryError", name)]
    assert name in error.code_context and why in error.code_context


def test_unknown_parameter_is_ignored_with_a_warning():
    """NIST 11897/practicesetting_scheme: an obsolete parameter must not fail the query."""
    parsed = parse_adhoc_query_request(request(SQ_FIND_DOCUMENTS, [
        ("$XDSDocumentEntryPatientId", [PID]), ("$XDSDocumentEntryStatus", [APPROVED]),
        ("$XDSDocumentEntryPracticeSettingCodeScheme", ["('Connect-a-thon practiceSettingCodes')"])]))
    assert "$XDSDocumentEntryPracticeSettingCodeScheme" not in parsed.params
    assert [(w.error_code, w.location, w.is_error) for w in parsed.warnings] == [
        ("XDSRegistryError", "$XDSDocumentEntryPracticeSettingCodeScheme", False)]


def test_obsolete_code_format_is_still_refused():
    """NIST 11897/old_scheme: a code value without ^^scheme fails, whatever other parameters say."""
    error = refusal(request(SQ_FIND_DOCUMENTS, [
        ("$XDSDocumentEntryPatientId", [PID]), ("$XDSDocumentEntryStatus", [APPROVED]),
        ("$XDSDocumentEntryPracticeSettingCode", ["('Dialysis')"]),
        ("$XDSDocumentEntryPracticeSettingCodeScheme", ["('Connect-a-thon practiceSettingCodes')"])]))
    assert codes(error) == [("XDSRegistryError", "$XDSDocumentEntryPracticeSettingCode")]


def test_every_problem_is_reported_at_once():
    error = refusal(request(SQ_FIND_DOCUMENTS, [("$XDSDocumentEntryClassCode", ["('x')"])]))
    assert {code for code, _ in codes(error)} == {"XDSRegistryError", "XDSStoredQueryMissingParam"}
    assert len(error.errors) == 3


def test_multi_patient_query_needs_one_of_its_code_filters():
    error = refusal(request(SQ_FIND_DOCUMENTS_FOR_MULTIPLE_PATIENTS, [("$XDSDocumentEntryStatus", [APPROVED])]))
    assert error.error_code == "XDSStoredQueryMissingParam"
    assert "$XDSDocumentEntryClassCode" in error.code_context
    ok = parse_adhoc_query_request(request(SQ_FIND_DOCUMENTS_FOR_MULTIPLE_PATIENTS, [
        ("$XDSDocumentEntryStatus", [APPROVED]), ("$XDSDocumentEntryClassCode", ["('A^^1.2')"]),
        ("$XDSDocumentEntryPatientId", ["('p1^^^&1.2&ISO', 'p2^^^&1.2&ISO')"])]))
    assert ok.params["$XDSDocumentEntryPatientId"] == ("p1^^^&1.2&ISO", "p2^^^&1.2&ISO")


def test_metadata_level_must_be_1_or_2():
    assert find_documents(("$MetadataLevel", ["2"])).params["$MetadataLevel"] == 2
    error = refusal(request(SQ_FIND_DOCUMENTS, [
        ("$XDSDocumentEntryPatientId", [PID]), ("$XDSDocumentEntryStatus", [APPROVED]), ("$MetadataLevel", ["3"])]))
    assert codes(error) == [("XDSRegistryError", "$MetadataLevel")]


def test_unsupported_return_type_and_structure():
    assert refusal(request(SQ_FIND_DOCUMENTS, [], return_type="RegistryObject")).location == \
        "ResponseOption/@returnType"
    root = etree.Element(f"{{{QUERY}}}AdhocQueryRequest")
    etree.SubElement(root, f"{{{QUERY}}}ResponseOption", returnType="LeafClass")
    assert "no rim:AdhocQuery" in refusal(root).code_context
