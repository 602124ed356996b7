"""CIFAR-10 and ImageNet pipelines on generated files, batched augmentation vs torchvision, and
one-batch training runs of every CIFAR / ImageNet model on fake data."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision
import torchvision.transforms.functional as TF
from PIL import Image
from support import compose_cfg
from support.data_pipelines import write_fake_cifar10, write_image_tree

from snfs.data import DatasetError, build_data
from snfs.data.augment import ImageBatches, crop_flip, draw_crop_flip, reflect_index, to_normalised
from snfs.data.imagenet import LoaderBatches

CPU = torch.device("cpu")
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)


def cifar_cfg(*overrides: str):
    return compose_cfg(["dataset=cifar10", "dataset.download=false", *overrides]).dataset


def imagenet_cfg(*overrides: str):
    return compose_cfg(
        [
            "dataset=imagenet",
            "dataset.image_size=32",
            "dataset.val_resize=36",
            "dataset.num_workers=0",
            "dataset.pin_memory=false",
            *overrides,
        ]
    ).dataset


def reference_augment(
    image: torch.Tensor, top: int, left: int, flip: bool, mean=CIFAR_MEAN, std=CIFAR_STD
) -> torch.Tensor:
    """torchvision, per PIL image: pad(4, reflect) -> crop(top, left, 32, 32) -> hflip? -> ToTensor -> Normalize."""
    img = TF.to_pil_image(image)
    img = TF.crop(TF.pad(img, 4, padding_mode="reflect"), top, left, 32, 32)
    if flip:
        img = TF.hflip(img)
    return TF.normalize(TF.to_tensor(img), list(mean), list(std))


# --- CIFAR-10 ----------------------------------------------------------------------------------


def test_cifar10_splits_shapes_and_normalisation(fake_cifar, skip_md5):
    root, raw = fake_cifar
    data = build_data(cifar_cfg("dataset.augment=false"), str(root), batch_size=8, device=CPU, seed=0)
    (x_train, y_train), (x_test, y_test) = raw["train"], raw["test"]
    assert (data.num_classes, data.input_shape) == (10, (3, 32, 32))
    split = math.floor(0.9 * len(x_train))
    assert (data.train.num_samples, data.val.num_samples, data.test.num_samples) == (
        split,
        len(x_train) - split,
        len(x_test),
    )
    assert len(data.train) == math.ceil(split / 8)
    assert data.train.inputs.dtype == torch.uint8  # kept as bytes, normalised per batch

    xv, yv = next(iter(data.val))  # val = the LAST 10% of the training set, in file order, unaugmented
    assert xv.dtype == torch.float32 and yv.dtype == torch.int64 and xv.shape == (len(x_train) - split, 3, 32, 32)
    mean, std = torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1), torch.tensor(CIFAR_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(xv, (x_train[split:].float() / 255 - mean) / std, rtol=0, atol=0)
    assert torch.equal(yv, y_train[split:])
    xt, yt = torch.cat([b[0] for b in data.test]), torch.cat([b[1] for b in data.test])
    assert torch.equal(yt, y_test)
    # same numbers as torchvision's ToTensor + Normalize on the PIL images
    ref = torch.stack(
        [TF.normalize(TF.to_tensor(TF.to_pil_image(im)), list(CIFAR_MEAN), list(CIFAR_STD)) for im in x_test[:4]]
    )
    torch.testing.assert_close(xt[:4], ref, rtol=0, atol=1e-6)

    # without augmentation a shuffled epoch is a permutation of the first 90%
    xs, ys = zip(*data.train)
    assert sorted(torch.cat(ys).tolist()) == sorted(y_train[:split].tolist())
    assert torch.cat(xs).shape == (split, 3, 32, 32)


def test_reflect_index_matches_torch_reflect_pad():
    row = torch.arange(32.0).view(1, 1, 1, 32)
    padded = torch.nn.functional.pad(row, (4, 4, 0, 0), mode="reflect").flatten()
    assert torch.equal(reflect_index(32, 4).float(), padded)
    assert reflect_index(32, 4)[:5].tolist() == [4, 3, 2, 1, 0] and reflect_index(32, 4)[-5:].tolist() == [
        31,
        30,
        29,
        28,
        27,
    ]


def test_batched_crop_flip_equals_torchvision_per_image():
    gen = torch.Generator().manual_seed(3)
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8, generator=gen)
    # every offset RandomCrop can draw
    combos = [(dy, dx, f) for dy in range(9) for dx in range(9) for f in (False, True)]
    batch = images.repeat(len(combos), 1, 1, 1)
    top = torch.tensor([c[0] for c in combos]).repeat_interleave(3)
    left = torch.tensor([c[1] for c in combos]).repeat_interleave(3)
    flip = torch.tensor([c[2] for c in combos]).repeat_interleave(3)
    mean, std = torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1), torch.tensor(CIFAR_STD).view(1, 3, 1, 1)
    out = to_normalised(crop_flip(batch, top, left, flip, pad=4), mean, std)
    ref = torch.stack(
        [reference_augment(batch[i], int(top[i]), int(left[i]), bool(flip[i])) for i in range(len(batch))]
    )
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)
    # the crop itself is exact, also against torchvision's tensor path, on float images
    f = batch[:18].float()
    tv = torch.stack(
        [TF.crop(TF.pad(f[i], 4, padding_mode="reflect"), int(top[i]), int(left[i]), 32, 32) for i in range(18)]
    )
    tv = torch.stack([TF.hflip(tv[i]) if flip[i] else tv[i] for i in range(18)])
    assert torch.equal(crop_flip(f, top[:18], left[:18], flip[:18], pad=4), tv)


def test_crop_flip_draws_cover_randomcrop_range():
    top, left, flip = draw_crop_flip(20000, 4, torch.Generator().manual_seed(0))
    assert set(top.tolist()) == set(range(9)) == set(left.tolist())  # RandomCrop: randint(0, 40 - 32 + 1)
    assert 0.47 < flip.float().mean().item() < 0.53


def test_cifar10_augmented_epoch_is_torchvision_with_drawn_params(fake_cifar, skip_md5):
    root, raw = fake_cifar
    data = build_data(cifar_cfg(), str(root), batch_size=16, device=CPU, seed=5)
    train_split = data.train
    state = train_split.generator.get_state()
    epoch = list(train_split)
    assert [len(y) for _, y in epoch] == [16, 16, 13] and all(x.shape[1:] == (3, 32, 32) for x, _ in epoch)
    # replay the draws: permutation first, then (top, left, flip) per batch
    g = torch.Generator()
    g.set_state(state)
    order = torch.randperm(45, generator=g)
    x_train = raw["train"][0]
    for b, (x, y) in enumerate(epoch):
        idx = order[16 * b : 16 * b + 16]
        top, left, flip = draw_crop_flip(len(idx), 4, g)
        ref = torch.stack(
            [reference_augment(x_train[i], int(dy), int(dx), bool(f)) for i, dy, dx, f in zip(idx, top, left, flip)]
        )
        torch.testing.assert_close(x, ref, rtol=0, atol=1e-6)
        assert torch.equal(y, raw["train"][1][idx])
    # determinism and resume: the generator state alone fixes the epoch
    train_split.generator.set_state(state)
    again = list(train_split)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(epoch, again))
    assert not torch.equal(next(iter(train_split))[0], epoch[0][0])  # the next epoch differs


def test_image_batches_ddp_shards_concatenate_to_single_process():
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (37, 3, 32, 32), dtype=torch.uint8, generator=gen)
    labels = torch.arange(37)

    def batches(rank, world):
        return list(
            ImageBatches(
                images,
                labels,
                8,
                shuffle=True,
                mean=CIFAR_MEAN,
                std=CIFAR_STD,
                augment=True,
                generator=torch.Generator().manual_seed(9),
                rank=rank,
                world_size=world,
            )
        )

    single, r0, r1 = batches(0, 1), batches(0, 2), batches(1, 2)
    assert len(single) == len(r0) == len(r1) == 5
    for s, a, b in zip(single, r0, r1):
        assert torch.equal(s[0], torch.cat([a[0], b[0]])) and torch.equal(s[1], torch.cat([a[1], b[1]]))


def test_cifar10_missing_files_name_the_folder(tmp_path):
    with pytest.raises(DatasetError) as err:
        build_data(cifar_cfg(), str(tmp_path), 8, CPU, 0)
    msg = str(err.value)
    assert (
        str(tmp_path / "cifar-10-batches-py") in msg
        and "dataset.download=true" in msg
        and "cifar-10-python.tar.gz" in msg
    )


def test_cifar10_incomplete_folder_lists_missing_files(tmp_path):
    write_fake_cifar10(tmp_path, per_batch=2, n_test=2)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DatasetError, match="data_batch_3"):
        build_data(cifar_cfg(), str(tmp_path), 8, CPU, 0)


def test_cifar10_checksum_failure_is_a_dataset_error(tmp_path):
    write_fake_cifar10(tmp_path, per_batch=2, n_test=2)  # real torchvision md5 check: these files fail it
    with pytest.raises(DatasetError, match="corrupt") as err:
        build_data(cifar_cfg(), str(tmp_path), 8, CPU, 0)
    assert str(tmp_path / "cifar-10-batches-py") in str(err.value)


def test_cifar10_failed_download_is_a_dataset_error(tmp_path, monkeypatch):
    def offline(self):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torchvision.datasets.CIFAR10, "download", offline)
    with pytest.raises(DatasetError, match="could not be downloaded") as err:
        build_data(cifar_cfg("dataset.download=true"), str(tmp_path), 8, CPU, 0)
    assert str(tmp_path / "cifar-10-batches-py") in str(err.value)


# --- ImageNet (ImageFolder) --------------------------------------------------------------------


def test_imagenet_batches_shapes_and_splits(image_tree):
    data = build_data(imagenet_cfg(), str(image_tree), batch_size=4, device=CPU, seed=0)
    assert data.val is None and data.num_classes == 2 and data.input_shape == (3, 32, 32)
    assert (data.train.num_samples, data.test.num_samples, len(data.train)) == (10, 6, 3)
    x, y = next(iter(data.train))
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert set(y.tolist()) <= {0, 1}
    xt, yt = zip(*data.test)
    assert torch.cat(yt).tolist() == [0, 0, 0, 1, 1, 1]  # the val/ folder, in order, is the test split
    assert torch.cat(xt).shape == (6, 3, 32, 32)
    # evaluation transform: Resize(36) + CenterCrop(32) + ToTensor + Normalize
    path = data.test.dataset.folder.samples[0][0]
    img = TF.center_crop(TF.resize(Image.open(path).convert("RGB"), 36), 32)
    ref = TF.normalize(TF.to_tensor(img), [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    torch.testing.assert_close(xt[0][0], ref)


def test_imagenet_held_out_validation(image_tree):
    data = build_data(imagenet_cfg("dataset.val_fraction=0.2"), str(image_tree), batch_size=4, device=CPU, seed=0)
    assert (data.train.num_samples, data.val.num_samples) == (8, 2)
    assert not set(data.train.dataset.indices) & set(data.val.dataset.indices)
    assert next(iter(data.val))[0].shape == (2, 3, 32, 32)


@pytest.mark.parametrize("workers", [0, 2])
def test_imagenet_same_generator_state_same_epoch(image_tree, workers):
    data = build_data(imagenet_cfg(f"dataset.num_workers={workers}"), str(image_tree), batch_size=4, device=CPU, seed=0)
    state = data.train.generator.get_state()
    torch.manual_seed(0)  # num_workers=0: the transforms use the global RNG (checkpointed by train.py)
    first = list(data.train)
    data.train.generator.set_state(state)
    torch.manual_seed(0 if workers == 0 else 1)  # with workers only the generator matters
    again = list(data.train)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again))


class IndexAndNoise(torch.utils.data.Dataset):
    """Returns its index and a draw from torch's global RNG, as a random transform would."""

    def __len__(self) -> int:
        return 23

    def __getitem__(self, i):
        return torch.rand(()), i


