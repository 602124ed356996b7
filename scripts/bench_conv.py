"""Benchmark: can a sparse convolution through PyTorch's kernels beat the dense one on this CPU?

The sparse route is im2col (``F.unfold``) followed by a CSR x dense product, ``W_csr @ cols``
(output channels x C*k*k times C*k*k x B*L), which is the only sparse convolution PyTorch offers
on a CPU. For each layer and density we time, interleaved, best of ``--repeats``:
the dense ``F.conv2d`` forward, the sparse route's forward, and, for the backward pass, the dense
weight gradient against the sampled one (``torch.sparse.sampled_addmm`` on the unfolded input).
Writes ``<out>/conv.{json,md}``; ``execution=sparse`` leaves convolutions dense unless this wins.
"""

from __future__ import annotations

import argparse
import json
import os
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from bench import best_time

from snfs.machine import describe_line, flush_denormals

warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
REPO = Path(__file__).resolve().parents[1]
# name: (batch, in channels, out channels, kernel, input side, padding)
LAYERS = {
    "lenet5_caffe conv2": (100, 20, 50, 5, 12, 0),
    "wrn16_8 block conv (3x3, 128 ch, 32x32)": (32, 128, 128, 3, 32, 1),
    "vgg16 conv (3x3, 512 ch, 4x4)": (32, 512, 512, 3, 4, 1),
}


def best_us(fn, repeats: int, inner: int) -> float:
    return best_time(fn, repeats, inner) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--densities", nargs="*", type=float, default=[0.01, 0.02, 0.05, 0.1])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--inner", type=int, default=5)
    parser.add_argument("--out", default=str(REPO / "results" / "bench"))
    args = parser.parse_args()
    flush_denormals()  # as a training run does, before torch starts its threads
    torch.set_num_threads(args.threads)
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

            def dense_fwd():
                F.conv2d(x, w, padding=pad)

            def sparse_fwd():
                cols = F.unfold(x, k, padding=pad)  # B x C*k*k x L
                cols = cols.transpose(0, 1).reshape(cin * k * k, -1)
                (w_csr @ cols).reshape(cout, batch, -1).transpose(0, 1)

            def dense_wgrad():
                torch.nn.grad.conv2d_weight(x, w.shape, grad_out, padding=pad)

            def sparse_wgrad():
                cols = F.unfold(x, k, padding=pad).transpose(0, 1).reshape(cin * k * k, -1)
                g = grad_out.reshape(batch, cout, -1).transpose(0, 1).reshape(cout, -1)
                torch.sparse.sampled_addmm(w_csr, g, cols.t(), beta=0.0)

            t = {
                f: best_us(fn, args.repeats, args.inner)
                for f, fn in (
                    ("dense_fwd", dense_fwd),
                    ("sparse_fwd", sparse_fwd),
                    ("dense_wgrad", dense_wgrad),
                    ("sparse_wgrad", sparse_wgrad),
                )
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
    info = {
        "machine": describe_line(),
        "threads": args.threads,
        "torch": torch.__version__,
        "loadavg_at_end": os.getloadavg(),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "conv.json").write_text(json.dumps({**info, "rows": rows}, indent=1))
    lines = [
        "# Sparse convolution (unfold + CSR) vs dense convolution",
        "",
        f"Machine: {info['machine']}; torch {info['torch']}; {args.threads} thread(s); load average at the end "
        f"{info['loadavg_at_end'][0]:.2f}. Best of {args.repeats} x {args.inner}, interleaved per density. "
        "Speedup = dense time / sparse time (> 1: the sparse route wins).",
        "",
        "| layer | density | forward dense (us) | forward sparse (us) | speedup | weight grad dense (us) | "
        "weight grad sampled (us) | speedup |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['layer']} | {r['density']:.0%} | {r['dense_fwd_us']:.0f} | {r['sparse_fwd_us']:.0f} | "
            f"{r['fwd_speedup']:.2f} | {r['dense_wgrad_us']:.0f} | {r['sparse_wgrad_us']:.0f} | "
            f"{r['wgrad_speedup']:.2f} |"
        )
    (out / "conv.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
