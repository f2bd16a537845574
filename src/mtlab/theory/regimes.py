"""The regime map: lazy / rich / nested feature selection as a function of β_aux (§1.5).

At ``β_main = 1`` and varying auxiliary coefficient ``a``, each penalty has an ℓ-order between 1
and 2. We call a coordinate

* **rich** when ℓ-order ≤ ``lo`` (ℓ1-like, blind to pretraining, FD ≈ 0),
* **lazy** when ℓ-order ≥ ``hi`` (ℓ2-like kernel regression on pretrained features, FD ≈ −1),
* **nested** in between (sparsity-inducing *and* reuse-biased: nested feature selection).

The thresholds (default 1.1 and 1.9) are a documented choice; the window width is reported in
decades of ``a``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from torch import Tensor

from mtlab.theory.penalties import (
    PenaltyForm,
    feature_dependence,
    l_order,
    mtl_incremental_penalty,
    ptft_penalty,
)
from mtlab.theory.relu_penalties import ptft_unit_penalty

if TYPE_CHECKING:
    import pandas as pd

PenaltyName = Literal["mtl", "ptft", "relu_ptft"]


def penalty_fn(
    name: PenaltyName,
    *,
    gamma: float = 0.0,
    s: float = 1.0,
    form: PenaltyForm = "figure",
    theta: float = 1.0,
) -> Callable[[Tensor, Tensor], Tensor]:
    """Per-coordinate penalty ``fn(β_main, β_aux)`` for the regime map.

    ``relu_ptft`` is the per-unit ReLU finetuning penalty with pretrained norm ``m0 = s·√|β_aux|``
    (a balanced unit of coefficient β_aux, first layer × s), readout start ``v0 = gamma`` and
    cosine ``theta`` between the new and the pretrained direction."""
    if name == "mtl":
        return lambda b, a: mtl_incremental_penalty(b, a)
    if name == "ptft":
        return lambda b, a: ptft_penalty(b, a, gamma=gamma, s=s, form=form)
    if name == "relu_ptft":
        return lambda b, a: ptft_unit_penalty(b, s * torch.sqrt(a.abs()), theta, gamma).sum(-1)
    raise ValueError(f"unknown penalty {name!r}; allowed: mtl, ptft, relu_ptft")


def classify(l_ord: np.ndarray, lo: float = 1.1, hi: float = 1.9) -> np.ndarray:
    """``"rich"``, ``"nested"`` or ``"lazy"`` per ℓ-order value."""
    return np.where(l_ord <= lo, "rich", np.where(l_ord >= hi, "lazy", "nested"))


def regime_map(
    name: PenaltyName,
    beta_aux: np.ndarray,
    *,
    beta_main: float = 1.0,
    gamma: float = 0.0,
    s: float = 1.0,
    form: PenaltyForm = "figure",
    lo: float = 1.1,
    hi: float = 1.9,
    theta: float = 1.0,
) -> pd.DataFrame:
    """A table (pandas) of ``beta_aux``, ``l_order``, ``fd``, ``l_plus_fd`` and ``regime``."""
    import pandas as pd

    fn = penalty_fn(name, gamma=gamma, s=s, form=form, theta=theta)
    a = torch.as_tensor(np.asarray(beta_aux, float))
    b = torch.full_like(a, float(beta_main))
    lo_ = l_order(fn, b, a).numpy()
    fd = feature_dependence(fn, b, a).numpy()
    return pd.DataFrame(
        {
            "penalty": name,
            "s": s,
            "gamma": gamma,
            "beta_aux": a.numpy(),
            "l_order": lo_,
            "fd": fd,
            "l_plus_fd": lo_ + fd,
            "regime": classify(lo_, lo, hi),
        }
    )


def nested_window_decades(table: pd.DataFrame, lo: float = 1.1, hi: float = 1.9) -> float:
    """Width in decades of β_aux over which the ℓ-order lies strictly between ``lo`` and ``hi``
    (interpolating the crossings on the log-spaced grid of ``table``)."""
    a = np.log10(table["beta_aux"].to_numpy())
    l_ord = table["l_order"].to_numpy()
    order = np.argsort(a)
    a, l_ord = a[order], l_ord[order]
    if not np.all(np.diff(l_ord) >= -1e-9):
        # non-monotone curves: count grid mass inside the band
        inside = (l_ord > lo) & (l_ord < hi)
        return float(np.sum(np.diff(a)[inside[:-1]]))
    lo_x = np.interp(lo, l_ord, a, left=np.nan, right=np.nan)
    hi_x = np.interp(hi, l_ord, a, left=np.nan, right=np.nan)
    lo_x = a[0] if np.isnan(lo_x) else lo_x
    hi_x = a[-1] if np.isnan(hi_x) else hi_x
    return float(hi_x - lo_x)
