"""Kernel baselines on frozen features: parameter-gradient (NTK) features and ridge regression with
the strength chosen on validation data only (Lippl & Lindsey 2024, §2.1 "LR / NTK baselines").

* :func:`gradient_features` — ``φ(x) = ∂f(θ; x)/∂θ`` flattened over every parameter, for each
  input, by ``torch.func`` (``vmap`` of ``jacrev``) in chunks: the features of the network's
  tangent kernel at ``θ``.
* :func:`ridge_select` — scikit-learn ``Ridge`` (no intercept; one fit for every ``α`` of the grid,
  one target column per ``α``) on training features; the ``α`` with the lowest validation MSE is
  kept. Test data is scored afterwards with :meth:`RidgeFit.mse`; the fit never sees it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from mtlab.measure.probe import _np

DEFAULT_ALPHAS = tuple(float(a) for a in np.logspace(-5, 10, 100))


def gradient_features(
    fn: Callable[[dict[str, Tensor], Tensor], Tensor],
    params: dict[str, Tensor],
    x: Tensor,
    *,
    chunk: int = 256,
) -> Tensor:
    """``(n, P)`` features ``∂fn(params, x_i)/∂params`` for ``x: (n, ...)``; ``fn`` maps one input
    (no batch axis) to a scalar. Parameters are flattened in sorted-name order."""
    from torch.func import jacrev, vmap

    if chunk < 1:
        raise ValueError(f"chunk must be >= 1; got {chunk}")
    names = sorted(params)
    detached = {k: params[k].detach() for k in names}
    per_sample = vmap(jacrev(fn), in_dims=(None, 0))
    out = []
    for i in range(0, x.shape[0], chunk):
        jac = per_sample(detached, x[i : i + chunk])
        out.append(torch.cat([jac[k].reshape(jac[k].shape[0], -1) for k in names], dim=1))
    return torch.cat(out) if out else x.new_zeros((0, sum(p.numel() for p in params.values())))


@dataclass
class RidgeFit:
    """The chosen ridge solution: coefficients, ``alpha``, and its train / validation MSE."""

    coef: np.ndarray
    alpha: float
    train_mse: float
    val_mse: float

    def predict(self, F: Tensor | np.ndarray) -> np.ndarray:
        return _np(F) @ self.coef

    def mse(self, F: Tensor | np.ndarray, y: Tensor | np.ndarray) -> float:
        return float(np.mean((self.predict(F) - _np(y)) ** 2))


def ridge_select(
    F_train: Tensor | np.ndarray,
    y_train: Tensor | np.ndarray,
    F_val: Tensor | np.ndarray,
    y_val: Tensor | np.ndarray,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
) -> RidgeFit:
    """Ridge regression ``min ‖Fβ − y‖² + α‖β‖²`` for every ``α``; keep the lowest validation MSE
    (ties → the larger α)."""
    from sklearn.linear_model import Ridge

    if not len(alphas) or min(alphas) <= 0:
        raise ValueError(f"alphas must be a non-empty list of positive numbers (got {alphas})")
    F, y, Fv, yv = _np(F_train), _np(y_train), _np(F_val), _np(y_val)
    if F.ndim != 2 or F.shape[0] != y.shape[0] or Fv.ndim != 2 or Fv.shape[1] != F.shape[1]:
        raise ValueError(
            f"features/targets shapes do not match: train {F.shape} / {y.shape}, val {Fv.shape}"
        )
    if Fv.shape[0] != yv.shape[0]:
        raise ValueError(f"validation features {Fv.shape} do not match targets {yv.shape}")
    a = np.asarray(alphas, float)
    est = Ridge(alpha=a, fit_intercept=False).fit(F, np.repeat(y[:, None], len(a), axis=1))
    coef = np.atleast_2d(est.coef_)  # (len(a), P)
    val = ((Fv @ coef.T - yv[:, None]) ** 2).mean(0)
    order = np.lexsort((-a, val))  # lowest val MSE, then the largest alpha
    j = int(order[0])
    return RidgeFit(
        coef=coef[j],
        alpha=float(a[j]),
        train_mse=float(np.mean((F @ coef[j] - y) ** 2)),
        val_mse=float(val[j]),
    )


__all__ = ["DEFAULT_ALPHAS", "RidgeFit", "gradient_features", "ridge_select"]
