"""The public library object, ``snfs.sparsify``, in plain PyTorch loops (docs/library.md)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import snfs

# --- one path: the command line and a user's loop give the same run ------------------------------------
CLI_FAST = {
    "dsr": ["sparse.rewire_periods=[[0,3]]", "sparse.target_prune=20"],
    "rigl": ["sparse.delta_t=3"],
    "set": [],
    "deepr": [],
    "deepr_dsr_code": [],
    "snip": [],
    "static": [],
    "momentum": [],
    "dense": [],
}


@pytest.mark.parametrize("variant", sorted(CLI_FAST))
def test_the_library_in_a_plain_loop_gives_the_command_lines_run(variant, quick_overrides):
    """The same seed and config through ``python -m snfs.train`` (Trainer) and through ``snfs.sparsify``
    in a hand-written loop give the same masks and the same weights."""
    from omegaconf import OmegaConf
    from support import compose_cfg

    from snfs.data import build_data
    from snfs.models import build_model
    from snfs.train import Trainer

    overrides = quick_overrides + [
        f"sparse={variant}",
        "epochs=3",
        "limit_batches=6",
        "threads=1",
        "density=0.1",
        *CLI_FAST[variant],
    ]
    trainer = Trainer(compose_cfg(overrides))
    trainer.fit()
    cfg = trainer.cfg

    # a user's loop: their model, their optimizer, their data; nothing of snfs.train
    torch.manual_seed(cfg.seed)
    data = build_data(cfg.dataset, cfg.data.root, cfg.batch_size, torch.device("cpu"), cfg.seed)
    model = build_model(cfg.model.name, data.num_classes)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4, fused=True)
    state = data.train.generator.get_state()
    first_batch = next(iter(data.train))  # SNIP scores on the run's first batch, which the run then trains on
    data.train.generator.set_state(state)
    options = OmegaConf.to_container(cfg.sparse, resolve=True)
    sparse = snfs.sparsify(
        model,
        opt,
        options.pop("name"),
        float(cfg.density),
        epochs=3,
        steps_per_epoch=6,
        seed=cfg.seed,
        sample_batch=first_batch,
        loss_fn=F.cross_entropy,
        verbose=False,
        **options,
    )
    for _ in range(3):
        for i, (x, y) in enumerate(data.train):
            if i == 6:
                break
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            sparse.step()

    assert sparse.steps == trainer.progress.step == 18
    if variant in ("momentum", "set", "rigl", "dsr"):  # the comparison covers mask updates
        assert sum(h["mask_updates"] for h in trainer.progress.history) > 0
    for k, mask in trainer.algo.masks.masks.items():
        assert torch.equal(mask, sparse.masks[k]), k
    for (k, a), b in zip(trainer.model.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), k


def test_the_library_loads_none_of_the_training_or_report_stack(tmp_path):
    """``pip install snfs`` without extras: hydra, wandb, the tables and the dashboard never load."""
    import subprocess
    import sys

    extras = (
        "hydra",
        "omegaconf",
        "wandb",
        "pandas",
        "matplotlib",
        "dash",
        "plotly",
        "markdown",
        "torchvision",
        "submitit",
        "joblib",
    )
    script = f"""
import sys
import torch
before = {{k.split(".")[0] for k in sys.modules}}
import torch.nn as nn, torch.nn.functional as F
import snfs
model = nn.Linear(10, 3)
opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
sparse = snfs.sparsify(model, opt, "momentum", 0.3, epochs=1, steps_per_epoch=2, verbose=False)
F.cross_entropy(model(torch.randn(4, 10)), torch.tensor([0, 1, 2, 0])).backward()
sparse.step()
sparse.export({str(tmp_path / "m.pt")!r})
snfs.load_sparse(model, {str(tmp_path / "m.pt")!r})
loaded = {{k.split(".")[0] for k in sys.modules}} - before
print(sorted(loaded & set({extras!r})))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
