"""``execution=sparse`` computes what ``execution=masked`` computes, for every algorithm, within fp32 rounding."""

from __future__ import annotations

import pytest
import torch
from support import compose_cfg
from torch import nn

from snfs.algorithms import ALGORITHMS
from snfs.errors import ConfigError
from snfs.execution import RouteSettings
from snfs.train import Trainer, make_run_id

# Schedules fast enough that every dynamic algorithm changes its masks several times in 4 short epochs.
FAST = {
    "rigl": ["sparse.delta_t=5"],
    "dsr": ["sparse.rewire_periods=[[0,5]]", "sparse.target_prune=0.05"],
    "deepr": ["sparse.temperatures=[[0.0,1e-4]]"],
}
ALGOS = [*ALGORITHMS.names(), "deepr_dsr_code"]


def _run(overrides: list[str], float64: bool = False, routes: RouteSettings | None = None) -> Trainer:
    if not float64:
        trainer = Trainer(compose_cfg(overrides), routes)
        trainer.fit()
        return trainer
    # model and algorithm state built in float64; the data, float32, converted where it enters a module
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    to_float64 = nn.modules.module.register_module_forward_pre_hook(
        lambda module, args: tuple(a.double() if torch.is_tensor(a) and a.is_floating_point() else a for a in args)
    )
    try:
        trainer = Trainer(compose_cfg(overrides), routes)
        trainer.fit()
    finally:
        to_float64.remove()
        torch.set_default_dtype(default_dtype)
    return trainer


def _equivalence_tolerance(trainer: Trainer) -> float:
    """How far two float64 runs may drift apart when their kernels only sum in another order.

    A dot product of n terms is off by at most n * eps times the sum of the magnitudes of its terms
    (Higham, Accuracy and Stability of Numerical Algorithms, eq. 3.5); each training step adds at
    most that (times the gradient's O(1) scale) to the difference, so n = the widest fan-in, times
    the steps taken, times eps, bounds it for parameters of magnitude O(1). float64 rather than
    float32: a ReLU input within rounding of zero takes opposite sides of the kink in the two
    runs and one unit's gradient then differs by a whole sample's share (docs/findings/sparse_execution.md
    shows the DSR case: |z| = 4.4e-9 in float32); at float64's eps that is out of reach.
    """
    fan_in = max(p[0].numel() for p in trainer.algo.params.values())
    return trainer.progress.step * fan_in * torch.finfo(torch.float64).eps


@pytest.mark.parametrize("algorithm", ALGOS)
def test_sparse_and_masked_execution_agree(algorithm, quick_overrides, tmp_path):
    csr = RouteSettings(linear="csr", max_density=1.0)  # every sparse layer on the CSR route, however dense
    base = quick_overrides + [
        f"sparse={algorithm}",
        "density=0.1",
        "epochs=4",
        "limit_batches=8",
        *FAST.get(algorithm.split("_")[0], []),
    ]
    masked = _run(base + ["execution=masked", f"results_dir={tmp_path / 'masked'}"], float64=True)
    sparse = _run(base + ["execution=sparse", f"results_dir={tmp_path / 'sparse'}"], float64=True, routes=csr)
    assert sparse.execution.name == "sparse"
    assert set(sparse.execution.routes().values()) == {"csr"}
    updates = [h["mask_updates"] for h in masked.progress.history]
    if algorithm not in ("dense", "static", "snip"):
        assert sum(updates) >= 2, f"{algorithm} changed its masks {sum(updates)} times; the test needs several"
    assert [h["pruned"] for h in sparse.progress.history] == [h["pruned"] for h in masked.progress.history]
    for name, mask in masked.algo.masks.masks.items():
        assert torch.equal(mask, sparse.algo.masks.masks[name]), f"{algorithm}: masks of {name} differ"
    tolerance = _equivalence_tolerance(masked)
    sparse_state = sparse.model.state_dict()
    for name, a in masked.model.state_dict().items():
        assert a.dtype == torch.float64
        torch.testing.assert_close(
            sparse_state[name], a, rtol=tolerance, atol=tolerance, msg=lambda m, name=name: f"{name}: {m}"
        )


