"""Benchmark: one linear layer's forward + backward, dense against the CSR route, by size and density.

What ``execution=sparse`` times for each layer on its first input (``TIMED_ROUTES`` in
src/snfs/execution.py), here as a table: LeNet-300-100's three layers at batch 100, best of
``--repeats`` runs of ``--inner`` calls, each setting interleaved with its dense counterpart.
Writes ``<out>/layers.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from bench import best_time

from snfs.execution import CsrPattern, SparseLinearFunction
from snfs.machine import describe_line, flush_denormals

warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
REPO = Path(__file__).resolve().parents[1]
LAYERS = {"fc1 (300 x 784)": (300, 784, False), "fc2 (100 x 300)": (100, 300, True), "fc3 (10 x 100)": (10, 100, True)}


def best_us(fn, repeats: int, inner: int) -> float:
    return best_time(fn, repeats, inner, warmup=5) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--densities", nargs="*", type=float, default=[0.01, 0.05, 0.1, 0.2])
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--inner", type=int, default=100)
    parser.add_argument("--out", default=str(REPO / "results" / "bench"))
    args = parser.parse_args()
    flush_denormals()  # as a training run does, before torch starts its threads
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []
    for name, (out_f, in_f, input_grad) in LAYERS.items():
        for density in args.densities:
            mask = torch.rand(out_f, in_f) < density
            w = (torch.randn(out_f, in_f) * mask).requires_grad_()
            b = torch.zeros(out_f, requires_grad=True)
            x = torch.randn(args.batch, in_f, requires_grad=input_grad)
            g = torch.randn(args.batch, out_f)
            pattern = CsrPattern.from_mask(mask)

            def run(fn):
                def step():
                    w.grad = b.grad = x.grad = None
                    fn().backward(g)

                return step

            t = {
                "dense": best_us(run(lambda: F.linear(x, w, b)), args.repeats, args.inner),
                "csr_sampled": best_us(
                    run(lambda: SparseLinearFunction.apply(x, w, b, pattern, False)), args.repeats, args.inner
                ),
                "csr_dense_grad": best_us(
                    run(lambda: SparseLinearFunction.apply(x, w, b, pattern, True)), args.repeats, args.inner
                ),
            }
            rows.append({"layer": name, "density": density, **{f"{k}_us": v for k, v in t.items()}})
            print(
                f"{name} {density:.0%}: dense {t['dense']:.0f} us, CSR {t['csr_sampled']:.0f} us, "
                f"CSR with dense weight grad {t['csr_dense_grad']:.0f} us"
            )
    info = {"machine": describe_line(), "threads": args.threads, "torch": torch.__version__, "batch": args.batch}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "layers.json").write_text(json.dumps({**info, "rows": rows}, indent=1))
    lines = [
        "# One linear layer, forward + backward: dense vs CSR route",
        "",
        f"Machine: {info['machine']}; torch {info['torch']}; {args.threads} thread(s); batch {args.batch}; best of "
        f"{args.repeats} x {args.inner} calls.",
        "",
        "| layer | density | dense (us) | CSR, sampled weight grad (us) | CSR, dense weight grad (us) |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['layer']} | {r['density']:.0%} | {r['dense_us']:.0f} | {r['csr_sampled_us']:.0f} | "
            f"{r['csr_dense_grad_us']:.0f} |"
        )
    (out / "layers.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
