"""Sparse momentum on a hand-built two-layer case whose outcome is computed by hand."""

import math

import pytest
import torch
from torch import nn

from snfs.algorithms import build_algorithm
from snfs.algorithms.base import TrainingContext
from snfs.masks import grow_by_score, grow_random, prune_by_score, redistribute

CFG = {
    "name": "momentum",
    "distribution": "uniform",
    "prune_rate": 0.5,
    "prune_rate_min": 0.005,
    "decay": "cosine",
    "redistribution": "momentum",
    "growth": "momentum",
    "dense_layers": [],
}


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 2, bias=True)
        self.b = nn.Linear(4, 1, bias=False)


def hand_built(cfg_overrides=None):
    model = Tiny()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    ctx = TrainingContext(model=model, optimizer=opt, density=0.5, epochs=10, steps_per_epoch=5, seed=0)
    algo = build_algorithm(ctx, {**CFG, **(cfg_overrides or {})})
    algo.init_masks()
    with torch.no_grad():
        model.a.weight.copy_(torch.tensor([[0.9, -0.1, 0.5, 0.0], [0.3, 0.0, -0.7, 0.0]]))
        model.b.weight.copy_(torch.tensor([[0.2, -0.05, 0.0, 0.0]]))
    algo.masks.set("a.weight", torch.tensor([[1, 1, 1, 0], [1, 0, 1, 0]], dtype=torch.bool))
    algo.masks.set("b.weight", torch.tensor([[1, 1, 0, 0]], dtype=torch.bool))
    # mean |m| over active weights: a = (9 + 4 * 0.5) / 5 = 2.2, b = 8
    opt.state[model.a.weight]["momentum_buffer"] = torch.tensor([[9.0, -0.5, 0.5, 3.0], [-0.5, 0.1, 0.5, 0.2]])
    opt.state[model.b.weight]["momentum_buffer"] = torch.tensor([[8.0, -8.0, 0.3, -0.6]])
    algo.step = 0  # prune rate p(0) = 0.5
    return model, opt, algo


def test_hand_built_prune_redistribute_grow():
    model, opt, algo = hand_built()
    stats = algo.update_masks()
    # prune ceil(0.5*5)=3 in a: |-0.1|, |0.3|, |0.5| -> indices (0,1), (1,0), (0,2); ceil(0.5*2)=1 in b: |-0.05|
    assert stats["pruned_per_layer"] == {"a.weight": 3, "b.weight": 1}
    # shares 4 * 2.2/10.2 = 0.86 and 4 * 8/10.2 = 3.14; b has only 3 free slots, so a takes the excess
    assert stats["regrown_per_layer"] == {"a.weight": 1, "b.weight": 3}
    # a grows its largest-|momentum| inactive weight (0,3) = 3.0, never the active (0,0) = 9.0
    assert algo.masks.masks["a.weight"].tolist() == [[True, False, False, True], [False, False, True, False]]
    assert algo.masks.masks["b.weight"].tolist() == [[True, True, True, True]]
    assert algo.masks.total_active() == 7
    # pruned and grown weights are exactly 0; survivors keep their values
    assert torch.equal(model.a.weight.detach(), torch.tensor([[0.9, 0.0, 0.0, 0.0], [0.0, 0.0, -0.7, 0.0]]))
    assert model.b.weight[0, 1].item() == 0.0 and model.b.weight[0, 0].item() == pytest.approx(0.2)


def test_redistribution_none_regrows_in_place():
    _, _, algo = hand_built({"redistribution": "none"})
    stats = algo.update_masks()
    assert stats["regrown_per_layer"] == stats["pruned_per_layer"] == {"a.weight": 3, "b.weight": 1}


def test_redistribution_nonzero_and_magnitude_use_their_scores():
    _, _, algo = hand_built({"redistribution": "nonzero"})
    assert algo.layer_scores() == pytest.approx({"a.weight": 5 / 7, "b.weight": 2 / 7})
    _, _, algo = hand_built({"redistribution": "magnitude"})
    a = (0.9 + 0.1 + 0.5 + 0.3 + 0.7) / 5
    b = (0.2 + 0.05) / 2
    assert algo.layer_scores() == pytest.approx({"a.weight": a / (a + b), "b.weight": b / (a + b)})


def test_random_growth_keeps_exact_count():
    _, _, algo = hand_built({"growth": "random"})
    algo.update_masks()
    assert algo.masks.total_active() == 7


def test_redistribute_passes_excess_on():
    # a is capped at 2; the remaining 8 split 3:2 between b and c -> 4.8, 3.2 -> 5, 3
    assert redistribute(10, {"a": 0.5, "b": 0.3, "c": 0.2}, {"a": 2, "b": 100, "c": 100}) == {"a": 2, "b": 5, "c": 3}


def test_redistribute_cascading_caps_and_zero_scores():
    shares = redistribute(9, {"a": 0.7, "b": 0.3, "c": 0.0}, {"a": 1, "b": 2, "c": 10})
    assert shares == {"a": 1, "b": 2, "c": 6}
    with pytest.raises(ValueError):
        redistribute(5, {"a": 1.0}, {"a": 4})


def test_prune_and_grow_primitives():
    w = torch.tensor([0.5, -0.1, 0.0, 2.0, -3.0])
    m = torch.tensor([1, 1, 0, 1, 1], dtype=torch.bool)
    assert prune_by_score(w.abs(), m, 2).tolist() == [False, False, False, True, True]
    score = torch.tensor([100.0, 1.0, 2.0, 3.0, 0.5])
    assert grow_by_score(score, m, 1).tolist() == [True, True, True, True, True]
    g = torch.Generator().manual_seed(0)
    grown = grow_random(torch.zeros(10, dtype=torch.bool), 4, g)
    assert int(grown.sum()) == 4


def test_no_update_after_last_epoch():
    _, _, algo = hand_built()
    assert algo.on_epoch_end(9) is None
    assert algo.on_epoch_end(8) is not None


def test_prune_rate_follows_the_step_counter():
    _, _, algo = hand_built()
    algo.step = 25  # half of 10 epochs x 5 steps
    assert algo.current_prune_rate() == pytest.approx((0.5 + 0.005) / 2)
    assert math.isclose(algo.log_stats()["prune_rate"], algo.current_prune_rate())
