"""Step judging: status and error codes, ExpectedContents, Reports and Assertions, on hand-written responses."""

from __future__ import annotations

from datetime import date

import pytest
from lxml import etree

from ihe_engine.conformance.nist.evaluate import check_error_codes, check_error_messages, \
    check_expected_contents, check_status, evaluate_assertions, evaluate_reports, rewrite_assertion, \
    summarize_response
from ihe_engine.conformance.nist.testplan import AssertSpec, ContentCheck, DocumentEntryRule, ReportSpec, UseIdSpec

RS = "urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0"
RIM = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
QUERY = "urn:oasis:names:tc:ebxml-regrep:xsd:query:3.0"
STATUS = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:"
APPROVED = "urn:oasis:names:tc:ebxml-regrep:StatusType:Approved"
DEPRECATED = "urn:oasis:names:tc:ebxml-regrep:StatusType:Deprecated"
HAS_MEMBER = "urn:oasis:names:tc:ebxml-regrep:AssociationType:HasMember"
STABLE = "urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1"
ON_DEMAND = "urn:uuid:34268e47-fdf5-41a6-ba33-82133c465248"
SS_NODE = "urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd"
FOLDER_NODE = "urn:uuid:d9d542f3-6cc4-48b6-8870-ea235fbc94c2"


def registry_response(status: str, *errors: tuple[str, str, str]) -> etree._Element:
    error_list = "".join(f'<rs:RegistryError errorCode="{code}" codeContext="{context}" severity="{severity}"/>'
                         for code, context, severity in errors)
    body = f"<rs:RegistryErrorList>{error_list}</rs:RegistryErrorList>" if errors else ""
    return etree.fromstring(f'<rs:RegistryResponse xmlns:rs="{RS}" status="{STATUS}{status}">{body}</rs:RegistryResponse>')


ERROR = "urn:oasis:names:tc:ebxml-regrep:ErrorSeverityType:Error"
WARNING = "urn:oasis:names:tc:ebxml-regrep:ErrorSeverityType:Warning"


def ss(id_: str, status: str = APPROVED) -> str:
    return (f'<rim:RegistryPackage id="{id_}" status="{status}">'
            f'<rim:Classification classificationNode="{SS_NODE}" classifiedObject="{id_}" id="c{id_}"/>'
            f'</rim:RegistryPackage>')


def folder(id_: str, status: str = APPROVED) -> str:
    return (f'<rim:RegistryPackage id="{id_}" status="{status}"/>'
            f'<rim:Classification classificationNode="{FOLDER_NODE}" classifiedObject="{id_}" id="c{id_}"/>')


def doc(id_: str, status: str = APPROVED, kind: str = STABLE) -> str:
    return f'<rim:ExtrinsicObject id="{id_}" status="{status}" objectType="{kind}"/>'


def assoc(id_: str, source: str, target: str, kind: str = HAS_MEMBER) -> str:
    return f'<rim:Association id="{id_}" associationType="{kind}" sourceObject="{source}" targetObject="{target}"/>'


def query_response(*objects: str, status: str = "Success") -> etree._Element:
    return etree.fromstring(
        f'<query:AdhocQueryResponse xmlns:query="{QUERY}" xmlns:rim="{RIM}" status="{STATUS}{status}">'
        f'<rim:RegistryObjectList>{"".join(objects)}</rim:RegistryObjectList></query:AdhocQueryResponse>')


def contents(*names: str, **counts: int) -> tuple[ContentCheck, ...]:
    return tuple(ContentCheck(name=n) for n in names) + tuple(ContentCheck(name=n, count=c) for n, c in counts.items())


# --------------------------------------------------------------------------- status / error codes


def test_status_success_passes_and_failure_is_explained():
    assert check_status(("Success",), summarize_response(registry_response("Success"))) == []
    problems = check_status(("Success",), summarize_response(
        registry_response("Failure", ("XDSRegistryMetadataError", "bad slot", ERROR))))
    assert problems and "expected status Success, got Failure" in problems[0]
    assert "XDSRegistryMetadataError" in problems[0]


def test_status_comparison_is_case_insensitive_and_accepts_lists():
    summary = summarize_response(registry_response("PartialSuccess"))
    assert check_status(("Success", "PartialSuccess"), summary) == []
    assert check_status(("partialsuccess",), summary) == []
    assert check_status(("Success",), summary)


def test_ihe_partial_success_urn_is_accepted_but_other_prefixes_are_not():
    ihe = etree.fromstring(f'<rs:RegistryResponse xmlns:rs="{RS}" '
                           f'status="urn:ihe:iti:2007:ResponseStatusType:PartialSuccess"/>')
    assert check_status(("PartialSuccess",), summarize_response(ihe)) == []
    bogus = etree.fromstring(f'<rs:RegistryResponse xmlns:rs="{RS}" status="Success"/>')
    assert "not a ResponseStatusType URN" in check_status(("Success",), summarize_response(bogus))[0]


