"""The dashboard (make dashboard / report / check-dashboard) over a results store made here.

The store holds finished runs of two algorithms and three seeds, a run still training, a
half-written JSON and two foreign ones (support/dashboard.py). tests/integration/test_dashboard.py opens
the served page in headless Chromium.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import pytest
from support.dashboard import LAYERS, record, write

from snfs.report import dashboard
from snfs.report.figures_live import labels, overlay_figure, run_figure
from snfs.report.runlog import RunFolder, SkippedFile, row_key


def test_seeds_of_one_table_row_differ_only_in_where_and_how_they_ran():
    """The dashboard's "seeds of one table row" group runs by ``row_key``: seed and the keys that change
    where or how a run executed do not split a row; what it computed does."""
    base = record("set", 0.05, 17, 6)["config"]
    elsewhere = {
        **base,
        "seed": 18,
        "results_dir": "another",
        "device": "cuda",
        "threads": 4,
        "execution": "sparse",
        "logger": {"mode": "disabled"},
        "progress": False,
    }
    assert row_key(elsewhere) == row_key(base)
    assert row_key({**base, "density": 0.1}) != row_key(base)
    assert row_key({**base, "epochs": 7}) != row_key(base)
    assert row_key({**base, "optim": {"name": "sgd", "lr": 0.05}})["optim.lr"] == 0.05


def test_bad_files_are_skipped_with_one_warning_each(store):
    folder = RunFolder(store["runs"])
    with pytest.warns(SkippedFile) as caught:
        runs = folder.refresh()
    assert len(runs) == 7
    assert set(folder.skipped) == {"half-written.json", "foreign.json", "a-list.json"}
    assert "not valid JSON" in folder.skipped["half-written.json"]
    assert "not a run record" in folder.skipped["foreign.json"]
    assert len([w for w in caught if issubclass(w.category, SkippedFile)]) == 3
    with warnings.catch_warnings(record=True) as again:
        warnings.simplefilter("always")
        assert len(folder.refresh()) == 7
    assert not [w for w in again if issubclass(w.category, SkippedFile)]  # unchanged files: no new warning
    assert set(folder.skipped) == {"half-written.json", "foreign.json", "a-list.json"}


def _touch_later(path: Path) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))


def test_a_growing_run_is_reread(store):
    folder = RunFolder(store["runs"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedFile)
        live = {r.run_id: r for r in folder.refresh()}[store["live"]]
        assert (len(live.history), live.summary()["epochs_done"], live.status) == (2, "2/6", "running")
        path = store["runs"] / f"{store['live']}.json"
        write(path, record("momentum", 0.02, 17, 4, status="running"))
        _touch_later(path)
        live = {r.run_id: r for r in folder.refresh()}[store["live"]]
        assert len(live.history) == 4 and live.summary()["epochs_done"] == "4/6"
        # a half-written version is skipped (the last good one is not kept), then read once complete
        path.write_text(json.dumps(record("momentum", 0.02, 17, 5, status="running"))[:300])
        _touch_later(path)
        assert store["live"] not in {r.run_id for r in folder.refresh()}
        write(path, record("momentum", 0.02, 17, 6))
        _touch_later(path)
        done = {r.run_id: r for r in folder.refresh()}[store["live"]]
    assert done.status == "finished" and len(done.history) == 6
    assert "half-written.json" in folder.skipped and f"{store['live']}.json" not in folder.skipped


def test_run_figure_and_overlay(store):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedFile)
        runs = RunFolder(store["runs"]).refresh()
    run = next(r for r in runs if r.run_id.endswith("momentum-d0.05-s18-mo18"))
    fig = run_figure(run)
    by_name = {t.name: t for t in fig.data}
    assert list(by_name["val error"].y) == pytest.approx([12.0 / e for e in range(1, 7)], rel=1e-6)
    assert list(by_name["lr"].y) == pytest.approx([0.1, 0.1, 0.1, 0.01, 0.01, 0.01])
    assert list(by_name["prune rate"].y) == pytest.approx([0.45, 0.4, 0.35, 0.3, 0.25, 0.2])
    assert list(by_name["fc3.weight"].y) == pytest.approx([0.075] * 6)
    assert list(by_name["pruned"].y) == pytest.approx([900, 800, 700, 600, 500, 400])
    assert by_name["test error 1.68"].y[0] == pytest.approx(1.68)
    seeds = [r for r in runs if r.summary()["row"] == run.summary()["row"]]
    assert sorted(r.summary()["seed"] for r in seeds) == [17, 18, 19]  # one table row = every seed
    assert sorted(labels(seeds).values()) == ["seed 17", "seed 18", "seed 19"]
    at_5 = [r for r in runs if r.summary()["density"] == 0.05 and r.summary()["seed"] == 17]
    assert sorted(labels(at_5).values()) == ["momentum", "set"]
    over = overlay_figure(at_5 + seeds, color_by="algorithm")
    legend = [t.name for t in over.data if t.showlegend]
    assert sorted(legend) == ["momentum", "set"]  # one legend entry per algorithm
    assert len(over.data) == 6 * len(at_5 + seeds)


def test_static_report(store):
    out = store["tmp"] / "report"
    (out / "runs").mkdir(parents=True)
    (out / "runs" / "gone.html").write_text("a run no longer in the store")
    with pytest.warns(SkippedFile):
        counts = dashboard.write_report(store["runs"], store["tables"], out, progress=False)
    assert counts["runs"] == 7 and counts["rows"] == 3 and counts["compare"] == 2
    index = (out / "index.html").read_text()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedFile)
        runs = RunFolder(store["runs"]).refresh()
    for run in runs:
        assert f'href="runs/{run.run_id}.html"' in index
        page = (out / "runs" / f"{run.run_id}.html").read_text()
        assert '<script src="../plotly.min.js"></script>' in page and "Plotly.newPlot" in page
    assert "half-written.json" in index and "foreign.json" in index  # skipped files are listed, not fatal
    assert not (out / "runs" / "gone.html").exists()
    assert (out / "plotly.min.js").stat().st_size > 1_000_000
    row = runs[-1].summary()["row"]
    row_page = (out / "rows" / f"{row}.html").read_text()
    assert sum(r.run_id in row_page for r in runs if r.summary()["row"] == row) == 3
    compare = (out / "compare" / "mnist-lenet300_100-d0.05.html").read_text()
    assert "momentum, set" in compare
    assert (out / "filters" / "algorithm-set.html").exists()
    filtered = (out / "filters" / "status-running.html").read_text()
    assert store["live"] in filtered and "-s18-" not in filtered
    tables = (out / "tables.html").read_text()
    assert "<table>" in tables and ">98.50 ± 0.04</td>" in tables and 'href="#toy"' in tables
    assert '<img src="../figures/toy.png"' in tables  # the table's figure, found from the report's folder


def test_cli_missing_folder_is_one_line(tmp_path, capsys):
    assert dashboard.main(["report", "--results", str(tmp_path / "nope"), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: results folder") and "does not exist" in err
    assert not (tmp_path / "r").exists()


def _post_curves(client, run_id: str) -> str:
    """The server's answer to 'draw this run' (the callback the page calls), as the figure title."""
    payload = {
        "output": "..curves.figure...plotted.data..",
        "outputs": [{"id": "curves", "property": "figure"}, {"id": "plotted", "property": "data"}],
        "inputs": [
            {"id": "runs", "property": "selectedRows", "value": [{"run_id": run_id}]},
            {"id": "color-by", "property": "value", "value": "run"},
            {"id": "tick", "property": "n_intervals", "value": 1},
        ],
        "changedPropIds": ["tick.n_intervals"],
        "state": [{"id": "plotted", "property": "data", "value": None}],
    }
    answer = client.post("/_dash-update-component", json=payload)
    assert answer.status_code == 200, answer.data[:500]
    return answer.get_json()["response"]["curves"]["figure"]["layout"]["title"]["text"]


