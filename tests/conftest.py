"""Shared fixtures: configs composed with hydra.compose, and small MNIST-format data."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
SHARED_MNIST = REPO.parent / "shared" / "data"


def write_idx(path: Path, array: np.ndarray) -> None:
    """An idx file as MNIST ships them: big-endian magic (0x08 = ubyte), dims, then bytes."""
    magic = 0x0800 + array.ndim
    with open(path, "wb") as f:
        f.write(struct.pack(">I", magic))
        f.write(struct.pack(">" + "I" * array.ndim, *array.shape))
        f.write(array.astype(np.uint8).tobytes())


def make_fake_mnist(root: Path, n_train: int = 1000, n_test: int = 200, seed: int = 0) -> Path:
    """Learnable MNIST-shaped data: each class lights up its own block of pixels, plus noise."""
    rng = np.random.default_rng(seed)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, size=n)
        images = rng.integers(0, 60, size=(n, 28, 28))
        for i, c in enumerate(labels):
            r, col = divmod(int(c), 5)
            images[i, 4 + 10 * r : 12 + 10 * r, 1 + 5 * col : 5 + 5 * col] += 180
        write_idx(raw / f"{prefix}-images-idx3-ubyte", np.clip(images, 0, 255))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return root


@pytest.fixture(scope="session")
def fake_mnist_root(tmp_path_factory) -> Path:
    return make_fake_mnist(tmp_path_factory.mktemp("fake_mnist"))


# where real MNIST may be: the shared reference data beside the checkout, or data/, where `make train` fetches it
MNIST_ROOTS = (SHARED_MNIST, REPO / "data")


def find_real_mnist(roots=MNIST_ROOTS) -> Path | None:
    """The first root holding MNIST's four files (uncompressed or .gz), else None."""
    files = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    for root in roots:
        raw = Path(root) / "MNIST" / "raw"
        if all((raw / f).exists() or (raw / f"{f}.gz").exists() for f in files):
            return Path(root)
    return None


@pytest.fixture(scope="session")
def real_mnist_root() -> Path:
    root = find_real_mnist()
    if root is None:
        pytest.skip("real MNIST is neither in ../shared/data nor in data/ (`make train` fetches it to data/)")
    return root


def compose_cfg(overrides: list[str] | None = None):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides or []))


@pytest.fixture
def quick_overrides(fake_mnist_root, tmp_path) -> list[str]:
    """A fast CPU run on generated data, nothing written outside tmp_path."""
    return [
        f"data.root={fake_mnist_root}",
        f"results_dir={tmp_path / 'runs'}",
        "logger.mode=disabled",
        "progress=false",
        "device=cpu",
        "dataset.download=false",
        "dataset.verify_md5=false",
    ]


# --- two tiers: `make test-unit` (under a minute) and `make test-integration`; `make test` runs both ---------
# A test is "integration" when it runs training (Trainer.fit), a Python subprocess or several processes, or
# composes whole experiment grids; every other test is "unit". The classification lives here, in one place:
# whole files, single tests of files whose other tests are unit, fixtures that mean a training run, and
# markers (integration, ddp, slow).
INTEGRATION_FILES = {
    "test_reliability.py",  # preemption, divergence, wandb failure: CLI subprocesses and short runs
    "test_run_properties.py",  # every algorithm through DDP, SIGTERM resume and density 1
    "test_throughput.py",  # benchmarks/throughput.py times real training steps
    "test_logger.py",  # starts wandb's service and waits out a connection timeout
    "test_gpu_check.py",  # scripts/gpu_check.sh's CPU dry run: training runs, throughput and torchrun
    "test_bench.py",  # benchmarks/epoch_time.py in a subprocess, early and late epochs on generated data
}
INTEGRATION_TESTS = {  # files of unit tests with a few integration tests; "file::test" without parameters
    "test_dashboard.py::test_dashboard_imports_no_training_stack",
    "test_dashboard.py::test_a_real_wandb_offline_log_is_read",
    "test_dashboard.py::test_browser_shows_run_list_and_curve",  # starts headless Chromium (20+ s)
    "test_identity.py::test_reading_identities_loads_neither_torch_nor_hydra",
    "test_interrupts.py::test_ctrl_c_checkpoints_and_the_same_command_resumes",
    "test_library.py::test_the_library_loads_none_of_the_training_or_report_stack",
    "test_interrupts.py::test_starting_afresh_moves_an_earlier_checkpoint_aside",
    "test_options.py::test_bad_option_stops_the_cli_before_any_data_loads",
    "test_command_line.py::test_the_cli_says_it_in_one_line_without_importing_torch",
    "test_user_output.py::test_committed_report_rebuilds_unchanged",  # renders every committed run's page (~20 s)
    "test_report.py::test_quick_sweep_end_to_end",
    "test_report.py::test_wandb_source_with_a_mocked_api",  # imports wandb's public API client (seconds)
    "test_tables.py::test_every_preset_is_a_table_with_its_whole_grid",
}
INTEGRATION_FIXTURES = {
    "quick_overrides",
    "fake_mnist_root",
    "real_mnist_root",  # a training run on MNIST-format files
    "grids",  # test_experiments: every preset's whole grid composed and validated (minutes on two busy cores)
}


