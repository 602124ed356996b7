"""Fixtures and hooks. The tier of a test is its folder: tests/unit/ (one process, no training run, about a
minute: `make test-unit`) and tests/integration/ (training runs, Python subprocesses, several processes, whole
preset grids: `make test-integration`); `slow` is a marker. Helpers that tests import live in tests/support/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from support import REPO, find_real_mnist, make_fake_mnist

# fixtures of one topic that tests of both folders use, kept beside that topic's helpers
from support.dashboard import store  # noqa: F401
from support.data_pipelines import fake_cifar, image_tree, skip_md5  # noqa: F401
from support.idx_dataset import tiny  # noqa: F401
from support.report import jobs  # noqa: F401

TESTS = Path(__file__).resolve().parent
TIERS = ("unit", "integration")


@pytest.fixture(scope="session")
def fake_mnist_root(tmp_path_factory) -> Path:
    return make_fake_mnist(tmp_path_factory.mktemp("fake_mnist"))


@pytest.fixture(scope="session")
def real_mnist_root() -> Path:
    root = find_real_mnist()
    if root is None:
        pytest.skip("real MNIST is neither in ../shared/data nor in data/ (`make train` fetches it to data/)")
    return root


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


# --- the folder is the tier; a test that belongs in tests/integration/ fails in tests/unit/ and says so -----
# fixtures that mean a training run on MNIST-format files, or every preset's whole grid (minutes on two cores)
TRAINING_FIXTURES = {"quick_overrides", "fake_mnist_root", "real_mnist_root", "grids"}


def tier_of(item: pytest.Item) -> str:
    """The folder under tests/ that holds the test; a test file anywhere else is refused at collection."""
    path = Path(str(item.fspath)).resolve()
    folder = path.relative_to(TESTS).parts[0] if path.is_relative_to(TESTS) else None
    if folder not in TIERS:
        raise pytest.UsageError(
            f"{item.nodeid}: a test file belongs in tests/unit/ (one process, no training run) or "
            f"tests/integration/ (training runs, subprocesses, whole grids); move it there"
        )
    return folder


def misfiled(item: pytest.Item) -> str | None:
    """Why a test in tests/unit/ belongs in tests/integration/, or None."""
    training_fixtures = sorted(TRAINING_FIXTURES & set(getattr(item, "fixturenames", ())))
    if training_fixtures:
        return f"uses {', '.join(training_fixtures)} (a training run's fixture)"
    for marker in ("integration", "ddp"):
        if item.get_closest_marker(marker) is not None:
            return f"is marked {marker}"
    return None


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(config, items):
    wrong = []
    for item in items:
        tier = tier_of(item)
        item.add_marker(getattr(pytest.mark, tier))
        reason = misfiled(item) if tier == "unit" else None
        if reason:
            wrong.append(f"{item.nodeid} {reason}")
    if wrong:  # refused before anything runs: such a fixture builds data or whole grids first
        raise pytest.UsageError("unit tests that belong in tests/integration/:\n  " + "\n  ".join(wrong))


@pytest.fixture(autouse=True)
def _unit_tests_stay_in_one_process(request, monkeypatch):
    """A unit test that trains or starts Python fails and says to move it, so the unit tier stays fast."""
    if request.node.get_closest_marker("unit") is None:
        yield
        return

    def refuse(what: str):
        pytest.fail(f"{request.node.nodeid} is a unit test but {what}: move it to tests/integration/", pytrace=False)

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
