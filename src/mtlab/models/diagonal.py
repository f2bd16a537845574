"""Two-layer diagonal linear networks (Lippl & Lindsey 2024, §1.1; Woodworth et al. 2020).

Task ``t`` predicts ``f_t(x) = xᵀβ_t`` with ``β_t = w₊ ⊙ v₊[t] − w₋ ⊙ v₋[t]``. The first
layer ``w₊, w₋ ∈ ℝᵈ`` is **shared**; the readouts ``v₊, v₋ ∈ ℝ^{T×d}`` are **task-specific**. The
± paths let coefficients take both signs. With all entries initialised to α the network is
balanced (``w = v``) and gradient flow keeps it so, which gives the implicit penalty
``Q_α`` of :func:`mtlab.theory.stl_penalty`.

Parameter shapes (ensemble of ``E`` runs): ``w_pos, w_neg: (E, d)``; ``v_pos, v_neg: (E, T, d)``
(task-major, so each task's readout is contiguous).
"""

from __future__ import annotations

import torch
from torch import Tensor

from mtlab.models.base import Params, per_run


def _matvec(x: Tensor, beta: Tensor) -> Tensor:
    """``x: (E or 1, n, d)``, ``beta: (E, d)`` → ``(E, n)``.

    Written as a row vector times ``xᵀ``: on CPU this batched product was measured ~10× faster
    than ``x @ beta[..., None]`` (E = 64, n = 32, d = 1000); shared inputs use one GEMM.
    """
    if x.shape[0] == 1:  # inputs shared by every run: one matrix product
        return beta @ x[0].T
    return torch.matmul(beta.unsqueeze(-2), x.transpose(-1, -2)).squeeze(-2)


def _grouped_matvec(x: Tensor, beta: Tensor, layout: tuple[Tensor, int]) -> Tensor:
    """``x: (D, n, d)`` data draws, ``beta: (E, d)`` with run ``e`` on the draw its ``layout``
    position names → ``(E, n)``: the runs of a draw as the rows of one product, so each draw is
    read once (the per-run product reads it once per run: memory-bound at d = 1000)."""
    pos, k = layout
    D = x.shape[0]
    rows = beta.new_zeros(D * k, beta.shape[-1])
    rows[pos] = beta
    return torch.bmm(rows.view(D, k, -1), x.transpose(-1, -2)).reshape(D * k, -1)[pos]


def _grouped_rmatvec(r: Tensor, x: Tensor, layout: tuple[Tensor, int]) -> Tensor:
    """``r: (E, n)``, ``x: (D, n, d)`` → ``(E, d)`` = per run ``x[draw]ᵀ r`` (as above)."""
    pos, k = layout
    D = x.shape[0]
    rows = r.new_zeros(D * k, r.shape[-1])
    rows[pos] = r
    return torch.bmm(rows.view(D, k, -1), x).reshape(D * k, -1)[pos]


