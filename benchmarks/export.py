"""Benchmark: an exported sparse model (``snfs.save_sparse``) against the dense one: file size, CPU latency.

For LeNet-300-100 and the 784-4096-4096-10 MLP at 1% and 5% density (static masks, uniform over
layers): bytes of the exported file and of ``torch.save(model.state_dict())``, and the forward
latency at batch 1 and batch 100 of the dense model and of the same model loaded with
``load_sparse(..., sparse_kernels=True)`` (its sparse Linear layers compute with CSR weights).
The weights are those of initialisation: neither size (every active entry is stored) nor latency
depends on their values. Timings: best of ``--repeats`` means of ``--inner`` calls, the two models
interleaved, in one process. Writes ``<out>/export.{json,md}``. Run as ``python -m benchmarks.export``.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from functools import partial
from pathlib import Path

import torch

import snfs
from benchmarks.common import best_time, machine, machine_sentence, parser, table, write
from snfs.models import build_model

warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
MODELS = {"LeNet-300-100": ("lenet300_100", {}), "MLP 784-4096-4096-10": ("mlp", {"hidden": [4096, 4096]})}


def measure(label: str, name: str, options: dict, density: float, args, folder: Path) -> dict:
    torch.manual_seed(0)
    model = build_model(name, 10, **options).eval()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sparse = snfs.sparsify(model, opt, "static", density, epochs=1, steps_per_epoch=1, verbose=False)
    dense_path, sparse_path = folder / "dense.pt", folder / "sparse.pt"
    torch.save(model.state_dict(), dense_path)
    sparse_bytes = sparse.export(sparse_path)
    loaded = build_model(name, 10, **options).eval()
    snfs.load_sparse(loaded, sparse_path, sparse_kernels=True)
    row = {"model": label, "density": density, "dense_bytes": dense_path.stat().st_size, "sparse_bytes": sparse_bytes}
    row["size_ratio"] = row["sparse_bytes"] / row["dense_bytes"]
    for batch in (1, 100):
        x = torch.randn(batch, 1, 28, 28)
        inner = args.inner if batch == 1 else max(1, args.inner // 10)
        best = {"dense": float("inf"), "sparse": float("inf")}
        with torch.no_grad():
            for _ in range(args.repeats):  # interleaved: each repeat times both, so drifts in load hit both
                best["dense"] = min(best["dense"], best_time(partial(model, x), 1, inner, warmup=3))
                best["sparse"] = min(best["sparse"], best_time(partial(loaded, x), 1, inner, warmup=3))
            torch.testing.assert_close(loaded(x), model(x), rtol=1e-4, atol=1e-4)  # a sanity check, not the test
        row[f"dense_us_b{batch}"], row[f"sparse_us_b{batch}"] = best["dense"] * 1e6, best["sparse"] * 1e6
        row[f"speedup_b{batch}"] = best["dense"] / best["sparse"]
    return row


def markdown(result: dict) -> list[str]:
    columns = ["model", "density", "dense file", "sparse file", "size", "batch 1: dense", "sparse", "speedup"]
    rows = [
        [
            r["model"],
            f"{100 * r['density']:g}%",
            f"{r['dense_bytes'] / 1e6:.2f} MB",
            f"{r['sparse_bytes'] / 1e6:.3f} MB",
            f"{100 * r['size_ratio']:.1f}%",
            f"{r['dense_us_b1']:.0f} us",
            f"{r['sparse_us_b1']:.0f} us",
            f"{r['speedup_b1']:.2f}x",
            f"{r['dense_us_b100']:.0f} us",
            f"{r['sparse_us_b100']:.0f} us",
            f"{r['speedup_b100']:.2f}x",
        ]
        for r in result["rows"]
    ]
    return [
        "# Exported sparse models: file size and CPU inference latency",
        "",
        f"`python -m benchmarks.export`. {machine_sentence(result['machine_info'])}. Static masks at "
        f"initialisation; latency = one forward pass, best of {result['repeats']} interleaved means. Sparse: "
        "`snfs.load_sparse(model, path, sparse_kernels=True)`.",
        "",
        *table([*columns, "batch 100: dense", "sparse", "speedup"], rows, right_from=1),
    ]


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--densities", nargs="*", type=float, default=[0.01, 0.05])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--inner", type=int, default=200)
    args = p.parse_args()
    torch.set_num_threads(args.threads)  # denormals as torch leaves them: inference, no training loop
    info = machine()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, (name, options) in MODELS.items():
            for density in args.densities:
                rows.append(measure(label, name, options, density, args, Path(tmp)))
                print(
                    f"{label} at {density:g}: {rows[-1]['size_ratio']:.3f} of the dense file, batch 1 "
                    f"{rows[-1]['speedup_b1']:.2f}x, batch 100 {rows[-1]['speedup_b100']:.2f}x",
                    flush=True,
                )
    info["loadavg_at_end"] = os.getloadavg()
    result = {
        "machine": info["machine"],
        "machine_info": info,
        "threads": args.threads,
        "loadavg_at_start": info["loadavg_at_start"],
        "repeats": args.repeats,
        "rows": rows,
    }
    print(f"wrote {write(args.out, 'export', result, markdown(result), echo=False)}")


if __name__ == "__main__":
    main()