def test_served_curves_follow_a_training_run(store):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedFile)
        app = dashboard.make_app(store["runs"], store["tables"])
        client = app.server.test_client()
        assert client.get("/").status_code == 200
        assert _post_curves(client, store["live"]).endswith("(running, 2 epochs)")
        path = store["runs"] / f"{store['live']}.json"
        write(path, record("momentum", 0.02, 17, 3, status="running"))
        _touch_later(path)
        assert _post_curves(client, store["live"]).endswith("(running, 3 epochs)")
        table = client.post(
            "/_dash-update-component",
            json={
                "output": "table-body.children",
                "outputs": {"id": "table-body", "property": "children"},
                "inputs": [{"id": "table-name", "property": "value", "value": "toy.md"}],
                "changedPropIds": ["table-name.value"],
                "state": [],
            },
        )
        assert table.status_code == 200
        assert "| sparse_momentum | 98.50 ± 0.04 | 98.53 |" in json.dumps(table.get_json(), ensure_ascii=False)
        assert "/table-figures/toy.png" in json.dumps(table.get_json())
        image = client.get("/table-figures/toy.png")
        assert image.status_code == 200 and image.data[:4] == b"\x89PNG"
        assert client.get("/table-figures/nothing.png").status_code == 404


# --- runs still training: read from their wandb logs (logger.mode=offline, the default) -------------------


