"""The fast run on generated data that the training-protocol tests of both tiers start from."""

from __future__ import annotations

FAKE = [
    "dataset=fake",
    "dataset.n_train=192",
    "dataset.n_val=64",
    "dataset.n_test=64",
    "logger.mode=disabled",
    "progress=false",
    "device=cpu",
    "batch_size=32",
    "run_id=fixed",
]
