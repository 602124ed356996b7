"""The public library object, ``snfs.sparsify``, in plain PyTorch loops (docs/library.md)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import snfs
from snfs.errors import ConfigError

#: options that make every algorithm update its masks within a few steps
FAST = {
    "dsr": {"rewire_periods": [[0, 2]]},
    "rigl": {"delta_t": 2},
    "set": {"schedule": "step", "period": 2},
    "deepr": {},
    "deepr_dsr_code": {},
    "snip": {},
    "static": {},
    "momentum": {},
    "dense": {},
}
ALGORITHMS = sorted(FAST)
OPTIMIZERS = {
    "sgd_momentum": lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, weight_decay=5e-4),
    "sgd_nesterov": lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True),
    "sgd_plain": lambda ps: torch.optim.SGD(ps, lr=0.05),
    "adam": lambda ps: torch.optim.Adam(ps, lr=1e-3),
    "adamw": lambda ps: torch.optim.AdamW(ps, lr=1e-3, weight_decay=1e-2),
}


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(20, 32), nn.Linear(32, 5)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


def batches(n: int, seed: int = 0, size: int = 16) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(size, 20, generator=g), torch.randint(0, 5, (size,), generator=g)) for _ in range(n)]


def build(algorithm="momentum", optimizer="sgd_momentum", density=0.3, epochs=3, steps_per_epoch=4, **kw):
    torch.manual_seed(0)
    model = MLP()
    opt = OPTIMIZERS[optimizer](model.parameters())
    data = batches(1)
    sparse = snfs.sparsify(
        model,
        opt,
        algorithm,
        1.0 if algorithm == "dense" else density,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        sample_batch=data[0],
        loss_fn=F.cross_entropy,
        verbose=False,
        **{**FAST[algorithm], **kw},
    )
    return model, opt, sparse


def train(model, opt, sparse, data, **step_kw) -> list[dict]:
    updates = []
    for x, y in data:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        update = sparse.step(**step_kw)
        if update:
            updates.append(update)
    return updates


def assert_masked(model, sparse) -> None:
    params = dict(model.named_parameters())
    for name, mask in sparse.masks.items():
        assert torch.count_nonzero(params[name].detach()[~mask]) == 0, name


def test_public_api_is_listed_and_documented():
    assert {"sparsify", "Sparsifier", "save_sparse", "load_sparse"} <= set(snfs.__all__)
    for name in snfs.__all__:
        assert getattr(snfs, name) is not None


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_every_algorithm_with_every_optimizer_trains_or_is_refused_at_build(algorithm, optimizer):
    """Each combination either trains (masks change where the algorithm rewires, density kept) or stops at build."""
    if algorithm == "momentum" and optimizer == "sgd_plain":
        with pytest.raises(ConfigError, match="optim.momentum=0.0 is not valid for sparse=momentum"):
            build(algorithm, optimizer)
        return
    model, opt, sparse = build(algorithm, optimizer)
    before = {k: m.clone() for k, m in sparse.masks.items()}
    updates = train(model, opt, sparse, batches(12, seed=1))
    assert sparse.steps == 12
    assert_masked(model, sparse)
    assert sum(int(m.sum()) for m in sparse.masks.values()) == sum(int(m.sum()) for m in before.values())
    if algorithm in ("momentum", "set", "rigl", "dsr"):
        assert updates and any(not torch.equal(before[k], sparse.masks[k]) for k in before), algorithm
    if algorithm in ("static", "snip", "dense"):
        assert not updates and all(torch.equal(before[k], sparse.masks[k]) for k in before)


def test_named_variants_agree_with_their_yaml():
    """A variant (deepr_dsr_code) is the same algorithm and options from Python as from conf/sparse/<name>.yaml."""
    from omegaconf import OmegaConf
    from support import CONF, compose_cfg

    from snfs.algorithms import VARIANTS, resolve_algorithm

    for name, (base, _) in VARIANTS.items():
        composed = OmegaConf.to_container(compose_cfg([f"sparse={name}"]).sparse, resolve=True)
        base_yaml = OmegaConf.to_container(OmegaConf.load(CONF / "sparse" / f"{base}.yaml"), resolve=True)
        differs = {k: v for k, v in composed.items() if base_yaml.get(k) != v}
        resolved = resolve_algorithm(name, {})
        assert resolved["name"] == composed["name"] == base
        assert {k: v for k, v in resolved.items() if k != "name"} == differs


def test_sparse_momentum_with_adam_scores_by_adams_update_direction():
    model, opt, sparse = build("momentum", "adam")
    train(model, opt, sparse, batches(3, seed=2))
    state = opt.state[model.fc1.weight]
    expected = state["exp_avg"] / (state["exp_avg_sq"].sqrt() + 1e-8)
    torch.testing.assert_close(sparse.algorithm.momentum("fc1.weight"), expected, rtol=0, atol=0)


@pytest.mark.parametrize("optimizer", ["adam", "sgd_momentum"])
def test_grown_weights_start_with_no_optimizer_state(optimizer):
    """RigL: a grown weight starts at 0 and so does all its optimizer state (momentum, both Adam moments)."""
    model, opt, sparse = build("rigl", optimizer)
    old = sparse.masks["fc1.weight"].clone()
    data = batches(3, seed=3)
    train(model, opt, sparse, data[:2])  # step 2 is RigL's first update (delta_t 2): before_step reads the gradient
    train(model, opt, sparse, data[2:])
    grown = sparse.masks["fc1.weight"] & ~old
    assert int(grown.sum()) > 0
    states = [v for v in opt.state[model.fc1.weight].values() if torch.is_tensor(v) and v.dim() == 2]
    assert states
    for tensor in states:
        assert torch.count_nonzero(tensor[grown]) == 0


def test_deepr_refuses_cancelling_adamw_decay_at_build():
    with pytest.raises(ConfigError, match="cancel_weight_decay=true is not valid for sparse=deepr with AdamW"):
        build("deepr", "adamw", cancel_weight_decay=True)


@pytest.mark.parametrize(
    "bad, message",
    [
        (
            {"algorithm": "sparse_momentum"},
            "sparse='sparse_momentum' is not a valid choice; valid choices: deepr, deepr_dsr_code, dense",
        ),
        ({"prune_rate": 1.5}, "sparse.prune_rate=1.5 is not valid for sparse=momentum"),
        ({"prune_rat": 0.5}, "sparse.prune_rat is not an option of sparse=momentum"),
        ({"density": 0.0}, "density=0.0 is not valid; must be a number in (0, 1]"),
        ({"steps_per_epoch": 0}, "steps_per_epoch=0 is not valid; must be an integer in [1, inf)"),
        ({"execution": "csr"}, "execution='csr' is not a valid choice; valid choices: masked, sparse"),
    ],
)
def test_a_bad_argument_stops_at_build_in_one_line(bad, message):
    """The same declarations and messages as the command line (snfs.options)."""
    model = MLP()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    kwargs = {"algorithm": "momentum", "density": 0.1, "epochs": 1, "steps_per_epoch": 2, **bad}
    with pytest.raises(ConfigError) as err:
        snfs.sparsify(model, opt, verbose=False, **kwargs)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_snip_without_a_batch_is_refused_at_build():
    model = MLP()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ConfigError, match="sparse=snip scores connections on one batch"):
        snfs.sparsify(model, opt, "snip", 0.1, epochs=1, steps_per_epoch=1, verbose=False)


def test_epoch_end_updates_happen_inside_the_step_that_ends_an_epoch():
    """Sparse momentum updates at the end of every epoch but the last, with no epoch hook called."""
    model, opt, sparse = build("momentum", epochs=3, steps_per_epoch=4)
    at = []
    for i, (x, y) in enumerate(batches(12, seed=4)):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        if sparse.step():
            at.append(i + 1)
    assert at == [4, 8]


def test_manual_epoch_end_waits_for_the_call():
    model, opt, sparse = build("momentum", epochs=3, steps_per_epoch=4, epoch_end="manual")
    assert not train(model, opt, sparse, batches(4, seed=4))
    assert sparse.epoch_end() is not None


class Tokens(nn.Module):
    """An embedding, a TransformerEncoder layer (its attention's in_proj_weight is not an nn.Linear) and an LSTM."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(50, 16)
        self.encoder = nn.TransformerEncoderLayer(16, 2, 32, batch_first=True)
        self.lstm = nn.LSTM(16, 16, batch_first=True)
        self.head = nn.Linear(16, 50)

    def forward(self, x):
        h, _ = self.lstm(self.encoder(self.embed(x)))
        return self.head(h)


def test_which_weights_are_sparse_is_the_users_choice(capsys):
    model = Tokens()
    opt = torch.optim.Adam(model.parameters())
    default = snfs.sparsify(model, opt, "static", 0.2, epochs=1, steps_per_epoch=1)
    printed = capsys.readouterr().err
    assert set(default.masks) == {
        "encoder.self_attn.out_proj.weight",
        "encoder.linear1.weight",
        "encoder.linear2.weight",
        "head.weight",
    }
    for left_dense in ("embed.weight", "encoder.self_attn.in_proj_weight", "lstm.weight_ih_l0", "lstm.weight_hh_l0"):
        assert left_dense in printed  # listed once at start-up, never silently skipped

    model = Tokens()
    opt = torch.optim.Adam(model.parameters())
    chosen = snfs.sparsify(
        model,
        opt,
        "static",
        0.2,
        epochs=1,
        steps_per_epoch=1,
        verbose=False,
        include=["*.in_proj_weight", "lstm.weight_*", "embed.weight"],
        exclude=["head.weight"],
    )
    assert {"encoder.self_attn.in_proj_weight", "lstm.weight_ih_l0", "lstm.weight_hh_l0", "embed.weight"} <= set(
        chosen.masks
    )
    assert "head.weight" not in chosen.masks
    x = torch.randint(0, 50, (4, 7))
    opt.zero_grad()
    F.cross_entropy(model(x).flatten(0, 1), x.flatten()).backward()
    chosen.step()
    assert_masked(model, chosen)

    by_predicate = snfs.sparsify(
        Tokens(),
        opt,
        "static",
        0.2,
        epochs=1,
        steps_per_epoch=1,
        verbose=False,
        include=lambda name, p: name.startswith("lstm.weight"),
    )
    assert set(by_predicate.masks) == {"lstm.weight_ih_l0", "lstm.weight_hh_l0"}
    with pytest.raises(ConfigError, match="include='attn.in_proj' matches no parameter"):
        snfs.sparsify(Tokens(), opt, "static", 0.2, epochs=1, steps_per_epoch=1, include=["attn.in_proj"])


@pytest.mark.parametrize("algorithm", ["rigl", "deepr", "momentum"])
def test_a_grad_scaler_gives_the_run_without_one(algorithm):
    """Unscale, algorithm, step, update: with a power-of-two scale the unscaled gradients are the true ones exactly."""
    plain = build(algorithm)
    scaled = build(algorithm)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    data = batches(9, seed=5)
    train(*plain, data)
    model, opt, sparse = scaled
    for i, (x, y) in enumerate(data):
        opt.zero_grad()
        scaler.scale(F.cross_entropy(model(x), y)).backward()
        if i % 2:  # the user's own unscale_ (e.g. to clip) before the step is fine too
            scaler.unscale_(opt)
        sparse.step(scaler)
    for k in plain[2].masks:
        assert torch.equal(plain[2].masks[k], sparse.masks[k]), k
    for (k, a), b in zip(plain[0].state_dict().items(), model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)


def test_gradient_accumulation_counts_optimizer_steps():
    """Two half batches accumulated give one full batch's step (up to the order of the sums), and one step is
    counted."""
    full = build("rigl", epochs=2, steps_per_epoch=3)
    accumulated = build("rigl", epochs=2, steps_per_epoch=3)
    data = batches(6, seed=6)
    train(*full, data)
    model, opt, sparse = accumulated
    for x, y in data:
        opt.zero_grad()
        for xs, ys in ((x[:8], y[:8]), (x[8:], y[8:])):
            (F.cross_entropy(model(xs), ys) / 2).backward()
        sparse.step()
    assert sparse.steps == full[2].steps == 6
    for k in full[2].masks:
        assert torch.equal(full[2].masks[k], sparse.masks[k]), k
    for (k, a), b in zip(full[0].state_dict().items(), model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=k)  # fp32 sums in another order, six steps


def test_clipping_in_the_step_counts_only_active_gradients():
    model, opt, sparse = build("static", "sgd_plain")
    x, y = batches(1, seed=7)[0]
    F.cross_entropy(model(x), y).backward()
    before = {k: p.detach().clone() for k, p in model.named_parameters()}
    grads = {k: p.grad.clone() * (sparse.masks[k] if k in sparse.masks else 1) for k, p in model.named_parameters()}
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads.values()]))
    sparse.step(max_grad_norm=float(norm) / 2)
    for k, p in model.named_parameters():
        torch.testing.assert_close(p.detach(), before[k] - 0.05 * grads[k] / 2, rtol=1e-5, atol=1e-7)


