"""snfs.machine: the machine named from /proc/cpuinfo and torch's build; denormal flushing and its config key."""

from __future__ import annotations

import pytest
import torch
from support import compose_cfg

from snfs import machine
from snfs.errors import ConfigError

X86 = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R)   Platinum 8480+
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512bw avx512_bf16 amx_bf16 amx_tile

processor\t: 1
model name\t: Intel(R) Xeon(R)   Platinum 8480+
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512bw avx512_bf16 amx_bf16 amx_tile
"""
ARM64 = """processor\t: 0
BogoMIPS\t: 2000.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm sve sve2 bf16
CPU implementer\t: 0x41
CPU part\t: 0xd4f
"""


def test_cpu_model_and_vector_extensions_from_cpuinfo():
    assert machine.cpu_model(X86) == "Intel(R) Xeon(R) Platinum 8480+"
    assert machine.vector_extensions(X86) == ["AVX2", "FMA", "AVX-512", "AVX-512-BF16", "AMX", "AMX-BF16"]
    assert machine.vector_extensions(ARM64) == ["NEON", "NEON-FP16", "BF16", "SVE", "SVE2"]
    assert machine.cpu_model(ARM64)  # no model name there: the platform's name, never empty


def test_describe_names_cpu_extensions_threads_and_build():
    info = machine.describe("cpu")
    assert info["threads"] == torch.get_num_threads() and info["cores"] >= 1
    assert info["torch"] == torch.__version__ and info["blas"] and info["onednn"]
    line = machine.describe_line(info=info)
    assert info["cpu"] in line and f"x{info['threads']} threads" in line and info["host"] in line
    assert machine.describe_line(info={**info, "gpu": "Some GPU"}) == f"Some GPU, {info['host']}"


def test_flush_denormals_turns_flushing_on_and_off():
    # one thread: worker threads started by earlier tests keep the setting they were created with
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    before = machine.denormals_flushed()
    try:
        if not machine.flush_denormals(True):
            pytest.skip("this CPU cannot flush denormals")
        assert machine.denormals_flushed()
        tiny = torch.tensor([1e-39])  # itself a denormal: read as 0 while flushing
        assert (tiny * 1.0).item() == 0.0
        machine.flush_denormals(False)
        assert not machine.denormals_flushed()
        assert (tiny * 1.0).item() == pytest.approx(1e-39)
    finally:
        machine.flush_denormals(before)
        torch.set_num_threads(threads)


def test_flush_denormal_key_is_checked_and_not_part_of_the_run_id():
    from snfs.train import make_run_id, validate_config

    with pytest.raises(ConfigError, match="flush_denormal='maybe' is not valid; must be true or false"):
        validate_config(compose_cfg(["flush_denormal=maybe"]))
    assert make_run_id(compose_cfg(["flush_denormal=false"])) == make_run_id(compose_cfg([]))
