"""The transference pipeline family (study ``transference``; Fifty et al. 2020/2021).

One :class:`TransferenceRunConfig` run, on one dataset and seed:

1. trains all tasks together (``mean``) with SGD lookahead probes every ``probe_every`` steps →
   the affinity matrix (``affinity[recipient][source]``, the probes of the first ``warmup``
   fraction dropped) and its first-order estimate;
2. probes the trained network once more at several step sizes ``etas`` → how well the
   first-order estimate agrees with the lookahead as η → 0;
3. picks the best grouping for ``budget`` by branch-and-bound (:mod:`mtlab.grouping`);
4. trains each chosen group on its own, every task alone (STL), IT-MTL and the plain sum, with
   the same settings; a task's grouped result is the group network with its best validation
   accuracy.

Evaluation rows (``evaluation`` column): ``affinity`` (one per recipient/source pair, with
``value``, ``first_order``, ``same_group`` for planted data), ``eta`` (``eta``, ``rel_error``,
``corr``), ``grouping`` (``groups`` as text, ``value``, ``recovered`` for planted data),
``model`` (``model`` ∈ grouped / all_together / stl / itmtl / sum, ``task``, ``split``,
``accuracy``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from mtlab._seeding import derive_seed
from mtlab.grad.lookahead import LookaheadProbe, mean_affinity
from mtlab.grad.methods import make_method
from mtlab.grouping import best_grouping
from mtlab.models.multitask import MultiTaskNet, init_seeded
from mtlab.runs.config import TransferenceRunConfig
from mtlab.runs.family import Record, SequentialFamily, register_family
from mtlab.tasks.datasets import MultiTaskDataset, load_dataset
from mtlab.train.multitask import MTTrainConfig, MTTrainResult, train_multitask


def train(
    cfg: TransferenceRunConfig,
    data: MultiTaskDataset,
    method: str,
    probe_every: int = 0,
    device: torch.device | str = "cpu",
    **method_options,
) -> tuple[MultiTaskNet, MTTrainResult]:
    model = init_seeded(
        MultiTaskNet(data.input_shape, data.num_classes, "mlp", cfg.widths),
        derive_seed(cfg.seed, "init", cfg.dataset),
    )
    tcfg = MTTrainConfig(
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        diagnostics_every=10_000,
        seed=derive_seed(cfg.seed, "batches"),
        probe_every=probe_every,
        probe_rule="sgd",
        probe_eta=cfg.probe_eta,
    )
    res = train_multitask(
        model, data, make_method(method, data.n_tasks, **method_options), tcfg, device
    )
    return model, res


def eta_agreement(
    model: MultiTaskNet, data: MultiTaskDataset, etas: Sequence[float], n: int = 256
) -> list[dict[str, float]]:
    """Lookahead vs first-order affinity on one batch of training data, per step size."""
    x, y = data.x["train"][:n], data.y["train"][:n]
    T = data.n_tasks

    def losses_fn(out):
        return torch.stack([nn.functional.cross_entropy(out[1][t], y[:, t]) for t in range(T)])

    shared = [n for n, _ in model.named_parameters() if n.startswith("trunk.")]
    rows = []
    for eta in etas:
        look = LookaheadProbe(model, shared, None, rule="sgd", eta=eta)(x, losses_fn)
        Z, F = look.affinity.double(), look.first_order.double()
        rel = float((Z - F).abs().sum() / Z.abs().sum())
        corr = float(np.corrcoef(Z.flatten().numpy(), F.flatten().numpy())[0, 1])
        rows.append({"eta": eta, "rel_error": rel, "corr": corr})
    return rows


def _affinity_rows(data: MultiTaskDataset, A: Any, F: Any) -> list[dict[str, Any]]:
    """One evaluation row per (recipient, source): lookahead and first-order affinity, and
    whether both tasks share a planted group (None without planted groups)."""
    tasks, planted = data.tasks, data.meta.get("groups")
    group_of = {t: g for g, members in enumerate(planted) for t in members} if planted else None
    return [
        {
            "evaluation": "affinity",
            "recipient": tasks[i],
            "source": tasks[j],
            "value": float(A[i, j]),
            "first_order": float(F[i, j]),
            "same_group": None
            if group_of is None
            else bool(group_of[tasks[i]] == group_of[tasks[j]]),
        }
        for i in range(len(tasks))
        for j in range(len(tasks))
    ]


def _grouping_row(
    A: Any, budget: int, tasks: list[str], planted: Any, kind: str
) -> tuple[list[list[str]], dict[str, Any]]:
    """The best grouping of ``A`` for ``budget`` networks and its evaluation row."""
    grouping = best_grouping(A, budget, names=tasks)
    chosen = [sorted(g) for g in grouping.names or []]
    recovered = None if not planted else sorted(chosen) == sorted(sorted(g) for g in planted)
    row = {
        "evaluation": "grouping",
        "affinity_kind": kind,
        "groups": "; ".join(",".join(g) for g in chosen),
        "value": grouping.value,
        "recovered": recovered,
        "search_nodes": grouping.nodes,
    }
    return chosen, row


def _accuracy_rows(model_name: str, res: MTTrainResult) -> list[dict[str, Any]]:
    return [
        {
            "evaluation": "model",
            "model": model_name,
            "task": task,
            "split": split,
            "accuracy": m["accuracy"],
        }
        for split in ("val", "test")
        for task, m in res.metrics[split].items()
    ]


class TransferenceFamily(SequentialFamily):
    name = "transference"
    headline = ("value", "accuracy", "rel_error")
    eval_keys = ("evaluation", "model", "task", "split", "recipient", "source", "eta")
    config_cls = TransferenceRunConfig
    timing_columns = ("wall_s", "train_seconds", "probe_seconds")

    def sort_key(self, cfg: TransferenceRunConfig) -> tuple[Any, ...]:
        return (cfg.dataset, cfg.seed)

    def run_one(
        self, cfg: TransferenceRunConfig, device: torch.device | str = "cpu"
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The pipeline of one dataset and seed: (row, evaluation rows) — see the class doc."""
        data = load_dataset(cfg.dataset, cfg.seed)
        # 1. all tasks together, with probes
        model, res = train(cfg, data, "mean", cfg.probe_every, device)
        kept = res.probes[int(len(res.probes) * cfg.warmup) :] or res.probes
        A = mean_affinity(kept).numpy()
        evals = _affinity_rows(data, A, torch.stack([p.first_order for p in kept]).mean(0).numpy())
        evals += _accuracy_rows("all_together", res)
        # 2. first-order agreement vs η
        evals += [{"evaluation": "eta", **r} for r in eta_agreement(model, data, cfg.etas)]
        # 3. grouping, and the gradient-cosine baseline on the same probes
        planted = data.meta.get("groups")
        chosen, row = _grouping_row(A, cfg.budget, data.tasks, planted, "lookahead")
        C = torch.stack([p.cosine for p in kept]).mean(0).numpy()
        evals += [row, _grouping_row(C, cfg.budget, data.tasks, planted, "gradient_cosine")[1]]
        # 4. the chosen groups, single tasks, the plain sum and IT-MTL on the same data
        evals += self._grouped_rows(cfg, data, chosen, device)
        for t in data.tasks:
            _, sres = train(cfg, data.subset_tasks([t]), "mean", 0, device)
            evals += _accuracy_rows("stl", sres)
        _, sum_res = train(cfg, data, "sum", 0, device)
        evals += _accuracy_rows("sum", sum_res)
        if cfg.itmtl:
            _, it_res = train(cfg, data, "itmtl", 0, device)
            evals += _accuracy_rows("itmtl", it_res)
        base = cfg.row_fields()
        base.update(
            {
                "run_id": cfg.run_id(),
                "status": "ok",
                "reason": None,
                "probes": len(res.probes),
                "probe_seconds": res.probe_seconds,
                "train_seconds": res.sec_per_step * res.steps,
            }
        )
        return base, evals

    @staticmethod
    def _grouped_rows(
        cfg: TransferenceRunConfig,
        data: MultiTaskDataset,
        chosen: list[list[str]],
        device: torch.device | str,
    ) -> list[dict[str, Any]]:
        """Train each chosen group; each task is scored in its group with the best validation
        accuracy."""
        best: dict[str, dict[str, float]] = {}
        for g in chosen:
            _, gres = train(cfg, data.subset_tasks(g), "mean", 0, device)
            for t in g:
                acc = {s: gres.metrics[s][t]["accuracy"] for s in ("val", "test")}
                if t not in best or acc["val"] > best[t]["val"]:
                    best[t] = acc
        return [
            {"evaluation": "model", "model": "grouped", "task": t, "split": split,
             "accuracy": best[t][split]}
            for t in data.tasks
            for split in ("val", "test")
        ]  # fmt: skip

    def record(
        self, cfg: TransferenceRunConfig, device: torch.device | str = "cpu", pretrained=None
    ) -> Record:
        row, evals = self.run_one(cfg, device)
        return row, [], {}, evals


FAMILY = register_family(TransferenceFamily())
