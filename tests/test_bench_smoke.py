"""The benchmark harness runs end to end on tiny counts and every answer is a success (no timing asserted)."""

import json
import math

import pytest

from ihe_engine.bench.cli import main

pytestmark = pytest.mark.slow


def rows(path):
    return {row["benchmark"]: row for row in json.loads(path.read_text())["rows"]}


def test_mllp_and_soap_benchmarks_get_only_successful_answers(tmp_path):
    out = tmp_path / "mllp.json"
    assert main(["--json", str(out), "mllp", "--messages", "60", "--connections", "1", "3"]) == 0
    result = rows(out)
    assert set(result) == {"mllp-noop x1", "mllp-noop x3", "mllp-commit x1", "mllp-commit x3"}
    assert all(row["count"] == 60 and row["failed"] == 0 for row in result.values())

    out = tmp_path / "soap.json"
    assert main(["--json", str(out), "soap", "--requests", "40", "--connections", "2"]) == 0
    assert rows(out)["soap-echo x2"]["failed"] == 0


def test_mtom_benchmark_stores_the_upload(tmp_path):
    out = tmp_path / "mtom.json"
    assert main(["--json", str(out), "mtom", "--sizes", "2", "--repeat", "1"]) == 0
    row = rows(out)["mtom-upload 2 MiB"]
    assert row["count"] == 1 and row["mib_per_second"] > 0


def test_bench_options_before_the_benchmark_reach_the_harness(tmp_path):
    from ihe_engine.cli import main as cli_main

    out = tmp_path / "opts.json"
    assert cli_main(["bench", "--json", str(out), "soap", "--requests", "20", "--connections", "1"]) == 0
    assert rows(out)["soap-echo x1"]["count"] == 20


def test_xds_benchmark_runs_on_a_small_store(tmp_path):
    """Populate a tiny store through the registry's insertion path, then measure every XDS benchmark once."""
    from ihe_engine.bench.xds import main as xds_main

    common = ["--data-dir", str(tmp_path / "var"), "--patients", "20"]
    assert xds_main(["populate", *common, "--entries", "60", "--prototypes", "5", "--batch-entries", "20"]) == 0
    out = tmp_path / "xds.json"
    assert xds_main(["run", *common, "--json", str(out), "--connections", "1", "--query-connections", "1",
                     "--registrations", "10", "--queries", "10", "--provides", "5", "--document-kib", "4",
                     "--retrieve-mib", "1"]) == 0
    result = json.loads(out.read_text())["rows"]
    assert result and all(row.get("failed", 0) == 0 for row in result), result
    assert all(row["workers"] == 1 for row in result)

    out = tmp_path / "xds-2.json"  # serve --workers 2: both processes answer, ITI-43 memory read on the workers
    assert xds_main(["run", *common, "--json", str(out), "--workers", "2", "--only", "iti42", "iti43",
                     "--connections", "2", "--registrations", "10", "--retrieve-mib", "1"]) == 0
    written = json.loads(out.read_text())
    assert len(written["load_average_before"]) == 3
    by_name = {row["benchmark"]: row for row in written["rows"]}
    assert by_name["ITI-42 register x2"]["failed"] == 0 and by_name["ITI-42 register x2"]["workers"] == 2
    assert by_name["ITI-42 register x2"]["server_cpu_ms"] >= 0  # read from /proc for the workers
    assert not math.isnan(by_name["ITI-43 retrieve 1 MiB"]["server_peak_added_mib"])  # the workers were found