@pytest.mark.parametrize("algorithm", ["momentum", "set", "rigl", "static"])
def test_sparse_convolutions_agree_with_masked(algorithm, quick_overrides, tmp_path):
    csr = RouteSettings(linear="csr", conv="csr", max_density=1.0)  # every convolution through unfold + CSR too
    base = quick_overrides + [
        "model=lenet5_caffe",
        f"sparse={algorithm}",
        "density=0.1",
        "epochs=3",
        "limit_batches=4",
        *FAST.get(algorithm, []),
    ]
    masked = _run(base + ["execution=masked", f"results_dir={tmp_path / 'masked'}"], float64=True)
    sparse = _run(base + ["execution=sparse", f"results_dir={tmp_path / 'sparse'}"], float64=True, routes=csr)
    assert set(sparse.execution.routes().values()) == {"csr"}
    for name, mask in masked.algo.masks.masks.items():
        assert torch.equal(mask, sparse.algo.masks.masks[name]), f"{algorithm}: masks of {name} differ"
    tolerance = _equivalence_tolerance(masked)
    sparse_state = sparse.model.state_dict()
    for name, a in masked.model.state_dict().items():
        torch.testing.assert_close(
            sparse_state[name], a, rtol=tolerance, atol=tolerance, msg=lambda m, name=name: f"{name}: {m}"
        )


def test_execution_is_checked_and_not_part_of_the_run_id(quick_overrides):
    with pytest.raises(ConfigError, match="execution='fast' is not a valid choice; valid choices: masked, sparse"):
        Trainer(compose_cfg(quick_overrides + ["execution=fast"]))
    assert make_run_id(compose_cfg(["execution=sparse"])) == make_run_id(compose_cfg(["execution=masked"]))


def test_checkpoint_written_masked_resumes_sparse(quick_overrides, tmp_path):
    base = quick_overrides + [
        "sparse=set",
        "density=0.1",
        "epochs=3",
        "limit_batches=6",
        f"results_dir={tmp_path / 'runs'}",
    ]
    whole = _run(base + [f"results_dir={tmp_path / 'whole'}"], float64=True)
    _run(base + ["stop_after_epoch=1"], float64=True)
    resumed = _run(base + ["resume=true", "execution=sparse"], float64=True)
    assert resumed.progress.epoch == 3
    for name, mask in whole.algo.masks.masks.items():
        assert torch.equal(mask, resumed.algo.masks.masks[name])
    tolerance = _equivalence_tolerance(whole)
    resumed_state = resumed.model.state_dict()
    for name, a in whole.model.state_dict().items():
        torch.testing.assert_close(
            resumed_state[name], a, rtol=tolerance, atol=tolerance, msg=lambda m, name=name: f"{name}: {m}"
        )


def test_run_record_says_which_execution_ran(quick_overrides, tmp_path):
    import json

    trainer = Trainer(
        compose_cfg(quick_overrides + ["execution=sparse", "epochs=3", "limit_batches=3", f"results_dir={tmp_path}"])
    )
    result = trainer.fit()
    record = json.loads((tmp_path / f"{trainer.run_id}.json").read_text())
    assert record["execution"] == result["execution"] == "sparse"
    epoch_times = sorted(h["epoch_time_s"] for h in record["history"])
    assert record["median_epoch_time_s"] == pytest.approx(epoch_times[1])


def test_a_finished_run_is_never_trained_again(quick_overrides, tmp_path, capsys):
    overrides = quick_overrides + ["epochs=1", "limit_batches=2", f"results_dir={tmp_path}"]
    first = Trainer(compose_cfg(overrides))
    record = first.fit()
    path = tmp_path / f"{first.run_id}.json"
    before = path.read_bytes()
    again = Trainer(compose_cfg(overrides + ["execution=sparse"]))  # the same run: execution is not its identity
    assert again.fit() == record
    assert path.read_bytes() == before
    assert "has already finished" in capsys.readouterr().err


def test_unknown_top_level_key_is_refused(quick_overrides):
    with pytest.raises(ConfigError, match="densty is not a key of this config; valid top-level keys: .*density"):
        Trainer(compose_cfg(quick_overrides + ["+densty=0.1"]))


def test_resume_without_a_checkpoint_says_so(quick_overrides, tmp_path, capsys):
    trainer = Trainer(
        compose_cfg(quick_overrides + ["epochs=1", "limit_batches=1", "resume=true", f"results_dir={tmp_path}"])
    )
    assert trainer.fit()["status"] == "finished"
    assert f"resume=true, but {trainer.run_id} has no checkpoint at" in capsys.readouterr().err
