"""Theory vs gradient descent for stored diagonal-network runs (study ``diagonal``, part 4).

For each interpolating run, the β found by gradient descent is compared with the theory's
minimum-penalty interpolators on the same training data and initial weights.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mtlab.runs.config import DiagonalRunConfig, make_config
from mtlab.runs.store import RunStore

METHOD_LABEL = {"stl": "STL", "mtl": "MTL", "ptft": "PT+FT", "ptft_lr": "PT+FT (LR)"}
MTL_MAIN_INTERPOLATED = 1e-6  # MTL rows count as interpolating the main task below this train MSE


def _interpolating_configs(store: RunStore) -> list[DiagonalRunConfig]:
    """Configs of stored diagonal runs that interpolate their main task and kept parameters."""
    fields = set(DiagonalRunConfig.model_fields)
    out = []
    for row in store.rows():
        method = row["method"]
        if row.get("family", "diagonal") != "diagonal" or method not in METHOD_LABEL:
            continue
        interpolated = row["status"] == "converged" or (
            method == "mtl" and (row.get("train_loss") or np.inf) < MTL_MAIN_INTERPOLATED
        )
        if not interpolated:
            continue
        cfg = make_config({k: v for k, v in row.items() if k in fields and v is not None})
        assert isinstance(cfg, DiagonalRunConfig)
        if cfg.run_id() == row["run_id"] and store.has_params(row["run_id"]):
            out.append(cfg)
    return out


def predictions(
    cfg: DiagonalRunConfig, store: RunStore, x: np.ndarray, y: np.ndarray
) -> dict[str, np.ndarray]:
    """The theory's interpolators of ``x β = y`` for the run ``cfg`` (see :func:`theory_agreement`)."""
    import torch
    from scipy.optimize import linprog

    from mtlab.models.diagonal import DiagonalNet
    from mtlab.theory import (
        diagonal_flow_potential,
        linear_probe_interpolant,
        min_penalty_interpolant,
        mtl_l12_interpolant,
        ptft_figure_potential,
    )

    method, label = cfg.method, METHOD_LABEL[cfg.method]
    net = DiagonalNet(cfg.d, 2 if method == "mtl" else 1)
    if method == "mtl":
        beta_aux = net.task_coefficients(store.load_params(cfg.run_id()), 0)[0].double().numpy()
        return {f"{label}: ℓ1,2 limit (aux pinned)": mtl_l12_interpolant(x, y, beta_aux).beta}
    preds: dict[str, np.ndarray] = {}
    if method == "stl":
        p0 = net.init(torch.tensor([cfg.init_scale]))
    else:
        pt = {k: v.double() for k, v in store.load_params(cfg.pretraining().run_id()).items()}
        p0 = net.reset_readout(pt, torch.tensor([cfg.readout_init]))
        p0 = net.scale_shared(p0, torch.tensor([cfg.rescale], dtype=torch.float64))
    w = {k: v[0].double().numpy() for k, v in p0.items()}
    if method == "ptft_lr":
        preds[f"{label}: min-norm readout"] = linear_probe_interpolant(
            x, y, w["w_pos"], w["w_neg"], w["v_pos"][0], w["v_neg"][0]
        )
    else:
        pot = diagonal_flow_potential(w["w_pos"], w["w_neg"], w["v_pos"][0], w["v_neg"][0])
        preds[f"{label}: exact flow"] = min_penalty_interpolant(x, y, pot).beta
    if method == "stl":
        d = cfg.d
        lp = linprog(np.ones(2 * d), A_eq=np.hstack([x, -x]), b_eq=y, bounds=(0, None))
        preds[f"{label}: ℓ1 limit"] = lp.x[:d] - lp.x[d:]
    if method == "ptft":
        a = net.task_coefficients(pt, 0)[0].numpy()
        gamma = float(cfg.readout_init or 0.0)  # resolved by the config
        fpot = ptft_figure_potential(a, gamma, cfg.rescale)
        preds[f"{label}: figure form K q(2β/K)"] = min_penalty_interpolant(x, y, fpot).beta
    return preds


def theory_agreement(store: RunStore) -> list[dict[str, Any]]:
    """Relative distance between each interpolating run's β and the theory's interpolators on the
    same data.

    STL, PT+FT: the exact gradient-flow potential of the run's start; STL also the α → 0 limit
    (min ℓ1); PT+FT also the paper's figure form; PT+FT (LR): the min-norm readout change; MTL
    (runs whose main-task train MSE is below ``MTL_MAIN_INTERPOLATED``): the ℓ1,2 limit with the
    auxiliary coefficients pinned to the trained ones.
    """
    from mtlab.models.diagonal import DiagonalNet
    from mtlab.runs.diagonal import split_data

    out = []
    for cfg in _interpolating_configs(store):
        x, y = (t.double().numpy() for t in split_data(cfg, "main", "train"))
        net = DiagonalNet(cfg.d, 2 if cfg.method == "mtl" else 1)
        params = store.load_params(cfg.run_id())
        beta_gd = net.task_coefficients(params, net.n_tasks - 1)[0].double().numpy()
        for name, beta in predictions(cfg, store, x, y).items():
            dist = float(np.linalg.norm(beta_gd - beta)) / max(float(np.linalg.norm(beta)), 1e-300)
            out.append(
                {
                    "run_id": cfg.run_id(),
                    "method": cfg.method,
                    "setting": cfg.setting,
                    "seed": cfg.seed,
                    "n_main": cfg.n_main,
                    "rescale": cfg.rescale,
                    "prediction": name,
                    "rel_distance": float(dist),
                }
            )
    return out


__all__ = ["MTL_MAIN_INTERPOLATED", "predictions", "theory_agreement"]
