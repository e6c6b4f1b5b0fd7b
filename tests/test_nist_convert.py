"""ebRIM 2.1 -> 3.0 conversion and request preparation, on real kit templates (read in place) and synthetic plans."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from lxml import etree

from ihe_engine import xmlsafe
from ihe_engine.conformance.nist.convert import RIM21, convert_submit_objects_request, is_v2, \
    submit_objects_request, wrap_provide_and_register
from ihe_engine.conformance.nist.metadata_prep import DE_PATIENT_ID, DE_UNIQUE_ID, SS_PATIENT_ID, SS_SOURCE_ID, \
    SS_UNIQUE_ID, PatientIdAllocator, PrepareOptions, UniqueIdAllocator, placeholders_in, prepare_metadata, \
    substitute
from ihe_engine.ns import LCM, RIM, XDS, XOP, qn

NS = {"rim": RIM, "lcm": LCM}
PID = "P0101120000.2^^^&1.3.6.1.4.1.21367.13.20.1000&ISO"


@pytest.fixture
def tests_dir(corpus_dir) -> Path:
    path = corpus_dir / "nist-iheos-toolkit2" / "testkit" / "tests"
    if not path.is_dir():
        pytest.skip(f"NIST test kit not found at {path}")
    return path


def _template(tests_dir: Path, relative: str) -> etree._Element:
    return xmlsafe.parse((tests_dir / relative).read_bytes())


def _v3(tests_dir: Path, relative: str = "11990/submit/single_doc.xml") -> etree._Element:
    return convert_submit_objects_request(_template(tests_dir, relative))


# --------------------------------------------------------------------------- conversion


def test_real_v2_template_is_detected_and_converted_into_rim_3(tests_dir):
    template = _template(tests_dir, "11990/submit/single_doc.xml")
    assert is_v2(template)
    request = convert_submit_objects_request(template)
    assert request.tag == qn(LCM, "SubmitObjectsRequest")
    namespaces = {etree.QName(e).namespace for e in request.iter() if isinstance(e.tag, str)}
    assert namespaces == {LCM, RIM}
    assert not is_v2(request)


def test_object_refs_are_dropped_and_top_level_order_kept(tests_dir):
    request = _v3(tests_dir)
    tops = [etree.QName(e).localname for e in request.find("rim:RegistryObjectList", NS)]
    assert tops == ["ExtrinsicObject", "RegistryPackage", "Classification", "Association"]
    assert not request.findall(".//rim:ObjectRef", NS)


def test_association_type_and_status_get_prefixes(tests_dir):
    association = _v3(tests_dir).find(".//rim:Association", NS)
    assert association.get("associationType") == "urn:oasis:names:tc:ebxml-regrep:AssociationType:HasMember"
    v2 = etree.fromstring(
        f'<rs:SubmitObjectsRequest xmlns:rs="urn:oasis:names:tc:ebxml-regrep:registry:xsd:2.1">'
        f'<rim:LeafRegistryObjectList xmlns:rim="{RIM21}">'
        f'<rim:Association id="a1" associationType="RPLC" sourceObject="x" targetObject="y" status="Approved"/>'
        f'<rim:Association id="a2" associationType="signs" sourceObject="x" targetObject="y"/>'
        f'<rim:Association id="a3" associationType="urn:custom:Type" sourceObject="x" targetObject="y"/>'
        f'<rim:ExtrinsicObject id="e" objectType="urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1" majorVersion="1">'
        f'<rim:Name><rim:LocalizedString lang="en-us" value="n"/></rim:Name></rim:ExtrinsicObject>'
        f'</rim:LeafRegistryObjectList></rs:SubmitObjectsRequest>')
    converted = convert_submit_objects_request(v2)
    types = [a.get("associationType") for a in converted.iterfind(".//rim:Association", NS)]
    assert types == ["urn:ihe:iti:2007:AssociationType:RPLC", "urn:ihe:iti:2007:AssociationType:signs",
                     "urn:custom:Type"]
    assert converted.find(".//rim:Association", NS).get("status") == "urn:oasis:names:tc:ebxml-regrep:StatusType:Approved"
    extrinsic = converted.find(".//rim:ExtrinsicObject", NS)
    assert extrinsic.get("majorVersion") is None
    assert extrinsic.get("objectType") == "urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1"  # kept
    assert converted.find(".//rim:LocalizedString", NS).get("{http://www.w3.org/XML/1998/namespace}lang") == "en-us"


def test_object_types_are_forced_and_missing_ids_added(tests_dir):
    request = _v3(tests_dir)
    prefix = "urn:oasis:names:tc:ebxml-regrep:ObjectType:RegistryObject:"
    for local in ("RegistryPackage", "Association", "Classification", "ExternalIdentifier"):
        for element in request.iterfind(f".//rim:{local}", NS):
            assert element.get("objectType") == prefix + local
            assert element.get("id"), local
    ids = [e.get("id") for e in request.iter() if e.get("id")]
    assert len(ids) == len(set(ids))
    assert any(re.fullmatch(r"id_\d+", i) for i in ids)
    for identifier in request.find(".//rim:ExtrinsicObject", NS).iterfind("rim:ExternalIdentifier", NS):
        assert identifier.get("registryObject") == "Document01"


def test_children_are_reordered_slot_name_description_classification_identifier(tests_dir):
    order = {"Slot": 0, "Name": 1, "Description": 2, "VersionInfo": 3, "Classification": 4, "ExternalIdentifier": 5}
    request = _v3(tests_dir)
    for element in request.iter(qn(RIM, "ExtrinsicObject"), qn(RIM, "RegistryPackage"), qn(RIM, "Classification")):
        ranks = [order.get(etree.QName(c).localname, 6) for c in element]
        assert ranks == sorted(ranks), element.get("id")
    extrinsic = request.find(".//rim:ExtrinsicObject", NS)
    assert etree.QName(extrinsic[0]).localname == "Slot"  # the 2.1 file starts with Name


def test_v3_template_is_copied_unchanged_and_pnr_template_unwrapped(tests_dir):
    template = _template(tests_dir, "ReposAcceptanceTest-1111/SubmitRplc/single_doc.xml")
    assert not is_v2(template)
    submit = submit_objects_request(template)
    assert submit.tag == qn(LCM, "SubmitObjectsRequest")
    inner = template.find(qn(LCM, "SubmitObjectsRequest"))
    def shape(root):
        return [(e.tag, dict(e.attrib), (e.text or "").strip()) for e in root.iter() if isinstance(e.tag, str)]

    assert shape(submit) == shape(inner)
    assert submit is not inner


def test_wrap_provide_and_register_adds_documents_as_xop_includes(tests_dir):
    wrapped = wrap_provide_and_register(_v3(tests_dir), {"Document01": "doc1@x"})
    assert wrapped.tag == qn(XDS, "ProvideAndRegisterDocumentSetRequest")
    assert wrapped[0].tag == qn(LCM, "SubmitObjectsRequest")
    document = wrapped.find(qn(XDS, "Document"))
    assert document.get("id") == "Document01"
    assert document.find(qn(XOP, "Include")).get("href") == "cid:doc1@x"


# --------------------------------------------------------------------------- preparation


def _prepare(template, **options):
    defaults = dict(patient_id=PID, source_id="1.3.6.1.4.1.21367.4")
    uids = UniqueIdAllocator()
    values = options.pop("values", {})
    use_ids = options.pop("use_ids", {})
    return prepare_metadata(template, PrepareOptions(**{**defaults, **options}), values=values, use_ids=use_ids,
                            new_uid=uids.new)


def _identifier(root, scheme):
    return [e for e in root.iter() if isinstance(e.tag, str) and e.get("identificationScheme") == scheme]


def test_prepare_real_template_overwrites_patient_ids_and_allocates_unique_ids(tests_dir):
    template = _template(tests_dir, "11990/submit/single_doc.xml")
    prepared = _prepare(template)
    assert [e.get("value") for e in _identifier(template, DE_PATIENT_ID)] == [PID]
    assert [e.get("value") for e in _identifier(template, SS_PATIENT_ID)] == [PID]
    assert prepared.assigned_patient_ids == {"Document01": PID, "SubmissionSet01": PID}
    source_patient = template.xpath("//*[local-name()='Slot'][@name='sourcePatientId']//*[local-name()='Value']")
    assert source_patient[0].text == "89765a87b^^^&1.3.4.5&ISO"  # untouched
    doc_uid = _identifier(template, DE_UNIQUE_ID)[0].get("value")
    ss_uid = _identifier(template, SS_UNIQUE_ID)[0].get("value")
    assert re.fullmatch(r"1\.2\.42\.\d{14}\.\d+", doc_uid) and doc_uid != ss_uid
    assert prepared.assigned_uids == {"Document01": doc_uid, "SubmissionSet01": ss_uid}
    assert _identifier(template, SS_SOURCE_ID)[0].get("value") == "1.3.6.1.4.1.21367.4"
    assert prepared.assigned_source_ids == {"SubmissionSet01": "1.3.6.1.4.1.21367.4"}
    assert not placeholders_in(template)


def test_prepare_with_no_patient_id_substitutes_the_placeholder_instead(tests_dir):
    template = _template(tests_dir, "11990/submit/single_doc.xml")
    prepared = _prepare(template, no_patient_id=True, patient_id=None, values={"$patientid$": "OTHER^^^&1.2&ISO"})
    assert {e.get("value") for e in _identifier(template, DE_PATIENT_ID)} == {"OTHER^^^&1.2&ISO"}
    assert prepared.assigned_patient_ids == {}


def test_assign_uuids_follows_references_and_logs_symbols(tests_dir):
    template = _template(tests_dir, "11990/submit/single_doc.xml")
    prepared = _prepare(template, assign_uuids=True)
    uuids = prepared.assigned_uuids
    assert set(uuids) >= {"Document01", "SubmissionSet01"}
    assert all(v.startswith("urn:uuid:") for v in uuids.values())
    association = template.xpath("//*[local-name()='Association']")[0]
    assert association.get("sourceObject") == uuids["SubmissionSet01"]
    assert association.get("targetObject") == uuids["Document01"]
    assert association.get("id") in uuids.values()  # the id given in step 2, then a UUID
    classified = {e.get("classifiedObject") for e in template.xpath("//*[local-name()='Classification']")}
    assert classified == {uuids["Document01"], uuids["SubmissionSet01"]}
    assert prepared.automatic_reports()["Document01_uuid"] == uuids["Document01"]
    assert prepared.automatic_reports()["SubmissionSet01_uid"] == prepared.assigned_uids["SubmissionSet01"]
    # ObjectRefs already carry urn:uuid ids and keep them
    assert "urn:uuid:7edca82f-054d-47f2-a032-9b2a5b518fff" in {e.get("id") for e in template.iter()}


def test_no_assign_uids_with_id_keeps_that_object_and_use_id_fills_it(tests_dir):
    template = _template(tests_dir, "15800/update/single_doc.xml")
    prepared = _prepare(template, no_patient_id=True, no_assign_uids=True, no_assign_uids_id="Document01",
                        assign_uuids=True, values={"$patientid$": PID},
                        use_ids={"$lid$": "urn:uuid:11111111-2222-3333-4444-555555555555",
                                 "$Document01_uid$": "1.2.42.1.1"})
    assert _identifier(template, DE_UNIQUE_ID)[0].get("value") == "1.2.42.1.1"
    assert "Document01" not in prepared.assigned_uids and "SubmissionSet01" in prepared.assigned_uids
    extrinsic = template.xpath("//*[local-name()='ExtrinsicObject']")[0]
    assert extrinsic.get("lid") == "urn:uuid:11111111-2222-3333-4444-555555555555"
    assert extrinsic.get("id") == prepared.assigned_uuids["Document01"] != extrinsic.get("lid")


def test_parse_metadata_false_only_substitutes(tests_dir):
    template = _template(tests_dir, "30001/remove/remove.xml")
    prepared = _prepare(template, parse_metadata=False, use_ids={"$SubmissionSet01$": "urn:uuid:abc"})
    assert prepared.assigned_uids == {} and prepared.assigned_uuids == {}
    assert template.xpath("//*[local-name()='ObjectRef']/@id") == ["urn:uuid:abc"]


def test_substitution_is_literal_and_skips_instruction_elements_and_documents():
    root = etree.fromstring(
        f'<plan xmlns:xds="{XDS}"><a v="x$uid$y">$uid$ and $uid$</a><UseId symbol="$uid$"/>'
        f'<Report>$uid$</Report><xds:Document>$uid$</xds:Document><b>$XDSDocumentEntryPatientId</b></plan>')
    substitute(root, {"$uid$": "1.2&3"})
    assert root.find("a").get("v") == "x1.2&3y" and root.find("a").text == "1.2&3 and 1.2&3"
    assert root.find("UseId").get("symbol") == "$uid$" and root.find("Report").text == "$uid$"
    assert root.find(qn(XDS, "Document")).text == "$uid$"
    assert placeholders_in(root) == {"$uid$"}  # the slot name without a closing $ is not a placeholder


def test_patient_id_allocator_format():
    allocator = PatientIdAllocator()
    first, second = allocator.new(), allocator.new()
    assert re.fullmatch(r"P\d{10}\.2\^\^\^&1\.3\.6\.1\.4\.1\.21367\.13\.20\.1000&ISO", first)
    assert second.split("^")[0].endswith(".3")


# --------------------------------------------------------------------------- UseId / UseReport between steps


TEMPLATE = f"""<rs:SubmitObjectsRequest xmlns:rs="urn:oasis:names:tc:ebxml-regrep:registry:xsd:2.1">
 <rim:LeafRegistryObjectList xmlns:rim="{RIM21}">
  <rim:ExtrinsicObject id="Document01" lid="$lid$" objectType="urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1">
   <rim:ExternalIdentifier identificationScheme="{DE_PATIENT_ID}" value="$patientid$"/>
   <rim:ExternalIdentifier identificationScheme="{DE_UNIQUE_ID}" value="$Document01_uid$"/>
  </rim:ExtrinsicObject>
  <rim:RegistryPackage id="SubmissionSet01">
   <rim:Slot name="comment"><rim:ValueList><rim:Value>$note$</rim:Value></rim:ValueList></rim:Slot>
   <rim:ExternalIdentifier identificationScheme="{SS_UNIQUE_ID}" value="x"/>
  </rim:RegistryPackage>
 </rim:LeafRegistryObjectList>
