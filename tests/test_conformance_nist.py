"""The NIST XDS test kit, replayed over the wire against the real ``ihe-engine serve``: every step must pass.

Registry and repository collections (reg, R.b, SQ.b, rep, reg_mu, reg_rmu, reg_rm, rep_rd) with their set-up
tests, patients fed over MLLP, on SQLite and on PostgreSQL. This is the conformance claim of CONFORMANCE.rst.
"""

import json
import os
import subprocess
import sys
import uuid

import pytest

from serving import start_engine

pytestmark = [pytest.mark.slow, pytest.mark.corpus]

AFFINITY_DOMAIN = "1.3.6.1.4.1.21367.13.20.1000"


@pytest.fixture(params=["sqlite", "postgresql"])
def store_args(request):
    if request.param == "sqlite":
        yield []
        return
    admin_url = os.environ.get("IHE_TEST_PG_URL")
    if not admin_url:
        pytest.skip("PostgreSQL variant: set IHE_TEST_PG_URL=postgresql+psycopg://... to run it (.ci/run does)")
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"ihe_nist_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    yield ["--db-url", make_url(admin_url).set(database=name).render_as_string(hide_password=False)]
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def test_every_nist_step_passes(tmp_path, corpus_dir, store_args):
    kit = corpus_dir / "nist-iheos-toolkit2"
    codes = kit / "environment/default/codes.xml"
    engine = start_engine(tmp_path / "var", "--affinity-domain", AFFINITY_DOMAIN, "--xds-codes", str(codes),
                          *store_args)
    try:
        host, port = engine.host_port("mllp")
        report = tmp_path / "report.json"
        run = subprocess.run(
            [sys.executable, "-m", "ihe_engine.cli", "conformance", "nist", str(kit),
             "--registry", engine.url("xds-registry"), "--repository", engine.url("xds-repository"),
             "--mllp", f"{host}:{port}", "--report-json", str(report), "--keep-going"],
            capture_output=True, text=True, timeout=900)
    finally:
        engine.stop()
    summary = [line for line in run.stdout.splitlines() if " tests " in line and "steps:" in line]
    failures = [line for line in run.stdout.splitlines() if line.lstrip().startswith(("FAIL", "NOT"))]
    assert run.returncode == 0, "\n".join(summary + failures[:40]) or run.stderr[-3000:]
    assert len(summary) == 8, run.stdout[-3000:]
    assert all("0 fail, 0 not supported, 0 not run" in line for line in summary), "\n".join(summary)
    assert json.loads(report.read_text())["tests"], "the report lists the tests it ran"
