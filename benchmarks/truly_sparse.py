"""Benchmark (issue 27): the plain dense loop vs ``masked`` vs ``sparse`` vs ``truly_sparse`` training.

Three measurements, each its own subcommand (``all`` runs the three in turn):

``epochs``  Epoch time, best of ``--rounds``, 1 thread, every setting in this one process and
            interleaved (each round times one epoch of every setting, starting at another setting
            each round, after an untimed warm-up round). An epoch is the training steps and the
            algorithm's epoch-end hook, in one loop shared by all modes (the training loop's step:
            begin_step, forward, zero_grad, backward, before_step, fused SGD step, after_step); the
            plain dense loop is the textbook forward/backward/SGD (foreach) step. LeNet-300-100 on
            MNIST (540 steps), the 784-4096-4096-10 MLP on generated data (20 steps, as make bench).
``memory``  Peak resident memory of each setting over one epoch, each in its own process: peak RSS
            (``ru_maxrss``) minus the RSS before the model is built (data already loaded).
``widest``  The widest 784-W-W-10 MLP (static, uniform density, batch 100, generated data) that
            trains within ``--budget-gb`` under ``masked`` and under ``truly_sparse`` at 1% and 0.1%:
            peak RSS above baseline is measured at three small widths per mode and fitted by
            a W^2 + b W + c (every term of both modes is of that form), the fit gives the widest W,
            and ``--verify`` trains ``--steps`` steps at that W to measure time and RSS there.

RigL's ``delta_t`` is min(100, steps per epoch), so every timed epoch holds at least one mask update.
Writes ``<out>/truly_sparse.json`` and ``<out>/truly_sparse.md``; the machine (CPU model, vector
extensions), torch threads and load average are recorded with every table.
Run as ``python -m benchmarks.truly_sparse all``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.common import REPO, compose, interleaved, machine_sentence
from benchmarks.common import machine as common_machine

MODES = ("masked", "sparse", "truly_sparse")
ALGORITHMS = ("static", "set", "rigl")
DENSITIES = (0.001, 0.01, 0.05, 0.1)
MODELS = {
    # name: (model, dataset overrides)
    "lenet300_100": (["model=lenet300_100", "dataset=mnist", "dataset.download=false"]),
    "mlp_4096": (["model=mlp", "dataset=fake", "dataset.n_train=2000", "dataset.n_val=200", "dataset.n_test=200"]),
}


# --- the machine --------------------------------------------------------------------------------------------


def machine() -> dict:
    """benchmarks.common's machine (snfs.machine), with the memory that the widest model is sized against."""
    return {
        **common_machine(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9, 1),
    }


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


# --- one setting: a model, its optimizer and the mode's hooks ---------------------------------------------------


def load_data(model_name: str, data_root: str):
    from snfs.data import build_data

    cfg = compose(MODELS[model_name] + [f"data.root={data_root}"])
    return cfg, build_data(cfg.dataset, cfg.data.root, cfg.batch_size, torch.device("cpu"), cfg.seed)