def test_success_with_an_error_fails_but_a_warning_does_not():
    warned = registry_response("Success", ("XDSExtraMetadataNotSaved", "ignored slot", WARNING))
    assert check_status(("Success",), summarize_response(warned)) == []
    errored = registry_response("Success", ("XDSRegistryError", "oops", ERROR))
    assert "carries errors" in check_status(("Success",), summarize_response(errored))[0]


def test_fault_expected_and_unexpected():
    fault = etree.fromstring('<soap:Fault xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Code>'
                             '<soap:Value>soap:Sender</soap:Value></soap:Code><soap:Reason><soap:Text xml:lang="en">'
                             'bad action</soap:Text></soap:Reason></soap:Fault>')
    summary = summarize_response(fault)
    assert summary.is_fault
    assert check_status(("Fault",), summary) == []
    assert "SOAP Fault" in check_status(("Success",), summary)[0]
    assert "expected a SOAP Fault" in check_status(("Fault",), summarize_response(registry_response("Success")))[0]


def test_error_code_must_be_present_exactly():
    summary = summarize_response(registry_response("Failure", ("XDSMetadataVersionError", "v", ERROR)))
    assert check_error_codes(("XDSMetadataVersionError",), summary) == []
    assert "expected error code XDSMetadataUpdateError" in check_error_codes(("XDSMetadataUpdateError",), summary)[0]


def test_error_message_matches_code_context_or_code_of_error_severity_only():
    summary = summarize_response(registry_response(
        "Failure", ("XDSRegistryError", "patient id XDSUnknownPatientId for P1", ERROR),
        ("XDSPatientIdDoesNotMatch", "warned only", WARNING)))
    assert check_error_messages(("XDSUnknownPatientId",), summary) == []
    assert check_error_messages(("XDSRegistryError",), summary) == []
    assert check_error_messages(("XDSPatientIdDoesNotMatch",), summary)


def test_retrieve_response_status_is_read_from_the_nested_registry_response():
    payload = etree.fromstring(
        f'<xds:RetrieveDocumentSetResponse xmlns:xds="urn:ihe:iti:xds-b:2007" xmlns:rs="{RS}">'
        f'<rs:RegistryResponse status="{STATUS}Failure"><rs:RegistryErrorList>'
        f'<rs:RegistryError errorCode="XDSDocumentUniqueIdError" codeContext="gone" severity="{ERROR}"/>'
        f'</rs:RegistryErrorList></rs:RegistryResponse></xds:RetrieveDocumentSetResponse>')
    summary = summarize_response(payload)
    assert summary.short_status == "Failure" and summary.errors[0].code == "XDSDocumentUniqueIdError"


# --------------------------------------------------------------------------- ExpectedContents

ONE_DOC = query_response(ss("ss1"), doc("d1"), assoc("a1", "ss1", "d1"))


def test_counts_pass_and_fail():
    assert check_expected_contents(contents(Documents=1, SubmissionSets=1, Associations=1, Folders=0), ONE_DOC) == []
    problems = check_expected_contents(contents(Documents=2, Folders=1), ONE_DOC)
    assert problems == ["Documents: expected 2, got 1", "Folders: expected 1, got 0"]


def test_ss_with_one_doc_pattern():
    assert check_expected_contents(contents("SSwithOneDoc", "DocApp", "SSApproved"), ONE_DOC) == []
    wrong_direction = query_response(ss("ss1"), doc("d1"), assoc("a1", "d1", "ss1"))
    assert "no HasMember" in check_expected_contents(contents("SSwithOneDoc"), wrong_direction)[0]
    deprecated_ss = query_response(ss("ss1", DEPRECATED), doc("d1"), assoc("a1", "ss1", "d1"))
    assert check_expected_contents(contents("SSwithOneDoc"), deprecated_ss) == \
        ["SSwithOneDoc: SubmissionSet is not Approved"]
    assert check_expected_contents(contents("SSwithOneDocOnly"), deprecated_ss) == []


def test_ss_with_two_doc_pattern():
    good = query_response(ss("s"), doc("d1"), doc("d2"), assoc("a1", "s", "d1"), assoc("a2", "s", "d2"))
    assert check_expected_contents(contents("SSwithTwoDoc"), good) == []
    assert check_expected_contents(contents("SSwithTwoDoc"), ONE_DOC)


