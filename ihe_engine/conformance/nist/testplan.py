"""testplan.xml parsed into frozen dataclasses.

Only what the replayer acts on is modelled; documentation elements (Rule, Goal, Standard, InteractionSequence)
are kept as text or dropped. Children the replayer cannot honour are recorded in ``unsupported`` so that the
step is reported as "not supported" rather than silently run without them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree

from ... import xmlsafe

__all__ = [
    "AssertSpec",
    "ContentCheck",
    "DocumentEntryRule",
    "DocumentSpec",
    "ReferenceDocument",
    "ReferenceMetadata",
    "ReportSpec",
    "StepSpec",
    "SUPPORTED_TRANSACTIONS",
    "TestPlan",
    "TransactionSpec",
    "UseIdSpec",
    "UseReportSpec",
    "parse_testplan",
    "parse_testplan_bytes",
]

#: Transaction element -> short kind used by the wire layer.
SUPPORTED_TRANSACTIONS = {
    "RegisterTransaction": "ITI-42",
    "MuTransaction": "ITI-57",
    "RmuTransaction": "ITI-92",
    "ProvideAndRegisterTransaction": "ITI-41",
    "StoredQueryTransaction": "ITI-18",
    "RetrieveTransaction": "ITI-43",
    "RemoveMetadataTransaction": "ITI-62",
    "RdTransaction": "ITI-86",
    "PatientIdentityFeedTransaction": "ITI-8",
    "NullTransaction": "none",
}

# Transaction children that change what is sent but are not implemented (reported as not supported).
_UNSUPPORTED_CHILDREN = frozenset({
    "SOAPHeader", "WSSECHeader", "ASync", "CleanParams", "UseXPath", "UseRepositoryUniqueId", "Metadata",
    "XDSa", "UseObjectRef", "SUTInitiates",
})
# Children with no effect on the exchange.
_IGNORED_CHILDREN = frozenset({"InteractionSequence", "Rule", "Goal", "Standard", "XDSb", "ExpectedMimeType"})
_STEP_LEVEL = frozenset({"ExpectedStatus", "ExpectedErrorCode", "ExpectedErrorMessage", "Goal", "Standard", "Rule",
                         "NewPatientId", "AltPatientId"})


@dataclass(frozen=True, kw_only=True)
class UseIdSpec:
    """Take ``Assign[@symbol=id]/@id`` from ``section`` of step ``step`` (of ``testdir``'s log) for ``symbol``."""

    testdir: str | None
    step: str
    section: str
    id: str
    symbol: str


@dataclass(frozen=True, kw_only=True)
class UseReportSpec:
    """Substitute the value of report ``report_name`` (of test/section/step) for the literal ``use_as``."""

    test: str | None
    section: str
    step: str
    report_name: str
    use_as: str


@dataclass(frozen=True, kw_only=True)
class ReportSpec:
    name: str
    section: str
    xpath: str


@dataclass(frozen=True, kw_only=True)
class AssertSpec:
    id: str
    xpath: str


@dataclass(frozen=True, kw_only=True)
class DocumentSpec:
    """A PnR attachment: ExtrinsicObject symbolic id and the file (relative to the section directory)."""

    id: str
    file: str


@dataclass(frozen=True, kw_only=True)
class ReferenceMetadata:
    testdir: str
    step: str


@dataclass(frozen=True, kw_only=True)
class ReferenceDocument:
    uid: str
    file: str


@dataclass(frozen=True, kw_only=True)
class DocumentEntryRule:
    """A DocumentEntries rule: mode MustOnlyInclude/Include/Exclude with a UseId, or All with a type only."""

    mode: str
    use_id: UseIdSpec | None = None
    object_type: str | None = None


@dataclass(frozen=True, kw_only=True)
class ContentCheck:
    """One ExpectedContents child: its name, its count attribute, and DocumentEntries rules."""

    name: str
    count: int | None = None
    rules: tuple[DocumentEntryRule, ...] = ()


@dataclass(frozen=True, kw_only=True)
class TransactionSpec:
    """A step's transaction element and its instructions."""

    element: str
    kind: str | None
    metadata_file: str | None = None
    documents: tuple[DocumentSpec, ...] = ()
    assign_uuids: bool = False
    uid_exclusions: tuple[str, ...] = ()
    no_assign_uids: bool = False
    no_assign_uids_id: str | None = None
    no_patient_id: bool = False
    no_metadata: bool = False
    parse_metadata: bool = True
    no_convert: bool = False
    use_ids: tuple[UseIdSpec, ...] = ()
    use_reports: tuple[UseReportSpec, ...] = ()
    reports: tuple[ReportSpec, ...] = ()
    asserts: tuple[AssertSpec, ...] = ()
    expected_contents: tuple[ContentCheck, ...] | None = None
    wait_before_ms: int = 0
    reference_metadata: tuple[ReferenceMetadata, ...] = ()
    reference_documents: tuple[ReferenceDocument, ...] = ()
    create_new_patient_id: bool = False
    patient_id: str | None = None
    unsupported: tuple[str, ...] = ()

    @property
    def supported(self) -> bool:
        return self.kind is not None and not self.unsupported


@dataclass(frozen=True, kw_only=True)
class StepSpec:
    id: str
    expected_status: tuple[str, ...]
    expected_error_codes: tuple[str, ...] = ()
    expected_error_messages: tuple[str, ...] = ()
    goal: str = ""
    new_patient_id: bool = False
    alt_patient_id: bool = False
    transaction: TransactionSpec | None = None


@dataclass(frozen=True, kw_only=True)
class TestPlan:
    __test__ = False

    test: str
    path: Path | None
    steps: tuple[StepSpec, ...] = field(default_factory=tuple)


def _elements(parent: etree._Element):
    return (child for child in parent if isinstance(child.tag, str))


def _text(element: etree._Element) -> str:
    return "".join(element.itertext()).strip()


def _use_id(element: etree._Element) -> UseIdSpec:
    return UseIdSpec(testdir=element.get("testdir"), step=element.get("step", ""), section=element.get("section", ""),
                     id=element.get("id", ""), symbol=element.get("symbol", ""))


def _use_report(element: etree._Element) -> UseReportSpec:
    return UseReportSpec(test=element.get("test"), section=element.get("section", "THIS"), step=element.get("step", ""),
                         report_name=element.get("reportName", ""), use_as=element.get("useAs", ""))


def _document_entry_rules(element: etree._Element) -> tuple[DocumentEntryRule, ...]:
    rules: list[DocumentEntryRule] = []
    for child in _elements(element):
        if child.tag == "DocumentEntryType":
            rules.append(DocumentEntryRule(mode="All", object_type=_text(child)))
            continue
        for entry in _elements(child):
            use = entry.find("UseId")
            kind = entry.find("DocumentEntryType")
            rules.append(DocumentEntryRule(mode=child.tag, use_id=_use_id(use) if use is not None else None,
                                           object_type=_text(kind) if kind is not None else None))
    return tuple(rules)


def _content_checks(element: etree._Element) -> tuple[ContentCheck, ...]:
    checks = []
    for child in _elements(element):
        count = child.get("count")
        rules = _document_entry_rules(child) if child.tag == "DocumentEntries" else ()
        checks.append(ContentCheck(name=child.tag, count=int(count) if count is not None else None, rules=rules))
    return tuple(checks)


def _asserts(element: etree._Element) -> list[AssertSpec]:
    return [AssertSpec(id=child.get("id", ""), xpath=_text(child)) for child in element.iter("Assert")]


def _parse_transaction(element: etree._Element) -> TransactionSpec:
    values: dict = {"element": element.tag, "kind": SUPPORTED_TRANSACTIONS.get(element.tag)}
    lists: dict[str, list] = {name: [] for name in ("documents", "use_ids", "use_reports", "reports", "asserts",
                                                     "reference_metadata", "reference_documents", "unsupported",
                                                     "uid_exclusions")}
    for child in _elements(element):
        _apply_instruction(child, values, lists)
    values.update({name: tuple(items) for name, items in lists.items()})
    return TransactionSpec(**values)


def _apply_instruction(child: etree._Element, values: dict, lists: dict[str, list]) -> None:  # noqa: C901
    tag = child.tag
    if tag == "MetadataFile":
        values["metadata_file"] = _text(child)
    elif tag == "Document":
        lists["documents"].append(DocumentSpec(id=child.get("id", ""), file=_text(child)))
    elif tag == "AssignUuids":
        values["assign_uuids"] = True
        lists["uid_exclusions"].extend(e.get("value", "") for e in child.iter("Exclude"))
    elif tag == "NoAssignUids":
        values["no_assign_uids"] = True
        values["no_assign_uids_id"] = child.get("id")
    elif tag == "NoPatientId":
        values["no_patient_id"] = True
    elif tag == "NoMetadata":
        values["no_metadata"] = True
    elif tag == "ParseMetadata":
        values["parse_metadata"] = _text(child).lower() != "false"
    elif tag == "NoConvert":
        values["no_convert"] = True
    elif tag == "UseId":
        lists["use_ids"].append(_use_id(child))
    elif tag == "UseReport":
        lists["use_reports"].append(_use_report(child))
    elif tag == "Report":
        lists["reports"].append(ReportSpec(name=child.get("name", ""), section=child.get("section", ""),
                                           xpath=_text(child)))
    elif tag == "Assertions":
        lists["asserts"].extend(_asserts(child))
    elif tag == "ExpectedContents":
        values["expected_contents"] = _content_checks(child)
    elif tag == "WaitBefore":
        values["wait_before_ms"] = int(_text(child) or 0)
    elif tag == "ReferenceMetadata":
        lists["reference_metadata"].append(ReferenceMetadata(testdir=child.get("testdir", ""),
                                                             step=child.get("step", "")))
    elif tag == "ReferenceDocument":
        lists["reference_documents"].append(ReferenceDocument(uid=child.get("uid", ""), file=_text(child)))
    elif tag == "CreateNewPatientId":
        values["create_new_patient_id"] = True
    elif tag == "PatientID":
        values["patient_id"] = _text(child)
    elif tag in _IGNORED_CHILDREN:
        pass
    elif tag in _UNSUPPORTED_CHILDREN:
        lists["unsupported"].append(tag)
    else:
        lists["unsupported"].append(tag)


def _parse_step(element: etree._Element) -> StepSpec:
    expected: list[str] = []
    codes: list[str] = []
    messages: list[str] = []
    values: dict = {"id": element.get("id", "")}
    for child in _elements(element):
        if child.tag == "ExpectedStatus":
            expected.extend(part.strip() for part in _text(child).split(",") if part.strip())
        elif child.tag == "ExpectedErrorCode":
            codes.append(_text(child))
        elif child.tag == "ExpectedErrorMessage":
            messages.append(_text(child))
        elif child.tag == "Goal":
            values["goal"] = " ".join(_text(child).split())
        elif child.tag == "NewPatientId":
            values["new_patient_id"] = True
        elif child.tag == "AltPatientId":
            values["alt_patient_id"] = True
        elif child.tag not in _STEP_LEVEL and "transaction" not in values:
            values["transaction"] = _parse_transaction(child)
    return StepSpec(expected_status=tuple(expected) or ("Success",), expected_error_codes=tuple(codes),
                    expected_error_messages=tuple(messages), **values)


def parse_testplan_bytes(data: bytes, *, path: Path | None = None) -> TestPlan:
    """Parse testplan bytes (our own kit files, but still through the hardened parser)."""
    root = xmlsafe.parse(data, what=f"testplan {path}" if path else "testplan")
    test = root.findtext("Test") or ""
    steps = tuple(_parse_step(step) for step in root.iter("TestStep"))
    return TestPlan(test=test.strip(), path=path, steps=steps)


def parse_testplan(path: str | Path) -> TestPlan:
    path = Path(path)
    return parse_testplan_bytes(path.read_bytes(), path=path)
