"""Layer 1: closed forms and solvers that predict what training finds (no training here)."""

from mtlab.theory.interpolators import (
    ExpPotential,
    InterpolantResult,
    diagonal_flow_potential,
    linear_probe_interpolant,
    min_penalty_interpolant,
    mtl_l12_interpolant,
    ptft_figure_potential,
    stl_potential,
)
from mtlab.theory.penalties import (
    exp_potential_penalty,
    feature_dependence,
    l_order,
    mtl_incremental_penalty,
    mtl_penalty,
    ptft_penalty,
    ptft_scale,
    q,
    stl_penalty,
)
from mtlab.theory.pseudo_contrastive import (
    contrastive_kernel,
    identity_check,
    population_one_step,
    pseudo_contrastive_loss,
    pseudo_contrastive_objective,
)
from mtlab.theory.regimes import classify, nested_window_decades, penalty_fn, regime_map
from mtlab.theory.relu_penalties import f1_norm, group_norm, ptft_unit_penalty, relu_ptft_fn

__all__ = [
    "ExpPotential",
    "InterpolantResult",
    "classify",
    "contrastive_kernel",
    "diagonal_flow_potential",
    "exp_potential_penalty",
    "f1_norm",
    "feature_dependence",
    "group_norm",
    "identity_check",
    "l_order",
    "linear_probe_interpolant",
    "min_penalty_interpolant",
    "mtl_incremental_penalty",
    "mtl_l12_interpolant",
    "mtl_penalty",
    "nested_window_decades",
    "penalty_fn",
    "population_one_step",
    "pseudo_contrastive_loss",
    "pseudo_contrastive_objective",
    "ptft_figure_potential",
    "ptft_penalty",
    "ptft_scale",
    "ptft_unit_penalty",
    "q",
    "regime_map",
    "relu_ptft_fn",
    "stl_penalty",
    "stl_potential",
]
