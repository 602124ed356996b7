"""Benchmark: an exported sparse model (``snfs.save_sparse``) against the dense one: file size and CPU inference latency.

For LeNet-300-100 and the 784-4096-4096-10 MLP at 1% and 5% density (static masks, uniform over
layers): bytes of the exported file and of ``torch.save(model.state_dict())``, and the forward
latency at batch 1 and batch 100 of the dense model and of the same model loaded with
``load_sparse(..., sparse_kernels=True)`` (its sparse Linear layers compute with CSR weights).
The weights are those of initialisation: neither size (every active entry is stored) nor latency
depends on their values. Timings: best of ``--repeats`` means of ``--inner`` calls, the two models
interleaved, in one process. Writes ``<out>/export.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import warnings
from pathlib import Path

import torch
from bench import best_time

import snfs
from snfs.machine import describe, describe_line
from snfs.models import build_model

warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
REPO = Path(__file__).resolve().parents[1]
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
                best["dense"] = min(best["dense"], best_time(lambda: model(x), 1, inner, warmup=3))
                best["sparse"] = min(best["sparse"], best_time(lambda: loaded(x), 1, inner, warmup=3))
            torch.testing.assert_close(loaded(x), model(x), rtol=1e-4, atol=1e-4)  # a sanity check, not the test
        row[f"dense_us_b{batch}"], row[f"sparse_us_b{batch}"] = best["dense"] * 1e6, best["sparse"] * 1e6
        row[f"speedup_b{batch}"] = best["dense"] / best["sparse"]
    return row


def write_markdown(result: dict, path: Path) -> None:
    lines = [
        "# Exported sparse models: file size and CPU inference latency",
        "",
        f"`python scripts/bench_export.py` ({result['machine']}; {result['threads']} thread(s); load average at "
        f"start {result['loadavg_at_start'][0]:.2f}). Static masks at initialisation; latency = one forward pass, best "
        f"of {result['repeats']} interleaved means. Sparse: `snfs.load_sparse(model, path, sparse_kernels=True)`.",
        "",
        "| model | density | dense file | sparse file | size | batch 1: dense | sparse | speedup "
        "| batch 100: dense | sparse | speedup |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['model']} | {100 * r['density']:g}% | {r['dense_bytes'] / 1e6:.2f} MB | "
            f"{r['sparse_bytes'] / 1e6:.3f} MB | {100 * r['size_ratio']:.1f}% | {r['dense_us_b1']:.0f} us | "
            f"{r['sparse_us_b1']:.0f} us | {r['speedup_b1']:.2f}x | {r['dense_us_b100']:.0f} us | "
            f"{r['sparse_us_b100']:.0f} us | {r['speedup_b100']:.2f}x |"
        )
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--densities", nargs="*", type=float, default=[0.01, 0.05])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--inner", type=int, default=200)
    parser.add_argument("--out", default=str(REPO / "results" / "bench"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    loadavg = os.getloadavg()
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
    result = {
        "machine": describe_line(),
        "machine_info": describe(),
        "threads": args.threads,
        "loadavg_at_start": loadavg,
        "repeats": args.repeats,
        "rows": rows,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "export.json").write_text(json.dumps(result, indent=1) + "\n")
    write_markdown(result, out / "export.md")
    print(f"wrote {out / 'export.md'}")


if __name__ == "__main__":
    main()
