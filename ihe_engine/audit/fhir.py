"""Stored audit records as FHIR R4 AuditEvent resources (the DICOM -> FHIR mapping RESTful ATNA, ITI-81, uses).

EventID -> ``type``, EventTypeCode -> ``subtype``, EventActionCode -> ``action``, EventDateTime -> ``recorded``,
EventOutcomeIndicator -> ``outcome``, ActiveParticipant -> ``agent`` (UserID as ``who.identifier``, RoleIDCode as
``role``, NetworkAccessPoint as ``network``), AuditSourceIdentification -> ``source``, ParticipantObject ->
``entity`` (ID as ``what.identifier``, TypeCode -> ``type`` in audit-entity-type, TypeCodeRole -> ``role`` in
object-role, Query and Detail kept base64). Coding systems known by their DICOM codeSystemName get their URI;
others keep the name. A record stored as invalid carries its problems in an extension.
"""

from __future__ import annotations

import base64
import json
import re
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import Row

from . import dicom
from .hook import Code
from .repository import AuditQuery

__all__ = ["audit_event", "search_bundle", "system_uri", "system_name", "PROBLEMS_EXTENSION", "parse_time",
           "query_from_params", "SearchParameterError", "operation_outcome"]

PROBLEMS_EXTENSION = "urn:ihe-engine:audit:problems"
_SYSTEMS = {
    "DCM": "http://dicom.nema.org/resources/ontology/DCM",
    "IHE Transactions": "urn:ihe:event-type-code",
    "RFC-3881": "urn:ietf:rfc:3881",
}
_NAMES = {uri: name for name, uri in _SYSTEMS.items()}
_ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
_OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
_LIFECYCLE = "http://terminology.hl7.org/CodeSystem/dicom-audit-lifecycle"
_NETWORK_TYPES = {"1", "2", "3", "4", "5"}


def system_uri(name: str) -> str:
    return _SYSTEMS.get(name, name)


def system_name(uri: str) -> str:
    """The DICOM codeSystemName for a FHIR system URI (a search parameter ``system|code``)."""
    return _NAMES.get(uri, uri)


def _coding(code: Code) -> dict[str, str]:
    value, system, text = code
    coding = {"system": system_uri(system), "code": value}
    if text:
        coding["display"] = text
    return coding


def audit_event(row: Row) -> dict[str, Any]:
    """One stored record as an AuditEvent (the raw message is re-read: it is the record of truth)."""
    facts = dicom.analyse(bytes(row.raw)) if row.raw_kind == "xml" else dicom.AuditFacts()
    event: dict[str, Any] = {"resourceType": "AuditEvent", "id": str(row.id),
                             "meta": {"lastUpdated": row.received_at.isoformat()}}
    if row.event_code:
        event["type"] = _coding((row.event_code, row.event_system or "", row.event_text or ""))
    if facts.event_types:
        event["subtype"] = [_coding(code) for code in facts.event_types]
    if row.action:
        event["action"] = row.action
    event["recorded"] = row.event_time.isoformat()
    if row.outcome is not None:
        event["outcome"] = str(row.outcome)
    if facts.outcome_description:
        event["outcomeDesc"] = facts.outcome_description
    if facts.purposes_of_use:
        event["purposeOfEvent"] = [{"coding": [_coding(code)]} for code in facts.purposes_of_use]
    event["agent"] = [_agent(participant) for participant in facts.participants]
    event["source"] = _source(facts, row)
    if facts.objects:
        event["entity"] = [_entity(item) for item in facts.objects]
    if not row.valid:
        event["extension"] = [{"url": PROBLEMS_EXTENSION, "valueString": problem}
                              for problem in json.loads(row.problems or "[]")]
    return event


def _agent(participant: dicom.ActiveParticipantFacts) -> dict[str, Any]:
    agent: dict[str, Any] = {"requestor": bool(participant.is_requestor)}
    if participant.roles:
        agent["type"] = {"coding": [_coding(participant.roles[0])]}
        if len(participant.roles) > 1:
            agent["role"] = [{"coding": [_coding(role)]} for role in participant.roles[1:]]
    if participant.user_id:
        agent["who"] = {"identifier": {"value": participant.user_id}}
    if participant.alternative_user_id:
        agent["altId"] = participant.alternative_user_id
    if participant.user_name:
        agent["name"] = participant.user_name
    if participant.network_access_point:
        network = {"address": participant.network_access_point}
        if participant.network_access_point_type in _NETWORK_TYPES:
            network["type"] = participant.network_access_point_type
        agent["network"] = network
    return agent


def _source(facts: dicom.AuditFacts, row: Row) -> dict[str, Any]:
    source: dict[str, Any] = {"observer": {"display": facts.source_id or row.source_id or row.peer or "unknown"}}
    if facts.enterprise_site_id:
        source["site"] = facts.enterprise_site_id
    if facts.source_types:
        source["type"] = [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": code}
                          if not system or system == "DCM" else _coding((code, system, text))
                          for code, system, text in facts.source_types]
    return source


