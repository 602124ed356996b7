"""Run records for the dashboard's tests of both tiers: a LeNet-300-100 run's record as the trainer writes it,
and the store fixture holding finished runs, a run still training, a half-written JSON and two foreign ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

LAYERS = ("fc1.weight", "fc2.weight", "fc3.weight")


def record(
    algorithm: str, density: float, seed: int, epochs_done: int, epochs: int = 6, status: str = "finished"
) -> dict:
    run_id = f"mnist-lenet300_100-{algorithm}-d{density}-s{seed}-{algorithm[:2]}{seed}"
    history = []
    for e in range(1, epochs_done + 1):
        history.append(
            {
                "epoch": e,
                "train_loss": 1.0 / e,
                "val_loss": 1.2 / e,
                "train_error": 10.0 / e,
                "val_error": 12.0 / e,
                "lr": 0.1 if e < 4 else 0.01,
                "prune_rate": 0.5 - 0.05 * e,
                "density": density,
                "layer_density": {name: density * (1 + i) / 2 for i, name in enumerate(LAYERS)},
                "pruned": 1000 - 100 * e,
                "regrown": 1000 - 100 * e,
            }
        )
    rec = {
        "status": status,
        "run_id": run_id,
        "dataset": "mnist",
        "model": "lenet300_100",
        "algorithm": algorithm,
        "density": density,
        "seed": seed,
        "epochs": epochs,
        "history": history,
        "config": {
            "dataset": {"name": "mnist"},
            "model": {"name": "lenet300_100"},
            "sparse": {"name": algorithm},
            "density": density,
            "seed": seed,
            "epochs": epochs,
            "results_dir": "somewhere",
            "device": "cpu",
        },
    }
    if status == "finished":
        rec.update(
            test_error=1.5 + seed / 100,
            val_error=history[-1]["val_error"],
            final_density=density,
            flops_ratio=0.4,
            wall_time_s=12.0,
        )
    return rec


def write(path: Path, obj) -> None:
    path.write_text(json.dumps(obj))


@pytest.fixture
def store(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    for algorithm in ("momentum", "set"):
        for seed in (17, 18, 19):
            rec = record(algorithm, 0.05, seed, 6)
            write(runs / f"{rec['run_id']}.json", rec)
    live = record("momentum", 0.02, 17, 2, status="running")
    write(runs / f"{live['run_id']}.json", live)
    (runs / "half-written.json").write_text(json.dumps(record("set", 0.02, 17, 6))[:500])
    write(runs / "foreign.json", {"name": "some other tool", "values": [1, 2, 3]})
    write(runs / "a-list.json", [1, 2, 3])
    (runs / "checkpoints").mkdir()
    (runs / "checkpoints" / "x.json").write_text("not looked at")
    tables = tmp_path / "tables"
    tables.mkdir()
    (tables / "README.md").write_text("# Tables\n\n| table | what |\n|---|---|\n| [toy](toy.md) | a toy |\n")
    (tmp_path / "figures").mkdir()
    import matplotlib.image

    matplotlib.image.imsave(tmp_path / "figures" / "toy.png", [[0.0, 1.0], [1.0, 0.0]])
    (tables / "toy.md").write_text(
        "# Toy\n\n| method | ours | paper |\n|---|---:|---:|\n| sparse_momentum | 98.50 ± 0.04 | 98.53 |\n"
    )
    return {"runs": runs, "tables": tables, "live": live["run_id"], "tmp": tmp_path}
