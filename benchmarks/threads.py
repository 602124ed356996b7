"""Benchmark: training step time by thread count and OpenMP wait policy, on a quiet and on a loaded machine.

Each measurement is a fresh Python process (OMP_WAIT_POLICY only takes effect at start-up) that
times plain PyTorch training steps (batch 100, SGD) of a model on random MNIST-shaped data and
prints the median. Settings are interleaved round by round. The loaded condition runs ``--load``
single-thread busy processes beside the measurement, as when other seeds train on the same machine.
Writes ``<out>/threads.{json,md}``; the README's thread default comes from this table.
Run as ``python -m benchmarks.threads``.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys

from benchmarks.common import busy_processes, machine, machine_sentence, parser, table, write

CHILD = """
import statistics, sys, time, torch, torch.nn.functional as F
from snfs.machine import flush_denormals
from snfs.models import build_model
flush_denormals()  # as a training run does, before torch starts its threads
torch.manual_seed(0)
model = build_model(sys.argv[1], 10)
opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4, foreach=True)
x, y = torch.randn(100, 1, 28, 28), torch.randint(0, 10, (100,))
times = []
for i in range(int(sys.argv[2])):
    t0 = time.perf_counter()
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    times.append(time.perf_counter() - t0)
print(statistics.median(times[5:]) * 1e3)
"""


def step_ms(model: str, threads: int, policy: str | None, steps: int) -> float:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    env.pop("OMP_WAIT_POLICY", None)
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    out = subprocess.run(
        [sys.executable, "-c", CHILD, model, str(steps)], env=env, capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = parser(__doc__, threads=None)
    p.add_argument("--models", nargs="*", default=["lenet300_100", "lenet5_caffe"])
    p.add_argument("--threads", nargs="*", type=int, default=[1, os.cpu_count() or 1])
    p.add_argument("--load", type=int, default=2, help="busy single-thread processes in the loaded condition")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--steps", type=int, default=60)
    args = p.parse_args()
    info = machine()
    settings = list(itertools.product(args.models, sorted(set(args.threads)), [None, "PASSIVE"]))
    results: dict = {}
    for load in (0, args.load):
        with busy_processes(load, settle_s=1.0):
            for r in range(args.rounds):
                for model, threads, policy in settings:
                    ms = step_ms(model, threads, policy, args.steps)
                    results.setdefault(f"{model}|{threads}|{policy or 'default'}|{load}", []).append(ms)
                    print(
                        f"round {r + 1}: {model} threads={threads} wait={policy or 'default'} load={load}: {ms:.2f} ms",
                        file=sys.stderr,
                    )
    info["loadavg_at_end"] = os.getloadavg()
    rows = []
    for model, threads, policy in settings:
        key = f"{model}|{threads}|{policy or 'default'}"
        quiet, loaded = min(results[f"{key}|0"]), min(results[f"{key}|{args.load}"])
        rows.append([model, threads, policy or "default", f"{quiet:.2f}", f"{loaded:.2f}"])
    lines = [
        "# Training step time by threads and OpenMP wait policy",
        "",
        f"{machine_sentence(info, threads=False)}. Median step (batch 100, SGD) of {args.steps} steps, best of "
        f"{args.rounds} interleaved processes. Loaded: {args.load} single-thread busy processes beside the run.",
        "",
        *table(["model", "threads", "OMP_WAIT_POLICY", "quiet (ms)", "loaded (ms)"], rows),
    ]
    result = {
        "machine": info["machine"],
        "machine_info": info,
        "rounds": args.rounds,
        "steps": args.steps,
        "load": args.load,
        "step_ms": results,
    }
    write(args.out, "threads", result, lines)


if __name__ == "__main__":
    main()
