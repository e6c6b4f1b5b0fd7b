"""Identity vigilance: the queue and its decisions (store), the CLI (subprocess) and the HTTP JSON API (real serve)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

import hl7
import pytest
from hl7.client import MLLPClient

from ihe_engine.audit import AuditHook
from ihe_engine.france.rules import FrenchIdentityRules
from ihe_engine.identity.cx import CX
from ihe_engine.identity.linking import CrossReferences
from ihe_engine.identity.store import Demographics, FeedEvent, IdentityStore
from ihe_engine.identity.vigilance import VigilanceDesk, VigilanceError
from ihe_engine.plugins import create_plugin_manager, hookimpl
from ihe_engine.storage import UnitOfWork
from serving import start_engine

X, Y = "1.2.250.1.71.1.2.1", "1.2.250.1.71.1.2.2"
INS_A = "161027575428992^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.8&ISO^INS"
INS_B = "279035121518989^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.8&ISO^INS"
MARTIN = dict(family_name="MARTIN", birth_name="MARTIN", given_name="Paul", birth_date="19610215", sex="M")


def cx(value: str, oid: str = X) -> CX:
    return CX(id=value, universal_id=oid, universal_id_type="ISO")


class CapturingSink:
    def __init__(self) -> None:
        self.records: list = []

    @hookimpl
    def ihe_audit_record(self, record) -> None:
        self.records.append(record)


def make_desk(database, sink=None, rules=None) -> VigilanceDesk:
    plugins = create_plugin_manager(load_entry_points=False)
    if sink is not None:
        plugins.register(sink)

    def uow(*, readonly: bool = False) -> UnitOfWork:
        return UnitOfWork(database.sessions, readonly=readonly)

    return VigilanceDesk(uow=uow, xref=lambda session: CrossReferences(session, rules=rules),
                         audit=AuditHook(plugins))


def feed(database, *identifiers: CX, rules=None, **traits):
    with UnitOfWork(database.sessions) as uow:
        outcome = CrossReferences(uow.session, rules=rules).feed(list(identifiers), Demographics(**traits),
                                                                 FeedEvent(kind="A01"))
        uow.commit()
    return outcome


def near_pair(database, rules=None, first=(cx("A"),), second=(cx("B", Y),)):
    kept = feed(database, *first, rules=rules, **MARTIN)
    near = feed(database, *second, rules=rules, **{**MARTIN, "family_name": "MARTINS", "birth_name": "MARTINS"})
    assert near.vigilance_item_id is not None
    return kept.result.patient_id, near.result.patient_id, near.vigilance_item_id


def person_of(database, identifier: CX) -> int:
    with UnitOfWork(database.sessions) as uow:
        return IdentityStore(uow.session).resolve(identifier).patient_id


# -- the desk over the store -------------------------------------------------------------------------------------

def test_accept_links_records_history_and_audit(database):
    sink = CapturingSink()
    desk = make_desk(database, sink)
    kept, near, item_id = near_pair(database)
    [listed] = desk.list_items()
    assert (listed["id"], listed["kind"], listed["patient_identifiers"], listed["other_patient_identifiers"]) == \
        (item_id, "possible-match", [str(cx("B", Y))], [str(cx("A"))])
    decided = desk.decide(item_id, accept=True, by="alice")
    assert (decided["status"], decided["decided_by"]) == ("accepted", "alice") and decided["decided_at"]
    assert person_of(database, cx("B", Y)) == person_of(database, cx("A")) == kept
    assert desk.list_items() == [] and len(desk.list_items(status="accepted")) == 1
    history = desk.history(str(cx("B", Y)))
    assert [event["kind"] for event in history["events"]] == ["A01", "A01", "link", "vigilance-accept"]
    assert history["identifiers"] == [str(cx("A")), str(cx("B", Y))]
    [record] = sink.records
    assert (record.event_id[0], record.action, record.outcome, record.participants[0].user_id) == \
        ("110110", "U", 0, "alice")


def test_reject_keeps_apart_and_the_pair_is_never_proposed_again(database):
    desk = make_desk(database)
    kept, near, item_id = near_pair(database)
    assert desk.decide(item_id, accept=False, by="bob")["status"] == "rejected"
    assert person_of(database, cx("B", Y)) == near != kept
    feed(database, cx("B", Y), **{**MARTIN, "family_name": "MARTINS", "birth_name": "MARTINS"})
    with UnitOfWork(database.sessions) as uow:  # even a fresh proposal of the same pair is refused
        assert CrossReferences(uow.session).vigilance.propose(kept, near, "again") is None
    assert desk.list_items() == []


@pytest.mark.parametrize(("item", "by", "status"), [(999, "alice", 404), (None, "", 400), (None, "alice", 409)])
def test_decision_errors(database, item, by, status):
    desk = make_desk(database)
    _, _, item_id = near_pair(database)
    desk.decide(item_id, accept=False, by="first")
    with pytest.raises(VigilanceError) as raised:
        desk.decide(item if item is not None else item_id, accept=True, by=by)
    assert raised.value.status == status


def test_two_national_identities_cannot_be_linked_by_a_decision(database):
    rules = FrenchIdentityRules()
    qualified = {"identity_reliability": "QUAL"}
    kept = feed(database, cx("A"), CX.from_hl7(INS_A), rules=rules, **MARTIN, **qualified)
    near = feed(database, cx("B", Y), CX.from_hl7(INS_B), rules=rules, **qualified,
                **{**MARTIN, "family_name": "MARTINS", "birth_name": "MARTINS"})
    desk = make_desk(database, rules=rules)
    with pytest.raises(VigilanceError) as raised:
        desk.decide(near.vigilance_item_id, accept=True, by="alice")
    assert raised.value.status == 409
    assert person_of(database, cx("B", Y)) != kept.result.patient_id
    assert desk.list_items()[0]["status"] == "open"  # nothing was decided


def test_review_item_after_a_merge_is_acknowledged(database):
    rules = FrenchIdentityRules()
    feed(database, cx("KEEP"), rules=rules)
    feed(database, cx("GONE"), CX.from_hl7(INS_A), rules=rules, identity_reliability="QUAL")
    with UnitOfWork(database.sessions) as uow:
        _, item_id = CrossReferences(uow.session, rules=rules).merge(cx("KEEP"), cx("GONE"), FeedEvent(kind="A40"))
        uow.commit()
    desk = make_desk(database, rules=rules)
    [item] = desk.list_items()
    assert (item["id"], item["kind"], item["details"]) == (item_id, "review", {"left": [INS_A]})
    assert desk.decide(item_id, accept=True, by="carol")["status"] == "accepted"
    assert desk.history(str(cx("KEEP")))["identifiers"] == [str(cx("KEEP"))]


# -- the CLI, as an operator runs it ------------------------------------------------------------------------------

def cli(database, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ihe_engine.cli", "identity", *args, "--db-url",
                           database.url.render_as_string(hide_password=False)],
                          capture_output=True, text=True, timeout=120, env=dict(os.environ, PYTHONUNBUFFERED="1"))


def test_cli_lists_accepts_and_shows_history(database):
    kept, near, item_id = near_pair(database)
    listed = cli(database, "queue", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [item["id"] for item in json.loads(listed.stdout)["items"]] == [item_id]
    lines = cli(database, "queue", "list")
    assert f"#{item_id} possible-match open" in lines.stdout
    accepted = cli(database, "queue", "accept", str(item_id), "--by", "dora")
    assert accepted.returncode == 0 and "accepted by dora" in accepted.stdout
    again = cli(database, "queue", "reject", str(item_id), "--by", "dora")
    assert again.returncode == 1 and "already accepted" in again.stderr
    history = cli(database, "history", str(cx("B", Y)), "--json")
    assert history.returncode == 0
    assert [event["kind"] for event in json.loads(history.stdout)["events"]][-2:] == ["link", "vigilance-accept"]
    assert person_of(database, cx("B", Y)) == kept
    unknown = cli(database, "history", str(cx("NOBODY")))
    assert unknown.returncode == 1 and "not known" in unknown.stderr
    assert cli(database, "history", "no authority").returncode == 1


# -- the HTTP JSON API on the real serve ----------------------------------------------------------------------------

def http(base: str, path: str, body: dict | bytes | None = None, method: str | None = None):
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method or ("POST" if data is not None else "GET"),
                                     headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def adt(control_id: str, pid3: str, family: str) -> str:
    return (f"MSH|^~\\&|SRC|HOSP|ENGINE|SITE|20240101120000||ADT^A01^ADT_A01|{control_id}|P|2.5\r"
            f"EVN|A01|20240101120000\rPID|||{pid3}||{family}^PAUL^^^^^L||19610215|M\rPV1||O\r")


def test_http_api_on_the_real_serve(database, tmp_path):
    config = tmp_path / "engine.toml"
    config.write_text("[api]\nallow_loopback = true\n")  # the API is closed by default (tests/test_api_access.py)
    engine = start_engine(tmp_path / "data", "--db-url", database.url.render_as_string(hide_password=False),
                          "--config", str(config))
    try:
        host, port = engine.host_port("mllp")
        with MLLPClient(host, port) as client:
            client.socket.settimeout(10)
            for control_id, pid3, family in (("H1", f"A^^^&{X}&ISO", "MARTIN"), ("H2", f"B^^^&{Y}&ISO", "MARTINS")):
                answer = client.send_message(adt(control_id, pid3, family))
                assert str(hl7.parse(answer[1:-2].decode()).segment("MSA")[1]) == "AA"
        base = engine.url("health").rsplit("/health", 1)[0]
        status, listed = http(base, "/api/identity/queue")
        assert status == 200
        [item] = listed["items"]
        assert item["patient_identifiers"] == [f"B^^^&{Y}&ISO"]
        assert http(base, f"/api/identity/queue/{item['id']}/accept", b"")[0] == 400  # who decides?
        assert http(base, f"/api/identity/queue/{item['id']}/accept", b"{not json")[0] == 400
        assert http(base, "/api/identity/queue/999999/accept", {"by": "eve"})[0] == 404
        assert http(base, "/api/identity/queue/abc/accept", {"by": "eve"})[0] == 404
        assert http(base, f"/api/identity/queue/{item['id']}/accept", method="GET")[0] == 405
        assert http(base, "/api/identity/queue", {"by": "eve"})[0] == 405
        assert http(base, "/api/identity/queue?limit=0")[0] == 400
        assert http(base, "/api/identity/queue?status=maybe")[0] == 400
        assert http(base, "/api/identity/elsewhere")[0] == 404
        status, decided = http(base, f"/api/identity/queue/{item['id']}/accept", {"by": "eve"})
        assert (status, decided["status"], decided["decided_by"]) == (200, "accepted", "eve [loopback]")
        assert http(base, f"/api/identity/queue/{item['id']}/reject", {"by": "eve"})[0] == 409
        status, history = http(base, f"/api/identity/patients/history?id=B%5E%5E%5E%26{Y}%26ISO")
        assert status == 200 and history["identifiers"] == [f"A^^^&{X}&ISO", f"B^^^&{Y}&ISO"]
        assert [event["kind"] for event in history["events"]][-2:] == ["link", "vigilance-accept"]
        assert http(base, "/api/identity/patients/history?id=nobody")[0] == 400
        assert http(base, "/api/identity/patients/history")[0] == 400
        assert http(base, f"/api/identity/patients/history?id=Z%5E%5E%5E%26{X}%26ISO")[0] == 404
        status, done = http(base, "/api/identity/queue?status=all")
        assert status == 200 and [one["status"] for one in done["items"]] == ["accepted"]
    finally:
        engine.stop()
