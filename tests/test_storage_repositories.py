"""The foundation tables behave the same on SQLite and PostgreSQL."""

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy.exc import IntegrityError

from ihe_engine.storage import UnitOfWork
from ihe_engine.storage.base import utcnow


def test_upgrade_creates_every_table_and_is_idempotent(database):
    assert {"hl7_exchange", "queue_item", "continuation", "alembic_version"} <= set(database.table_names())
    database.upgrade()  # a second upgrade on an up-to-date store changes nothing
    assert "hl7_exchange" in database.table_names()


def test_leaving_without_commit_rolls_back(database):
    with UnitOfWork(database.sessions) as uow:
        uow.queue.put("q", b"lost")
    with UnitOfWork(database.sessions) as uow:
        assert uow.queue.pending_count("q") == 0


def test_error_inside_the_unit_rolls_back(database):
    with pytest.raises(RuntimeError):
        with UnitOfWork(database.sessions) as uow:
            uow.queue.put("q", b"lost")
            uow.session.flush()
            raise RuntimeError("boom")
    with UnitOfWork(database.sessions) as uow:
        assert uow.queue.pending_count("q") == 0


def test_hl7_exchange_is_unique_per_sender_and_control_id(database):
    fields = dict(sending_application="LAB", sending_facility="HOSP", control_id="42", message_type="ADT^A01",
                  message_sha256="0" * 64, response=b"MSH|...")
    with UnitOfWork(database.sessions) as uow:
        uow.hl7_exchanges.add(**fields)
        uow.commit()
    with UnitOfWork(database.sessions) as uow:
        found = uow.hl7_exchanges.find("LAB", "HOSP", "42")
        assert found is not None and found.response == b"MSH|..."
        assert found.received_at.tzinfo is not None
        assert uow.hl7_exchanges.find("LAB", "OTHER", "42") is None
    with pytest.raises(IntegrityError):
        with UnitOfWork(database.sessions) as uow:
            uow.hl7_exchanges.add(**fields)
            uow.commit()


def test_queue_claim_done_and_retry(database):
    with UnitOfWork(database.sessions) as uow:
        first = uow.queue.put("audit", b"one")
        second = uow.queue.put("audit", b"two")
        uow.queue.put("other", b"elsewhere")
        uow.queue.put("audit", b"later", delay=timedelta(hours=1))
        uow.commit()
    with UnitOfWork(database.sessions) as uow:
        claimed = uow.queue.claim("audit", "worker-a")
        assert [item.payload for item in claimed] == [b"one", b"two"]
        uow.commit()
    with UnitOfWork(database.sessions) as uow:
        assert uow.queue.claim("audit", "worker-b") == [], "leased items are not handed out twice"
        uow.queue.done([first])
        uow.queue.retry(second, "connection refused", backoff=timedelta(seconds=0))
        uow.commit()
    with UnitOfWork(database.sessions) as uow:
        again = uow.queue.claim("audit", "worker-b")
        assert [(item.payload, item.attempts, item.last_error) for item in again] == [
            (b"two", 1, "connection refused")]
        assert uow.queue.pending_count("audit") == 2  # "two" and the delayed one


def test_expired_lease_is_claimed_again(database):
    with UnitOfWork(database.sessions) as uow:
        uow.queue.put("audit", b"x")
        uow.commit()
    with UnitOfWork(database.sessions) as uow:
        assert len(uow.queue.claim("audit", "dead-worker", lease=timedelta(seconds=-1))) == 1
        uow.commit()
    with UnitOfWork(database.sessions) as uow:
        assert [item.claimed_by for item in uow.queue.claim("audit", "live-worker")] == ["live-worker"]


def test_claims_racing_in_threads_never_share_an_item(database):
    """Claimers started together (a barrier) over one queue: each item goes to exactly one of them."""
    import threading

    with UnitOfWork(database.sessions) as uow:
        for index in range(400):
            uow.queue.put("race", str(index).encode())
        uow.commit()
    barrier = threading.Barrier(4)
    claimed: dict[str, list[int]] = {}

    def claimer(name: str) -> None:
        barrier.wait()
        mine = []
        while True:
            with UnitOfWork(database.sessions) as uow:
                batch = uow.queue.claim("race", name, limit=7)
                uow.commit()
            if not batch:
                break
            mine += [item.id for item in batch]
        claimed[name] = mine

    threads = [threading.Thread(target=claimer, args=(f"w{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    everything = [item for ids in claimed.values() for item in ids]
    assert len(everything) == 400 and len(set(everything)) == 400, "an item was claimed twice or lost"


def test_readonly_unit_of_work_sees_one_snapshot(database):
    """Inside one unit of work, a row committed meanwhile by another session does not appear half-way."""
    with UnitOfWork(database.sessions, readonly=True) as reader:
        before = reader.queue.pending_count("snap")
        with UnitOfWork(database.sessions) as writer:
            writer.queue.put("snap", b"x")
            writer.commit()
        assert reader.queue.pending_count("snap") == before
    with UnitOfWork(database.sessions, readonly=True) as later:
        assert later.queue.pending_count("snap") == before + 1


def test_concurrent_claims_never_share_an_item(database):
    with UnitOfWork(database.sessions) as uow:
        for index in range(10):
            uow.queue.put("audit", str(index).encode())
        uow.commit()
    with UnitOfWork(database.sessions) as first, UnitOfWork(database.sessions) as second:
        mine = first.queue.claim("audit", "a", limit=5)
        first.commit()
        theirs = second.queue.claim("audit", "b", limit=10)
        second.commit()
    assert len(mine) == 5 and len(theirs) == 5
    assert not {item.id for item in mine} & {item.id for item in theirs}


def test_continuation_lifecycle(database):
    with UnitOfWork(database.sessions) as uow:
        token = uow.continuations.create("pdq", b"page-2")
        expired = uow.continuations.create("pdq", b"old", ttl=timedelta(seconds=-1))
        uow.commit()
    with UnitOfWork(database.sessions) as uow:
        assert uow.continuations.get("pdq", token) == b"page-2"
        assert uow.continuations.get("iti47", token) is None, "a pointer is only valid for its own kind"
        assert uow.continuations.get("pdq", expired) is None
        uow.continuations.replace(token, b"page-3")
        uow.commit()
    with UnitOfWork(database.sessions) as uow:
        assert uow.continuations.get("pdq", token) == b"page-3"
        assert uow.continuations.purge_expired() == 1
        assert uow.continuations.cancel(token) is True
        assert uow.continuations.cancel(token) is False
        uow.commit()


def test_datetimes_come_back_aware_and_naive_ones_are_refused(database):
    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    with UnitOfWork(database.sessions) as uow:
        item_id = uow.queue.put("q", b"x")
        item = uow.session.get(type(uow.queue.claim("q", "w")[0]), item_id)
        item.available_at = moment
        uow.commit()
    with UnitOfWork(database.sessions) as uow:
        from ihe_engine.storage.models import QueueItem

        stored = uow.session.get(QueueItem, item_id)
        assert stored.available_at == moment and stored.available_at.tzinfo is not None
        stored.available_at = datetime(2026, 1, 1)
        with pytest.raises(Exception, match="naive datetime"):
            uow.session.flush()
    assert utcnow().tzinfo is timezone.utc
