"""execution=truly_sparse: layers that hold only their active entries give the masked mode's results."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from snfs.algorithms import ALGORITHMS, TrainingContext
from snfs.algorithms.set import prune_set, set_keep
from snfs.errors import ConfigError
from snfs.masks import MaskState, grow_by_score, magnitude_keep, prune_by_score
from snfs.truly_sparse import (
    TrulySparseLinear,
    TrulySparseTraining,
    build_from_scratch,
    check_supported,
    checkpoint_to_masked,
    checkpoint_to_truly_sparse,
    is_member,
    sample_inactive,
    to_masked,
    to_truly_sparse,
    top_gradient_inactive,
)

# fp32 sums of up to a few hundred products, taken in another order by the CSR and sampled kernels than by the
# dense GEMM: each gradient entry differs by a few ulps (~1e-7 relative); over STEPS SGD steps at lr 0.1 the
# weights (|w| < 0.2) then differ by well under 1e-5
ATOL, RTOL = 1e-5, 1e-4
STEPS, BATCH = 12, 32
OPTIM = dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)


def mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, 32), nn.ReLU(), nn.Linear(32, 10))


def batches(n: int = STEPS, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(BATCH, 64, generator=g), torch.randint(0, 10, (BATCH,), generator=g)) for _ in range(n)]


def algorithm(name: str, model: nn.Module, optimizer, data, density: float = 0.25, **options):
    ctx = TrainingContext(
        model=model,
        optimizer=optimizer,
        density=density,
        epochs=1,
        steps_per_epoch=STEPS,
        seed=3,
        sample_batch=lambda: data[0],
        loss_fn=F.cross_entropy,
    )
    algo = ALGORITHMS.get(name)(ctx, {"name": name, **options})
    algo.init_masks()
    return algo


def sgd(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), fused=True, **OPTIM)


def masked_run(name: str, steps: int = STEPS, **options):
    """Today's masked training: dense weights, masks applied by the algorithm's hooks."""
    data = batches()
    model = mlp()
    opt = sgd(model)
    algo = algorithm(name, model, opt, data, **options)
    for step, (x, y) in enumerate(data[:steps]):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        algo.before_step(step)
        opt.step()
        algo.after_step(step)
    return model, algo, opt


def truly_sparse_run(name: str, steps: int = STEPS, **options):
    data = batches()
    model = mlp()
    algo = algorithm(name, model, sgd(model), data, **options)
    run = TrulySparseTraining(algo, model)
    opt = sgd(model)
    run.attach_optimizer(opt)
    for step, (x, y) in enumerate(data[:steps]):
        truly_sparse_step(model, opt, run, step, x, y)
    return model, run, opt


def truly_sparse_step(model, opt, run, step, x, y):
    run.begin_step(step)
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    run.before_step(step)
    opt.step()
    return run.after_step(step)


def assert_same_layers(masked_model: nn.Module, masks: dict, sparse_model: nn.Module) -> None:
    for name, mask in masks.items():
        layer = sparse_model.get_submodule(name.removesuffix(".weight"))
        assert isinstance(layer, TrulySparseLinear)
        assert torch.equal(layer.dense_mask(), mask), f"{name}: the patterns differ"
        torch.testing.assert_close(
            layer.dense_weight(),
            masked_model.get_submodule(name.removesuffix(".weight")).weight.detach(),
            atol=ATOL,
            rtol=RTOL,
        )


# --- the layer ----------------------------------------------------------------------------------------------


def test_layer_computes_what_the_masked_dense_layer_computes():
    torch.manual_seed(0)
    linear = nn.Linear(50, 30)
    mask = torch.rand(30, 50) < 0.1
    with torch.no_grad():
        linear.weight.mul_(mask)
    layer = TrulySparseLinear.from_linear(linear, mask)
    x = torch.randn(16, 50, requires_grad=True)
    xs = x.detach().clone().requires_grad_(True)
    y, ys = linear(x), layer(xs)
    torch.testing.assert_close(ys, y, atol=1e-6, rtol=1e-5)
    g = torch.randn_like(y)
    y.backward(g)
    ys.backward(g)
    torch.testing.assert_close(xs.grad, x.grad, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(layer.values.grad, linear.weight.grad.flatten()[layer.indices], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(layer.bias.grad, linear.bias.grad)


def test_parameter_gradient_and_momentum_have_the_length_of_the_active_weights():
    model, run, opt = truly_sparse_run("static", steps=2)
    for _name, layer in run.layers.items():
        n = layer.nnz
        assert layer.values.shape == (n,) and layer.values.grad.shape == (n,)
        assert opt.state[layer.values]["momentum_buffer"].shape == (n,)
        assert layer.indices.dtype == torch.int64 and layer.indices.shape == (n,)
        assert n < layer.numel
    # a checkpoint of this mode holds no tensor of a sparse weight's dense size
    dense_sizes = {layer.numel for layer in run.layers.values()}
    assert not any(t.numel() in dense_sizes for t in model.state_dict().values())
    assert not isinstance(run.algorithm.masks, MaskState)  # no dense mask is kept


def test_conversion_there_and_back_is_exact():
    model = mlp()
    algo = algorithm("static", model, sgd(model), batches(1))
    weights = {k: p.detach().clone() for k, p in algo.params.items()}
    masks = {k: m.clone() for k, m in algo.masks.masks.items()}
    order = [n for n, _ in model.named_parameters()]
    layers = to_truly_sparse(model, masks)
    assert set(layers) == set(masks)
    assert [n.replace("values", "weight") for n, _ in model.named_parameters()] == order
    back = to_masked(model)
    for name in masks:
        assert torch.equal(back[name], masks[name])
        assert torch.equal(model.get_submodule(name.removesuffix(".weight")).weight.detach(), weights[name])


def test_a_convolution_is_refused_with_one_line():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 26 * 26, 10))
    with pytest.raises(ConfigError, match="nn.Linear layers only; 0.weight is a Conv2d"):
        to_truly_sparse(model, {"0.weight": torch.ones(4, 1, 3, 3, dtype=torch.bool)})


@pytest.mark.parametrize("name", ["momentum", "dense"])
def test_unsupported_algorithms_are_refused_with_one_line(name):
    with pytest.raises(ConfigError, match=f"does not run sparse={name}") as info:
        check_supported(name)
    assert "\n" not in str(info.value)
    if name == "momentum":
        assert "dense momentum by definition" in str(info.value)


# --- the same results as the masked mode ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["static", "snip"])
def test_fixed_masks_train_to_the_masked_weights(name):
    masked_model, masked_algo, _ = masked_run(name)
    sparse_model, _, _ = truly_sparse_run(name)
    assert_same_layers(masked_model, masked_algo.masks.masks, sparse_model)


def test_rigl_updates_give_the_masked_masks_and_weights():
    options = dict(delta_t=2, alpha=0.3, end_fraction=1.0)  # updates at steps 2, 4, 6, 8, 10
    masked_model, masked_algo, _ = masked_run("rigl", **options)
    sparse_model, run, _ = truly_sparse_run("rigl", **options)
    assert_same_layers(masked_model, masked_algo.masks.masks, sparse_model)
    assert run.algorithm.step == masked_algo.step == STEPS


def test_rigl_changes_the_masks_in_this_comparison():
    """The comparison above is not vacuous: RigL's rounds do move weights in it."""
    options = dict(delta_t=2, alpha=0.3, end_fraction=1.0)
    _, run, _ = truly_sparse_run("rigl", steps=STEPS, **options)
    model = mlp()
    first = algorithm("rigl", model, sgd(model), batches(1), **options).masks.masks
    changed = sum(int((run.layers[k].dense_mask() != m).sum()) for k, m in first.items())
    assert changed > 0


