"""Training throughput (images/s) of any model x algorithm on generated data of the dataset's shape.

Runs the real training step (forward, backward, optimizer step and the algorithm's hooks) of
``snfs.train.Trainer`` for a few short epochs and reports images per second over the timed steps;
each epoch ends with the algorithm's mask update, timed separately. The first epoch is warm-up.
Prints one JSON line per setting, e.g.

    python -m benchmarks.throughput --model wrn16_8 vgg16_d --sparse momentum dense
    python -m benchmarks.throughput --model resnet50 --shape 3 224 224 --classes 1000 --device cuda --precision bf16
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from snfs.train import Trainer


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(cfg, epochs: int, steps: int) -> dict:
    trainer = Trainer(cfg)
    trainer.train_model.train()
    device, batch = trainer.device, int(cfg.batch_size)
    step_rates, update_s = [], []
    for epoch in range(epochs):
        sync(device)
        started = time.perf_counter()
        done = 0
        for x, y in trainer.data.train:
            if done >= steps:
                break
            trainer.train_step(x, y)
            done += 1
        sync(device)
        elapsed = time.perf_counter() - started
        started = time.perf_counter()
        trainer.algo.on_epoch_end(epoch)
        sync(device)
        if epoch > 0 or epochs == 1:  # the first epoch warms up allocators and kernels
            step_rates.append(done * batch / elapsed)
            update_s.append(time.perf_counter() - started)
    return {
        "images_per_s": round(statistics.median(step_rates), 2),
        "mask_update_s": round(statistics.median(update_s), 4),
        "steps_per_epoch": steps,
        "epochs_timed": len(step_rates),
        "density": trainer.algo.masks.density(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", nargs="+", default=["wrn16_8", "vgg16_d"])
    parser.add_argument("--sparse", nargs="+", default=["momentum"])
    parser.add_argument("--density", type=float, default=0.05)
    parser.add_argument("--shape", type=int, nargs=3, default=[3, 32, 32])
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per epoch")
    parser.add_argument("--epochs", type=int, default=3, help="epochs (the first is warm-up)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    args = parser.parse_args()

    from hydra import compose, initialize_config_dir

    conf = Path(__file__).resolve().parents[1] / "conf"
    n_train = args.batch_size * args.steps
    with tempfile.TemporaryDirectory() as tmp, initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        for model in args.model:
            for sparse in args.sparse:
                cfg = compose(
                    config_name="config",
                    overrides=[
                        "dataset=fake",
                        f"dataset.shape=[{','.join(map(str, args.shape))}]",
                        f"dataset.num_classes={args.classes}",
                        f"dataset.n_train={n_train}",
                        "dataset.n_val=0",
                        f"dataset.n_test={args.batch_size}",
                        f"model={model}",
                        f"sparse={sparse}",
                        f"density={1.0 if sparse == 'dense' else args.density}",
                        f"batch_size={args.batch_size}",
                        f"epochs={args.epochs + 1}",
                        f"device={args.device}",  # +1: every timed epoch ends with an update
                        f"precision={args.precision}",
                        "logger.mode=disabled",
                        "progress=false",
                        f"results_dir={tmp}",
                    ],
                )
                result = measure(cfg, args.epochs, args.steps)
                print(
                    json.dumps(
                        {
                            "model": model,
                            "sparse": sparse,
                            "device": args.device,
                            "precision": args.precision,
                            "batch_size": args.batch_size,
                            "threads": torch.get_num_threads(),
                            **result,
                        }
                    ),
                    flush=True,
                )


if __name__ == "__main__":
    main()