def test_folder_patterns():
    one_fol = query_response(ss("s"), folder("f"), assoc("a1", "s", "f"))
    assert check_expected_contents(contents("SSwithOneFol", "FolApp"), one_fol) == []
    assert check_expected_contents(contents("SSwithOneFol"), ONE_DOC)
    full = query_response(ss("s"), doc("d"), folder("f"), assoc("a1", "s", "d"), assoc("a2", "s", "f"),
                          assoc("a3", "f", "d"), assoc("a4", "s", "a3"))
    assert check_expected_contents(contents("SSwithOneDocOneFol"), full) == []
    missing_membership_link = query_response(ss("s"), doc("d"), folder("f"), assoc("a1", "s", "d"),
                                             assoc("a2", "s", "f"), assoc("a3", "f", "d"), assoc("a4", "s", "d"))
    assert any("membership a3" in p for p in check_expected_contents(contents("SSwithOneDocOneFol"),
                                                                      missing_membership_link))
    two_one_in = query_response(ss("s"), doc("d1"), doc("d2"), folder("f"), assoc("a1", "s", "d1"),
                                assoc("a2", "s", "d2"), assoc("a3", "s", "f"), assoc("a4", "f", "d1"),
                                assoc("a5", "s", "a4"))
    assert check_expected_contents(contents("SSwithTwoDocOneFolOneDocInFol"), two_one_in) == []
    assert check_expected_contents(contents("SSwithTwoDocOneFol"), two_one_in)


def test_status_checks():
    mixed = query_response(doc("d1"), doc("d2", DEPRECATED))
    assert check_expected_contents(contents("OneDocApp", "OneDocDep"), mixed) == []
    assert check_expected_contents(contents("DocApp"), mixed) == \
        ["DocApp: DocumentEntry d2 is Deprecated, expected Approved"]
    assert check_expected_contents(contents("DocApp"), query_response()) == []  # no documents passes
    assert check_expected_contents(contents("DocDep"), query_response(doc("d2", DEPRECATED))) == []


def test_object_refs_and_none():
    refs = query_response('<rim:ObjectRef id="urn:uuid:1"/>', '<rim:ObjectRef id="urn:uuid:2"/>')
    assert check_expected_contents(contents(ObjectRefs=2), refs) == []
    assert check_expected_contents(contents(ObjectRefs=3), refs) == ["ObjectRefs: expected 3 ObjectRefs, got 2"]
    assert check_expected_contents(contents("None"), query_response()) == []
    assert check_expected_contents(contents("None"), ONE_DOC)
    assert check_expected_contents(contents("None"), query_response(assoc("a", "x", "y"))) == \
        ["None: expected no objects, got 1 Associations"]


def test_relation_checks():
    rplc = "urn:ihe:iti:2007:AssociationType:RPLC"
    replaced = query_response(doc("old", DEPRECATED), doc("new"), assoc("r", "new", "old", rplc))
    assert check_expected_contents(contents("HasRPLC", "DocRplcDoc"), replaced) == []
    assert check_expected_contents(contents("HasXFRM_RPLC"), replaced) == \
        ["HasXFRM_RPLC: no association of type urn:ihe:iti:2007:AssociationType:XFRM_RPLC"]
    not_deprecated = query_response(doc("old"), doc("new"), assoc("r", "new", "old", rplc))
    assert check_expected_contents(contents("DocRplcDoc"), not_deprecated)
    snapshot = query_response(doc("s"), doc("o", kind=ON_DEMAND),
                              assoc("x", "s", "o", "urn:ihe:iti:2010:AssociationType:IsSnapshotOf"))
    assert check_expected_contents(contents("HasSnapshotPattern"), snapshot) == []
    assert check_expected_contents(contents("HasSnapshotPattern"), replaced)


def test_document_entries_rules_with_use_id():
    response = query_response(doc("urn:uuid:a"), doc("urn:uuid:b", kind=ON_DEMAND))
    use = UseIdSpec(testdir="../submit", step="s", section="AssignedUuids", id="Document01", symbol="$uuid$")
    resolve = {"Document01": "urn:uuid:a"}.get

    def check(*rules):
        return check_expected_contents((ContentCheck(name="DocumentEntries", rules=rules),), response,
                                       resolve=lambda spec: resolve(spec.id))

    assert check(DocumentEntryRule(mode="Include", use_id=use, object_type=STABLE)) == []
    assert check(DocumentEntryRule(mode="Include", use_id=use, object_type=ON_DEMAND))
    assert check(DocumentEntryRule(mode="Exclude", use_id=use))
    assert "MustOnlyInclude lists 1" in check(DocumentEntryRule(mode="MustOnlyInclude", use_id=use))[0]
    assert check(DocumentEntryRule(mode="All", object_type=STABLE)) == \
        [f"DocumentEntries: DocumentEntry urn:uuid:b has objectType {ON_DEMAND}, expected {STABLE}"]


