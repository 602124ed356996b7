"""The execution and the algorithm talk through arguments: neither sets the other's attributes.

``execution=sparse`` computes some layers' weight gradients at the active weights only; it says which
(``masked_grads()``), and the sparsifier passes that to ``before_step``, which then leaves those layers alone.
"""

from __future__ import annotations

import torch
from torch import nn

from snfs.algorithms import TrainingContext, build_algorithm
from snfs.execution import RouteSettings, SparseExecution, build_execution
from snfs.masks import MaskState


class ReadOnlyAlgorithm:
    """What the execution reads of an algorithm (weights, masks, gradient needs); setting anything fails."""

    def __init__(self, model: nn.Sequential, dense_grad: bool):
        params = {"0.weight": model[0].weight, "2.weight": model[2].weight}
        masks = MaskState({k: torch.rand(p.shape) < 0.2 for k, p in params.items()})
        object.__setattr__(self, "params", params)
        object.__setattr__(self, "masks", masks)
        object.__setattr__(self, "dense_grad", dense_grad)

    def needs_dense_grad(self, step: int) -> bool:
        return self.dense_grad

    def __setattr__(self, name: str, value: object) -> None:
        raise AssertionError(f"the execution set the algorithm's {name}")


def test_the_execution_says_which_gradients_came_out_masked_and_writes_nothing_on_the_algorithm():
    torch.manual_seed(0)
    for dense_grad, expected in ((False, {"0.weight", "2.weight"}), (True, set())):
        model = nn.Sequential(nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3))
        algo = ReadOnlyAlgorithm(model, dense_grad)
        execution = SparseExecution(model, algo, RouteSettings(linear="csr", max_density=1.0))
        execution.begin_step(0)
        assert execution.masked_grads() == frozenset()  # nothing computed yet this step
        model(torch.randn(5, 12)).sum().backward()
        assert execution.masked_grads() == expected
        execution.begin_step(1)
        assert execution.masked_grads() == frozenset()
    masked = build_execution("masked", model, algo, torch.device("cpu"))
    assert masked.masked_grads() == frozenset()


def test_before_step_leaves_the_layers_it_is_told_are_masked():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3))
    ctx = TrainingContext(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        density=0.3,
        epochs=1,
        steps_per_epoch=1,
        seed=0,
    )
    algo = build_algorithm(ctx, {"name": "static"})
    algo.init_masks()
    for p in algo.params.values():
        p.grad = torch.ones_like(p)
    algo.before_step(0, frozenset({"0.weight"}))
    assert torch.equal(algo.params["0.weight"].grad, torch.ones(8, 12))  # left as the execution computed it
    assert torch.equal(algo.params["2.weight"].grad, algo.masks.masks["2.weight"].float())
