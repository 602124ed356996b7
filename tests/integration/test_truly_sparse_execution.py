"""``execution=truly_sparse`` through the library (``snfs.sparsify``) and the trainer: the same results as ``masked``.

The layer, the index-space prune and grow and the checkpoint conversion are tested on their own in
tests/unit/test_truly_sparse.py; here the execution is a choice like the other two.
"""

from __future__ import annotations

import json

import pytest
import torch
from support import compose_cfg
from support.truly_sparse import dense_weights
from torch import nn

from snfs.train import Trainer

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


def _fit(overrides: list[str], float64: bool = False) -> Trainer:
    """A run through the trainer; with ``float64`` the model and optimizer state in float64 (data converted)."""
    if not float64:
        trainer = Trainer(compose_cfg(overrides))
        trainer.fit()
        return trainer
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    to_float64 = nn.modules.module.register_module_forward_pre_hook(
        lambda module, args: tuple(a.double() if torch.is_tensor(a) and a.is_floating_point() else a for a in args)
    )
    try:
        trainer = Trainer(compose_cfg(overrides))
        trainer.fit()
    finally:
        to_float64.remove()
        torch.set_default_dtype(default_dtype)
    return trainer


def _tolerance(masked: Trainer) -> float:
    """Sums in another order: at most fan-in x eps per step (Higham eq. 3.5), as tests/test_execution.py argues."""
    fan_in = max(p[0].numel() for p in masked.algo.params.values())
    return masked.progress.step * fan_in * torch.finfo(torch.float64).eps


def _trained_weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    weights = dense_weights(trainer.model)
    weights.update({k: v for k, v in trainer.model.state_dict().items() if k.endswith("bias")})
    return weights


@pytest.mark.parametrize("algorithm", ["static", "snip", "rigl"])
def test_trainer_truly_sparse_gives_the_masked_runs_masks_and_weights(algorithm, quick_overrides, tmp_path):
    base = quick_overrides + [f"sparse={algorithm}", "density=0.1", "epochs=3", "limit_batches=8"]
    base += FAST.get(algorithm, [])
    masked = _fit(base + ["execution=masked", f"results_dir={tmp_path / 'masked'}"], float64=True)
    sparse = _fit(base + ["execution=truly_sparse", f"results_dir={tmp_path / 'truly'}"], float64=True)
    assert sparse.execution.name == "truly_sparse"
    assert set(sparse.execution.routes().values()) == {"truly_sparse"}
    if algorithm == "rigl":
        assert sum(h["mask_updates"] for h in masked.progress.history) >= 2
    assert [h["pruned"] for h in sparse.progress.history] == [h["pruned"] for h in masked.progress.history]
    assert [h["density"] for h in sparse.progress.history] == [h["density"] for h in masked.progress.history]
    for name, mask in masked.sparse.masks.items():
        assert torch.equal(sparse.sparse.masks[name], mask), f"{algorithm}: masks of {name} differ"
    tolerance = _tolerance(masked)
    reference = _trained_weights(masked)
    for name, value in _trained_weights(sparse).items():
        assert value.dtype == torch.float64
        torch.testing.assert_close(value, reference[name], rtol=tolerance, atol=tolerance)
    # the FLOP count sees the truly sparse layers as the linear layers they compute
    assert sparse.flops.total == pytest.approx(masked.flops.total)


def test_run_record_says_truly_sparse_ran_and_its_peak_memory(quick_overrides, tmp_path):
    trainer = Trainer(
        compose_cfg(
            quick_overrides
            + ["sparse=set", "execution=truly_sparse", "epochs=2", "limit_batches=3", f"results_dir={tmp_path}"]
        )
    )
    result = trainer.fit()
    record = json.loads((tmp_path / f"{trainer.run_id}.json").read_text())
    assert record["execution"] == result["execution"] == "truly_sparse"
    assert record["peak_rss_mb"] > 0
    assert record["final_density"] == pytest.approx(0.05, abs=1e-3)
    assert record["history"][0]["pruned"] > 0  # SET's epoch-end round ran