def test_state_dict_resumes_exactly():
    data = batches(12, seed=8)
    model, opt, sparse = build("set")
    train(model, opt, sparse, data[:5])
    saved = copy.deepcopy({"model": model.state_dict(), "opt": opt.state_dict(), "sparse": sparse.state_dict()})
    train(model, opt, sparse, data[5:])
    model2, opt2, sparse2 = build("set")
    model2.load_state_dict(saved["model"])
    opt2.load_state_dict(saved["opt"])
    sparse2.load_state_dict(saved["sparse"])
    train(model2, opt2, sparse2, data[5:])
    assert sparse2.steps == sparse.steps == 12
    for k in sparse.masks:
        assert torch.equal(sparse.masks[k], sparse2.masks[k])
    for (k, a), b in zip(model.state_dict().items(), model2.state_dict().values()):
        assert torch.equal(a, b), k


def test_summary_lists_every_sparse_layer():
    _, _, sparse = build("static")
    lines = sparse.summary().splitlines()
    assert [line.split()[0] for line in lines] == ["layer", "fc1.weight", "fc2.weight", "all"]
    assert f"{sparse.density:.4f}" in lines[-1]


def _dot_bound(weight: torch.Tensor, x: torch.Tensor) -> float:
    """How far two fp32 evaluations of x W^T (sums in any order) can differ: 2 n eps max(|x| |W|^T), n the longest
    row."""
    n = int((weight != 0).sum(1).max())
    return float(2 * n * torch.finfo(torch.float32).eps * (x.abs() @ weight.abs().t()).max())


