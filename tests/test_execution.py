"""``execution=sparse`` computes what ``execution=masked`` computes, for every algorithm, within fp32 rounding."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import compose_cfg
from torch import nn

from snfs.algorithms import ALGORITHMS
from snfs.errors import ConfigError
from snfs.execution import CsrPattern, RouteSettings, SparseExecution, SparseLinearFunction
from snfs.masks import MaskState
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
    for (name, a), (_, b) in zip(masked.model.state_dict().items(), sparse.model.state_dict().items()):
        assert a.dtype == torch.float64
        torch.testing.assert_close(b, a, rtol=tolerance, atol=tolerance)


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
    for (name, a), (_, b) in zip(masked.model.state_dict().items(), sparse.model.state_dict().items()):
        torch.testing.assert_close(b, a, rtol=tolerance, atol=tolerance)


def test_sparse_conv_gradients_match_dense():
    from snfs.execution import SparseConv2dFunction

    torch.manual_seed(0)
    mask = torch.rand(6, 4, 3, 3) < 0.3
    w = (torch.randn(6, 4, 3, 3) * mask).requires_grad_()
    b = torch.randn(6, requires_grad=True)
    x = torch.randn(2, 4, 9, 7, requires_grad=True)
    pattern = CsrPattern.from_mask(mask.reshape(6, -1))
    geometry = ((2, 1), (1, 2), (1, 1))
    for dense_grad in (True, False):
        out = SparseConv2dFunction.apply(x, w, b, pattern, dense_grad, geometry)
        ref = F.conv2d(x, w, b, stride=(2, 1), padding=(1, 2))
        torch.testing.assert_close(out, ref)
        g = torch.randn_like(out)
        got, want = torch.autograd.grad(out, (x, w, b), g), torch.autograd.grad(ref, (x, w, b), g)
        torch.testing.assert_close(got[0], want[0])
        torch.testing.assert_close(got[2], want[2])
        torch.testing.assert_close(got[1], want[1] if dense_grad else want[1] * mask)


@pytest.fixture
def timings(monkeypatch):
    """Route timings the test sets (dense seconds, CSR seconds), with an empty cache of timed routes."""
    import snfs.execution as ex

    queue: list[tuple[float, float]] = []
    monkeypatch.setattr(ex, "TIMED_ROUTES", {})
    monkeypatch.setattr(ex, "_time_routes", lambda dense, sparse, device, rounds: queue.pop(0))
    return queue


def test_timed_conv_route_keeps_the_faster_one(timings):
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten())
    algo = _Algo.__new__(_Algo)
    algo.params = {"0.weight": model[0].weight}
    algo.masks = MaskState({"0.weight": torch.rand(8, 3, 3, 3) < 0.1})
    algo.needs_dense_grad = lambda step: False
    execution = SparseExecution(model, algo, RouteSettings())
    x = torch.randn(2, 3, 6, 6)
    timings.append((1.0, 2.0))  # dense 1 s, sparse 2 s: the dense convolution wins
    model(x)
    assert execution.routes() == {"0.weight": "masked"}
    timings.append((2.0, 1.0))  # at another input shape the sparse route wins
    model(torch.randn(4, 3, 6, 6))
    assert execution.routes() == {"0.weight": "csr"}
    model(x)  # the first shape again: its timing is kept, nothing is timed anew
    assert execution.routes() == {"0.weight": "masked"} and timings == []


def test_timed_linear_route_is_timed_once_per_layer_shape_and_need(timings):
    """Two layers of one shape share a timing; a step that needs the dense weight gradient is timed apart."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(30, 30), nn.ReLU(), nn.Linear(30, 30))
    algo = _Algo(model)
    algo.masks.set("2.weight", algo.masks.masks["0.weight"].clone())  # one density too
    execution = SparseExecution(model, algo, RouteSettings())
    x = torch.randn(4, 30)
    timings.append((2.0, 1.0))  # sparse-gradient steps: CSR wins, for both layers
    execution.begin_step(0)
    model(x).sum().backward()
    assert execution.routes() == {"0.weight": "csr", "2.weight": "csr"} and timings == []
    algo.dense = True
    timings.append((1.0, 2.0))  # dense-gradient steps: the dense route wins
    execution.begin_step(1)
    model(x).sum().backward()
    assert execution.routes() == {"0.weight": "masked", "2.weight": "masked"}
    with torch.no_grad():  # evaluation: forward only, timed on its own
        timings.append((2.0, 1.0))
        model(x)
    assert execution.routes() == {"0.weight": "csr", "2.weight": "csr"} and timings == []


