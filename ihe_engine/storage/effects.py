"""Side effects that must wait for the outcome of a transaction: ``after_commit(session, on_commit, on_rollback)``.

An effect (an audit record, a file to unlink) belongs to the savepoint that was open when it was registered. It
runs ``on_commit`` only when the outermost transaction commits, and ``on_rollback`` as soon as the work it
belongs to is undone: its savepoint rolled back (the rest of the transaction may still commit), or the whole
transaction rolled back or closed without committing. Releasing a savepoint hands its effects to the enclosing
one. This is what lets the HL7 dispatcher commit many messages in one transaction, each in its own savepoint,
while a message rolled back alone reports its own failure and the others report success after the commit.

SQLAlchemy's ``after_commit`` session event also fires when a savepoint is released, so listening to it directly
would announce work that is not committed yet; the listeners here are installed once on :class:`Session` (cheaper
than per-session listeners) and do nothing for sessions without pending effects.
"""

from __future__ import annotations

import logging
from typing import Callable

from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

__all__ = ["after_commit", "pending_count"]

log = logging.getLogger("ihe_engine.storage")

Effect = Callable[[], None]
_KEY = "ihe_engine.storage.effects"


class _Pending:
    __slots__ = ("owner", "on_commit", "on_rollback")

    def __init__(self, owner: SessionTransaction | None, on_commit: Effect | None,
                 on_rollback: Effect | None) -> None:
        self.owner = owner  # the innermost savepoint open at registration, None for the transaction itself
        self.on_commit = on_commit
        self.on_rollback = on_rollback


def after_commit(session: Session, on_commit: Effect | None = None, on_rollback: Effect | None = None) -> None:
    """Run ``on_commit`` once the work done so far in ``session`` is committed, ``on_rollback`` if it is undone.

    Exactly one of the two runs (when given). Exceptions they raise are logged, not propagated: the outcome they
    report has already happened.
    """
    if not session.in_transaction():
        session.begin()  # so that closing the session unused still counts as "not committed"
    session.info.setdefault(_KEY, []).append(
        _Pending(session.get_nested_transaction(), on_commit, on_rollback))


def pending_count(session: Session) -> int:
    """Effects still waiting for an outcome (for tests and assertions)."""
    return len(session.info.get(_KEY) or ())


def _enclosing_savepoint(transaction: SessionTransaction) -> SessionTransaction | None:
    parent = transaction.parent
    while parent is not None and not parent.nested:
        parent = parent.parent
    return parent


def _undone_by(owner: SessionTransaction | None, undone: SessionTransaction | None) -> bool:
    """Whether rolling back ``undone`` (None: the whole transaction) undoes work registered under ``owner``."""
    if undone is None:
        return True
    while owner is not None:
        if owner is undone:
            return True
        owner = owner.parent
    return False


def _run(effect: Effect | None) -> None:
    if effect is None:
        return
    try:
        effect()
    except Exception:
        log.exception("an after-commit effect failed")


@event.listens_for(Session, "after_commit")
def _committed(session: Session) -> None:
    pending = session.info.get(_KEY)
    if not pending:
        return
    released = session.get_nested_transaction()
    if released is not None:  # a savepoint released: its effects now wait for the enclosing work
        enclosing = _enclosing_savepoint(released)
        for item in pending:
            if item.owner is released:
                item.owner = enclosing
        return
    session.info[_KEY] = []
    for item in pending:
        _run(item.on_commit)


@event.listens_for(Session, "after_soft_rollback")
def _rolled_back(session: Session, previous_transaction: SessionTransaction) -> None:
    pending = session.info.get(_KEY)
    if not pending:
        return
    boundary: SessionTransaction | None = previous_transaction
    while boundary is not None and not boundary.nested and boundary.parent is not None:
        boundary = boundary.parent  # a flush's inner transaction: the work undone is its savepoint's or the root's
    undone = boundary if boundary is not None and boundary.nested else None
    _discard(session, pending, undone)


@event.listens_for(Session, "after_transaction_end")
def _ended(session: Session, transaction: SessionTransaction) -> None:
    """A transaction closed without commit or rollback (``Session.close()``): its effects never happened."""
    if transaction.parent is None:
        pending = session.info.get(_KEY)
        if pending:
            _discard(session, pending, None)


def _discard(session: Session, pending: list[_Pending], undone: SessionTransaction | None) -> None:
    kept: list[_Pending] = []
    undone_items: list[_Pending] = []
    for item in pending:
        (undone_items if _undone_by(item.owner, undone) else kept).append(item)
    session.info[_KEY] = kept
    for item in undone_items:
        _run(item.on_rollback)
