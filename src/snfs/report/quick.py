"""QUICK mode: every preset cut down so that it runs on a CPU in minutes.

``QUICK=1`` (make) / ``--quick`` (scripts/reproduce.py) adds these overrides to a preset's sweep:

* one seed (``seed=17``), ``epochs=2`` (so sparse momentum does one mask update), at most
  ``limit_batches`` = 2 training batches per epoch, a small ``batch_size`` (4 on CIFAR-10 shapes:
  one 32-image WRN-16-10 training step takes several seconds on a 2-core CPU);
* the real dataset when its files are under ``data.root``, otherwise generated data of the same
  shape (``dataset=fake``, small splits); ImageNet always uses generated data (a ResNet-50 on a
  CPU is only a smoke test, and indexing ImageNet would take longer than the runs);
* ``logger.mode=disabled``, ``speedup_estimate=false`` (timing every conv of a WRN on a CPU takes
  longer than the run) and ``results_dir=results/quick/runs``: QUICK runs never mix with real
  ones, and their tables and figures go to ``results/quick/`` with a QUICK banner.
* once a QUICK run's JSON is written, ``scripts/reproduce.py`` deletes its checkpoint (a WRN's is
  hundreds of MB; the whole QUICK grid would keep gigabytes).

The grid itself (networks, densities, methods, hyper-parameter values) is kept, so a QUICK table
has exactly the rows of the real one.
"""

from __future__ import annotations

from pathlib import Path

# dataset name -> the generated stand-in: sample shape, classes, train/val/test sizes, batch size
FAKE = {
    "mnist": ([1, 28, 28], 10, 64, 32, 64, 32),
    "cifar10": ([3, 32, 32], 10, 8, 4, 8, 4),
    "imagenet": ([3, 224, 224], 1000, 4, 2, 4, 2),
}
QUICK_SEED = 17
QUICK_EPOCHS = 2
QUICK_LIMIT_BATCHES = 2


def real_data_present(dataset: str, data_root: str | Path) -> bool:
    """Whether the real files of ``dataset`` are under ``data_root``, by the dataset loader's own checks
    (the layouts of conf/dataset/<name>.yaml; ImageNet under the default ``subdir``)."""
    root = Path(data_root)
    if dataset == "mnist":
        from snfs.data.mnist_fetch import RAW_FILES, raw_dir_for

        return all((raw_dir_for(root) / f).is_file() for f in RAW_FILES)
    if dataset == "cifar10":
        from snfs.data.cifar10 import missing_files

        return not missing_files(root)
    if dataset == "imagenet":
        from snfs.data.imagenet import check_imagenet_tree
        from snfs.errors import DatasetError

        try:
            check_imagenet_tree(root / "imagenet")
        except (DatasetError, OSError):
            return False
        return True
    return False


def fake_overrides(dataset: str) -> list[str]:
    """``dataset=fake`` shaped like ``dataset`` (small splits)."""
    spec = FAKE.get(dataset)
    if spec is None:
        return []
    shape, classes, n_train, n_val, n_test, _ = spec
    return ["dataset=fake", f"dataset.shape=[{','.join(str(s) for s in shape)}]", f"dataset.num_classes={classes}",
            f"dataset.n_train={n_train}", f"dataset.n_val={n_val}", f"dataset.n_test={n_test}"]


def quick_overrides(dataset: str, data_root: str | Path, force_fake: bool = False) -> list[str]:
    """The overrides that cut a preset down to a QUICK run (see the module doc)."""
    spec = FAKE.get(dataset)
    batch = spec[5] if spec else 32
    out = [f"seed={QUICK_SEED}", f"epochs={QUICK_EPOCHS}", f"limit_batches={QUICK_LIMIT_BATCHES}",
           f"batch_size={batch}", "logger.mode=disabled", "progress=false", "speedup_estimate=false"]
    if force_fake or dataset == "imagenet" or not real_data_present(dataset, data_root):
        out += fake_overrides(dataset)
    return out