class DiagonalNet:
    """Diagonal linear network spec with ``d`` inputs and ``n_tasks`` outputs."""

    #: the closed form reads inputs kept once per data draw (``TrainData.src``)
    grouped_inputs = True

    shared_names = ("w_pos", "w_neg")
    task_specific_names = ("v_pos", "v_neg")

    def __init__(self, d: int, n_tasks: int = 1) -> None:
        if d < 1 or n_tasks < 1:
            raise ValueError(
                f"DiagonalNet needs d >= 1 and n_tasks >= 1; got d={d}, n_tasks={n_tasks}"
            )
        self.d = d
        self.n_tasks = n_tasks

    def init(
        self,
        scale: Tensor,
        *,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
    ) -> Params:
        """All four parameter vectors equal to the per-run init scale ``scale: (E,)`` (α)."""
        scale = torch.as_tensor(scale, dtype=dtype, device=device).reshape(-1)
        e = scale.shape[0]
        w = scale[:, None].expand(e, self.d).clone()
        v = scale[:, None, None].expand(e, self.n_tasks, self.d).clone()
        return {"w_pos": w, "w_neg": w.clone(), "v_pos": v, "v_neg": v.clone()}

    def coefficients(self, params: Params) -> Tensor:
        """The end-to-end linear maps ``β: (E, T, d)``."""
        return (
            params["w_pos"][:, None] * params["v_pos"] - params["w_neg"][:, None] * params["v_neg"]
        )

    def task_coefficients(self, params: Params, task: int) -> Tensor:
        """``β_task: (E, d)``."""
        return (
            params["w_pos"] * params["v_pos"][:, task] - params["w_neg"] * params["v_neg"][:, task]
        )

    def forward(self, params: Params, x: Tensor, task: int) -> Tensor:
        """``x: (E or 1, n, d)`` → ``(E, n)``."""
        return _matvec(x, self.task_coefficients(params, task))

    def reset_readout(
        self, params: Params, scale: Tensor, generator: torch.Generator | None = None
    ) -> Params:
        """Readouts ``v₊ = v₋ = γ`` (deterministic, as in the paper's code); ``scale: (E,)``."""
        out = dict(params)
        for name in self.task_specific_names:
            v = params[name]
            out[name] = per_run(scale.to(v), v).expand_as(v).clone()
        return out

    def scale_shared(self, params: Params, s: Tensor) -> Params:
        """First layer ``w± ← s·w±`` with per-run ``s: (E,)``."""
        out = dict(params)
        for name in self.shared_names:
            out[name] = params[name] * per_run(s.to(params[name]), params[name])
        return out

    def mse_loss_and_grads(
        self,
        params: Params,
        xs: list[Tensor],
        ys: list[Tensor],
        outputs: tuple[int, ...],
        weights: Tensor,
        trainable: tuple[str, ...] | list[str],
        counts: list[Tensor | None] | None = None,
        layouts: list[tuple[Tensor, int] | None] | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Closed-form gradients of ``Σ_i w_i · MSE_i`` (a fast path for the default step rule).

        For data entry ``i`` scored by output ``t``: ``r_i = X_i β_t − y_i``,
        ``∂MSE_i/∂β_t = (2/n_i) X_iᵀ r_i``; with ``G_t = Σ_i w_i ∂MSE_i/∂β_t``:
        ``∂/∂w± = ±Σ_t G_t ⊙ v±[t]`` and ``∂/∂v±[t] = ±G_t ⊙ w±``. ``weights: (T, E)``.
        ``counts[i]: (E,)`` gives per-run sample counts of zero-padded entries (``n_i`` otherwise);
        ``layouts[i]`` marks an entry whose inputs ``(D, n_i, d)`` are kept once per data draw
        (``TrainData.layout``).
        Returns the per-entry losses ``(T, E)`` and the gradients of ``trainable``; agrees with
        autograd (tested).
        """
        w_pos, w_neg, v_pos, v_neg = (params[k] for k in ("w_pos", "w_neg", "v_pos", "v_neg"))
        losses: list[Tensor] = []
        g_beta: dict[int, Tensor] = {}  # G_t: (E, d)
        betas = {t: w_pos * v_pos[:, t] - w_neg * v_neg[:, t] for t in set(outputs)}
        counts = counts or [None] * len(xs)
        layouts = layouts or [None] * len(xs)
        for i, (x, y, t, c, lay) in enumerate(zip(xs, ys, outputs, counts, layouts, strict=True)):
            r = (_matvec(x, betas[t]) if lay is None else _grouped_matvec(x, betas[t], lay)) - y
            n = r.shape[-1] if c is None else c
            losses.append((r * r).sum(-1) / n)
            scale = weights[i] * (2.0 / n)
            # (E, d) = X_iᵀ r_i per run; one matrix product when the inputs are shared
            if lay is not None:
                g = _grouped_rmatvec(r, x, lay)
            else:
                g = r @ x[0] if x.shape[0] == 1 else torch.matmul(r.unsqueeze(-2), x).squeeze(-2)
            g = g * scale[:, None]
            g_beta[t] = g_beta[t] + g if t in g_beta else g
        zero = torch.zeros_like(w_pos)
        gb = [g_beta.get(t, zero) for t in range(v_pos.shape[1])]
        grads: dict[str, Tensor] = {}
        if "w_pos" in trainable:
            grads["w_pos"] = torch.stack([g * v_pos[:, t] for t, g in enumerate(gb)]).sum(0)
        if "w_neg" in trainable:
            grads["w_neg"] = -torch.stack([g * v_neg[:, t] for t, g in enumerate(gb)]).sum(0)
        if "v_pos" in trainable:
            grads["v_pos"] = torch.stack([g * w_pos for g in gb], 1)
        if "v_neg" in trainable:
            grads["v_neg"] = -torch.stack([g * w_neg for g in gb], 1)
        return torch.stack(losses), grads
