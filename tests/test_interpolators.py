import numpy as np
import pytest
import torch
from scipy.optimize import linprog

from mtlab.models import DiagonalNet
from mtlab.theory import (
    diagonal_flow_potential,
    exp_potential_penalty,
    linear_probe_interpolant,
    min_penalty_interpolant,
    mtl_l12_interpolant,
    ptft_figure_potential,
    stl_potential,
)
from mtlab.train import LoopConfig, TrainData, train_ensemble


@pytest.fixture(scope="module")
def problem():
    g = np.random.default_rng(0)
    d, n = 100, 30
    x = g.standard_normal((n, d))
    beta = np.zeros(d)
    beta[:5] = g.choice([-1, 1], 5) / np.sqrt(5)
    return x, x @ beta, beta


def _train(x, y, params, lr, steps, trainable=("w_pos", "w_neg", "v_pos", "v_neg")):
    net = DiagonalNet(x.shape[1], 1)
    data = TrainData(
        [torch.tensor(x)[None]], [torch.tensor(y)[None]], (0,), torch.ones(1, dtype=torch.float64)
    )
    out = train_ensemble(
        net,
        params,
        data,
        list(trainable),
        torch.tensor([lr], dtype=torch.float64),
        LoopConfig(max_steps=steps, threshold=1e-14, log_every=10**9),
    )[0]
    return net.task_coefficients(out.params, 0)[0].numpy(), out


def test_interpolant_is_feasible_and_minimal(problem):
    x, y, _ = problem
    pot = stl_potential(x.shape[1], 0.05)
    res = min_penalty_interpolant(x, y, pot)
    assert res.success and res.residual < 1e-8
    p, n = torch.tensor(pot.p), torch.tensor(pot.n)
    best = float(exp_potential_penalty(torch.tensor(res.beta), p, n))
    null = np.linalg.svd(x)[2][x.shape[0] :]  # null-space basis of x
    g = np.random.default_rng(1)
    for _ in range(20):
        other = res.beta + 1e-2 * null.T @ g.standard_normal(null.shape[0])
        assert float(exp_potential_penalty(torch.tensor(other), p, n)) > best


def test_small_alpha_gives_min_l1_and_large_alpha_min_l2(problem):
    x, y, _ = problem
    d = x.shape[1]
    lp = linprog(np.ones(2 * d), A_eq=np.hstack([x, -x]), b_eq=y, bounds=(0, None))
    l1 = lp.x[:d] - lp.x[d:]
    rich = min_penalty_interpolant(x, y, stl_potential(d, 1e-6)).beta
    assert np.linalg.norm(rich - l1) / np.linalg.norm(l1) < 0.02
    lazy = min_penalty_interpolant(x, y, stl_potential(d, 100.0)).beta
    l2 = np.linalg.pinv(x) @ y
    assert np.linalg.norm(lazy - l2) / np.linalg.norm(l2) < 1e-4


def test_gradient_descent_matches_exact_flow_from_balanced_start(problem):
    x, y, _ = problem
    alpha = 0.1
    pred = min_penalty_interpolant(x, y, stl_potential(x.shape[1], alpha)).beta
    net = DiagonalNet(x.shape[1], 1)
    errs = []
    for lr in (0.02, 0.005):
        beta, out = _train(x, y, net.init(torch.tensor([alpha])), lr, 200_000)
        assert out.status == "converged"
        errs.append(np.linalg.norm(beta - pred) / np.linalg.norm(pred))
    assert errs[1] < 2e-3
    assert errs[1] < errs[0] / 2  # the gap is the discretisation error: it shrinks with lr