def epoch_of(batches):
    noise, idx = zip(*batches)
    return torch.cat(noise), torch.cat(idx)


def test_loader_batches_order_follows_generator():
    lb = LoaderBatches(IndexAndNoise(), 5, shuffle=True, device=CPU, seed=1)
    assert len(lb) == 5
    state = lb.generator.get_state()
    _, a = epoch_of(lb)
    _, b = epoch_of(lb)
    lb.generator.set_state(state)
    _, c = epoch_of(lb)
    assert sorted(a.tolist()) == list(range(23)) and not torch.equal(a, b) and torch.equal(a, c)


def test_loader_batches_distributed_ranks_partition_the_epoch():
    ranks = [
        LoaderBatches(IndexAndNoise(), 10, shuffle=True, device=CPU, seed=4, distributed=True, rank=r, world_size=2)
        for r in range(2)
    ]
    assert len(ranks[0]) == len(ranks[1]) == 3  # 12 samples per rank (padded), 5 per step
    first = [epoch_of(r)[1] for r in ranks]
    assert set(first[0].tolist()) | set(first[1].tolist()) == set(range(23))
    assert len(set(first[0].tolist()) & set(first[1].tolist())) <= 1  # DistributedSampler pads 23 -> 24
    second = [epoch_of(r)[1] for r in ranks]
    assert not torch.equal(first[0], second[0])  # set_epoch with a fresh draw each epoch
    ranks[0].generator.manual_seed(4)
    assert torch.equal(epoch_of(ranks[0])[1], first[0])