def test_unknown_check_is_an_error_and_registry_response_validity():
    assert check_expected_contents(contents("Bogus"), ONE_DOC) == ["Bogus: unknown ExpectedContents check 'Bogus'"]
    assert check_expected_contents(contents("RegistryResponseIsValid"), ONE_DOC) == []
    invalid = etree.fromstring(f'<query:AdhocQueryResponse xmlns:query="{QUERY}" status="ok"/>')
    assert check_expected_contents(contents("RegistryResponseIsValid"), invalid)


def test_folder_recognised_by_identifier_when_classification_is_absent():
    by_identifier = query_response(
        '<rim:RegistryPackage id="f" status="' + APPROVED + '"><rim:ExternalIdentifier id="e" registryObject="f" '
        'identificationScheme="urn:uuid:75df8f67-9973-4fbe-a900-df66cefecc5a" value="1.2"/></rim:RegistryPackage>')
    assert check_expected_contents(contents(Folders=1, SubmissionSets=0), by_identifier) == []


# --------------------------------------------------------------------------- Reports and Assertions


def section_log() -> etree._Element:
    """A TestResults tree as the runner builds it: a submission step then a query step."""
    return etree.fromstring(f"""<TestResults test="15800" section="query">
  <TestStep id="submit"><RegisterTransaction step="submit">
    <AssignedUuids><Assign symbol="Document01" id="urn:uuid:orig"/></AssignedUuids>
    <InputMetadata><lcm:SubmitObjectsRequest xmlns:lcm="urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"
        xmlns:rim="{RIM}"><rim:RegistryObjectList><rim:ExtrinsicObject id="urn:uuid:orig" lid="urn:uuid:orig"/>
    </rim:RegistryObjectList></lcm:SubmitObjectsRequest></InputMetadata>
    <Result><rs:RegistryResponse xmlns:rs="{RS}" status="{STATUS}Success"/></Result>
  </RegisterTransaction></TestStep>
  <TestStep id="query"><StoredQueryTransaction step="query">
    <Result>{etree.tostring(query_response(doc("urn:uuid:orig", DEPRECATED).replace('/>', ' lid="urn:uuid:orig"/>'),
                                           doc("urn:uuid:new").replace('/>', ' lid="urn:uuid:orig"/>'))).decode()}</Result>
  </StoredQueryTransaction></TestStep>
</TestResults>""")


def test_report_xpath_sees_the_whole_step_output():
    output = section_log().find("TestStep[@id='submit']/RegisterTransaction")
    values, problems = evaluate_reports((ReportSpec(name="doc_uuid", section="InputMetadata",
                                                    xpath="//*[local-name()='ExtrinsicObject'][1]/@id"),), output)
    assert values == {"doc_uuid": "urn:uuid:orig"} and problems == []
    _values, problems = evaluate_reports((ReportSpec(name="x", section="Result",
                                                     xpath="//*[local-name()='Nothing']"),), output)
    assert problems == ["Report x: no value for //*[local-name()='Nothing']"]


def test_assertions_over_the_section_log_with_substitutions():
    log = section_log()
    subs = {"orig_uuid": "urn:uuid:orig"}
    good = (AssertSpec(id="same_lid", xpath="count(//*[local-name()='ExtrinsicObject'][@lid='orig_uuid']) = 3"),
            AssertSpec(id="dep", xpath="//*[local-name()='Result']//*[local-name()='ExtrinsicObject'][@id='orig_uuid']"
                                       "/@status = 'urn:oasis:names:tc:ebxml-regrep:StatusType:Deprecated'"))
    # 3 = the submitted object (InputMetadata is in the tree) + the two returned versions
    assert evaluate_assertions(good, log, subs) == []
    bad = (AssertSpec(id="approved", xpath="//*[local-name()='Result']//*[local-name()='ExtrinsicObject']"
                                           "[@id='orig_uuid']/@status = 'Approved'"),)
    problems = evaluate_assertions(bad, log, subs)
    assert len(problems) == 1 and problems[0].startswith("Assert approved is false")
    assert evaluate_assertions((AssertSpec(id="broken", xpath="//*["),), log, subs)[0].startswith(
        "Assert broken: invalid XPath")


def test_assertion_tree_root_is_data_output_test_results():
    log = section_log()
    spec = AssertSpec(id="shape", xpath="count(/Data/output/TestResults/TestStep) = 2")
    assert evaluate_assertions((spec,), log, {}) == []


@pytest.mark.parametrize(("expression", "expected"), [
    ("'$DATE$' = '20240102'", "'20240102' = '20240102'"),
    ("'ABC' equalsIgnoreCase 'abc'", "'abc' = 'abc'"),
])
def test_assertion_rewrites(expression, expected):
    assert rewrite_assertion(expression, {}, today=date(2024, 1, 2)) == expected
