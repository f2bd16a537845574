"""Trajectory factors of one loss on any ``nn.Module``: sharpness, Fisher trace, gradient
coherence, gradient-noise scale (the single-task generalisation predictors that Mueller, Dredze &
Andrews 2024 test against the STL–MTL gap).

Every function takes the model, a loss and a batch in the convention of PyHessian's
``hessian(model, criterion, data=(x, y))``, and an optional ``params``: the names of the
parameters to differentiate (default: every parameter that requires grad; the rest are held
fixed). The model is evaluated through ``torch.func.functional_call`` on detached copies, in eval
mode (dropout off, BatchNorm statistics read, never updated), and restored to its mode after: a
measurement never changes the model, its gradients or any random stream (label sampling uses its
own seeded generator).

* :func:`sharpness` — the top Hessian eigenvalue λ_max by Lanczos (``scipy.sparse.linalg.eigsh``
  on a ``LinearOperator`` of Hessian–vector products, forward-over-reverse by ``torch.func``);
  for at most ``dense_below`` parameters the Hessian is built from ``P`` products and solved
  exactly.
* :func:`per_example_grads` — ``(n, P)`` gradients of the loss of each example, by
  ``torch.func.vmap`` of ``grad`` (``per_example_grads_loop`` is the one-backward-per-example
  reference the benchmark compares against).
* :func:`fisher_trace` — Tr F = E_x E_{ŷ∼p_θ(·|x)} ‖∇_θ log p_θ(ŷ|x)‖², the "true" Fisher with
  labels sampled from the model (categorical for logits, unit-variance Gaussian for regression
  outputs), or the exact expectation over classes (``labels="exact"``).
* :func:`gradient_coherence` — ‖mean gᵢ‖² / mean ‖gᵢ‖² (Chatterjee 2020) of per-example gradients.
* :func:`noise_scale` — B_simple = tr Σ / ‖G‖² from two batch sizes (McCandlish et al. 2018,
  appendix A): per-example gradients grouped into micro-batches of ``b_small`` against their
  mean over all ``b_big`` examples.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

LossFn = Callable[[Any, Any], Tensor]
Batch = tuple[Tensor, Tensor] | Tensor


def _xy(data: Batch) -> tuple[Tensor, Tensor | None]:
    if isinstance(data, Tensor):
        return data, None
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise TypeError("data must be (x, y) or x")
    return data[0], data[1]


@dataclass
class _Split:
    """The differentiated parameters (``sel``, in ``names`` order) and everything else held fixed."""

    names: list[str]
    sel: dict[str, Tensor]
    fixed: dict[str, Tensor]

    @property
    def size(self) -> int:
        return sum(p.numel() for p in self.sel.values())

    def flat(self, d: dict[str, Tensor]) -> Tensor:
        return torch.cat([d[k].reshape(-1) for k in self.names])

    def unflat(self, v: Tensor) -> dict[str, Tensor]:
        out, i = {}, 0
        for k in self.names:
            n = self.sel[k].numel()
            out[k] = v[i : i + n].reshape(self.sel[k].shape)
            i += n
        return out


def split_params(model: nn.Module, params: Iterable[str] | None = None) -> _Split:
    """Detached copies of the named parameters (default: all requiring grad) and of the rest."""
    named = dict(model.named_parameters())
    if params is None:
        names = [k for k, p in named.items() if p.requires_grad]
    else:
        names = list(params)
        unknown = [k for k in names if k not in named]
        if unknown:
            raise ValueError(f"unknown parameter name(s) {unknown}; the model has {list(named)}")
    if not names:
        raise ValueError("no parameters to differentiate")
    sel = {k: named[k].detach() for k in names}
    fixed = {k: p.detach() for k, p in named.items() if k not in sel}
    fixed.update({k: b.detach() for k, b in model.named_buffers()})
    return _Split(names, sel, fixed)


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """The model in eval mode inside the block, its previous mode after."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, was in modes:
            m.training = was


def _loss_of(
    model: nn.Module, loss_fn: LossFn, split: _Split
) -> Callable[[dict[str, Tensor], Tensor, Tensor | None], Tensor]:
    from torch.func import functional_call

    def f(sel: dict[str, Tensor], x: Tensor, y: Tensor | None) -> Tensor:
        return loss_fn(functional_call(model, {**split.fixed, **sel}, (x,)), y)

    return f


def hessian_vector_product(
    model: nn.Module, loss_fn: LossFn, data: Batch, params: Iterable[str] | None = None
) -> tuple[Callable[[Tensor], Tensor], int]:
    """``(hvp, P)``: ``hvp(v)`` = H v for a flat ``v`` of the selected parameters' size."""
    from torch.func import grad, jvp

    x, y = _xy(data)
    split = split_params(model, params)
    f = _loss_of(model, loss_fn, split)
    g = grad(lambda sel: f(sel, x, y))

    def hvp(v: Tensor) -> Tensor:
        with eval_mode(model):
            return split.flat(jvp(g, (split.sel,), (split.unflat(v),))[1])

    return hvp, split.size


