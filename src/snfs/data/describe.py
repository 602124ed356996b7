"""``python -m snfs.data.describe conf/dataset/<name>.yaml <data.root>``: the numbers a new idx dataset YAML needs.

Prints the md5 of each declared file (as found, nothing is checked) and the pixel mean/std of the
training images, as YAML lines to paste into the dataset's file.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from snfs.data import DatasetError
from snfs.data.idx import IdxSpec, load_idx
from snfs.errors import ConfigError


def describe(cfg: Mapping[str, Any], data_root: str | Path) -> str:
    """The md5 of each file and the training images' pixel mean/std, as YAML lines for a new dataset."""
    spec = IdxSpec.from_cfg(cfg)
    arrays, md5 = load_idx(spec, data_root, download=False, verify=False)
    assert md5 is not None
    lines = ["files:"] + [f"  {role}: {{file: {file}, md5: {md5[file]}}}" for role, (file, _) in spec.files.items()]
    images = arrays["train_images"]
    if images.dtype == np.uint8:  # exact, from the 256-bin histogram (no float copy of the images)
        counts = np.bincount(images.reshape(-1), minlength=256).astype(np.float64)
        levels = np.arange(256, dtype=np.float64) / 255.0
        mean = float((counts * levels).sum() / counts.sum())
        std = float(math.sqrt((counts * (levels - mean) ** 2).sum() / counts.sum()))
    else:
        pixels = images.astype(np.float64) / 255.0
        mean, std = float(pixels.mean()), float(pixels.std())
    lines += [
        f"mean: [{mean:.4f}]            # all {len(images)} training images, pixels scaled to [0, 1]",
        f"std: [{std:.4f}]",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m snfs.data.describe conf/dataset/<name>.yaml <data.root>", file=sys.stderr)
        return 2
    from omegaconf import OmegaConf

    from snfs.config import plain

    try:
        print(describe(plain(OmegaConf.load(args[0]), resolve=False), args[1]))
    except (DatasetError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