def wandb_log(records: list[bytes]) -> bytes:
    """A run-<id>.wandb file: the header wandb writes, then LevelDB-log records in 32 KiB blocks."""
    out, block = bytearray(b":W&B\xe1\xbe\x00"), 32768
    for data in records:
        first = True
        while True:
            left = block - len(out) % block
            if left < 7:
                out += b"\x00" * left
                continue
            chunk, data = data[: left - 7], data[left - 7 :]
            kind = (1 if not data else 2) if first else (4 if not data else 3)
            out += b"\x00\x00\x00\x00" + len(chunk).to_bytes(2, "little") + bytes([kind]) + chunk
            first = False
            if not data:
                break
    return bytes(out)


def pb_records(run_id: str, epochs: int, exit_: bool = False, pad: int = 0) -> list[bytes]:
    from wandb.proto import wandb_internal_pb2 as pb

    rec = record("momentum", 0.02, 17, 0, epochs=50, status="running")
    run = pb.Record()
    run.run.run_id, run.run.display_name = "abc123", run_id
    for k, v in rec["config"].items():
        item = run.run.config.update.add()
        item.key, item.value_json = k, json.dumps(v)
    out = [run.SerializeToString()]
    for h in record("momentum", 0.02, 17, epochs, epochs=50)["history"]:
        r = pb.Record()
        for k, v in h.items():
            for key, value in v.items() if isinstance(v, dict) else [(None, v)]:
                item = r.history.item.add()
                item.key, item.value_json = (f"{k}/{key}" if key else k), json.dumps(value)
        item = r.history.item.add()
        item.key, item.value_json = "_padding", json.dumps("x" * pad)
        out.append(r.SerializeToString())
    if exit_:
        r = pb.Record()
        r.exit.exit_code = 0
        out.append(r.SerializeToString())
    return out


def test_a_run_in_training_is_read_from_its_wandb_log(store):
    run_id = "mnist-lenet300_100-momentum-d0.02-s17-inwandb"
    log = store["runs"] / "wandb" / "offline-run-20260101_000000-abc123" / "run-abc123.wandb"
    log.parent.mkdir(parents=True)
    folder = RunFolder(store["runs"])

    def live():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SkippedFile)
            return {r.run_id: r for r in folder.refresh()}.get(run_id)

    log.write_bytes(wandb_log(pb_records(run_id, 2)))
    run = live()
    assert (run.status, run.summary()["epochs_done"], run.summary()["algorithm"], run.summary()["density"]) == (
        "running",
        "2/50",
        "momentum",
        0.02,
    )
    assert run.layers() == list(LAYERS) and run.series("val_error")[1] == pytest.approx([12.0, 6.0])
    data = wandb_log(pb_records(run_id, 120, pad=300))  # > 32 KiB: records cross block boundaries
    assert len(data) > 2 * 32768
    log.write_bytes(data[: len(data) - 200])  # the writer is in the middle of a record
    _touch_later(log)
    assert len(live().history) == 119
    log.write_bytes(wandb_log(pb_records(run_id, 120, exit_=True, pad=300)))
    _touch_later(log)
    run = live()
    assert (run.status, len(run.history)) == ("stopped", 120)  # exited without a result: stop_after_epoch, a signal
    assert run.series("epoch")[1] == list(range(1, 121))
    write(store["runs"] / f"{run_id}.json", dict(record("momentum", 0.02, 17, 50, epochs=50), run_id=run_id))
    _touch_later(log)  # wandb writes its last blocks as the run ends
    run = live()
    assert (run.status, len(run.history), run.path.suffix) == ("finished", 50, ".json")  # the record wins
    assert folder.wandb._cache[log][1]["partial"]  # and its log is read no further than the run's name
    (store["runs"] / f"{run_id}.json").unlink()
    run = live()
    assert (run.status, len(run.history), run.path) == ("stopped", 120, log)