def test_set_prune_is_the_masked_prune():
    torch.manual_seed(5)
    weight = torch.randn(40, 30)
    mask = torch.rand(40, 30) < 0.3
    weight = weight * mask
    layer = TrulySparseLinear(30, 40, mask.flatten().nonzero().squeeze(1), weight.flatten()[mask.flatten()])
    for n_half in (0, 3, 50, 200):  # 200: more than one sign has, the shortfall moves to the other sign
        keep = set_keep(layer.values, n_half)
        expected = prune_set(weight, mask, n_half)
        assert torch.equal(layer.indices[keep], expected.flatten().nonzero().squeeze(1))


def test_magnitude_prune_is_the_masked_prune():
    torch.manual_seed(6)
    weight = torch.randn(20, 25)
    mask = torch.rand(20, 25) < 0.4
    indices = mask.flatten().nonzero().squeeze(1)
    values = weight.flatten()[indices]
    for n in (0, 1, 17, indices.numel()):
        keep = magnitude_keep(values, n)
        expected = prune_by_score(weight.abs(), mask, n)
        assert torch.equal(indices[keep], expected.flatten().nonzero().squeeze(1))


@pytest.mark.parametrize("block_elements", [1, 37, 10**6])
def test_blocked_gradient_grow_is_the_dense_grow(block_elements):
    torch.manual_seed(7)
    g_t, x = torch.randn(23, 8), torch.randn(8, 19)
    mask = torch.rand(23, 19) < 0.3
    occupied = mask.flatten().nonzero().squeeze(1)
    dense_grad = (g_t @ x).abs()
    for n in (1, 10, 100):
        grown = top_gradient_inactive(g_t, x, occupied, n, block_elements)
        expected = grow_by_score(dense_grad, mask, n) & ~mask
        assert grown.numel() == n
        assert torch.equal(grown.sort().values, expected.flatten().nonzero().squeeze(1))


