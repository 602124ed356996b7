"""A stray file in a results store is skipped and named, wherever the store is read (issue 26, finding 12).

A JSON that is valid but not an object (`[]`, `null`, `42`), a file that is not UTF-8, or a record whose
density is not a number once stopped `make tables` with an AttributeError, an error that did not name
the file, or a crash of the dashboard report.
"""

from __future__ import annotations

import json
import shutil

import pytest
from support import REPO

STRAY = {
    "list.json": b"[]",
    "null.json": b"null",
    "number.json": b"42",
    "latin1.json": '{"run_id": "caf\xe9"}'.encode("latin-1"),
}


@pytest.fixture
def store(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    good = sorted((REPO / "results" / "runs").glob("mnist-lenet300_100-momentum-*.json"))[0]
    shutil.copy(good, runs / good.name)
    for name, data in STRAY.items():
        (runs / name).write_bytes(data)
    record = json.loads(good.read_text())
    record["run_id"] = "bad-density"
    record["config"]["density"] = "five percent"
    (runs / "bad-density.json").write_text(json.dumps(record))
    return runs, good.stem


def test_iter_results_skips_and_names_every_stray_file(store, capsys):
    from snfs.results import iter_results

    runs, good = store
    assert [r["run_id"] for r in iter_results(runs, status=None)] == [good]
    err = capsys.readouterr().err.splitlines()
    assert len(err) == len(STRAY) + 1
    for name in [*STRAY, "bad-density.json"]:
        assert any(line.startswith(f"warning: skipped {runs / name}: ") for line in err), name
    assert any("config.density is 'five percent', not a number" in line for line in err)
    assert any("cannot be read" in line and "latin1.json" in line for line in err)


def test_tables_and_sweeps_read_the_store_past_stray_files(store, capsys):
    from snfs.report.store import load_local

    runs, good = store
    index = load_local(runs)
    assert [r["run_id"] for r in index.runs] == [good]


def test_the_dashboard_report_skips_a_record_whose_density_is_not_a_number(store, tmp_path):
    from snfs.report.dashboard import write_report

    runs, good = store
    with pytest.warns(UserWarning):
        counts = write_report([runs], tmp_path / "tables", tmp_path / "report", progress=False)
    assert counts["runs"] == 1
    index = (tmp_path / "report" / "index.html").read_text()
    assert "bad-density.json" in index and "not a number" in index
