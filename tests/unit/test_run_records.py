"""Run records have one home, snfs.results: what the trainer writes is what tables, sweeps and the dashboard read.

The wandb summary the trainer writes (``wandb_summary``) and the one the report reads (``record_from_wandb``)
come from one list of fields, and a run is found by run id or identity by one lookup (``RunLookup``) for
the trainer (never train a finished run again) and for the tables (which run fills a row).
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from snfs.identity import density_of, identity, identity_hash
from snfs.results import (
    LISTING_FIELDS,
    WANDB_SUMMARY_FIELDS,
    RunLookup,
    RunRecord,
    find_finished,
    is_dense,
    read_record,
    record_from_wandb,
    wandb_summary,
    write_record,
)

# record fields a wandb run does not carry in its summary: its history is read from the logged history,
# its config is the wandb run's config, and the rest only matters to the local store (resuming, provenance)
LOCAL_ONLY = {
    "history",
    "config",
    "train_flops",
    "dense_train_flops",
    "world_size",
    "machine_info",
    "fingerprint",
    "data_md5",
    "reason",
    "epochs_completed",
}


def config(sparse: str = "momentum", density: float = 0.05, seed: int = 1, **sparse_options) -> dict:
    return {
        "dataset": {"name": "mnist"},
        "model": {"name": "lenet300_100"},
        "sparse": {"name": sparse, **sparse_options},
        "optim": {"name": "sgd"},
        "density": density,
        "seed": seed,
        "epochs": 2,
        "device": "cpu",
    }


def finished_record(run_id: str = "a-run", **config_kw) -> RunRecord:
    """A finished run's record with every field set to a value of its own."""
    cfg = config(**config_kw)
    return RunRecord(
        status="finished",
        run_id=run_id,
        dataset="mnist",
        model="lenet300_100",
        algorithm=cfg["sparse"]["name"],
        density=cfg["density"],
        seed=cfg["seed"],
        config=cfg,
        epochs=2,
        history=[{"epoch": 1, "train_loss": 0.5}, {"epoch": 2, "train_loss": 0.25}],
        git_commit="0123abc",
        test_error=1.5,
        test_loss=0.05,
        val_error=1.75,
        final_density=0.0499,
        train_flops=3.0e12,
        dense_train_flops=9.0e13,
        flops_ratio=0.0333,
        wall_time_s=12.5,
        median_epoch_time_s=6.0,
        execution="sparse",
        device="cpu",
        world_size=1,
        machine="a CPU, avx2, 1 thread",
        machine_info={"cpu": "a CPU"},
        fingerprint="f" * 10,
        data_md5={"train": "0" * 32},
        speedup_estimate={"speedup_sparse_conv_estimate": 2.0},
        reason="none",
        epochs_completed=2,
    )


class FakeWandbRun:
    """What ``wandb.apis.public.Run`` offers the report: name, state, config, summary, commit, path."""

    def __init__(self, name: str, cfg: dict, summary: dict, state: str = "finished"):
        self.name, self.id, self.state = name, "w123", state
        self.config, self.summary = cfg, {**summary, "_runtime": 1.0}
        self.commit, self.path = "fromwandb", ["me", "snfs", "w123"]


def test_every_summary_field_is_a_record_field():
    fields = {f.name for f in dataclasses.fields(RunRecord)}
    assert set(WANDB_SUMMARY_FIELDS) <= fields
    assert "test_loss" in WANDB_SUMMARY_FIELDS  # read by tables from a wandb project, so written too


def test_a_run_read_from_wandb_has_what_the_local_record_has():
    """Every field the trainer writes to the wandb summary comes back unchanged through the report's reader, and
    every record field a wandb run lacks is one of the few the local store alone needs."""
    local = finished_record().to_dict()
    written = wandb_summary(local)
    assert set(written) == set(WANDB_SUMMARY_FIELDS)
    read = record_from_wandb(FakeWandbRun(local["run_id"], local["config"], written))
    assert read["status"] == "finished"
    differing = {k for k in local if read.get(k) != local[k]}
    assert differing <= LOCAL_ONLY, f"a wandb-sourced record lacks {sorted(differing - LOCAL_ONLY)}"


