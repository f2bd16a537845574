"""Lookahead affinity of a dataset's tasks, measured while training them together
(``mtlab affinity``; the figures and ``affinity.json`` are written by the ``affinity`` study).

Two families measure it: ``lookahead`` (here: a built-in dataset, :func:`measure_affinity`) and
``owndata`` with ``probe`` (your own data, :mod:`mtlab.runs.owndata`). :func:`results_from_rows`
reads either family's stored runs back as one :class:`AffinityResult` per run (seed), and
:func:`combine_seeds` averages them.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mtlab.runs.config import LookaheadRunConfig
from mtlab.runs.family import Record, SequentialFamily, register_family


@dataclass
class AffinityResult:
    """``affinity`` (recipient × source, mean over the probes), per-probe ``steps`` and
    ``per_probe`` affinities ``(P, T, T)``, and ``meta`` (what ``affinity.json`` records)."""

    tasks: list[str]
    affinity: np.ndarray
    steps: list[int]
    per_probe: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)


def measure_affinity(
    dataset: str,
    epochs: int = 10,
    probe_every: int = 100,
    rule: str = "optimizer",
    method: str = "mean",
    seed: int = 0,
    device: str = "cpu",
    widths: tuple[int, ...] = (128, 64),
    lr: float = 1e-3,
    batch_size: int = 64,
) -> AffinityResult:
    """Train all tasks of ``dataset`` (an MLP trunk, one head per task) with ``method`` and
    lookahead probes every ``probe_every`` steps; return the mean affinity and what was measured."""
    import torch

    from mtlab.grad.lookahead import mean_affinity
    from mtlab.grad.methods import make_method
    from mtlab.models.multitask import MultiTaskNet, init_seeded
    from mtlab.tasks.datasets import load_dataset
    from mtlab.train.multitask import MTTrainConfig, train_multitask

    data = load_dataset(dataset, seed)
    model = init_seeded(MultiTaskNet(data.input_shape, data.num_classes, "mlp", widths), seed)
    cfg = MTTrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        probe_every=probe_every,
        probe_rule=rule,
        seed=seed,
    )
    t0 = time.perf_counter()
    res = train_multitask(model, data, make_method(method, data.n_tasks), cfg, device)
    wall = time.perf_counter() - t0
    A = mean_affinity(res.probes).numpy()
    F = torch.stack([p.first_order for p in res.probes]).mean(0).numpy()
    meta = {
        "dataset": dataset,
        "method": method,
        "rule": rule,
        "epochs": epochs,
        "probe_every": probe_every,
        "probes": len(res.probes),
        "seed": seed,
        "probe_seconds": res.probe_seconds,
        "train_seconds": wall - res.probe_seconds,
        "first_order": F.tolist(),
        "affinity_per_lr": mean_affinity(res.probes, per_lr=True).tolist(),
        "gradient_cosine": torch.stack([p.cosine for p in res.probes]).mean(0).tolist(),
        "first_order_corr": float(np.corrcoef(A.flatten(), F.flatten())[0, 1]),
        "lr": res.probes[0].lr if res.probes else None,
        "test_accuracy": {t: m["accuracy"] for t, m in res.metrics["test"].items()},
    }
    steps = [getattr(pr, "step", k) for k, pr in enumerate(res.probes)]
    Z = np.stack([pr.affinity.numpy() for pr in res.probes])
    return AffinityResult(list(data.tasks), A, steps, Z, meta)


class LookaheadFamily(SequentialFamily):
    """One :class:`~mtlab.runs.config.LookaheadRunConfig` = one :func:`measure_affinity`; the
    row carries the tasks, the mean and per-probe affinity, the probe steps and the metadata."""

    name = "lookahead"
    config_cls = LookaheadRunConfig
    columns = ("tasks", "affinity", "per_probe", "probe_steps", "meta")
    timing_columns = ("wall_s", "meta")

    def sort_key(self, cfg: LookaheadRunConfig) -> tuple[Any, ...]:
        return (cfg.dataset, cfg.seed)

    def record(self, cfg: LookaheadRunConfig, device: Any = "cpu", pretrained: Any = None) -> Record:
        res = measure_affinity(cfg.dataset, cfg.epochs, cfg.probe_every, cfg.rule, cfg.method,
                               cfg.seed, str(device), cfg.widths, cfg.lr,
                               cfg.batch_size)  # fmt: skip
        row = {**cfg.row_fields(), "run_id": cfg.run_id(), "status": "ok", "reason": None,
               "tasks": res.tasks, "affinity": res.affinity.tolist(),
               "per_probe": res.per_probe.tolist(), "probe_steps": list(res.steps),
               "meta": res.meta}  # fmt: skip
        return row, [], {}, []


def _finite(v: Any) -> float:
    """A stored number (the store writes ±inf as strings, NaN as null)."""
    return math.nan if v is None else float(v)


def results_from_rows(rows: list[dict[str, Any]]) -> list[AffinityResult]:
    """One result per finished run (its seed) of either family, in seed order; runs that failed
    or measured no finite probe are left out."""
    out = []
    for row in sorted(rows, key=lambda r: (r.get("seed", 0), r["run_id"])):
        if row.get("status") != "ok":
            continue
        if row.get("family") == "lookahead":
            Z = np.asarray(row["per_probe"], float)
            out.append(AffinityResult(list(row["tasks"]), np.asarray(row["affinity"], float),
                                      list(row["probe_steps"]), Z, dict(row["meta"])))  # fmt: skip
            continue
        evals = {e["task"]: e for e in row.get("evals") or []}
        tasks = list(row["tasks"])
        if not all(evals.get(t, {}).get("affinity_per_probe") for t in tasks):
            continue
        Z = np.stack([np.asarray(evals[t]["affinity_per_probe"], float) for t in tasks], axis=1)
        meta = {
            "dataset": row["data"], "method": row["method"], "rule": "sgd", "steps": row["steps"],
            "probe_every": row["probe_every"], "probes": len(Z), "seed": row["seed"],
            "probe_seconds": row["probe_seconds"],
            "train_seconds": _finite(row.get("wall_s")) - row["probe_seconds"],
            "first_order_corr": math.nan,
            "test_metric": {t: _finite(evals[t]["test_metric"]) for t in tasks},
        }  # fmt: skip
        out.append(AffinityResult(tasks, Z.mean(0), list(row["probe_steps"]), Z, meta))
    return out


def combine_seeds(results: list[AffinityResult]) -> AffinityResult:
    """One result from several seeds: the mean affinity, its standard error over seeds, and —
    for budgets 2 … T — whether each seed's own matrix chooses the mean's grouping."""
    from mtlab.grouping import best_grouping

    if len(results) == 1:
        return results[0]
    mats = np.stack([r.affinity for r in results])
    A = mats.mean(0)
    se = mats.std(0, ddof=1) / np.sqrt(len(mats))
    tasks = results[0].tasks
    stability = {}
    for b in range(2, len(tasks)):
        try:
            best = best_grouping(A, b, names=tasks).names or []
        except ValueError:
            continue
        canon = sorted(sorted(g) for g in best)
        agree = 0
        for m in mats:
            try:
                agree += (
                    sorted(sorted(g) for g in best_grouping(m, b, names=tasks).names or []) == canon
                )
            except ValueError:
                pass
        stability[str(b)] = {"groups": best, "seeds_agree": agree / len(mats)}
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


FAMILY = register_family(LookaheadFamily())

__all__ = ["AffinityResult", "LookaheadFamily", "combine_seeds", "measure_affinity",
           "results_from_rows"]  # fmt: skip