def test_timing_of_the_routes_runs_both_on_the_layer():
    """The real timer: both callables run (warm-up plus every round) and each gets a best time."""
    from snfs.execution import _time_routes

    calls = {"dense": 0, "sparse": 0}
    dense_s, sparse_s = _time_routes(
        lambda: calls.__setitem__("dense", calls["dense"] + 1),
        lambda: calls.__setitem__("sparse", calls["sparse"] + 1),
        torch.device("cpu"),
        3,
    )
    assert calls == {"dense": 4, "sparse": 4} and 0 <= dense_s < 1 and 0 <= sparse_s < 1


def test_route_settings_are_checked():
    with pytest.raises(
        ConfigError, match="execution route linear='fast' is not a valid choice; valid choices: timed, csr, dense"
    ):
        SparseExecution(nn.Sequential(nn.Linear(3, 2)), _Algo.__new__(_Algo), RouteSettings(linear="fast"))


def test_sparse_linear_gradients_match_dense():
    torch.manual_seed(0)
    mask = torch.rand(7, 11) < 0.3
    w = (torch.randn(7, 11) * mask).requires_grad_()
    b = torch.randn(7, requires_grad=True)
    x = torch.randn(5, 11, requires_grad=True)
    pattern = CsrPattern.from_mask(mask)
    for dense_grad in (True, False):
        out = SparseLinearFunction.apply(x, w, b, pattern, dense_grad)
        g = torch.randn_like(out)
        gx, gw, gb = torch.autograd.grad(out, (x, w, b), g)
        ref = F.linear(x, w, b)
        rx, rw, rb = torch.autograd.grad(ref, (x, w, b), g)
        torch.testing.assert_close(out, ref)
        torch.testing.assert_close(gx, rx)
        torch.testing.assert_close(gb, rb)
        if dense_grad:
            torch.testing.assert_close(gw, rw)
        else:
            torch.testing.assert_close(gw, rw * mask)
            assert torch.count_nonzero(gw[~mask]) == 0


class _Algo:
    """The part of an algorithm the execution reads: its weights, masks and gradient needs."""

    def __init__(self, model):
        self.params = {"0.weight": model[0].weight, "2.weight": model[2].weight}
        self.masks = MaskState({k: torch.rand(p.shape) < 0.1 for k, p in self.params.items()})
        self.dense = False

    def needs_dense_grad(self, step):
        return self.dense


def test_csr_pattern_is_rebuilt_only_when_a_mask_changes(monkeypatch):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(30, 20), nn.ReLU(), nn.Linear(20, 5))
    algo = _Algo(model)
    execution = SparseExecution(model, algo, RouteSettings(linear="csr"))
    builds = []
    original = CsrPattern.from_mask
    monkeypatch.setattr(CsrPattern, "from_mask", classmethod(lambda cls, m: builds.append(1) or original(m)))
    x = torch.randn(4, 30)
    for step in range(3):
        execution.begin_step(step)
        model(x).sum().backward()
    assert len(builds) == 2  # one per layer, at the first forward
    algo.masks.set("0.weight", torch.rand(20, 30) < 0.1)
    model(x)
    assert len(builds) == 3  # only the changed layer
    algo.masks.load_state_dict(algo.masks.state_dict())
    model(x)
    assert len(builds) == 5


