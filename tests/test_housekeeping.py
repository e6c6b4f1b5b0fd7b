"""Retransmission answers past their retention and expired continuation pointers are purged; the rest stays."""

from datetime import timedelta

from sqlalchemy import func, select, update

from ihe_engine.bootstrap import purge_expired
from ihe_engine.storage import UnitOfWork
from ihe_engine.storage.base import utcnow
from ihe_engine.storage.models import Hl7Exchange


def test_purge_keeps_what_is_still_needed(database):
    with UnitOfWork(database.sessions) as uow:
        for control_id in ("old", "recent"):
            uow.hl7_exchanges.add(sending_application="A", sending_facility="F", control_id=control_id,
                                  message_type="ADT^A01", message_sha256="0" * 64, response=b"ACK")
        uow.continuations.create("pdq", b"live")
        uow.continuations.create("pdq", b"gone", ttl=timedelta(seconds=-1))
        uow.session.flush()
        uow.session.execute(update(Hl7Exchange).where(Hl7Exchange.control_id == "old")
                            .values(received_at=utcnow() - timedelta(days=31)))
        uow.commit()
    with UnitOfWork(database.sessions) as uow:
        assert purge_expired(uow, timedelta(days=30)) == (1, 1)
        uow.commit()
    with UnitOfWork(database.sessions) as uow:
        assert uow.hl7_exchanges.find("A", "F", "recent") is not None
        assert uow.hl7_exchanges.find("A", "F", "old") is None
        assert uow.session.scalar(select(func.count()).select_from(Hl7Exchange)) == 1
