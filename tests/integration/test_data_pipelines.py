"""CIFAR-10 and ImageNet pipelines on generated files, batched augmentation vs torchvision, and
one-batch training runs of every CIFAR / ImageNet model on fake data."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import compose_cfg

from snfs.train import train

# --- generated files ---------------------------------------------------------------------------


def counted_over(test_error: float, n_test: int) -> bool:
    """A test error (%) computed over all ``n_test`` samples is a whole number of them."""
    wrong = test_error * n_test / 100
    return 0 <= wrong <= n_test and abs(wrong - round(wrong)) < 1e-6


def test_cifar10_through_train(fake_cifar, skip_md5, tmp_path):
    root, _ = fake_cifar
    cfg = compose_cfg(
        [
            "dataset=cifar10",
            "dataset.download=false",
            f"data.root={root}",
            "model=wrn28_2",
            "epochs=1",
            "limit_batches=1",
            "batch_size=8",
            "logger.mode=disabled",
            "progress=false",
            "device=cpu",
            f"results_dir={tmp_path}",
        ]
    )
    result = train(cfg)
    assert result["status"] == "finished" and result["val_error"] is not None and counted_over(result["test_error"], 20)


@pytest.mark.slow
def test_cifar10_augmented_resume_matches_uninterrupted_run(fake_cifar, skip_md5, tmp_path):
    root, _ = fake_cifar
    common = [
        "dataset=cifar10",
        "dataset.download=false",
        f"data.root={root}",
        "model=wrn28_2",
        "epochs=2",
        "limit_batches=2",
        "batch_size=8",
        "logger.mode=disabled",
        "progress=false",
        "device=cpu",
    ]
    straight = train(compose_cfg(common + [f"results_dir={tmp_path / 'a'}"]))
    assert train(compose_cfg(common + [f"results_dir={tmp_path / 'b'}", "stop_after_epoch=1"])) is None
    resumed = train(compose_cfg(common + [f"results_dir={tmp_path / 'b'}", "resume=true"]))
    assert [h["train_loss"] for h in resumed["history"]] == [h["train_loss"] for h in straight["history"]]
    assert resumed["test_error"] == straight["test_error"]


def test_imagenet_through_train(image_tree, tmp_path):
    cfg = compose_cfg(
        [
            "dataset=imagenet",
            "dataset.image_size=32",
            "dataset.val_resize=36",
            "dataset.num_workers=0",
            "dataset.pin_memory=false",
            f"data.root={image_tree}",
            "model=vgg_like",
            "epochs=1",
            "limit_batches=1",
            "batch_size=4",
            "logger.mode=disabled",
            "progress=false",
            "device=cpu",
            f"results_dir={tmp_path}",
        ]
    )
    result = train(cfg)
    assert result["status"] == "finished" and result["val_error"] is None and counted_over(result["test_error"], 6)


# --- one training batch per model on fake data ---------------------------------------------------

SLOW = pytest.mark.slow
CIFAR_MODELS = [
    "alexnet_s",
    "alexnet_b",
    "vgg16_c",
    "vgg_like",
    "wrn28_2",
    pytest.param("vgg16_d", marks=SLOW),
    pytest.param("wrn16_8", marks=SLOW),
    pytest.param("wrn16_10", marks=SLOW),
    pytest.param("wrn22_8", marks=SLOW),
]


def fake_run_cfg(model: str, shape: str, tmp_path: Path):
    return compose_cfg(
        [
            "dataset=fake",
            f"dataset.shape={shape}",
            "dataset.n_train=64",
            "dataset.n_val=0",
            "dataset.n_test=32",
            f"model={model}",
            "epochs=1",
            "limit_batches=1",
            "batch_size=8",
            "logger.mode=disabled",
            "progress=false",
            "device=cpu",
            f"results_dir={tmp_path}",
        ]
    )


@pytest.mark.parametrize("model", CIFAR_MODELS)
def test_one_batch_cifar_model_on_fake_data(model, tmp_path):
    result = train(fake_run_cfg(model, "[3,32,32]", tmp_path))
    assert result["status"] == "finished" and result["model"] == model
    assert result["final_density"] == pytest.approx(0.05, abs=0.01) and counted_over(result["test_error"], 32)


@pytest.mark.slow
def test_one_batch_resnet50_on_fake_data(tmp_path):
    result = train(fake_run_cfg("resnet50", "[3,64,64]", tmp_path))
    assert result["status"] == "finished" and counted_over(result["test_error"], 32)
