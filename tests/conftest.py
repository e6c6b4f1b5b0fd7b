"""Shared fixtures.

- ``database``: a fresh, migrated store, once on SQLite and once on PostgreSQL (the latter when IHE_TEST_PG_URL
  is set; otherwise that variant skips, saying why). Each PostgreSQL test gets its own database.
- ``corpus_dir``: ../shared/corpus, or a skip naming the missing folder.
- ``reactor_thread``: the Twisted reactor running in a background thread (session-wide) for loopback tests.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from ihe_engine.storage import Database

ROOT = Path(__file__).resolve().parent.parent
CORPUS = Path(os.environ.get("IHE_CORPUS_DIR", ROOT.parent / "shared" / "corpus"))


def _postgres_database():
    admin_url = os.environ.get("IHE_TEST_PG_URL")
    if not admin_url:
        pytest.skip("PostgreSQL variant: set IHE_TEST_PG_URL=postgresql+psycopg://... to run it (.ci/run does)")
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"ihe_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    db = Database(make_url(admin_url).set(database=name).render_as_string(hide_password=False))

    def drop() -> None:
        db.dispose()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return db, drop


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path):
    if request.param == "sqlite":
        db, cleanup = Database(f"sqlite:///{tmp_path / 'engine.sqlite3'}"), None
    else:
        db, cleanup = _postgres_database()
    db.upgrade()
    yield db
    if cleanup:
        cleanup()
    else:
        db.dispose()


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    if not CORPUS.is_dir():
        pytest.skip(f"public conformance corpus not found at {CORPUS}")
    return CORPUS


@pytest.fixture(scope="session")
def rs_schema():
    """The official ebRS rs.xsd (RegistryResponse), loaded without network; skips when the corpus lacks it."""
    from xds_testing import corpus_xsd_or_skip

    return corpus_xsd_or_skip("ebRS/rs.xsd")


@pytest.fixture(scope="session")
def query_schema():
    """The official ebRS query.xsd (AdhocQueryResponse), loaded without network; skips when the corpus lacks it."""
    from xds_testing import corpus_xsd_or_skip

    return corpus_xsd_or_skip("ebRS/query.xsd")


@pytest.fixture(scope="session")
def reactor_thread():
    """The global Twisted reactor running in a daemon thread for the whole session.

    Tests talk to it with ``reactor.callFromThread`` and ``twisted.internet.threads.blockingCallFromThread``;
    it is stopped once, at the end (a reactor cannot be restarted).
    """
    import threading

    from twisted.internet import reactor

    thread = threading.Thread(target=reactor.run, kwargs={"installSignalHandlers": False}, name="reactor",
                              daemon=True)
    thread.start()
    yield reactor
    reactor.callFromThread(reactor.stop)
    thread.join(timeout=10)


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    """A test PKI (tests/pki.py): CA bundle, CRL, server, good/expired/unknown-CA/no-SAN/revoked client certs."""
    try:
        from .pki import make_pki
    except ImportError:  # tests/ is not a package: pytest put it on sys.path
        from pki import make_pki
    return make_pki(tmp_path_factory.mktemp("pki"))