def is_integration(item: pytest.Item) -> bool:
    path = Path(str(item.fspath))
    test = f"{path.name}::{getattr(item, 'originalname', item.name)}"
    return (
        path.name in INTEGRATION_FILES
        or test in INTEGRATION_TESTS
        or bool(INTEGRATION_FIXTURES & set(getattr(item, "fixturenames", ())))
        or any(item.get_closest_marker(m) for m in ("integration", "ddp", "slow"))
    )


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(config, items):
    for item in items:
        item.add_marker(pytest.mark.integration if is_integration(item) else pytest.mark.unit)


@pytest.fixture(autouse=True)
def _unit_tests_stay_in_one_process(request, monkeypatch):
    """A unit test that trains or starts Python fails and says to classify it, so the unit tier stays fast."""
    if request.node.get_closest_marker("integration") is not None:
        yield
        return

    def refuse(what: str):
        pytest.fail(
            f"{request.node.nodeid} is a unit test but {what}: mark it integration (tests/conftest.py)", pytrace=False
        )

    real_popen_init = subprocess.Popen.__init__

    def popen_init(self, args, *a, **kw):
        first = args[0] if isinstance(args, (list, tuple)) and args else args
        if str(first) == sys.executable:
            refuse("starts a Python subprocess")
        real_popen_init(self, args, *a, **kw)

    monkeypatch.setattr(subprocess.Popen, "__init__", popen_init)
    train_module = sys.modules.get("snfs.train")
    if train_module is not None:
        monkeypatch.setattr(train_module.Trainer, "fit", lambda self: refuse("trains (Trainer.fit)"))
    yield


# --- subprocesses run in temporary folders: Hydra's outputs/ and multirun/ never appear in the repository ---
HYDRA_DIRS = ("outputs", "multirun")


def hydra_folders() -> set[str]:
    """Folders under the repository's outputs/ and multirun/ (three levels: <day>/<time>/<job>)."""
    found = set()
    for top in HYDRA_DIRS:
        if (REPO / top).is_dir():
            found.add(top)
            for depth in ("*", "*/*", "*/*/*"):
                found.update(str(p.relative_to(REPO)) for p in (REPO / top).glob(depth) if p.is_dir())
    return found


@pytest.fixture(autouse=True)
def _no_hydra_folders_in_the_repository(request):
    """Fails the test that left a Hydra run folder in the repository (a subprocess run with cwd=REPO)."""
    before = hydra_folders()
    yield
    new = sorted(hydra_folders() - before)
    if new:
        pytest.fail(
            f"{request.node.nodeid} left {', '.join(new[:3])} in the repository: run subprocesses with "
            f"cwd=tmp_path (a multirun writes multirun/ in its working folder) or with hydra.sweep.dir "
            f"under tmp_path",
            pytrace=False,
        )
