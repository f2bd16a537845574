"""Trajectory measures (Mueller et al. 2024): sharpness, Fisher trace, coherence, noise scale,
directional conflict, matched-loss gap, correlation statistics — each against a closed form."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from mtlab.measure.conflict import directional_conflict, pairwise_cosines
from mtlab.measure.curvature import (
    fisher_trace,
    gradient_coherence,
    noise_scale,
    noise_scale_from_norms,
    per_example_grads,
    per_example_grads_loop,
    sharpness,
)
from mtlab.measure.gap import gap_summary, level_grid, match_levels, matched_gap
from mtlab.measure.stats import correlate, sign_agreement
from mtlab.models.multitask import MultiTaskNet


class Vector(nn.Module):
    def __init__(self, P: int) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(P, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w


@pytest.mark.parametrize("P", [10, 120])
def test_sharpness_of_a_quadratic_is_its_top_eigenvalue(P: int) -> None:
    g = torch.Generator().manual_seed(P)
    B = torch.randn(P, P, generator=g, dtype=torch.float64)
    A = B @ B.T / P - 0.5 * torch.eye(P, dtype=torch.float64)  # indefinite
    model = Vector(P)
    lam = sharpness(model, lambda w, _: 0.5 * w @ A @ w, torch.zeros(1), tol=1e-10)
    top = float(torch.linalg.eigvalsh(A)[-1])
    assert abs(lam - top) / abs(top) < 1e-6


def test_sharpness_of_least_squares_is_top_eigenvalue_of_the_covariance() -> None:
    g = torch.Generator().manual_seed(0)
    n, d = 300, 90
    x = torch.randn(n, d, generator=g, dtype=torch.float64) * torch.linspace(0.2, 2, d).double()
    y = torch.randn(n, 1, generator=g, dtype=torch.float64)
    model = nn.Linear(d, 1).double()
    lam = sharpness(model, lambda out, yy: 0.5 * ((out - yy) ** 2).mean(), (x, y), tol=1e-10)
    xa = torch.cat([x, torch.ones(n, 1, dtype=torch.float64)], 1)  # the bias is a parameter
    top = float(torch.linalg.eigvalsh(xa.T @ xa / n)[-1])
    assert abs(lam - top) / top < 1e-6
    # only the weight: the bias column drops out of the Hessian
    lam_w = sharpness(
        model, lambda out, yy: 0.5 * ((out - yy) ** 2).mean(), (x, y), ["weight"], tol=1e-10
    )
    assert abs(lam_w - float(torch.linalg.eigvalsh(x.T @ x / n)[-1])) / top < 1e-6
    with pytest.raises(ValueError, match="unknown parameter"):
        sharpness(model, lambda out, yy: out.sum(), (x, y), ["nope"])


def _logistic(C: int = 3, d: int = 5, n: int = 64) -> tuple[nn.Linear, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    model = nn.Linear(d, C).double()
    with torch.no_grad():
        model.weight.copy_(torch.randn(C, d, generator=g, dtype=torch.float64))
    return model, torch.randn(n, d, generator=g, dtype=torch.float64)


def test_fisher_trace_of_logistic_regression_matches_the_closed_form() -> None:
    model, x = _logistic()
    with torch.no_grad():
        p = torch.softmax(model(x), -1)
    # ∇_W log p_y = (e_y − p) x̃ᵀ  ⇒  E_y ‖·‖² = (1 − ‖p‖²)(‖x‖² + 1)
    closed = float(((1 - (p**2).sum(1)) * ((x**2).sum(1) + 1)).mean())
    assert fisher_trace(model, x, labels="exact") == pytest.approx(closed, rel=1e-10)
    sampled = fisher_trace(model, (x, None), n_samples=400, seed=3)  # type: ignore[arg-type]
    assert sampled == pytest.approx(closed, rel=0.05)


def test_fisher_trace_of_gaussian_regression_is_the_output_gradient_norm() -> None:
    g = torch.Generator().manual_seed(2)
    x = torch.randn(50, 4, generator=g, dtype=torch.float64)
    model = nn.Linear(4, 1).double()
    closed = float(((x**2).sum(1) + 1).mean())  # E(ŷ − f)² = 1
    est = fisher_trace(model, x, likelihood="gaussian", n_samples=400, seed=1)
    assert est == pytest.approx(closed, rel=0.05)


def test_per_example_gradients_equal_the_loop_on_a_subset_of_parameters() -> None:
    torch.manual_seed(0)
    net = MultiTaskNet((8,), [3, 2], widths=(6, 5)).double()
    x = torch.randn(20, 8, dtype=torch.float64)
    y = torch.randint(0, 2, (20,))

    def loss(out, yy):
        return nn.functional.cross_entropy(out[1][1], yy)

    names = [n for n, _ in net.named_parameters() if n.startswith("trunk")]
    fast = per_example_grads(net, loss, (x, y), names, chunk=7)
    slow = per_example_grads_loop(net, loss, (x, y), names)
    assert fast.shape == (20, sum(p.numel() for p in net.trunk.parameters()))
    torch.testing.assert_close(fast, slow)


def test_coherence_and_directional_conflict_identities() -> None:
    g = torch.randn(1, 7, dtype=torch.float64)
    assert gradient_coherence(g.repeat(5, 1)) == pytest.approx(1.0)
    assert gradient_coherence(torch.cat([g, -g])) == pytest.approx(0.0)
    assert math.isnan(gradient_coherence(torch.zeros(3, 2)))
    gen = torch.Generator().manual_seed(4)
    for T in (2, 3, 6):
        J = torch.randn(T, 11, generator=gen, dtype=torch.float64) * torch.rand(T, 1, generator=gen)
        C = pairwise_cosines(J @ J.T)
        iu = torch.triu_indices(T, T, 1)
        mean_cos = float(C[iu[0], iu[1]].mean())
        unit = J / J.norm(dim=1, keepdim=True)
        lhs = float(unit.mean(0).norm() ** 2)
        assert lhs == pytest.approx(1 / T + (T - 1) / T * mean_cos, abs=1e-12)
        assert directional_conflict(J @ J.T) == pytest.approx(math.sqrt(lhs), abs=1e-12)


def test_noise_scale_recovers_trace_sigma_over_gradient_norm() -> None:
    gen = torch.Generator().manual_seed(5)
    P, n = 40, 8192
    G = torch.randn(P, generator=gen, dtype=torch.float64) * 0.3
    sd = torch.linspace(0.5, 2.0, P, dtype=torch.float64)
    grads = G + sd * torch.randn(n, P, generator=gen, dtype=torch.float64)
    truth = float((sd**2).sum() / (G**2).sum())
    est = noise_scale(grads, b_small=16)
    assert est.b_simple == pytest.approx(truth, rel=0.1)
    assert est.trace_sigma == pytest.approx(float((sd**2).sum()), rel=0.1)
    with pytest.raises(ValueError):
        noise_scale(grads[:20], b_small=16)
    with pytest.raises(ValueError):
        noise_scale_from_norms(1.0, 0.5, 16, 16)


def test_measuring_leaves_model_mode_gradients_and_global_rng_alone() -> None:
    torch.manual_seed(0)
    net = MultiTaskNet((8,), [3, 2], widths=(6,))
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x, y = torch.randn(32, 8), torch.randint(0, 3, (32,))
    state = torch.get_rng_state()

    def loss(o, yy):
        return nn.functional.cross_entropy(o[1][0], yy)

    sharpness(net, loss, (x, y))
    fisher_trace(net, x, output=lambda o: o[1][0])
    per_example_grads(net, loss, (x, y))
    assert torch.equal(torch.get_rng_state(), state)
    assert net.training and all(m.training for m in net.modules())
    assert all(p.grad is None for p in net.parameters())
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k])


# ---- matched-loss gap ---------------------------------------------------------------------------
def _curve(steps, train, val) -> pd.DataFrame:
    return pd.DataFrame({"step": steps, "train_loss": train, "val_loss": val})


def test_interpolated_gap_on_exponential_curves_is_exact() -> None:
    s = np.arange(0, 101, dtype=float)
    # STL: train = e^{-s/20}, val = train + 0.5; MTL: slower, val = train + 0.3
    stl = _curve(s, np.exp(-s / 20), np.exp(-s / 20) + 0.5)
    mtl = _curve(s, np.exp(-s / 40), np.exp(-s / 40) + 0.3)
    gaps = matched_gap(stl, mtl, match="interpolated", n_levels=10)
    assert len(gaps) == 10
    lo = max(np.exp(-100 / 20), np.exp(-100 / 40))
    assert gaps.level.min() == pytest.approx(lo) and gaps.level.max() < 1.0
    # val is linear in train inside each bracket, so the interpolated gap is exact
    np.testing.assert_allclose(gaps.gap, -0.2, atol=1e-3)
    np.testing.assert_allclose(gaps.mismatch, 0.0, atol=1e-3)  # monotone curves
    np.testing.assert_allclose(gaps.slowdown, 2.0, rtol=0.05)
    assert set(gaps.phase) == {"early", "late"}
    summ = gap_summary(gaps)
    assert summ["early_gap"] == pytest.approx(-0.2, abs=1e-3)
    assert summ["early_slowdown"] == pytest.approx(2.0, rel=0.05)


def test_first_passage_uses_the_first_checkpoint_below_the_level() -> None:
    stl = _curve([0, 1, 2, 3], [1.0, 0.6, 0.4, 0.2], [2.0, 1.6, 1.4, 1.2])
    mtl = _curve([0, 1, 2, 3], [1.0, 0.8, 0.5, 0.3], [2.0, 1.5, 1.1, 0.9])
    gaps = matched_gap(stl, mtl, levels=[0.7, 0.45], match="first_passage")
    assert list(gaps.step_stl) == [1, 2] and list(gaps.step_mtl) == [2, 3]
    np.testing.assert_allclose(gaps.gap, [1.1 - 1.6, 0.9 - 1.4])
    np.testing.assert_allclose(gaps.mismatch, [0.5 - 0.6, 0.3 - 0.4])
    np.testing.assert_allclose(gaps.slowdown, [2.0, 1.5])


def test_non_monotone_curves_use_the_running_minimum() -> None:
    # MTL's training loss rises between steps 1 and 2 (a spike) before falling again
    stl = _curve([0, 1, 2, 3], [1.0, 0.5, 0.4, 0.1], [1.0, 0.5, 0.4, 0.1])
    mtl = _curve([0, 1, 2, 3], [1.0, 0.5, 0.9, 0.1], [1.0, 0.7, 5.0, 0.3])
    gaps = matched_gap(stl, mtl, levels=[0.3], match="interpolated")
    # running-min records of MTL: steps 0, 1, 3 (the spike is skipped)
    assert gaps.step_mtl[0] == pytest.approx(1 + 2 * (0.2 / 0.4))
    assert gaps.val_loss_mtl[0] == pytest.approx(0.7 + 0.5 * (0.3 - 0.7))
    # the raw training loss at the interpolated step (2.0) is the spike: reported as mismatch
    assert gaps.train_mtl[0] == pytest.approx(0.9)
    assert gaps.mismatch[0] > 0.5


def test_no_overlap_gives_an_explicit_empty_table_not_an_error() -> None:
    stl = _curve([0, 1], [1.0, 0.9], [1.0, 0.9])
    mtl = _curve([0, 1], [0.5, 0.4], [1.0, 0.9])  # starts below STL's minimum
    assert len(level_grid(stl, mtl)) == 0
    gaps = matched_gap(stl, mtl)
    assert gaps.empty and {"level", "gap", "mismatch", "phase"} <= set(gaps.columns)
    # explicit levels outside the overlap are dropped, never extrapolated
    s = np.arange(3.0)
    a = _curve(s, [1.0, 0.5, 0.2], [1.0, 0.5, 0.2])
    assert len(match_levels(a, a, levels=[2.0, 0.1, 0.3])) == 1
    assert math.isnan(gap_summary(gaps)["early_gap"])


def test_correlations_with_bootstrap_intervals_and_sign_agreement() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=60)
    c = correlate(x, 2 * x + 0.1 * rng.normal(size=60))
    assert c.spearman > 0.95 and c.spearman_lo > 0.9 and c.excludes_zero()
    assert c.spearman_lo <= c.spearman <= c.spearman_hi
    noise = correlate(x, rng.normal(size=60))
    assert noise.spearman_lo < 0 < noise.spearman_hi and not noise.excludes_zero()
    flat = correlate([1.0, 2.0, 3.0], [1.0, 1.0, 1.0])
    assert math.isnan(flat.spearman) and flat.n == 3
    assert sign_agreement([1, -1, 2, np.nan], [1, 1, 3, 1]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        correlate([1.0, 2.0], [1.0])


def test_one_checkpoint_per_mtl_run_and_the_per_task_selection_beside_it() -> None:
    """The comparison takes an MTL run at the step with the lowest mean validation loss over its
    tasks; each task picking its own best step (which flatters MTL) is reported beside it. The
    pair table carries the early gap in metric units and the conflict at the matched levels."""
    from mtlab.runs.trajectory_analysis import gap_tables, run_checkpoints

    steps = np.array([0, 10, 20, 30, 40])
    rows = []

    def curve(regime, method, task, val, test, run):
        for k, st in enumerate(steps):
            rows.append({"run_id": run, "status": "ok", "regime": regime, "method": method,
                         "setting": "s", "group": "g", "task": task, "seed": 0, "step": st,
                         "train_loss": float(np.exp(-st / 10)), "val_loss": val[k],
                         "val_metric": 1 - val[k], "test_metric": test[k],
                         "cos_to_rest": -0.5 if regime == "mtl" else np.nan})  # fmt: skip

    # task a is best at step 10, task b at step 40; the mean is lowest at step 30
    curve("mtl", "sum", "a", [1.0, 0.2, 0.5, 0.3, 0.6], [0.5, 0.9, 0.7, 0.8, 0.6], "m")
    curve("mtl", "sum", "b", [1.0, 0.9, 0.6, 0.4, 0.35], [0.5, 0.6, 0.7, 0.8, 0.85], "m")
    for task in "ab":
        curve("stl", "stl", task, [1.0, 0.8, 0.6, 0.5, 0.45], [0.5, 0.6, 0.65, 0.7, 0.75],
              f"s{task}")
    traj = pd.DataFrame(rows)
    assert run_checkpoints(traj) == {("s", "sum", 0): 30.0}
    _, pairs = gap_tables(traj, "sum", n_levels=4)
    by = pairs.set_index("task")
    assert by.loc["a", "final_transfer"] == pytest.approx(0.8 - 0.75)  # one checkpoint: step 30
    assert by.loc["a", "final_transfer_per_task"] == pytest.approx(0.9 - 0.75)  # its own: 10
    assert by.loc["b", "final_transfer"] == pytest.approx(0.8 - 0.75)
    assert (by.early_cos_matched.dropna() == -0.5).all()
    # the metric is 1 − val_loss here, so the metric gap is minus the loss gap at every level
    ok = by.early_gap.notna()
    assert np.allclose(by.early_gap_metric[ok], -by.early_gap[ok])
