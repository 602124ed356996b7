import math

import pytest
import torch
from torch import nn

from snfs.errors import CheckpointError, ConfigError
from snfs.masks import (
    LayerChange,
    MaskState,
    drop_and_grow,
    drop_smallest,
    erdos_renyi_counts,
    grow_by_score,
    grow_random,
    init_masks,
    largest_remainder,
    prune_by_score,
    redistribute,
    reset_new_weights,
    round_stats,
    sparse_parameters,
    uniform_counts,
)
from snfs.models import build_model


def test_sparse_parameters_are_conv_and_linear_weights_only():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
    assert list(sparse_parameters(model)) == ["0.weight", "3.weight"]
    assert list(sparse_parameters(model, dense_layers=["0.weight"])) == ["3.weight"]


def test_dense_layers_are_matched_exactly_not_by_prefix():
    model = nn.Sequential(*[nn.Linear(2, 2) for _ in range(12)])
    names = sparse_parameters(model, dense_layers=["1.weight"])
    assert "10.weight" in names and "11.weight" in names and "1.weight" not in names


def test_unknown_dense_layer_is_a_config_error():
    with pytest.raises(ConfigError, match="dense_layers"):
        sparse_parameters(nn.Linear(2, 2), dense_layers=["nope.weight"])


def test_uniform_counts_are_exact_per_layer():
    shapes = {"a": torch.Size([300, 784]), "b": torch.Size([100, 300]), "c": torch.Size([10, 100])}
    counts = uniform_counts(shapes, 0.05)
    assert counts == {"a": round(0.05 * 235200), "b": round(0.05 * 30000), "c": round(0.05 * 1000)}


@pytest.mark.parametrize("density", [0.01, 0.05, 0.2, 0.5, 0.9])
def test_erk_total_is_exact_and_layers_capped(density):
    model = build_model("lenet5_caffe", 10)
    shapes = {k: p.shape for k, p in sparse_parameters(model).items()}
    counts = erdos_renyi_counts(shapes, density, kernel=True)
    total = sum(math.prod(s) for s in shapes.values())
    assert sum(counts.values()) == round(density * total)
    for k, n in counts.items():
        assert 0 <= n <= math.prod(shapes[k])


def test_erk_gives_small_layers_higher_density():
    shapes = {"big": torch.Size([500, 800]), "small": torch.Size([10, 500])}
    counts = erdos_renyi_counts(shapes, 0.05)
    assert counts["small"] / 5000 > counts["big"] / 400000


def test_erk_makes_overfull_layers_dense_and_resolves():
    shapes = {"tiny": torch.Size([2, 2]), "big": torch.Size([1000, 1000])}
    counts = erdos_renyi_counts(shapes, 0.5)
    assert counts["tiny"] == 4
    assert sum(counts.values()) == round(0.5 * 1_000_004)


def test_init_masks_exact_counts_and_state_roundtrip():
    model = build_model("lenet300_100", 10)
    params = sparse_parameters(model)
    g = torch.Generator().manual_seed(0)
    ms = init_masks(params, 0.05, "uniform", g)
    assert ms.active_counts() == uniform_counts({k: p.shape for k, p in params.items()}, 0.05)
    saved = ms.state_dict()
    other = init_masks(params, 0.05, "uniform", torch.Generator().manual_seed(1))
    assert any(not torch.equal(other.masks[k], saved[k]) for k in saved)
    other.load_state_dict(saved)
    assert all(torch.equal(other.masks[k], saved[k]) for k in saved)


