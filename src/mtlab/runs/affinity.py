"""Lookahead affinity of a data set's tasks, measured while training them together: the probed
runs of the own-data family (:mod:`mtlab.runs.owndata`; your own data or a built-in dataset) read
back by :func:`results_from_rows` as one :class:`AffinityResult` per run (seed), and averaged by
:func:`combine_seeds` (``mtlab affinity``; ``affinity.json`` and the figures are written by the
``affinity`` study).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class AffinityResult:
    """``affinity`` (recipient × source, mean over the probes), per-probe ``steps`` and
    ``per_probe`` affinities ``(P, T, T)``, and ``meta`` (what ``affinity.json`` records)."""

    tasks: list[str]
    affinity: np.ndarray
    steps: list[int]
    per_probe: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)


def _finite(v: Any) -> float:
    """A stored number (the store writes ±inf as strings, NaN as null)."""
    return math.nan if v is None else float(v)


def results_from_rows(rows: list[dict[str, Any]]) -> list[AffinityResult]:
    """One result per finished probed run (its seed), in seed order; runs that failed or measured
    no finite probe are left out. ``meta.first_order_corr``: the correlation of the lookahead
    with its first-order estimate over every probe's entries (NaN where only the estimate was
    measured)."""
    out = []
    for row in sorted(rows, key=lambda r: (r.get("seed", 0), r["run_id"])):
        evals = {e["task"]: e for e in row.get("evals") or []}
        tasks = list(row.get("tasks") or [])
        if row.get("status") != "ok" or not row.get("probe") or not all(
                evals.get(t, {}).get("affinity_per_probe") for t in tasks):  # fmt: skip
            continue
        Z = np.stack([np.asarray(evals[t]["affinity_per_probe"], float) for t in tasks], axis=1)
        F = [evals[t].get("first_order_per_probe") or [] for t in tasks]
        F_ = np.stack([np.asarray(f, float) for f in F], axis=1) if all(F) else None
        corr = float(np.corrcoef(Z.ravel(), F_.ravel())[0, 1]) if F_ is not None else math.nan
        meta = {
            "dataset": row.get("data") or row.get("dataset"), "method": row["method"],
            "rule": row["probe_rule"], "steps": row["steps"], "probe_every": row["probe_every"],
            "probes": len(Z), "seed": row["seed"], "probe_seconds": row["probe_seconds"],
            "train_seconds": _finite(row.get("wall_s")) - row["probe_seconds"],
            "first_order_corr": corr,
            "first_order": None if F_ is None else F_.mean(0).tolist(),
            "test_metric": {t: _finite(evals[t]["test_metric"]) for t in tasks},
        }  # fmt: skip
        out.append(AffinityResult(tasks, Z.mean(0), list(row["probe_steps"]), Z, meta))
    return out


def combine_seeds(results: list[AffinityResult]) -> AffinityResult:
    """One result from several seeds: the mean affinity, its standard error over seeds, and —
    for budgets 2 … T — whether each seed's own matrix chooses the mean's grouping."""
    from mtlab.grouping import by_budget

    if len(results) == 1:
        return results[0]
    mats = np.stack([r.affinity for r in results])
    A = mats.mean(0)
    se = mats.std(0, ddof=1) / np.sqrt(len(mats))
    tasks = results[0].tasks
    stability = by_budget(A, range(2, len(tasks)), list(mats), tasks)
    steps = results[0].steps
    n = min(len(r.per_probe) for r in results)
    per_probe = np.stack([r.per_probe[:n] for r in results]).mean(0)
    meta = dict(results[0].meta)
    meta.update({
        "seeds": [r.meta.get("seed") for r in results],
        "se": se.tolist(),
        "per_seed": mats.tolist(),
        "grouping_stability": stability,
        "probe_seconds": float(sum(r.meta.get("probe_seconds", 0.0) for r in results)),
        "train_seconds": float(sum(r.meta.get("train_seconds", 0.0) for r in results)),
        "probes": int(sum(r.meta.get("probes", 0) for r in results)),
    })  # fmt: skip
    return AffinityResult(tasks, A, list(steps[:n]), per_probe, meta)


__all__ = ["AffinityResult", "combine_seeds", "results_from_rows"]