def test_loader_batches_workers_augmentation_follows_generator():
    lb = LoaderBatches(IndexAndNoise(), 5, shuffle=True, device=CPU, seed=2, num_workers=2)
    state = lb.generator.get_state()
    torch.manual_seed(0)
    noise_a, idx_a = epoch_of(lb)
    lb.generator.set_state(state)
    torch.manual_seed(1)  # the main process's RNG plays no part with workers
    noise_b, idx_b = epoch_of(lb)
    assert torch.equal(idx_a, idx_b) and torch.equal(noise_a, noise_b)


def test_imagenet_uses_distributed_sampler_under_ddp(image_tree, tmp_path):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        data = build_data(imagenet_cfg(), str(image_tree), batch_size=4, device=CPU, seed=0)
        assert isinstance(data.train.sampler, torch.utils.data.DistributedSampler)
        assert sum(len(y) for _, y in data.train) == 10
    finally:
        dist.destroy_process_group()


def test_imagenet_missing_tree_names_the_path(tmp_path):
    with pytest.raises(DatasetError) as err:
        build_data(imagenet_cfg(), str(tmp_path), 4, CPU, 0)
    assert str(tmp_path / "imagenet" / "train") in str(err.value) and "ILSVRC2012" in str(err.value)
    with pytest.raises(DatasetError, match="somewhere"):
        build_data(imagenet_cfg("dataset.subdir=somewhere"), str(tmp_path), 4, CPU, 0)


def test_imagenet_flat_val_folder_points_to_valprep(tmp_path):
    base = write_image_tree(tmp_path / "imagenet", n_train=1, n_val=1)
    for c in ("cat", "dog"):  # the raw val tar layout: images directly in val/
        for f in (base / "val" / c).iterdir():
            f.rename(base / "val" / f.name)
        (base / "val" / c).rmdir()
    with pytest.raises(DatasetError, match="valprep") as err:
        build_data(imagenet_cfg(), str(tmp_path), 4, CPU, 0)
    assert str(base / "val") in str(err.value)


def test_imagenet_class_mismatch_and_empty_class(tmp_path):
    base = write_image_tree(tmp_path / "imagenet", n_train=1, n_val=1)
    (base / "val" / "emu").mkdir()
    with pytest.raises(DatasetError, match="emu"):
        build_data(imagenet_cfg(), str(tmp_path), 4, CPU, 0)
    (base / "train" / "emu").mkdir()  # same classes now, but emu has no images
    with pytest.raises(DatasetError, match="incomplete"):
        build_data(imagenet_cfg(), str(tmp_path), 4, CPU, 0)
