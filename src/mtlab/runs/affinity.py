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
        epochs=epochs, batch_size=64, probe_every=probe_every, probe_rule=rule, seed=seed
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


__all__ = ["AffinityResult", "measure_affinity"]
