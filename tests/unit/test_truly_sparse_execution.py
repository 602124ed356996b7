"""``execution=truly_sparse`` through the library (``snfs.sparsify``) and the trainer: the same results as ``masked``.

The layer, the index-space prune and grow and the checkpoint conversion are tested on their own in
tests/unit/test_truly_sparse.py; here the execution is a choice like the other two.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from support import compose_cfg
from support.truly_sparse import dense_weights
from torch import nn

import snfs
from snfs.errors import ConfigError
from snfs.truly_sparse import IndexMaskState, TrulySparseLinear

# fp32: the CSR and sampled kernels sum the same products in another order than the dense GEMM (a few ulps per
# gradient entry); over STEPS SGD steps at lr 0.1 on weights |w| < 0.2 that stays well under 1e-5
ATOL, RTOL = 1e-5, 1e-4
STEPS, BATCH = 12, 32
# schedules fast enough that the dynamic algorithms change their masks several times in short runs
FAST = {
    "rigl": ["sparse.delta_t=5"],
    "dsr": ["sparse.rewire_periods=[[0,5]]", "sparse.target_prune=0.05"],
    "set": [],
}


def mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, 32), nn.ReLU(), nn.Linear(32, 10))


def batches(n: int = STEPS, seed: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(BATCH, 64, generator=g), torch.randint(0, 10, (BATCH,), generator=g)) for _ in range(n)]


def library_run(execution: str, algorithm: str = "static", steps: int = STEPS, **options):
    """``snfs.sparsify`` on a small MLP, trained ``steps`` steps of a plain loop."""
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    data = batches()
    sparse = snfs.sparsify(
        model,
        optimizer,
        algorithm,
        0.25,
        epochs=1,
        steps_per_epoch=steps,
        seed=3,
        execution=execution,
        sample_batch=data[0],
        loss_fn=F.cross_entropy,
        verbose=False,
        **options,
    )
    for x, y in data[:steps]:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        sparse.step()
    return model, sparse


def test_truly_sparse_is_one_of_the_valid_executions():
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ConfigError, match="valid choices: masked, sparse, truly_sparse") as info:
        snfs.sparsify(model, optimizer, "static", 0.25, epochs=1, steps_per_epoch=1, execution="fast")
    assert "\n" not in str(info.value)


def test_sparse_momentum_is_refused_in_one_line_that_says_why_and_names_the_supported_algorithms():
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    with pytest.raises(ConfigError) as info:
        snfs.sparsify(model, optimizer, "momentum", 0.25, epochs=1, steps_per_epoch=1, execution="truly_sparse")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("execution=truly_sparse does not run sparse=momentum")
    assert "dense momentum by definition" in message
    for supported in ("dsr", "rigl", "set", "snip", "static"):
        assert supported in message.split("valid choices: ")[1]


def conv_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 32), nn.ReLU(), nn.Linear(32, 10)
    )


def conv_run(execution: str, algorithm: str, steps: int = STEPS, **options):
    model = conv_net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    g = torch.Generator().manual_seed(1)
    data = [
        (torch.randn(BATCH, 1, 8, 8, generator=g), torch.randint(0, 10, (BATCH,), generator=g)) for _ in range(steps)
    ]
    sparse = snfs.sparsify(
        model,
        optimizer,
        algorithm,
        0.25,
        epochs=1,
        steps_per_epoch=steps,
        seed=3,
        execution=execution,
        sample_batch=data[0],
        loss_fn=F.cross_entropy,
        verbose=False,
        **options,
    )
    for x, y in data:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        sparse.step()
    return model, sparse


@pytest.mark.parametrize("algorithm", ["static", "snip", "rigl"])
def test_a_convolution_keeps_the_masked_route_beside_truly_sparse_linear_layers(algorithm):
    options = {"delta_t": 3, "end_fraction": 1.0} if algorithm == "rigl" else {}
    masked_model, masked = conv_run("masked", algorithm, **options)
    model, sparse = conv_run("truly_sparse", algorithm, **options)
    assert sparse.execution.routes() == {"0.weight": "masked", "3.weight": "truly_sparse", "5.weight": "truly_sparse"}
    assert isinstance(model[0], nn.Conv2d) and isinstance(model[3], TrulySparseLinear)
    for name, mask in masked.masks.items():
        assert torch.equal(sparse.masks[name], mask), f"{algorithm}: {name}"
    assert bool((model[0].weight[~sparse.masks["0.weight"]] == 0).all())  # the masked layer stays masked
    for name, weight in dense_weights(masked_model).items():
        torch.testing.assert_close(dense_weights(model)[name], weight, atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(model[0].weight, masked_model[0].weight, atol=ATOL, rtol=RTOL)
    if algorithm == "rigl":
        first = conv_run("masked", algorithm, steps=1, **options)[1].masks
        assert any(not torch.equal(first[k], m) for k, m in sparse.masks.items()), "no round changed a mask"
    assert set(sparse.state_dict()["algorithm"]["masks"]) == {"0.weight"}  # only the masked layer's


def test_deepr_on_a_model_with_a_sparse_convolution_is_refused_in_one_line():
    model = conv_net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ConfigError, match="sparse nn.Linear layers only; 0.weight is a Conv2d") as info:
        snfs.sparsify(model, optimizer, "deepr", 0.25, epochs=1, steps_per_epoch=1, execution="truly_sparse")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("algorithm", ["static", "snip", "rigl"])
def test_sparsify_truly_sparse_trains_to_the_masked_weights_and_masks(algorithm):
    options = {"delta_t": 3, "end_fraction": 1.0} if algorithm == "rigl" else {}  # rounds at steps 3, 6, 9
    masked_model, masked = library_run("masked", algorithm, **options)
    model, sparse = library_run("truly_sparse", algorithm, **options)
    assert isinstance(sparse.algorithm.masks, IndexMaskState)
    assert all(isinstance(module, TrulySparseLinear) for module in (model[0], model[2], model[4]))
    for name, mask in masked.masks.items():
        assert torch.equal(sparse.masks[name], mask), f"{algorithm}: {name}"
    for name, weight in dense_weights(masked_model).items():
        torch.testing.assert_close(dense_weights(model)[name], weight, atol=ATOL, rtol=RTOL)
    assert sparse.density == pytest.approx(masked.density)
    assert sparse.layer_densities() == pytest.approx(masked.layer_densities())
    assert sparse.active_counts() == masked.active_counts()
    assert sparse.mask_checksum() == masked.mask_checksum()
    assert sparse.summary() == masked.summary()
    if algorithm == "rigl":
        assert sparse.algorithm.step == masked.algorithm.step == STEPS


def test_the_optimizer_is_handed_over_with_state_of_the_active_length():
    model, sparse = library_run("truly_sparse", "static", steps=2)
    params = [p for group in sparse.optimizer.param_groups for p in group["params"]]
    assert {id(p) for p in params} == {id(p) for p in model.parameters()}
    for layer in (model[0], model[2], model[4]):
        momentum = sparse.optimizer.state[layer.values]["momentum_buffer"]
        assert momentum.shape == layer.values.shape == (layer.nnz,)


def test_state_dict_holds_no_masks_and_export_stores_only_the_active_entries(tmp_path):
    model, sparse = library_run("truly_sparse", "set", steps=4, schedule="step", period=2)
    state = sparse.state_dict()
    assert "masks" not in state["algorithm"] and state["steps"] == 4
    assert "init_std" in state["algorithm"]  # SET's own state comes along
    size = sparse.export(tmp_path / "model.pt", {"note": "truly sparse"})
    saved = torch.load(tmp_path / "model.pt", map_location="cpu", weights_only=False)
    for name, layer in sparse.execution.layers.items():
        stored = saved["tensors"][name]
        assert stored.layout == torch.sparse_csr and stored.values().numel() == layer.nnz
    assert size == (tmp_path / "model.pt").stat().st_size
    dense_model = mlp(seed=5)
    info = snfs.load_sparse(dense_model, tmp_path / "model.pt")
    assert info["config"]["note"] == "truly sparse" and info["config"]["algorithm"] == "set"
    for name, weight in dense_weights(model).items():
        assert torch.equal(dense_weights(dense_model)[name], weight)
        assert torch.equal(info["masks"][name], sparse.masks[name])


def test_set_and_dsr_keep_their_counts_and_change_their_masks():
    for algorithm, options in (("set", {"schedule": "step", "period": 3}), ("dsr", {"rewire_periods": [[0, 3]]})):
        model = mlp()
        first = snfs.sparsify(
            model, torch.optim.SGD(model.parameters(), lr=0.1), algorithm, 0.25, epochs=1, steps_per_epoch=1, seed=3
        ).masks
        _, sparse = library_run("truly_sparse", algorithm, **options)
        assert sparse.density == pytest.approx(0.25, abs=1e-3)
        changed = sum(int((sparse.masks[k] != m).sum()) for k, m in first.items())
        assert changed > 0, f"{algorithm}: no round changed a mask"


@pytest.mark.parametrize("algorithm", ["deepr", "deepr_dsr_code"])
def test_deepr_step_drops_the_masked_modes_connections_and_wakes_as_many_elsewhere(algorithm):
    """One step at temperature 0 (no noise: the L1 shrink and the crossings are deterministic)."""
    options = {"temperatures": [[0.0, 0.0]], "alpha": 0.05 if algorithm == "deepr" else 1.0}
    masked_model, masked = library_run("masked", algorithm, steps=1, **options)
    model, sparse = library_run("truly_sparse", algorithm, steps=1, **options)
    start_model = mlp()
    start = snfs.sparsify(
        start_model,
        torch.optim.SGD(start_model.parameters(), lr=0.1),
        "static",
        0.25,
        epochs=1,
        steps_per_epoch=1,
        seed=3,
        verbose=False,
    ).masks  # the initial masks: the same draw from the same seed
    truly = dense_weights(model)
    crossed_somewhere = 0
    for name, weight in dense_weights(masked_model).items():
        before, after_masked, after_truly = start[name], masked.masks[name], sparse.masks[name]
        kept = before & after_masked
        crossed_somewhere += int((before & ~after_masked).sum())
        assert torch.equal(before & after_truly, kept), f"{name}: other connections crossed zero"
        torch.testing.assert_close(truly[name][kept], weight[kept], atol=ATOL, rtol=RTOL)
        woken = after_truly & ~before
        assert int(woken.sum()) == int((after_masked & ~before).sum())  # as many woken as crossed, per layer
        assert bool((truly[name][woken] == 0).all())  # at theta = 0
        layer = model.get_submodule(name.removesuffix(".weight"))
        momentum = sparse.optimizer.state[layer.values]["momentum_buffer"]
        assert bool((momentum[woken.reshape(-1)[layer.indices]] == 0).all())
    assert crossed_somewhere > 0, "no connection crossed zero: the comparison would be vacuous"


def test_dormant_signs_are_a_fair_coin_per_position_and_layer():
    from snfs.algorithms.deepr import dormant_sign

    n = 1_000_000
    positions = torch.arange(n)
    first, second = dormant_sign(positions, 17_000_051), dormant_sign(positions, 17_000_052)
    assert set(first.unique().tolist()) == {-1.0, 1.0}
    bound = 5 * 0.5 / n**0.5  # five standard deviations of a fair coin's frequency over n draws
    for frequency in (
        (first > 0).double().mean(),
        (first[1:] == first[:-1]).double().mean(),  # neighbours independent
        (first == second).double().mean(),  # layers independent
    ):
        assert abs(float(frequency) - 0.5) < bound
    assert torch.equal(dormant_sign(positions[:1000], 17_000_051), first[:1000])  # fixed: a function of position


def _chi_square_bound(dof: int) -> float:
    """The chi-square quantile at p = 1e-4 (Wilson-Hilferty approximation), as tests/unit/test_truly_sparse.py uses."""
    z = 3.719
    return dof * (1 - 2 / (9 * dof) + z * math.sqrt(2 / (9 * dof))) ** 3


@pytest.mark.parametrize(
    "algorithm,options",
    [
        ("set", {"schedule": "step", "period": 1, "zeta": 0.5}),
        ("dsr", {"rewire_periods": [[0, 1]], "initial_threshold": 0.3, "target_prune": 3}),
        ("deepr", {"temperatures": [[0.0, 0.0]], "alpha": 2.0}),
    ],
)
def test_every_rounds_random_growth_is_uniform_over_the_free_positions(algorithm, options, monkeypatch):
    """Many rounds on one 4 x 5 layer: each grown position's rank among the free ones is uniform, counts exact."""
    import snfs.truly_sparse as truly_sparse

    calls: list[tuple[torch.Tensor, int, int, torch.Tensor]] = []
    sampler = truly_sparse.sample_inactive

    def recording(occupied, numel, n, generator):
        grown = sampler(occupied, numel, n, generator)
        calls.append((occupied.clone(), numel, n, grown.clone()))
        return grown

    monkeypatch.setattr(truly_sparse, "sample_inactive", recording)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    rounds = 3000
    sparse = snfs.sparsify(
        model,
        optimizer,
        algorithm,
        0.4,
        epochs=1,
        steps_per_epoch=rounds,
        seed=7,
        verbose=False,
        execution="truly_sparse",
        **options,
    )
    run = sparse.execution
    ranks = torch.zeros(20, dtype=torch.long)
    free_sizes = set()
    for step in range(rounds):
        before = run.layers["0.weight"].indices.clone()
        calls.clear()
        run.before_step(step)  # DeepR reads its signs here
        run.round(step)
        for occupied, numel, n, grown in calls:
            assert grown.numel() == n and grown.unique().numel() == n  # exact count, distinct
            free = sorted(set(range(numel)) - set(occupied.tolist()))
            assert set(grown.tolist()) <= set(free)
            if algorithm == "deepr":  # dormant ones only: the just-crossed stay asleep
                assert not set(grown.tolist()) & set(before.tolist())
            free_sizes.add(len(free))
            for position in grown.tolist():
                ranks[free.index(position)] += 1
    assert len(free_sizes) == 1, f"the free set changed size {free_sizes}: ranks are comparable only at one size"
    size = free_sizes.pop()
    counts = ranks[:size].double()
    assert counts.sum() > 10 * size, "too few positions grown for the test to say anything"
    expected = counts.sum() / size
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < _chi_square_bound(size - 1), f"chi-square {chi2:.0f} over {size - 1} degrees of freedom"


def test_the_config_check_refuses_sparse_momentum_before_any_data_loads():
    from snfs.config import validate_config

    with pytest.raises(ConfigError, match="execution=truly_sparse does not run sparse=momentum"):
        validate_config(compose_cfg(["sparse=momentum", "execution=truly_sparse"]))
    validate_config(compose_cfg(["sparse=deepr_dsr_code", "execution=truly_sparse"]))
