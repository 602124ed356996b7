"""Benchmark: one linear layer's forward + backward, dense against the CSR route, by size and density.

What ``execution=sparse`` times for each layer on its first input (``TIMED_ROUTES`` in
src/snfs/execution.py), here as a table: LeNet-300-100's three layers at batch 100, best of
``--repeats`` runs of ``--inner`` calls, each setting interleaved with its dense counterpart.
Writes ``<out>/layers.{json,md}``. Run as ``python -m benchmarks.layers``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F

from benchmarks.common import best_time, machine, machine_sentence, parser, table, use_threads, write
from snfs.execution import CsrPattern, SparseLinearFunction

warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
LAYERS = {"fc1 (300 x 784)": (300, 784, False), "fc2 (100 x 300)": (100, 300, True), "fc3 (10 x 100)": (10, 100, True)}


def training_step(
    forward: Callable[[], torch.Tensor], grad: torch.Tensor, leaves: tuple[torch.Tensor, ...]
) -> Callable[[], None]:
    """One forward + backward of ``forward`` against ``grad``, the leaves' gradients cleared first."""

    def step() -> None:
        for leaf in leaves:
            leaf.grad = None
        forward().backward(grad)

    return step


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--densities", nargs="*", type=float, default=[0.01, 0.05, 0.1, 0.2])
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--inner", type=int, default=100)
    args = p.parse_args()
    use_threads(args.threads)
    info = machine()
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
            routes = {
                "dense": partial(F.linear, x, w, b),
                "csr_sampled": partial(SparseLinearFunction.apply, x, w, b, pattern, False),
                "csr_dense_grad": partial(SparseLinearFunction.apply, x, w, b, pattern, True),
            }
            t = {
                route: best_time(training_step(forward, g, (w, b, x)), args.repeats, args.inner, warmup=5) * 1e6
                for route, forward in routes.items()
            }
            rows.append({"layer": name, "density": density, **{f"{k}_us": v for k, v in t.items()}})
            print(
                f"{name} {density:.0%}: dense {t['dense']:.0f} us, CSR {t['csr_sampled']:.0f} us, "
                f"CSR with dense weight grad {t['csr_dense_grad']:.0f} us"
            )
    info["loadavg_at_end"] = os.getloadavg()
    lines = [
        "# One linear layer, forward + backward: dense vs CSR route",
        "",
        f"{machine_sentence(info)}; batch {args.batch}; best of {args.repeats} x {args.inner} calls.",
        "",
        *table(
            ["layer", "density", "dense (us)", "CSR, sampled weight grad (us)", "CSR, dense weight grad (us)"],
            [
                [
                    r["layer"],
                    f"{r['density']:.0%}",
                    f"{r['dense_us']:.0f}",
                    f"{r['csr_sampled_us']:.0f}",
                    f"{r['csr_dense_grad_us']:.0f}",
                ]
                for r in rows
            ],
        ),
    ]
    result = {
        "machine": info["machine"],
        "machine_info": info,
        "threads": args.threads,
        "torch": torch.__version__,
        "batch": args.batch,
        "rows": rows,
    }
    write(args.out, "layers", result, lines)


if __name__ == "__main__":
    main()