def sharpness(
    model: nn.Module,
    loss_fn: LossFn,
    data: Batch,
    params: Iterable[str] | None = None,
    *,
    tol: float = 1e-4,
    max_iter: int | None = None,
    dense_below: int = 64,
    ncv: int | None = 8,
    seed: int = 0,
) -> float:
    """λ_max of the Hessian of ``loss_fn(model(x), y)`` w.r.t. ``params`` (see module doc).

    ``tol`` is ARPACK's relative accuracy of the eigenvalue; ``max_iter`` bounds its restarts;
    ``ncv`` is the Lanczos basis size (8 converged in 7 products where ARPACK's default of 20
    took 21 on the study's networks, to the same value; ``None``: ARPACK's default).
    """
    from scipy.sparse.linalg import LinearOperator, eigsh

    hvp, P = hessian_vector_product(model, loss_fn, data, params)
    ref = next(iter(split_params(model, params).sel.values()))

    def mv(v: np.ndarray) -> np.ndarray:
        t = torch.as_tensor(np.ascontiguousarray(v).reshape(-1), dtype=ref.dtype, device=ref.device)
        return hvp(t).detach().cpu().double().numpy()

    if P <= dense_below:
        H = np.stack([mv(e) for e in np.eye(P)], axis=1)
        return float(np.linalg.eigvalsh(0.5 * (H + H.T))[-1])
    v0 = np.random.default_rng(seed).standard_normal(P)
    op = LinearOperator((P, P), matvec=mv, dtype=np.float64)
    vals = eigsh(
        op,
        k=1,
        which="LA",
        v0=v0,
        tol=tol,
        maxiter=max_iter,
        ncv=None if ncv is None else min(ncv, P - 1),
        return_eigenvectors=False,
    )
    return float(vals[0])


def per_example_grads(
    model: nn.Module,
    loss_fn: LossFn,
    data: Batch,
    params: Iterable[str] | None = None,
    *,
    chunk: int = 1024,
) -> Tensor:
    """``(n, P)``: the gradient of ``loss_fn`` on each example alone (``vmap`` of ``grad``).

    ``loss_fn`` receives the model output and labels of a batch of one example."""
    from torch.func import grad, vmap

    x, y = _xy(data)
    split = split_params(model, params)
    f = _loss_of(model, loss_fn, split)

    def one(sel: dict[str, Tensor], xi: Tensor, yi: Tensor | None) -> Tensor:
        return f(sel, xi[None], None if yi is None else yi[None])

    g1 = vmap(grad(one), in_dims=(None, 0, None if y is None else 0))
    out = []
    with eval_mode(model):
        for s in range(0, x.shape[0], chunk):
            gs = g1(split.sel, x[s : s + chunk], None if y is None else y[s : s + chunk])
            out.append(torch.cat([gs[k].reshape(gs[k].shape[0], -1) for k in split.names], 1))
    return torch.cat(out) if out else x.new_zeros((0, split.size))


def per_example_grads_loop(
    model: nn.Module, loss_fn: LossFn, data: Batch, params: Iterable[str] | None = None
) -> Tensor:
    """The reference for :func:`per_example_grads`: one autograd backward per example."""
    x, y = _xy(data)
    split = split_params(model, params)
    named = dict(model.named_parameters())
    targets = [named[k] for k in split.names]
    rows = []
    with eval_mode(model):
        for i in range(x.shape[0]):
            loss = loss_fn(model(x[i : i + 1]), None if y is None else y[i : i + 1])
            gs = torch.autograd.grad(loss, targets, allow_unused=True)
            rows.append(
                torch.cat(
                    [
                        (g if g is not None else torch.zeros_like(p)).reshape(-1)
                        for g, p in zip(gs, targets, strict=True)
                    ]
                )
            )
    return torch.stack(rows) if rows else x.new_zeros((0, split.size))


def sampled_labels(
    outputs: Tensor, likelihood: str, generator: torch.Generator
) -> tuple[Tensor, LossFn]:
    """Labels drawn from the model's predictive distribution and the matching negative
    log-likelihood (up to a constant): categorical from logits, or ``N(f, 1)`` for regression."""
    if likelihood == "categorical":
        probs = torch.softmax(outputs.detach().double(), -1).cpu()
        y = torch.multinomial(probs, 1, generator=generator).squeeze(-1).to(outputs.device)
        return y, lambda out, yy: nn.functional.cross_entropy(out, yy, reduction="sum")
    noise = torch.randn(outputs.shape, generator=generator, dtype=outputs.dtype)
    y = outputs.detach() + noise.to(outputs.device)
    return y, lambda out, yy: 0.5 * ((out - yy) ** 2).sum()


