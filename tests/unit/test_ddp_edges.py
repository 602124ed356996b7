"""Two DDP edge cases that once ended in a gloo traceback and no record (issue 26, findings 11 and 14).

11: a non-finite loss that only one rank sees at an every-100-steps check: the check is all-reduced, so
    every rank stops there and rank 0 records the run as diverged.
14: a last global batch that would leave one rank a single sample, which BatchNorm cannot normalise in
    training mode: it is folded into the batch before it (snfs.data.batches.TensorBatches).
"""

from __future__ import annotations

import pytest
import torch

from snfs.data.batches import TensorBatches, min_training_share


@pytest.mark.parametrize("n, batch, world", [(643, 32, 2), (641, 32, 1), (66, 32, 2), (35, 32, 4), (97, 32, 3)])
def test_no_rank_gets_a_single_sample_in_a_training_batch(n, batch, world):
    shares = []
    for rank in range(world):
        loader = TensorBatches(
            torch.zeros(n, 1),
            torch.zeros(n),
            batch,
            shuffle=True,
            generator=torch.Generator().manual_seed(0),
            rank=rank,
            world_size=world,
        )
        loader.min_share = min_training_share(torch.nn.BatchNorm1d(1))
        shares.append([len(y) for _, y in loader])
        assert len(loader) == len(shares[-1])
    per_batch = list(zip(*shares))
    assert all(min(s) >= 2 for s in per_batch), per_batch
    assert sum(map(sum, per_batch)) == n  # no sample dropped
    assert [loader.global_batch_size(i) for i in range(len(loader))] == [sum(s) for s in per_batch]


def test_a_last_batch_that_shares_well_is_kept_as_it_is():
    loader = TensorBatches(torch.zeros(643, 1), torch.zeros(643), 32, shuffle=True)
    loader.min_share = 2
    assert [len(y) for _, y in loader][-2:] == [32, 3]  # one process: 3 samples are a batch BatchNorm can use
    evaluation = TensorBatches(torch.zeros(641, 1), torch.zeros(641), 32, shuffle=False)
    evaluation.min_share = 2
    assert [len(y) for _, y in evaluation][-1] == 1  # evaluation batches (eval mode) are never folded
    without_batch_norm = TensorBatches(torch.zeros(641, 1), torch.zeros(641), 32, shuffle=True)
    without_batch_norm.min_share = min_training_share(torch.nn.Linear(1, 1))
    assert [len(y) for _, y in without_batch_norm][-1] == 1  # nothing folded: the batches of every earlier run
