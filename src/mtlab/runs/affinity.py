"""Lookahead affinity of a dataset's tasks, measured while training them together
(``mtlab affinity``; the figures and the folder are written by ``mtlab.studies.transference``)."""

from __future__ import annotations

import time
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


def measure_table_affinity(
    prep: Any,
    seeds: list[int],
    steps: int = 800,
    widths: tuple[int, ...] = (128, 64),
    lr: float = 1e-3,
    batch_size: int = 64,
    probe_every: int = 100,
    method: str = "mean",
    device: str = "cpu",
    trunk: str = "mlp",
    label: str = "",
) -> list[AffinityResult]:
    """The affinity of the tasks of a user's prepared data (``mtlab.tasks.tables.prepare``: a
    table, images or IDX; mixed kinds, missing labels), one result per seed: MTL on all targets
    with lookahead probes (the SGD probe of TAG, after the first tenth of training) — the same
    measurement as ``mtlab advise``'s. ``label`` names the data in the metadata."""
    from mtlab.advise.engine import Settings, Spec, train

    if len(prep.tasks) < 2:
        raise ValueError("affinity needs at least two target tasks")
    settings = Settings(widths, lr, batch_size, steps, probe_every=probe_every, device=device,
                        trunk=trunk)  # fmt: skip
    path = label
    names = [t.name for t in prep.tasks]
    out = []
    for seed in seeds:
        outcome, _ = train(Spec(tuple(names), method, seed, probe=True), prep, settings)
        Z = np.asarray(outcome.extra["per_probe"], float)
        if not len(Z):
            raise ValueError(f"seed {seed}: no finite probe (training diverged?)")
        meta = {
            "dataset": str(path),
            "method": method,
            "rule": "sgd",
            "steps": steps,
            "probe_every": probe_every,
            "probes": len(Z),
            "seed": seed,
            "probe_seconds": outcome.extra["probe_seconds"],
            "train_seconds": outcome.seconds - outcome.extra["probe_seconds"],
            "first_order_corr": float("nan"),
            "test_metric": {t: m["test_metric"] for t, m in outcome.metrics.items()},
        }
        out.append(AffinityResult(names, Z.mean(0), outcome.extra["probe_steps"], Z, meta))
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


__all__ = ["AffinityResult", "combine_seeds", "measure_affinity", "measure_table_affinity"]