def test_dsr_prunes_adapts_and_shares_the_regrowth_as_the_masked_mode():
    """DSR's round: the same weights pruned, the same threshold and per-layer counts; the new ones at 0."""
    options = dict(rewire_periods=[[0, 3]], target_prune=0.05, initial_threshold=0.02)
    masked_model, masked_algo, _ = masked_run("dsr", steps=4, **options)  # the round after step 3
    sparse_model, run, opt = truly_sparse_run("dsr", steps=4, **options)
    assert run.algorithm.threshold == masked_algo.threshold
    assert run.active_counts() == masked_algo.masks.active_counts()
    grown_somewhere = False
    for name, layer in run.layers.items():
        dense = masked_model.get_submodule(name.removesuffix(".weight")).weight.detach().flatten()
        survivors = dense.nonzero().squeeze(1)  # new weights are exactly 0 in both modes
        assert torch.equal(layer.indices[layer.values.detach() != 0], survivors)
        torch.testing.assert_close(
            layer.values.detach()[layer.values.detach() != 0], dense[survivors], atol=ATOL, rtol=RTOL
        )
        momentum = opt.state[layer.values]["momentum_buffer"]
        assert bool((momentum[layer.values.detach() == 0] == 0).all())
        grown_somewhere |= bool((layer.values.detach() == 0).any())
    assert grown_somewhere


def test_set_runs_and_keeps_every_count():
    model, run, opt = truly_sparse_run("set", schedule="step", period=3, zeta=0.3)
    first = {k: layer.nnz for k, layer in run.layers.items()}
    model2 = mlp()
    initial = algorithm("set", model2, sgd(model2), batches(1), schedule="step", period=3, zeta=0.3)
    assert first == initial.masks.active_counts()
    for layer in run.layers.values():
        assert torch.equal(layer.indices, layer.indices.unique())  # sorted, distinct
        assert opt.state[layer.values]["momentum_buffer"].shape == layer.values.shape


# --- rewiring moves the optimizer state ------------------------------------------------------------------------


def test_rewire_moves_values_and_momentum_with_their_positions():
    layer = TrulySparseLinear(10, 4, torch.tensor([3, 7, 12, 30]), torch.tensor([1.0, 2.0, 3.0, 4.0]))
    opt = torch.optim.SGD(layer.parameters(), lr=0.1, momentum=0.9)
    opt.state[layer.values]["momentum_buffer"] = torch.tensor([10.0, 20.0, 30.0, 40.0])
    keep = torch.tensor([True, False, True, True])  # drop position 7
    stats = layer.rewire(keep, torch.tensor([5, 31]), torch.tensor([-1.0, -2.0]), opt)
    assert stats == {"pruned": 1, "regrown": 2}
    assert layer.indices.tolist() == [3, 5, 12, 30, 31]
    assert layer.values.tolist() == [1.0, -1.0, 3.0, 4.0, -2.0]
    assert opt.state[layer.values]["momentum_buffer"].tolist() == [10.0, 0.0, 30.0, 40.0, 0.0]
    assert layer.structure().crow.tolist() == [0, 2, 3, 3, 5]  # rows 0, 0, 1, 3, 3: rebuilt for the new pattern


