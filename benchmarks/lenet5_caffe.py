"""Benchmark: LeNet-5-Caffe training on MNIST on this CPU, the code of before and after, and how to use two cores.

Five versions of the same computation (the same values up to float rounding):
- ``before``: NCHW tensors, ReLU before max-pooling, glibc's default allocator, evaluation in batches of 10,000;
- ``channels_last``: channels_last tensors (oneDNN's fast convolutions) and max-pooling before ReLU (the
  same values and gradients);
- ``after``: that, plus ``keep_freed_memory`` (snfs.malloc) and evaluation in batches of 500, the defaults now;
- two candidates on top of ``after``, measured and not adopted unless they win: ``after + torch.compile``
  (the training forward and backward compiled by inductor) and ``after + execution=sparse`` (CSR kernels
  where snfs.execution finds they pay).

Each is timed as one run with 1 thread, one run with 2 threads, and two single-thread runs side by side
(as ``make reproduce-table-* LAUNCHER=joblib JOBS=2`` runs them). Every run is its own process, because
the allocator setting holds for a whole process. Every setting trains the real training loop (sparse
momentum, 5% weights, the paper's MNIST protocol) for a whole epoch: its steps, validation and the mask
update. Everything is timed in this one invocation, interleaved: each round times one epoch of every
setting, each round starting at another setting, after a short untimed warm-up; the table keeps the best
round. Writes ``<out>/lenet5_caffe.{json,md}``. Run as ``python -m benchmarks.lenet5_caffe``.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import tempfile
import time
import types

import torch

from benchmarks.common import compose, interleaved, machine, machine_sentence, parser, table, use_threads, write

LAYOUTS = {
    "before": ["channels_last=false", "keep_freed_memory=false", "dataset.eval_batch_size=10000"],
    "channels_last": ["channels_last=true", "keep_freed_memory=false", "dataset.eval_batch_size=10000"],
    "after": ["channels_last=true", "keep_freed_memory=true", "dataset.eval_batch_size=500"],
    "after + torch.compile": ["channels_last=true", "keep_freed_memory=true", "dataset.eval_batch_size=500"],
    "after + execution=sparse": [
        "channels_last=true",
        "keep_freed_memory=true",
        "dataset.eval_batch_size=500",
        "execution=sparse",
    ],
}
COMPILED = {"after + torch.compile"}


def relu_then_pool(self, x: torch.Tensor) -> torch.Tensor:
    """LeNet5Caffe.forward as it was before the pool-then-ReLU order (the 'before' layout)."""
    x = torch.max_pool2d(torch.relu(self.conv1(x)), 2)
    x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)
    x = torch.relu(self.fc3(x.flatten(1)))
    return self.fc4(x)


def build(layout: str, data_root: str, tmp: str, threads: int):
    """A Trainer (and its Preemption) for one layout, told to use ``threads`` threads."""
    from snfs.train import Preemption, Trainer

    trainer = Trainer(
        compose(
            [
                "model=lenet5_caffe",
                "dataset=mnist",
                f"data.root={data_root}",
                "epochs=100",
                "device=cpu",
                "logger.mode=disabled",
                "progress=false",
                f"results_dir={tmp}",
                f"threads={threads}",
                *LAYOUTS[layout],
            ]
        )
    )
    if layout == "before":
        trainer.model.forward = types.MethodType(relu_then_pool, trainer.model)
    if layout in COMPILED:  # training steps only; validation keeps the eager model
        trainer.train_model = torch.compile(trainer.model)
    trainer.train_model.train()
    return trainer, Preemption()


def epoch(trainer, preemption, index: int, steps: int | None = None) -> float:
    """Seconds for one epoch of the training loop (``steps`` limits it, for the warm-up)."""
    full = trainer.steps_per_epoch
    trainer.steps_per_epoch = steps or full
    t0 = time.perf_counter()
    trainer.run_epoch(index, preemption)
    seconds = time.perf_counter() - t0
    trainer.steps_per_epoch = full
    return seconds


def worker(conn, layout: str, data_root: str, threads: int) -> None:
    """One run in its own process: trains an epoch whenever told to."""
    use_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        trainer, preemption = build(layout, data_root, tmp, threads)
        conn.send("ready")
        while (message := conn.recv()) is not None:
            index, steps = message
            conn.send(epoch(trainer, preemption, index, steps))


class Runs:
    """``count`` runs of one layout, each a process with ``threads`` threads; an epoch is all of them at once."""

    def __init__(self, layout: str, data_root: str, threads: int, count: int):
        ctx = mp.get_context("spawn")
        self.conns, self.procs = [], []
        for _ in range(count):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=worker, args=(child, layout, data_root, threads), daemon=True)
            proc.start()
            self.conns.append(parent)
            self.procs.append(proc)
        for conn in self.conns:
            assert conn.recv() == "ready"

    def epoch(self, index: int, steps: int | None = None) -> float:
        t0 = time.perf_counter()
        for conn in self.conns:
            conn.send((index, steps))
        for conn in self.conns:
            conn.recv()
        return time.perf_counter() - t0

    def close(self) -> None:
        for conn, proc in zip(self.conns, self.procs):
            conn.send(None)
            proc.join(timeout=60)


def main() -> None:
    p = parser(__doc__, threads=None)
    p.add_argument("--data-root", default="data")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument(
        "--steps", type=int, default=None, help="steps per timed epoch (default: the whole epoch; a smoke check)"
    )
    p.add_argument(
        "--layouts",
        nargs="*",
        choices=list(LAYOUTS),
        default=list(LAYOUTS),
        help="a subset, for a smoke check (default: all; 'before' is the baseline and always runs)",
    )
    args = p.parse_args()
    from tqdm.auto import tqdm

    info = machine()
    settings = []  # (label, layout, threads per run, runs at once, Runs)
    for layout in [name for name in LAYOUTS if name == "before" or name in args.layouts]:
        for threads, count in ((1, 1), (2, 1), (1, 2)):
            label = f"{layout}, " + (
                "two 1-thread runs side by side" if count == 2 else f"one run, {threads} thread(s)"
            )
            settings.append((label, layout, threads, count, Runs(layout, args.data_root, threads, count)))
    with tqdm(total=(args.rounds + 1) * len(settings), desc="bench lenet5_caffe", unit="epoch", file=sys.stderr) as bar:

        def one_epoch(i: int, r: int) -> float:
            seconds = settings[i][-1].epoch(r, 20 if r == 0 else args.steps)  # round 0: 20 steps, untimed
            bar.update(1)
            return seconds

        times = interleaved(len(settings), args.rounds, one_epoch)
    for *_, runs in settings:
        runs.close()

    baseline = next(i for i, s in enumerate(settings) if s[1] == "before" and s[2] == 2 and s[3] == 1)
    rows = []
    for i, (label, layout, threads, at_once, _) in enumerate(settings):
        best = min(times[i])
        per_run_epoch = best / at_once  # machine time per run-epoch
        rows.append(
            {
                "setting": label,
                "layout": layout,
                "overrides": LAYOUTS[layout],
                "threads_per_run": threads,
                "runs_at_once": at_once,
                "epoch_s": best,
                "epochs_s": times[i],
                "run_100_epochs_min": best * 100 / 60,
                "runs_per_hour": 3600 / (per_run_epoch * 100),
                "throughput_vs_before_2_threads": min(times[baseline]) / per_run_epoch,
            }
        )
    info["loadavg_at_end"] = os.getloadavg()
    result = {
        "machine": {**info, "line": info["machine"]},
        "model": "lenet5_caffe",
        "algorithm": "momentum",
        "density": 0.05,
        "rounds": args.rounds,
        "rows": rows,
    }
    lines = [
        "# LeNet-5-Caffe on MNIST: one training epoch on this CPU, before and after",
        "",
        f"`python -m benchmarks.lenet5_caffe`. {machine_sentence(info, threads=False)}. Sparse momentum, 5% "
        "weights, the paper's MNIST protocol; a whole epoch of the training loop (540 steps, validation on 6,000 "
        f"images, the mask update); best of {args.rounds} interleaved rounds; every run is its own process.",
        "",
        "- before: NCHW tensors, ReLU then max-pool, glibc's default allocator, evaluation in batches of 10,000.",
        "- channels_last: channels_last tensors (now on CPUs too), max-pool then ReLU (same values and gradients).",
        "- after: channels_last, plus `keep_freed_memory` (freed blocks stay in the heap) and evaluation in "
        "batches of 500: the defaults now.",
        "- after + torch.compile: `after` with the training forward and backward compiled (inductor); a candidate.",
        "- after + execution=sparse: `after` with `execution=sparse` (CSR kernels where they pay); a candidate.",
        "",
        *table(
            [
                "setting",
                "epoch (s)",
                "one 100-epoch run (min)",
                "runs per hour",
                "throughput vs before, one 2-thread run",
            ],
            [
                [
                    row["setting"],
                    f"{row['epoch_s']:.2f}",
                    f"{row['run_100_epochs_min']:.1f}",
                    f"{row['runs_per_hour']:.2f}",
                    f"{row['throughput_vs_before_2_threads']:.2f}x",
                ]
                for row in rows
            ],
            right_from=1,
        ),
    ]
    lines += [
        "",
        "Side by side, an 'epoch' is both runs training one epoch at once; a run's 100 epochs take that long, "
        "and two runs finish in that time (runs per hour counts both).",
    ]
    write(args.out, "lenet5_caffe", result, lines)


if __name__ == "__main__":
    main()
