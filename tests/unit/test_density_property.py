"""Every registered algorithm, driven through the training loop's hook sequence, keeps its density exact.

At every step: inactive weights are exactly 0, the number of active weights equals the initial
number (dense: every weight), and biases are never masked.
"""

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from support import CONF
from torch import nn

from snfs.algorithms import ALGORITHMS, build_algorithm
from snfs.algorithms.base import TrainingContext

EPOCHS, STEPS_PER_EPOCH, DENSITY = 10, 20, 0.1
# Faster update schedules, so that every algorithm changes its masks many times in 200 steps.
FAST = {
    "dsr": {"rewire_periods": [[0, 5], [5, 10]], "target_prune": 0.05},
    "rigl": {"delta_t": 10},
    "set": {"schedule": "step", "period": 7},
    "deepr": {"temperatures": [[0.0, 1.0e-4], [0.5, 1.0e-8]]},
}
# Variants: (registered algorithm, options over its YAML), as the conf/sparse/<variant>.yaml files set them.
VARIANTS = {"deepr_dsr_code": ("deepr", {"new_sign": "first_update", "noise_and_l1": "gradient"})}


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 4))


@pytest.mark.parametrize("variant", [*ALGORITHMS.names(), *VARIANTS])
def test_density_is_exact_at_every_step(variant):
    name, options = VARIANTS.get(variant, (variant, {}))
    torch.manual_seed(0)
    data = torch.Generator().manual_seed(1)
    xs, ys = torch.randn(256, 20, generator=data), torch.randint(0, 4, (256,), generator=data)
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    batches = iter(())

    def next_batch():
        nonlocal batches
        try:
            return next(batches)
        except StopIteration:
            order = torch.randperm(256, generator=data)
            batches = iter([(xs[order[i : i + 32]], ys[order[i : i + 32]]) for i in range(0, 256, 32)])
            return next(batches)

    ctx = TrainingContext(
        model=model,
        optimizer=opt,
        density=DENSITY,
        epochs=EPOCHS,
        steps_per_epoch=STEPS_PER_EPOCH,
        seed=0,
        sample_batch=next_batch,
        loss_fn=F.cross_entropy,
    )
    yaml = CONF / "sparse" / f"{name}.yaml"
    cfg = OmegaConf.to_container(OmegaConf.load(yaml), resolve=True) if yaml.exists() else {"name": name}
    algo = build_algorithm(ctx, {**cfg, **FAST.get(name, {}), **options})
    algo.init_masks()
    weights = algo.params
    biases = [p for n, p in model.named_parameters() if n.endswith("bias")]
    assert all(all(b is not w for w in weights.values()) for b in biases)
    initial = algo.masks.total_active()
    numel = sum(p.numel() for p in weights.values())
    assert initial == (numel if name == "dense" else pytest.approx(DENSITY * numel, abs=len(weights)))
    changed = 0

    def check(where):
        for k, p in weights.items():
            assert torch.all(p.detach()[~algo.masks.masks[k]] == 0), f"{name}: inactive weights of {k} not 0 {where}"
        assert algo.masks.total_active() == initial, f"{name}: active count changed {where}"

    for step in range(EPOCHS * STEPS_PER_EPOCH):
        x, y = next_batch()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        algo.before_step(step)
        opt.step()
        stats = algo.after_step(step)
        changed += int(bool(stats))
        check(f"after step {step}")
        if (step + 1) % STEPS_PER_EPOCH == 0:
            stats = algo.on_epoch_end(step // STEPS_PER_EPOCH)
            changed += int(bool(stats))
            check(f"after epoch {step // STEPS_PER_EPOCH}")
        if stats:
            assert stats["pruned"] == stats["regrown"], f"{name}: {stats}"
    assert all(bool(torch.all(b != 0)) for b in biases), f"{name}: a bias was masked"
    if name in ("set", "dsr", "deepr", "rigl", "momentum"):
        assert changed > 0, f"{name} never changed its masks"
    if name in ("static", "snip", "dense"):
        assert changed == 0


def test_variants_here_match_their_yaml():
    from support import compose_cfg

    for variant, (name, options) in VARIANTS.items():
        sparse = compose_cfg([f"sparse={variant}"]).sparse
        assert sparse.name == name and sparse.label == variant
        assert {k: sparse[k] for k in options} == options