class Setting:
    """One row of the table: ``mode`` in dense (the plain loop), masked, sparse or truly_sparse."""

    def __init__(
        self,
        cfg,
        data,
        mode: str,
        algorithm: str | None,
        density: float | None,
        epochs: int,
        max_steps: int | None = None,
    ):
        from snfs.algorithms import TrainingContext, build_algorithm
        from snfs.execution import MaskedExecution, SparseExecution
        from snfs.models import build_model
        from snfs.truly_sparse import build_from_scratch

        torch.manual_seed(cfg.seed)
        options = {k: v for k, v in dict(cfg.model).items() if k != "name"}
        # truly_sparse: built on the meta device, its sparse layers never exist densely
        with torch.device("meta" if mode == "truly_sparse" else "cpu"):
            self.model = build_model(cfg.model.name, data.num_classes, **options)
        self.mode, self.algorithm_name, self.density, self.data = mode, algorithm, density, data
        self.max_steps = max_steps
        self.label = "dense loop" if mode == "dense" else f"{algorithm} {density:g} {mode}"
        o = cfg.optim
        sgd = dict(lr=o.lr, momentum=o.momentum, nesterov=o.nesterov, weight_decay=o.weight_decay)
        if mode == "dense":
            self.optimizer = torch.optim.SGD(self.model.parameters(), foreach=True, **sgd)
            self.hooks = self.execution = None
            return
        self.optimizer = None if mode == "truly_sparse" else torch.optim.SGD(self.model.parameters(), fused=True, **sgd)
        steps = len(data.train)
        ctx = TrainingContext(
            model=self.model,
            optimizer=self.optimizer,
            density=density,
            epochs=epochs,
            steps_per_epoch=steps,
            seed=cfg.seed,
            sample_batch=lambda: next(iter(data.train)),
            loss_fn=F.cross_entropy,
        )
        sparse_cfg = {"name": algorithm, **({"delta_t": min(100, steps)} if algorithm == "rigl" else {})}
        algo = build_algorithm(ctx, sparse_cfg)
        if mode == "truly_sparse":
            self.hooks = self.execution = build_from_scratch(self.model, algo)
            self.optimizer = torch.optim.SGD(self.model.parameters(), fused=True, **sgd)
            self.hooks.attach_optimizer(self.optimizer)
        else:
            algo.init_masks()
            self.hooks = algo
            self.execution = MaskedExecution() if mode == "masked" else SparseExecution(self.model, algo)
        self.step = 0

    def batches(self):
        for i, batch in enumerate(self.data.train):
            if self.max_steps is not None and i >= self.max_steps:
                return
            yield batch

    def epoch(self, index: int) -> None:
        model, opt = self.model, self.optimizer
        if self.hooks is None:
            for x, y in self.batches():
                loss = F.cross_entropy(model(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            return
        for x, y in self.batches():
            self.execution.begin_step(self.step)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            self.hooks.before_step(self.step)
            opt.step()
            self.hooks.after_step(self.step)
            self.step += 1
        self.hooks.on_epoch_end(index)


def settings_of(model_name: str, algorithms, densities) -> list[tuple]:
    """(mode, algorithm, density) of every row, the dense loop first."""
    return [("dense", None, None)] + [(m, a, d) for a in algorithms for d in densities for m in MODES]


# --- epochs: interleaved, best of N ---------------------------------------------------------------------------


def measure_epochs(model_name: str, args) -> dict:
    cfg, data = load_data(model_name, args.data_root)
    epochs = args.rounds + 2
    settings = [
        Setting(cfg, data, *s, epochs=epochs + 100) for s in settings_of(model_name, args.algorithms, args.densities)
    ]
    loads: list[float] = []

    def one_epoch(i: int, r: int) -> float:
        t0 = time.perf_counter()
        settings[i].epoch(r)
        return time.perf_counter() - t0

    def note_load(r: int) -> None:
        loads.append(os.getloadavg()[0])
        print(f"{model_name}: round {r} done, load {loads[-1]:.2f}", file=sys.stderr)

    times = interleaved(len(settings), args.rounds, one_epoch, after_round=note_load)
    dense_s = min(times[0])
    rows = [
        {
            "mode": s.mode,
            "algorithm": s.algorithm_name,
            "density": s.density,
            "epoch_s": min(times[i]),
            "epochs_s": times[i],
            "ratio": dense_s / min(times[i]),
        }
        for i, s in enumerate(settings)
    ]
    return {
        "model": model_name,
        "steps_per_epoch": len(data.train),
        "rounds": args.rounds,
        "rows": rows,
        "loadavg_per_round": loads,
        "keep_freed_memory": args.keep_freed_memory,
    }


# --- memory: one process per setting ---------------------------------------------------------------------------


def probe_memory(spec: dict) -> dict:
    """In a fresh process: RSS before the model, then one epoch of the setting; peak RSS above that baseline."""
    torch.set_num_threads(1)
    cfg, data = load_data(spec["model"], spec["data_root"])
    # the same mode on a small MLP first: the kernels' code and thread pools are paged in before the baseline
    small = compose(MODELS[spec["model"]] + [f"data.root={spec['data_root']}", "model=mlp", "model.hidden=[64,64]"])
    Setting(small, data, spec["mode"], spec["algorithm"], spec["density"], epochs=3, max_steps=3).epoch(0)
    baseline = rss_bytes()
    setting = Setting(cfg, data, spec["mode"], spec["algorithm"], spec["density"], epochs=3)
    setting.epoch(0)
    return {"baseline_mb": baseline / 2**20, "peak_above_baseline_mb": (peak_rss_bytes() - baseline) / 2**20}


def probe_env() -> dict[str, str]:
    """A probe process's environment: one thread, and this checkout's snfs and benchmarks first."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)])}


def run_probe(spec: dict, timeout: int) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.truly_sparse", "probe", json.dumps(spec)],
        capture_output=True,
        text=True,
        env=probe_env(),
        timeout=timeout,
    )
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure_memory(model_name: str, args) -> dict:
    rows = []
    for mode, algorithm, density in settings_of(model_name, args.algorithms, args.densities):
        spec = {
            "model": model_name,
            "mode": mode,
            "algorithm": algorithm,
            "density": density,
            "data_root": args.data_root,
        }
        rows.append({**spec, **run_probe(spec, args.probe_timeout)})
        print(f"memory {model_name} {mode} {algorithm} {density}: {rows[-1]}", file=sys.stderr)
    return {"model": model_name, "rows": rows}


# --- widest: 784-W-W-10 ----------------------------------------------------------------------------------------


def wide_model(mode: str, width: int, density: float, seed: int = 0) -> tuple[nn.Module, object]:
    """784-W-W-10 at ``density`` (uniform per layer), static; truly_sparse never forms a dense weight."""
    from snfs.algorithms import TrainingContext, build_algorithm
    from snfs.models import build_model
    from snfs.truly_sparse import build_from_scratch

    torch.manual_seed(seed)
    with torch.device("meta" if mode == "truly_sparse" else "cpu"):
        model = build_model("mlp", 10, hidden=[width, width], in_features=784)
    ctx = TrainingContext(model=model, optimizer=None, density=density, epochs=1, steps_per_epoch=20, seed=seed)
    algo = build_algorithm(ctx, {"name": "static", "distribution": "uniform"})
    if mode == "truly_sparse":
        build_from_scratch(model, algo)
        return model, None  # static: no hook does anything in this mode
    algo.init_masks()
    return model, algo


def probe_wide(spec: dict) -> dict:
    torch.set_num_threads(1)
    for _ in range(2):  # page the mode's kernels in before the baseline (a narrow model, then freed)
        small, small_algo = wide_model(spec["mode"], 64, 0.25)
        F.cross_entropy(small(torch.randn(8, 784)), torch.randint(0, 10, (8,))).backward()
        del small, small_algo
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(spec["batch"], 784, generator=g), torch.randint(0, 10, (spec["batch"],), generator=g)
    baseline = rss_bytes()
    model, algo = wide_model(spec["mode"], spec["width"], spec["density"])
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4, fused=True)
    built = peak_rss_bytes()
    times = []
    for step in range(spec["steps"]):
        t0 = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if algo is not None:
            algo.before_step(step)
        opt.step()
        if algo is not None:
            algo.after_step(step)
        times.append(time.perf_counter() - t0)
    return {
        "baseline_mb": baseline / 2**20,
        "built_peak_above_baseline_mb": (built - baseline) / 2**20,
        "peak_above_baseline_mb": (peak_rss_bytes() - baseline) / 2**20,
        "step_s": times,
        "best_step_s": min(times[1:] or times),
    }


def run_wide_probe(spec: dict, timeout: int) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.truly_sparse", "probe_wide", json.dumps(spec)],
        capture_output=True,
        text=True,
        env=probe_env(),
        timeout=timeout,
    )
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def widest_width(points: list[tuple[int, float]], budget_mb: float) -> int:
    """The largest W with a W^2 + b W + c <= budget, the quadratic through three (W, MB) points."""
    import numpy as np

    w = np.array([p[0] for p in points], dtype=float)  # points: (W, MB, ...)
    a, b, c = np.polyfit(w, np.array([p[1] for p in points]), 2)
    if a <= 0:
        a = max(a, 1e-12)
    return int((-b + np.sqrt(b * b - 4 * a * (c - budget_mb))) / (2 * a))


def measure_widest(args) -> dict:
    budget_mb = args.budget_gb * 1e9 / 2**20
    rows = []
    for density in args.wide_densities:
        for mode in ("masked", "truly_sparse"):
            widths = args.masked_widths if mode == "masked" else [int(w / density**0.5) for w in args.sparse_widths]
            points = []
            for width in widths:
                spec = {"mode": mode, "width": width, "density": density, "batch": 100, "steps": 3}
                result = run_wide_probe(spec, args.probe_timeout)
                print(f"widest {mode} {density:g} W={width}: {result}", file=sys.stderr)
                if "error" in result:
                    break
                points.append((width, result["peak_above_baseline_mb"], result["best_step_s"]))
            row = {"mode": mode, "density": density, "points": points}
            if len(points) == 3:
                row["widest_fit"] = widest_width(points, budget_mb)
                if args.verify:
                    spec = {
                        "mode": mode,
                        "width": row["widest_fit"],
                        "density": density,
                        "batch": 100,
                        "steps": args.steps,
                    }
                    row["verified"] = run_wide_probe(spec, args.probe_timeout)
            rows.append(row)
    return {"budget_gb": args.budget_gb, "rows": rows}


# --- profile: where one truly sparse step's time goes ------------------------------------------------------------


def measure_profile(args) -> dict:
    """torch.profiler over 10 steps of static truly_sparse (after 5 warm-up steps): self CPU time per op."""
    out = []
    for model_name in args.models:
        cfg, data = load_data(model_name, args.data_root)
        for density in args.profile_densities:
            setting = Setting(cfg, data, "truly_sparse", "static", density, epochs=3, max_steps=15)
            batches = list(setting.batches())
            model, opt, _hooks = setting.model, setting.optimizer, setting.hooks

            def step(x, y, model=model, opt=opt):
                loss = F.cross_entropy(model(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

            for x, y in batches[:5]:
                step(x, y)
            with torch.profiler.profile() as prof:
                for x, y in batches[5:15]:
                    step(x, y)
            events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
            total = sum(e.self_cpu_time_total for e in events)
            out.append(
                {
                    "model": model_name,
                    "density": density,
                    "step_ms": total / 10 / 1e3,
                    "ops": [(e.key, e.count / 10, e.self_cpu_time_total / 10 / 1e3) for e in events[:12]],
                }
            )
    return {"loadavg": os.getloadavg(), "profiles": out}


# --- the table ------------------------------------------------------------------------------------------------


def markdown(result: dict) -> str:
    m = result["machine"]
    out = [
        "# Truly sparse layers: epoch time and memory (issue 27)",
        "",
        f"{machine_sentence(m)}; {m['memory_gb']} GB of memory (the machine is shared: other processes ran meanwhile).",
        "Written by `python -m benchmarks.truly_sparse` (its docstring says what is timed).",
        "",
    ]
    for table in result.get("epochs", []):
        loads = ", ".join(f"{v:.2f}" for v in table["loadavg_per_round"])
        dense = table["rows"][0]
        out += [
            f"## {table['model']}: epoch time ({table['steps_per_epoch']} steps), best of {table['rounds']}",
            "",
            f"Load average after each round: {loads}. glibc keeps freed memory (as the training loop sets it on "
            f"CPUs): {table.get('keep_freed_memory', False)}. Plain dense loop: {dense['epoch_s']:.3f} s. "
            "Cell: seconds per epoch (ratio = dense loop / this).",
            "",
        ]
        densities = sorted({r["density"] for r in table["rows"] if r["density"] is not None})
        out.append("| algorithm | mode | " + " | ".join(f"{d:.1%}" for d in densities) + " |")
        out.append("|---|---|" + "---|" * len(densities))
        for algorithm in dict.fromkeys(r["algorithm"] for r in table["rows"] if r["algorithm"]):
            for mode in MODES:
                cells = []
                for d in densities:
                    r = next(
                        (r for r in table["rows"] if (r["algorithm"], r["mode"], r["density"]) == (algorithm, mode, d)),
                        None,
                    )
                    cells.append("" if r is None else f"{r['epoch_s']:.3f} ({r['ratio']:.1f}x)")
                out.append(f"| {algorithm} | {mode} | " + " | ".join(cells) + " |")
        out.append("")
    for table in result.get("memory", []):
        out += [f"## {table['model']}: peak RSS above the baseline (MB), one epoch, one process per cell", ""]
        rows = table["rows"]
        dense = rows[0]
        out.append(f"Plain dense loop: {dense.get('peak_above_baseline_mb', float('nan')):.0f} MB.")
        out.append("")
        densities = sorted({r["density"] for r in rows if r["density"] is not None})
        out.append("| algorithm | mode | " + " | ".join(f"{d:.1%}" for d in densities) + " |")
        out.append("|---|---|" + "---|" * len(densities))
        for algorithm in dict.fromkeys(r["algorithm"] for r in rows if r["algorithm"]):
            for mode in MODES:
                cells = []
                for d in densities:
                    r = next(
                        (r for r in rows if (r["algorithm"], r["mode"], r["density"]) == (algorithm, mode, d)), None
                    )
                    cells.append("" if r is None else r.get("error", f"{r.get('peak_above_baseline_mb', 0):.0f}"))
                out.append(f"| {algorithm} | {mode} | " + " | ".join(cells) + " |")
        out.append("")
    if "widest" in result:
        w = result["widest"]
        out += [
            f"## Widest 784-W-W-10 within {w['budget_gb']} GB (static, uniform density, batch 100)",
            "",
            "Peak RSS above baseline (MB) measured at three widths (3 steps each), fitted by a W^2 + b W + c; "
            "'widest' is the fit's W at the budget. 'verified': a run at that W.",
            "",
            "| mode | density | measured (W: MB, best step s) | widest W (fit) | verified |",
            "|---|---|---|---|---|",
        ]
        for r in w["rows"]:
            pts = "; ".join(f"{p[0]}: {p[1]:.0f} MB, {p[2]:.3f} s" for p in r["points"])
            v = r.get("verified")
            verified = (
                "not run"
                if v is None
                else v.get("error") or (f"{v['peak_above_baseline_mb']:.0f} MB, {v['best_step_s']:.2f} s/step")
            )
            out.append(f"| {r['mode']} | {r['density']:.1%} | {pts} | {r.get('widest_fit', '')} | {verified} |")
        out.append("")
    if "profile" in result:
        out += [
            "## Where one truly sparse step goes (static; torch.profiler, self CPU time, mean of 10 steps)",
            "",
            f"Load average: {result['profile']['loadavg'][0]:.2f}. The profiler adds its own overhead per op.",
            "",
        ]
        for p in result["profile"]["profiles"]:
            out += [
                f"{p['model']} at {p['density']:.1%}: {p['step_ms']:.2f} ms per step (profiled)",
                "",
                "| op | calls per step | ms per step |",
                "|---|---|---|",
            ]
            out += [f"| {k} | {c:g} | {ms:.3f} |" for k, c, ms in p["ops"]]
            out.append("")
    return "\n".join(out)


def merged(old: list[dict], new: list[dict]) -> list[dict]:
    """Tables by model: the new ones replace the old ones of the same model, the others stay."""
    fresh = {t["model"] for t in new}
    return [t for t in old if t["model"] not in fresh] + new


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("all", "epochs", "memory", "widest", "profile", "probe", "probe_wide"))
    parser.add_argument("spec", nargs="?", help=argparse.SUPPRESS)
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--algorithms", nargs="*", default=list(ALGORITHMS), choices=list(ALGORITHMS))
    parser.add_argument("--densities", nargs="*", type=float, default=list(DENSITIES))
    parser.add_argument("--rounds", type=int, default=3, help="timed interleaved epochs per setting; the best counts")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-root", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--profile-densities", nargs="*", type=float, default=[0.01, 0.001])
    parser.add_argument("--budget-gb", type=float, default=24.0)
    parser.add_argument("--wide-densities", nargs="*", type=float, default=[0.01, 0.001])
    parser.add_argument("--masked-widths", nargs=3, type=int, default=[2000, 4000, 8000])
    parser.add_argument(
        "--sparse-widths",
        nargs=3,
        type=int,
        default=[1000, 2000, 4000],
        help="divided by sqrt(density): the same number of active weights at each density",
    )
    parser.add_argument("--verify", action="store_true", help="train at the fitted widest W (needs the whole budget)")
    parser.add_argument("--steps", type=int, default=20, help="steps of the --verify run")
    parser.add_argument("--probe-timeout", type=int, default=3600)
    parser.add_argument("--out", default=str(REPO / "results" / "bench"))
    parser.add_argument("--name", default="truly_sparse")
    parser.add_argument(
        "--no-keep-freed-memory",
        dest="keep_freed_memory",
        action="store_false",
        help="leave glibc's malloc thresholds alone (the training loop sets them on CPUs)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.keep_freed_memory and args.what in ("all", "epochs", "profile"):
        from snfs.malloc import keep_freed_memory

        keep_freed_memory()  # as Trainer does on a CPU: activations' buffers are reused, not faulted in each step
    if args.what == "probe":
        print(json.dumps(probe_memory(json.loads(args.spec))))
        return
    if args.what == "probe_wide":
        print(json.dumps(probe_wide(json.loads(args.spec))))
        return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{args.name}.json"
    result = json.loads(path.read_text()) if path.exists() else {}
    result["machine"] = machine()
    result["machine"]["keep_freed_memory"] = args.keep_freed_memory
    if args.what in ("all", "epochs"):
        result["epochs"] = merged(result.get("epochs", []), [measure_epochs(m, args) for m in args.models])
    if args.what in ("all", "memory"):
        result["memory"] = merged(result.get("memory", []), [measure_memory(m, args) for m in args.models])
    if args.what in ("all", "widest"):
        result["widest"] = measure_widest(args)
    if args.what in ("all", "profile"):
        fresh = measure_profile(args)
        kept = [p for p in result.get("profile", {}).get("profiles", []) if p["model"] not in args.models]
        result["profile"] = {**fresh, "profiles": kept + fresh["profiles"]}
    path.write_text(json.dumps(result, indent=1))
    (out / f"{args.name}.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
