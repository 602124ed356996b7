"""A table's spec (its preset's .yaml and .md), collapsed and diverged runs, tables of other datasets, QUICK tables
and make targets, on hand-made run records; tests/integration/test_tables.py rebuilds the committed tables.
"""

from __future__ import annotations

import pytest
from support import REPO


def write_preset(folder, name="toy", notes="---\ntitle: t\ncolumns: [method]\n---\n- a note\n", blocks=()):
    folder.mkdir(exist_ok=True)
    lines = [
        "# @package _global_",
        "# a toy preset",
        *[f"# @block: {b}" for b in blocks],
        "defaults:",
        "  - override /dataset: mnist",
        "hydra:",
        "  sweeper:",
        "    params:",
        "      seed: 17",
    ]
    (folder / f"{name}.yaml").write_text("\n".join(lines) + "\n")
    if notes is not None:
        (folder / f"{name}.md").write_text(notes)


def test_a_spec_is_read_from_its_two_files_and_bad_ones_say_what_is_wrong(tmp_path):
    from snfs.report.sweep import preset_blocks
    from snfs.report.tables import load_spec

    write_preset(tmp_path, blocks=["sparse=dense density=1.0", "'~sparse.prune_rate' model=lenet5_caffe"])
    spec = load_spec("toy", tmp_path)
    assert (spec.title, spec.columns, spec.notes, spec.dataset) == ("t", (("method", "method"),), "- a note", "mnist")
    assert [g.overrides for g in spec.groups] == [
        (),
        ("sparse=dense", "density=1.0"),
        ("~sparse.prune_rate", "model=lenet5_caffe"),
    ]
    assert spec.paper_of({"method": "x"}) is None and not spec.accuracy
    write_preset(tmp_path, name="bare", notes=None)
    with pytest.raises(ValueError, match="no notes file bare.md"):
        load_spec("bare", tmp_path)
    write_preset(tmp_path, name="typo", notes="---\ntitle: t\ncolums: [method]\n---\n")
    with pytest.raises(ValueError, match="colums is not a front matter key; valid keys: .*columns"):
        load_spec("typo", tmp_path)
    write_preset(tmp_path, name="badcol", notes="---\ntitle: t\ncolumns: [methd]\n---\n")
    with pytest.raises(ValueError, match="column 'methd' is not a valid choice; valid choices: model, method"):
        load_spec("badcol", tmp_path)
    write_preset(tmp_path, name="badpaper", notes="---\ntitle: t\ncolumns: [method]\npaper: nope\n---\n")
    with pytest.raises(ValueError, match="paper: 'nope' is not a valid choice; valid choices: mnist_methods"):
        load_spec("badpaper", tmp_path)
    (tmp_path / "header.yaml").write_text("# @package _global_\n# @block: sparse=dense\n")
    with pytest.raises(ValueError, match="in the header that Hydra parses"):
        preset_blocks(tmp_path / "header.yaml")


# --- collapsed runs, datasets, QUICK, rewriting -------------------------------------------------------------

POINT = ["+experiment/mnist_point=lenet5_caffe_5.0"]


def test_collapsed_runs_are_counted_and_kept_apart(tmp_path):
    """LeNet-5-Caffe 5%: errors 0.8, 1.0 and 88.65 (collapsed): all runs 30.15, one collapsed, the others 0.9."""
    from support.report import run_json, table_of, write_runs

    from snfs.report.figures import draw_table_figure
    from snfs.report.store import load_local
    from snfs.report.sweep import Composer, expand
    from snfs.report.tables import csv_rows, to_markdown

    with Composer() as composer:
        jobs = expand(composer, "mnist_compression", POINT).jobs
    write_runs(tmp_path / "runs", [run_json(j, e) for j, e in zip(jobs, (0.8, 1.0, 88.65))])
    table = table_of(load_local(tmp_path / "runs"), POINT)
    row = table.rows[0]
    assert row.ours.n == 3 and row.ours.mean == pytest.approx(30.15)
    assert row.collapsed == [88.65] and (row.ours_ok.n, row.ours_ok.mean) == (2, pytest.approx(0.9))
    md = to_markdown(table)
    assert (
        "| lenet5_caffe | sparse_momentum | 5 | 30.150 ± 29.250 | 3/3 | 1 (88.65) | 0.900 ± 0.100 (n = 2) | "
        "0.690 ± 0.021 | +29.460 |"
    ) in md
    assert (
        "ours: test error (%), all runs | n | collapsed (test error > 50%) | "
        "ours: test error (%), runs that did not collapse" in md
    )
    header, rows = csv_rows(table)
    got = dict(zip(header, rows[0]))
    assert (got["n_collapsed"], got["ours_mean_not_collapsed"], got["ours_mean"]) == (1, 0.9, 30.15)
    assert draw_table_figure(table, tmp_path).read_bytes()[:4] == b"\x89PNG"


