"""Orchestration: feed the patients, run the set-up tests once, then replay the selected collections.

State between steps lives in per-section ``TestResults`` logs (the toolkit's log.xml shape), because that is
what UseId, UseReport and Assertions read: ``TestStep[@id]/<XxxTransaction>`` holding ``AssignedPatientId``,
``AssignedUids``, ``AssignedSourceId``, ``AssignedUuids`` (``Assign symbol id``), ``InputMetadata`` (the request
as sent), ``Result`` (the response) and ``Reports/Report[@name]``.
"""

from __future__ import annotations

import hashlib
import logging
import posixpath
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import requests
from lxml import etree

from ... import xmlsafe
from ...ns import XDS, qn
from . import evaluate
from .convert import submit_objects_request, wrap_provide_and_register
from .metadata_prep import PatientIdAllocator, PrepareOptions, PreparedMetadata, UniqueIdAllocator, \
    builtin_tokens, placeholders_in, prepare_metadata, substitute
from .report import FAIL, NOT_RUN, NOT_SUPPORTED, PASS, RunReport, SectionResult, StepResult, TestResult, \
    section_outcome
from .testkit import TARGET_COLLECTIONS, TestDefinition, TestKit
from .testplan import StepSpec, TransactionSpec, UseIdSpec, UseReportSpec, parse_testplan
from .wire import ACTIONS, SoapAnswer, feed_patient, send_soap

__all__ = ["LogStore", "Replayer", "RunnerConfig", "StepFailure", "parse_hostport"]

log = logging.getLogger(__name__)

_ASSIGN_SECTIONS = ("AssignedPatientId", "AssignedUids", "AssignedSourceId", "AssignedUuids")
_PIF_TESTS = (("15817", "register"), ("15817b", "register_alt"), ("15818", "sq"), ("15819", "mpq1"),
              ("15820", "mpq2"))
_SUBMISSION_KINDS = frozenset({"ITI-41", "ITI-42", "ITI-57", "ITI-92"})


