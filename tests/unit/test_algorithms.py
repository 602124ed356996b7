"""The comparison algorithms (SET, DSR, DeepR, SNIP, RigL) on small hand-built cases."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from support import CONF
from torch import nn

from snfs.algorithms import ALGORITHMS, build_algorithm
from snfs.algorithms.base import TrainingContext
from snfs.algorithms.deepr import sample_indices
from snfs.algorithms.dsr import threshold_update
from snfs.algorithms.rigl import drop_fraction
from snfs.algorithms.set import prune_set
from snfs.algorithms.snip import snip_masks
from snfs.errors import ConfigError


def yaml_cfg(name: str, **overrides) -> dict:
    cfg = OmegaConf.to_container(OmegaConf.load(CONF / "sparse" / f"{name}.yaml"), resolve=True)
    return {**cfg, **overrides}


class One(nn.Module):
    """One bias-free 4x5 linear layer: 20 weights whose values the tests set by hand."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(5, 4, bias=False)

    def forward(self, x):
        return self.a(x)


class Two(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(10, 10, bias=False)
        self.b = nn.Linear(10, 10, bias=False)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


def make(model, name, density=0.5, epochs=4, steps_per_epoch=50, lr=0.1, weight_decay=0.0, **cfg):
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    ctx = TrainingContext(
        model=model,
        optimizer=opt,
        density=density,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        seed=0,
        loss_fn=F.cross_entropy,
    )
    return opt, ctx, build_algorithm(ctx, yaml_cfg(name, **cfg))


def set_layer(algo, model, name, weight, mask, momentum=None):
    param = dict(model.named_parameters())[name]
    with torch.no_grad():
        param.copy_(weight)
    algo.masks.set(name, mask.bool())
    algo.masks.apply(algo.params)
    if momentum is not None:
        algo.ctx.optimizer.state[param]["momentum_buffer"] = momentum.clone()
    return param


# --- SET -------------------------------------------------------------------------------------

W20 = torch.tensor(
    [
        [0.50, -0.01, 0.02, -0.90, 0.03],
        [-0.04, 0.60, -0.70, 0.05, -0.02],
        [0.00, 0.00, 0.00, 0.00, 0.00],
        [0.00, 0.00, 0.00, 0.00, 0.00],
    ]
)
M20 = torch.zeros(4, 5, dtype=torch.bool)
M20[:2] = True  # the first two rows active (10 weights: 5 positive, 5 negative), the rest inactive


REMOVED20 = torch.zeros(4, 5, dtype=torch.bool)
# the smallest positives 0.02, 0.03 and the negatives closest to zero -0.01, -0.02
REMOVED20[0, 2] = REMOVED20[0, 4] = REMOVED20[0, 1] = REMOVED20[1, 4] = True


def test_set_prunes_equal_counts_from_smallest_positive_and_negatives_nearest_zero():
    assert torch.equal(prune_set(W20, M20, 2), M20 & ~REMOVED20)
    model = One()
    opt, ctx, algo = make(model, "set", new_weights="zero")
    algo.init_masks()
    p = set_layer(algo, model, "a.weight", W20, M20, momentum=torch.ones(4, 5))
    algo.zeta = 0.4  # 0.4 * 10 active = 4: two positives and two negatives
    stats = algo.update_masks()
    mask = algo.masks.masks["a.weight"]
    survivors = M20 & ~REMOVED20
    assert stats["pruned"] == stats["regrown"] == 4 and int(mask.sum()) == 10
    # the large weights (0.5, -0.9, -0.04, 0.6, -0.7, 0.05) survive with their values
    assert torch.all(mask[survivors]) and torch.equal(p.detach()[survivors], W20[survivors])
    # regrowth only among positions inactive after pruning; new weights 0 with zeroed momentum
    grown = mask & ~survivors
    assert int(grown.sum()) == 4
    assert torch.all(p.detach()[grown] == 0) and torch.all(p.detach()[~mask] == 0)
    assert torch.all(opt.state[p]["momentum_buffer"][grown] == 0)
    assert torch.all(opt.state[p]["momentum_buffer"][survivors] == 1)


def test_set_random_new_weights_and_schedule():
    model = One()
    opt, ctx, algo = make(model, "set", epochs=3)
    algo.init_masks()
    p = set_layer(algo, model, "a.weight", W20, M20)
    algo.zeta = 0.4
    algo.init_std["a.weight"] = 0.1
    algo.update_masks()
    mask = algo.masks.masks["a.weight"]
    grown = mask & ~M20
    assert int(grown.sum()) >= 1 and torch.all(p.detach()[grown] != 0)  # SET paper: random new weights
    assert torch.all(p.detach()[~mask] == 0)
    # epoch schedule: an update after every epoch but the last
    assert algo.on_epoch_end(0) is not None and algo.on_epoch_end(1) is not None and algo.on_epoch_end(2) is None


def test_prune_set_shortfall_taken_from_other_sign():
    w = torch.tensor([0.1, 0.2, 0.3, -0.5, 0.4, 0.6])
    m = torch.ones(6, dtype=torch.bool)
    kept = prune_set(w, m, 2)  # only one negative: it goes, plus three smallest positives
    assert kept.tolist() == [False, False, False, False, True, True]


# --- DSR -------------------------------------------------------------------------------------


def test_dsr_threshold_halves_and_doubles():
    assert threshold_update(1e-3, 120, 100, 0.1) == pytest.approx(5e-4)  # > 1.1 N_p
    assert threshold_update(1e-3, 80, 100, 0.1) == pytest.approx(2e-3)  # < 0.9 N_p
    assert threshold_update(1e-3, 110, 100, 0.1) == 1e-3 and threshold_update(1e-3, 90, 100, 0.1) == 1e-3


def test_dsr_rewire_period_follows_the_epoch_schedule():
    _, _, algo = make(Two(), "dsr", steps_per_epoch=10, rewire_periods=[[50, 400], [0, 100], [25, 200], [75, 800]])
    # epochs 0, 24, 25, 49, 99: the period of the last pair whose epoch has started (the list is read sorted)
    assert [algo.period(10 * epoch) for epoch in (0, 24, 25, 49, 99)] == [100, 100, 200, 200, 800]


def dsr_case(target):
    model = Two()
    opt, ctx, algo = make(model, "dsr", density=0.2, target_prune=target)
    algo.init_masks()
    # a: 20 active, 4 below H = 0.01 -> 16 survive; b: 20 active, 16 below H -> 4 survive
    ma = torch.zeros(10, 10, dtype=torch.bool)
    ma[:2] = True
    wa = torch.zeros(10, 10)
    wa[:2] = 0.5
    wa[0, :4] = 0.001
    mb = ma.clone()
    wb = torch.zeros(10, 10)
    wb[:2] = -0.002
    wb[1, 6:] = -0.5
    pa = set_layer(algo, model, "a.weight", wa, ma, momentum=torch.ones(10, 10))
    pb = set_layer(algo, model, "b.weight", wb, mb, momentum=torch.ones(10, 10))
    algo.threshold = 0.01
    return model, opt, algo, pa, pb, ma, mb


def test_dsr_global_threshold_and_regrowth_by_survivors():
    model, opt, algo, pa, pb, ma, mb = dsr_case(target=10)
    stats = algo.rewire()
    assert stats["pruned_per_layer"] == {"a.weight": 4, "b.weight": 16}
    # 20 regrown, shared 16 : 4 like the surviving weights
    assert stats["regrown_per_layer"] == {"a.weight": 16, "b.weight": 4}
    assert algo.masks.active_counts() == {"a.weight": 32, "b.weight": 8}
    assert algo.threshold == pytest.approx(0.005)  # 20 > 1.1 * 10: halved
    for p, m_old in ((pa, ma), (pb, mb)):
        m = algo.masks.masks["a.weight" if p is pa else "b.weight"]
        survivors = m_old & (p.detach().abs() >= 0.01)
        grown = m & ~survivors
        assert torch.all(p.detach()[grown] == 0) and torch.all(p.detach()[~m] == 0)
        assert torch.all(opt.state[p]["momentum_buffer"][grown] == 0)
        assert torch.all(p.detach()[survivors].abs() == 0.5)


def test_dsr_threshold_doubles_when_too_few_pruned_and_rewires_on_period():
    _, _, algo, *_ = dsr_case(target=100)
    algo.rewire()
    assert algo.threshold == pytest.approx(0.02)
    assert algo.after_step(99) is None and algo.after_step(100) is not None  # K = 100 in epoch 0


def test_dsr_fractional_target():
    model = Two()
    _, _, algo = make(model, "dsr", density=0.2, target_prune=0.05)
    algo.init_masks()
    assert algo.target == pytest.approx(0.05 * 40)


# --- DeepR -----------------------------------------------------------------------------------


def deepr_case(**cfg):
    model = One()
    opt, ctx, algo = make(model, "deepr", lr=0.1, **cfg)
    algo.init_masks()
    sign = torch.tensor([[1.0, -1, 1, -1, 1], [-1, 1, -1, 1, -1], [1, 1, -1, -1, 1], [-1, -1, 1, 1, -1]])
    algo.signs["a.weight"] = sign
    w = sign * torch.tensor(
        [
            [0.3, 0.004, 0.2, 0.001, 0.5],
            [0.6, 0.7, 0.002, 0.8, 0.9],
            [0.0, 0.0, 0.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 0.0, 0.0],
        ]
    )
    p = set_layer(algo, model, "a.weight", w, M20, momentum=torch.ones(4, 5))
    return model, opt, algo, p, sign


def test_deepr_deactivates_exactly_the_crossed_and_keeps_count_and_sign():
    # no noise; L1 step lr * alpha = 0.1 * 0.05 = 0.005 pushes theta 0.004, 0.001, 0.002 below 0
    model, opt, algo, p, sign = deepr_case(alpha=0.05, temperatures=[[0.0, 0.0]])
    stats = algo.after_step(0)
    mask = algo.masks.masks["a.weight"]
    crossed = torch.zeros(4, 5, dtype=torch.bool)
    crossed[0, 1] = crossed[0, 3] = crossed[1, 2] = True
    assert stats["pruned"] == stats["regrown"] == 3
    assert not torch.any(mask & crossed)  # deactivated, and not revived
    assert torch.equal(mask & M20, M20 & ~crossed)  # nothing else deactivated
    activated = mask & ~M20
    assert int(activated.sum()) == 3 and int(mask.sum()) == 10
    w = p.detach()
    assert torch.all(w[~mask] == 0) and torch.all(w[activated] == 0)
    assert torch.all(opt.state[p]["momentum_buffer"][activated] == 0)
    # survivors moved towards zero by lr * alpha, keeping their sign
    assert w[0, 0].item() == pytest.approx(0.3 - 0.005) and w[1, 0].item() == pytest.approx(-(0.6 - 0.005))
    assert torch.all(sign[mask] * w[mask] >= 0)


def test_deepr_noise_keeps_signs_and_count_and_temperature_schedule():
    model, opt, algo, p, sign = deepr_case(temperatures=[[0.0, 1.0e-2]])
    for step in range(50):
        algo.after_step(step)
        mask = algo.masks.masks["a.weight"]
        assert int(mask.sum()) == 10
        assert torch.all(sign[mask] * p.detach()[mask] >= 0) and torch.all(p.detach()[~mask] == 0)
    _, _, published = make(One(), "deepr", epochs=2, steps_per_epoch=50)  # 100 steps, the default schedule
    assert [published.temperature(s) for s in (0, 24, 25, 50, 99)] == [1e-5, 1e-5, 1e-8, 1e-12, 1e-15]


def test_deepr_global_scope_keeps_the_network_total_and_moves_connections_between_layers():
    torch.manual_seed(0)
    model = Two()
    _, _, algo = make(model, "deepr", density=0.3, scope="global", temperatures=[[0.0, 0.05]], alpha=0.0)
    algo.init_masks()
    signs = {k: s.clone() for k, s in algo.signs.items()}
    start = algo.masks.active_counts()
    moved = False
    for step in range(40):
        stats = algo.after_step(step)
        counts = algo.masks.active_counts()
        assert sum(counts.values()) == sum(start.values())  # the network total is fixed, not each layer's
        moved |= counts != start
        if stats:
            assert stats["pruned"] == stats["regrown"] == sum(stats["regrown_per_layer"].values())
        for k, p in algo.params.items():
            m = algo.masks.masks[k]
            assert torch.all(p.detach()[~m] == 0) and torch.all(signs[k][m] * p.detach()[m] >= 0)
            assert torch.equal(algo.active_indices(k).sort().values, m.view(-1).nonzero().squeeze(1))
    assert moved


def test_deepr_first_update_sign_new_connections_take_the_sign_of_their_first_update():
    # new_sign=first_update (the DSR authors' DeepR): a woken connection has no sign until it moves
    model, opt, algo, p, sign = deepr_case(alpha=0.05, temperatures=[[0.0, 0.0]], new_sign="first_update")
    algo.after_step(0)  # 3 cross (as above), 3 wake with sign 0
    mask = algo.masks.masks["a.weight"]
    woken = mask & ~M20
    assert int(woken.sum()) == 3 and torch.all(algo.signs["a.weight"][woken] == 0)
    assert torch.all(algo.signs["a.weight"][M20 & mask] == sign[M20 & mask])  # old connections keep theirs
    with torch.no_grad():  # their first optimizer update
        p[woken] = torch.tensor([0.02, -0.03, 0.001])
    stats = algo.after_step(1)
    assert stats is None  # none of them goes dormant on its first update
    assert torch.equal(algo.masks.masks["a.weight"], mask)
    assert algo.signs["a.weight"][woken].tolist() == [1.0, -1.0, 1.0]
    assert p.detach()[woken].tolist() == pytest.approx([0.015, -0.025, 0.0])  # |u| - lr*alpha, floored at 0
    with torch.no_grad():  # now fixed: crossing zero makes it dormant
        p[woken] = torch.tensor([0.015, 0.01, 0.0])
    stats = algo.after_step(2)
    assert stats["pruned"] == 2  # the one that flipped and the one left at 0
    assert int(algo.masks.masks["a.weight"].sum()) == 10


def test_deepr_fixed_sign_is_the_default_and_kills_a_new_connection_that_moves_against_it():
    model, opt, algo, p, sign = deepr_case(alpha=0.05, temperatures=[[0.0, 0.0]])
    algo.after_step(0)
    mask = algo.masks.masks["a.weight"]
    woken = mask & ~M20
    assert torch.equal(algo.signs["a.weight"], sign)  # signs never change
    with torch.no_grad():
        p[woken] = -sign[woken] * 0.02  # every new connection moves against its sign
    stats = algo.after_step(1)
    assert stats["pruned"] == 3 and not torch.any(algo.masks.masks["a.weight"] & woken)


def test_deepr_gradient_mode_puts_l1_on_the_active_gradients_and_nothing_after_the_step():
    # noise_and_l1=gradient (the DSR authors' DeepR): alpha * sign(w) joins the gradient of active
    # connections only, and after_step adds no L1 of its own
    model, opt, algo, p, sign = deepr_case(alpha=0.05, temperatures=[[0.0, 0.0]], noise_and_l1="gradient")
    p.grad = torch.full((4, 5), 0.5)
    algo.before_step(0)
    g = p.grad
    assert torch.allclose(g[M20], 0.5 + 0.05 * sign[M20]) and torch.all(g[~M20] == 0)
    before = p.detach().clone()
    assert algo.after_step(0) is None  # no weight crossed: nothing moved, nothing swapped
    assert torch.equal(p.detach(), before)
    with torch.no_grad():
        p[0, 0] = -0.01  # the optimizer pushed it across zero
    stats = algo.after_step(1)
    assert stats["pruned"] == 1 and not algo.masks.masks["a.weight"][0, 0]


def test_deepr_gradient_mode_noise_follows_noise_eta_and_the_temperature():
    model, opt, algo, p, sign = deepr_case(
        alpha=0.0, temperatures=[[0.0, 0.5]], noise_and_l1="gradient", noise_eta=0.01
    )
    draws = []
    for _ in range(200):
        p.grad = torch.zeros(4, 5)
        algo.before_step(0)
        draws.append(p.grad[M20].clone())
        assert torch.all(p.grad[~M20] == 0)
    std = torch.cat(draws).std().item()
    assert std == pytest.approx(math.sqrt(2 * 0.01 * 0.5), rel=0.1)


class Conv(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(3, 4, 3, bias=False)

    def forward(self, x):
        return self.c(x).mean((2, 3))


@pytest.mark.parametrize(
    "cfg",
    [{}, {"new_sign": "first_update", "noise_and_l1": "gradient"}, {"scope": "global"}],
    ids=["deepr", "dsr_code", "global"],
)
def test_deepr_on_channels_last_conv_weights_matches_the_contiguous_layout(cfg):
    """The masks are row-major, a channels_last weight is not: DeepR must index both alike (it crashed before)."""

    def run(channels_last):
        torch.manual_seed(0)
        model = Conv()
        if channels_last:
            model.to(memory_format=torch.channels_last)
        opt, _, algo = make(model, "deepr", density=0.2, temperatures=[[0.0, 0.05]], alpha=0.01, **cfg)
        algo.init_masks()
        data = torch.Generator().manual_seed(1)
        for step in range(6):
            x = torch.randn(8, 3, 6, 6, generator=data)
            if channels_last:
                x = x.to(memory_format=torch.channels_last)
            opt.zero_grad()
            F.cross_entropy(model(x), torch.randint(0, 4, (8,), generator=data)).backward()
            algo.before_step(step)
            opt.step()
            algo.after_step(step)
        return model.c.weight, algo, opt

    w_cl, algo_cl, opt_cl = run(True)
    w, algo, opt = run(False)
    assert w_cl.is_contiguous(memory_format=torch.channels_last) and not w_cl.is_contiguous()
    assert torch.equal(algo_cl.masks.masks["c.weight"], algo.masks.masks["c.weight"])
    assert torch.equal(algo_cl.signs["c.weight"], algo.signs["c.weight"])
    assert torch.allclose(w_cl, w, atol=1e-6)
    assert torch.allclose(opt_cl.state[w_cl]["momentum_buffer"], opt.state[w]["momentum_buffer"], atol=1e-6)
    mask = algo_cl.masks.masks["c.weight"]
    assert torch.all(w_cl.detach()[~mask] == 0) and int(mask.sum()) == int(round(0.2 * w.numel()))


def test_deepr_rejects_an_unknown_new_sign():
    with pytest.raises(ConfigError, match="valid choices: fixed, first_update"):
        ALGORITHMS.get("deepr").check_config({"new_sign": "random"})


def test_deepr_rejects_an_unknown_scope():
    with pytest.raises(ConfigError, match="valid choices: layer, global"):
        ALGORITHMS.get("deepr").check_config({"scope": "network"})


def test_deepr_cancels_weight_decay_on_sparse_weights():
    model, opt, algo, p, sign = deepr_case(
        weight_decay=0.5, temperatures=[[0.0, 0.0]], alpha=0.0, cancel_weight_decay=True
    )
    del opt.state[p]["momentum_buffer"]
    before = p.detach().clone()
    p.grad = torch.full((4, 5), 0.01)
    algo.before_step(0)
    opt.step()
    # first SGD step with Nesterov: w - lr * (1 + momentum) * g, with no L2 term from weight decay
    expected = before - 0.1 * 1.9 * 0.01 * M20.float()
    assert torch.allclose(p.detach(), expected, atol=1e-7)


def test_sample_indices_distinct_and_in_range():
    g = torch.Generator().manual_seed(0)
    for n, k in ((1000, 7), (10, 9), (50, 0)):
        idx = sample_indices(n, k, g)
        assert idx.numel() == k and idx.unique().numel() == k and (idx.numel() == 0 or int(idx.max()) < n)


# --- SNIP ------------------------------------------------------------------------------------


def test_snip_keeps_global_top_k_of_grad_times_weight():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    x, y = torch.randn(16, 6), torch.randint(0, 3, (16,))
    running = model[1].running_mean.clone()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    ctx = TrainingContext(
        model=model,
        optimizer=opt,
        density=0.25,
        epochs=1,
        steps_per_epoch=1,
        seed=0,
        sample_batch=lambda: (x, y),
        loss_fn=F.cross_entropy,
    )
    algo = build_algorithm(ctx, yaml_cfg("snip"))
    w0, w3 = model[0].weight.detach().clone(), model[3].weight.detach().clone()
    loss = F.cross_entropy(model(x), y)
    g0, g3 = torch.autograd.grad(loss, [model[0].weight, model[3].weight])
    model[1].running_mean.copy_(running)
    algo.init_masks()
    scores = torch.cat([(g0 * w0).abs().flatten(), (g3 * w3).abs().flatten()])
    k = round(0.25 * scores.numel())
    expected = torch.zeros_like(scores, dtype=torch.bool)
    expected[torch.topk(scores, k).indices] = True
    got = torch.cat([algo.masks.masks["0.weight"].flatten(), algo.masks.masks["3.weight"].flatten()])
    assert torch.equal(got, expected) and algo.masks.total_active() == k
    assert torch.equal(model[1].running_mean, running)  # the scoring pass left BatchNorm alone
    assert model[0].weight.grad is None  # and wrote no gradients
    assert torch.all(model[0].weight.detach()[~algo.masks.masks["0.weight"]] == 0)


def test_snip_masks_exact_k_with_ties():
    masks = snip_masks({"a": torch.zeros(3, 3), "b": torch.ones(2)}, 4)
    assert int(masks["a"].sum()) + int(masks["b"].sum()) == 4 and bool(masks["b"].all())


# --- RigL ------------------------------------------------------------------------------------


def test_rigl_cosine_drop_fraction():
    assert drop_fraction(0, 1000, 0.3) == pytest.approx(0.3)
    assert drop_fraction(500, 1000, 0.3) == pytest.approx(0.15)
    assert drop_fraction(250, 1000, 0.3) == pytest.approx(0.15 * (1 + math.cos(math.pi / 4)))
    assert drop_fraction(1000, 1000, 0.3) == 0.0


def test_rigl_grows_at_largest_dense_gradient_and_resets_momentum():
    model = One()
    # 4 epochs x 50 steps: T_end = 150, updates at step 100 only
    opt, ctx, algo = make(model, "rigl", epochs=4, steps_per_epoch=50, alpha=0.3, delta_t=100, distribution="uniform")
    algo.init_masks()
    w = torch.tensor(
        [
            [0.5, -0.01, 0.2, -0.9, 0.3],
            [-0.4, 0.6, -0.7, 0.8, -0.02],
            [0.0, 0.0, 0.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 0.0, 0.0],
        ]
    )
    p = set_layer(algo, model, "a.weight", w, M20, momentum=torch.ones(4, 5))
    algo.alpha = 1.0  # alpha(100) = 0.5 (1 + cos(2 pi / 3)) = 0.25 -> round(2.5) = 2 of 10 dropped
    grad = torch.zeros(4, 5)
    grad[3, 4], grad[2, 0], grad[2, 1] = -5.0, 4.0, 0.5
    grad[0, 0] = 100.0  # active: must not count as a growth candidate
    p.grad = grad.clone()
    algo.before_step(100)
    assert torch.equal(p.grad, grad * M20)  # masked for the optimizer, dense copy kept
    stats = algo.after_step(100)
    mask = algo.masks.masks["a.weight"]
    assert stats["pruned"] == stats["regrown"] == 2
    assert not mask[0, 1] and not mask[1, 4]  # smallest |w|: -0.01, -0.02
    assert mask[3, 4] and mask[2, 0] and not mask[2, 1]  # largest |dense gradient| among inactive
    assert int(mask.sum()) == 10
    assert p.detach()[3, 4] == 0 and p.detach()[2, 0] == 0
    assert opt.state[p]["momentum_buffer"][3, 4] == 0 and opt.state[p]["momentum_buffer"][2, 0] == 0
    assert opt.state[p]["momentum_buffer"][0, 0] == 1  # survivors keep theirs
    # no update off-period or after T_end
    p.grad = grad.clone()
    algo.before_step(101)
    assert algo.after_step(101) is None
    algo.before_step(150)
    assert algo.after_step(150) is None


# --- persistence -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["set", "dsr", "deepr", "deepr_dsr_code", "rigl", "snip"])
def test_state_dict_resume_matches_uninterrupted(name):
    """Saving after 30 steps and resuming in fresh objects gives the same weights and masks at step 60."""
    fast = {
        "dsr": {"rewire_periods": [[0, 5]]},
        "rigl": {"delta_t": 5},
        "set": {"schedule": "step", "period": 4},
        "deepr_dsr_code": {"new_sign": "first_update", "noise_and_l1": "gradient"},
    }
    algorithm = "deepr" if name == "deepr_dsr_code" else name
    data = torch.Generator().manual_seed(3)
    xs, ys = torch.randn(60, 16, 10, generator=data), torch.randint(0, 10, (60, 16), generator=data)

    def build():
        torch.manual_seed(0)
        model = Two()
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
        ctx = TrainingContext(
            model=model,
            optimizer=opt,
            density=0.3,
            epochs=3,
            steps_per_epoch=20,
            seed=5,
            sample_batch=lambda: (xs[0], ys[0]),
            loss_fn=F.cross_entropy,
        )
        algo = build_algorithm(ctx, yaml_cfg(algorithm, **fast.get(name, {})))
        algo.init_masks()
        return model, opt, algo

    def run(model, opt, algo, steps):
        for step in steps:
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(xs[step]), ys[step]).backward()
            algo.before_step(step)
            opt.step()
            algo.after_step(step)
            if (step + 1) % 20 == 0:
                algo.on_epoch_end(step // 20)

    model, opt, algo = build()
    run(model, opt, algo, range(30))
    saved = {
        "model": {k: v.clone() for k, v in model.state_dict().items()},
        "opt": copy.deepcopy(opt.state_dict()),
        "algo": copy.deepcopy(algo.state_dict()),
    }
    run(model, opt, algo, range(30, 60))
    model2, opt2, algo2 = build()
    model2.load_state_dict(saved["model"])
    opt2.load_state_dict(saved["opt"])
    algo2.load_state_dict(saved["algo"])
    run(model2, opt2, algo2, range(30, 60))
    for k in algo.masks.names():
        assert torch.equal(algo.masks.masks[k], algo2.masks.masks[k])
    for (k, a), b in zip(model.state_dict().items(), model2.state_dict().values()):
        assert torch.equal(a, b), k
