"""QUICK mode: every preset cut down so that it runs on a CPU in minutes.

``QUICK=1`` (make) / ``--quick`` (scripts/reproduce.py) adds these overrides to a preset's sweep:

* one seed (``seed=17``), ``epochs=2`` (so sparse momentum does one mask update), at most
  ``limit_batches`` = 2 training batches per epoch, a small ``batch_size`` (4 on CIFAR-10 shapes:
  one 32-image WRN-16-10 training step takes several seconds on a 2-core CPU);
* the real dataset when its files are under ``data.root``, otherwise generated data of the same
  shape and classes (``dataset=fake``, small splits). Shape, classes and the "are the files there"
  check come from the dataset's loader (``snfs.data.dataset_info``), so a dataset added as one YAML
  gets QUICK runs too. ImageNet always uses generated data (its loader says ``quick_real=False``: a
  ResNet-50 on a CPU is only a smoke test, and indexing ImageNet would take longer than the runs);
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

QUICK_SEED = 17
QUICK_EPOCHS = 2
QUICK_LIMIT_BATCHES = 2


def dataset_config(dataset: str):
    """conf/dataset/<dataset>.yaml (a config group option, e.g. ``mnist``), as a DictConfig."""
    from omegaconf import OmegaConf

    from snfs.errors import UnknownChoiceError
    from snfs.report.paths import CONF_DIR

    path = CONF_DIR / "dataset" / f"{dataset}.yaml"
    if not path.is_file():
        raise UnknownChoiceError("dataset", dataset, sorted(p.stem for p in path.parent.glob("*.yaml")))
    return OmegaConf.load(path)


def dataset_info(dataset: str):
    """What the dataset's loader says about it (``snfs.data.DatasetInfo``): shape, classes, presence check."""
    from snfs.data import dataset_info as info

    return info(dataset_config(dataset))


def stand_in_sizes(shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """(n_train, n_val, n_test, batch_size) of a QUICK run: smaller as the samples (and their networks) grow.

    One 32-image WRN-16-10 training step on CIFAR-10 shapes takes several seconds on a 2-core CPU.
    """
    values = 1
    for s in shape:
        values *= int(s)
    if values <= 28 * 28:
        return 64, 32, 64, 32
    if values <= 3 * 32 * 32:
        return 8, 4, 8, 4
    return 4, 2, 4, 2


def real_data_present(dataset: str, data_root: str | Path) -> bool:
    """Whether the real files of ``dataset`` are under ``data_root``, by its loader's own check
    (the layout of conf/dataset/<dataset>.yaml; no download, no checksums)."""
    return bool(dataset_info(dataset).present(Path(data_root)))


def fake_overrides(dataset: str) -> list[str]:
    """``dataset=fake`` shaped like ``dataset`` (small splits); nothing for ``fake`` itself."""
    if dataset == "fake":
        return []
    info = dataset_info(dataset)
    n_train, n_val, n_test, _ = stand_in_sizes(info.input_shape)
    return [
        "dataset=fake",
        f"dataset.shape=[{','.join(str(s) for s in info.input_shape)}]",
        f"dataset.num_classes={info.num_classes}",
        f"dataset.n_train={n_train}",
        f"dataset.n_val={n_val}",
        f"dataset.n_test={n_test}",
    ]


def quick_overrides(dataset: str, data_root: str | Path, force_fake: bool = False) -> list[str]:
    """The overrides that cut a preset down to a QUICK run (see the module doc)."""
    info = dataset_info(dataset)
    batch = stand_in_sizes(info.input_shape)[3]
    out = [
        f"seed={QUICK_SEED}",
        f"epochs={QUICK_EPOCHS}",
        f"limit_batches={QUICK_LIMIT_BATCHES}",
        f"batch_size={batch}",
        "logger.mode=disabled",
        "progress=false",
        "speedup_estimate=false",
    ]
    if force_fake or not info.quick_real or not info.present(Path(data_root)):
        out += fake_overrides(dataset)
    return out
