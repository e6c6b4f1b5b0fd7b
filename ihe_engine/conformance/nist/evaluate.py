"""Judging a step as the toolkit does: status, error codes and messages, ExpectedContents, Reports, Assertions.

Every check returns a list of human-readable failure reasons (empty = pass), so the report can say exactly
what was expected and what came back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Callable, Iterable, Mapping, Sequence

from lxml import etree

from ...ns import RIM, RS, SOAP12, qn
from .testplan import AssertSpec, ContentCheck, DocumentEntryRule, ReportSpec, UseIdSpec
from ...xds import constants as c

__all__ = [
    "RegistryError",
    "ResponseSummary",
    "ResponseMetadata",
    "check_error_codes",
    "check_error_messages",
    "check_expected_contents",
    "check_status",
    "assertion_tree",
    "evaluate_assertions",
    "evaluate_reports",
    "rewrite_assertion",
    "summarize_response",
]

_STATUS_PREFIX = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:"
_IHE_STATUS_PREFIX = "urn:ihe:iti:2007:ResponseStatusType:"
_SS_NODE = c.SS_CLASSIFICATION_NODE
_FOLDER_NODE = c.FOLDER_CLASSIFICATION_NODE
_SS_IDENTIFIERS = frozenset({c.SS_UNIQUE_ID, c.SS_PATIENT_ID, c.SS_SOURCE_ID})
_FOLDER_IDENTIFIERS = frozenset({c.FOLDER_UNIQUE_ID, c.FOLDER_PATIENT_ID})
_STABLE = c.DE_STABLE
_ON_DEMAND = c.DE_ON_DEMAND
HAS_MEMBER, RPLC, APND, XFRM_RPLC, IS_SNAPSHOT_OF = c.HAS_MEMBER, c.RPLC, c.APND, c.XFRM_RPLC, c.IS_SNAPSHOT_OF


# --------------------------------------------------------------------------- status and errors


@dataclass(frozen=True, kw_only=True)
class RegistryError:
    code: str
    context: str
    severity: str
    location: str = ""

    @property
    def is_warning(self) -> bool:
        return self.severity.endswith("Warning")

    @property
    def is_error(self) -> bool:
        return not self.severity or self.severity.endswith("Error")


@dataclass(frozen=True, kw_only=True)
class ResponseSummary:
    """The status-bearing part of an answer: a SOAP fault, or a status URN with its RegistryErrors."""

    is_fault: bool
    status: str | None
    errors: tuple[RegistryError, ...] = ()
    fault_reason: str = ""

    @property
    def short_status(self) -> str:
        return (self.status or "").rsplit(":", 1)[-1]


def _local(element: etree._Element) -> str:
    return etree.QName(element).localname


def _status_holder(payload: etree._Element) -> etree._Element | None:
    if payload.get("status") is not None:
        return payload
    return next(payload.iter(qn(RS, "RegistryResponse")), None)


def summarize_response(payload: etree._Element) -> ResponseSummary:
    """Status and errors of RegistryResponse, AdhocQueryResponse or RetrieveDocumentSetResponse (or a fault)."""
    if payload.tag == qn(SOAP12, "Fault"):
        reason = " ".join(" ".join(payload.itertext()).split())
        return ResponseSummary(is_fault=True, status=None, fault_reason=reason)
    holder = _status_holder(payload)
    errors = tuple(RegistryError(code=e.get("errorCode", ""), context=e.get("codeContext", ""),
                                 severity=e.get("severity", ""), location=e.get("location", ""))
                   for e in payload.iter(qn(RS, "RegistryError")))
    return ResponseSummary(is_fault=False, status=holder.get("status") if holder is not None else None, errors=errors)


def check_status(expected: Sequence[str], summary: ResponseSummary) -> list[str]:
    """The toolkit's rule: a valid status URN whose last segment is one of ``expected`` (any case)."""
    wanted = {value.lower() for value in expected}
    if summary.is_fault:
        return [] if "fault" in wanted else [f"expected status {','.join(expected)}, got a SOAP Fault: "
                                             f"{summary.fault_reason[:300]}"]
    if "fault" in wanted and len(wanted) == 1:
        return [f"expected a SOAP Fault, got status {summary.status}"]
    status = summary.status or ""
    if not (status.startswith(_STATUS_PREFIX)
            or (status.startswith(_IHE_STATUS_PREFIX) and status.endswith("PartialSuccess"))):
        return [f"response status {status!r} is not a ResponseStatusType URN"]
    if summary.short_status.lower() not in wanted:
        return [f"expected status {','.join(expected)}, got {summary.short_status}"
                + _error_suffix(summary.errors)]
    if wanted == {"success"}:
        bad = [error for error in summary.errors if not error.is_warning]
        if bad:
            return [f"status Success but the response carries errors{_error_suffix(bad)}"]
    return []


