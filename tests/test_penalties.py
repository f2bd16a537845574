import math

import numpy as np
import pytest
import torch

from mtlab.theory import (
    exp_potential_penalty,
    feature_dependence,
    l_order,
    mtl_incremental_penalty,
    mtl_penalty,
    nested_window_decades,
    penalty_fn,
    ptft_penalty,
    q,
    regime_map,
    stl_penalty,
)

BETA = torch.tensor([0.5, -0.2, 0.0, 1.3, -0.01], dtype=torch.float64)


def test_q_basic_properties():
    z = torch.linspace(-50, 50, 2001, dtype=torch.float64)
    assert q(torch.tensor(0.0)) == 0
    assert torch.allclose(q(z), q(-z))  # even
    assert (q(z) >= 0).all()
    small = torch.tensor([1e-9, 1e-6, 1e-3], dtype=torch.float64)
    assert torch.allclose(q(small), small**2 / 4, rtol=1e-6)  # no cancellation near 0
    d2 = q(z[2:]) - 2 * q(z[1:-1]) + q(z[:-2])
    assert (d2 > 0).all()  # convex


def test_stl_penalty_l1_limit_as_alpha_to_zero():
    """Q_α(β) = log(1/α²)‖β‖₁ + Σ|β|(log|β| − 1) + o(1) as α → 0 — the ℓ1 (rich) limit."""
    l1 = BETA.abs().sum()
    nz = BETA[BETA != 0].abs()
    const = (nz * (torch.log(nz) - 1)).sum()
    errs = []
    for alpha in (1e-3, 1e-6, 1e-12):
        qa = stl_penalty(BETA, alpha)
        errs.append(abs(float(qa / math.log(alpha**-2) - l1)))
        assert float(qa - math.log(alpha**-2) * l1 - const) == pytest.approx(0, abs=1e-3)
    assert errs[0] > errs[1] > errs[2]
    assert errs[2] / float(l1) < 0.05


def test_stl_penalty_l2_limit_as_alpha_to_infinity():
    for alpha in (1e2, 1e4):
        assert float(4 * alpha**2 * stl_penalty(BETA, alpha)) == pytest.approx(
            float((BETA**2).sum()), rel=1e-6
        )


def test_mtl_penalties_limits_and_homogeneity():
    b, a = torch.tensor([0.01]), torch.tensor([10.0])
    assert float(mtl_incremental_penalty(b, a)) == pytest.approx(0.01**2 / 20, rel=1e-4)
    assert float(mtl_incremental_penalty(a, b)) == pytest.approx(10.0, rel=1e-2)
    assert float(mtl_incremental_penalty(torch.tensor([0.0]), torch.tensor([0.0]))) == 0
    # no cancellation for |a| ≫ |β|: R = β²/(2|a|) to full precision
    assert float(
        mtl_incremental_penalty(torch.tensor([1.0]), torch.tensor([1e8]))
    ) == pytest.approx(0.5e-8, rel=1e-9)
    ba, bm = torch.randn(7, dtype=torch.float64), torch.randn(7, dtype=torch.float64)
    assert float(mtl_penalty(3 * ba, 3 * bm)) == pytest.approx(3 * float(mtl_penalty(ba, bm)))
    assert float(mtl_incremental_penalty(3 * bm, 3 * ba)) == pytest.approx(
        3 * float(mtl_incremental_penalty(bm, ba))
    )


@pytest.mark.parametrize("form", ["figure", "logging"])
def test_ptft_penalty_homogeneous_and_lazy_limit(form):
    b = torch.tensor([0.3, -0.7], dtype=torch.float64)
    a = torch.tensor([0.2, 1.5], dtype=torch.float64)
    assert float(ptft_penalty(5 * b, 5 * a, form=form)) == pytest.approx(
        5 * float(ptft_penalty(b, a, form=form))
    )
    # weighted-ℓ2 (lazy) limit for β ≪ K: K q(cβ/K) → c²β²/(4K); figure form (c = 2): β²/K
    tiny = torch.tensor([1e-6], dtype=torch.float64)
    k = torch.tensor([0.5], dtype=torch.float64)
    c = 2.0 if form == "figure" else 1.0
    assert float(ptft_penalty(tiny, k, form=form)) == pytest.approx(
        c**2 * 1e-12 / (4 * 0.5), rel=1e-6
    )


