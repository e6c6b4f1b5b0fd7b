"""Affinity domain code sets: NIST codes.xml, the engine's TOML, and the check of a submission against them."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from ihe_engine.errors import ConfigurationError
from ihe_engine.ns import RIM
from ihe_engine.resources import data_dir
from ihe_engine.xds import constants as c
from ihe_engine.xds.affinity import CodeSet, check_codes, load_code_set
from ihe_engine.xds.ebrim import parse_submission
from ihe_engine.xds.errors import XDS_REGISTRY_METADATA_ERROR

from test_xds_validation import valid_request  # noqa: I001 (tests/ is on sys.path, as for pki)

NS = {"rim": RIM}


@pytest.fixture(scope="module")
def nist_codes() -> CodeSet:
    from conftest import CORPUS
    path = CORPUS / "nist-iheos-toolkit2/environment/default/codes.xml"
    if not path.is_file():
        pytest.skip(f"NIST codes.xml not found at {path}")
    return load_code_set(path)


def _submission(mutate=None):
    root = etree.fromstring(valid_request())
    if mutate:
        mutate(root)
    return parse_submission(root)


def _set(xpath: str, attribute: str, value: str):
    def mutate(root):
        root.xpath(xpath, namespaces=NS)[0].set(attribute, value)
    return mutate


def test_nist_codes_xml_loads(nist_codes):
    counts = {name: len(code_type) for name, code_type in nist_codes.code_types.items()}
    assert counts["classCode"] == 14 and counts["formatCode"] == 77 and counts["typeCode"] == 43
    assert counts["confidentialityCode"] == 6 and counts["healthcareFacilityTypeCode"] == 11
    assert counts["practiceSettingCode"] == 17 and counts["contentTypeCode"] == 10
    assert counts["folderCodeList"] == 2 and counts["associationDocumentation"] == 2
    assert len(nist_codes.mime_types) == 14 and "application/pdf" in nist_codes.mime_types
    assert nist_codes.assigning_authorities[0] == "1.3.6.1.4.1.21367.13.20.1000"
    assert nist_codes.for_scheme(c.DE_CLASS_CODE).name == "classCode"
    assert nist_codes.code_types["classCode"].classification_scheme == c.DE_CLASS_CODE


def test_submission_with_kit_codes_is_accepted(nist_codes):
    assert check_codes(_submission(), nist_codes) == []


def test_unknown_code_is_rejected_naming_it(nist_codes):
    errors = check_codes(_submission(_set("//rim:Classification[@id='cc']", "nodeRepresentation", "NOPE")), nist_codes)
    assert len(errors) == 1
    error = errors[0]
    assert error.error_code == XDS_REGISTRY_METADATA_ERROR
    assert "DocumentEntry Doc1" in error.code_context and "classCode code 'NOPE'" in error.code_context
    assert "codingScheme '1.3.6.1.4.1.19376.1.2.6.1'" in error.code_context
    assert error.location == f"ExtrinsicObject[@id='Doc1']/Classification[@classificationScheme='{c.DE_CLASS_CODE}']"


def test_known_code_in_the_wrong_scheme_is_rejected(nist_codes):
    def mutate(root):
        root.xpath("//rim:Classification[@id='tc']//rim:Value", namespaces=NS)[0].text = "2.16.840.1.113883.6.96"
    errors = check_codes(_submission(mutate), nist_codes)
    assert [e.code_context.split(": ")[1][:20] for e in errors] == ["typeCode code '11488"]


def test_display_is_not_restricted(nist_codes):
    def mutate(root):
        root.xpath("//rim:Classification[@id='cc']//rim:LocalizedString", namespaces=NS)[0].set("value", "Anything")
    assert check_codes(_submission(mutate), nist_codes) == []


def test_mime_type_is_checked(nist_codes):
    errors = check_codes(_submission(_set("//rim:ExtrinsicObject", "mimeType", "application/x-unknown")), nist_codes)
    assert len(errors) == 1 and "mimeType 'application/x-unknown'" in errors[0].code_context
    assert errors[0].location.endswith("/@mimeType")


def test_package_and_association_codes_are_checked(nist_codes):
    def mutate(root):
        root.xpath("//rim:Classification[@id='ct']", namespaces=NS)[0].set("nodeRepresentation", "X1")
        root.xpath("//rim:Classification[@id='fc']", namespaces=NS)[0].set("nodeRepresentation", "X2")
    contexts = [e.code_context for e in check_codes(_submission(mutate), nist_codes)]
    assert contexts[0].startswith("SubmissionSet SS: contentTypeCode code 'X1'")
    assert contexts[1].startswith("Folder F1: folderCodeList code 'X2'")


def test_no_code_set_accepts_everything():
    submission = _submission(_set("//rim:Classification[@id='cc']", "nodeRepresentation", "NOPE"))
    assert check_codes(submission, None) == []


def test_engine_toml_profile_loads_and_restricts_only_listed_attributes():
    code_set = load_code_set(data_dir("profiles") / "xds-affinity-example.toml")
    assert code_set.name == "example"
    assert code_set.code_types["classCode"].classification_scheme == c.DE_CLASS_CODE
    assert ("REPORTS", "1.3.6.1.4.1.19376.1.2.6.1") in code_set.code_types["classCode"].codes
    assert "eventCodeList" not in code_set.code_types
    assert "text/xml" in code_set.mime_types
    errors = check_codes(_submission(), code_set)
    # practiceSettingCode 309927009 and folderCodeList are not in the example; folderCodeList is not restricted
    assert [e.code_context for e in errors] == [
        "DocumentEntry Doc1: practiceSettingCode code '309927009' with codingScheme '2.16.840.1.113883.6.96' "
        "is not in affinity domain example"]


def test_toml_errors(tmp_path: Path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[code_types.unknownThing]\ncodes = []\n')
    with pytest.raises(ConfigurationError):
        load_code_set(bad)
    bad.write_text('[code_types.classCode]\ncodes = [{ code = "A" }]\n')
    with pytest.raises(ConfigurationError, match="lacks 'scheme'"):
        load_code_set(bad)
    with pytest.raises(ConfigurationError):
        load_code_set(tmp_path / "absent.xml")
