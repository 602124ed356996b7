"""``keep_freed_memory``: blocks the size of a CPU run's activations come from the heap and stay there."""

from support import compose_cfg

import snfs.train as train_module
from snfs.train import Trainer


def test_cpu_runs_keep_freed_memory_unless_told_not_to(monkeypatch, quick_overrides):
    calls = []
    monkeypatch.setattr(train_module, "keep_freed_memory", lambda: calls.append(1) or True)
    Trainer(compose_cfg(quick_overrides + ["device=cpu"]))
    assert calls == [1]
    Trainer(compose_cfg(quick_overrides + ["device=cpu", "keep_freed_memory=false"]))
    assert calls == [1]