def test_a_summary_without_commit_or_device_falls_back_to_wandbs_own():
    local = finished_record().to_dict()
    summary = {k: v for k, v in wandb_summary(local).items() if k not in ("git_commit", "device")}
    read = record_from_wandb(FakeWandbRun(local["run_id"], local["config"], summary))
    assert (read["git_commit"], read["device"]) == ("fromwandb", "cpu")
    stopped = record_from_wandb(FakeWandbRun("x", local["config"], {}, state="finished"))
    assert stopped["status"] != "finished"  # wandb's run ended, but the trainer wrote no result


def test_written_record_reads_back(tmp_path):
    record = finished_record()
    path = write_record(tmp_path, record)
    assert path == tmp_path / f"{record.run_id}.json"
    read, why = read_record(path)
    assert why is None and RunRecord.from_dict(read) == record


def test_the_dashboard_lists_records_the_tables_cannot_use(tmp_path):
    """A hand-written record without a config is listed by the dashboard, not used by tables and sweeps."""
    record = {k: v for k, v in finished_record().to_dict().items() if k != "config"}
    path = tmp_path / "hand.json"
    path.write_text(json.dumps(record))
    assert read_record(path) == (None, "not a run record (no config)")
    listed, why = read_record(path, LISTING_FIELDS, needs_config=False)
    assert why is None and listed["run_id"] == "a-run"
    del record["algorithm"]
    path.write_text(json.dumps(record))
    assert read_record(path, LISTING_FIELDS, needs_config=False) == (None, "not a run record (no algorithm)")


def test_lookup_by_run_id_else_identity():
    same = dataclasses.replace(finished_record("old-scheme-id"), data_md5=None).to_dict()
    other = finished_record("another-seed", seed=2).to_dict()
    lookup = RunLookup([other, same])
    wanted = identity_hash(identity(config()))
    assert lookup.find("new-scheme-id", wanted) is same
    unverified = finished_record("old-scheme-id").to_dict()  # a run on other data fills no row of the dataset's
    assert RunLookup([unverified]).find("new-scheme-id", wanted) is None
    assert lookup.find("another-seed", wanted) is other  # a run id names its run whatever the identity
    assert lookup.find("new-scheme-id", identity_hash(identity(config(seed=3)))) is None
    odd = {"run_id": "odd", "config": {"density": "half"}}  # no identity: found by run id alone
    assert RunLookup([odd]).find("odd", wanted) is odd and RunLookup([odd]).find("x", wanted) is None


def test_find_finished_finds_a_run_under_an_older_file_name(tmp_path):
    record = finished_record("old-scheme-id")
    write_record(tmp_path, record)
    wanted = identity_hash(identity(record.config, record.data_md5))
    found = find_finished(tmp_path, "new-scheme-id", wanted)
    assert found is not None and found[1] == tmp_path / "old-scheme-id.json"
    assert found[0]["test_error"] == record.test_error
    diverged = dataclasses.replace(finished_record("d", seed=4), status="diverged")
    write_record(tmp_path, diverged)
    assert find_finished(tmp_path, "d", identity_hash(identity(diverged.config, diverged.data_md5))) is None


@pytest.mark.parametrize(
    ("algorithm", "density", "dense"),
    [("dense", 0.05, True), ("dense", 1.0, True), ("momentum", 1.0, True), ("momentum", 1, True), ("set", 0.5, False)],
)
def test_dense_means_the_dense_baseline_or_density_one(algorithm, density, dense):
    assert is_dense(algorithm, density) is dense
    assert (density_of(config(algorithm, density)) == 1.0) is dense


def test_the_library_trains_every_dense_run_as_dense():
    import torch
    from torch import nn

    from snfs.algorithms import TrainingContext, build_algorithm

    model = nn.Sequential(nn.Linear(4, 3))
    for name, density in (("set", 1.0), ("rigl", 1.0), ("set", 0.5)):
        ctx = TrainingContext(
            model=model,
            optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
            density=density,
            epochs=1,
            steps_per_epoch=1,
            seed=0,
        )
        built = build_algorithm(ctx, {"name": name})
        assert (built.name == "dense") is is_dense(name, density)
