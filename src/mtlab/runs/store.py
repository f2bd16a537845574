"""The results store: one folder per sweep.

Layout::

    OUT/
      config.yaml          resolved sweep (study, preset, every run config)
      rows.jsonl           one JSON line per finished run — the commit log (appended + fsynced)
      curves.jsonl         per-run loss curves, one line per run
      params/<run_id>.pt   final parameters of every run (PT runs are loaded by PT+FT runs)
      results.parquet      one row per run (config fields + metrics), or one per (run, evaluation)
                           for families that evaluate a run several ways; rebuilt atomically
      results.csv          the same table as CSV
      curves.parquet       long table run_id, step, metric, value
      figures/*.png, report.md, report.html, claims.json   (written by mtlab.report)

A run counts as finished once its line is in ``rows.jsonl`` (params and curve are written
before it), so an interrupted sweep (Ctrl-C, kill) loses no finished run, and rerunning the same
sweep skips every run already there. A torn last line from a kill is ignored on reading.

One writer per folder: :meth:`RunStore.lock` holds ``OUT/.lock`` (pid, host, start time) for
the whole command; a second process gets :class:`FolderLocked` naming the holder, and the lock of
a process that no longer exists on this host is taken over. Storing is idempotent by run id
anyway: :meth:`RunStore.add` skips a run that is already stored, and reading keeps one row and
one curve per run id.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import socket
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
    return v


class FolderLocked(RuntimeError):
    """Another live process writes into this folder; ``holder`` is its lock record."""

    def __init__(self, path: Path, holder: dict[str, Any]) -> None:
        self.holder = holder
        super().__init__(
            f"{path.parent} is in use by pid {holder.get('pid')} on {holder.get('host')} "
            f"since {holder.get('started')} (lock file {path}; if that process is gone, "
            "delete the file)"
        )


def _alive(holder: dict[str, Any]) -> bool:
    """Whether the lock's process may still run (another host: assume it does)."""
    if holder.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(holder.get("pid", -1)), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