# --- the random grow: uniform over the free positions, exact counts ---------------------------------------------


def test_grow_sampler_draws_uniform_subsets_of_the_free_positions():
    """Chi-square over all C(10, 3) subsets of 10 free positions: each subset as likely as any other."""
    numel, n, draws = 30, 3, 12_000
    occupied = torch.tensor(sorted(torch.randperm(numel, generator=torch.Generator().manual_seed(0))[:20].tolist()))
    free = sorted(set(range(numel)) - set(occupied.tolist()))
    subsets = {s: 0 for s in itertools.combinations(free, n)}
    g = torch.Generator().manual_seed(1)
    for _ in range(draws):
        grown = sample_inactive(occupied, numel, n, g)
        assert grown.numel() == n and grown.unique().numel() == n  # exact count, distinct
        assert not bool(is_member(occupied, grown).any())  # never an active position
        subsets[tuple(sorted(grown.tolist()))] += 1
    expected = draws / len(subsets)
    chi2 = sum((c - expected) ** 2 / expected for c in subsets.values())
    dof = len(subsets) - 1
    # the chi-square quantile at p = 1e-4 by the Wilson-Hilferty approximation; a biased sampler (say one that
    # prefers low positions by a few percent) exceeds it by far at this sample size
    z = 3.719
    bound = dof * (1 - 2 / (9 * dof) + z * math.sqrt(2 / (9 * dof))) ** 3
    assert chi2 < bound, f"chi-square {chi2:.0f} over {dof} degrees of freedom"


def test_grow_sampler_on_a_large_layer_forms_nothing_dense_and_counts_exactly():
    numel = 10**10  # a 100,000 x 100,000 weight: a dense mask of it would take 10 GB
    g = torch.Generator().manual_seed(2)
    occupied = sample_inactive(torch.empty(0, dtype=torch.int64), numel, 50_000, g).sort().values
    grown = sample_inactive(occupied, numel, 20_000, g)
    assert grown.numel() == 20_000 and grown.unique().numel() == 20_000
    assert not bool(is_member(occupied, grown).any())
    assert int(grown.min()) >= 0 and int(grown.max()) < numel


def test_grow_sampler_on_a_nearly_full_layer():
    g = torch.Generator().manual_seed(3)
    occupied = torch.arange(100).masked_select(torch.arange(100) % 50 != 0)  # 2 free positions: 0 and 50
    assert sorted(sample_inactive(occupied, 100, 2, g).tolist()) == [0, 50]
    with pytest.raises(ValueError, match="cannot grow 3 weights into 2"):
        sample_inactive(occupied, 100, 3, g)


# --- checkpoints: one mode's resumes in the other ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["static", "rigl"])
def test_a_masked_checkpoint_resumes_truly_sparse_and_back(name):
    """Masked for 5 steps, truly sparse for 5, masked for 2 = masked for all 12 steps."""
    options = dict(delta_t=2, alpha=0.3, end_fraction=1.0) if name == "rigl" else {}
    data = batches()
    reference_model, reference_algo, _ = masked_run(name, **options)

    model = mlp()
    opt = sgd(model)
    algo = algorithm(name, model, opt, data, **options)
    param_names = [n for n, _ in model.named_parameters()]
    shapes = {k: tuple(p.shape) for k, p in algo.params.items()}
    for step in range(5):
        x, y = data[step]
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        algo.before_step(step)
        opt.step()
        algo.after_step(step)
    state = checkpoint_to_truly_sparse(
        {"model": model.state_dict(), "optimizer": opt.state_dict(), "algorithm": algo.state_dict()}, param_names
    )

    fresh = mlp(seed=9)  # another initialisation: everything must come from the checkpoint
    run = TrulySparseTraining(algorithm(name, fresh, sgd(fresh), data, **options), fresh)
    sparse_opt = sgd(fresh)
    run.attach_optimizer(sparse_opt)
    fresh.load_state_dict(state["model"])
    sparse_opt.load_state_dict(state["optimizer"])
    run.load_state_dict(state["algorithm"])
    for step in range(5, 10):
        truly_sparse_step(fresh, sparse_opt, run, step, *data[step])
    back = checkpoint_to_masked(
        {"model": fresh.state_dict(), "optimizer": sparse_opt.state_dict(), "algorithm": run.state_dict()},
        param_names,
        shapes,
    )

    last = mlp(seed=10)
    last_opt = sgd(last)
    last_algo = algorithm(name, last, last_opt, data, **options)
    last.load_state_dict(back["model"])
    last_opt.load_state_dict(back["optimizer"])
    last_algo.load_state_dict(back["algorithm"])
    for step in range(10, STEPS):
        x, y = data[step]
        loss = F.cross_entropy(last(x), y)
        last_opt.zero_grad(set_to_none=True)
        loss.backward()
        last_algo.before_step(step)
        last_opt.step()
        last_algo.after_step(step)
    for k, mask in reference_algo.masks.masks.items():
        assert torch.equal(last_algo.masks.masks[k], mask)
        module = k.removesuffix(".weight")
        torch.testing.assert_close(
            last.get_submodule(module).weight, reference_model.get_submodule(module).weight, atol=ATOL, rtol=RTOL
        )


