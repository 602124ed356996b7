"""The README's worked example (one new algorithm file + one YAML) runs as printed."""

from __future__ import annotations

import re

import yaml
from support import REPO, compose_cfg

from snfs.algorithms import ALGORITHMS
from snfs.train import train


def readme_block(lang: str, first_line: str) -> str:
    text = (REPO / "README.md").read_text()
    for block in re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S):
        if block.startswith(first_line):
            return block
    raise AssertionError(f"README has no {lang} block starting with {first_line!r}")


def test_readme_algorithm_example_trains(quick_overrides):
    code = readme_block("python", "# src/snfs/algorithms/magnitude_random.py")
    sparse_cfg = yaml.safe_load(readme_block("yaml", "# conf/sparse/magnitude_random.yaml"))
    try:
        exec(compile(code, "magnitude_random.py", "exec"), {"__name__": "snfs.algorithms.magnitude_random"})
        overrides = [o for o in quick_overrides] + ["epochs=3", "limit_batches=5"]
        overrides += [
            f"sparse.{k}={v}" if not isinstance(v, list) else f"sparse.{k}=[]"
            for k, v in sparse_cfg.items()
            if k in ("name", "distribution", "dense_layers")
        ]
        overrides.append(f"+sparse.replace_fraction={sparse_cfg['replace_fraction']}")
        result = train(compose_cfg(["sparse=static"] + overrides))
    finally:
        ALGORITHMS._items.pop("magnitude_random", None)
    assert result["algorithm"] == "magnitude_random"
    hist = result["history"]
    assert hist[0]["pruned"] == hist[0]["regrown"] > 0
    assert hist[-1]["pruned"] == 0
    assert abs(result["final_density"] - 0.05) < 1e-3