def _post_list(
    client, changed: str, filters: dict | None = None, selected=None, visible=None, old=None, search: str = ""
) -> dict:
    """The run-list callback as the page calls it: ``changed`` is the input that fired."""
    from snfs.report.runlog import FILTER_KEYS

    outputs = [("runs", "rowData"), ("runs", "selectedRows"), ("status", "children")] + [
        (f"filter-{k}", "options") for k in FILTER_KEYS
    ]
    inputs = [
        ("tick", "n_intervals", 1),
        ("select-listed", "n_clicks", 1),
        ("select-seeds", "n_clicks", 1),
        ("select-none", "n_clicks", 1),
    ] + [(f"filter-{k}", "value", (filters or {}).get(k)) for k in FILTER_KEYS]
    payload = {
        "output": ".." + "...".join(f"{i}.{p}" for i, p in outputs) + "..",
        "outputs": [{"id": i, "property": p} for i, p in outputs],
        "inputs": [{"id": i, "property": p, "value": v} for i, p, v in inputs],
        "state": [
            {"id": "runs", "property": "rowData", "value": old},
            {"id": "runs", "property": "selectedRows", "value": selected},
            {"id": "runs", "property": "virtualRowData", "value": visible},
            {"id": "url", "property": "search", "value": search},
        ],
        "changedPropIds": [changed] if changed else [],
    }
    answer = client.post("/_dash-update-component", json=payload)
    assert answer.status_code == 200, answer.data[:500]
    return answer.get_json()["response"]


def test_run_list_filters_and_selection_buttons(store):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedFile)
        client = dashboard.make_app(store["runs"], store["tables"]).server.test_client()
        first = _post_list(client, "")  # the page's first call: every run, the newest selected
        rows = first["runs"]["rowData"]
        assert len(rows) == 7 and first["runs"]["selectedRows"] == {"ids": [rows[0]["run_id"]]}
        assert [o["value"] for o in first["filter-algorithm"]["options"]] == ["momentum", "set"]
        linked = [rows[3]["run_id"], rows[5]["run_id"]]
        opened = _post_list(client, "", search="?run=" + "&run=".join(linked + ["not-a-run"]))
        assert opened["runs"]["selectedRows"] == {"ids": linked}  # a link to several runs opens them overlaid
        assert [o["value"] for o in first["filter-status"]["options"]] == ["finished", "running"]
        assert "skipped 3 file(s)" in json.dumps(first["status"]["children"])
        only_set = _post_list(client, "filter-algorithm.value", {"algorithm": ["set"], "seed": [17, 18]}, old=rows)
        assert sorted((r["algorithm"], r["seed"]) for r in only_set["runs"]["rowData"]) == [("set", 17), ("set", 18)]
        s17 = next(r for r in rows if r["algorithm"] == "momentum" and r["seed"] == 17 and r["status"] == "finished")
        seeds = _post_list(client, "select-seeds.n_clicks", selected=[s17], old=rows)["runs"]["selectedRows"]["ids"]
        assert sorted(seeds) == sorted(r["run_id"] for r in rows if r["row"] == s17["row"]) and len(seeds) == 3
        listed = _post_list(client, "select-listed.n_clicks", visible=rows[2:4], old=rows)["runs"]["selectedRows"]
        assert listed == {"ids": [rows[2]["run_id"], rows[3]["run_id"]]}
        assert _post_list(client, "select-none.n_clicks", old=rows)["runs"]["selectedRows"] == {"ids": []}
        tick = _post_list(client, "tick.n_intervals", selected=[s17], old=rows)
        assert "rowData" not in tick.get("runs", {})  # nothing changed: nothing re-sent
