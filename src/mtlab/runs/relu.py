"""The ReLU teacher–student family: ensembles of :class:`ReluRunConfig` runs (trained regimes) and
kernel baselines (``ptft_lr``, ``ntk``) one at a time.

Metrics per run (main task; the auxiliary task for ``pt``):

* ``train_loss`` (that task's train MSE at the end), ``objective_loss`` (the trained objective:
  the pooled, sample-weighted MSE for MTL), ``aux_train_loss`` (MTL);
* ``val_loss``, ``test_loss`` (MSE on ``n_val`` / ``n_test`` fresh samples), ``zero_loss`` (the
  test MSE of the zero predictor) and ``test_loss_rel = test_loss / zero_loss``;
* ``f1_norm`` (of the evaluated task's function), ``group_norm`` (MTL: both readouts),
  ``alignment`` (coefficient-weighted best |cosine| of student units to the task's teacher
  units), ``effective_units``;
* ``pr_post`` — participation ratio of the hidden layer on ``n_rep`` main-task inputs after
  training; for runs that start from PT also ``pr_pre`` (the rescaled pretrained layer) and
  ``ensd`` between the two;
* kernel baselines: ``ridge_alpha`` (chosen on validation data) and ``n_features``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mtlab._seeding import derive_seed, generator
from mtlab.measure.features import gradient_features, ridge_select
from mtlab.measure.representation import effective_units, ensd, participation_ratio, unit_alignment
from mtlab.models.relu_net import ReluNet
from mtlab.runs.config import ReluRunConfig
from mtlab.runs.diagonal import aux_main_per_run, aux_main_train_data, finished_runs_sink
from mtlab.runs.family import Family, Pretrained, RowSink, register_family
from mtlab.tasks.relu_teacher import ReluTeacherPair, relu_task_data, sample_relu_teachers
from mtlab.theory.relu_penalties import f1_norm, group_norm
from mtlab.train.ensemble import LoopConfig, RunOutcome, train_ensemble

DTYPES = {"float32": torch.float32, "float64": torch.float64}
TRAINED = ("stl", "mtl", "pt", "ptft")
KERNEL = ("ptft_lr", "ntk")


@lru_cache(maxsize=256)
def _teachers(spec, seed: int) -> ReluTeacherPair:
    return sample_relu_teachers(spec, seed)


def teacher_pair(cfg: ReluRunConfig) -> ReluTeacherPair:
    return _teachers(cfg.teacher_spec(), cfg.seed)


@lru_cache(maxsize=128)
def _data(spec, task: str, seed: int, split: str, n: int, dtype: str):
    return relu_task_data(_teachers(spec, seed), task, seed, split, n, DTYPES[dtype])


def split_data(cfg: ReluRunConfig, task: str, split: str) -> tuple[Tensor, Tensor]:
    """Inputs ``(n, d)`` and targets ``(n,)`` of ``task`` ∈ {aux, main} and ``split``.

    Inputs depend on (seed, task, split, n) only, so every setting of a seed sees the same ones.
    """
    n = {
        "train": cfg.n_aux if task == "aux" else cfg.n_main,
        "val": cfg.n_val,
        "test": cfg.n_test,
        "rep": cfg.n_rep,
    }[split]
    spec = cfg.teacher_spec()
    return _data(spec, task, cfg.seed, split, n, cfg.dtype)


def ridge_grid(cfg: ReluRunConfig) -> np.ndarray:
    return np.logspace(-5, 10, cfg.ridge_alphas)


#: fields read per run inside a chunk of trained runs (the rest form the group key)
RELU_PER_RUN = (
    "setting",
    "correlation",
    "correlations",
    "n_units",
    "magnitude",
    "main_signs",
    "n_aux_units",
    "init_scale",
    "n_val",
    "n_test",
    "n_rep",
    "rescale",
    "readout_init",
    "lr",
    "lr_rule",
    "pt_lr",
    "ridge_alphas",
)


class ReluFamily(Family):
    """Trains chunks of ReLU-student runs; see the module docstring for the metrics."""

    name = "relu"
    headline = ("test_loss_rel", "test_loss")
    config_cls = ReluRunConfig
    columns = ("train_loss", "val_loss", "test_loss", "test_loss_rel", "wall_s")

    def batched(self, cfg: ReluRunConfig) -> bool:
        """Trained regimes share ensembles; kernel baselines run one at a time."""
        return cfg.method in TRAINED

    def per_run(self, cfg: ReluRunConfig) -> frozenset[str]:
        """Teachers, data draws, init and readout scales, s and learning rates are per run; runs
        on the auxiliary set share a seed (one copy of its inputs per ensemble); full-batch MTL
        runs with different ``n_main`` share an ensemble with zero-padded main sets."""
        if cfg.method in KERNEL:
            return frozenset(cfg.row_fields())  # fitted one at a time
        return aux_main_per_run(cfg, RELU_PER_RUN)

    def sort_key(self, cfg: ReluRunConfig) -> tuple[Any, ...]:
        return (cfg.n_main, cfg.seed, cfg.rescale)

    memory_fields = ("width", "n_aux", "n_main", "batch_size")

    def auto_chunk(self, group: Any, device: Any = "cpu") -> int:
        """The shared rule, at most 16 runs on a CPU. The closed-form step works on
        blocks of runs whose hidden activations fit in cache (:data:`~mtlab.models.relu_net.
        CACHE_BYTES`), so wide or large-sample runs gain from an ensemble too (width 1000 or
        1024 samples: 1.3–1.8× over one by one, where 16 runs in one block were 0.70–0.85×;
        BENCHMARKS.md), and beyond 16 runs an ensemble gains nothing more per run."""
        size = super().auto_chunk(group, device)
        return size if str(device).startswith("cuda") else min(size, 16)

    def bytes_per_run(self, cfg: ReluRunConfig) -> int:
        n = {"pt": cfg.n_aux, "mtl": cfg.n_aux + cfg.n_main}.get(cfg.method, cfg.n_main)
        if cfg.batch_size is not None:
            n = min(n, cfg.batch_size)
        return 3 * n * cfg.width * (4 if cfg.dtype == "float32" else 8)

    @staticmethod
    def loop_config(cfg: ReluRunConfig, max_steps: int | None = None) -> LoopConfig:
        steps = cfg.pt_max_steps if cfg.method == "pt" else cfg.max_steps
        return LoopConfig(
            max_steps=max_steps or steps,
            threshold=0.0 if max_steps else cfg.threshold,
            optimizer="sgd",
            batch_size=cfg.batch_size,
            divergence_loss=cfg.divergence_loss,
            max_restarts=cfg.max_restarts,
            log_every=cfg.log_every,
        )

    # ------------------------------------------------------------------ starts

    @staticmethod
    def start(
        cfg: ReluRunConfig, pretrained: Callable[[str], dict[str, Tensor]], device
    ) -> dict[str, Tensor]:
        """Initial parameters ``(1, ...)`` of one run: fresh, or PT → readout redrawn → W × s."""
        dtype = DTYPES[cfg.dtype]
        if cfg.method in ("ptft", "ptft_lr", "ntk"):
            net = ReluNet(cfg.d, cfg.width, 1)
            pt = pretrained(cfg.pretraining().run_id())
            params = {k: v.to(dtype=dtype, device=device) for k, v in pt.items()}
            params = net.reset_readout(
                params,
                torch.tensor([cfg.readout_init]),
                generator(cfg.run_id(), "readout"),
            )
            return net.scale_shared(params, torch.tensor([cfg.rescale]))
        net = ReluNet(cfg.d, cfg.width, 2 if cfg.method == "mtl" else 1)
        return net.init(
            torch.tensor([cfg.init_scale]),
            [generator(cfg.run_id(), "init")],
            dtype=dtype,
            device=device,
        )

    def build(self, cfgs: Sequence[ReluRunConfig], pretrained, device):
        c0 = cfgs[0]
        method = c0.method
        dtype = DTYPES[c0.dtype]
        kw: dict[str, Any] = {"dtype": dtype, "device": device}
        starts = [self.start(c, pretrained, device) for c in cfgs]
        params = {k: torch.cat([s[k] for s in starts]) for k in starts[0]}
        model = ReluNet(c0.d, c0.width, 2 if method == "mtl" else 1)
        data = aux_main_train_data(cfgs, split_data, device, dtype)
        lr = torch.tensor([c.pt_lr if method == "pt" else c.finetune_lr() for c in cfgs], **kw)
        return model, params, data, lr

    # ------------------------------------------------------------------ chunks

    def run_chunk(
        self,
        cfgs: Sequence[ReluRunConfig],
        pretrained: Pretrained | None = None,
        sink: RowSink | None = None,
        device: torch.device | str = "cpu",
        max_steps: int | None = None,
    ) -> None:
        """Train ``cfgs`` as one ensemble (or fit a kernel baseline); each finished run goes to
        ``sink(row, curve, params)``. ``max_steps`` (timing runs of --chunk measure) overrides the budget."""
        if cfgs[0].method in KERNEL:
            for cfg in cfgs:
                t0 = time.perf_counter()
                row, params = self.kernel_run(cfg, pretrained, device)
                row["wall_s"] = time.perf_counter() - t0
                if sink is not None:
                    sink(row, [], params)
            return
        model, params, data, lr = self.build(cfgs, pretrained, device)
        lc = self.loop_config(cfgs[0], max_steps)
        seeds = [derive_seed(c.run_id(), "batches") for c in cfgs]
        on_finish = finished_runs_sink(
            cfgs, sink, lambda cfg, o, wall: {**self.row(cfg, o, pretrained), "wall_s": wall}
        )

        train_ensemble(
            model,
            params,
            data,
            ("W", "A"),
            lr,
            lc,
            batch_seeds=seeds,
            on_finish=on_finish if max_steps is None else None,
        )

    # ------------------------------------------------------------------ rows

    def _base_row(self, cfg: ReluRunConfig) -> dict[str, Any]:
        row = cfg.row_fields()
        row["run_id"] = cfg.run_id()
        row["pt_run_id"] = (
            cfg.pretraining().run_id() if cfg.method in ("ptft", "ptft_lr", "ntk") else None
        )
        return row

    def _representation(self, cfg: ReluRunConfig, W: Tensor, pretrained) -> dict[str, float]:
        x, _ = split_data(cfg, "main", "rep")
        x = x.double()
        post = torch.relu(x @ W.T)
        out = {"pr_post": participation_ratio(post)}
        if cfg.method in ("ptft", "ptft_lr", "ntk"):
            pt = pretrained(cfg.pretraining().run_id())["W"][0].detach().double().cpu()
            pre = torch.relu(x @ (cfg.rescale * pt).T)
            out["pr_pre"] = participation_ratio(pre)
            out["ensd"] = ensd(pre, post)
        return out

    def row(self, cfg: ReluRunConfig, o: RunOutcome, pretrained) -> dict[str, Any]:
        """The results row of a finished trained run."""
        task = "aux" if cfg.method == "pt" else "main"
        out_idx = 1 if cfg.method == "mtl" else 0
        W = o.params["W"][0].detach().double().cpu()
        A = o.params["A"][0].detach().double().cpu()
        a = A[out_idx]
        tp = teacher_pair(cfg)
        metrics: dict[str, Any] = {}
        for split in ("val", "test"):
            x, y = split_data(cfg, task, split)
            pred = torch.relu(x.double() @ W.T) @ a
            metrics[f"{split}_loss"] = float(((pred - y.double()) ** 2).mean())
        _, y_test = split_data(cfg, task, "test")
        zero = float((y_test.double() ** 2).mean())
        failed = o.status == "failed"
        teacher = tp.w_aux if task == "aux" else tp.w_main
        row = self._base_row(cfg)
        row.update(
            {
                "status": o.status,
                "reason": o.reason,
                "steps": o.steps,
                "restarts": o.restarts,
                "final_lr": o.lr,
                "train_loss": float("nan") if failed else o.task_losses[out_idx],
                "objective_loss": o.train_loss,
                "aux_train_loss": o.task_losses[0] if cfg.method == "mtl" else None,
                **metrics,
                "zero_loss": zero,
                "test_loss_rel": metrics["test_loss"] / zero,
                "f1_norm": float(f1_norm(W, a)),
                "group_norm": float(group_norm(W, A)) if cfg.method == "mtl" else None,
                "alignment": unit_alignment(W, a, teacher)["weighted"],
                "effective_units": effective_units(W, a),
                **self._representation(cfg, W, pretrained),
            }
        )
        return row

    def kernel_run(
        self, cfg: ReluRunConfig, pretrained, device
    ) -> tuple[dict[str, Any], dict[str, Tensor]]:
        """Ridge on the rescaled pretrained hidden features (``ptft_lr``) or on the
        parameter-gradient features at the start of finetuning (``ntk``)."""
        params = self.start(cfg, pretrained, "cpu")
        p1 = {k: v[0].double() for k, v in params.items()}  # W (m, d), A (1, m)

        def f(p: dict[str, Tensor], x: Tensor) -> Tensor:
            return torch.relu(p["W"] @ x) @ p["A"][0]

        chunk = max(1, 2**22 // max(1, p1["W"].numel()))  # ≈ 32 MiB of float64 features

        def feats(x: Tensor) -> Tensor:
            x = x.double()
            if cfg.method == "ptft_lr":
                return torch.relu(x @ p1["W"].T)
            return gradient_features(f, p1, x, chunk=chunk)

        xtr, ytr = split_data(cfg, "main", "train")
        xva, yva = split_data(cfg, "main", "val")
        fit = ridge_select(
            feats(xtr), ytr.double(), feats(xva), yva.double(), ridge_grid(cfg).tolist()
        )
        xte, yte = split_data(cfg, "main", "test")
        yte = yte.double()
        sq = 0.0  # test features chunk by chunk (10 000 × 16 000 NTK features would be 1.3 GB)
        for i in range(0, xte.shape[0], chunk):
            pred = fit.predict(feats(xte[i : i + chunk]))
            sq += float(((torch.from_numpy(pred) - yte[i : i + chunk]) ** 2).sum())
        test = sq / xte.shape[0]
        n_features = int(p1["W"].shape[0] * (1 if cfg.method == "ptft_lr" else 1 + cfg.d))
        zero = float((yte**2).mean())
        row = self._base_row(cfg)
        row.update(
            {
                "status": "converged",
                "reason": "",
                "steps": 0,
                "restarts": 0,
                "final_lr": None,
                "train_loss": fit.train_mse,
                "objective_loss": fit.train_mse,
                "aux_train_loss": None,
                "val_loss": fit.val_mse,
                "test_loss": test,
                "zero_loss": zero,
                "test_loss_rel": test / zero,
                "ridge_alpha": fit.alpha,
                "n_features": n_features,
                "alignment": None,
                "effective_units": None,
                **self._representation(cfg, p1["W"], pretrained),
            }
        )
        return row, {k: v.detach().clone() for k, v in params.items()}


FAMILY = register_family(ReluFamily())
__all__ = ["FAMILY", "ReluFamily", "split_data", "teacher_pair"]
