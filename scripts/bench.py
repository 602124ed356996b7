"""Benchmark: epoch time of sparse-momentum training vs a plain dense PyTorch loop.

Both run LeNet-300-100 on the same MNIST tensors in the same process. The sparse epoch is the
real training loop's epoch (training steps, validation, mask update); the dense loop is the
textbook forward/backward/SGD step and nothing else. Prints one JSON line at the end.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from snfs.data import build_data
from snfs.models import build_model
from snfs.train import train


def dense_epoch_times(cfg, epochs: int) -> list[float]:
    torch.manual_seed(cfg.seed)
    data = build_data(cfg.dataset, cfg.data.root, cfg.batch_size, torch.device("cpu"), cfg.seed)
    model = build_model("lenet300_100", 10)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4, foreach=True)
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        for x, y in data.train:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=4, help="epochs per measurement")
    parser.add_argument("--data-root", default="data")
    args = parser.parse_args()

    from hydra import compose, initialize_config_dir
    from pathlib import Path
    import tempfile

    conf = Path(__file__).resolve().parents[1] / "conf"
    with tempfile.TemporaryDirectory() as tmp, initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[
            f"data.root={args.data_root}", f"epochs={args.epochs}", "device=cpu", "logger.mode=disabled",
            "progress=false", f"results_dir={tmp}",
        ])
        dense = dense_epoch_times(cfg, args.epochs)
        result = train(cfg)
        sparse = [h["epoch_time_s"] for h in result["history"]]
        dense += dense_epoch_times(cfg, args.epochs)
    # the first epoch of each run warms up allocators and caches
    sparse_s = statistics.median(sparse[1:] or sparse)
    dense_s = statistics.median(dense[1:args.epochs] + dense[args.epochs + 1:] or dense)
    print(f"sparse momentum epochs (s): {[round(t, 3) for t in sparse]}")
    print(f"dense loop epochs (s):      {[round(t, 3) for t in dense]}")
    print(json.dumps({"sparse_epoch_s": round(sparse_s, 4), "dense_epoch_s": round(dense_s, 4),
                      "ratio": round(sparse_s / dense_s, 4), "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