@pytest.mark.parametrize("algorithm", ["static", "rigl"])
def test_a_checkpoint_resumes_across_executions(algorithm, quick_overrides, tmp_path):
    """masked to epoch 1, truly sparse to epoch 2, masked to 3 = masked throughout; and truly sparse first."""
    base = quick_overrides + [f"sparse={algorithm}", "density=0.1", "epochs=3", "limit_batches=6"]
    base += FAST.get(algorithm, [])
    whole = _fit(base + [f"results_dir={tmp_path / 'whole'}"], float64=True)
    tolerance = _tolerance(whole)
    for order in (("masked", "truly_sparse", "masked"), ("truly_sparse", "masked", "truly_sparse")):
        runs = [*base, f"results_dir={tmp_path / '-'.join(order)}"]
        _fit(runs + [f"execution={order[0]}", "stop_after_epoch=1"], float64=True)
        _fit(runs + [f"execution={order[1]}", "stop_after_epoch=2", "resume=true"], float64=True)
        resumed = _fit(runs + [f"execution={order[2]}", "resume=true"], float64=True)
        assert resumed.progress.epoch == 3 and resumed.execution.name == order[2]
        for name, mask in whole.sparse.masks.items():
            assert torch.equal(resumed.sparse.masks[name], mask), f"{order}: masks of {name} differ"
        reference = _trained_weights(whole)
        for name, value in _trained_weights(resumed).items():
            torch.testing.assert_close(value, reference[name], rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("algorithm", ["deepr", "deepr_dsr_code"])
def test_deepr_through_the_trainer_keeps_its_counts_and_resumes_across_executions(algorithm, quick_overrides, tmp_path):
    base = quick_overrides + [
        f"sparse={algorithm}",
        "density=0.1",
        "epochs=3",
        "limit_batches=6",
        "sparse.temperatures=[[0.0,1e-4]]",
        f"results_dir={tmp_path / 'runs'}",
    ]
    _fit(base + ["execution=truly_sparse", "stop_after_epoch=1"])
    middle = _fit(base + ["execution=masked", "stop_after_epoch=2", "resume=true"])
    assert middle.progress.epoch == 2
    last = _fit(base + ["execution=truly_sparse", "resume=true"])
    assert last.progress.epoch == 3
    history = last.progress.history
    assert sum(h["pruned"] for h in history) > 0 and [h["pruned"] for h in history] == [h["regrown"] for h in history]
    assert last.sparse.active_counts() == middle.sparse.active_counts()
    assert all(h["density"] == pytest.approx(history[0]["density"]) for h in history)


@pytest.mark.parametrize("algorithm", ["static", "rigl"])
def test_trainer_lenet5_keeps_its_convolutions_masked_and_resumes_across_executions(
    algorithm, quick_overrides, tmp_path
):
    """LeNet-5-Caffe: convolutions masked, fully connected layers truly sparse; equal to masked throughout."""
    base = quick_overrides + ["model=lenet5_caffe", f"sparse={algorithm}", "density=0.1", "epochs=3", "limit_batches=4"]
    base += FAST.get(algorithm, [])
    masked = _fit(base + ["execution=masked", f"results_dir={tmp_path / 'masked'}"], float64=True)
    runs = [*base, f"results_dir={tmp_path / 'mixed'}"]
    _fit(runs + ["execution=truly_sparse", "stop_after_epoch=1"], float64=True)
    _fit(runs + ["execution=masked", "stop_after_epoch=2", "resume=true"], float64=True)
    resumed = _fit(runs + ["execution=truly_sparse", "resume=true"], float64=True)
    routes = resumed.execution.routes()
    assert {routes[k] for k in routes if k.startswith("conv")} == {"masked"}
    assert {routes[k] for k in routes if k.startswith("fc")} == {"truly_sparse"}
    for name, mask in masked.sparse.masks.items():
        assert torch.equal(resumed.sparse.masks[name], mask), f"{algorithm}: masks of {name} differ"
    tolerance = _tolerance(masked)
    reference = {k: v for k, v in masked.model.state_dict().items()}
    reference.update(_trained_weights(masked))
    for name, value in _trained_weights(resumed).items():
        torch.testing.assert_close(value, reference[name], rtol=tolerance, atol=tolerance)
    for name, value in resumed.model.state_dict().items():
        if name.startswith("conv"):
            torch.testing.assert_close(value, reference[name], rtol=tolerance, atol=tolerance)
