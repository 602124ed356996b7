"""``execution=sparse`` computes what ``execution=masked`` computes, for every algorithm, within fp32 rounding."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from snfs.errors import ConfigError
from snfs.execution import CsrPattern, RouteSettings, SparseExecution, SparseLinearFunction
from snfs.masks import MaskState


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


def test_dense_weight_gradient_is_asked_for_exactly_where_the_algorithm_reads_it():
    """Sparse momentum every step; RigL on its update steps only; the masked-gradient algorithms never."""
    from omegaconf import OmegaConf
    from support import CONF

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
