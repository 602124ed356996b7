"""Read the results store for the dashboard: every run JSON, re-read when it changes.

This module imports neither torch nor hydra nor ``snfs.train``, so the dashboard starts fast on
any laptop. ``RunFolder.refresh()`` stats ``<folder>/*.json`` and
parses only the files whose size or modification time changed since the last call, so a run whose
record is rewritten while it trains (a growing ``history``) shows its new epochs on the next
refresh. A file that is not valid JSON (half-written, truncated) or is not a run record (some
other tool's JSON) is skipped with one warning per version of the file, never an exception.

A run writes its JSON only when it finishes or fails. Until then its offline wandb log
(``<folder>/wandb/*run-*/run-*.wandb``, the default ``logger.mode=offline``) is read instead
(``WandbLogs``): the run is listed as ``running`` with the epochs logged so far, ``stopped`` when
wandb logged an exit but no result was written (``stop_after_epoch``, a signal), or
``unfinished`` when neither happened for ``STALE_S``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
import warnings
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from snfs.identity import identity
from snfs.results import LISTING_FIELDS, read_record, record_problem

# The per-epoch quantity that plays the role of the prune rate for each algorithm, in order of preference.
SCHEDULE_KEYS = ("prune_rate", "zeta", "drop_fraction", "target_prune", "temperature", "threshold")

# Columns of the run list, in order: (key, header).
SUMMARY_COLUMNS = (
    ("run_id", "run"),
    ("status", "status"),
    ("dataset", "dataset"),
    ("model", "model"),
    ("algorithm", "algorithm"),
    ("variant", "variant"),
    ("density", "density"),
    ("seed", "seed"),
    ("epochs_done", "epochs"),
    ("test_error", "test err %"),
    ("val_error", "val err %"),
    ("final_density", "final density"),
    ("flops_ratio", "FLOPs / dense"),
    ("wall_time_s", "wall time s"),
    ("updated", "updated"),
)
FILTER_KEYS = ("dataset", "model", "algorithm", "density", "seed", "status")


class SkippedFile(UserWarning):
    """A file in the results folder that is not a readable run record."""


def row_key(config: Mapping[str, Any]) -> dict[str, Any]:
    """What defines a table row: the run's identity (``snfs.identity``) less its seed, flattened."""
    ident = identity(config)
    out = {k: v for k, v in ident.items() if k not in ("seed", "changed", "data_md5")}
    out.update(ident["changed"])
    return out