def _entity(item: dicom.ObjectFacts) -> dict[str, Any]:
    entity: dict[str, Any] = {}
    if item.object_id:
        identifier: dict[str, Any] = {"value": item.object_id}
        if item.id_type is not None:
            identifier["type"] = {"coding": [_coding(item.id_type)]}
        entity["what"] = {"identifier": identifier}
    if item.type_code:
        entity["type"] = {"system": _ENTITY_TYPE, "code": item.type_code}
    if item.type_code_role:
        entity["role"] = {"system": _OBJECT_ROLE, "code": item.type_code_role}
    if item.name:
        entity["name"] = item.name
    if item.query is not None:
        entity["query"] = base64.b64encode(item.query).decode("ascii")
    if item.details:
        entity["detail"] = [{"type": kind, "valueBase64Binary": value} for kind, value in item.details]
    return entity


def search_bundle(rows: list[Row], *, self_url: str, next_url: str | None, base: str) -> dict[str, Any]:
    links = [{"relation": "self", "url": self_url}]
    if next_url:
        links.append({"relation": "next", "url": next_url})
    return {"resourceType": "Bundle", "type": "searchset", "link": links,
            "entry": [{"fullUrl": f"{base}/AuditEvent/{row.id}", "resource": audit_event(row),
                       "search": {"mode": "match"}} for row in rows]}


# --------------------------------------------------------------------------------------------------- search params


class SearchParameterError(ValueError):
    """A search parameter value the server cannot use; answered 400 with an OperationOutcome naming it."""

    def __init__(self, parameter: str, text: str) -> None:
        super().__init__(f"{parameter}: {text}")
        self.parameter = parameter


_DATE_ONLY = re.compile(r"(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?\Z")
MAX_COUNT = 1000


def parse_time(text: str, *, end: bool = False) -> datetime:
    """A FHIR date/dateTime (``2026``, ``2026-11``, ``2026-11-22``, or with a time and zone) as an instant;
    a partial date means its first instant, or with ``end`` its last."""
    match = _DATE_ONLY.match(text)
    if match:
        year, month, day = int(match[1]), int(match[2] or 1), int(match[3] or 1)
        start = datetime(year, month, day, tzinfo=timezone.utc)
        if not end:
            return start
        if match[3]:
            following = start + timedelta(days=1)
        elif match[2]:
            following = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=timezone.utc)
        else:
            following = datetime(year + 1, 1, 1, tzinfo=timezone.utc)
        return following - timedelta(microseconds=1)
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def query_from_params(params: dict[str, list[str]]) -> tuple[AuditQuery, list[str]]:
    """ITI-81 style parameters -> an AuditQuery, and the parameters ignored (unknown to this server)."""
    criteria: dict[str, Any] = {}
    ignored = []
    for name, values in params.items():
        for value in values:
            if name in _TOKEN_PARAMETERS:
                criteria[_TOKEN_PARAMETERS[name]] = _token(name, value)
            elif name == "date":
                _date_criterion(value, criteria)
            elif name == "outcome":
                if value not in ("0", "4", "8", "12"):
                    raise SearchParameterError(name, "must be 0, 4, 8 or 12")
                criteria["outcome"] = int(value)
            elif name == "action":
                if value not in ("C", "R", "U", "D", "E"):
                    raise SearchParameterError(name, "must be C, R, U, D or E")
                criteria["action"] = value
            elif name == "_count":
                if not value.isdigit() or not 1 <= int(value) <= MAX_COUNT:
                    raise SearchParameterError(name, f"must be an integer from 1 to {MAX_COUNT}")
                criteria["limit"] = int(value)
            elif name == "_offset":
                if not value.isdigit():
                    raise SearchParameterError(name, "must be a non-negative integer")
                criteria["offset"] = int(value)
            elif name not in ("_format",):
                ignored.append(name)
    return AuditQuery(**criteria), ignored


_TOKEN_PARAMETERS = {"patient": "patient", "patient.identifier": "patient", "entity-id": "entity",
                     "agent": "user", "altid": "user", "type": "event", "subtype": "event_type",
                     "source": "source"}


def _token(name: str, value: str) -> str:
    if not value:
        raise SearchParameterError(name, "is empty")
    if name == "type" and "|" in value:
        system, _, code = value.rpartition("|")
        return f"{system_name(system)}|{code}"
    if name == "subtype":
        return value.rpartition("|")[2]
    if name == "patient" and value.startswith("Patient/"):
        return value[len("Patient/"):]
    return value


def _date_criterion(value: str, criteria: dict[str, Any]) -> None:
    prefix, text = (value[:2], value[2:]) if value[:2] in ("ge", "gt", "le", "lt", "eq") else ("eq", value)
    try:
        start, end = parse_time(text), parse_time(text, end=True)
    except ValueError:
        raise SearchParameterError("date", f"{value!r} is not a FHIR date or dateTime") from None
    if prefix in ("ge", "eq"):
        criteria["since"] = max(start, criteria.get("since", start))
    if prefix == "gt":
        criteria["since"] = end + timedelta(microseconds=1)
    if prefix in ("le", "eq"):
        criteria["until"] = min(end, criteria.get("until", end))
    if prefix == "lt":
        criteria["until"] = start - timedelta(microseconds=1)


def operation_outcome(text: str, *, code: str = "invalid", expression: str | None = None) -> dict[str, Any]:
    issue: dict[str, Any] = {"severity": "error", "code": code, "diagnostics": text}
    if expression:
        issue["expression"] = [expression]
    return {"resourceType": "OperationOutcome", "issue": [issue]}