def parse_hostport(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, not {value!r}")
    return host, int(port)


@dataclass(frozen=True, kw_only=True)
class RunnerConfig:
    """Where the engine under test listens, and run options."""

    registry_url: str
    repository_url: str
    mllp: tuple[str, int] | None = None
    log_dir: Path | None = None
    timeout: float = 120.0
    assigning_authority: str = "1.3.6.1.4.1.21367.13.20.1000"
    stop_on_first_failure: bool = True


class StepFailure(Exception):
    """A step cannot be built or sent; the message says why (it becomes the step's failure reason)."""


class StepUnsupported(Exception):
    """The step uses something the replayer does not implement; the message says what."""


# --------------------------------------------------------------------------- logs


class LogStore:
    """Section logs by (test, section), in memory and optionally on disk (``<dir>/<test>/<section>/log.xml``)."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory
        self._logs: dict[tuple[str, str], etree._Element] = {}

    def new_section(self, test: str, section: str) -> etree._Element:
        root = etree.Element("TestResults", test=test, section=section)
        self._logs[(test, section)] = root
        return root

    def get(self, test: str, section: str) -> etree._Element | None:
        return self._logs.get((test, section))

    def save(self, test: str, section: str) -> None:
        root = self._logs.get((test, section))
        if self.directory is None or root is None:
            return
        path = self.directory / test / section / "log.xml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(etree.tostring(root, xml_declaration=True, encoding="utf-8", pretty_print=True))

    @staticmethod
    def step_output(section_log: etree._Element, step: str) -> etree._Element | None:
        """The transaction element under ``TestStep[@id=step]``."""
        for test_step in section_log.iterfind("TestStep"):
            if test_step.get("id") == step:
                return next(iter(test_step), None)
        return None

    def assigned(self, test: str, section: str, step: str, kind: str, symbol: str) -> str | None:
        section_log = self.get(test, section)
        output = self.step_output(section_log, step) if section_log is not None else None
        holder = output.find(kind) if output is not None else None
        if holder is None:
            return None
        return next((a.get("id") for a in holder.iterfind("Assign") if a.get("symbol") == symbol), None)

    def report(self, test: str, section: str, step: str, name: str) -> str | None:
        section_log = self.get(test, section)
        output = self.step_output(section_log, step) if section_log is not None else None
        reports = output.find("Reports") if output is not None else None
        if reports is None:
            return None
        return next((r.text or "" for r in reports.iterfind("Report") if r.get("name") == name), None)


def _assign_block(parent: etree._Element, name: str, values: Mapping[str, str]) -> None:
    block = etree.SubElement(parent, name)
    for symbol, value in values.items():
        etree.SubElement(block, "Assign", symbol=symbol, id=value)


def _add_reports(output: etree._Element, values: Mapping[str, str]) -> None:
    reports = output.find("Reports")
    if reports is None:
        reports = etree.SubElement(output, "Reports")
    for name, value in values.items():
        etree.SubElement(reports, "Report", name=name).text = value


# --------------------------------------------------------------------------- per-run context


@dataclass(kw_only=True)
class _SectionContext:
    test: TestDefinition
    section: str
    log: etree._Element
    params: dict[str, str]
    patient_id: str | None
    results: list[StepResult] = field(default_factory=list)

    @property
    def directory(self) -> Path:
        return self.test.section_dir(self.section)


class Replayer:
    """Runs kit tests against a live engine over the wire and collects results."""

    def __init__(self, kit: TestKit, config: RunnerConfig, *, session: requests.Session | None = None,
                 now: datetime | None = None) -> None:
        self.kit = kit
        self.config = config
        self.session = session or requests.Session()
        self.logs = LogStore(config.log_dir)
        now = now or datetime.now(timezone.utc)
        self.pids = PatientIdAllocator(config.assigning_authority, now=now)
        self.uids = UniqueIdAllocator(now=now)
        self._control_ids = iter(range(1, 1_000_000))
        self.patients: dict[str, str] = {}
        self.support_results: list[TestResult] = []

    # ----------------------------------------------------------------- orchestration

    def run(self, collections: Sequence[str] = TARGET_COLLECTIONS, tests: Sequence[str] | None = None) -> RunReport:
        """Set-up (feeds, 12346, 12374) then every selected test once; a test in several collections runs once."""
        chosen = {name: self.kit.collection(name) for name in collections}
        order = list(dict.fromkeys(t for ids in chosen.values() for t in ids))
        if tests:
            wanted = set(tests)
            order = [t for t in order if t in wanted] + [t for t in tests if t not in order]
        self.set_up()
        results = tuple(self.run_test(test_id, patient_id=self.patients.get("register")) for test_id in order)
        return RunReport(tests=results, collections=chosen, support=tuple(self.support_results))

    def set_up(self) -> None:
        """Allocate and feed the five patients, write the pif logs, then load 12346 and 12374 once."""
        for test_id, role in _PIF_TESTS:
            pid = self.pids.new()
            self.patients[role] = pid
            self.support_results.append(self._feed_support(test_id, pid))
        for test_id, role in (("12346", "sq"), ("12374", "register_alt")):
            if test_id in self.kit.tests:
                self.support_results.append(self.run_test(test_id, patient_id=self.patients[role]))
        _next_second()


    def _feed_support(self, test_id: str, pid: str) -> TestResult:
        outcome, reasons = self._feed(pid)
        section_log = self.logs.new_section(test_id, "pif")
        output = etree.SubElement(etree.SubElement(section_log, "TestStep", id="step"),
                                  "PatientIdentityFeedTransaction", step="step")
        _add_reports(output, {"$patientid$": pid})
        self.logs.save(test_id, "pif")
        step = StepResult(step="step", outcome=outcome, transaction="ITI-8", reasons=tuple(reasons))
        return TestResult(test=test_id, title=f"patient identity feed {pid}",
                          sections=(SectionResult(section="pif", steps=(step,), outcome=outcome),))

    def _feed(self, pid: str) -> tuple[str, list[str]]:
        if self.config.mllp is None:
            return NOT_SUPPORTED, ["no --mllp given: patient not fed (the engine must know it some other way)"]
        host, port = self.config.mllp
        try:
            code = feed_patient(host, port, pid, control_id=f"NIST{next(self._control_ids)}",
                                timeout=self.config.timeout)
        except Exception as exc:  # noqa: BLE001 - any transport failure is the step's failure
            return FAIL, [f"patient feed over MLLP failed: {exc}"]
        return (PASS, []) if code == "AA" else (FAIL, [f"patient feed answered MSA-1={code!r}, expected AA"])

    def run_test(self, test_id: str, *, patient_id: str | None) -> TestResult:
        if test_id not in self.kit.tests:
            return TestResult(test=test_id, sections=(SectionResult(
                section="-", outcome=FAIL, reason="test not found in the kit"),))
        test = self.kit.test(test_id)
        sections: list[SectionResult] = []
        params = {"$patientid$": patient_id} if patient_id else {}
        stopped = ""
        for section in test.sections:
            if stopped:
                sections.append(SectionResult(section=section, outcome=NOT_RUN, reason=stopped))
                continue
            result = self.run_section(test, section, params=params, patient_id=patient_id)
            sections.append(result)
            if result.outcome != PASS and self.config.stop_on_first_failure:
                stopped = f"section {section} did not pass"
        return TestResult(test=test_id, title=test.title, collections=tuple(sorted(test.collections)),
                          sections=tuple(sections))

    def run_section(self, test: TestDefinition, section: str, *, params: Mapping[str, str],
                    patient_id: str | None) -> SectionResult:
        try:
            plan = parse_testplan(test.testplan_path(section))
        except Exception as exc:  # noqa: BLE001
            return SectionResult(section=section, outcome=FAIL, reason=f"testplan unreadable: {exc}")
        context = _SectionContext(test=test, section=section, log=self.logs.new_section(test.test_id, section),
                                  params=dict(params), patient_id=patient_id)
        stopped = False
        for step in plan.steps:
            if stopped:
                context.results.append(StepResult(step=step.id, outcome=NOT_RUN,
                                                  reasons=("an earlier step of the section did not pass",)))
                continue
            result = self.run_step(context, step)
            context.results.append(result)
            stopped = result.outcome != PASS
        self.logs.save(test.test_id, section)
        steps = tuple(context.results)
        return SectionResult(section=section, steps=steps, outcome=section_outcome(steps))

    # ----------------------------------------------------------------- one step

    def run_step(self, context: _SectionContext, step: StepSpec) -> StepResult:
        test_step = etree.SubElement(context.log, "TestStep", id=step.id)
        if step.new_patient_id:
            context.patient_id = self.pids.new()
        patient_id = self.pids.new() if step.alt_patient_id else context.patient_id
        transaction = step.transaction
        if transaction is None:
            return StepResult(step=step.id, outcome=PASS, expected_status=step.expected_status)
        output = etree.SubElement(test_step, transaction.element, step=step.id)
        if not transaction.supported:
            why = (f"transaction {transaction.element} is not supported by the replayer" if transaction.kind is None
                   else f"instructions not supported: {', '.join(transaction.unsupported)}")
            return StepResult(step=step.id, outcome=NOT_SUPPORTED, transaction=transaction.element, reasons=(why,))
        try:
            return self._execute(context, step, transaction, output, patient_id)
        except StepUnsupported as exc:
            return StepResult(step=step.id, outcome=NOT_SUPPORTED, transaction=transaction.kind or "",
                              reasons=(str(exc),))
        except (StepFailure, requests.RequestException, OSError, ValueError) as exc:
            return StepResult(step=step.id, outcome=FAIL, transaction=transaction.kind or "",
                              expected_status=step.expected_status, reasons=(f"{type(exc).__name__}: {exc}",))
        except Exception as exc:  # noqa: BLE001 - e.g. RemoteProtocolError from an unreadable answer
            return StepResult(step=step.id, outcome=FAIL, transaction=transaction.kind or "",
                              expected_status=step.expected_status, reasons=(f"{type(exc).__name__}: {exc}",))

    def _execute(self, context: _SectionContext, step: StepSpec, transaction: TransactionSpec,
                 output: etree._Element, patient_id: str | None) -> StepResult:
        if transaction.wait_before_ms:
            time.sleep(transaction.wait_before_ms / 1000)
        report_values = self._use_reports(context, transaction.use_reports)
        if "$patientid$" in report_values and not step.alt_patient_id:
            # A UseReport bound to $patientid$ replaces the parameter, and the patient-id overwrite uses the
            # parameter: 20000d/e register under 15818's patient (without NoPatientId) and then update under it.
            patient_id = report_values["$patientid$"]
        if transaction.kind == "none":
            return self._finish(context, step, transaction, output, report_values, [], None)
        if transaction.kind == "ITI-8":
            return self._patient_feed(context, step, transaction, output)
        payload, attachments, prepared = self._build_request(context, transaction, report_values, patient_id)
        if prepared is not None:
            self._log_assignments(output, prepared)
        etree.SubElement(output, "InputMetadata").append(etree.fromstring(etree.tostring(payload)))
        action = ACTIONS[transaction.kind]
        url = self.config.registry_url if action.actor == "registry" else self.config.repository_url
        _sent, answer = send_soap(url, payload, action, attachments=attachments, session=self.session,
                                  timeout=self.config.timeout)
        try:
            etree.SubElement(output, "Result").append(etree.fromstring(etree.tostring(answer.payload)))
            problems = self._judge(context, step, transaction, answer)
            if not problems and transaction.kind == "ITI-43":
                report_values = {**report_values, **_retrieve_reports(answer)}
        finally:
            answer.response.dispose()
        automatic = {**context.params, **(prepared.automatic_reports() if prepared else {})}
        leftovers = sorted(placeholders_in(payload))
        if problems and leftovers:
            problems.append(f"the request still carried placeholders {', '.join(leftovers)}")
        summary = evaluate.summarize_response(answer.payload)
        return self._finish(context, step, transaction, output, report_values, problems, summary, automatic)

    def _finish(self, context: _SectionContext, step: StepSpec, transaction: TransactionSpec,
                output: etree._Element, report_values: Mapping[str, str], problems: list[str],
                summary: evaluate.ResponseSummary | None, automatic: Mapping[str, str] | None = None) -> StepResult:
        """Reports (after success), Assertions (if still passing), then the verdict."""
        if not problems:
            reports, report_problems = evaluate.evaluate_reports(transaction.reports, output)
            _add_reports(output, {**(automatic or {}), **reports})
            problems += report_problems
        if not problems and transaction.asserts:
            substitutions = {**context.params, **report_values}
            problems += evaluate.evaluate_assertions(transaction.asserts, context.log, substitutions)
        return StepResult(step=step.id, outcome=FAIL if problems else PASS, transaction=transaction.kind or "",
                          reasons=tuple(problems), expected_status=step.expected_status,
                          actual_status=("Fault" if summary.is_fault else summary.short_status) if summary else None,
                          error_codes=tuple(e.code for e in summary.errors) if summary else ())

    def _judge(self, context: _SectionContext, step: StepSpec, transaction: TransactionSpec,
               answer: SoapAnswer) -> list[str]:
        action = ACTIONS[transaction.kind]
        problems: list[str] = []
        if not answer.is_fault and answer.action != action.response:
            problems.append(f"response wsa:Action is {answer.action!r}, expected {action.response!r}")
        summary = evaluate.summarize_response(answer.payload)
        problems += evaluate.check_status(step.expected_status, summary)
        problems += evaluate.check_error_messages(step.expected_error_messages, summary)
        problems += evaluate.check_error_codes(step.expected_error_codes, summary)
        if transaction.expected_contents and transaction.kind == "ITI-18":
            problems += evaluate.check_expected_contents(
                transaction.expected_contents, answer.payload, resolve=lambda spec: self._resolve_use_id(context, spec))
        return problems

    def _patient_feed(self, context: _SectionContext, step: StepSpec, transaction: TransactionSpec,
                      output: etree._Element) -> StepResult:
        pid = (self.pids.new() if transaction.create_new_patient_id else transaction.patient_id
               or context.params.get("$patientid$") or self.pids.new())
        outcome, reasons = self._feed(pid)
        context.patient_id = pid
        context.params["$patientid$"] = pid
        _add_reports(output, {"$patientid$": pid})
        return StepResult(step=step.id, outcome=outcome, transaction="ITI-8", reasons=tuple(reasons))

    # ----------------------------------------------------------------- request building

    def _build_request(self, context: _SectionContext, transaction: TransactionSpec,
                       report_values: Mapping[str, str], patient_id: str | None
                       ) -> tuple[etree._Element, dict[str, bytes], PreparedMetadata | None]:
        if not transaction.metadata_file:
            raise StepFailure(f"{transaction.element} has no MetadataFile")
        template = xmlsafe.parse((context.directory / transaction.metadata_file).read_bytes(),
                                 what=f"template {transaction.metadata_file}")
        values = {**context.params, **report_values}
        use_ids = {} if transaction.kind == "ITI-43" else self._use_ids(context, transaction.use_ids)
        if transaction.kind not in _SUBMISSION_KINDS:
            substitute(template, {**values, **use_ids, **builtin_tokens()})
            return template, {}, None
        options = PrepareOptions(patient_id=patient_id, source_id=self.kit.source_id,
                                 assign_uuids=transaction.assign_uuids, no_assign_uids=transaction.no_assign_uids,
                                 no_assign_uids_id=transaction.no_assign_uids_id,
                                 no_patient_id=transaction.no_patient_id, parse_metadata=transaction.parse_metadata)
        prepared = prepare_metadata(template, options, values=values, use_ids=use_ids, new_uid=self.uids.new)
        submit = submit_objects_request(prepared.root, convert=not transaction.no_convert)
        if transaction.kind != "ITI-41":
            return submit, {}, prepared
        return self._provide_and_register(context, transaction, submit, prepared)

    def _provide_and_register(self, context: _SectionContext, transaction: TransactionSpec, submit: etree._Element,
                              prepared: PreparedMetadata) -> tuple[etree._Element, dict[str, bytes], PreparedMetadata]:
        documents: dict[str, str] = {}
        attachments: dict[str, bytes] = {}
        for number, document in enumerate(transaction.documents, start=1):
            content_id = f"doc{number}@nist-replayer"
            documents[prepared.assigned_uuids.get(document.id, document.id)] = content_id
            attachments[content_id] = (context.directory / document.file).read_bytes()
        return wrap_provide_and_register(submit, documents), attachments, prepared

    def _log_assignments(self, output: etree._Element, prepared: PreparedMetadata) -> None:
        for name, values in zip(_ASSIGN_SECTIONS, (prepared.assigned_patient_ids, prepared.assigned_uids,
                                                   prepared.assigned_source_ids, prepared.assigned_uuids)):
            _assign_block(output, name, values)

    # ----------------------------------------------------------------- state lookups

    def _log_address(self, context: _SectionContext, testdir: str | None) -> tuple[str, str]:
        """``../submit`` -> (this test, submit); ``../../12346/single_doc`` -> (12346, single_doc)."""
        if not testdir:
            return context.test.test_id, context.section
        base = posixpath.join(context.test.test_id, context.section)
        target = posixpath.normpath(posixpath.join(base, testdir)).strip("/").split("/")
        if len(target) == 2:
            return target[0], target[1]
        if len(target) == 1:
            return context.test.test_id, target[0]
        raise StepFailure(f"UseId testdir {testdir!r} does not name a test section")

    def _resolve_use_id(self, context: _SectionContext, spec: UseIdSpec) -> str | None:
        test, section = self._log_address(context, spec.testdir)
        return self.logs.assigned(test, section, spec.step, spec.section, spec.id)

    def _use_ids(self, context: _SectionContext, specs: Iterable[UseIdSpec]) -> dict[str, str]:
        values = {}
        for spec in specs:
            value = self._resolve_use_id(context, spec)
            if value is None:
                raise StepFailure(f"UseId {spec.symbol}: no {spec.section} entry for {spec.id} in step {spec.step} "
                                  f"of {spec.testdir or 'this section'}")
            values[spec.symbol] = value
        return values

    def _use_reports(self, context: _SectionContext, specs: Iterable[UseReportSpec]) -> dict[str, str]:
        values = {}
        for spec in specs:
            test = spec.test or context.test.test_id
            section = context.section if spec.section == "THIS" else spec.section
            value = self.logs.report(test, section, spec.step, spec.report_name)
            if value is None:
                raise StepFailure(f"UseReport {spec.use_as}: no report {spec.report_name} in {test}/{section}/"
                                  f"{spec.step}")
            values[spec.use_as] = value
        return values


def _retrieve_reports(answer: SoapAnswer) -> dict[str, str]:
    """``$repuid_docN$``, ``$mimetype_docN$``, ``$hash_docN$``, ``$home_docN$``, ``$size_docN$`` per document."""
    values: dict[str, str] = {}
    for number, response in enumerate(answer.payload.iter(qn(XDS, "DocumentResponse")), start=1):
        document = response.find(qn(XDS, "Document"))
        content = answer.response.binary(document).read() if document is not None else b""
        values.update({
            f"$repuid_doc{number}$": response.findtext(qn(XDS, "RepositoryUniqueId"), "").strip(),
            f"$mimetype_doc{number}$": response.findtext(qn(XDS, "mimeType"), "").strip(),
            f"$hash_doc{number}$": hashlib.sha1(content).hexdigest(),
            f"$home_doc{number}$": response.findtext(qn(XDS, "HomeCommunityId"), "").strip(),
            f"$size_doc{number}$": str(len(content)),
        })
    return values


def _next_second() -> None:
    """Let the set-up data age past the current second before the tests query them.

    Time ranges end before ``$now$`` (To is exclusive, to the second): under the toolkit the set-up tests run in
    earlier sessions, so their objects are always older than a query's ``$now$`` (11899/in_updatetime).
    """
    time.sleep(1.0 - (time.time() % 1.0) + 0.01)
