"""The training protocol's contracts that a run's numbers silently depend on.

Each test here once let an injected bug through the fast tier:
  * the ERK and Erdos-Renyi initial distributions giving the same masks on a conv net;
  * the epoch's validation measured after the epoch-end mask update (on a network that was never trained);
  * the global torch RNG (dropout) not restored on resume, so a resumed run drifts from an uninterrupted one.
"""

from __future__ import annotations

import math

import pytest
import torch
from support import compose_cfg
from support.protocol import FAKE

from snfs.masks import init_masks, sparse_parameters
from snfs.models import build_model
from snfs.train import Trainer

# --- initial distributions: ERK vs Erdos-Renyi -----------------------------------------------------


def raw_density(shape: torch.Size, kernel: bool) -> float:
    """The (ER)K law, written out here on its own: (sum of dims) / (product of dims); ER uses only (out, in)."""
    dims = list(shape) if kernel else list(shape[:2])
    return sum(dims) / math.prod(dims)


def masks_of(model: torch.nn.Module, distribution: str, density: float) -> dict[str, torch.Tensor]:
    params = sparse_parameters(model)
    return init_masks(params, density, distribution, torch.Generator().manual_seed(0)).masks


@pytest.mark.parametrize("distribution,kernel", [("erk", True), ("erdos_renyi", False)])
def test_erk_and_erdos_renyi_follow_their_own_law_on_a_conv_net(distribution, kernel):
    """Every layer that is not full gets density eps * raw(shape) with one eps for the whole net."""
    model = build_model("lenet5_caffe", 10)
    masks = masks_of(model, distribution, 0.05)
    total = sum(m.numel() for m in masks.values())
    assert sum(int(m.sum()) for m in masks.values()) == round(0.05 * total)
    partial = {k: m for k, m in masks.items() if not m.all()}
    assert len(partial) >= 2, list(partial)  # the law is only tested between layers that are not full
    # one eps for the layers that are not full: their counts are the quotas eps * raw * numel, rounded up or down
    weight = sum(raw_density(m.shape, kernel) * m.numel() for m in partial.values())
    eps = sum(int(m.sum()) for m in partial.values()) / weight
    for k, m in partial.items():
        quota = eps * raw_density(m.shape, kernel) * m.numel()
        assert abs(int(m.sum()) - quota) < 1.0, f"{distribution}: {k} has {int(m.sum())} weights, law: {quota:.1f}"


def test_erk_and_erdos_renyi_differ_on_convs_and_coincide_on_an_mlp():
    conv = build_model("lenet5_caffe", 10)
    erk, er = masks_of(conv, "erk", 0.05), masks_of(conv, "erdos_renyi", 0.05)
    for k in ("conv1.weight", "conv2.weight"):
        # ER ignores the 5x5 kernel, so it gives the first conv (1 input channel) far more weights than ERK
        assert int(erk[k].sum()) != int(er[k].sum()), f"{k}: ERK and Erdos-Renyi give the same count"
    assert int(er["conv1.weight"].sum()) > int(erk["conv1.weight"].sum())
    mlp = build_model("lenet300_100", 10)  # no kernel dimensions: the two are the same distribution
    erk, er = masks_of(mlp, "erk", 0.05), masks_of(mlp, "erdos_renyi", 0.05)
    assert all(torch.equal(erk[k], er[k]) for k in erk)
    uniform = masks_of(mlp, "uniform", 0.05)
    assert int(erk["fc3.weight"].sum()) > int(uniform["fc3.weight"].sum())  # and not uniform: the small layer is denser


def test_the_distribution_option_reaches_the_masks_of_a_run(tmp_path):
    """sparse.distribution through the config and the algorithm, not only init_masks called directly."""
    counts = {}
    for distribution in ("erk", "erdos_renyi"):
        cfg = compose_cfg(
            FAKE
            + ["model=lenet5_caffe", "sparse=static", f"sparse.distribution={distribution}", f"results_dir={tmp_path}"]
        )
        trainer = Trainer(cfg)
        counts[distribution] = trainer.algo.masks.active_counts()
        params = dict(trainer.model.named_parameters())
        assert all(bool((params[k].detach()[~m] == 0).all()) for k, m in trainer.algo.masks.masks.items())
    assert counts["erk"] != counts["erdos_renyi"]
    assert counts["erk"] == {k: int(m.sum()) for k, m in masks_of(build_model("lenet5_caffe", 10), "erk", 0.05).items()}