def test_ptft_penalty_rescaling_and_gamma_enter_through_k():
    b, a = torch.tensor([0.4]), torch.tensor([0.9])
    s, g = 0.1, 1e-2
    direct = ptft_penalty(b, torch.tensor([s**2 * 0.9 + g**2]))
    assert float(ptft_penalty(b, a, gamma=g, s=s)) == pytest.approx(float(direct))
    assert math.isinf(float(ptft_penalty(b, torch.tensor([0.0]))))
    assert float(ptft_penalty(torch.tensor([0.0]), torch.tensor([0.0]))) == 0
    with pytest.raises(ValueError, match="form"):
        ptft_penalty(b, a, form="bogus")


@pytest.mark.parametrize(
    "name,kw", [("mtl", {}), ("ptft", {}), ("ptft", {"s": 0.1}), ("ptft", {"form": "logging"})]
)
def test_conservation_law_l_order_plus_fd_is_one(name, kw):
    g = torch.Generator().manual_seed(0)
    bm = torch.rand(200, generator=g, dtype=torch.float64) * 3 + 1e-3
    ba = 10 ** (torch.rand(200, generator=g, dtype=torch.float64) * 8 - 5)
    fn = penalty_fn(name, **kw)
    total = l_order(fn, bm, ba) + feature_dependence(fn, bm, ba)
    assert torch.allclose(total, torch.ones_like(total), atol=1e-6)


def test_conservation_fails_with_gamma_so_the_test_can_fail():
    fn = penalty_fn("ptft", gamma=0.5)
    bm, ba = torch.tensor([1.0]), torch.tensor([0.01])
    total = l_order(fn, bm, ba) + feature_dependence(fn, bm, ba)
    assert abs(float(total) - 1) > 0.05


def test_l_order_limits():
    fn = penalty_fn("mtl")
    one = torch.tensor([1.0], dtype=torch.float64)
    assert float(l_order(fn, one, torch.tensor([1e-6]))) == pytest.approx(1, abs=1e-3)
    assert float(l_order(fn, one, torch.tensor([1e6]))) == pytest.approx(2, abs=1e-3)


def test_nested_window_wider_for_ptft_than_mtl():
    a = np.logspace(-8, 6, 561)
    w_mtl = nested_window_decades(regime_map("mtl", a))
    w_ft = nested_window_decades(regime_map("ptft", a))
    assert w_ft > w_mtl + 2
    table = regime_map("ptft", a)
    assert set(table.regime) == {"rich", "nested", "lazy"}


def test_rescaling_shifts_the_regime_map_by_one_over_s_squared():
    a = np.logspace(-6, 6, 241)
    t1 = regime_map("ptft", a, s=1.0)
    t2 = regime_map("ptft", a * 100, s=0.1)  # s²·a unchanged
    assert np.allclose(t1.l_order, t2.l_order, atol=1e-9)


def test_exp_potential_penalty_matches_stl_penalty_for_balanced_start():
    alpha = 0.03
    b = torch.tensor([0.2, -0.5, 0.0, 1e-4], dtype=torch.float64)
    p = torch.full((4,), alpha**2, dtype=torch.float64)
    r = exp_potential_penalty(b, p, p)
    assert float(r) == pytest.approx(float(stl_penalty(b, alpha)), rel=1e-9)
    p, n = torch.tensor([0.3]), torch.tensor([0.1])
    assert float(exp_potential_penalty(p - n, p, n)) == pytest.approx(0, abs=1e-12)
