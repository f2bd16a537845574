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
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
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


class RunStore:
    """Append-only store of finished runs in ``root``."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "params").mkdir(exist_ok=True)
        self.rows_path = self.root / "rows.jsonl"
        self.curves_path = self.root / "curves.jsonl"

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

    def add(
        self,
        row: dict[str, Any],
        curve: list[dict[str, float]] | None = None,
        params: dict[str, torch.Tensor] | None = None,
        evals: list[dict[str, Any]] | None = None,
    ) -> None:
        """Record a finished run: parameters, then curve, then the row (the commit marker).

        ``evals`` (optional) are the run's evaluation rows; they are written inside the run's one
        line of ``rows.jsonl`` (so a run is committed with all its evaluations or not at all) and
        :meth:`results` expands them into one table row each, merged with ``row``.
        """
        run_id = row["run_id"]
        if params:
            self.save_params(run_id, params)
        if curve:
            self._append_line(self.curves_path, {"run_id": run_id, "curve": curve})
        if evals is not None:
            row = {**row, "evals": [{k: _clean(v) for k, v in e.items()} for e in evals]}
        self._append_line(self.rows_path, row)

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
        latest: dict[str, dict[str, Any]] = {}
        for row in self._read_lines(self.rows_path):
            latest[row["run_id"]] = row
        return list(latest.values())

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

        recs = []
        for line in self._read_lines(self.curves_path):
            for point in line["curve"]:
                step = point.get("step")
                for k, v in point.items():
                    if k != "step" and v is not None:
                        recs.append((line["run_id"], step, k, v))
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
        import yaml

        path = self.root / "config.yaml"
        if not path.exists():
            raise FileNotFoundError(f"{self.root} has no config.yaml: not an mtlab run folder")
        return yaml.safe_load(path.read_text())
