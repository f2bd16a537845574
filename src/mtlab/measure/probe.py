"""Linear probes on frozen features, with the regularisation chosen on validation data only.

``fit_probe(F_train, y_train, F_val, y_val)`` fits scikit-learn's ``Ridge`` (on ±1 labels, with an
intercept; all ``λ`` of the grid in one fit, one target column per ``λ``) or
``LogisticRegression`` for every strength of the grid, keeps the one with the best validation
accuracy (ties → the stronger regularisation) and returns a :class:`Probe`. Test data is
evaluated afterwards with :meth:`Probe.accuracy`; the fit never sees it.

Ridge strengths are ``λ·n`` for ``λ`` in the grid (scikit-learn's ``alpha`` multiplies ``‖w‖²``
against the *summed* squared error); logistic strengths are ``C = 1/(λ·n)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

PROBES = ("ridge", "logistic")
DEFAULT_LAMBDAS = (1e-3, 1e-2, 1e-1, 1.0)


def _np(a: Tensor | np.ndarray) -> np.ndarray:
    if isinstance(a, Tensor):
        return a.detach().to("cpu", torch.float64).numpy()
    return np.asarray(a, dtype=np.float64)


@dataclass
class Probe:
    """A fitted linear probe: the scikit-learn estimator, the chosen ``lam`` and its val accuracy."""

    estimator: Any
    lam: float
    val_acc: float
    train_acc: float

    def predict(self, F: Tensor | np.ndarray) -> np.ndarray:
        """±1 predictions."""
        s = (
            self.estimator.decision_function(_np(F))
            if hasattr(self.estimator, "decision_function")
            else self.estimator.predict(_np(F))
        )
        s = np.asarray(s).reshape(len(s), -1)[:, 0]
        return np.where(s >= 0, 1.0, -1.0)

    def accuracy(self, F: Tensor | np.ndarray, y: Tensor | np.ndarray) -> float:
        return float(np.mean(self.predict(F) == np.sign(_np(y))))


def _ridge_all(F: np.ndarray, y: np.ndarray, lambdas: Sequence[float]):
    from sklearn.linear_model import Ridge

    n = len(y)
    alphas = np.asarray(lambdas, float) * n
    est = Ridge(alpha=alphas, fit_intercept=True, solver="auto")
    est.fit(F, np.repeat(y[:, None], len(alphas), axis=1))
    return est


class _Column:
    """One target column of a multi-alpha ridge fit, as its own estimator."""

    def __init__(self, est, j: int) -> None:
        self.coef_ = np.atleast_2d(est.coef_)[j]  # a single target column comes back 1-D
        self.intercept_ = float(np.atleast_1d(est.intercept_)[j])

    def decision_function(self, F: np.ndarray) -> np.ndarray:
        return F @ self.coef_ + self.intercept_


def fit_probe(
    F_train: Tensor | np.ndarray,
    y_train: Tensor | np.ndarray,
    F_val: Tensor | np.ndarray,
    y_val: Tensor | np.ndarray,
    probe: str = "ridge",
    lambdas: Sequence[float] = DEFAULT_LAMBDAS,
) -> Probe:
    """Fit ``probe`` for each ``λ`` in ``lambdas`` on the training features ``(n, k)`` and ±1
    labels; return the one with the highest validation accuracy."""
    if probe not in PROBES:
        raise ValueError(f"unknown probe {probe!r}; allowed: {', '.join(PROBES)}")
    if not lambdas or min(lambdas) <= 0:
        raise ValueError(f"lambdas must be a non-empty list of positive numbers (got {lambdas})")
    F, y, Fv, yv = _np(F_train), _np(y_train), _np(F_val), _np(y_val)
    if F.ndim != 2 or F.shape[0] != y.shape[0] or Fv.shape[1] != F.shape[1]:
        raise ValueError(
            f"features/labels shapes do not match: train {F.shape} / {y.shape}, val {Fv.shape}"
        )
    n = len(y)
    candidates: list[tuple[float, Any]] = []
    if probe == "ridge":
        est = _ridge_all(F, y, lambdas)
        candidates = [(lam, _Column(est, j)) for j, lam in enumerate(lambdas)]
    else:
        from sklearn.linear_model import LogisticRegression

        if len(np.unique(y)) < 2:  # one class only: the constant classifier
            return _constant(y, yv, lambdas)
        for lam in lambdas:
            est = LogisticRegression(C=1.0 / (lam * n), max_iter=2000)
            candidates.append((lam, est.fit(F, y)))
    best: Probe | None = None
    for lam, est in sorted(candidates, key=lambda c: -c[0]):  # strongest first: wins ties
        p = Probe(est, float(lam), 0.0, 0.0)
        p.val_acc = p.accuracy(Fv, yv)
        if best is None or p.val_acc > best.val_acc:
            best = p
    assert best is not None
    best.train_acc = best.accuracy(F, y)
    return best


def _constant(y: np.ndarray, yv: np.ndarray, lambdas: Sequence[float]) -> Probe:
    class _Const:
        def __init__(self, c: float) -> None:
            self.c = c

        def decision_function(self, F: np.ndarray) -> np.ndarray:
            return np.full(len(F), self.c)

    p = Probe(_Const(float(np.sign(y[0]) or 1.0)), float(max(lambdas)), 0.0, 0.0)
    p.val_acc = p.accuracy(np.zeros((len(yv), 1)), yv)
    p.train_acc = 1.0
    return p


__all__ = ["DEFAULT_LAMBDAS", "PROBES", "Probe", "fit_probe"]
