"""The deep-network rescaling family: one :class:`ImagesRunConfig` = one network trained on an
aux/main image split (:mod:`mtlab.tasks.images`) with one regime.

Row metrics: ``status`` (converged: an epoch's train loss fell below ``loss_threshold``),
``epochs``, ``steps``, ``train_loss``; ``test_acc`` / ``test_loss`` of the evaluated task (main;
auxiliary for ``pt``); for main-task runs ``pr_post`` — participation ratio of the penultimate
layer on the main training pool after training — and, for ``ptft``, ``pr_pre`` (the rescaled
pretrained network) and ``ensd`` between the two. The stored parameters are the network's
``state_dict`` (BatchNorm statistics included).
"""

from __future__ import annotations

from typing import Any

import torch

from mtlab._seeding import derive_seed
from mtlab.measure.representation import ensd, participation_ratio
from mtlab.models.multitask import MultiTaskNet, init_seeded, rescale_
from mtlab.runs.config import ImagesRunConfig
from mtlab.runs.family import Record, SequentialFamily, register_family
from mtlab.tasks.images import AuxMainImages, load_aux_main
from mtlab.train.transfer import (
    Phase,
    PhaseTrainConfig,
    evaluate,
    features,
    mtl_aux_weight,
    train_phases,
)

MAIN, AUX = 0, 1  # head indices


def build_net(cfg: ImagesRunConfig, data: AuxMainImages) -> MultiTaskNet:
    """The network of ``cfg``: trunk + main head (2) + auxiliary head, seeded per (seed, trunk)."""
    net = MultiTaskNet(data.input_shape, [2, len(data.aux_classes)], cfg.trunk, cfg.widths)
    return init_seeded(net, derive_seed(cfg.seed, "images_init", cfg.source, cfg.trunk))


class ImagesFamily(SequentialFamily):
    name = "images"
    headline = ("test_acc", "test_loss")
    config_cls = ImagesRunConfig

    def sort_key(self, cfg: ImagesRunConfig) -> tuple[Any, ...]:
        return (cfg.method, cfg.source, cfg.trunk, cfg.seed, cfg.n_main, cfg.rescale)

    def record(
        self, cfg: ImagesRunConfig, device: torch.device | str = "cpu", pretrained=None
    ) -> Record:
        data = load_aux_main(cfg.source, cfg.seed, cfg.data_dir)
        torch.manual_seed(derive_seed(cfg.run_id(), "torch"))  # nothing should draw; be sure
        net = build_net(cfg, data)
        aux_batch = cfg.batch_size
        tcfg = PhaseTrainConfig(
            lr=cfg.lr,
            momentum=cfg.momentum,
            max_epochs=cfg.pt_max_epochs if cfg.method == "pt" else cfg.max_epochs,
            loss_threshold=cfg.loss_threshold,
            seed=derive_seed(cfg.run_id(), "batches") % 2**31,
        )
        extra: dict[str, Any] = {}
        if cfg.method == "pt":
            phases = [Phase(data.x_aux, data.y_aux, AUX, 1.0, aux_batch)]
        else:
            x, y = data.main_train(cfg.n_main)
            main_batch = min(cfg.n_main, cfg.batch_size)
            phases = [Phase(x, y, MAIN, 1.0, main_batch)]
            if cfg.method == "mtl":
                w = mtl_aux_weight(cfg.n_main, len(data.y_aux), cfg.batch_size)
                phases.append(Phase(data.x_aux, data.y_aux, AUX, w, aux_batch))
                extra["aux_weight"] = w
        rep = data.x_main_pool[: cfg.n_rep]
        if cfg.method == "ptft":
            assert pretrained is not None, "ptft runs need their pretraining run"
            state = pretrained(cfg.pretraining().run_id())
            net.load_state_dict(state)
            rescale_(net, cfg.rescale)  # every parameter; BatchNorm statistics stay
            pre = features(net.to(device), rep, device)
            extra["pr_pre"] = participation_ratio(pre)
            pre_acc = evaluate(net, data.x_main_test, data.y_main_test, MAIN, device)
            extra["test_acc_start"] = pre_acc["accuracy"]
        res = train_phases(net, phases, tcfg, device)
        task = (
            (data.x_aux_test, data.y_aux_test, AUX)
            if cfg.method == "pt"
            else (data.x_main_test, data.y_main_test, MAIN)
        )
        ev = evaluate(net, *task, device)
        if cfg.method != "pt":
            post = features(net, rep, device)
            extra["pr_post"] = participation_ratio(post)
            if cfg.method == "ptft":
                extra["ensd"] = ensd(pre, post)
        row = cfg.row_fields()
        row.update(
            {
                "run_id": cfg.run_id(),
                "pt_run_id": cfg.pretraining().run_id() if cfg.method == "ptft" else None,
                "status": res.status,
                "reason": "" if res.status != "failed" else "non-finite training loss",
                "epochs": res.epochs,
                "steps": res.steps,
                "train_loss": res.final_loss,
                "test_acc": ev["accuracy"],
                "test_loss": ev["loss"],
                "main_classes": f"{data.main_classes[0]},{data.main_classes[1]}",
                **extra,
            }
        )
        params = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
        return row, res.history, params if cfg.method == "pt" else {}, []


FAMILY = register_family(ImagesFamily())
__all__ = ["FAMILY", "ImagesFamily", "build_net"]
