"""wandb online with an unreachable server: a bounded wait, one line saying so, then offline."""

from __future__ import annotations

import time
import warnings

from snfs.logger import RunLogger


def test_unreachable_wandb_server_falls_back_to_offline_quickly(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)  # a key that no server will accept
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    started = time.monotonic()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        logger = RunLogger({"mode": "online", "dir": str(tmp_path), "init_timeout": 15}, "probe", {"seed": 1})
    elapsed = time.monotonic() - started
    logger.finish()
    assert logger.mode == "offline"
    # about 15 s, plus starting wandb's service twice on a loaded machine; it waited 73-163 s before
    assert elapsed < 60, elapsed
    messages = [str(w.message) for w in caught if "wandb could not start in online mode" in str(w.message)]
    assert len(messages) == 1 and "\n" not in messages[0] and "logging offline instead" in messages[0]