# --- from scratch: a model whose sparse layers never exist densely ----------------------------------------------


@pytest.mark.parametrize(
    "name,distribution", [("static", "uniform"), ("rigl", "erk"), ("set", "erdos_renyi"), ("dsr", "uniform")]
)
def test_a_model_built_from_scratch_has_the_algorithms_counts_and_trains(name, distribution):
    with torch.device("meta"):
        model = mlp()
    algo = ALGORITHMS.get(name)(
        TrainingContext(model=model, optimizer=None, density=0.25, epochs=1, steps_per_epoch=STEPS, seed=3),
        {"name": name},
    )
    run = build_from_scratch(model, algo)
    reference = mlp()
    expected = algorithm(name, reference, sgd(reference), batches(1)).masks.active_counts()
    assert run.active_counts() == expected
    assert not any(t.is_meta for t in [*model.parameters(), *model.buffers()])
    for layer in run.layers.values():
        assert float(layer.values.detach().abs().max()) <= 1 / math.sqrt(layer.in_features)  # nn.Linear's init bound
    opt = sgd(model)
    run.attach_optimizer(opt)
    for step, (x, y) in enumerate(batches(3)):
        truly_sparse_step(model, opt, run, step, x, y)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_the_run_reports_the_masked_modes_counts_densities_and_checksum():
    model = mlp()
    algo = algorithm("rigl", model, sgd(model), batches(1))
    masks = algo.masks
    counts, densities, checksum, density = (
        masks.active_counts(),
        masks.layer_densities(),
        masks.checksum(),
        masks.density(),
    )
    run = TrulySparseTraining(algo, model)
    assert run.active_counts() == counts
    assert run.layer_densities() == pytest.approx(densities)
    assert run.density() == pytest.approx(density)
    assert run.checksum() == checksum
    assert run.flops_accounting == "periodic_dense_weight_gradient" and run.flops_options() == {"delta_t": 100}


@pytest.mark.parametrize("name", ["static", "rigl"])
def test_a_masked_run_switches_mode_in_memory_with_its_optimizer(name):
    """5 masked steps, then the same model and optimizer converted in place, 7 more steps = 12 masked steps."""
    options = dict(delta_t=2, alpha=0.3, end_fraction=1.0) if name == "rigl" else {}
    reference_model, reference_algo, _ = masked_run(name, **options)
    data = batches()
    model = mlp()
    opt = sgd(model)
    algo = algorithm(name, model, opt, data, **options)
    for step in range(5):
        loss = F.cross_entropy(model(data[step][0]), data[step][1])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        algo.before_step(step)
        opt.step()
        algo.after_step(step)
    run = TrulySparseTraining(algo, model, optimizer=opt)
    assert {id(p) for g in opt.param_groups for p in g["params"]} == {id(p) for p in model.parameters()}
    for step in range(5, STEPS):
        truly_sparse_step(model, opt, run, step, *data[step])
    assert_same_layers(reference_model, reference_algo.masks.masks, model)
