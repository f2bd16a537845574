"""The diagonal-network family: builds ensembles of :class:`DiagonalRunConfig` runs and trains them.

A *chunk* is a list of configs with the same :meth:`DiagonalFamily.group_key` (same method, sizes
and loop settings); seeds, data draws, α, γ, s and learning rates may differ per run. The chunk
is trained as one ensemble by :func:`mtlab.train.train_ensemble` and each finished run is turned
into a results row.

Metrics per run (main task; the auxiliary task for ``pt``):

* ``train_loss`` — train MSE of that task at the end; ``objective_loss`` — the trained objective
  (pooled aux + main MSE for MTL); ``aux_train_loss`` for MTL.
* ``val_loss``, ``test_loss`` — MSE on ``n_val`` / ``n_test`` fresh samples.
* ``test_risk`` — the exact population risk ``‖β − β*‖² + σ²`` (``E[xxᵀ] = I``), and
  ``test_loss_rel`` = test_risk / risk of the zero predictor.
* ``beta_l1``, ``beta_l2`` and ``support_recall`` (fraction of the teacher's support among the
  largest-|β| coordinates of the same count).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

import torch
from torch import Tensor

from mtlab._seeding import derive_seed
from mtlab.measure.regression import support_recall
from mtlab.models.diagonal import DiagonalNet
from mtlab.runs.config import DiagonalRunConfig
from mtlab.runs.family import Family, Pretrained, RowSink, register_family
from mtlab.tasks.sparse_teacher import (
    SparseTeacherSpec,
    TeacherPair,
    label_noise,
    sample_teachers,
    task_inputs,
)
from mtlab.train.ensemble import Hook, LoopConfig, RunOutcome, TrainData, train_ensemble

DTYPES = {"float32": torch.float32, "float64": torch.float64}


@lru_cache(maxsize=256)
def teachers(cfg_key: tuple) -> TeacherPair:
    seed, d, k1, k2, overlap, signs, norm, setting = cfg_key
    spec = SparseTeacherSpec(
        d=d, k1=k1, k2=k2, overlap=overlap, main_signs=signs, normalisation=norm
    )
    return sample_teachers(spec, seed, setting)


def teacher_pair(cfg: DiagonalRunConfig) -> TeacherPair:
    return teachers(
        (
            cfg.seed,
            cfg.d,
            cfg.k1,
            cfg.k2,
            cfg.overlap,
            cfg.main_signs,
            cfg.normalisation,
            cfg.setting,
        )
    )


@lru_cache(maxsize=96)
def _inputs(seed: int, stream: str, split: str, n: int, d: int, dtype: str) -> Tensor:
    return task_inputs(seed, stream, split, n, d, DTYPES[dtype])


def split_data(
    cfg: DiagonalRunConfig, task: str, split: str, device: torch.device | str = "cpu"
) -> tuple[Tensor, Tensor]:
    """Inputs ``(n, d)`` and targets ``(n,)`` of ``task`` ∈ {aux, main} and ``split``."""
    tp = teacher_pair(cfg)
    beta = tp.beta_aux if task == "aux" else tp.beta_main
    n = {"train": cfg.n_aux if task == "aux" else cfg.n_main, "val": cfg.n_val, "test": cfg.n_test}[
        split
    ]
    x = _inputs(cfg.seed, task, split, n, cfg.d, cfg.dtype)
    y = (x.double() @ beta + label_noise(cfg.seed, task, split, n, cfg.noise)).to(x.dtype)
    return x.to(device), y.to(device)


def stack_runs(tensors: list[Tensor]) -> tuple[Tensor, Tensor | None]:
    """Stack per-run tensors ``(n_r, ...)`` along a new run axis.

    One tensor shared by every run stays un-copied with a leading 1; runs with different row
    counts are zero-padded to the longest and the true counts ``(E,)`` are returned (else None).
    """
    if all(t is tensors[0] for t in tensors):
        return tensors[0].unsqueeze(0), None
    sizes = [t.shape[0] for t in tensors]
    if len(set(sizes)) == 1:
        return torch.stack(tensors), None
    out = tensors[0].new_zeros((len(tensors), max(sizes), *tensors[0].shape[1:]))
    for i, t in enumerate(tensors):
        out[i, : t.shape[0]] = t
    return out, torch.tensor(sizes)


def stack_draws(tensors: list[Tensor]) -> tuple[Tensor, Tensor] | None:
    """The distinct tensors of ``tensors`` (by identity: the inputs are cached per data draw)
    stacked ``(D, n, d)``, with each run's draw ``(E,)`` — None unless several runs share a
    draw and every draw has the same rows (the grouped product needs no padding)."""
    distinct: dict[int, int] = {}
    for t in tensors:
        distinct.setdefault(id(t), len(distinct))
    if not 1 < len(distinct) < len(tensors) or len({t.shape for t in tensors}) != 1:
        return None
    firsts: dict[int, Tensor] = {}
    for t in tensors:
        firsts.setdefault(id(t), t)
    src = torch.tensor([distinct[id(t)] for t in tensors])
    return torch.stack(list(firsts.values())), src


def aux_main_train_data(
    cfgs: Sequence[Any],
    split_data: Callable[[Any, str, str], tuple[Tensor, Tensor]],
    device: torch.device | str,
    dtype: torch.dtype,
    group_draws: bool = False,
) -> TrainData:
    """The training data of an ensemble of aux/main teacher–student runs of one method: the
    auxiliary set (``pt``), both (``mtl``: the pooled MSE, each task weighted by its share of the
    samples, per run) or the main set. Shared inputs stay one copy; ragged sets are zero-padded
    (:func:`stack_runs`); with ``group_draws`` (full batch, a model whose closed form reads
    ``TrainData.src``), runs on the same data draw share one copy of its inputs
    (:func:`stack_draws`). ``split_data(cfg, task, "train")`` gives ``(x, y)``."""
    method = cfgs[0].method
    kw: dict[str, Any] = {"dtype": dtype, "device": device}
    tasks = {"pt": ["aux"], "mtl": ["aux", "main"]}.get(method, ["main"])
    xs: list[Tensor] = []
    ys: list[Tensor] = []
    counts: list[Tensor | None] = []
    srcs: list[Tensor | None] = []
    group_draws = group_draws and all(getattr(c, "batch_size", None) is None for c in cfgs)
    for t in tasks:
        pairs = [split_data(c, t, "train") for c in cfgs]
        draws = stack_draws([p[0] for p in pairs]) if group_draws else None
        if draws is not None:  # runs on the same draw: its inputs kept (and read) once
            xs.append(draws[0].to(device))
            srcs.append(draws[1].to(device))
            n = None
        else:
            x, n = stack_runs([p[0] for p in pairs])
            xs.append(x.to(device))
            srcs.append(None)
        ys.append(stack_runs([p[1] for p in pairs])[0].to(device))
        counts.append(None if n is None else n.to(**kw))
    if method == "mtl":
        n_tot = torch.tensor([c.n_aux + c.n_main for c in cfgs], **kw)
        weights = torch.stack(
            [
                torch.tensor([c.n_aux for c in cfgs], **kw) / n_tot,
                torch.tensor([c.n_main for c in cfgs], **kw) / n_tot,
            ]
        )
    else:
        weights = torch.ones(1, **kw)
    return TrainData(xs, ys, tuple(range(len(tasks))), weights, counts, srcs)


def aux_main_per_run(cfg: Any, fields: Sequence[str]) -> frozenset[str]:
    """Per-run fields of an aux/main teacher–student run: ``fields`` (read per run), plus the seed
    and ``n_aux`` unless the run trains on the auxiliary set (PT and MTL ensembles share one copy
    of its inputs), ``n_main`` for zero-padded ensembles (PT, full-batch MTL), and the step
    budget of the other phase (PT: ``max_steps``; others: ``pt_max_steps``)."""
    out = set(fields)
    if cfg.method not in ("pt", "mtl"):
        out |= {"seed", "n_aux"}
    if cfg.method == "pt" or (cfg.method == "mtl" and cfg.batch_size is None):
        out.add("n_main")
    out.add("max_steps" if cfg.method == "pt" else "pt_max_steps")
    return frozenset(out)


def finished_runs_sink(
    cfgs: Sequence[Any],
    sink: Callable[..., None] | None,
    make_row: Callable[[Any, RunOutcome, float], dict[str, Any]],
) -> Callable[[list[RunOutcome]], None]:
    """The ensemble loop's ``on_finish``: each finished run becomes ``make_row(cfg, outcome,
    wall_s)`` (``wall_s`` = the ensemble's time so far / its size) and goes to ``sink(row, curve,
    params)``."""
    start = time.perf_counter()

    def on_finish(done: list[RunOutcome]) -> None:
        if sink is None:
            return
        wall = (time.perf_counter() - start) / len(cfgs)
        for o in done:
            sink(make_row(cfgs[o.index], o, wall), o.curve, o.params)

    return on_finish


#: fields read per run inside a chunk (the rest must be equal: they form the group key)
DIAGONAL_PER_RUN = (
    "setting",
    "k1",
    "k2",
    "overlap",
    "main_signs",
    "normalisation",
    "noise",
    "n_val",
    "n_test",
    "init_scale",
    "rescale",
    "readout_init",
    "readout_rule",
    "lr",
    "pt_lr",
)


class DiagonalFamily(Family):
    """Trains chunks of diagonal-network runs; see the module docstring for the metrics."""

    name = "diagonal"
    headline = ("test_loss_rel", "test_loss")
    config_cls = DiagonalRunConfig
    columns = (
        "steps",
        "restarts",
        "train_loss",
        "val_loss",
        "test_loss",
        "test_risk",
        "test_loss_rel",
        "support_recall",
        "wall_s",
    )

    def per_run(self, cfg: DiagonalRunConfig) -> frozenset[str]:
        """Teachers, data draws, α, γ, s and learning rates are per run; runs that train on the
        large auxiliary set share a seed (one copy of those inputs per ensemble: one matrix
        product instead of E matrix-vector products); full-batch MTL and PT runs with different
        ``n_main`` share an ensemble with zero-padded main sets."""
        return aux_main_per_run(cfg, DIAGONAL_PER_RUN)

    def sort_key(self, cfg: DiagonalRunConfig) -> tuple[Any, ...]:
        """Order inside a group: equal sample counts together (padded MTL chunks stay tight)."""
        return (cfg.n_main, cfg.seed)

    memory_fields = ("d", "n_aux", "n_main")

    def bytes_per_run(self, cfg: DiagonalRunConfig) -> int:
        n = {"pt": cfg.n_aux, "mtl": cfg.n_aux + cfg.n_main}.get(cfg.method, cfg.n_main)
        return (n * cfg.d + 16 * cfg.d) * (4 if cfg.dtype == "float32" else 8)

    @staticmethod
    def loop_config(cfg: DiagonalRunConfig, max_steps: int | None = None) -> LoopConfig:
        steps = cfg.pt_max_steps if cfg.method == "pt" else cfg.max_steps
        return LoopConfig(
            max_steps=max_steps or steps,
            threshold=0.0 if max_steps else cfg.threshold,
            optimizer=cfg.optimizer,
            momentum=cfg.momentum,
            batch_size=cfg.batch_size,
            divergence_loss=cfg.divergence_loss,
            max_restarts=cfg.max_restarts,
            log_every=cfg.log_every,
        )

    def build(
        self,
        cfgs: Sequence[DiagonalRunConfig],
        pretrained: Pretrained | None,
        device: torch.device | str = "cpu",
    ):
        """Model, initial parameters, training data, trainable names, per-run lr and the teachers
        ``(E, d)`` of the task each run is evaluated on."""
        c0 = cfgs[0]
        dtype = DTYPES[c0.dtype]
        method = c0.method
        kw: dict[str, Any] = {"dtype": dtype, "device": device}
        alpha = torch.tensor([c.init_scale for c in cfgs], **kw)
        model = DiagonalNet(c0.d, n_tasks=2 if method == "mtl" else 1)
        if method in ("ptft", "ptft_lr"):
            if pretrained is None:
                raise ValueError("finetuning runs need the pretrained runs' parameters")
            pt = [pretrained(c.pretraining().run_id()) for c in cfgs]
            params = {k: torch.cat([p[k] for p in pt]).to(**kw) for k in pt[0]}
            params = model.reset_readout(params, torch.tensor([c.readout_init for c in cfgs], **kw))
            params = model.scale_shared(params, torch.tensor([c.rescale for c in cfgs], **kw))
        else:
            params = model.init(alpha, **kw)
        data = aux_main_train_data(cfgs, split_data, device, dtype, group_draws=True)
        trainable = (
            ("v_pos", "v_neg") if method == "ptft_lr" else ("w_pos", "w_neg", "v_pos", "v_neg")
        )
        lr = torch.tensor([c.pt_lr if method == "pt" else c.lr for c in cfgs], **kw)
        eval_task = "aux" if method == "pt" else "main"
        truth = torch.stack([getattr(teacher_pair(c), f"beta_{eval_task}") for c in cfgs]).to(**kw)
        return model, params, data, trainable, lr, truth

    def run_chunk(
        self,
        cfgs: Sequence[DiagonalRunConfig],
        pretrained: Pretrained | None = None,
        sink: RowSink | None = None,
        device: torch.device | str = "cpu",
        max_steps: int | None = None,
    ) -> None:
        """Train ``cfgs`` as one ensemble; each finished run goes to ``sink(row, curve, params)``.

        ``max_steps`` (timing runs of --chunk measure) overrides the budget and disables the threshold.
        """
        model, params, data, trainable, lr, truth = self.build(cfgs, pretrained, device)
        out_idx = 1 if cfgs[0].method == "mtl" else 0
        noise_var = torch.tensor([c.noise**2 for c in cfgs], dtype=truth.dtype, device=truth.device)

        def risk(p: dict[str, Tensor], run_ids: Tensor) -> dict[str, Tensor]:
            beta = model.task_coefficients(p, out_idx)
            return {"test_risk": ((beta - truth[run_ids]) ** 2).sum(-1) + noise_var[run_ids]}

        lc = self.loop_config(cfgs[0], max_steps)
        hooks = [Hook(every=lc.log_every, fn=risk)]
        if max_steps is None:
            hooks.append(Hook(every=lc.log_every, fn=self.split_loss_hook(cfgs, model, device)))
        seeds = [derive_seed(c.run_id(), "batches") for c in cfgs]
        on_finish = finished_runs_sink(
            cfgs, sink, lambda cfg, o, wall: self.row(cfg, o, model, wall)
        )

        train_ensemble(
            model,
            params,
            data,
            trainable,
            lr,
            lc,
            hooks=hooks,
            batch_seeds=seeds,
            on_finish=on_finish,
        )

    @staticmethod
    def split_loss_hook(
        cfgs: Sequence[DiagonalRunConfig], model: DiagonalNet, device: torch.device | str
    ) -> Callable[[dict[str, Tensor], Tensor], dict]:
        """A hook logging ``{val,test}_loss_{task}`` of every trained task on the log schedule.

        Runs that share a seed share the evaluation inputs, so each distinct input set is one
        matrix product with the coefficient errors of its runs.
        """
        method = cfgs[0].method
        tasks = {"pt": [("aux", 0)], "mtl": [("aux", 0), ("main", 1)]}.get(method, [("main", 0)])
        dtype = DTYPES[cfgs[0].dtype]
        sets = []  # (name, output, x, noise, truth (E, d), groups {key: run indices})
        for task, out in tasks:
            for split in ("val", "test"):
                groups: dict[tuple, list[int]] = {}
                for i, c in enumerate(cfgs):
                    groups.setdefault(
                        (c.seed, c.n_val if split == "val" else c.n_test, c.noise), []
                    ).append(i)
                xs, noises = {}, {}
                for key, idx in groups.items():
                    c = cfgs[idx[0]]
                    n = key[1]
                    xs[key] = _inputs(c.seed, task, split, n, c.d, c.dtype).to(device)
                    noises[key] = label_noise(c.seed, task, split, n, c.noise, dtype).to(device)
                truth = torch.stack([getattr(teacher_pair(c), f"beta_{task}") for c in cfgs])
                sets.append(
                    (
                        f"{split}_loss_{task}",
                        out,
                        xs,
                        noises,
                        truth.to(dtype=dtype, device=device),
                        groups,
                    )
                )

        def hook(params: dict[str, Tensor], run_ids: Tensor) -> dict[str, Tensor]:
            slot_of = {int(r): k for k, r in enumerate(run_ids.tolist())}
            result = {}
            for name, out, xs, noises, truth, groups in sets:
                err = model.task_coefficients(params, out) - truth[run_ids]
                loss = torch.full(
                    (run_ids.shape[0],), float("nan"), dtype=err.dtype, device=err.device
                )
                for key, idx in groups.items():
                    slots = [slot_of[i] for i in idx if i in slot_of]
                    if not slots:
                        continue
                    sl = torch.tensor(slots, device=err.device)
                    resid = xs[key] @ err[sl].T - noises[key][:, None]  # (n, runs)
                    loss[sl] = (resid**2).mean(0)
                result[name] = loss
            return result

        return hook

    def row(
        self, cfg: DiagonalRunConfig, o: RunOutcome, model: DiagonalNet, wall_s: float
    ) -> dict[str, Any]:
        """The results row of a finished run (config fields + metrics)."""
        task = "aux" if cfg.method == "pt" else "main"
        out_idx = 1 if cfg.method == "mtl" else 0
        beta = model.task_coefficients(o.params, out_idx)[0].detach().double().cpu()
        tp = teacher_pair(cfg)
        truth = tp.beta_aux if task == "aux" else tp.beta_main
        support = tp.support_aux if task == "aux" else tp.support_main
        metrics: dict[str, Any] = {}
        for split in ("val", "test"):
            x, y = split_data(cfg, task, split)
            metrics[f"{split}_loss"] = float(((x.double() @ beta - y.double()) ** 2).mean())
        zero_risk = float((truth**2).sum()) + cfg.noise**2
        risk = float(((beta - truth) ** 2).sum()) + cfg.noise**2
        recall = support_recall(beta, support)
        task_losses = o.task_losses
        row = cfg.row_fields()
        row.update(
            {
                "run_id": cfg.run_id(),
                "pt_run_id": cfg.pretraining().run_id()
                if cfg.method in ("ptft", "ptft_lr")
                else None,
                "status": o.status,
                "reason": o.reason,
                "steps": o.steps,
                "restarts": o.restarts,
                "final_lr": o.lr,
                "train_loss": task_losses[out_idx] if o.status != "failed" else float("nan"),
                "objective_loss": o.train_loss,
                "aux_train_loss": task_losses[0] if cfg.method == "mtl" else None,
                **metrics,
                "test_risk": risk,
                "test_loss_rel": risk / zero_risk,
                "beta_l1": float(beta.abs().sum()),
                "beta_l2": float(beta.norm()),
                "support_recall": recall,
                "wall_s": wall_s,
            }
        )
        return row


FAMILY = register_family(DiagonalFamily())
