"""The fast run on generated data that the interruption tests of both tiers start from."""

from __future__ import annotations

BASE = [
    "dataset=fake",
    "dataset.n_train=193",
    "dataset.n_val=64",
    "dataset.n_test=64",
    "logger.mode=disabled",
    "progress=false",
    "device=cpu",
    "batch_size=32",
    "epochs=3",
    "density=0.1",
    "run_id=fixed",
    "threads=1",
]
