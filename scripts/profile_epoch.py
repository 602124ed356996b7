"""Where the milliseconds of one training epoch go: any MNIST model (LeNet-300-100 by default), algorithm and execution.

Runs one warm-up epoch, then profiles the next with ``torch.profiler`` and prints (1) the epoch's
wall time split into training steps, validation and the epoch-end mask update, and (2) the
operators by their own CPU time, in milliseconds per epoch. Example:

    python scripts/profile_epoch.py --sparse momentum --execution sparse --density 0.05
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="lenet300_100")
    parser.add_argument("--sparse", default="momentum")
    parser.add_argument("--execution", default="sparse", choices=["masked", "sparse"])
    parser.add_argument("--density", type=float, default=0.05)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rows", type=int, default=15)
    parser.add_argument("--data-root", default="data")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import tempfile

    from bench import compose

    import snfs.train as train_module
    from snfs.train import Preemption, Trainer

    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(
            compose(
                [
                    f"data.root={args.data_root}",
                    "epochs=3",
                    "device=cpu",
                    "logger.mode=disabled",
                    "progress=false",
                    f"results_dir={tmp}",
                    f"model={args.model}",
                    f"sparse={args.sparse}",
                    f"density={args.density}",
                    f"execution={args.execution}",
                    f"threads={args.threads}",
                ]
            )
        )
        phases = {"validation": 0.0, "mask update": 0.0}
        evaluate, on_epoch_end = train_module.evaluate, trainer.algo.on_epoch_end

        def timed(name, fn):
            def wrapper(*a, **k):
                t0 = time.perf_counter()
                try:
                    return fn(*a, **k)
                finally:
                    phases[name] += time.perf_counter() - t0

            return wrapper

        train_module.evaluate = timed("validation", evaluate)
        trainer.algo.on_epoch_end = timed("mask update", on_epoch_end)
        trainer.train_model.train()
        trainer.run_epoch(0, Preemption())
        phases.update({"validation": 0.0, "mask update": 0.0})
        from torch.profiler import profile

        t0 = time.perf_counter()
        with profile() as prof:
            trainer.run_epoch(1, Preemption())
        total = time.perf_counter() - t0
    steps = trainer.steps_per_epoch
    print(
        f"{args.model}, {args.sparse}, {args.density:g}, execution={args.execution}, {args.threads} thread(s); one epoch of "
        f"{steps} steps under the profiler: {total * 1e3:.0f} ms"
    )
    for name, seconds in phases.items():
        print(f"  {name}: {seconds * 1e3:.0f} ms")
    print(
        f"  training steps: {(total - sum(phases.values())) * 1e3:.0f} ms "
        f"({(total - sum(phases.values())) / steps * 1e3:.2f} ms per step)"
    )
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    print("\n| operator | calls | self CPU ms per epoch |\n|---|---|---|")
    for e in events[: args.rows]:
        print(f"| {e.key} | {e.count} | {e.self_cpu_time_total / 1e3:.1f} |")


if __name__ == "__main__":
    main()