def test_gradient_descent_matches_exact_flow_from_arbitrary_start(problem):
    """The two-path formula (P = A₊ + B₋, N = B₊ + A₋) for an unbalanced, asymmetric start."""
    x, y, _ = problem
    d = x.shape[1]
    g = torch.Generator().manual_seed(3)
    params = {
        k: (0.05 + 0.4 * torch.rand(1, d, generator=g, dtype=torch.float64))
        for k in ("w_pos", "w_neg")
    }
    params.update(
        {
            k: 0.02 * torch.rand(1, 1, d, generator=g, dtype=torch.float64)
            for k in ("v_pos", "v_neg")
        }
    )
    pot = diagonal_flow_potential(
        *(params[k][0].reshape(-1).numpy() for k in ("w_pos", "w_neg", "v_pos", "v_neg"))
    )
    pred = min_penalty_interpolant(x, y, pot).beta
    beta, out = _train(x, y, params, 0.005, 200_000)
    assert out.status == "converged"
    assert np.linalg.norm(beta - pred) / np.linalg.norm(pred) < 5e-3
    # and the symmetric figure-form approximation is measurably different here
    a = (params["w_pos"] ** 2 - params["w_neg"] ** 2)[0].numpy()
    fig = min_penalty_interpolant(x, y, ptft_figure_potential(a, 0.02, 1.0)).beta
    assert np.linalg.norm(beta - fig) > 10 * np.linalg.norm(beta - pred)


def test_linear_probe_closed_form_matches_readout_only_training(problem):
    x, y, _ = problem
    d = x.shape[1]
    g = torch.Generator().manual_seed(4)
    w = {k: 0.2 + torch.rand(1, d, generator=g, dtype=torch.float64) for k in ("w_pos", "w_neg")}
    params = {
        **w,
        "v_pos": torch.full((1, 1, d), 1e-3, dtype=torch.float64),
        "v_neg": torch.full((1, 1, d), 1e-3, dtype=torch.float64),
    }
    beta, _ = _train(x, y, params, 0.01, 100_000, trainable=("v_pos", "v_neg"))
    pred = linear_probe_interpolant(
        x, y, w["w_pos"][0].numpy(), w["w_neg"][0].numpy(), np.full(d, 1e-3), np.full(d, 1e-3)
    )
    assert np.linalg.norm(beta - pred) / np.linalg.norm(pred) < 1e-5


def test_interpolant_input_errors(problem):
    x, y, _ = problem
    with pytest.raises(ValueError, match="need x"):
        min_penalty_interpolant(x, y[:-1], stl_potential(x.shape[1], 0.1))
    with pytest.raises(ValueError, match="coordinates"):
        min_penalty_interpolant(x, y, stl_potential(x.shape[1] + 1, 0.1))
    with pytest.raises(ValueError, match="P > 0"):
        stl_potential(3, 0.0)
    with pytest.raises(ValueError, match="K"):
        ptft_figure_potential(np.zeros(3), 0.0, 1.0)


def test_mtl_l12_interpolant_is_feasible_minimal_and_reduces_to_l1(problem):
    x, y, _ = problem
    d = x.shape[1]
    g = np.random.default_rng(5)
    a = np.zeros(d)
    a[:10] = g.choice([-1, 1], 10) / np.sqrt(10)
    res = mtl_l12_interpolant(x, y, a)
    assert res.success and res.residual < 1e-6
    obj = lambda b: np.sum(np.sqrt(b**2 + a**2 + 1e-10))  # noqa: E731
    null = np.linalg.svd(x)[2][x.shape[0] :]
    for _ in range(20):
        assert obj(res.beta + 1e-3 * null.T @ g.standard_normal(null.shape[0])) > obj(res.beta)
    # with no auxiliary coefficients the ℓ1,2 problem is the ℓ1 problem
    lp = linprog(np.ones(2 * d), A_eq=np.hstack([x, -x]), b_eq=y, bounds=(0, None))
    l1 = lp.x[:d] - lp.x[d:]
    b0 = mtl_l12_interpolant(x, y, np.zeros(d)).beta
    assert np.linalg.norm(b0 - l1) / np.linalg.norm(l1) < 1e-3
    with pytest.raises(ValueError, match="eps"):
        mtl_l12_interpolant(x, y, a, eps=0)