def test_a_diverged_run_counts_as_collapsed_and_in_no_mean(tmp_path):
    """LeNet-5-Caffe 5%: 0.8, 1.0, and a run whose loss became non-finite (status diverged, no test error)."""
    from support.report import run_json, table_of, write_runs

    from snfs.report.figures import draw_table_figure
    from snfs.report.store import load_local
    from snfs.report.sweep import Composer, expand
    from snfs.report.tables import csv_rows, to_markdown

    with Composer() as composer:
        jobs = expand(composer, "mnist_compression", POINT).jobs
    diverged = run_json(jobs[2], None, status="diverged", reason="non-finite training loss at step 3800 (epoch 8)")
    failed_elsewhere = {**run_json(jobs[2], None, status="failed"), "run_id": "not-a-grid-point"}
    write_runs(tmp_path / "runs", [run_json(jobs[0], 0.8), run_json(jobs[1], 1.0), diverged, failed_elsewhere])
    index = load_local(tmp_path / "runs")
    assert index.match(jobs[2].run_id, jobs[2].config) is None
    assert index.match_diverged(jobs[2].run_id, jobs[2].config)["status"] == "diverged"
    table = table_of(index, POINT)
    row = table.rows[0]
    assert [r["status"] for r in row.outcomes] == ["finished", "finished", "diverged"] and table.complete
    assert (row.ours.n, row.ours.mean, row.collapsed, row.ours_ok.n) == (2, pytest.approx(0.9), [], 2)
    md = to_markdown(table)
    assert (
        "| lenet5_caffe | sparse_momentum | 5 | 0.900 ± 0.100 | 3/3 | 1 (diverged) | 0.900 ± 0.100 (n = 2) | "
        "0.690 ± 0.021 | +0.210 |"
    ) in md
    assert "3 matched (1 diverged)" in md and "A diverged run (its training loss became non-finite" in md
    header, rows = csv_rows(table)
    got = dict(zip(header, rows[0]))
    assert (got["n"], got["n_collapsed"], got["n_diverged"]) == (2, 1, 1) and jobs[2].run_id in got["run_ids"]
    assert draw_table_figure(table, tmp_path).read_bytes()[:4] == b"\x89PNG"


def test_a_table_on_another_dataset_is_its_own_file_without_paper_numbers(tmp_path):
    from support.report import run_json, write_runs

    from snfs.report.store import load_local
    from snfs.report.sweep import Composer, expand
    from snfs.report.tables import TABLES, build_table, write_table

    overrides = POINT + ["dataset=kmnist"]
    with Composer() as composer:
        jobs = expand(composer, "mnist_compression", overrides).jobs
        assert {j.config["dataset"]["name"] for j in jobs} == {"kmnist"}
        write_runs(tmp_path / "runs", [run_json(j, e) for j, e in zip(jobs, (3.1, 3.3, 3.2))])
        table = build_table(
            TABLES["mnist_compression"],
            load_local(tmp_path / "runs"),
            composer,
            extra_overrides=lambda g: list(overrides),
            dataset="kmnist",
        )
    assert (table.stem, table.rows[0].ours.n, table.rows[0].paper) == ("mnist_compression-kmnist", 3, None)
    out = tmp_path / "tables"
    out.mkdir()
    (out / "mnist_compression.md").write_text("the MNIST table\n")
    md, path_csv = write_table(table, out)
    assert (
        md.name == "mnist_compression-kmnist.md" and (out / "mnist_compression.md").read_text() == "the MNIST table\n"
    )
    text = md.read_text()
    assert text.startswith("# KMNIST compression: LeNet-300-100 and LeNet-5-Caffe")
    assert "| paper |" not in text and "ours − paper" not in text and "paper reports no numbers for KMNIST" in text
    assert "Notes on the MNIST table, kept for context" in text and "Notes:\n" not in text
    assert "make reproduce-table-mnist_compression ARGS=dataset=kmnist" in text
    assert "python -m snfs.train +experiment=mnist_compression dataset=kmnist" in text
    assert "paper" not in path_csv.read_text().splitlines()[0]


def test_quick_tables_never_say_reproduced_and_files_change_only_with_their_content(tmp_path):
    from support.report import run_json, table_of, write_runs

    from snfs.report.store import load_local
    from snfs.report.sweep import Composer, expand
    from snfs.report.tables import csv_rows, write_table

    with Composer() as composer:
        jobs = expand(composer, "mnist_compression", POINT).jobs
    write_runs(tmp_path / "runs", [run_json(j, 0.8) for j in jobs])
    table = table_of(load_local(tmp_path / "runs"), POINT, quick=True)
    assert table.complete and table.status == "smoke test (QUICK)"
    md, path_csv = write_table(table, tmp_path)
    assert "reproduced**" not in md.read_text() and "**smoke test** (QUICK)" in md.read_text()
    assert all(r[csv_rows(table)[0].index("status")] == "smoke test (QUICK)" for r in csv_rows(table)[1])
    before = md.read_text()
    table.built_at_commit = "f" * 40  # only the build line would change: not rewritten
    write_table(table, tmp_path)
    assert md.read_text() == before
    table.quick = False  # the content changes: rewritten
    write_table(table, tmp_path)
    assert "**reproduced**: all 3 runs" in md.read_text() and "f" * 12 in md.read_text()


def test_make_has_a_target_and_a_help_line_per_preset():
    """The Makefile lists no table: its reproduce-table-<name> targets and help lines come from the presets."""
    import subprocess

    from snfs.report.tables import TABLES

    help_text = subprocess.run(["make", "help"], cwd=REPO, capture_output=True, text=True, timeout=60).stdout
    for name, spec in TABLES.items():
        assert spec.help, f"conf/experiment/{name}.md has no help line"
        assert f"reproduce-table-{name}" in help_text and spec.help in help_text
        dry = subprocess.run(
            ["make", "-n", f"reproduce-table-{name}"], cwd=REPO, capture_output=True, text=True, timeout=60
        )
        assert dry.returncode == 0 and f"scripts/reproduce.py run {name} " in dry.stdout, dry.stderr
    assert subprocess.run(["make", "-n", "reproduce-table-nope"], cwd=REPO, capture_output=True).returncode != 0
