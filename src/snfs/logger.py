"""wandb logging that never kills or loses a run.

Offline by default. If wandb cannot start (no network, bad key, service error) the logger
falls back to offline with a warning, and if that fails too it logs nothing to wandb; the
local results JSON is written regardless.
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any


class RunLogger:
    def __init__(
        self, cfg: Mapping[str, Any], run_name: str, config: dict, wandb_id: str | None = None, enabled: bool = True
    ):
        self.run = None
        self.mode = str(cfg.get("mode", "offline"))
        if not enabled or self.mode == "disabled":
            self.mode = "disabled"
            return
        modes = [self.mode] + (["offline"] if self.mode != "offline" else [])
        timeout = float(cfg.get("init_timeout", 15))
        folder = Path(str(cfg.get("dir", ".")))
        try:  # wandb looks for a git repository from it; a folder not made yet is a warning on the terminal
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            pass
        for mode in modes:
            started = time.monotonic()
            try:
                import wandb

                self.run = wandb.init(
                    project=cfg.get("project", "snfs"),
                    entity=cfg.get("entity"),
                    group=cfg.get("group"),
                    tags=list(cfg.get("tags") or []),
                    dir=str(cfg.get("dir", ".")),
                    mode=mode,  # type: ignore[arg-type]  # one of LOGGER_MODES, checked by snfs.config
                    name=run_name,
                    id=wandb_id,
                    resume="allow" if wandb_id else None,
                    config=config,
                    reinit="finish_previous",
                    # wandb waits 90 s by default and a bad key retried for minutes; training should not
                    # silent: wandb's own ~35 lines (run history and summary as sparklines) after every run's
                    # result line; finish() says in one line where the run's log is instead
                    settings=wandb.Settings(
                        init_timeout=timeout,
                        login_timeout=timeout,
                        x_graphql_retry_max=1,
                        x_graphql_retry_wait_max_seconds=2.0,
                        x_graphql_timeout_seconds=timeout / 3,
                        silent=bool(cfg.get("silent", True)),
                    ),
                )
                self.mode = mode
                return
            except Exception as exc:  # wandb raises many kinds; none may stop training
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                warnings.warn(
                    f"wandb could not start in {mode} mode after {time.monotonic() - started:.0f} s "
                    f"({type(exc).__name__}: {reason[:200]}); "
                    + (
                        "logging offline instead (wandb sync uploads it later)"
                        if mode != "offline"
                        else "logging to the local results store only"
                    ),
                    stacklevel=2,
                )
        self.mode = "disabled"

    @property
    def wandb_id(self) -> str | None:
        return getattr(self.run, "id", None)

    def log(self, metrics: Mapping[str, Any], step: int) -> None:
        if self.run is None:
            return
        try:
            self.run.log(dict(metrics), step=step)
        except Exception as exc:
            warnings.warn(f"wandb logging failed ({exc}); continuing without wandb", stacklevel=2)
            self.run = None

    def summary(self, values: Mapping[str, Any]) -> None:
        if self.run is None:
            return
        try:
            for k, v in values.items():
                self.run.summary[k] = v
        except Exception as exc:
            warnings.warn(f"wandb summary failed ({exc})", stacklevel=2)

    def finish(self, exit_code: int = 0) -> None:
        if self.run is None:
            return
        where = self.where()
        try:
            self.run.finish(exit_code=exit_code)
        except Exception as exc:
            warnings.warn(f"wandb finish failed ({exc})", stacklevel=2)
        else:
            if where:
                print(where, file=sys.stderr)
        self.run = None

    def where(self) -> str:
        """One line: where wandb keeps this run, and how to look at it."""
        run = self.run
        if run is None:
            return ""
        try:
            if self.mode == "online" and getattr(run, "url", None):
                return f"wandb: {run.url}"
            folder = Path(run.dir).parent  # <dir>/wandb/offline-run-<time>-<id>/files -> the run's folder
            return (
                f"wandb: logged offline to {folder} "
                f"(`wandb sync {folder}` uploads it, `wandb leet {folder.parent}` shows it)"
            )
        except Exception:  # noqa: BLE001 - a line of help is not worth a failure
            return ""
