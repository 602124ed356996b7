"""`python -m snfs.train` with a mistyped key, group or option: one line with a "did you mean", before torch loads.

Hydra's own reports of these take 7-23 lines (its config search path, the advice to add the key with `+`,
which then fails too); snfs.command_line checks the command line first (issue 26, findings 5 and 9).
"""

from __future__ import annotations

import pytest
from support import find_real_mnist

from snfs.errors import ConfigError


@pytest.mark.parametrize(
    "args, expected",
    [
        (["densty=0.02"], "densty is not a key of this config; valid top-level keys: "),
        (["model=resnet9000"], "model='resnet9000' is not a valid choice; valid choices: alexnet_b, "),
        (["sparse=sparse_momentum"], "sparse='sparse_momentum' is not a valid choice; valid choices: deepr, "),
        (["-m", "seed=17,18", "sparse=set,sparse_momentum"], "sparse='sparse_momentum' is not a valid choice"),
        (["sparse.prune_rat=0.3"], "sparse.prune_rat is not an option of sparse=momentum; valid options: decay, "),
        (["sparse=set", "sparse.prune_rate=0.3"], "sparse.prune_rate is not an option of sparse=set; valid options: "),
        (["data.rot=/x"], "data.rot is not an option of data; valid options: root"),
        (
            ["experiment=mnist_methods"],
            "experiment=mnist_methods names a preset, which is added: +experiment=mnist_methods",
        ),
        (["seed=1.5"], "seed=1.5 is not valid; must be an integer in [0, inf)"),
    ],
)
def test_a_bad_command_line_is_one_line(args, expected):
    from snfs.command_line import check_overrides

    with pytest.raises(ConfigError) as info:
        check_overrides(args)
    assert str(info.value).startswith(expected) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "args, suggestion",
    [
        (["densty=0.02"], "did you mean density?"),
        (["model=resnet9000"], "did you mean resnet50?"),
        (["sparse=sparse_momentum"], "did you mean momentum?"),
        (["sparse.prune_rat=0.3"], "did you mean prune_rate?"),
    ],
)
def test_a_near_miss_gets_a_did_you_mean(args, suggestion):
    from snfs.command_line import check_overrides

    with pytest.raises(ConfigError, match=suggestion):
        check_overrides(args)


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["density=0.02", "seed=18"],
        ["-m", "seed=17,18", "density=0.01,0.02"],
        ["model=lenet5_caffe", "sparse=set"],
        ["+experiment=mnist_methods"],
        ["dataset=fake", "dataset.n_train=64"],
        ["~dataset.download"],
        ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
        ["+dataset.torchvision_args={split: x}"],
        ["--help"],
    ],
)
def test_a_valid_command_line_passes(args):
    from snfs.command_line import check_overrides

    check_overrides(args)


def test_real_mnist_is_also_found_where_make_train_puts_it(tmp_path):
    shared, data = tmp_path / "shared", tmp_path / "data"
    raw = data / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte",
    ):
        (raw / name).write_bytes(b"")
    assert find_real_mnist((shared, data)) == data
    (raw / "t10k-labels-idx1-ubyte").unlink()
    assert find_real_mnist((shared, data)) is None
