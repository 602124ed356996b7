"""The training protocol's contracts that a run's numbers silently depend on.

Each test here once let an injected bug through the fast tier:
  * the ERK and Erdos-Renyi initial distributions giving the same masks on a conv net;
  * the epoch's validation measured after the epoch-end mask update (on a network that was never trained);
  * the global torch RNG (dropout) not restored on resume, so a resumed run drifts from an uninterrupted one.
"""

from __future__ import annotations

import torch
from support import compose_cfg
from support.protocol import FAKE

import snfs.train as train_module
from snfs.train import Trainer

# --- validation comes before the epoch-end mask update -----------------------------------------------


def test_validation_measures_the_network_before_the_epoch_end_mask_update(tmp_path, monkeypatch):
    """The logged val_loss/val_error are those of the network as trained in the epoch, not after pruning."""
    trainer = Trainer(
        compose_cfg(FAKE + ["sparse=momentum", "density=0.2", "epochs=3", "limit_batches=3", f"results_dir={tmp_path}"])
    )
    real_evaluate, real_update = train_module.evaluate, trainer.algo.on_epoch_end
    calls, snapshots = [], []

    def evaluate(model, batches, *args, **kwargs):
        calls.append("validate" if batches is trainer.data.val else "test")
        return real_evaluate(model, batches, *args, **kwargs)

    def on_epoch_end(epoch):
        calls.append("mask update")
        before = real_evaluate(trainer.model, trainer.data.val, trainer.autocast, trainer.channels_last)
        update = real_update(epoch)
        after = real_evaluate(trainer.model, trainer.data.val, trainer.autocast, trainer.channels_last)
        snapshots.append((before, after, update))
        return update

    monkeypatch.setattr(train_module, "evaluate", evaluate)
    trainer.algo.on_epoch_end = on_epoch_end
    result = trainer.fit()
    assert calls == ["validate", "mask update"] * 3 + ["test"]
    history = result["history"]
    for record, (before, _after, _update) in zip(history, snapshots):
        assert (record["val_loss"], record["val_error"]) == before, f"epoch {record['epoch']}"
    # the check can tell the two apart: the updates of epochs 1 and 2 change the network's validation loss
    assert [bool(u) and u["pruned"] > 0 for _, _, u in snapshots] == [True, True, False]
    assert all(before[0] != after[0] for before, after, _ in snapshots[:2])


# --- resume restores the global torch RNG (dropout) ---------------------------------------------------


def test_resume_restores_the_torch_rng_so_dropout_continues(tmp_path):
    """WRN-28-2 has dropout, drawn from the global torch RNG: a run stopped after epoch 1 and resumed
    must end bit-identical to an uninterrupted one, RNG state included."""
    common = FAKE + [
        "model=wrn28_2",
        "dataset.shape=[3,8,8]",
        "dataset.n_train=64",
        "dataset.n_val=16",
        "dataset.n_test=16",
        "batch_size=16",
        "limit_batches=2",
        "epochs=2",
    ]
    straight_trainer = Trainer(compose_cfg(common + [f"results_dir={tmp_path / 'a'}"]))
    assert any(isinstance(m, torch.nn.Dropout) and m.p > 0 for m in straight_trainer.model.modules())
    straight = straight_trainer.fit()
    straight_rng = torch.get_rng_state()
    assert Trainer(compose_cfg(common + [f"results_dir={tmp_path / 'b'}", "stop_after_epoch=1"])).fit() is None
    torch.manual_seed(12345)  # whatever the process did in between must not matter
    resumed_trainer = Trainer(compose_cfg(common + [f"results_dir={tmp_path / 'b'}", "resume=true"]))
    resumed = resumed_trainer.fit()
    assert torch.equal(torch.get_rng_state(), straight_rng), "the torch RNG state was not restored on resume"
    for k, w in straight_trainer.model.state_dict().items():
        assert torch.equal(w, resumed_trainer.model.state_dict()[k]), k
    assert [h["train_loss"] for h in resumed["history"]] == [h["train_loss"] for h in straight["history"]]
    assert resumed["test_error"] == straight["test_error"]
