"""The machine a run or a benchmark ran on, and the one CPU setting every run shares (denormal flushing).

Timings, and the last bits of float results, depend on the CPU: its model, its vector extensions
(AVX2, AVX-512, AMX on x86; NEON/ASIMD, SVE on arm64), the BLAS and oneDNN builds torch uses, and
the thread count. ``describe`` gathers them for run records and benchmark files; ``describe_line``
is the one-line form that the run records' ``machine`` field holds (the tables compare epoch times
only between runs whose ``machine`` is the same).

``flush_denormals`` is the ``flush_denormal`` key: see its docstring and docs/findings/denormals.md.
"""

from __future__ import annotations

import platform
import re
import resource
import sys
from pathlib import Path

import torch

from snfs.threads import usable_cores

# /proc/cpuinfo flag -> the name we print, in the order we print them
VECTOR_EXTENSIONS = (
    ("avx2", "AVX2"),
    ("fma", "FMA"),
    ("avx512f", "AVX-512"),
    ("avx512_bf16", "AVX-512-BF16"),
    ("avx512_fp16", "AVX-512-FP16"),
    ("avx512_vnni", "AVX-512-VNNI"),
    ("amx_tile", "AMX"),
    ("amx_bf16", "AMX-BF16"),
    ("amx_fp16", "AMX-FP16"),
    ("asimd", "NEON"),
    ("asimdhp", "NEON-FP16"),
    ("bf16", "BF16"),
    ("sve", "SVE"),
    ("sve2", "SVE2"),
    ("sme", "SME"),
)
CPUINFO = Path("/proc/cpuinfo")


def _cpuinfo_fields(text: str | None = None) -> dict[str, str]:
    """The first value of each ``key : value`` line of /proc/cpuinfo (the first CPU's)."""
    if text is None:
        try:
            text = CPUINFO.read_text()
        except OSError:
            return {}
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), value.strip())
    return fields


def cpu_model(cpuinfo: str | None = None) -> str:
    """The CPU's marketing name (x86 ``model name``; arm64 has none in /proc/cpuinfo, so lscpu's or the platform's)."""
    fields = _cpuinfo_fields(cpuinfo)
    for key in ("model name", "hardware", "cpu model"):
        if fields.get(key):
            return re.sub(r"\s+", " ", fields[key])
    if cpuinfo is None:
        import shutil
        import subprocess

        if shutil.which("lscpu"):
            try:
                out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=5).stdout
                match = re.search(r"^Model name:\s*(.+)$", out, re.MULTILINE)
                if match:
                    return match.group(1).strip()
            except (OSError, subprocess.SubprocessError):
                pass
    return platform.processor() or platform.machine() or "unknown CPU"


def vector_extensions(cpuinfo: str | None = None) -> list[str]:
    """The vector extensions of interest that the CPU reports (x86 ``flags``, arm64 ``Features``)."""
    fields = _cpuinfo_fields(cpuinfo)
    flags = set((fields.get("flags") or fields.get("features") or "").split())
    return [name for flag, name in VECTOR_EXTENSIONS if flag in flags]


def torch_build() -> dict:
    """torch's version, BLAS, oneDNN and the vector code path its CPU kernels chose."""
    config = torch.__config__.show()
    blas = re.search(r"BLAS_INFO=([^,\s]+)", config)
    onednn = re.search(r"(?:MKL-DNN|oneDNN) (v[\d.]+)", config)
    capability = getattr(getattr(torch.backends, "cpu", None), "get_cpu_capability", lambda: None)()
    return {
        "torch": torch.__version__,
        "blas": blas.group(1) if blas else "unknown",
        "onednn": onednn.group(1) if onednn and torch.backends.mkldnn.is_available() else "none",
        "cpu_capability": capability,
    }


def describe(device: torch.device | str | None = None) -> dict:
    """Everything a timing or a float result depends on, for run records and benchmark files."""
    device = torch.device(device or "cpu")
    info = {
        "cpu": cpu_model(),
        "vector_extensions": vector_extensions(),
        "arch": platform.machine(),
        "cores": usable_cores(),
        "threads": torch.get_num_threads(),
        **torch_build(),
        "flush_denormal": denormals_flushed(),
        "host": platform.node(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def describe_line(device: torch.device | str | None = None, info: dict | None = None) -> str:
    """One line: GPU and host, or CPU model (vector extensions), threads, BLAS/oneDNN and host."""
    info = info or describe(device)
    if info.get("gpu"):
        return f"{info['gpu']}, {info['host']}"
    extensions = ", ".join(info["vector_extensions"]) or "no AVX2/AVX-512/AMX/NEON"
    return (
        f"{info['cpu']} ({extensions}) x{info['threads']} threads of {info['cores']} cores, "
        f"{info['blas']}/oneDNN {info['onednn']}, {info['host']}"
    )


def flush_denormals(enabled: bool = True) -> bool:
    """Have this process's CPU arithmetic treat floats below 1.2e-38 as 0 (FTZ/DAZ on x86, FZ on arm64).

    Without it, an SGD momentum buffer whose gradient stays zero (weights fed by MNIST's blank
    border pixels) decays by 0.9 each step into the denormal range, where x86 arithmetic is far
    slower (docs/findings/denormals.md: what it cost the 100-epoch LeNet-300-100 run). A value
    that small is below the rounding of any weight, so results change by less than float rounding.
    Call it before torch starts its worker threads (the trainer does so first thing): threads copy
    the setting when they are created. Returns whether the CPU supports it.
    """
    return bool(torch.set_flush_denormal(bool(enabled)))


def denormals_flushed() -> bool:
    """Whether every thread of torch's CPU pool flushes denormals now.

    A product below 2^-126, over enough elements that torch splits it between its threads: a thread
    that started before ``flush_denormals`` keeps the old setting and leaves its share denormal.
    """
    tiny = torch.full((1 << 20,), 2.0**-120, dtype=torch.float32)
    return not bool(torch.count_nonzero(tiny * 2.0**-10))


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB (``ru_maxrss``; the run record's ``peak_rss_mb``)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux
