"""Results per test/section/step and their outputs: console summary, JSON, JUnit XML.

A step is ``pass``, ``fail`` (with why), ``not supported`` (with why) or ``not run`` (an earlier step of its
section, or an earlier section, did not pass: the toolkit stops there too).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from lxml import etree

__all__ = [
    "FAIL", "NOT_RUN", "NOT_SUPPORTED", "PASS",
    "RunReport", "SectionResult", "StepResult", "TestResult",
    "section_outcome", "summary_lines", "to_json", "to_junit", "write_json", "write_junit",
]

PASS = "pass"
FAIL = "fail"
NOT_SUPPORTED = "not supported"
NOT_RUN = "not run"


@dataclass(frozen=True, kw_only=True)
class StepResult:
    step: str
    outcome: str
    transaction: str = ""
    reasons: tuple[str, ...] = ()
    expected_status: tuple[str, ...] = ()
    actual_status: str | None = None
    error_codes: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class SectionResult:
    section: str
    steps: tuple[StepResult, ...] = ()
    outcome: str = PASS
    reason: str = ""


@dataclass(frozen=True, kw_only=True)
class TestResult:
    __test__ = False

    test: str
    title: str = ""
    collections: tuple[str, ...] = ()
    sections: tuple[SectionResult, ...] = ()

    @property
    def outcome(self) -> str:
        return _combine(section.outcome for section in self.sections)


@dataclass(frozen=True, kw_only=True)
class RunReport:
    tests: tuple[TestResult, ...] = ()
    collections: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    support: tuple[TestResult, ...] = ()

    def test_result(self, test_id: str) -> TestResult | None:
        return next((t for t in (*self.support, *self.tests) if t.test == test_id), None)


def _combine(outcomes: Iterable[str]) -> str:
    """A container fails if any part failed, else is not supported if any part was, else passes."""
    seen = set(outcomes)
    for outcome in (FAIL, NOT_SUPPORTED, NOT_RUN):
        if outcome in seen:
            return outcome
    return PASS


def section_outcome(steps: Sequence[StepResult]) -> str:
    return _combine(step.outcome for step in steps)


def _step_counts(results: Iterable[TestResult]) -> dict[str, int]:
    counts = {PASS: 0, FAIL: 0, NOT_SUPPORTED: 0, NOT_RUN: 0}
    for test in results:
        for section in test.sections:
            for step in section.steps:
                counts[step.outcome] = counts.get(step.outcome, 0) + 1
    return counts


def summary_lines(report: RunReport) -> list[str]:
    """Per collection: tests passed/total and step counts; then each failed or unsupported step."""
    by_id = {t.test: t for t in report.tests}
    lines = []
    for name, ids in report.collections.items():
        results = [by_id[i] for i in ids if i in by_id]
        passed = sum(1 for t in results if t.outcome == PASS)
        steps = _step_counts(results)
        lines.append(f"{name:8} tests {passed}/{len(results)} pass; steps: " +
                     ", ".join(f"{count} {outcome}" for outcome, count in steps.items()))
    for test in (*report.support, *report.tests):
        for section in test.sections:
            for step in _section_steps(section):
                if step.outcome in (FAIL, NOT_SUPPORTED):
                    why = "; ".join(step.reasons)[:400]
                    lines.append(f"  {step.outcome.upper():13} {test.test}/{section.section}/{step.step}: {why}")
    return lines


def to_json(report: RunReport) -> dict:
    return {
        "collections": {name: list(ids) for name, ids in report.collections.items()},
        "support": [_test_json(t) for t in report.support],
        "tests": [_test_json(t) for t in report.tests],
    }


def _test_json(test: TestResult) -> dict:
    data = asdict(test)
    data["outcome"] = test.outcome
    return data


def write_json(report: RunReport, path: str | Path) -> None:
    Path(path).write_text(json.dumps(to_json(report), indent=2), encoding="utf-8")


def to_junit(report: RunReport) -> etree._Element:
    """One testsuite per kit test, one testcase per step (classname ``nist.<test>.<section>``)."""
    suites = etree.Element("testsuites", name="nist-xds-testkit")
    for test in (*report.support, *report.tests):
        steps = [(section, step) for section in test.sections for step in _section_steps(section)]
        suite = etree.SubElement(suites, "testsuite", name=f"nist.{test.test}", tests=str(len(steps)),
                                 failures=str(sum(1 for _s, st in steps if st.outcome == FAIL)),
                                 skipped=str(sum(1 for _s, st in steps if st.outcome in (NOT_SUPPORTED, NOT_RUN))))
        for section, step in steps:
            _junit_case(suite, test, section, step)
    return suites


def _section_steps(section: SectionResult) -> tuple[StepResult, ...]:
    """A section that never ran (or whose testplan was unreadable) still shows up, as one pseudo step."""
    if section.steps:
        return section.steps
    return (StepResult(step="(section)", outcome=section.outcome, reasons=(section.reason,) if section.reason else ()),)


def _junit_case(suite: etree._Element, test: TestResult, section: SectionResult, step: StepResult) -> None:
    case = etree.SubElement(suite, "testcase", classname=f"nist.{test.test}.{section.section}", name=step.step)
    message = "; ".join(step.reasons)
    if step.outcome == FAIL:
        etree.SubElement(case, "failure", message=message[:1000]).text = "\n".join(step.reasons)
    elif step.outcome in (NOT_SUPPORTED, NOT_RUN):
        etree.SubElement(case, "skipped", message=f"{step.outcome}: {message}"[:1000])


def write_junit(report: RunReport, path: str | Path) -> None:
    Path(path).write_bytes(etree.tostring(to_junit(report), xml_declaration=True, encoding="utf-8",
                                          pretty_print=True))