</rs:SubmitObjectsRequest>"""


def _plan(directory: Path, second: str) -> None:
    (directory / "one").mkdir(parents=True)
    (directory / "two").mkdir()
    for section in ("one", "two"):
        (directory / section / "doc.xml").write_text(TEMPLATE, encoding="utf-8")
    (directory / "index.idx").write_text("one\ntwo\n", encoding="utf-8")
    (directory / "collections.txt").write_text("reg\n", encoding="utf-8")
    (directory / "one" / "testplan.xml").write_text("""<TestPlan><Test>t/one</Test>
 <TestStep id="first"><ExpectedStatus>Success</ExpectedStatus><RegisterTransaction><XDSb/><AssignUuids/>
  <NoPatientId/><MetadataFile>doc.xml</MetadataFile>
  <Report name="doc_id" section="InputMetadata">//*[local-name()='ExtrinsicObject'][1]/@id</Report>
 </RegisterTransaction></TestStep></TestPlan>""", encoding="utf-8")
    (directory / "two" / "testplan.xml").write_text(second, encoding="utf-8")


SECOND = """<TestPlan><Test>t/two</Test>
 <TestStep id="second"><ExpectedStatus>Success</ExpectedStatus><MuTransaction><XDSb/><AssignUuids/>
  <NoAssignUids id="Document01"/>
  <UseId testdir="../one" step="first" section="AssignedUuids" id="Document01" symbol="$lid$"/>
  <UseId testdir="../one" step="first" section="AssignedUids" id="Document01" symbol="$Document01_uid$"/>
  <UseReport section="one" step="first" reportName="doc_id" useAs="$note$"/>
  <MetadataFile>doc.xml</MetadataFile></MuTransaction></TestStep></TestPlan>"""


def test_use_id_and_use_report_flow_between_steps_of_a_two_step_plan(tmp_path, monkeypatch):
    """A synthetic two-section plan run with the wire replaced: the second request carries the first's values."""
    from ihe_engine.conformance.nist import runner as runner_module
    from ihe_engine.conformance.nist.runner import Replayer, RunnerConfig
    from ihe_engine.conformance.nist.testkit import TestKit

    kit_root = tmp_path / "testkit"
    _plan(kit_root / "tests" / "t", SECOND)
    sent: list[etree._Element] = []

    def fake_send(url, payload, action, **_kwargs):
        sent.append(payload)
        raise runner_module.StepFailure("stop here")  # the wire is tested in test_nist_runner

    monkeypatch.setattr(runner_module, "send_soap", fake_send)
    replayer = Replayer(TestKit(kit_root), RunnerConfig(registry_url="http://r", repository_url="http://p"))
    first_log = replayer.logs.new_section("t", "one")
    # Pretend step one ran: record its assignments as the runner would, then run section two.
    step = etree.SubElement(etree.SubElement(first_log, "TestStep", id="first"), "RegisterTransaction")
    uuids = etree.SubElement(step, "AssignedUuids")
    etree.SubElement(uuids, "Assign", symbol="Document01", id="urn:uuid:aaaaaaaa-0000-0000-0000-000000000001")
    uids = etree.SubElement(step, "AssignedUids")
    etree.SubElement(uids, "Assign", symbol="Document01", id="1.2.42.7.7")
    etree.SubElement(etree.SubElement(step, "Reports"), "Report", name="doc_id").text = "urn:uuid:from-report"
    definition = replayer.kit.test("t")
    replayer.run_section(definition, "two", params={"$patientid$": PID}, patient_id=PID)
    request = sent[-1]
    extrinsic = request.find(".//rim:ExtrinsicObject", NS)
    assert extrinsic.get("lid") == "urn:uuid:aaaaaaaa-0000-0000-0000-000000000001"
    assert extrinsic.get("id").startswith("urn:uuid:") and extrinsic.get("id") != extrinsic.get("lid")
    values = {e.get("identificationScheme"): e.get("value") for e in request.iterfind(".//rim:ExternalIdentifier", NS)}
    assert values[DE_UNIQUE_ID] == "1.2.42.7.7"
    assert values[SS_UNIQUE_ID].startswith("1.2.42.") and values[SS_UNIQUE_ID] != "x"
    assert request.findtext(".//rim:Value", namespaces=NS) == "urn:uuid:from-report"
    log = replayer.logs.get("t", "two")
    assigned = log.find("TestStep/MuTransaction/AssignedUuids/Assign[@symbol='Document01']")
    assert assigned.get("id") == extrinsic.get("id")


def test_missing_state_fails_the_step_with_the_reason(tmp_path):
    from ihe_engine.conformance.nist.report import FAIL
    from ihe_engine.conformance.nist.runner import Replayer, RunnerConfig
    from ihe_engine.conformance.nist.testkit import TestKit

    kit_root = tmp_path / "testkit"
    _plan(kit_root / "tests" / "t", SECOND)
    replayer = Replayer(TestKit(kit_root), RunnerConfig(registry_url="http://r", repository_url="http://p"))
    result = replayer.run_section(replayer.kit.test("t"), "two", params={}, patient_id=PID)
    assert result.outcome == FAIL
    assert "UseReport $note$: no report doc_id in t/one/first" in result.steps[0].reasons[0]