def _error_suffix(errors: Iterable[RegistryError]) -> str:
    shown = [f"{e.code}: {e.context[:160]}" for e in errors][:5]
    return f" ({'; '.join(shown)})" if shown else ""


def check_error_codes(expected: Sequence[str], summary: ResponseSummary) -> list[str]:
    codes = {error.code for error in summary.errors}
    return [f"expected error code {code}, got {sorted(codes) or 'none'}" for code in expected if code not in codes]


def check_error_messages(expected: Sequence[str], summary: ResponseSummary) -> list[str]:
    """Each message must be a substring of the codeContext or errorCode of some Error-severity RegistryError."""
    texts = [text for e in summary.errors if e.is_error for text in (e.context, e.code)]
    return [f"expected an error mentioning {message!r}, got {_error_suffix(summary.errors) or 'no errors'}"
            for message in expected if not any(message in text for text in texts)]


# --------------------------------------------------------------------------- ExpectedContents


@dataclass(frozen=True, kw_only=True)
class ResponseMetadata:
    """Objects of a query response, classified the way ExpectedContents counts them."""

    documents: tuple[etree._Element, ...]
    submission_sets: tuple[etree._Element, ...]
    folders: tuple[etree._Element, ...]
    associations: tuple[etree._Element, ...]
    object_refs: tuple[etree._Element, ...]

    @classmethod
    def from_response(cls, payload: etree._Element) -> "ResponseMetadata":
        objects = [e for e in payload.iter() if isinstance(e.tag, str) and etree.QName(e).namespace == RIM]
        packages = [e for e in objects if _local(e) == "RegistryPackage"]
        top_classifications = [e for e in objects if _local(e) == "Classification"]
        kinds = {id(p): _package_kind(p, top_classifications) for p in packages}
        return cls(documents=tuple(e for e in objects if _local(e) == "ExtrinsicObject"),
                   submission_sets=tuple(p for p in packages if kinds[id(p)] == "ss"),
                   folders=tuple(p for p in packages if kinds[id(p)] == "folder"),
                   associations=tuple(e for e in objects if _local(e) == "Association"),
                   object_refs=tuple(e for e in objects if _local(e) == "ObjectRef"
                                     and _local(e.getparent()) in ("RegistryObjectList", "LeafRegistryObjectList")))


def _package_kind(package: etree._Element, classifications: Sequence[etree._Element]) -> str:
    pid = package.get("id")
    nodes = {c.get("classificationNode") for c in classifications
             if c.getparent() is package or (pid and c.get("classifiedObject") == pid)}
    schemes = {e.get("identificationScheme") for e in package if isinstance(e.tag, str)
               and _local(e) == "ExternalIdentifier"}
    if _SS_NODE in nodes or schemes & _SS_IDENTIFIERS - _FOLDER_IDENTIFIERS:
        return "ss"
    if _FOLDER_NODE in nodes or schemes & _FOLDER_IDENTIFIERS:
        return "folder"
    return "ss" if schemes & _SS_IDENTIFIERS else "unknown"


def _status(element: etree._Element) -> str:
    return (element.get("status") or "").rsplit(":", 1)[-1]


def _has_assoc(meta: ResponseMetadata, source: etree._Element | None, target: etree._Element | None,
               kind: str = HAS_MEMBER) -> bool:
    if source is None or target is None:
        return False
    return any(a.get("associationType") == kind and a.get("sourceObject") == source.get("id")
               and a.get("targetObject") == target.get("id") for a in meta.associations)


def _counts(meta: ResponseMetadata, *, ss: int | None = None, docs: int | None = None, folders: int | None = None,
            assocs: int | None = None) -> list[str]:
    wanted = (("SubmissionSets", ss, meta.submission_sets), ("Documents", docs, meta.documents),
              ("Folders", folders, meta.folders), ("Associations", assocs, meta.associations))
    return [f"expected {n} {label}, got {len(found)}" for label, n, found in wanted if n is not None and len(found) != n]