def test_export_is_small_and_loads_back_into_the_users_class(tmp_path):
    from snfs.models import build_model

    torch.manual_seed(0)
    model = build_model("lenet300_100", 10)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sparse = snfs.sparsify(model, opt, "static", 0.05, epochs=1, steps_per_epoch=1, verbose=False)
    size = sparse.export(tmp_path / "sparse.pt", {"note": "test"})
    torch.save(model.state_dict(), tmp_path / "dense.pt")
    assert size <= 0.12 * (tmp_path / "dense.pt").stat().st_size

    torch.manual_seed(1)
    loaded = build_model("lenet300_100", 10)
    info = snfs.load_sparse(loaded, tmp_path / "sparse.pt")
    assert info["config"]["note"] == "test" and info["config"]["algorithm"] == "static"
    for k in sparse.masks:
        assert torch.equal(info["masks"][k], sparse.masks[k])
    for (k, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), k

    layer = dict(loaded.named_modules())["fc1"]
    x = torch.randn(5, 784)
    with torch.no_grad():
        want = layer(x)
        assert snfs.use_sparse_kernels(loaded, info["masks"]) == list(sparse.masks)
        got = layer(x)
        assert loaded(x.view(5, 1, 28, 28)).shape == (5, 10)
    torch.testing.assert_close(
        got,
        want,
        rtol=0,
        atol=_dot_bound(layer.weight.detach(), x) + 2 * torch.finfo(torch.float32).eps * float(want.abs().max()),
    )  # the bias add


def test_a_file_that_is_not_an_export_is_refused(tmp_path):
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="is not an snfs sparse model"):
        snfs.load_sparse(MLP(), tmp_path / "other.pt")