class RunStore:
    """Append-only store of finished runs in ``root``."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "params").mkdir(exist_ok=True)
        self.rows_path = self.root / "rows.jsonl"
        self.curves_path = self.root / "curves.jsonl"
        self.lock_path = self.root / ".lock"
        self._stored: set[str] | None = None

    # ---- one writer ------------------------------------------------------------------------
    @contextmanager
    def lock(self) -> Iterator[dict[str, Any]]:
        """Hold the folder's lock for the block (:class:`FolderLocked` if a live process does)."""
        mine = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": _dt.datetime.now().isoformat(timespec="seconds"),
            "stored_at_start": len(self.done_ids()),  # for the rate and ETA of `mtlab status`
        }
        for _ in range(3):
            try:
                fd = os.open(self.lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder is not None and _alive(holder):
                    raise FolderLocked(self.lock_path, holder) from None
                stale = self.lock_path.with_name(f".lock.stale-{os.getpid()}")
                try:  # one taker wins the rename; the others retry and see its lock
                    os.rename(self.lock_path, stale)
                    stale.unlink()
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(mine, f)
            break
        else:
            raise FolderLocked(self.lock_path, self._holder() or {})
        try:
            yield mine
        finally:
            if self._holder() == mine:
                self.lock_path.unlink(missing_ok=True)

    def holder(self) -> dict[str, Any] | None:
        """The lock record of the live process writing into this folder (None if none)."""
        h = self._holder()
        return h if h is not None and _alive(h) else None

    def _holder(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.lock_path.read_text())
        except (OSError, json.JSONDecodeError):
            return None  # gone, or torn by a killed writer: stale
        return data if isinstance(data, dict) else None

    # ---- writing ---------------------------------------------------------------------------
    def _append_line(self, path: Path, obj: dict[str, Any]) -> None:
        line = json.dumps({k: _clean(v) for k, v in obj.items()}, default=str)
        if path.exists() and path.stat().st_size:
            with open(path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":  # a torn line from a killed writer: start a fresh line
                    line = "\n" + line
        with open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())

    def save_params(self, run_id: str, params: dict[str, torch.Tensor]) -> None:
        path = self.root / "params" / f"{run_id}.pt"
        _atomic_write(
            path, lambda p: torch.save({k: v.detach().cpu() for k, v in params.items()}, p)
        )

    def load_params(self, run_id: str) -> dict[str, torch.Tensor]:
        path = self.root / "params" / f"{run_id}.pt"
        if not path.exists():
            raise FileNotFoundError(f"no stored parameters for run {run_id} in {path.parent}")
        return torch.load(path, weights_only=True)

    def has_params(self, run_id: str) -> bool:
        return (self.root / "params" / f"{run_id}.pt").exists()

    def params_ok(self, run_id: str) -> bool:
        """The run's parameters exist and load (a file truncated by a crash does not)."""
        if not self.has_params(run_id):
            return False
        try:
            self.load_params(run_id)
        except Exception:
            return False
        return True

    def add(
        self,
        row: dict[str, Any],
        curve: list[dict[str, float]] | None = None,
        params: dict[str, torch.Tensor] | None = None,
        evals: list[dict[str, Any]] | None = None,
    ) -> bool:
        """Record a finished run: parameters, then curve, then the row (the commit marker).

        ``evals`` (optional) are the run's evaluation rows; they are written inside the run's one
        line of ``rows.jsonl`` (so a run is committed with all its evaluations or not at all) and
        :meth:`results` expands them into one table row each, merged with ``row``.
        """
        run_id = row["run_id"]
        if self._stored is None:
            self._stored = self.done_ids()
        if run_id in self._stored:
            if params and not self.params_ok(run_id):  # a finished run redone for its params
                self.save_params(run_id, params)
                return True
            return False
        if params:
            self.save_params(run_id, params)
        if curve:
            self._append_line(self.curves_path, {"run_id": run_id, "curve": curve})
        if evals is not None:
            row = {**row, "evals": [{k: _clean(v) for k, v in e.items()} for e in evals]}
        self._append_line(self.rows_path, row)
        self._stored.add(run_id)
        return True

    # ---- reading ---------------------------------------------------------------------------
    @staticmethod
    def _read_lines(path: Path) -> Iterable[dict[str, Any]]:
        if not path.exists():
            return
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    continue  # torn line from an interrupted write

    def rows(self) -> list[dict[str, Any]]:
        """The latest row of each run, ordered by run id — not by when it finished, so that
        every table (and every sum over it) is the same for any executor and worker count."""
        latest: dict[str, dict[str, Any]] = {}
        for row in self._read_lines(self.rows_path):
            latest[row["run_id"]] = row
        return [latest[k] for k in sorted(latest)]

    def done_ids(self) -> set[str]:
        return {r["run_id"] for r in self.rows()}

    def results(self):
        """The results table (pandas): one row per finished run, or per (run, evaluation) for
        runs stored with evaluation rows."""
        import pandas as pd

        flat = []
        for row in self.rows():
            evals = row.get("evals")
            if evals is None:
                flat.append(row)
                continue
            base = {k: v for k, v in row.items() if k != "evals"}
            if evals:
                flat.extend({**base, **e} for e in evals)
            else:
                flat.append(base)
        return pd.DataFrame(flat)

    def curves(self):
        """Long table of curves: ``run_id, step, metric, value``."""
        import pandas as pd

        latest: dict[str, list[dict[str, Any]]] = {}
        for line in self._read_lines(self.curves_path):
            latest[line["run_id"]] = line["curve"]  # one curve per run id (the last written)
        recs = []
        for run_id, curve in sorted(latest.items()):
            for point in curve:
                step = point.get("step")
                for k, v in point.items():
                    if k != "step" and v is not None:
                        recs.append((run_id, step, k, v))
        return pd.DataFrame(recs, columns=["run_id", "step", "metric", "value"])

    def write_tables(self) -> None:
        """(Re)build ``results.parquet``, ``results.csv`` and ``curves.parquet`` atomically."""
        df = self.results()
        if df.empty:
            return
        for col in df.columns:
            if df[col].dtype == object:
                df[col] = df[col].map(lambda v: v if v is None or isinstance(v, str) else str(v))
        _atomic_write(self.root / "results.parquet", lambda p: df.to_parquet(p, index=False))
        _atomic_write(self.root / "results.csv", lambda p: df.to_csv(p, index=False))
        curves = self.curves()
        _atomic_write(self.root / "curves.parquet", lambda p: curves.to_parquet(p, index=False))

    def write_csv(self, name: str, df: Any) -> Path:
        """A table as ``OUT/name`` (atomically)."""
        path = self.root / name
        _atomic_write(path, lambda p: df.to_csv(p, index=False))
        return path

    def write_json(self, name: str, obj: Any) -> Path:
        path = self.root / name
        _atomic_write(path, lambda p: p.write_text(json.dumps(obj, indent=2, default=str)))
        return path

    def write_config(self, obj: dict[str, Any]) -> Path:
        import yaml

        path = self.root / "config.yaml"
        _atomic_write(path, lambda p: p.write_text(yaml.safe_dump(obj, sort_keys=False)))
        return path

    def read_config(self) -> dict[str, Any]:
        return self.read_config_at(self.root)

    @staticmethod
    def read_config_at(root: Path) -> dict[str, Any]:
        """A folder's ``config.yaml`` (without creating anything)."""
        import yaml

        path = Path(root) / "config.yaml"
        if not path.exists():
            raise FileNotFoundError(f"{root} has no config.yaml: not an mtlab run folder")
        return yaml.safe_load(path.read_text())