def _first(items: Sequence[etree._Element]) -> etree._Element | None:
    return items[0] if items else None


def _ss_approved(meta: ResponseMetadata) -> list[str]:
    ss = _first(meta.submission_sets)
    return [] if ss is not None and _status(ss) == "Approved" else ["SubmissionSet is not Approved"]


def _ss_with_docs(meta: ResponseMetadata, n: int, *, status: bool) -> list[str]:
    problems = _counts(meta, ss=1, docs=n, assocs=n)
    if problems:
        return problems
    ss = meta.submission_sets[0]
    if not _has_assoc(meta, ss, meta.documents[0]):
        problems.append("no HasMember SubmissionSet -> DocumentEntry association")
    return problems + (_ss_approved(meta) if status else [])


def _ss_with_one_fol(meta: ResponseMetadata) -> list[str]:
    problems = _counts(meta, ss=1, docs=0, folders=1, assocs=1)
    if not problems and not _has_assoc(meta, meta.submission_sets[0], meta.folders[0]):
        problems.append("no HasMember SubmissionSet -> Folder association")
    return problems


def _membership(meta: ResponseMetadata, folder: etree._Element, document: etree._Element) -> etree._Element | None:
    return next((a for a in meta.associations if a.get("associationType") == HAS_MEMBER
                 and a.get("sourceObject") == folder.get("id") and a.get("targetObject") == document.get("id")), None)


def _folder_pattern(meta: ResponseMetadata, docs: int, assocs: int, docs_in_folder: int | None) -> list[str]:
    """SS with documents and one folder: SS->each doc, SS->folder, folder->doc(s), SS->each membership."""
    problems = _counts(meta, docs=docs, folders=1, assocs=assocs)
    if problems or not meta.submission_sets:
        return problems or ["no SubmissionSet"]
    ss, folder = meta.submission_sets[0], meta.folders[0]
    problems += [f"no HasMember SubmissionSet -> DocumentEntry {d.get('id')}" for d in meta.documents
                 if not _has_assoc(meta, ss, d)]
    if not _has_assoc(meta, ss, folder):
        problems.append("no HasMember SubmissionSet -> Folder")
    memberships = [m for m in (_membership(meta, folder, d) for d in meta.documents) if m is not None]
    expected = len(meta.documents) if docs_in_folder is None else docs_in_folder
    if len(memberships) != expected:
        problems.append(f"expected {expected} Folder -> DocumentEntry associations, got {len(memberships)}")
    problems += [f"no HasMember SubmissionSet -> folder membership {m.get('id')}" for m in memberships
                 if not _has_assoc(meta, ss, m)]
    return problems


def _all_status(items: Sequence[etree._Element], status: str, label: str) -> list[str]:
    return [f"{label} {e.get('id')} is {_status(e) or 'without status'}, expected {status}" for e in items
            if _status(e) != status]


def _exactly_one(items: Sequence[etree._Element], status: str) -> list[str]:
    matching = sum(1 for e in items if _status(e) == status)
    return [] if matching == 1 else [f"expected exactly one {status} DocumentEntry, got {matching}"]


def _has_type(meta: ResponseMetadata, kind: str) -> list[str]:
    return [] if any(a.get("associationType") == kind for a in meta.associations) else \
        [f"no association of type {kind}"]


def _doc_rplc_doc(meta: ResponseMetadata) -> list[str]:
    problems = _counts(meta, docs=2)
    rplcs = [a for a in meta.associations if a.get("associationType") == RPLC]
    if len(rplcs) != 1:
        return problems + [f"expected 1 RPLC association, got {len(rplcs)}"]
    replaced = next((d for d in meta.documents if d.get("id") == rplcs[0].get("targetObject")), None)
    if replaced is None or _status(replaced) != "Deprecated":
        problems.append("the replaced DocumentEntry is not Deprecated")
    return problems


def _snapshot_pattern(meta: ResponseMetadata) -> list[str]:
    snapshots = [a for a in meta.associations if a.get("associationType") == IS_SNAPSHOT_OF]
    if len(snapshots) != 1:
        return [f"expected 1 IsSnapshotOf association, got {len(snapshots)}"]
    by_id = {d.get("id"): d for d in meta.documents}
    source, target = by_id.get(snapshots[0].get("sourceObject")), by_id.get(snapshots[0].get("targetObject"))
    if source is None or target is None or source.get("objectType") != _STABLE \
            or target.get("objectType") != _ON_DEMAND:
        return ["IsSnapshotOf does not link a stable DocumentEntry to an on-demand one"]
    return _all_status([source, target], "Approved", "DocumentEntry")


