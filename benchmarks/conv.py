"""Benchmark: can a sparse convolution through PyTorch's kernels beat the dense one on this CPU?

The sparse route is im2col (``F.unfold``) followed by a CSR x dense product, ``W_csr @ cols``
(output channels x C*k*k times C*k*k x B*L), which is the only sparse convolution PyTorch offers
on a CPU. For each layer and density we time, interleaved, best of ``--repeats``:
the dense ``F.conv2d`` forward, the sparse route's forward, and, for the backward pass, the dense
weight gradient against the sampled one (``torch.sparse.sampled_addmm`` on the unfolded input).
Writes ``<out>/conv.{json,md}``; ``execution=sparse`` leaves convolutions dense unless this wins.
Run as ``python -m benchmarks.conv``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.nn.grad import conv2d_weight

from benchmarks.common import best_time, machine, machine_sentence, parser, table, use_threads, write

warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
# name: (batch, in channels, out channels, kernel, input side, padding)
LAYERS = {
    "lenet5_caffe conv2": (100, 20, 50, 5, 12, 0),
    "wrn16_8 block conv (3x3, 128 ch, 32x32)": (32, 128, 128, 3, 32, 1),
    "vgg16 conv (3x3, 512 ch, 4x4)": (32, 512, 512, 3, 4, 1),
}


def routes(
    x: torch.Tensor, w: torch.Tensor, w_csr: torch.Tensor, grad_out: torch.Tensor, pad: int
) -> dict[str, Callable[[], object]]:
    """What is timed for one layer and density: dense and sparse forward, dense and sampled weight gradient."""
    batch, cin = x.shape[:2]
    cout, _, k, _ = w.shape

    def columns() -> torch.Tensor:  # B x C*k*k x L  ->  C*k*k x B*L
        return F.unfold(x, k, padding=pad).transpose(0, 1).reshape(cin * k * k, -1)

    def sparse_fwd() -> torch.Tensor:
        return (w_csr @ columns()).reshape(cout, batch, -1).transpose(0, 1)

    def sparse_wgrad() -> torch.Tensor:
        g = grad_out.reshape(batch, cout, -1).transpose(0, 1).reshape(cout, -1)
        return torch.sparse.sampled_addmm(w_csr, g, columns().t(), beta=0.0)

    return {
        "dense_fwd": lambda: F.conv2d(x, w, padding=pad),
        "sparse_fwd": sparse_fwd,
        "dense_wgrad": lambda: conv2d_weight(x, w.shape, grad_out, padding=pad),
        "sparse_wgrad": sparse_wgrad,
    }


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--densities", nargs="*", type=float, default=[0.01, 0.02, 0.05, 0.1])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--inner", type=int, default=5)
    args = p.parse_args()
    use_threads(args.threads)
    info = machine()
    torch.manual_seed(0)
    rows = []
    for name, (batch, cin, cout, k, side, pad) in LAYERS.items():
        x = torch.randn(batch, cin, side, side)
        w = torch.randn(cout, cin, k, k)
        out_side = side + 2 * pad - k + 1
        grad_out = torch.randn(batch, cout, out_side, out_side)
        for density in args.densities:
            mask = torch.rand(cout, cin * k * k) < density
            w_csr = (w.reshape(cout, -1) * mask).to_sparse_csr()
            t = {
                f: best_time(fn, args.repeats, args.inner) * 1e6 for f, fn in routes(x, w, w_csr, grad_out, pad).items()
            }
            rows.append(
                {
                    "layer": name,
                    "density": density,
                    **{f"{k_}_us": v for k_, v in t.items()},
                    "fwd_speedup": t["dense_fwd"] / t["sparse_fwd"],
                    "wgrad_speedup": t["dense_wgrad"] / t["sparse_wgrad"],
                }
            )
            print(
                f"{name} d={density:g}: fwd dense {t['dense_fwd']:.0f} us, sparse {t['sparse_fwd']:.0f} us; "
                f"weight grad dense {t['dense_wgrad']:.0f} us, sampled {t['sparse_wgrad']:.0f} us"
            )
    info["loadavg_at_end"] = os.getloadavg()
    columns = ["layer", "density", "forward dense (us)", "forward sparse (us)", "speedup", "weight grad dense (us)"]
    lines = [
        "# Sparse convolution (unfold + CSR) vs dense convolution",
        "",
        f"{machine_sentence(info)}. Best of {args.repeats} x {args.inner}, interleaved per density. "
        "Speedup = dense time / sparse time (> 1: the sparse route wins).",
        "",
        *table(
            [*columns, "weight grad sampled (us)", "speedup"],
            [
                [
                    r["layer"],
                    f"{r['density']:.0%}",
                    f"{r['dense_fwd_us']:.0f}",
                    f"{r['sparse_fwd_us']:.0f}",
                    f"{r['fwd_speedup']:.2f}",
                    f"{r['dense_wgrad_us']:.0f}",
                    f"{r['sparse_wgrad_us']:.0f}",
                    f"{r['wgrad_speedup']:.2f}",
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
        "loadavg_at_end": info["loadavg_at_end"],
        "rows": rows,
    }
    write(args.out, "conv", result, lines)


if __name__ == "__main__":
    main()
