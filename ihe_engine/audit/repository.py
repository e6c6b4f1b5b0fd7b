"""The Audit Record Repository (ATNA ARR, ITI-20 receiving side): store, search, per-patient history, verify.

Plain functions on a SQLAlchemy session (the caller's unit of work commits), so the syslog receivers, the local
outbox drainer, the CLI and the HTTP API share them and none knows about sockets.

Every message is stored, whatever it holds: :func:`ingest` reads it with :func:`ihe_engine.audit.dicom.analyse`,
keeps the raw bytes, marks it ``valid`` or stores its problems, and indexes whatever could be read.

Hash chain. Each record's ``id`` is its position in one chain and ``record_hash = sha256(prev_hash, canonical
columns, sha256(raw), index keys)``. Ids and hashes are assigned inside the inserting transaction while it holds
the chain head (``audit_chain``, one row: ``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite's ``BEGIN IMMEDIATE``
already serializes writers). So any number of workers and machines on one PostgreSQL extend the same chain one
batch at a time, and the chain has no holes by construction: a gap, a broken link or a hash that does not match
its columns means a record was deleted or altered (:func:`verify`). The lock is held only for the insert of one
batch (parsing happens before it is taken), so batches from several writers queue briefly instead of forking
the chain. A per-writer chain would avoid the wait but makes "which record is missing" depend on knowing every
writer; one chain keeps verification a single ordered scan.

Exactly-once: a record may carry an ``idempotency_key`` (unique); a batch skips keys already stored, checked under
the chain lock, so redelivering an outbox item after a crash stores nothing twice.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterator, Sequence

from sqlalchemy import Row, and_, exists, select, update
from sqlalchemy.orm import Session

from ..transport.syslog import SyslogMessage
from . import dicom
from .tables import AuditChainHead, AuditIndexRow, AuditRecordRow

__all__ = ["Incoming", "AuditQuery", "VerifyReport", "PreparedRecord", "ingest", "prepare", "store_prepared",
           "search", "get", "patient_history", "verify", "from_syslog", "from_invalid_frame", "EXPECTED_MSGID",
           "GENESIS_HASH", "access_kind"]

EXPECTED_MSGID = "IHE+RFC-3881"
GENESIS_HASH = "0" * 64
MAX_KEY = 512
_RECORD = AuditRecordRow.__table__
_INDEX = AuditIndexRow.__table__
_CHAIN = AuditChainHead.__table__


@dataclass(frozen=True, kw_only=True)
class Incoming:
    """One message to store: the XML (``raw_kind="xml"``) or a frame that was not RFC 5424 (``"syslog"``)."""

    raw: bytes
    transport: str
    received_at: datetime
    raw_kind: str = "xml"
    peer: str | None = None
    hostname: str | None = None
    app_name: str | None = None
    msgid: str | None = None
    envelope_problem: str | None = None
    idempotency_key: str | None = None


def from_syslog(message: SyslogMessage, *, peer: str | None, transport: str, received_at: datetime,
                idempotency_key: str | None = None) -> Incoming:
    problem = None
    if message.msgid != EXPECTED_MSGID:
        problem = f"syslog MSGID is {message.msgid or '-'!r}, ATNA requires {EXPECTED_MSGID!r}"
    return Incoming(raw=message.msg, transport=transport, received_at=received_at, peer=peer,
                    hostname=message.hostname, app_name=message.app_name, msgid=message.msgid,
                    envelope_problem=problem, idempotency_key=idempotency_key)


def from_invalid_frame(raw: bytes, error: Exception, *, peer: str | None, transport: str,
                       received_at: datetime) -> Incoming:
    """Bytes the syslog layer could not frame or parse are kept too, flagged with the reason."""
    return Incoming(raw=raw, raw_kind="syslog", transport=transport, received_at=received_at, peer=peer,
                    envelope_problem=f"syslog: {error}")


# --------------------------------------------------------------------------------------------------- ingest


@dataclass
class PreparedRecord:
    """A message read and checked, ready for the chain: its columns (no id or hashes yet) and its index keys."""

    columns: dict[str, Any]
    keys: list[tuple[str, str]]


def ingest(session: Session, items: Sequence[Incoming],
           analyse: Callable[[bytes], dicom.AuditFacts] | None = None) -> list[int]:
    """Store ``items`` in one transaction (the caller commits); returns the ids given, duplicates skipped.

    ``analyse`` reads a message (the benchmark's bulk loader passes one that knows its generated messages)."""
    # the expensive part, done before the chain is locked
    return store_prepared(session, [prepare(item, analyse or dicom.analyse) for item in items])


def store_prepared(session: Session, prepared: Sequence[PreparedRecord]) -> list[int]:
    """Chain and insert records read by :func:`prepare`: lock the head, skip known keys, hash, insert, move the head.

    The rows go to the driver as tuples in one ``COPY`` (PostgreSQL) or ``executemany`` (SQLite): what a Core
    ``insert()`` would store, without SQLAlchemy's per-row parameter machinery. The values are
    already what the columns' bind processors would give (aware UTC datetimes, bools), except the text form of
    a datetime on SQLite, written by :func:`sqlite_utc_text` once per record (the tests hold it equal to
    SQLAlchemy's)."""
    last_id, last_hash = _lock_chain(session)
    fresh = _without_duplicates(session, list(prepared))
    if not fresh:
        return []
    connection = session.connection()
    bind_time = sqlite_utc_text if connection.dialect.name == "sqlite" else _utc
    records, index_rows = [], []
    for entry in fresh:
        last_id += 1
        columns = entry.columns
        columns["id"], columns["prev_hash"] = last_id, last_hash
        last_hash = columns["record_hash"] = record_hash(columns, entry.keys)
        row = [columns[name] for name in _RECORD_COLUMNS]
        event_time = row[_EVENT_TIME] = bind_time(row[_EVENT_TIME])
        row[_RECEIVED_AT] = bind_time(row[_RECEIVED_AT])
        records.append(tuple(row))
        index_rows += [(last_id, kind, value, event_time) for kind, value in entry.keys]
    _bulk_insert(connection, _RECORD, _RECORD_COLUMNS).execute(connection, records)
    if index_rows:
        _bulk_insert(connection, _INDEX, _INDEX_COLUMNS).execute(connection, index_rows)
    connection.execute(update(_CHAIN).where(_CHAIN.c.id == 1).values(last_id=last_id, last_hash=last_hash))
    return [row[_ID] for row in records]


_RECORD_COLUMNS = tuple(column.name for column in _RECORD.columns)
_INDEX_COLUMNS = ("record_id", "kind", "value", "event_time")
_ID, _EVENT_TIME, _RECEIVED_AT = (_RECORD_COLUMNS.index(name) for name in ("id", "event_time", "received_at"))


class BulkInsert:
    """Rows into one table in one go: ``COPY ... FROM STDIN`` with psycopg (PostgreSQL parses one stream instead
    of one INSERT per row), else ``executemany`` on the DBAPI cursor."""

    def __init__(self, table: Any, names: Sequence[str], dialect: Any) -> None:
        quote = dialect.identifier_preparer.quote
        columns = ", ".join(quote(name) for name in names)
        marker = "?" if dialect.paramstyle == "qmark" else "%s"
        self.sql = f"INSERT INTO {quote(table.name)} ({columns}) VALUES ({', '.join([marker] * len(names))})"
        self.copy_sql = f"COPY {quote(table.name)} ({columns}) FROM STDIN" if dialect.driver == "psycopg" else None

    def execute(self, connection: Any, rows: Sequence[Sequence[Any]]) -> None:
        if self.copy_sql is None:
            connection.exec_driver_sql(self.sql, rows)
        else:
            self._copy(connection, rows)

    def _copy(self, connection: Any, rows: Sequence[Sequence[Any]]) -> None:
        """On the unit of work's own connection and transaction; driver errors become SQLAlchemy's, so the
        receiver still tells "database away" (retry the batch) from a bad batch."""
        from sqlalchemy.exc import DBAPIError

        dbapi_error = connection.dialect.loaded_dbapi.Error
        try:
            with connection.connection.driver_connection.cursor() as cursor, cursor.copy(self.copy_sql) as copy:
                for row in rows:
                    copy.write_row(row)
        except dbapi_error as error:
            raise DBAPIError.instance(self.copy_sql, None, error, dbapi_error) from error


def sqlite_utc_text(value: datetime | None) -> str | None:
    """A UTC datetime as SQLAlchemy's SQLite DATETIME stores it (``YYYY-MM-DD HH:MM:SS.ffffff``); its generic
    formatter costs ~4 us a value."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    return value.astimezone(timezone.utc).isoformat(" ", "microseconds")[:26]


_INSERTS: dict[tuple[str, str], BulkInsert] = {}


def _bulk_insert(connection: Any, table: Any, names: Sequence[str]) -> BulkInsert:
    key = (connection.dialect.name, table.name)
    statement = _INSERTS.get(key)
    if statement is None:
        statement = _INSERTS[key] = BulkInsert(table, names, connection.dialect)
    return statement


def _lock_chain(session: Session) -> tuple[int, str]:
    query = select(_CHAIN.c.last_id, _CHAIN.c.last_hash).where(_CHAIN.c.id == 1)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    row = session.connection().execute(query).one()
    return int(row.last_id), row.last_hash


def _without_duplicates(session: Session, prepared: list[PreparedRecord]) -> list[PreparedRecord]:
    keys = [entry.columns["idempotency_key"] for entry in prepared if entry.columns["idempotency_key"]]
    if not keys:
        return prepared
    seen = set(session.connection().execute(
        select(_RECORD.c.idempotency_key).where(_RECORD.c.idempotency_key.in_(keys))).scalars())
    fresh = []
    for entry in prepared:
        key = entry.columns["idempotency_key"]
        if key is None or key not in seen:
            fresh.append(entry)
            if key is not None:
                seen.add(key)
    return fresh


def prepare(item: Incoming, analyse: Callable[[bytes], dicom.AuditFacts] | None = None) -> PreparedRecord:
    """Read, check and index one message: the work done outside the chain lock."""
    analyse = analyse or dicom.analyse
    problems: list[str] = [item.envelope_problem] if item.envelope_problem else []
    facts = dicom.AuditFacts()
    if item.raw_kind == "xml":
        if item.raw.strip():
            facts = analyse(item.raw)
            problems += [str(problem) for problem in facts.problems]
        else:
            problems.append("syslog MSG is empty: no audit message")
    event_id = facts.event_id
    outcome = facts.outcome if facts.outcome in ("0", "4", "8", "12") else None
    columns = {
        "idempotency_key": item.idempotency_key, "received_at": _utc(item.received_at),
        "event_time": _utc(facts.event_time or item.received_at),
        "event_code": _cut(event_id[0], 64) if event_id else None,
        "event_system": _cut(event_id[1], 64) if event_id else None,
        "event_text": _cut(event_id[2], 128) if event_id else None,
        "action": facts.action if facts.action in ("C", "R", "U", "D", "E") else None,
        "outcome": int(outcome) if outcome is not None else None,
        "source_id": _cut(facts.source_id, 255), "valid": not problems,
        "problems": json.dumps(problems, ensure_ascii=False) if problems else None,
        "transport": item.transport, "peer": _cut(item.peer, 255), "hostname": item.hostname,
        "app_name": item.app_name, "msgid": item.msgid, "raw_kind": item.raw_kind, "raw": item.raw,
    }
    return PreparedRecord(columns, index_keys(facts))


def index_keys(facts: dicom.AuditFacts) -> list[tuple[str, str]]:
    """The search keys of a message: each patient id (a ``~`` repetition split), user, object and event type."""
    keys: dict[tuple[str, str], None] = {}
    for patient in facts.patient_ids:
        for single in patient.split("~"):
            if single.strip():
                keys[("P", _cut(single.strip(), MAX_KEY))] = None  # type: ignore[index]
    for user in facts.user_ids:
        keys[("U", _cut(user, MAX_KEY))] = None  # type: ignore[index]
    for object_id in facts.object_ids:
        keys[("O", _cut(object_id, MAX_KEY))] = None  # type: ignore[index]
    for code, _system, _text in facts.event_types:
        if code:
            keys[("T", _cut(code, MAX_KEY))] = None  # type: ignore[index]
    return list(keys)


def _cut(value: str | None, limit: int) -> str | None:
    return value[:limit] if value is not None else None


def _utc(value: datetime) -> datetime:
    return value.astimezone(timezone.utc) if value.tzinfo else value.replace(tzinfo=timezone.utc)


# --------------------------------------------------------------------------------------------------- hash chain

_HASHED = ("id", "idempotency_key", "received_at", "event_time", "event_code", "event_system", "event_text",
           "action", "outcome", "source_id", "valid", "problems", "transport", "peer", "hostname", "app_name",
           "msgid", "raw_kind")


_CANONICAL = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":"))  # built once: hot path


def record_hash(columns: dict[str, Any], keys: Sequence[tuple[str, str]]) -> str:
    """sha256 over the previous hash, every stored column (the raw bytes by their own sha256) and the keys."""
    canonical = {name: columns[name] for name in _HASHED}
    for name in ("received_at", "event_time"):  # the only datetime columns
        canonical[name] = _utc(canonical[name]).isoformat(timespec="microseconds")
    canonical["valid"] = bool(canonical["valid"])
    canonical["raw"] = hashlib.sha256(columns["raw"]).hexdigest()
    canonical["keys"] = sorted(tuple(key) for key in keys)  # tuples encode as the same JSON arrays
    text = _CANONICAL.encode(canonical)
    return hashlib.sha256(columns["prev_hash"].encode("ascii") + b"\n" + text.encode("utf-8")).hexdigest()


@dataclass
class VerifyReport:
    checked: int = 0
    last_id: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.problems


def verify(session: Session, *, chunk: int = 5000) -> VerifyReport:
    """Walk the chain in id order: report every gap (deleted records), broken link and altered record."""
    report = VerifyReport()
    expected_id, previous_hash = 1, GENESIS_HASH
    for rows, keys in _chain_chunks(session, chunk):
        for row in rows:
            columns = dict(row._mapping)
            if columns["id"] != expected_id:
                report.problems.append(_gap(expected_id, columns["id"] - 1))
            elif columns["prev_hash"] != previous_hash:
                report.problems.append(f"record {columns['id']}: link to the previous record is broken")
            if record_hash(columns, keys.get(columns["id"], [])) != columns["record_hash"]:
                report.problems.append(f"record {columns['id']}: altered (its hash does not match its content)")
            expected_id, previous_hash = columns["id"] + 1, columns["record_hash"]
            report.checked += 1
            report.last_id = columns["id"]
    head = session.connection().execute(select(_CHAIN.c.last_id, _CHAIN.c.last_hash).where(_CHAIN.c.id == 1)).one()
    if head.last_id > report.last_id:
        report.problems.append(_gap(report.last_id + 1, head.last_id) + " (the newest records)")
    elif head.last_id == report.last_id and head.last_hash != previous_hash:
        report.problems.append(f"chain head does not match record {report.last_id}: altered")
    elif head.last_id < report.last_id:
        report.problems.append(f"records after {head.last_id} are not in the chain head: inserted outside ingest")
    return report


def _gap(first: int, last: int) -> str:
    return f"record {first} missing (deleted)" if first == last else f"records {first}..{last} missing (deleted)"


def _chain_chunks(session: Session, chunk: int) -> Iterator[tuple[list[Row], dict[int, list[tuple[str, str]]]]]:
    connection = session.connection()
    after = 0
    while True:
        rows = list(connection.execute(select(_RECORD).where(_RECORD.c.id > after).order_by(_RECORD.c.id)
                                       .limit(chunk)))
        if not rows:
            return
        first, last = rows[0].id, rows[-1].id
        keys: dict[int, list[tuple[str, str]]] = {}
        for key in connection.execute(select(_INDEX.c.record_id, _INDEX.c.kind, _INDEX.c.value)
                                      .where(_INDEX.c.record_id.between(first, last))):
            keys.setdefault(key.record_id, []).append((key.kind, key.value))
        yield rows, keys
        after = last


# --------------------------------------------------------------------------------------------------- search


@dataclass(frozen=True, kw_only=True)
class AuditQuery:
    """Search criteria, all optional and combined with AND; newest first."""

    patient: str | None = None
    user: str | None = None
    entity: str | None = None
    event_type: str | None = None
    event: str | None = None
    """EventID code, or ``system|code``."""
    since: datetime | None = None
    until: datetime | None = None
    outcome: int | None = None
    action: str | None = None
    source: str | None = None
    valid: bool | None = None
    limit: int = 100
    offset: int = 0


def search(session: Session, query: AuditQuery) -> list[Row]:
    """Matching ``audit_record`` rows, newest event first; driven by the most selective index available."""
    keys = [(kinds, value) for kinds, value in ((("P",), query.patient), (("U",), query.user),
                                                (("P", "O"), query.entity), (("T",), query.event_type))
            if value]
    if keys:
        (kinds, value), others = keys[0], keys[1:]
        driver = _INDEX.alias("driver")
        time_column = driver.c.event_time
        statement = (select(_RECORD).select_from(driver.join(_RECORD, _RECORD.c.id == driver.c.record_id))
                     .where(_key_match(driver, kinds, value))
                     .order_by(driver.c.event_time.desc(), driver.c.record_id.desc()))
        for kinds, value in others:
            other = _INDEX.alias()
            statement = statement.where(exists().where(other.c.record_id == _RECORD.c.id, _key_match(other, kinds,
                                                                                                      value)))
    else:
        time_column = _RECORD.c.event_time
        statement = select(_RECORD).order_by(_RECORD.c.event_time.desc(), _RECORD.c.id.desc())
    statement = statement.where(*_record_filters(query, time_column))
    statement = statement.limit(max(1, min(query.limit, 10_000))).offset(max(0, query.offset))
    return list(session.connection().execute(statement))


def _key_match(table: Any, kinds: tuple[str, ...], value: str) -> Any:
    kind = table.c.kind == kinds[0] if len(kinds) == 1 else table.c.kind.in_(kinds)
    return and_(kind, table.c.value == value[:MAX_KEY])


def _record_filters(query: AuditQuery, time_column: Any) -> list[Any]:
    filters = []
    if query.since is not None:
        filters.append(time_column >= _utc(query.since))
    if query.until is not None:
        filters.append(time_column <= _utc(query.until))
    if query.event:
        system, _, code = query.event.rpartition("|")
        filters.append(_RECORD.c.event_code == code)
        if system:
            filters.append(_RECORD.c.event_system == system)
    if query.outcome is not None:
        filters.append(_RECORD.c.outcome == query.outcome)
    if query.action:
        filters.append(_RECORD.c.action == query.action)
    if query.source:
        filters.append(_RECORD.c.source_id == query.source)
    if query.valid is not None:
        filters.append(_RECORD.c.valid.is_(query.valid))
    return filters


# --------------------------------------------------------------------------------------------------- history

QUERY_EVENT = "110112"


def access_kind(event_code: str | None, action: str | None) -> str:
    """What a person reading their own history understands: read, write, query (or execute, unknown)."""
    if event_code == QUERY_EVENT:
        return "query"
    return {"R": "read", "C": "write", "U": "write", "D": "write", "E": "execute"}.get(action or "", "unknown")


def patient_history(session: Session, patient: str, *, since: datetime | None = None,
                    until: datetime | None = None, limit: int = 500) -> list[dict[str, Any]]:
    """Who accessed this patient's data, from which system, which documents, when, and how; newest first."""
    rows = search(session, AuditQuery(patient=patient, since=since, until=until, limit=limit))
    return [history_entry(row) for row in rows]


def history_entry(row: Row) -> dict[str, Any]:
    facts = dicom.analyse(bytes(row.raw)) if row.raw_kind == "xml" else dicom.AuditFacts()
    requestor = facts.requestor or (facts.participants[0] if facts.participants else None)
    documents = [item.object_id for item in facts.objects
                 if item.object_id and not item.is_patient and item.type_code_role != "24"]
    return {
        "when": row.event_time.isoformat(), "record": row.id,
        "access": access_kind(row.event_code, row.action),
        "event": {"code": row.event_code, "system": row.event_system, "display": row.event_text},
        "transactions": [code for code, _, _ in facts.event_types],
        "user": requestor.user_id if requestor else None,
        "user_name": requestor.user_name if requestor else None,
        "system": (requestor.network_access_point if requestor and requestor.network_access_point
                   else row.source_id),
        "documents": documents, "outcome": row.outcome, "valid": row.valid,
    }


def get(session: Session, record_id: int) -> Row | None:
    return session.connection().execute(select(_RECORD).where(_RECORD.c.id == record_id)).first()