def _object_refs(meta: ResponseMetadata, n: int) -> list[str]:
    problems = [] if len(meta.object_refs) == n else [f"expected {n} ObjectRefs, got {len(meta.object_refs)}"]
    if meta.submission_sets or meta.documents or meta.folders or meta.associations:
        problems.append("ObjectRef response also carries LeafClass objects")
    return problems


def _none(meta: ResponseMetadata) -> list[str]:
    if meta.submission_sets or meta.documents or meta.folders:
        return [f"expected no objects, got {len(meta.submission_sets)} SubmissionSets, {len(meta.documents)} "
                f"DocumentEntries, {len(meta.folders)} Folders"]
    return [f"expected no objects, got {len(meta.associations)} Associations"] if meta.associations else []


def _registry_response_valid(payload: etree._Element) -> list[str]:
    status = payload.get("status") or ""
    return [] if status.startswith((_STATUS_PREFIX, _IHE_STATUS_PREFIX)) else [f"invalid response status {status!r}"]


_COUNTED = {"Documents": "documents", "Associations": "associations", "Folders": "folders",
            "SubmissionSets": "submission_sets"}

_PATTERNS: Mapping[str, Callable[[ResponseMetadata], list[str]]] = {
    "SSwithOneDoc": lambda m: _ss_with_docs(m, 1, status=True),
    "SSwithTwoDoc": lambda m: _ss_with_docs(m, 2, status=True),
    "SSwithOneDocOnly": lambda m: _ss_with_docs(m, 1, status=False),
    "SSwithTwoDocOnly": lambda m: _ss_with_docs(m, 2, status=False),
    "SSwithOneFol": _ss_with_one_fol,
    "SSwithOneDocOneFol": lambda m: _counts(m, ss=1) + _folder_pattern(m, 1, 4, None),
    "SSwithTwoDocOneFol": lambda m: _folder_pattern(m, 2, 7, None),
    "SSwithTwoDocOneFolOneDocInFol": lambda m: _folder_pattern(m, 2, 5, 1),
    "SSApproved": _ss_approved,
    "DocApp": lambda m: _all_status(m.documents, "Approved", "DocumentEntry"),
    "DocDep": lambda m: _all_status(m.documents, "Deprecated", "DocumentEntry"),
    "OneDocApp": lambda m: _exactly_one(m.documents, "Approved"),
    "OneDocDep": lambda m: _exactly_one(m.documents, "Deprecated"),
    "FolApp": lambda m: _all_status(m.folders, "Approved", "Folder"),
    "FolDep": lambda m: _all_status(m.folders, "Deprecated", "Folder"),
    "HasRPLC": lambda m: _has_type(m, RPLC),
    "HasAPND": lambda m: _has_type(m, APND),
    "HasXFRM_RPLC": lambda m: _has_type(m, XFRM_RPLC),
    "DocRplcDoc": _doc_rplc_doc,
    "HasSnapshotPattern": _snapshot_pattern,
    "None": _none,
    "NoSubmissionSet": lambda m: _counts(m, ss=0),
    "NoDocument": lambda m: _counts(m, docs=0),
}


def _document_entries(meta: ResponseMetadata, rules: Sequence[DocumentEntryRule],
                      resolve: Callable[[UseIdSpec], str | None]) -> list[str]:
    problems: list[str] = []
    by_id = {d.get("id"): d for d in meta.documents}
    must_only = 0
    for rule in rules:
        if rule.mode == "All":
            problems += [f"DocumentEntry {d.get('id')} has objectType {d.get('objectType')}, expected "
                         f"{rule.object_type}" for d in meta.documents if d.get("objectType") != rule.object_type]
            continue
        wanted = resolve(rule.use_id) if rule.use_id is not None else None
        found = by_id.get(wanted)
        matches = found is not None and (rule.object_type is None or found.get("objectType") == rule.object_type)
        if rule.mode == "Exclude" and matches:
            problems.append(f"DocumentEntry {wanted} must not be in the response")
        elif rule.mode != "Exclude" and not matches:
            problems.append(f"DocumentEntry {wanted} ({rule.object_type or 'any type'}) is missing")
        must_only += rule.mode == "MustOnlyInclude"
    if must_only and must_only != len(meta.documents):
        problems.append(f"MustOnlyInclude lists {must_only} DocumentEntries, the response has {len(meta.documents)}")
    return problems