def test_apply_zeroes_exactly_the_inactive_weights():
    lin = nn.Linear(4, 3)
    params = {"weight": lin.weight}
    mask = torch.tensor([[1, 0, 0, 1], [0, 1, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    before = lin.weight.detach().clone()
    MaskState({"weight": mask}).apply(params)
    assert torch.equal(lin.weight[~mask], torch.zeros(int((~mask).sum())))
    assert torch.equal(lin.weight[mask], before[mask])


def test_load_state_dict_rejects_other_layers():
    ms = MaskState({"a": torch.ones(2, 2, dtype=torch.bool)})
    with pytest.raises(CheckpointError):
        ms.load_state_dict({"b": torch.ones(2, 2, dtype=torch.bool)})
    with pytest.raises(CheckpointError):
        ms.load_state_dict({"a": torch.ones(3, 2, dtype=torch.bool)})


def test_bad_distribution_names_choices():
    with pytest.raises(ConfigError, match="uniform"):
        init_masks({"w": torch.zeros(2, 2)}, 0.5, "gaussian", torch.Generator())


# --- drop and grow operations ------------------------------------------------------------------


def test_largest_remainder_exact_total_within_caps():
    # a wants 7.6 but holds 3: its excess goes to the next largest remainders, the total stays exact
    counts = largest_remainder(10, {"a": 7.6, "b": 1.3, "c": 1.1}, {"a": 3, "b": 100, "c": 100})
    assert counts["a"] == 3 and sum(counts.values()) == 10
    assert all(counts[k] <= cap for k, cap in {"a": 3, "b": 100, "c": 100}.items())
    with pytest.raises(ValueError, match="full"):
        largest_remainder(10, {"a": 5.0, "b": 5.0}, {"a": 4, "b": 5})


def test_largest_remainder_ties_go_in_quota_order_and_a_hair_below_an_integer_is_that_integer():
    assert largest_remainder(2, {"a": 0.5, "b": 0.5, "c": 0.5, "d": 0.5}, dict.fromkeys("abcd", 9)) == {
        "a": 1,
        "b": 1,
        "c": 0,
        "d": 0,
    }
    # a share of 3 computed in floating point as 2.9999999999 is 3; the unit left goes to b's 0.6
    assert largest_remainder(4, {"a": 3 - 1e-10, "b": 0.6, "c": 0.4}, dict.fromkeys("abc", 9)) == {
        "a": 3,
        "b": 1,
        "c": 0,
    }


@pytest.mark.parametrize("seed", range(20))
def test_redistribute_exact_total_capped_and_proportional_elsewhere(seed):
    g = torch.Generator().manual_seed(seed)
    names = [f"l{i}" for i in range(6)]
    capacity = {k: int(c) for k, c in zip(names, torch.randint(0, 60, (6,), generator=g))}
    scores = {k: float(s) for k, s in zip(names, torch.rand(6, generator=g))}
    scores[names[0]] = 0.0
    total = int(torch.randint(0, sum(capacity.values()) + 1, (1,), generator=g))
    counts = redistribute(total, scores, capacity)
    assert sum(counts.values()) == total
    assert all(0 <= counts[k] <= capacity[k] for k in names)
    # layers below their cap share the rest by score, to within one weight of rounding
    open_ = [k for k in names if counts[k] < capacity[k] and scores[k] > 0]
    if len(open_) > 1:
        per_score = [counts[k] / scores[k] for k in open_]
        assert max(per_score) - min(per_score) <= 2 / min(scores[k] for k in open_)


def test_redistribute_without_positive_scores_fills_by_free_slots_and_refuses_too_many():
    assert redistribute(6, {"a": 0.0, "b": 0.0}, {"a": 2, "b": 4}) == {"a": 2, "b": 4}
    with pytest.raises(ValueError, match="free slots"):
        redistribute(7, {"a": 1.0, "b": 1.0}, {"a": 2, "b": 4})


def test_prune_by_score_removes_the_smallest_active_and_never_an_inactive():
    score = torch.tensor([0.0, 0.3, 0.1, 0.2, 0.0])
    mask = torch.tensor([False, True, True, True, False])
    assert prune_by_score(score, mask, 2).tolist() == [False, True, False, False, False]
    assert prune_by_score(score, mask, 0).tolist() == mask.tolist()
    assert not prune_by_score(score, mask, 3).any()
    with pytest.raises(ValueError, match="3 active"):
        prune_by_score(score, mask, 4)


def test_prune_and_grow_with_ties_take_exactly_n_of_the_tied():
    score = torch.tensor([1.0, 1.0, 1.0, 1.0, 5.0, 1.0])
    mask = torch.tensor([True, True, True, True, True, False])
    kept = prune_by_score(score, mask, 2)
    assert int(kept.sum()) == 3 and kept[4] and not kept[5]  # two of the tied 1.0s go, the 5.0 stays
    grown = grow_by_score(torch.ones(6), kept, 2)
    assert int(grown.sum()) == 5 and bool((grown & kept).eq(kept).all())


def test_scores_that_tie_with_the_excluded_positions_still_pick_candidates_only():
    # an active weight scored +inf ties with the inactive ones, which prune scores +inf to exclude them
    mask = torch.tensor([True, True, False, False])
    assert not prune_by_score(torch.tensor([float("inf"), 1.0, 0.0, 0.0]), mask, 2).any()
    # inactive positions scored -inf tie with the active ones, which grow scores -inf to exclude them
    grown = grow_by_score(torch.tensor([-float("inf"), -float("inf"), 9.0, 9.0]), ~mask, 2)
    assert grown.all()


def test_grow_by_score_activates_the_largest_inactive_only():
    mask = torch.tensor([[True, False], [False, False]])
    score = torch.tensor([[100.0, 1.0], [3.0, 2.0]])
    assert grow_by_score(score, mask, 2).tolist() == [[True, False], [True, True]]
    with pytest.raises(ValueError, match="3 inactive"):
        grow_by_score(score, mask, 4)


def test_grow_random_exact_count_new_positions_only_and_seeded():
    mask = torch.zeros(50, dtype=torch.bool)
    mask[:10] = True
    a = grow_random(mask, 15, torch.Generator().manual_seed(3))
    b = grow_random(mask, 15, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and int(a.sum()) == 25 and bool(a[:10].all())
    assert int(grow_random(mask, 40, torch.Generator()).sum()) == 50
    with pytest.raises(ValueError, match="40 inactive"):
        grow_random(mask, 41, torch.Generator())


def test_reset_new_weights_zeroes_weights_and_momentum_of_new_positions_only():
    layer = nn.Linear(6, 1, bias=False)
    opt = torch.optim.SGD(layer.parameters(), lr=0.1, momentum=0.9)
    weight = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]])
    momentum = torch.tensor([[10.0, 20.0, 30.0, 40.0, 50.0, 60.0]])
    with torch.no_grad():
        layer.weight.copy_(weight)
    opt.state[layer.weight]["momentum_buffer"] = momentum.clone()
    old = torch.tensor([[True, True, True, False, False, False]])
    kept = torch.tensor([[True, False, False, False, False, False]])  # 1 and 2 dropped
    new = torch.tensor([[True, False, True, True, False, False]])  # 2 regrown in the same round, 3 newly grown
    stats = reset_new_weights(layer.weight, old, kept, new, opt)
    assert stats == {"pruned": 2, "regrown": 2}
    # kept weight and its momentum untouched; dropped (1) and outside (4, 5) weights 0; grown (2, 3) at 0
    assert layer.weight.tolist() == [[1.0, 0.0, 0.0, 0.0, 0.0, 0.0]]
    # momentum reset only where grown: the dropped and the still inactive keep theirs
    assert opt.state[layer.weight]["momentum_buffer"].tolist() == [[10.0, 20.0, 0.0, 0.0, 50.0, 60.0]]


def test_reset_new_weights_given_values_and_without_momentum_state():
    layer = nn.Linear(4, 1, bias=False)
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)  # no momentum buffer exists
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 2.0, 3.0, 4.0]]))
    kept = torch.tensor([[True, False, False, False]])
    new = torch.tensor([[True, False, True, True]])
    stats = reset_new_weights(layer.weight, kept, kept, new, opt, new_values=lambda n: torch.full((n,), 7.0))
    assert stats == {"pruned": 0, "regrown": 2}
    assert layer.weight.tolist() == [[1.0, 0.0, 7.0, 7.0]]