def fisher_trace(
    model: nn.Module,
    data: Batch,
    params: Iterable[str] | None = None,
    *,
    output: Callable[[Any], Tensor] | None = None,
    likelihood: Literal["categorical", "gaussian"] = "categorical",
    labels: Literal["sampled", "exact"] = "sampled",
    n_samples: int = 1,
    seed: int = 0,
) -> float:
    """Tr F averaged over the examples of ``data`` (its labels, if any, are not used).

    ``output`` maps the model's output to the logits / predictions (default: the output itself;
    e.g. ``lambda out: out[1][t]`` for task ``t`` of a :class:`MultiTaskNet`). ``labels="exact"``
    sums over the classes instead of sampling (categorical only; C gradients per example)."""
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1 (got {n_samples})")
    if likelihood not in ("categorical", "gaussian"):
        raise ValueError(f"likelihood must be 'categorical' or 'gaussian' (got {likelihood!r})")
    pick: Callable[[Any], Tensor] = output or (lambda o: o)
    x, _ = _xy(data)
    with torch.no_grad(), eval_mode(model):
        out = pick(model(x))
    if labels == "exact":
        if likelihood != "categorical":
            raise ValueError("labels='exact' is for the categorical likelihood")
        return _fisher_exact(model, x, params, pick, out)
    g = torch.Generator().manual_seed(seed)
    total = 0.0
    for _ in range(n_samples):
        y, nll = sampled_labels(out, likelihood, g)
        grads = per_example_grads(model, _picked(nll, pick), (x, y), params)
        total += float((grads.double() ** 2).sum(1).mean())
    return total / n_samples


def _picked(nll: LossFn, pick: Callable[[Any], Tensor]) -> LossFn:
    return lambda o, yy: nll(pick(o), yy)


def _fisher_exact(
    model: nn.Module,
    x: Tensor,
    params: Iterable[str] | None,
    pick: Callable[[Any], Tensor],
    out: Tensor,
) -> float:
    probs = torch.softmax(out.double(), -1)
    total = torch.zeros((), dtype=torch.float64)
    for c in range(out.shape[-1]):
        y = torch.full((x.shape[0],), c, dtype=torch.long, device=x.device)

        def nll(o: Any, yy: Tensor) -> Tensor:
            return nn.functional.cross_entropy(pick(o), yy, reduction="sum")

        sq = (per_example_grads(model, nll, (x, y), params).double() ** 2).sum(1)
        total = total + (probs[:, c].cpu() * sq.cpu()).sum()
    return float(total) / x.shape[0]


def gradient_coherence(grads: Tensor) -> float:
    """‖mean gᵢ‖² / mean ‖gᵢ‖² for per-example gradients ``(n, P)`` (1: all equal; ≈ 1/n:
    orthogonal); NaN when every gradient is zero."""
    g = grads.double()
    den = float((g**2).sum(1).mean())
    return float((g.mean(0) ** 2).sum()) / den if den > 0 else math.nan


@dataclass(frozen=True)
class NoiseScale:
    """McCandlish et al.'s estimates: ``b_simple`` = ``trace_sigma`` / ``g_sq`` (NaN when the
    estimate of ``g_sq`` is not positive)."""

    b_simple: float
    trace_sigma: float
    g_sq: float


def noise_scale_from_norms(small_sq: float, big_sq: float, b_small: int, b_big: int) -> NoiseScale:
    """Unbiased ‖G‖² and tr Σ from E‖G_small‖² and ‖G_big‖² at batch sizes ``b_small < b_big``."""
    if not 0 < b_small < b_big:
        raise ValueError(f"need 0 < b_small < b_big (got {b_small}, {b_big})")
    g_sq = (b_big * big_sq - b_small * small_sq) / (b_big - b_small)
    tr = (small_sq - big_sq) / (1.0 / b_small - 1.0 / b_big)
    # the unbiased ‖G‖² can come out ≤ 0 when the noise swamps the mean: B_simple undefined
    return NoiseScale(tr / g_sq if g_sq > 0 else math.nan, tr, g_sq)


def noise_scale(grads: Tensor, b_small: int = 16, seed: int = 0) -> NoiseScale:
    """B_simple from per-example gradients ``(n, P)``: micro-batches of ``b_small`` (a seeded
    permutation, the remainder dropped) against the mean over the ``b_big`` examples used."""
    n = grads.shape[0]
    m = n // b_small
    if m < 2:
        raise ValueError(f"need at least 2 micro-batches of {b_small} (got {n} gradients)")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[: m * b_small]
    g = grads.double()[order.to(grads.device)]
    small = g.reshape(m, b_small, -1).mean(1)
    small_sq = float((small**2).sum(1).mean())
    big_sq = float((g.mean(0) ** 2).sum())
    return noise_scale_from_norms(small_sq, big_sq, b_small, m * b_small)


__all__ = [
    "NoiseScale",
    "eval_mode",
    "fisher_trace",
    "gradient_coherence",
    "hessian_vector_product",
    "noise_scale",
    "noise_scale_from_norms",
    "per_example_grads",
    "per_example_grads_loop",
    "sampled_labels",
    "sharpness",
    "split_params",
]
