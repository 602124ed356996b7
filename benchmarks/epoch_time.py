"""Benchmark: training epoch time under ``execution=masked`` and ``execution=sparse`` against a plain dense loop.

Everything runs in this one process, interleaved: each round times one epoch of every setting in
turn, each round starting at another setting, so that whatever else the machine does hits every
setting alike; the table keeps the best of the rounds, after an untimed warm-up round. A sparse
epoch is the real training loop's epoch (the steps, validation and the epoch-end mask update),
each setting with its own model, optimizer and masks on shared data. The dense loop is the
textbook forward/backward/SGD step and nothing else.

Late epochs: a run's first epochs are not what it costs. In a 100-epoch LeNet-300-100 run without
denormal flushing the epoch time doubled by epoch 10 (docs/findings/denormals.md). So for the
``--late-densities`` every algorithm is also trained (masked, untimed) to epoch ``--late-epoch`` of
its real 100-epoch schedule, checkpointed, and that state resumed under both executions; those
"late" settings are timed in the same interleaved rounds as the fresh ("early") ones.

Writes ``<out>/<name>.json``, ``<out>/<name>.md`` and ``<out>/<name>.png`` (speedup vs density).
``--load N`` starts N single-thread busy processes for the whole measurement (a loaded machine).
Denormals are flushed as in a training run (``--keep-denormals`` measures without, as before).
Run as ``python -m benchmarks.epoch_time [PRESET ...]``. How long: ``make bench`` took about 20
minutes before the late epochs were added; they add about 6 (20 untimed epochs per algorithm at 1%
and 5%, and their timed rounds): an estimate, not yet timed on a quiet machine.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.common import busy_processes, compose, interleaved, machine, machine_sentence, table, use_threads, write
from benchmarks.common import parser as make_parser

DEFAULT_ALGORITHMS = ("static", "set", "rigl", "momentum")
DEFAULT_DENSITIES = (0.01, 0.02, 0.05, 0.1, 0.2)
PRESETS = {
    # name: (overrides, algorithms, densities)
    "lenet300_100": (["model=lenet300_100", "dataset=mnist"], DEFAULT_ALGORITHMS, DEFAULT_DENSITIES),
    # generated data: 2,000 training images of MNIST's shape, so one epoch is 20 steps
    "mlp_4096": (
        ["model=mlp", "dataset=fake", "dataset.n_train=2000", "dataset.n_val=200", "dataset.n_test=200"],
        ("static", "momentum"),
        (0.01, 0.05, 0.2),
    ),
}
DEFAULT_LATE_DENSITIES = (0.01, 0.05)
#: the length of the run whose late epochs are timed: the paper's MNIST protocol
RUN_EPOCHS = 100


class SharedData:
    """Builds each dataset once: every setting trains on the same tensors (the order generator is shared too)."""

    def __init__(self, build):
        self.build, self.cache = build, {}

    def __call__(self, cfg, data_root, batch_size, device, seed):
        key = (json.dumps(dict(cfg), sort_keys=True, default=str), data_root, batch_size, str(device))
        if key not in self.cache:
            self.cache[key] = self.build(cfg, data_root, batch_size, device, seed)
        return self.cache[key]


class DenseLoop:
    """The plain PyTorch loop: forward, cross-entropy, backward, SGD (the protocol's optimizer settings)."""

    def __init__(self, cfg, data, fused: bool = False):
        from snfs.models import build_model

        torch.manual_seed(cfg.seed)
        options = {k: v for k, v in dict(cfg.model).items() if k != "name"}
        self.model = build_model(cfg.model.name, data.num_classes, **options)
        o = cfg.optim
        self.opt = torch.optim.SGD(
            self.model.parameters(),
            lr=o.lr,
            momentum=o.momentum,
            nesterov=o.nesterov,
            weight_decay=o.weight_decay,
            **({"fused": True} if fused else {"foreach": True}),
        )
        self.data, self.label = data, "dense loop, fused SGD" if fused else "dense loop"

    def epoch(self, _: int) -> None:
        for x, y in self.data.train:
            loss = F.cross_entropy(self.model(x), y)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()


class TrainerEpoch:
    """One setting: the training loop's own epoch (``Trainer.run_epoch``), from its epoch ``first`` on."""

    def __init__(self, trainer, label: str, first: int = 0):
        from snfs.train import Preemption

        self.trainer, self.label, self.preemption, self.first = trainer, label, Preemption(), first
        trainer.train_model.train()

    def epoch(self, index: int) -> None:
        self.trainer.run_epoch(self.first + index, self.preemption)


def late_trainers(overrides: list[str], epoch: int) -> dict:
    """Trainers of both executions resumed from the state after ``epoch`` epochs of the real run (trained masked)."""
    from snfs.train import Preemption, Trainer

    ager = Trainer(compose(overrides + ["execution=masked"]))
    ager.train_model.train()
    with Preemption() as preemption:
        for index in range(epoch):
            ager.run_epoch(index, preemption)
    ager.save_checkpoint()
    out = {}
    for execution in ("masked", "sparse"):
        trainer = Trainer(compose(overrides + ["resume=true", f"execution={execution}"]))
        trainer.resume(trainer.find_checkpoint())
        out[execution] = trainer
    return out


def measure(preset: str, args) -> dict:
    import snfs.train as train_module
    from snfs.train import Trainer

    overrides, algorithms, densities = PRESETS[preset]
    algorithms = args.algorithms or algorithms
    densities = args.densities or densities
    late_densities = [d for d in (args.late_densities or DEFAULT_LATE_DENSITIES) if d in densities]
    base = overrides + [
        f"data.root={args.data_root}",
        f"epochs={RUN_EPOCHS}",
        "device=cpu",
        "logger.mode=disabled",
        "progress=false",
        f"results_dir={args.tmp}",
        f"threads={args.threads}",
        f"flush_denormal={str(not args.keep_denormals).lower()}",
        *args.set,
    ]
    train_module.build_data = SharedData(train_module.build_data)
    settings: list[tuple[str, float | None, str | None, DenseLoop | TrainerEpoch]] = []
    cfg0 = compose(base)
    data0 = train_module.build_data(cfg0.dataset, cfg0.data.root, cfg0.batch_size, torch.device("cpu"), cfg0.seed)
    settings.append(("dense", None, None, DenseLoop(cfg0, data0)))
    # the training loop's optimizer is SGD's fused kernel: this row shows what that alone is worth
    settings.append(("dense", None, None, DenseLoop(cfg0, data0, fused=True)))
    for algorithm in algorithms:
        for density in densities:
            for execution in ("masked", "sparse"):
                trainer = Trainer(
                    compose(base + [f"sparse={algorithm}", f"density={density}", f"execution={execution}"])
                )
                settings.append(
                    (algorithm, density, execution, TrainerEpoch(trainer, f"{algorithm} {density:g} {execution}"))
                )
            if args.late_epoch > 0 and density in late_densities:
                print(
                    f"bench {preset}: {algorithm} {density:g} trained to epoch {args.late_epoch} (untimed)",
                    file=sys.stderr,
                )
                for execution, trainer in late_trainers(
                    base + [f"sparse={algorithm}", f"density={density}"], args.late_epoch
                ).items():
                    settings.append(
                        (
                            algorithm,
                            density,
                            execution,
                            TrainerEpoch(trainer, f"{algorithm} {density:g} {execution} late", first=args.late_epoch),
                        )
                    )
    from tqdm.auto import tqdm

    with tqdm(total=(args.rounds + 1) * len(settings), desc=f"bench {preset}", unit="epoch", file=sys.stderr) as bar:

        def one_epoch(i: int, r: int) -> tuple[float, float]:
            # CPU seconds of this process too: on a shared machine they move far less with the others' load
            t0, c0 = time.perf_counter(), time.process_time()
            settings[i][-1].epoch(r)
            seconds = (time.perf_counter() - t0, time.process_time() - c0)
            bar.update(1)
            return seconds

        measured = interleaved(len(settings), args.rounds, one_epoch)
    times = {i: [wall for wall, _ in m] for i, m in measured.items()}
    cpu_times = {i: [cpu for _, cpu in m] for i, m in measured.items()}
    dense_s = min(times[0])
    rows: list[dict] = []
    for i, (algorithm, density, execution_name, runner) in enumerate(settings):
        best = min(times[i])
        row = {
            "setting": runner.label,
            "algorithm": algorithm,
            "density": density,
            "execution": execution_name,
            "late": runner.label.endswith(" late"),
            "epoch_s": best,
            "epochs_s": times[i],
            "epoch_cpu_s": min(cpu_times[i]),
            "epochs_cpu_s": cpu_times[i],
            "ratio_to_dense_loop": dense_s / best,
        }
        if isinstance(runner, TrainerEpoch):
            row["routes"] = runner.trainer.execution.routes()
            row["final_density"] = runner.trainer.algo.masks.density()
        rows.append(row)
    return {
        "preset": preset,
        "overrides": overrides,
        "rows": rows,
        "late_epoch": args.late_epoch,
        "flush_denormal": not args.keep_denormals,
    }


def _cell(row: dict | None) -> str:
    return "" if row is None else f"{row['epoch_s']:.3f} s ({row['ratio_to_dense_loop']:.2f}x)"


def markdown(result: dict) -> list[str]:
    m = result["machine"]
    flush = "flushed" if result.get("flush_denormal", True) else "NOT flushed (--keep-denormals)"
    m = {"loadavg_at_end": result.get("loadavg_at_end", [float("nan")]), **m}
    lines = [
        f"# Epoch time: {result['preset']}, masked vs sparse execution",
        "",
        f"{machine_sentence(m)}; CPU kernels: {m.get('cpu_capability')}; OMP_WAIT_POLICY {m['omp_wait_policy']}; "
        f"denormals {flush}; extra load: {result['load']} busy single-thread process(es). Best of "
        f"{result['rounds']} interleaved epochs per setting (after one untimed warm-up epoch each; every round "
        "starts at another setting), one process.",
        "Ratio = dense-loop epoch time / this setting's epoch time (> 1: faster than the plain dense loop).",
        "",
    ]
    rows = result["rows"]
    dense, fused = rows[0], rows[1]
    lines.append(
        f"Plain dense loop (textbook: foreach SGD): {dense['epoch_s']:.3f} s per epoch; the same with SGD's fused "
        f"kernel, which the training loop uses: {fused['epoch_s']:.3f} s ({fused['ratio_to_dense_loop']:.2f}x)."
    )
    lines.append("")
    rows = [r for r in rows if r["algorithm"] != "dense"]
    early = [r for r in rows if not r.get("late")]
    late = [r for r in rows if r.get("late")]

    def find(rs, algorithm, density, execution):
        return next(
            (r for r in rs if r["algorithm"] == algorithm and r["density"] == density and r["execution"] == execution),
            None,
        )

    densities = sorted({r["density"] for r in early})
    algorithms = list(dict.fromkeys(r["algorithm"] for r in early))
    lines.append(
        f"Early epochs (a freshly initialised model, epochs 1-{result['rounds'] + 1} of the 100-epoch schedule):"
    )
    lines.append("")

    def ratio(algorithm: str, density: float, key: str) -> str:
        masked, sparse = find(early, algorithm, density, "masked"), find(early, algorithm, density, "sparse")
        return "" if not (masked and sparse) else f"{masked[key] / sparse[key]:.2f}x"

    rows_out = []
    for algorithm in algorithms:
        for execution in ("masked", "sparse"):
            rows_out.append([algorithm, execution, *(_cell(find(early, algorithm, d, execution)) for d in densities)])
        rows_out.append([algorithm, "sparse vs masked", *(ratio(algorithm, d, "epoch_s") for d in densities)])
        rows_out.append(
            [algorithm, "sparse vs masked, CPU seconds", *(ratio(algorithm, d, "epoch_cpu_s") for d in densities)]
        )
    lines += table(["algorithm", "execution", *(f"{d:.0%}" for d in densities)], rows_out)
    if late:
        lines += [
            "",
            f"Late epochs: the state after epoch {result['late_epoch']} of the 100-epoch run (trained masked, "
            "untimed), resumed under each execution and timed in the same rounds; late / early = the late "
            "epoch's time over the early epoch's of the same setting; the same in CPU seconds of the process, "
            "which another process's load moves far less than wall time.",
            "",
        ]
        late_rows = []
        for r in late:
            e = find(early, r["algorithm"], r["density"], r["execution"])
            late_rows.append(
                [
                    r["algorithm"],
                    f"{r['density']:.0%}",
                    r["execution"],
                    f"{e['epoch_s']:.3f} s",
                    f"{r['epoch_s']:.3f} s",
                    f"{r['epoch_s'] / e['epoch_s']:.2f}",
                    f"{e['epoch_cpu_s']:.3f} s",
                    f"{r['epoch_cpu_s']:.3f} s",
                    f"{r['epoch_cpu_s'] / e['epoch_cpu_s']:.2f}",
                ]
            )
        columns = ["algorithm", "density", "execution", "early", "late", "late / early", "CPU: early", "late"]
        lines += table([*columns, "late / early"], late_rows)
    return lines


def write_figure(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result["rows"] if r["algorithm"] != "dense" and not r.get("late")]
    fig, ax = plt.subplots(figsize=(6, 4))
    for algorithm in dict.fromkeys(r["algorithm"] for r in rows):
        for execution, style in (("sparse", "-o"), ("masked", ":x")):
            pts = sorted(
                (r["density"], r["ratio_to_dense_loop"])
                for r in rows
                if r["algorithm"] == algorithm and r["execution"] == execution
            )
            line = ax.plot([100 * d for d, _ in pts], [s for _, s in pts], style, label=f"{algorithm}, {execution}")
            if execution == "sparse":
                color = line[0].get_color()
            else:
                line[0].set_color(color)
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("weights (%)")
    ax.set_ylabel("speedup over the plain dense loop")
    ax.set_title(f"{result['preset']}: epoch time, {result['machine']['threads']} thread(s), load {result['load']}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("presets", nargs="*", metavar="PRESET", help=f"default: all of {', '.join(PRESETS)}")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved epochs per setting; the best counts")
    parser.add_argument("--algorithms", nargs="*", help="override the preset's algorithms")
    parser.add_argument("--densities", nargs="*", type=float, help="override the preset's densities")
    parser.add_argument("--load", type=int, default=0, help="busy single-thread processes to run meanwhile")
    parser.add_argument(
        "--late-epoch",
        type=int,
        default=20,
        help="also time epochs after this many of the real run (0: early epochs only)",
    )
    parser.add_argument(
        "--late-densities",
        nargs="*",
        type=float,
        help=f"densities with late epochs (default {' '.join(map(str, DEFAULT_LATE_DENSITIES))})",
    )
    parser.add_argument("--keep-denormals", action="store_true", help="do not flush denormals (as before issue 25)")
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="extra config overrides for every setting (tests: generated data, limit_batches)",
    )
    parser.add_argument("--data-root", default="data")
    parser.add_argument("--suffix", default="", help="appended to the output names (e.g. _loaded)")
    args = parser.parse_args()
    unknown = [p for p in args.presets if p not in PRESETS]
    if unknown:
        parser.error(f"unknown preset {unknown[0]!r}; valid choices: {', '.join(PRESETS)}")
    args.presets = args.presets or list(PRESETS)
    use_threads(args.threads, flush=not args.keep_denormals)
    with busy_processes(args.load):
        with tempfile.TemporaryDirectory() as tmp:
            args.tmp = tmp
            for preset in args.presets:
                info = machine()
                result = measure(preset, args)
                result.update(machine=info, rounds=args.rounds, load=args.load, loadavg_at_end=os.getloadavg())
                name = f"{preset}{args.suffix}"
                write(args.out, name, result, markdown(result))
                write_figure(result, Path(args.out) / f"{name}.png")


if __name__ == "__main__":
    main()