def _number(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    x = float(x)
    return x if math.isfinite(x) else None


@dataclass
class Run:
    """One run record and what the dashboard derives from it."""

    record: dict
    path: Path
    mtime: float
    history: list[dict] = field(default_factory=list)
    differences: str = ""  # set by ``annotate_variants``: how this run's config differs from its algorithm's usual one
    _summary: dict | None = field(default=None, repr=False)

    @property
    def run_id(self) -> str:
        return self.record["run_id"]

    @property
    def status(self) -> str:
        return str(self.record.get("status") or "unknown")

    @property
    def row(self) -> str:
        """An id shared by the runs of one table row (same config but the seed)."""
        config = self.record.get("config")
        if isinstance(config, Mapping):
            blob = json.dumps(row_key(config), sort_keys=True, default=str)
        else:
            blob = json.dumps([self.record.get(k) for k in ("dataset", "model", "algorithm", "density")], default=str)
        return hashlib.sha1(blob.encode()).hexdigest()[:8]

    @property
    def variant(self) -> str:
        """``sparse.label`` where the run has one, else the options where it differs from the runs of its
        algorithm (``annotate_variants``), else empty."""
        config = self.record.get("config")
        label = (
            config.get("sparse", {}).get("label")
            if isinstance(config, Mapping) and isinstance(config.get("sparse"), Mapping)
            else None
        )
        return str(label) if label else self.differences

    def summary(self) -> dict[str, Any]:
        if self._summary is None:
            self._summary = self._make_summary()
        return self._summary

    def _make_summary(self) -> dict[str, Any]:
        r = self.record
        epochs = r.get("epochs")
        if not isinstance(epochs, int) and isinstance(r.get("config"), Mapping):
            epochs = r["config"].get("epochs")
        done = len(self.history)
        return {
            "run_id": self.run_id,
            "status": self.status,
            "dataset": r["dataset"],
            "model": r["model"],
            "algorithm": r["algorithm"],
            "variant": self.variant,
            "row": self.row,
            "density": _number(r.get("density")),
            "seed": r.get("seed") if isinstance(r.get("seed"), int) else None,
            "epochs_done": f"{done}/{epochs}" if isinstance(epochs, int) else str(done),
            "test_error": _number(r.get("test_error")),
            "val_error": _number(r.get("val_error"))
            if r.get("val_error") is not None
            else (_number(self.history[-1].get("val_error")) if self.history else None),
            "final_density": _number(r.get("final_density"))
            if r.get("final_density") is not None
            else (_number(self.history[-1].get("density")) if self.history else None),
            "flops_ratio": _number(r.get("flops_ratio")),
            "wall_time_s": _number(r.get("wall_time_s")),
            "updated": time.strftime("%Y-%m-%d %H:%M", time.localtime(self.mtime)),
        }

    def series(self, key: str) -> tuple[list[float], list[float]]:
        """(epochs, values) of one per-epoch quantity; epochs without it are left out."""
        xs, ys = [], []
        for i, h in enumerate(self.history):
            y = _number(h.get(key))
            if y is not None:
                xs.append(_number(h.get("epoch")) or float(i + 1))
                ys.append(y)
        return xs, ys

    def schedule_key(self) -> str | None:
        """The algorithm's prune-rate-like quantity that this run logged (see ``SCHEDULE_KEYS``)."""
        for key in SCHEDULE_KEYS:
            if any(_number(h.get(key)) is not None for h in self.history):
                return key
        return None

    def layers(self) -> list[str]:
        names: dict[str, None] = {}
        for h in self.history:
            if isinstance(h.get("layer_density"), Mapping):
                names.update(dict.fromkeys(h["layer_density"]))
        return sorted(names, key=lambda n: [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", n)])

    def layer_series(self, layer: str, key: str = "layer_density") -> tuple[list[float], list[float]]:
        xs, ys = [], []
        for i, h in enumerate(self.history):
            per = h.get(key)
            y = _number(per.get(layer)) if isinstance(per, Mapping) else None
            if y is not None:
                xs.append(_number(h.get("epoch")) or float(i + 1))
                ys.append(y)
        return xs, ys


class RunFolder:
    """The run JSONs of one folder, re-read by ``refresh()`` whenever a file changes."""

    def __init__(self, folder: str | Path, wandb: bool = True):
        self.folder = Path(folder)
        self._cache: dict[Path, tuple[tuple[int, int], Run | None]] = {}
        self.skipped: dict[str, str] = {}  # file name -> why it was skipped (the latest refresh)
        self.wandb = WandbLogs(self.folder / "wandb") if wandb else None

    def refresh(self) -> list[Run]:
        """The readable run records now in the folder, sorted by run id."""
        if not self.folder.is_dir():
            raise FileNotFoundError(
                f"results folder {self.folder} does not exist (RESULTS=... names the folder of run JSONs)"
            )
        seen: set[Path] = set()
        runs: list[Run] = []
        skipped: dict[str, str] = {}
        for path in sorted(self.folder.glob("*.json")):
            try:
                st = path.stat()
            except OSError:  # removed between the listing and now
                continue
            seen.add(path)
            stamp = (st.st_mtime_ns, st.st_size)
            cached = self._cache.get(path)
            if cached is None or cached[0] != stamp:
                run, why = self._read(path, st.st_mtime)
                if why is not None:
                    warnings.warn(f"skipped {path}: {why}", SkippedFile, stacklevel=2)
                cached = (stamp, run)
                self._cache[path] = cached
                if why is not None:
                    skipped[path.name] = why
            if cached[1] is None:
                skipped.setdefault(path.name, self.skipped.get(path.name, "unreadable"))
            else:
                runs.append(cached[1])
        for gone in set(self._cache) - seen:
            del self._cache[gone]
        self.skipped = skipped
        if self.wandb is not None:  # runs still training (or stopped early) have no JSON yet: their wandb logs
            recorded = {r.run_id for r in runs}
            runs.extend(self.wandb.refresh(recorded))
        runs.sort(key=lambda r: r.run_id)
        annotate_variants(runs)
        return runs

    @staticmethod
    def _read(path: Path, mtime: float) -> tuple[Run | None, str | None]:
        obj, why = read_record(path, LISTING_FIELDS, needs_config=False)
        if obj is None:
            return None, why
        history = [dict(h) for h in obj.get("history") or [] if isinstance(h, Mapping)]
        return Run(record=obj, path=path, mtime=mtime, history=history), None


class RunStores:
    """Several results stores read as one (the committed store and a user's own): a run id found in more
    than one is shown from the last store that has it, so a user's own run of a committed config is the
    one listed."""

    def __init__(self, folders: Sequence[str | Path], wandb: bool = True):
        self.parts = [RunFolder(f, wandb=wandb) for f in folders]
        self.folder = self.parts[0].folder
        self.skipped: dict[str, str] = {}

    def refresh(self) -> list[Run]:
        present = [p for p in self.parts if p.folder.is_dir()]
        if not present:
            raise FileNotFoundError(
                f"results folder {self.folder} does not exist (RESULTS=... names the folder of run JSONs)"
            )
        by_id: dict[str, Run] = {}
        skipped: dict[str, str] = {}
        for part in present:
            for run in part.refresh():
                by_id[run.run_id] = run
            skipped.update(
                {str(part.folder / name) if len(self.parts) > 1 else name: why for name, why in part.skipped.items()}
            )
        self.skipped = skipped
        runs = sorted(by_id.values(), key=lambda r: r.run_id)
        annotate_variants(runs)
        return runs


def _shown(value: Any) -> Any:
    """A config value as the user wrote it: identities hash every number as a float, so 3 arrives as 3.0."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return [_shown(v) for v in value] if isinstance(value, list) else value


def annotate_variants(runs: Sequence[Run]) -> None:
    """Tell apart the variants of an algorithm: for the runs of one (dataset, model, algorithm), each
    config key (density and seed aside) whose value differs from the value most runs have is listed
    in the run's ``differences``, e.g. ``new_sign=first_update, noise_and_l1=gradient``."""
    groups: dict[tuple, list[tuple[Run, dict]]] = {}
    for run in runs:
        config = run.record.get("config")
        flat = row_key(config) if isinstance(config, Mapping) else {}
        flat = {
            k: json.dumps(v, sort_keys=True, default=str)
            for k, v in flat.items()
            if k not in ("density", "sparse.label")
        }
        groups.setdefault((run.record["dataset"], run.record["model"], run.record["algorithm"]), []).append((run, flat))
    for members in groups.values():
        counts: dict[str, Counter] = {}
        for _, flat in members:
            for k, v in flat.items():
                counts.setdefault(k, Counter())[v] += 1
        usual = {k: c.most_common(1)[0][0] for k, c in counts.items() if sum(c.values()) * 2 > len(members)}
        for run, flat in members:
            diff = [
                f"{k.removeprefix('sparse.')}={_shown(json.loads(v))}"
                for k, v in sorted(flat.items())
                if usual.get(k, v) != v or (k not in usual and len(members) > 1)
            ]
            text = ", ".join(diff)
            if text != run.differences:
                run.differences, run._summary = text, None


# --- runs that have no record yet: their offline wandb logs ------------------------------------------------

STALE_S = 30 * 60  # a wandb log without an exit record, unchanged this long: the run was killed


def wandb_log_records(data: bytes) -> Iterator[bytes]:
    """The records of a ``run-<id>.wandb`` file: a 7-byte header (``:W&B``, magic, version), then
    LevelDB-log records (4-byte checksum, 2-byte length, 1-byte type; 32 KiB blocks). A record cut
    off at the end (the file is being written) ends the listing."""
    if data[:4] != b":W&B":
        return
    block, pos, parts = 32768, 7, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # the rest of a block too short for a header is padding
            pos += left
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        if kind == 0 and length == 0:
            pos += left
            continue
        end = pos + 7 + length
        if end > len(data):
            return
        chunk, pos = data[pos + 7 : end], end
        if kind == 1:  # full
            yield chunk
        elif kind == 2:  # first
            parts = chunk
        elif kind == 3:  # middle
            parts += chunk
        elif kind == 4:  # last
            yield parts + chunk
            parts = b""
        else:
            return


def read_wandb_log(path: Path, skip: set[str] | frozenset = frozenset()) -> dict | None:
    """Run name (= our run id), config, per-epoch history and whether it exited, from a wandb log.
    A run named in ``skip`` (it has its JSON) is not read past its name (``"partial": True``)."""
    from wandb.proto import wandb_internal_pb2 as pb  # only when there are wandb logs to read

    out: dict[str, Any] = {"run_id": None, "config": {}, "history": [], "exited": False, "partial": False}
    for raw in wandb_log_records(path.read_bytes()):
        rec = pb.Record()  # type: ignore[attr-defined]  # generated protobuf class, no stubs
        try:
            rec.ParseFromString(raw)
        except Exception:  # a damaged record: keep what came before it
            break
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            out["run_id"] = rec.run.display_name or out["run_id"]
            if out["run_id"] in skip:
                out["partial"] = True
                return out
            updates = rec.run.config.update
        elif kind == "config":
            updates = rec.config.update
        elif kind == "history":
            row: dict[str, Any] = {}
            for item in rec.history.item:
                key = item.key or "/".join(item.nested_key)
                if key.startswith("_"):
                    continue
                try:
                    value = json.loads(item.value_json)
                except ValueError:
                    continue
                if key.startswith("layer_density/"):
                    row.setdefault("layer_density", {})[key.split("/", 1)[1]] = value
                else:
                    row[key] = value
            if "epoch" in row:
                out["history"].append(row)
            continue
        elif kind == "exit":
            out["exited"] = True
            continue
        else:
            continue
        for item in updates:
            key = item.key or "/".join(item.nested_key)
            if key != "_wandb":
                try:
                    out["config"][key] = json.loads(item.value_json)
                except ValueError:
                    pass
    return out if out["run_id"] else None


class WandbLogs:
    """The runs in ``<results>/wandb/`` (offline or online logs), merged per run name; re-read on change."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._cache: dict[Path, tuple[tuple[int, int], dict | None]] = {}
        self._failed = False

    def refresh(self, recorded: set[str] | frozenset = frozenset()) -> list[Run]:
        """The runs of the logs, less those in ``recorded`` (they have a JSON: their logs are read only to
        their name)."""
        if self._failed or not self.folder.is_dir():
            return []
        logs: dict[str, list[tuple[float, dict, Path]]] = {}
        for path in sorted(self.folder.glob("*run-*/run-*.wandb")):
            try:
                st = path.stat()
            except OSError:
                continue
            stamp = (st.st_mtime_ns, st.st_size)
            cached = self._cache.get(path)
            stale = (
                cached is not None
                and cached[1] is not None
                and cached[1]["partial"]
                and cached[1]["run_id"] not in recorded
            )
            if cached is None or cached[0] != stamp or stale:
                try:
                    cached = (stamp, read_wandb_log(path, recorded))
                except ImportError as exc:
                    warnings.warn(
                        f"cannot read the wandb logs in {self.folder} ({exc}); runs still training are not shown",
                        SkippedFile,
                        stacklevel=3,
                    )
                    self._failed = True
                    return []
                except OSError:
                    continue
                self._cache[path] = cached
            if cached[1] is not None and cached[1]["run_id"] not in recorded:
                logs.setdefault(cached[1]["run_id"], []).append((st.st_mtime, cached[1], path))
        runs = []
        for run_id, parts in logs.items():
            parts.sort(key=lambda p: p[0])  # a resumed run has one log per start: later epochs win
            by_epoch: dict[Any, dict] = {}
            config: dict = {}
            for _, log, _ in parts:
                config.update(log["config"])
                for row in log["history"]:
                    by_epoch[row["epoch"]] = row
            mtime, last, path = parts[-1]
            history = [by_epoch[e] for e in sorted(by_epoch, key=lambda e: (str(type(e)), e))]
            status = "stopped" if last["exited"] else ("unfinished" if time.time() - mtime > STALE_S else "running")

            def sub(k: str, config: dict = config) -> str | None:
                return config[k].get("name") if isinstance(config.get(k), Mapping) else None

            record = {
                "status": status,
                "run_id": run_id,
                "dataset": sub("dataset"),
                "model": sub("model"),
                "algorithm": sub("sparse"),
                "density": config.get("density"),
                "seed": config.get("seed"),
                "epochs": config.get("epochs"),
                "config": config,
                "history": history,
                "source": str(path),
            }
            if record_problem(record, LISTING_FIELDS, needs_config=False) is None:
                runs.append(Run(record=record, path=path, mtime=mtime, history=history))
        return runs
