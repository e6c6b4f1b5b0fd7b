"""Discovery of the NIST XDS test kit, read in place from the shared corpus (skips when absent)."""

from __future__ import annotations

from collections import Counter

import pytest

from ihe_engine.conformance.nist.testkit import SUPPORT_TESTS, TARGET_COLLECTIONS, TestKit, read_sections
from ihe_engine.conformance.nist.testplan import parse_testplan


@pytest.fixture
def kit(corpus_dir) -> TestKit:
    root = corpus_dir / "nist-iheos-toolkit2"
    if not root.is_dir():
        pytest.skip(f"NIST test kit not found at {root}")
    return TestKit(root)


def _target_ids(kit: TestKit) -> set[str]:
    return {t for name in TARGET_COLLECTIONS for t in kit.collection(name)} | set(SUPPORT_TESTS)


@pytest.mark.parametrize(("name", "size"), [("reg", 37), ("R.b", 23), ("SQ.b", 14), ("rep", 13), ("reg_mu", 25),
                                            ("reg_rm", 9), ("rep_rd", 4), ("reg_rmu", 9)])
def test_collection_sizes_match_the_reference(kit, name, size):
    assert len(kit.collection(name)) == size


def test_collection_members_the_reference_lists(kit):
    assert kit.collection("reg_rm") == tuple(str(n) for n in range(30000, 30009))
    assert kit.collection("rep_rd") == ("50000", "50001", "50002", "50003")
    # The reference's own list for reg_rmu has nine ids (it says "8" elsewhere): the list is what the kit holds.
    assert kit.collection("reg_rmu") == ("12319", "40000", "40000b", "40000c", "40000d", "40000e", "40001",
                                         "40001b", "40007")
    assert set(kit.collection("SQ.b")) <= set(kit.collection("reg"))
    assert set(kit.collection("R.b")) - set(kit.collection("reg")) == {"12022"}


def test_static_collections_are_available(kit):
    assert kit.collection("R-bad") == ("11996", "11998", "12002", "12379")
    assert len(kit.collection("R-good")) == 19


def test_target_is_106_tests_with_support(kit):
    ids = _target_ids(kit)
    assert len(ids) == 106
    assert all(test_id in kit.tests for test_id in SUPPORT_TESTS)


def test_index_wins_over_top_level_testplan_and_unlisted_sections_never_run(kit):
    sections = kit.test("12346").sections
    assert sections == ("single_doc", "doc_w_fol", "two_doc_w_fol", "doc_for_rplc", "rplc")
    assert "patient_identity_feed" not in sections
    assert "Retrieve" not in kit.test("15816").sections
    assert read_sections(kit.test("15817").path) == ("pif",)


def test_every_target_testplan_parses_with_supported_instructions(kit):
    kinds: Counter[str] = Counter()
    plans = 0
    for test_id in _target_ids(kit):
        definition = kit.test(test_id)
        assert definition.sections, test_id
        for section in definition.sections:
            plan = parse_testplan(definition.testplan_path(section))
            plans += 1
            assert plan.steps, f"{test_id}/{section}"
            for step in plan.steps:
                if step.transaction is not None:
                    kinds[step.transaction.element] += 1
                    assert step.transaction.supported, (test_id, section, step.id, step.transaction.unsupported)
    assert 420 <= plans <= 460
    # Roughly the reference's target counts (section 2).
    expected = {"StoredQueryTransaction": 251, "RegisterTransaction": 177, "NullTransaction": 72,
                "MuTransaction": 63, "RmuTransaction": 36, "ProvideAndRegisterTransaction": 29,
                "RemoveMetadataTransaction": 32, "RetrieveTransaction": 15, "RdTransaction": 4}
    for kind, count in expected.items():
        assert abs(kinds[kind] - count) <= max(8, count // 10), (kind, kinds[kind], count)


def test_step_instructions_are_parsed(kit):
    submit = parse_testplan(kit.test("11990").testplan_path("submit")).steps[0]
    assert submit.expected_status == ("Success",)
    transaction = submit.transaction
    assert transaction.kind == "ITI-42" and transaction.no_patient_id and transaction.metadata_file == "single_doc.xml"
    assert transaction.use_reports[0].test == "15817" and transaction.use_reports[0].use_as == "$patientid$"

    update = parse_testplan(kit.test("15800").testplan_path("update")).steps[0].transaction
    assert update.kind == "ITI-57" and update.no_assign_uids and update.no_assign_uids_id == "Document01"
    assert [u.symbol for u in update.use_ids] == ["$lid$", "$Document01_uid$"]
    assert update.reports[0].name == "update_doc_uuid" and update.reports[0].section == "InputMetadata"

    remove = parse_testplan(kit.test("30001").testplan_path("remove")).steps[0]
    assert remove.expected_error_codes == ("ReferencesExistException",)
    assert remove.transaction.kind == "ITI-62" and not remove.transaction.parse_metadata

    contents = parse_testplan(kit.test("12000.1a").testplan_path("getDocumentsSq"))
    rules = [c for step in contents.steps for c in (step.transaction.expected_contents or ())
             if c.name == "DocumentEntries"]
    assert rules and rules[0].rules[0].mode == "MustOnlyInclude"
    assert rules[0].rules[0].use_id.symbol == "$uuid$"

    alt = parse_testplan(kit.test("11996").testplan_path(kit.test("11996").sections[0])).steps[0]
    assert alt.alt_patient_id and alt.expected_error_messages == ("XDSUnknownPatientId",)