def test_round_stats_totals_and_per_layer():
    stats = round_stats({"a": {"pruned": 3, "regrown": 1}, "b": {"pruned": 1, "regrown": 3}}, prune_rate=0.5)
    assert stats == {
        "prune_rate": 0.5,
        "pruned": 4,
        "regrown": 4,
        "pruned_per_layer": {"a": 3, "b": 1},
        "regrown_per_layer": {"a": 1, "b": 3},
    }


def two_layer_round():
    """Two 1x6 layers with weights 1..6 and momentum 10..60, the first four positions active."""
    model = nn.Sequential(nn.Linear(6, 1, bias=False), nn.Linear(6, 1, bias=False))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    params = {"0.weight": model[0].weight, "1.weight": model[1].weight}
    for p in params.values():
        with torch.no_grad():
            p.copy_(torch.tensor([[1.0, 2.0, 3.0, 4.0, 0.0, 0.0]]))
        opt.state[p]["momentum_buffer"] = torch.tensor([[10.0, 20.0, 30.0, 40.0, 50.0, 60.0]])
    masks = MaskState({k: torch.tensor([[True, True, True, True, False, False]]) for k in params})
    return opt, params, masks


def test_drop_and_grow_by_score_resets_new_weights_and_reports_each_layer():
    opt, params, masks = two_layer_round()
    kept = drop_smallest(masks, {k: p.detach().abs() for k, p in params.items()}, {"0.weight": 2, "1.weight": 1})
    # growth scores favour position 0 (just dropped in layer 0) and 5
    scores = {k: torch.tensor([[9.0, 0.0, 0.0, 0.0, 1.0, 5.0]]) for k in params}
    result = drop_and_grow(masks, params, opt, kept, {"0.weight": 2, "1.weight": 1}, grow_scores=scores, rate=0.5)
    assert result.layers == {"0.weight": LayerChange(pruned=2, regrown=2), "1.weight": LayerChange(pruned=1, regrown=1)}
    assert masks.masks["0.weight"].tolist() == [[True, False, True, True, False, True]]
    assert masks.masks["1.weight"].tolist() == [[True, True, True, True, False, False]]
    # a weight dropped and grown again restarts at 0 with its momentum reset, like any new weight
    assert params["0.weight"].tolist() == [[0.0, 0.0, 3.0, 4.0, 0.0, 0.0]]
    assert opt.state[params["0.weight"]]["momentum_buffer"].tolist() == [[0.0, 20.0, 30.0, 40.0, 50.0, 0.0]]
    per_layer = {"0.weight": 2, "1.weight": 1}
    assert result.as_stats() == {
        "rate": 0.5,
        "pruned": 3,
        "regrown": 3,
        "pruned_per_layer": per_layer,
        "regrown_per_layer": per_layer,
    }


def test_drop_and_grow_at_random_can_keep_optimizer_state_and_set_new_values():
    opt, params, masks = two_layer_round()
    kept = drop_smallest(masks, {k: p.detach().abs() for k, p in params.items()}, {"0.weight": 1, "1.weight": 0})
    result = drop_and_grow(
        masks,
        params,
        opt,
        kept,
        {"0.weight": 2, "1.weight": 0},
        generator=torch.Generator(),
        new_values=lambda name, n: torch.full((n,), 7.0),
        reset_optimizer_state=False,
    )
    assert (result.pruned, result.regrown) == (1, 2)
    grown = masks.masks["0.weight"] & ~kept["0.weight"]
    assert int(grown.sum()) == 2 and params["0.weight"].detach()[grown].tolist() == [7.0, 7.0]
    assert opt.state[params["0.weight"]]["momentum_buffer"].tolist() == [[10.0, 20.0, 30.0, 40.0, 50.0, 60.0]]
    with pytest.raises(ValueError, match="generator"):
        drop_and_grow(masks, params, opt, kept, {"0.weight": 0, "1.weight": 0})
