"""The subspace-task family (Collins et al. 2024): pretrain a first layer, measure it, probe it.

Each :class:`SubspaceRunConfig` run is cheap and self-contained (one or a few hundred batched
steps), so runs are executed one after another; inside a run every step covers all tasks at once.
A run stores its first layer (``params/<run_id>.pt``) and one results row **per evaluation**:

* a ``recovery`` evaluation (``n_down`` and ``downstream_task`` empty) with ``energy``,
  ``sin_max``, ``coverage``, ``n_dirs`` of ``W`` against the true projection ``M``;
* for alternating SGD, one such row per logged ``round``;
* one row per (``downstream_task``, ``down_index``, ``n_down``) with the probe's ``test_acc``,
  ``val_acc``, ``train_acc`` and chosen ``lam`` (the subspace metrics of ``W`` repeated).

Random streams (all derived from the run's ``seed``): ``M`` from ``(seed, d, r)``; task directions
and each task's samples from the task index (the same tasks for every ``T`` and every feature
type); ``W0`` from ``(seed, d, m)`` — so ``random_features`` is exactly the initialisation the
trained layers start from; downstream tasks, their samples and the probe biases ``b'`` are shared
by every feature type of a seed (common random numbers).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from mtlab._seeding import generator
from mtlab.measure.probe import fit_probe
from mtlab.measure.subspace import subspace_metrics
from mtlab.models.relu import hidden, init_first_layer, normalise_rows
from mtlab.runs.config import SubspaceRunConfig
from mtlab.runs.family import Record, SequentialFamily, register_family
from mtlab.tasks.subspace import (
    SubspaceSpec,
    downstream_task,
    projection,
    sample_downstream,
    sample_tasks,
    task_offsets,
    unit_directions,
)
from mtlab.theory.pseudo_contrastive import population_one_step
from mtlab.train.headfirst import alternating_sgd, auto_task_block, one_step

DTYPES = {"float32": torch.float32, "float64": torch.float64}
HEADS = {
    "mtl": "learned",
    "single_task": "learned",
    "shared_head": "shared",
    "random_heads": "random",
}


class SubspaceFamily(SequentialFamily):
    """Executor hooks for :class:`SubspaceRunConfig` (runs are not ensembled)."""

    name = "subspace"
    headline = ("test_acc", "sin_max", "energy")
    eval_keys = ("evaluation", "round", "downstream_task", "n_down")
    config_cls = SubspaceRunConfig
    columns = ("n_tasks_trained",)

    def sort_key(self, cfg: SubspaceRunConfig) -> tuple[Any, ...]:
        return (cfg.method, cfg.features, cfg.d, cfg.T, cfg.seed)

    memory_fields = ("d", "T", "n1", "n2")

    def bytes_per_run(self, cfg: SubspaceRunConfig) -> int:
        return 4 * cfg.T * max(cfg.n1, cfg.n2) * cfg.d

    # ---- pretraining ---------------------------------------------------------------------
    def pretrain(
        self, cfg: SubspaceRunConfig, M: Tensor, device: torch.device | str
    ) -> tuple[Tensor | None, list[dict[str, Any]], dict[str, float]]:
        """The first layer of this run (None for ``raw_input``), for alternating SGD the logged
        subspace metrics per round, and extra metrics: for one-step runs with learned heads,
        ``theory_cos`` — the mean cosine between each row of ``W1`` and the same row of the
        population prediction ``W0 Mᵀ Θ̂ M`` (exact in expectation for odd tasks without biases
        or offsets; see :mod:`mtlab.theory.pseudo_contrastive`)."""
        dtype = M.dtype
        if cfg.features == "raw_input":
            return None, [], {}
        W0 = init_first_layer(cfg.m, cfg.d, generator(cfg.seed, "W0", cfg.d, cfg.m), dtype)
        W0 = W0.to(device)
        if cfg.features == "random_features":
            return W0, [], {}
        spec = SubspaceSpec(cfg.d, cfg.r, cfg.margin, cfg.label_noise, cfg.offset)
        single = cfg.features == "single_task"
        T = 1 if single else cfg.T
        scale = cfg.T if single else 1  # single task: the whole multi-task sample budget
        theta = unit_directions(T, cfg.r, cfg.seed, "theta")
        offsets = task_offsets(T, cfg.offset, cfg.seed)
        bias = None
        if cfg.pretrain_bias > 0:
            g = generator(cfg.seed, "pretrain-bias", cfg.m)
            bias = (torch.randn(cfg.m, generator=g, dtype=dtype) * cfg.pretrain_bias).to(device)
        # resolved by the config's validator
        assert cfg.eta_a is not None and cfg.eta_w is not None and cfg.weight_decay is not None
        assert cfg.loss is not None

        def sampler(
            n: Callable[[str], int],
        ) -> Callable[[str, Sequence[int]], tuple[Tensor, Tensor]]:
            def sample(stream: str, tasks: Sequence[int]) -> tuple[Tensor, Tensor]:
                return sample_tasks(spec, M, theta, offsets, n(stream), cfg.seed, stream, tasks)

            return sample

        if cfg.method == "alternating":
            n_round = cfg.samples_per_round * scale
            log = alternating_sgd(
                W0,
                T,
                sampler(lambda stream: n_round),
                rounds=cfg.rounds,
                batch_tasks=cfg.batch_tasks,
                head_steps=cfg.head_steps,
                eta_a=cfg.eta_a,
                eta_w=cfg.eta_w,
                weight_decay=cfg.weight_decay,
                loss=cfg.loss,
                bias=bias,
                generator=generator(cfg.seed, "task-batches"),
                log_every=cfg.log_every,
                measure=lambda W, A: subspace_metrics(W, M),
            )
            per_round = [
                {"round": k, **rec} for k, rec in zip(log.rounds, log.records, strict=True)
            ]
            return log.W, per_round, {}
        n = {"head": cfg.n1 * scale, "rep": cfg.n2 * scale}
        return self._one_step(
            cfg, M, W0, theta, sampler(n.__getitem__), max(n.values()), bias, device
        )

    @staticmethod
    def _one_step(
        cfg: SubspaceRunConfig,
        M: Tensor,
        W0: Tensor,
        theta: Tensor,
        sampler: Callable[[str, Sequence[int]], tuple[Tensor, Tensor]],
        n_max: int,
        bias: Tensor | None,
        device: torch.device | str,
    ) -> tuple[Tensor, list[dict[str, Any]], dict[str, float]]:
        """Head-first one-step training (learned, shared or fixed random heads) and, with learned
        heads, the mean row cosine to the population prediction (``theory_cos``)."""
        assert cfg.eta_a is not None and cfg.eta_w is not None and cfg.weight_decay is not None
        assert cfg.loss is not None
        T = theta.shape[0]
        random_heads = None
        if cfg.features == "random_heads":
            g = generator(cfg.seed, "random-heads", T, cfg.m)
            random_heads = torch.randn(T, cfg.m, generator=g, dtype=M.dtype) * cfg.random_head_scale
        res = one_step(
            W0,
            T,
            sampler,
            eta_a=cfg.eta_a,
            eta_w=cfg.eta_w,
            weight_decay=cfg.weight_decay,
            loss=cfg.loss,
            heads=HEADS[cfg.features],
            bias=bias,
            random_heads=None if random_heads is None else random_heads.to(device),
            task_block=auto_task_block(
                n_max, cfg.d, cfg.m, itemsize=M.element_size(), device=device
            ),
        )
        extra = {}
        if HEADS[cfg.features] == "learned":
            pred = population_one_step(W0, M, theta.to(W0))
            cos = torch.nn.functional.cosine_similarity(res.W.double(), pred.double(), dim=1)
            extra["theory_cos"] = float(cos.mean())
        return res.W, [], extra

    # ---- downstream ----------------------------------------------------------------------
    @staticmethod
    def feature_map(cfg: SubspaceRunConfig, W: Tensor | None) -> Callable[[Tensor], Tensor]:
        """``x ↦ σ(Ŵx + b')`` (unit rows, fresh biases shared by every feature type of the
        seed and width), or the identity for raw inputs."""
        if W is None:
            return lambda x: x
        g = generator(cfg.seed, "down-bias", cfg.m)
        b = (torch.randn(cfg.m, generator=g, dtype=torch.float64) * cfg.down_bias_std).to(W)
        Wn = normalise_rows(W)
        return lambda x: hidden(Wn, x, b)

    def downstream(
        self, cfg: SubspaceRunConfig, W: Tensor | None, M: Tensor
    ) -> list[dict[str, Any]]:
        """Probe rows for every downstream kind, task index and ``n_down``."""
        phi = self.feature_map(cfg, W)
        rows = []
        for kind, n_downs in (("halfspace", cfg.down_halfspace), ("xor", cfg.down_xor)):
            if not n_downs:
                continue
            for index in range(cfg.down_tasks):
                task = downstream_task(kind, cfg.r, cfg.seed, index)
                data = {
                    split: sample_downstream(task, M, n, cfg.seed, split, index)
                    for split, n in (
                        ("train", max(n_downs)),
                        ("val", cfg.n_val),
                        ("test", cfg.n_test),
                    )
                }
                feats = {s: (phi(x), y) for s, (x, y) in data.items()}
                (Ftr, ytr), (Fv, yv), (Fte, yte) = feats["train"], feats["val"], feats["test"]
                for n in sorted(set(n_downs)):
                    probe = fit_probe(Ftr[:n], ytr[:n], Fv, yv, cfg.probe)
                    rows.append(
                        {
                            "downstream_task": kind,
                            "down_index": index,
                            "n_down": n,
                            "test_acc": probe.accuracy(Fte, yte),
                            "val_acc": probe.val_acc,
                            "train_acc": probe.train_acc,
                            "lam": probe.lam,
                        }
                    )
        return rows

    # ---- executor entry point ------------------------------------------------------------
    def record(
        self, cfg: SubspaceRunConfig, device: torch.device | str = "cpu", pretrained=None
    ) -> Record:
        row, params, evals = self.run_one(cfg, device)
        return row, [], params, evals

    def run_one(
        self, cfg: SubspaceRunConfig, device: torch.device | str = "cpu"
    ) -> tuple[dict[str, Any], dict[str, Tensor], list[dict[str, Any]]]:
        """Pretrain, measure and probe one run: (base row, params, evaluation rows)."""
        M = projection(cfg.d, cfg.r, cfg.seed, DTYPES[cfg.dtype], device)
        W, per_round, extra = self.pretrain(cfg, M, device)
        metrics = subspace_metrics(W, M) if W is not None else {}
        metrics.update(extra)
        base = cfg.row_fields()
        base.update(
            {
                "run_id": cfg.run_id(),
                "status": "ok",
                "reason": None,
                "n_tasks_trained": 0
                if W is None or cfg.features == "random_features"
                else 1
                if cfg.features == "single_task"
                else cfg.T,
            }
        )
        final_round = per_round[-1]["round"] if per_round else None
        evals: list[dict[str, Any]] = []
        if per_round:
            evals += [{"evaluation": "recovery", **rec} for rec in per_round]
        else:
            evals.append({"evaluation": "recovery", "round": None, **metrics})
        for rec in self.downstream(cfg, W, M):
            evals.append({"evaluation": "downstream", "round": final_round, **metrics, **rec})
        params = {} if W is None else {"W": W.detach()}
        return base, params, evals


FAMILY = register_family(SubspaceFamily())
