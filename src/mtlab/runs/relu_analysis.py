"""Measurements on stored ReLU-student runs (study ``relu-nested``): k-means over hidden units."""

from __future__ import annotations

from typing import Any

import pandas as pd

from mtlab.runs.config import ReluRunConfig
from mtlab.runs.store import RunStore

KS = range(1, 9)


def kmeans_profiles(store: RunStore, runs: pd.DataFrame) -> list[dict[str, Any]]:
    """For each stored run of ``runs`` (rows of the results table): k-means over its hidden units'
    input directions, weighted by each unit's coefficient ‖w‖·|a|, for k = 1 … 8.

    Returns one record per run: ``run_id``, ``setting``, ``method``, ``rescale``, ``k``,
    ``inertia`` (relative to k = 1) and ``alignment`` (best |cos| of the centres to the main
    teacher's units); runs whose parameters are missing are skipped.
    """
    from mtlab.measure.representation import kmeans_profile
    from mtlab.runs.relu import teacher_pair

    out = []
    for r in runs.to_dict("records"):
        try:
            params = store.load_params(r["run_id"])
        except (FileNotFoundError, KeyError):
            continue
        teacher = ("setting", "n_units", "seed", "d", "n_aux_units", "magnitude", "main_signs")
        cfg = ReluRunConfig.model_validate({k: r[k] for k in teacher})  # the teacher's fields
        W = params["W"][0].double()
        a = params["A"][0, 0].double()
        c = W.norm(dim=1) * a.abs()
        dirs = W / W.norm(dim=1, keepdim=True).clamp_min(1e-30)
        prof = kmeans_profile(dirs, teacher_pair(cfg).w_main, ks=KS, weights=c)
        out.append(
            {
                **{k: r[k] for k in ("run_id", "setting", "method", "rescale")},
                "k": list(prof["k"]),
                "inertia": list(prof["inertia"] / prof["inertia"][0]),
                "alignment": list(prof["alignment"]),
            }
        )
    return out


__all__ = ["kmeans_profiles"]