def test_layers_too_dense_or_too_small_keep_the_masked_route():
    model = nn.Sequential(nn.Linear(30, 20), nn.ReLU(), nn.Linear(20, 5))
    algo = _Algo(model)
    algo.masks.set("2.weight", torch.ones(5, 20, dtype=torch.bool))
    csr = dict(linear="csr", max_density=0.2)
    execution = SparseExecution(model, algo, RouteSettings(**csr))
    assert execution.routes() == {"0.weight": "csr", "2.weight": "masked"}
    algo.masks.set("2.weight", torch.rand(5, 20) < 0.1)
    assert SparseExecution(model, algo, RouteSettings(**csr)).routes()["2.weight"] == "csr"
    assert SparseExecution(model, algo, RouteSettings(**csr, min_weights=101)).routes() == {
        "0.weight": "csr",
        "2.weight": "masked",
    }
    assert set(SparseExecution(model, algo, RouteSettings(linear="dense")).routes().values()) == {"masked"}


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
    for (name, a), (_, b) in zip(whole.model.state_dict().items(), resumed.model.state_dict().items()):
        torch.testing.assert_close(b, a, rtol=tolerance, atol=tolerance)


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


def test_measured_speedup_compares_runs_of_one_machine():
    from snfs.report.tables import Row, measured_speedup_post

    def run(machine, t):
        return {"machine": machine, "median_epoch_time_s": t}

    dense = Row(setting={"model": "m", "method": "dense"}, runs=[run("a", 10.0), run("b", 4.0)])
    sparse = Row(setting={"model": "m", "method": "sparse_momentum"}, runs=[run("a", 5.0), run("a", 5.0)])
    elsewhere = Row(setting={"model": "m", "method": "snip"}, runs=[run("c", 1.0)])
    other_model = Row(setting={"model": "n", "method": "snip"}, runs=[run("a", 1.0)])
    measured_speedup_post([dense, sparse, elsewhere, other_model])
    key = "wall-clock speedup (measured)"
    assert sparse.extra[key] == pytest.approx(2.0)  # machine a only: 10 / 5
    assert dense.extra[key] == pytest.approx(1.0)
    assert elsewhere.extra[key] != elsewhere.extra[key]  # nan: no dense run on machine c
    assert other_model.extra[key] != other_model.extra[key]


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


def test_dense_weight_gradient_is_asked_for_exactly_where_the_algorithm_reads_it():
    """Sparse momentum every step; RigL on its update steps only; the masked-gradient algorithms never."""
    from conftest import CONF
    from omegaconf import OmegaConf

    from snfs.algorithms import build_algorithm
    from snfs.algorithms.base import TrainingContext

    def algo(name, **extra):
        model = nn.Sequential(nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 4))
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        ctx = TrainingContext(model=model, optimizer=opt, density=0.1, epochs=4, steps_per_epoch=15, seed=0)
        cfg = OmegaConf.to_container(OmegaConf.load(CONF / "sparse" / f"{name}.yaml"), resolve=True)
        return build_algorithm(ctx, {**cfg, **extra})

    steps = range(60)
    assert all(algo("momentum").needs_dense_grad(s) for s in steps)
    rigl = algo("rigl", delta_t=10)
    assert [s for s in steps if rigl.needs_dense_grad(s)] == [s for s in steps if rigl.is_update_step(s)] != []
    for name in ("set", "static", "dsr", "deepr", "snip"):
        assert not any(algo(name).needs_dense_grad(s) for s in steps), name


def test_unknown_top_level_key_is_refused(quick_overrides):
    with pytest.raises(ConfigError, match="densty is not a key of this config; valid top-level keys: .*density"):
        Trainer(compose_cfg(quick_overrides + ["+densty=0.1"]))


def test_resume_without_a_checkpoint_says_so(quick_overrides, tmp_path, capsys):
    trainer = Trainer(
        compose_cfg(quick_overrides + ["epochs=1", "limit_batches=1", "resume=true", f"results_dir={tmp_path}"])
    )
    assert trainer.fit()["status"] == "finished"
    assert f"resume=true, but {trainer.run_id} has no checkpoint at" in capsys.readouterr().err
