"""Structural checks of ihe_engine.xds.validation: each rule fails with its exact code and a precise codeContext."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from lxml import etree

from ihe_engine.ns import LCM, RIM
from ihe_engine.xds import constants as c
from ihe_engine.xds.ebrim import parse_submission
from ihe_engine.xds.errors import (XDS_PATIENT_ID_DOES_NOT_MATCH, XDS_REGISTRY_DUPLICATE_UNIQUE_ID_IN_MESSAGE,
                                   XDS_REGISTRY_METADATA_ERROR, XDS_REPOSITORY_METADATA_ERROR, XdsError)
from ihe_engine.xds.model import dtm_key, is_xds_dtm
from ihe_engine.xds.validation import Sender, check_submission, validate_submission

PID = "P20240101.1^^^&1.3.6.1.4.1.21367.13.20.1000&ISO"
NS = {"rim": RIM, "lcm": LCM}


def _slot(name: str, *values: str) -> str:
    inner = "".join(f"<rim:Value>{v}</rim:Value>" for v in values)
    return f'<rim:Slot name="{name}"><rim:ValueList>{inner}</rim:ValueList></rim:Slot>'


def _code(cid: str, scheme: str, obj: str, code: str, coding_scheme: str, display: str) -> str:
    return (f'<rim:Classification id="{cid}" classificationScheme="{scheme}" classifiedObject="{obj}" '
            f'nodeRepresentation="{code}">{_slot("codingScheme", coding_scheme)}'
            f'<rim:Name><rim:LocalizedString value="{display}"/></rim:Name></rim:Classification>')


def _identifier(eid: str, scheme: str, obj: str, value: str, name: str) -> str:
    return (f'<rim:ExternalIdentifier id="{eid}" identificationScheme="{scheme}" registryObject="{obj}" '
            f'value="{value}"><rim:Name><rim:LocalizedString value="{name}"/></rim:Name></rim:ExternalIdentifier>')


def valid_request(pid: str = PID) -> bytes:
    """An ITI-42 request with one DocumentEntry, a SubmissionSet and a Folder, using NIST codes.xml codes."""
    loinc, snomed, conf = "2.16.840.1.113883.6.1", "2.16.840.1.113883.6.96", "2.16.840.1.113883.5.25"
    entry = (
        f'<rim:ExtrinsicObject id="Doc1" mimeType="text/xml" objectType="{c.DE_STABLE}">'
        + _slot("creationTime", "20240102030405") + _slot("hash", "da39a3ee5e6b4b0d3255bfef95601890afd80709")
        + _slot("size", "0") + _slot("languageCode", "en-us") + _slot("repositoryUniqueId", "1.2.3.4")
        + _slot("serviceStartTime", "202401010800") + _slot("serviceStopTime", "202401010900")
        + _slot("sourcePatientId", "L-1^^^&amp;1.2.3&amp;ISO")
        + _slot("urn:example:extra", "kept")
        + '<rim:Name><rim:LocalizedString value="Discharge letter"/></rim:Name>'
        + f'<rim:Classification id="auth1" classificationScheme="{c.DE_AUTHOR}" classifiedObject="Doc1" '
          f'nodeRepresentation="">{_slot("authorPerson", "^Doe^Jane")}'
          f'{_slot("authorInstitution", "Hospital^^^^^^^^^1.2.3.9")}</rim:Classification>'
        + _code("cc", c.DE_CLASS_CODE, "Doc1", "REPORTS", "1.3.6.1.4.1.19376.1.2.6.1", "Reports")
        + _code("conf", c.DE_CONFIDENTIALITY_CODE, "Doc1", "N", conf, "normal")
        + _code("fmt", c.DE_FORMAT_CODE, "Doc1", "urn:ihe:pcc:xds-ms:2007", "1.3.6.1.4.1.19376.1.2.3", "XDS-MS")
        + _code("hcft", c.DE_HEALTHCARE_FACILITY_TYPE_CODE, "Doc1", "22232009", snomed, "Hospital")
        + _code("ps", c.DE_PRACTICE_SETTING_CODE, "Doc1", "309927009", snomed, "General medicine")
        + _code("tc", c.DE_TYPE_CODE, "Doc1", "11488-4", loinc, "Consultation note")
        + _identifier("e1", c.DE_PATIENT_ID, "Doc1", pid.replace("&", "&amp;"), "XDSDocumentEntry.patientId")
        + _identifier("e2", c.DE_UNIQUE_ID, "Doc1", "1.2.3.4.5.6.1", "XDSDocumentEntry.uniqueId")
        + "</rim:ExtrinsicObject>")
    submission_set = (
        '<rim:RegistryPackage id="SS">' + _slot("submissionTime", "20240102030500")
        + _code("ct", c.SS_CONTENT_TYPE_CODE, "SS", "22232009", snomed, "Hospital")
        + _identifier("e3", c.SS_UNIQUE_ID, "SS", "1.2.3.4.5.6.2", "XDSSubmissionSet.uniqueId")
        + _identifier("e4", c.SS_SOURCE_ID, "SS", "1.3.6.1.4.1.21367.4", "XDSSubmissionSet.sourceId")
        + _identifier("e5", c.SS_PATIENT_ID, "SS", pid.replace("&", "&amp;"), "XDSSubmissionSet.patientId")
        + "</rim:RegistryPackage>"
        + f'<rim:Classification id="ssnode" classifiedObject="SS" classificationNode="{c.SS_CLASSIFICATION_NODE}"/>')
    folder = (
        '<rim:RegistryPackage id="F1"><rim:Name><rim:LocalizedString value="Referrals"/></rim:Name>'
        + f'<rim:Classification id="fnode" classifiedObject="F1" classificationNode="{c.FOLDER_CLASSIFICATION_NODE}"/>'
        + _code("fc", c.FOLDER_CODE_LIST, "F1", "Referrals", "1.3.6.1.4.1.21367.2017.3", "Referrals")
        + _identifier("e6", c.FOLDER_UNIQUE_ID, "F1", "1.2.3.4.5.6.3", "XDSFolder.uniqueId")
        + _identifier("e7", c.FOLDER_PATIENT_ID, "F1", pid.replace("&", "&amp;"), "XDSFolder.patientId")
        + "</rim:RegistryPackage>")
    associations = (
        f'<rim:Association id="a1" associationType="{c.HAS_MEMBER}" sourceObject="SS" targetObject="Doc1">'
        + _slot("SubmissionSetStatus", "Original") + "</rim:Association>"
        + f'<rim:Association id="a2" associationType="{c.HAS_MEMBER}" sourceObject="SS" targetObject="F1"/>'
        + f'<rim:Association id="a3" associationType="{c.HAS_MEMBER}" sourceObject="F1" targetObject="Doc1"/>'
        + f'<rim:Association id="a4" associationType="{c.HAS_MEMBER}" sourceObject="SS" targetObject="a3"/>')
    return (f'<lcm:SubmitObjectsRequest xmlns:lcm="{LCM}" xmlns:rim="{RIM}"><rim:RegistryObjectList>'
            f"{entry}{submission_set}{folder}{associations}</rim:RegistryObjectList></lcm:SubmitObjectsRequest>"
            ).encode()


def _errors(mutate: Callable[[etree._Element], None] | None = None, *, sender=Sender.DOCUMENT_REPOSITORY, **kw):
    root = etree.fromstring(valid_request())
    if mutate:
        mutate(root)
    return validate_submission(parse_submission(root), sender=sender, **kw)


def _only(errors, code: str, *fragments: str):
    assert [e.error_code for e in errors] == [code], [(e.error_code, e.code_context) for e in errors]
    for fragment in fragments:
        assert fragment in errors[0].code_context, errors[0].code_context
    return errors[0]


def _find(root, xpath: str) -> etree._Element:
    return root.xpath(xpath, namespaces=NS)[0]


def _remove(xpath: str):
    def mutate(root):
        element = _find(root, xpath)
        element.getparent().remove(element)
    return mutate


def _set_slot(name: str, value: str, owner: str = "Doc1"):
    def mutate(root):
        _find(root, f"//*[@id='{owner}']/rim:Slot[@name='{name}']//rim:Value").text = value
    return mutate


def test_valid_submission_has_no_errors():
    assert _errors() == []
    check_submission(parse_submission(valid_request()))  # does not raise


def test_no_submission_set():
    def mutate(root):
        for xpath in ("//rim:RegistryPackage[@id='SS']", "//rim:Classification[@id='ssnode']"):
            _remove(xpath)(root)
    errors = _errors(mutate)
    assert errors[0].error_code == XDS_REGISTRY_METADATA_ERROR
    assert "exactly one SubmissionSet" in errors[0].code_context and "has 0" in errors[0].code_context


def test_two_submission_sets():
    def mutate(root):
        second = etree.fromstring(etree.tostring(_find(root, "//rim:RegistryPackage[@id='SS']")))
        second.set("id", "SS2")
        for child in second.iter():
            if child.get("classifiedObject") or child.get("registryObject"):
                child.set("registryObject" if child.get("registryObject") else "classifiedObject", "SS2")
        node = etree.SubElement(second, f"{{{RIM}}}Classification", id="ss2node", classifiedObject="SS2",
                                classificationNode=c.SS_CLASSIFICATION_NODE)
        assert node is not None
        _find(root, "//rim:RegistryObjectList").append(second)
    errors = _errors(mutate)
    assert "has 2" in errors[0].code_context
    assert any(e.error_code == XDS_REGISTRY_DUPLICATE_UNIQUE_ID_IN_MESSAGE for e in errors)


def test_duplicate_entry_uuid():
    def mutate(root):
        _find(root, "//rim:Association[@id='a4']").set("id", "a3")
    error = _only(_errors(mutate), XDS_REGISTRY_METADATA_ERROR, "id a3 is used by 2 objects")
    assert error.location == "Association[@id='a3']"


@pytest.mark.parametrize("xpath, attribute", [
    ("//rim:Classification[@id='cc']", "classCode"),
    ("//rim:Classification[@id='conf']", "confidentialityCode"),
    ("//rim:Slot[@name='creationTime']", "creationTime"),
    ("//rim:Classification[@id='fmt']", "formatCode"),
    ("//rim:Classification[@id='hcft']", "healthcareFacilityTypeCode"),
    ("//rim:Slot[@name='languageCode']", "languageCode"),
    ("//rim:Classification[@id='ps']", "practiceSettingCode"),
    ("//rim:Slot[@name='sourcePatientId']", "sourcePatientId"),
    ("//rim:Classification[@id='tc']", "typeCode"),
    ("//rim:ExternalIdentifier[@id='e1']", "patientId"),
    ("//rim:ExternalIdentifier[@id='e2']", "uniqueId"),
    ("//rim:Slot[@name='hash']", "hash"),
    ("//rim:Slot[@name='size']", "size"),
    ("//rim:Slot[@name='repositoryUniqueId']", "repositoryUniqueId"),
])
def test_missing_document_entry_attribute(xpath, attribute):
    error = _only(_errors(_remove(xpath)), XDS_REGISTRY_METADATA_ERROR,
                  f"DocumentEntry Doc1: required attribute {attribute} is missing")
    assert error.location == f"ExtrinsicObject[@id='Doc1']/{attribute}"


def test_missing_mime_type():
    def mutate(root):
        del _find(root, "//rim:ExtrinsicObject").attrib["mimeType"]
    _only(_errors(mutate), XDS_REGISTRY_METADATA_ERROR, "required attribute mimeType is missing")


@pytest.mark.parametrize("slot", ["hash", "size", "repositoryUniqueId"])
def test_document_source_may_omit_repository_values(slot):
    assert _errors(_remove(f"//rim:Slot[@name='{slot}']"), sender=Sender.DOCUMENT_SOURCE) == []


def test_on_demand_entry_needs_no_creation_time_nor_hash():
    def mutate(root):
        _find(root, "//rim:ExtrinsicObject").set("objectType", c.DE_ON_DEMAND)
        for name in ("creationTime", "hash", "size"):
            _remove(f"//rim:Slot[@name='{name}']")(root)
    assert _errors(mutate) == []


def test_unknown_object_type():
    def mutate(root):
        _find(root, "//rim:ExtrinsicObject").set("objectType", "urn:uuid:00000000-0000-0000-0000-000000000000")
    _only(_errors(mutate), XDS_REGISTRY_METADATA_ERROR, "objectType urn:uuid:00000000")


@pytest.mark.parametrize("xpath, owner, attribute", [
    ("//rim:Classification[@id='ct']", "SubmissionSet SS", "contentTypeCode"),
    ("//rim:ExternalIdentifier[@id='e4']", "SubmissionSet SS", "sourceId"),
    ("//rim:Slot[@name='submissionTime']", "SubmissionSet SS", "submissionTime"),
    ("//rim:ExternalIdentifier[@id='e3']", "SubmissionSet SS", "uniqueId"),
    ("//rim:Classification[@id='fc']", "Folder F1", "codeList"),
    ("//rim:RegistryPackage[@id='F1']/rim:Name", "Folder F1", "title"),
    ("//rim:ExternalIdentifier[@id='e6']", "Folder F1", "uniqueId"),
])
def test_missing_package_attribute(xpath, owner, attribute):
    _only(_errors(_remove(xpath)), XDS_REGISTRY_METADATA_ERROR, f"{owner}: required attribute {attribute} is missing")


def test_submission_set_status_required_on_entry_membership():
    error = _only(_errors(_remove("//rim:Association[@id='a1']/rim:Slot")), XDS_REGISTRY_METADATA_ERROR,
                  "Association a1", "lacks the SubmissionSetStatus slot")
    assert error.location == "Association[@id='a1']/Slot[@name='SubmissionSetStatus']"


def test_submission_set_status_value():
    _only(_errors(_set_slot("SubmissionSetStatus", "Copy", owner="a1")), XDS_REGISTRY_METADATA_ERROR,
          "SubmissionSetStatus 'Copy' is neither Original nor Reference")


def test_entry_must_be_member_of_the_submission_set():
    def mutate(root):
        _find(root, "//rim:Association[@id='a1']").set("sourceObject", "F1")
    errors = _errors(mutate)
    assert [e.error_code for e in errors] == [XDS_REGISTRY_METADATA_ERROR]
    assert "DocumentEntry Doc1: not linked to SubmissionSet SS" in errors[0].code_context


def test_document_unique_id_too_long():
    def mutate(root):
        _find(root, "//rim:ExternalIdentifier[@id='e2']").set("value", "1." + "2" * 127)
    _only(_errors(mutate), XDS_REGISTRY_METADATA_ERROR, "DocumentEntry Doc1: uniqueId", "at most 128")


def test_document_unique_id_of_128_characters_is_fine():
    def mutate(root):
        _find(root, "//rim:ExternalIdentifier[@id='e2']").set("value", "1." + "2" * 126)
    assert _errors(mutate) == []


@pytest.mark.parametrize("value", ["not-an-oid", "1.2.3.", "1.02.3", "9.1", "1." + "1" * 64])
def test_submission_set_unique_id_must_be_an_oid(value):
    def mutate(root):
        _find(root, "//rim:ExternalIdentifier[@id='e3']").set("value", value)
    _only(_errors(mutate), XDS_REGISTRY_METADATA_ERROR, f"SubmissionSet SS: uniqueId {value!r} is not an OID")


def test_folder_unique_id_must_be_an_oid():
    def mutate(root):
        _find(root, "//rim:ExternalIdentifier[@id='e6']").set("value", "folder-1")
    _only(_errors(mutate), XDS_REGISTRY_METADATA_ERROR, "Folder F1: uniqueId 'folder-1' is not an OID")


def test_service_start_after_stop():
    error = _only(_errors(_set_slot("serviceStartTime", "202401011000")), XDS_REGISTRY_METADATA_ERROR,
                  "serviceStartTime 202401011000 is after serviceStopTime 202401010900")
    assert error.location == "ExtrinsicObject[@id='Doc1']/Slot[@name='serviceStartTime']"


@pytest.mark.parametrize("value", ["2024-01-02", "20240102T0304", "202401020", "20240102030405+0100"])
def test_bad_creation_time(value):
    _only(_errors(_set_slot("creationTime", value)), XDS_REGISTRY_METADATA_ERROR, "creationTime",
          "is not a UTC time")


def test_empty_creation_time_is_missing():
    _only(_errors(_set_slot("creationTime", "")), XDS_REGISTRY_METADATA_ERROR, "required attribute creationTime")


def test_bad_submission_time():
    _only(_errors(_set_slot("submissionTime", "yesterday", owner="SS")), XDS_REGISTRY_METADATA_ERROR,
          "SubmissionSet SS: submissionTime 'yesterday'")


def test_patient_id_mismatch():
    def mutate(root):
        _find(root, "//rim:ExternalIdentifier[@id='e1']").set("value", "OTHER^^^&1.3.6.1.4.1.21367.13.20.1000&ISO")
    error = _only(_errors(mutate), XDS_PATIENT_ID_DOES_NOT_MATCH, "DocumentEntry Doc1 has patientId OTHER^^^",
                  f"SubmissionSet SS has {PID}")
    assert error.location == "ExtrinsicObject[@id='Doc1']/patientId"


def test_folder_patient_id_mismatch():
    def mutate(root):
        _find(root, "//rim:ExternalIdentifier[@id='e7']").set("value", "OTHER^^^&1.3.6.1.4.1.21367.13.20.1000&ISO")
    _only(_errors(mutate), XDS_PATIENT_ID_DOES_NOT_MATCH, "Folder F1 has patientId OTHER")


@pytest.mark.parametrize("value", ["12345", "12345^^^1.2.3", "12345^^^&1.2.3&L", "12345^^^&abc&ISO",
                                   "^^^&1.2.3&ISO"])
def test_patient_id_must_be_cx_with_oid(value):
    def mutate(root):
        for eid in ("e1", "e5", "e7"):
            _find(root, f"//rim:ExternalIdentifier[@id='{eid}']").set("value", value)
    errors = _errors(mutate)
    assert [e.error_code for e in errors] == [XDS_REGISTRY_METADATA_ERROR] * 3
    assert errors[0].code_context == f"SubmissionSet SS: patientId {value!r} is not of the form id^^^&OID&ISO"


def test_duplicate_unique_id_in_message():
    def mutate(root):
        _find(root, "//rim:ExternalIdentifier[@id='e6']").set("value", "1.2.3.4.5.6.2")
    _only(_errors(mutate), XDS_REGISTRY_DUPLICATE_UNIQUE_ID_IN_MESSAGE,
          "uniqueId 1.2.3.4.5.6.2 appears 2 times", "SubmissionSet SS, Folder F1")


def test_repository_codes():
    errors = _errors(_remove("//rim:Classification[@id='cc']"), sender=Sender.DOCUMENT_SOURCE, repository_codes=True)
    _only(errors, XDS_REPOSITORY_METADATA_ERROR, "classCode")


def _add_documentation(association_type: str):
    def mutate(root):
        association = _find(root, "//rim:Association[@id='a3']")
        association.set("associationType", association_type)
        association.set("targetObject", "urn:uuid:11111111-2222-3333-4444-555555555555")
        association.append(etree.fromstring(
            f'<rim:Classification xmlns:rim="{RIM}" id="doc1" classificationScheme="{c.ASSOCIATION_DOCUMENTATION}" '
            'classifiedObject="a3" nodeRepresentation="Corrected_Information"><rim:Slot name="codingScheme">'
            '<rim:ValueList><rim:Value>1.3.6.1.4.1.21367.2017.3</rim:Value></rim:ValueList></rim:Slot>'
            '</rim:Classification>'))
    return mutate


def test_association_documentation_refused_on_has_member():
    # NIST test 12370: associationDocumentation on HasMember fails with XDSRegistryMetadataError.
    error = _only(_errors(_add_documentation(c.HAS_MEMBER)), XDS_REGISTRY_METADATA_ERROR,
                  "Association a3", "associationDocumentation", "not on HasMember")
    assert c.ASSOCIATION_DOCUMENTATION in error.location


@pytest.mark.parametrize("association_type", [c.RPLC, c.XFRM, c.APND, c.XFRM_RPLC])
def test_association_documentation_accepted_on_relationships(association_type):
    def mutate(root):
        _add_documentation(association_type)(root)
        _remove("//rim:Association[@id='a4']")(root)
    errors = _errors(mutate)
    # The folder lost its only membership of the entry, which is allowed; no error about documentation.
    assert all("associationDocumentation" not in e.code_context for e in errors)
    assert errors == []


def test_unknown_association_type():
    def mutate(root):
        _find(root, "//rim:Association[@id='a3']").set("associationType", "urn:example:Likes")
    _only(_errors(mutate), XDS_REGISTRY_METADATA_ERROR, "associationType 'urn:example:Likes'")


def test_bare_association_type_is_expanded():
    def mutate(root):
        for association in root.iter(f"{{{RIM}}}Association"):
            association.set("associationType", "HasMember")
    assert _errors(mutate) == []


@pytest.mark.parametrize("value", [c.EMPTY_SHA1.upper(), c.EMPTY_SHA1])
def test_hash_case_insensitive(value):
    assert _errors(_set_slot("hash", value)) == []


@pytest.mark.parametrize("value", ["da39a3ee", "zz" + c.EMPTY_SHA1[2:], c.EMPTY_SHA1 + "0"])
def test_bad_hash(value):
    _only(_errors(_set_slot("hash", value)), XDS_REGISTRY_METADATA_ERROR, f"hash {value!r} is not a SHA-1")


@pytest.mark.parametrize("value", ["-1", "12.5", "ten", "１２"])
def test_bad_size(value):
    _only(_errors(_set_slot("size", value)), XDS_REGISTRY_METADATA_ERROR, f"size {value!r} is not a non-negative")


def test_errors_are_all_reported_in_a_stable_order():
    def mutate(root):
        _remove("//rim:Classification[@id='cc']")(root)
        _set_slot("hash", "nothex")(root)
        _find(root, "//rim:ExternalIdentifier[@id='e7']").set("value", "X^^^&1.2.3&ISO")
    first, second = _errors(mutate), _errors(mutate)
    assert first == second
    assert [e.error_code for e in first] == [XDS_REGISTRY_METADATA_ERROR, XDS_REGISTRY_METADATA_ERROR,
                                             XDS_PATIENT_ID_DOES_NOT_MATCH]
    with pytest.raises(XdsError) as caught:
        root = etree.fromstring(valid_request())
        mutate(root)
        check_submission(parse_submission(root))
    assert len(caught.value.errors) == 3 and caught.value.code == XDS_REGISTRY_METADATA_ERROR


# --- parse-time errors ------------------------------------------------------------------------------------------

def test_two_class_codes_is_a_parse_error():
    root = etree.fromstring(valid_request())
    entry = _find(root, "//rim:ExtrinsicObject")
    duplicate = etree.fromstring(etree.tostring(_find(root, "//rim:Classification[@id='cc']")))
    duplicate.set("id", "cc2")
    entry.insert(entry.index(_find(root, "//rim:Classification[@id='cc']")), duplicate)
    with pytest.raises(XdsError) as caught:
        parse_submission(root)
    assert caught.value.error_code == XDS_REGISTRY_METADATA_ERROR
    assert "ExtrinsicObject[@id='Doc1'] has 2 classCode values" in caught.value.code_context


def test_code_without_coding_scheme_is_a_parse_error():
    root = etree.fromstring(valid_request())
    _remove("//rim:Classification[@id='tc']/rim:Slot")(root)
    with pytest.raises(XdsError) as caught:
        parse_submission(root)
    assert "typeCode classification tc of Doc1 needs exactly one codingScheme" in caught.value.code_context
    assert caught.value.location == "ExtrinsicObject[@id='Doc1']/Classification[@id='tc']"


def test_unclassified_package_is_a_parse_error():
    root = etree.fromstring(valid_request())
    _remove("//rim:Classification[@id='fnode']")(root)
    with pytest.raises(XdsError) as caught:
        parse_submission(root)
    assert "RegistryPackage F1 is classified neither as SubmissionSet nor as Folder" in caught.value.code_context


def test_multi_valued_single_slot_is_a_parse_error():
    root = etree.fromstring(valid_request())
    value_list = _find(root, "//rim:Slot[@name='creationTime']/rim:ValueList")
    etree.SubElement(value_list, f"{{{RIM}}}Value").text = "20240103"
    with pytest.raises(XdsError) as caught:
        parse_submission(root)
    assert caught.value.code_context == "slot creationTime of Doc1 must have exactly one value, found 2"


# --- times --------------------------------------------------------------------------------------------------------

def test_dtm_key_orders_mixed_precisions():
    assert dtm_key("2005") == "20050000000000"
    assert dtm_key("20051224") == "20051224000000"
    assert dtm_key("2005", upper=True) == "20059999999999"
    assert dtm_key("20051224") < dtm_key("200512240001") < dtm_key("20051225")
    # From <= value < To with the value's own precision: 20051224 is not before To=20051224.
    assert not dtm_key("20051224") < dtm_key("20051224")
    assert dtm_key("20051224101112.123") == "20051224101112"
    assert dtm_key("200512240100+0200") == "200512232300".ljust(14, "0")
    with pytest.raises(ValueError):
        dtm_key("2005-12-24")
    assert is_xds_dtm("20051224") and not is_xds_dtm("2005122") and not is_xds_dtm("20051224+0100")