def check_expected_contents(checks: Sequence[ContentCheck], payload: etree._Element, *,
                            resolve: Callable[[UseIdSpec], str | None] = lambda _spec: None) -> list[str]:
    """Every ExpectedContents child against the response metadata; failures name the check."""
    meta = ResponseMetadata.from_response(payload)
    problems: list[str] = []
    for check in checks:
        problems += [f"{check.name}: {reason}" for reason in _run_check(check, meta, payload, resolve)]
    return problems


def _run_check(check: ContentCheck, meta: ResponseMetadata, payload: etree._Element,
               resolve: Callable[[UseIdSpec], str | None]) -> list[str]:
    if check.name in _COUNTED:
        found = len(getattr(meta, _COUNTED[check.name]))
        return [] if found == check.count else [f"expected {check.count}, got {found}"]
    if check.name == "ObjectRefs":
        return _object_refs(meta, check.count or 0)
    if check.name == "DocumentEntries":
        return _document_entries(meta, check.rules, resolve)
    if check.name == "RegistryResponseIsValid":
        return _registry_response_valid(payload)
    pattern = _PATTERNS.get(check.name)
    return pattern(meta) if pattern else [f"unknown ExpectedContents check {check.name!r}"]


# --------------------------------------------------------------------------- Reports and Assertions


def _xpath_value(result: object) -> str | None:
    if isinstance(result, list):
        if not result:
            return None
        first = result[0]
        if isinstance(first, etree._Element):
            return "".join(first.itertext()).strip()
        return str(first)
    if isinstance(result, bool):
        return "true" if result else "false"
    if isinstance(result, float) and result.is_integer():
        return str(int(result))
    return None if result is None else str(result)


def evaluate_reports(reports: Sequence[ReportSpec], output: etree._Element) -> tuple[dict[str, str], list[str]]:
    """Evaluate each Report's XPath on a copy of the step's transaction output (``//`` sees it whole)."""
    document = etree.ElementTree(etree.fromstring(etree.tostring(output)))
    values: dict[str, str] = {}
    problems: list[str] = []
    for report in reports:
        try:
            value = _xpath_value(document.xpath(report.xpath))
        except etree.XPathError as exc:
            problems.append(f"Report {report.name}: invalid XPath ({exc})")
            continue
        if value is None:
            problems.append(f"Report {report.name}: no value for {report.xpath}")
        else:
            values[report.name] = value
    return values, problems


def rewrite_assertion(expression: str, substitutions: Mapping[str, str], today: date | None = None) -> str:
    """Substitutions (UseReport values, ``$DATE$``) then the toolkit's ``equalsIgnoreCase`` rewrite."""
    text = expression
    for symbol, value in {**substitutions, "$DATE$": (today or date.today()).strftime("%Y%m%d")}.items():
        if symbol:
            text = text.replace(symbol, value)
    if "equalsIgnoreCase" in text:
        text = text.replace("equalsIgnoreCase", "=").lower()
    return text


def assertion_tree(section_log: etree._Element) -> etree._ElementTree:
    """``<Data><output><TestResults>...</TestResults></output></Data>`` around a copy of the section log."""
    data = etree.Element("Data")
    output = etree.SubElement(data, "output")
    output.append(etree.fromstring(etree.tostring(section_log)))
    return etree.ElementTree(data)


def evaluate_assertions(asserts: Sequence[AssertSpec], section_log: etree._Element,
                        substitutions: Mapping[str, str], *, today: date | None = None) -> list[str]:
    """Each Assert must evaluate to true (XPath 1.0) over the section log so far."""
    tree = assertion_tree(section_log)
    problems = []
    for spec in asserts:
        expression = rewrite_assertion(spec.xpath, substitutions, today)
        try:
            result = tree.xpath(expression)
        except etree.XPathError as exc:
            problems.append(f"Assert {spec.id}: invalid XPath ({exc})")
            continue
        if not _truthy(result):
            problems.append(f"Assert {spec.id} is false: {' '.join(expression.split())[:300]}")
    return problems


def _truthy(result: object) -> bool:
    if isinstance(result, list):
        return bool(result)
    if isinstance(result, str):
        return result.lower() == "true"
    return bool(result)
