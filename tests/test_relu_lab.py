"""ReLU teacher–student lab: teachers, the ensemble ReLU student, penalties, representation
measures, kernel baselines."""

import math

import numpy as np
import pytest
import torch

from mtlab.measure.features import gradient_features, ridge_select
from mtlab.measure.representation import (
    effective_units,
    ensd,
    kmeans_profile,
    participation_ratio,
    unit_alignment,
)
from mtlab.models.relu_net import ReluNet
from mtlab.tasks.relu_teacher import ReluTeacherSpec, relu_task_data, sample_relu_teachers
from mtlab.theory.penalties import feature_dependence, l_order
from mtlab.theory.relu_penalties import (
    f1_norm,
    group_norm,
    optimal_norm,
    ptft_unit_penalty,
    relu_ptft_fn,
)

# ---------------------------------------------------------------- teachers


@pytest.mark.parametrize("c", [(1.0,) * 6, (0.9,) * 6, (1, 1, 1, 0, 0, 0), (0.0,) * 6])
def test_teacher_cosines_and_orthogonality(c):
    pair = sample_relu_teachers(ReluTeacherSpec(correlations=tuple(map(float, c))), seed=3)
    aux, main = pair.w_aux, pair.w_main
    assert torch.allclose(aux @ aux.T, torch.eye(6, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(main.norm(dim=1), torch.ones(6, dtype=torch.float64), atol=1e-12)
    cross = main @ aux.T  # main unit i: cosine c_i with aux unit i, 0 with the others
    assert torch.allclose(cross, torch.diag(torch.tensor(c, dtype=torch.float64)), atol=1e-12)
    assert torch.allclose(pair.a_aux.abs(), torch.full((6,), 1 / math.sqrt(6), dtype=torch.float64))


def test_teacher_nested_subset_new_and_magnitude():
    sub = sample_relu_teachers(ReluTeacherSpec(mode="subset", n_units=2), seed=1)
    new = sample_relu_teachers(ReluTeacherSpec(mode="new", n_units=4, magnitude=0.1), seed=1)
    assert torch.equal(sub.w_main, sub.w_aux[:2])
    assert torch.allclose(
        new.w_main @ new.w_aux.T, torch.zeros(4, 6, dtype=torch.float64), atol=1e-12
    )
    assert torch.allclose(new.a_main.abs(), torch.full((4,), 0.1 / 2, dtype=torch.float64))
    # the auxiliary teacher does not depend on the main setting
    assert torch.equal(sub.w_aux, new.w_aux) and torch.equal(sub.a_aux, new.a_aux)


def test_teacher_data_rms_normalised_and_targets():
    pair = sample_relu_teachers(ReluTeacherSpec(), seed=0)
    x, y = relu_task_data(pair, "main", 0, "train", 50, torch.float64)
    assert torch.allclose(x.norm(dim=1), torch.full((50,), math.sqrt(15), dtype=torch.float64))
    assert torch.allclose(y, torch.relu(x @ pair.w_main.T) @ pair.a_main)
    x2, _ = relu_task_data(pair, "main", 0, "test", 50, torch.float64)
    assert not torch.equal(x, x2)


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"correlations": (1.0,) * 5}, "one value per"),
        ({"correlations": (1.5,) * 6}, r"\[-1, 1\]"),
        ({"mode": "subset", "n_units": 7}, "n_units"),
        ({"mode": "new", "n_units": 10}, "orthogonal directions"),
        ({"magnitude": 0.0}, "magnitude"),
    ],
)
def test_teacher_spec_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        ReluTeacherSpec(**kw)


# ---------------------------------------------------------------- student


@pytest.mark.parametrize("trainable", [("W", "A"), ("A",), ("W",)])
def test_relu_student_closed_form_matches_autograd(trainable, monkeypatch):
    import mtlab.models.relu_net as relu_net

    torch.manual_seed(0)
    net = ReluNet(d=5, m=7, n_tasks=2)
    gens = [torch.Generator().manual_seed(i) for i in range(3)]
    p = net.init(torch.tensor([1.0, 0.5, 2.0]), gens, dtype=torch.float64)
    xs = [torch.randn(1, 9, 5, dtype=torch.float64), torch.randn(3, 4, 5, dtype=torch.float64)]
    ys = [torch.randn(1, 9, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)]
    # zero-pad the second entry of run 0 to 3 real rows
    xs[1][0, 3] = 0
    ys[1][0, 3] = 0
    counts = [None, torch.tensor([3.0, 4.0, 4.0], dtype=torch.float64)]
    w = torch.tensor([[0.3, 0.5, 0.2], [0.7, 0.5, 0.8]], dtype=torch.float64)
    q = {k: v.clone().requires_grad_(True) for k, v in p.items()}
    auto = []
    for x, y, t, c in zip(xs, ys, (0, 1), counts, strict=True):
        sq = (net.forward(q, x, t) - y) ** 2
        auto.append(sq.mean(-1) if c is None else sq.sum(-1) / c)
    auto = torch.stack(auto)
    grads_auto = torch.autograd.grad((w * auto).sum(), [q[k] for k in trainable])
    g = dict(zip(trainable, grads_auto, strict=True))
    # one block of all 3 runs, then blocks of 2 (+1) and of 1 run (the cache bound shrunk):
    # the same numbers, bitwise, as every product is per run
    results = []
    for cache in (relu_net.CACHE_BYTES, 2 * 9 * 7 * 8, 1):
        monkeypatch.setattr(relu_net, "CACHE_BYTES", cache)
        results.append(net.mse_loss_and_grads(p, xs, ys, (0, 1), w, trainable, counts=counts))
    losses, grads = results[0]
    assert set(grads) == set(trainable)
    assert torch.allclose(losses, auto.detach())
    for k in trainable:
        assert torch.allclose(grads[k], g[k]), k
    for other_losses, other in results[1:]:
        assert torch.equal(other_losses, losses)
        assert all(torch.equal(other[k], grads[k]) for k in trainable)


def test_relu_student_init_scale_and_rescale():
    net = ReluNet(d=15, m=4000)
    p = net.init(torch.tensor([1e-3]), [torch.Generator().manual_seed(0)], dtype=torch.float64)
    assert p["W"].std().item() == pytest.approx(1e-3 * math.sqrt(2 / 15), rel=0.02)
    assert p["A"].std().item() == pytest.approx(1e-3 * math.sqrt(2 / 4000), rel=0.05)
    q = net.scale_shared(p, torch.tensor([10.0]))
    assert torch.allclose(q["W"], 10 * p["W"])
    r = net.reset_readout(q, torch.tensor([2.0]), torch.Generator().manual_seed(1))
    assert r["A"].shape == (1, 1, 4000) and torch.equal(r["W"], q["W"])
    assert r["A"].std().item() == pytest.approx(2 * math.sqrt(2 / 4000), rel=0.05)
    with pytest.raises(ValueError, match="ReluNet needs"):
        ReluNet(d=0, m=3)


# ---------------------------------------------------------------- penalties


def test_f1_and_group_norms():
    W = torch.tensor([[3.0, 4.0], [0.0, 1.0]])
    a = torch.tensor([2.0, -1.0])
    assert f1_norm(W, a).item() == pytest.approx(5 * 2 + 1 * 1)
    A = torch.stack([a, torch.tensor([0.0, 0.0])])  # an auxiliary readout of zero: F1 again
    assert group_norm(W, A).item() == pytest.approx(f1_norm(W, a).item())
    B = torch.tensor([[2.0, 0.0], [0.0, 3.0]])  # unit 1 for task 1, unit 2 for task 2
    assert group_norm(W, B).item() == pytest.approx(5 * 2 + 1 * 3)
    # shared units are cheaper under the group norm than the sum of per-task F1 norms
    C = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    assert group_norm(W, C) < f1_norm(W, C[0]) + f1_norm(W, C[1])


def test_ptft_unit_penalty_solves_the_minimisation():
    beta = torch.tensor([0.3, 1.0, -2.0, 5.0], dtype=torch.float64)
    for m0, th, v0 in [(1.0, 1.0, 0.0), (2.0, 0.7, 0.0), (0.5, 0.9, 0.3), (3.0, -0.2, 0.1)]:
        got = ptft_unit_penalty(beta, m0, th, v0)
        grid = torch.logspace(-4, 2, 200001, dtype=torch.float64)[:, None]
        brute = ((beta / grid - v0) ** 2 + grid**2 + m0**2 - 2 * grid * m0 * th).min(0).values
        assert torch.allclose(got, brute, rtol=1e-6, atol=1e-9)
        m = optimal_norm(beta, m0, th, v0)
        assert torch.allclose(
            m**4 - m0 * th * m**3 + v0 * beta * m - beta**2,
            torch.zeros(4, dtype=torch.float64),
            atol=1e-8,
        )


def test_ptft_unit_penalty_limits():
    b = torch.tensor([0.5, 2.0], dtype=torch.float64)
    # no pretrained unit: min (β/m)² + m² = 2|β| — the F1 (rich) cost
    assert torch.allclose(ptft_unit_penalty(b, 0.0, 1.0), 2 * b.abs())
    # a large aligned unit: ≈ β²/m0² — lazy, weighted ℓ2
    m0 = torch.tensor(100.0, dtype=torch.float64)
    assert torch.allclose(ptft_unit_penalty(b, m0, 1.0), b**2 / m0**2, rtol=1e-3)
    # β = 0: the cost of turning the unit, m0²(1 − θ²)
    assert ptft_unit_penalty(0.0, 2.0, 0.6).item() == pytest.approx(4 * (1 - 0.36))
    assert ptft_unit_penalty(0.0, 2.0, 1.0).item() == pytest.approx(0.0)


@pytest.mark.parametrize("theta", [1.0, 0.95, 0.5])
def test_relu_ptft_conservation_law(theta):
    a = torch.logspace(-4, 4, 33, dtype=torch.float64)
    b = torch.ones_like(a)
    fn = relu_ptft_fn(theta)
    total = l_order(fn, b, a) + feature_dependence(fn, b, a)
    assert torch.allclose(total, torch.ones_like(total), atol=1e-6)


def test_relu_ptft_l_order_regimes():
    a = torch.logspace(-4, 4, 17, dtype=torch.float64)
    b = torch.ones_like(a)
    aligned = l_order(relu_ptft_fn(1.0), b, a)
    assert aligned[0] == pytest.approx(1.0, abs=0.01)  # tiny pretrained unit: ℓ1-like
    assert aligned[-1] == pytest.approx(2.0, abs=0.01)  # large aligned unit: ℓ2 (lazy)
    assert (aligned.diff() >= -1e-9).all()
    turned = l_order(relu_ptft_fn(0.9), b, a)
    fd = feature_dependence(relu_ptft_fn(0.9), b, a)
    assert turned[-1] < 1 and fd[-1] > 0  # large but misaligned features are costly to adjust


# ---------------------------------------------------------------- representation measures


def test_pr_and_ensd_on_known_covariances():
    g = torch.Generator().manual_seed(0)
    n = 20000
    z = torch.randn(n, 3, generator=g, dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(10, 10, generator=g, dtype=torch.float64))
    x = z @ q[:3]  # isotropic in a 3-dim subspace of R^10
    assert participation_ratio(x) == pytest.approx(3.0, rel=0.02)
    scales = torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=torch.float64)
    assert participation_ratio(torch.randn(n, 4, generator=g, dtype=torch.float64) * scales) == (
        pytest.approx(2.0, rel=0.02)
    )
    assert ensd(x, x) == pytest.approx(participation_ratio(x), rel=1e-9)
    y = z[:, :1] @ q[5:6]  # a 1-dim representation of the same inputs, in another basis
    assert ensd(x, y) == pytest.approx(1.0, rel=0.03)  # it shares one dimension with x
    w = torch.randn(n, 2, generator=g, dtype=torch.float64)  # independent features
    assert ensd(x, w) < 0.01
    # exact formula on a small example
    a = torch.randn(7, 3, generator=g, dtype=torch.float64)
    b = torch.randn(7, 5, generator=g, dtype=torch.float64)
    c1, c2 = a.T @ a, b.T @ b
    pr = lambda c: float(torch.trace(c) ** 2 / torch.trace(c @ c))  # noqa: E731
    tau = float((a @ a.T * (b @ b.T)).sum() / (torch.trace(c1) * torch.trace(c2)))
    assert ensd(a, b) == pytest.approx(pr(c1) * pr(c2) * tau, rel=1e-10)
    with pytest.raises(ValueError, match="same inputs"):
        ensd(a, b[:5])


def test_unit_alignment_effective_units_and_kmeans():
    teacher = torch.eye(4, dtype=torch.float64)[:2]  # two teacher directions in R^4
    W = torch.cat([3 * teacher, 2 * teacher, 1e-4 * torch.ones(6, 4, dtype=torch.float64)])
    a = torch.tensor([1.0, 1.0, 1.0, 1.0] + [1.0] * 6, dtype=torch.float64)
    al = unit_alignment(W, a, teacher)
    assert al["weighted"] > 0.99 and al["per_unit"][:4].min() == pytest.approx(1.0)
    assert al["per_teacher"].sum() > 0.99
    assert effective_units(W, a) == pytest.approx((3 + 3 + 2 + 2 + 6 * 2e-4) ** 2 / 26, rel=1e-3)
    prof = kmeans_profile(W, teacher, ks=(1, 2, 3))
    assert prof["inertia"][0] > prof["inertia"][2]
    assert prof["alignment"][2] > 0.99  # three clusters: two teacher directions + the zero blob


# ---------------------------------------------------------------- kernel baselines


def test_gradient_features_match_finite_differences():
    net = ReluNet(d=4, m=5)
    p = net.init(torch.tensor([1.0]), [torch.Generator().manual_seed(2)], dtype=torch.float64)
    p1 = {k: v[0] for k, v in p.items()}

    def f(params, x):
        return torch.relu(params["W"] @ x) @ params["A"][0]

    x = torch.randn(6, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    feats = gradient_features(f, p1, x, chunk=4)
    assert feats.shape == (6, 5 + 20)  # sorted names: A (1×5) then W (5×4)
    eps = 1e-6
    flat = torch.cat([p1["A"].reshape(-1), p1["W"].reshape(-1)])
    for j in range(flat.numel()):
        up, dn = flat.clone(), flat.clone()
        up[j] += eps
        dn[j] -= eps

        def unflat(v):
            return {"A": v[:5].reshape(1, 5), "W": v[5:].reshape(5, 4)}

        fd = torch.stack([(f(unflat(up), xi) - f(unflat(dn), xi)) / (2 * eps) for xi in x])
        assert torch.allclose(feats[:, j], fd, atol=1e-6)


def test_ridge_select_uses_validation_only():
    g = np.random.default_rng(0)
    F = g.normal(size=(40, 60))
    beta = g.normal(size=60)
    y = F @ beta + 0.5 * g.normal(size=40)
    Fv = g.normal(size=(200, 60))
    yv = Fv @ beta
    fit = ridge_select(F, y, Fv, yv, alphas=np.logspace(-3, 3, 13))
    # the chosen alpha is the validation argmin of an independent refit
    from sklearn.linear_model import Ridge

    vals = [
        np.mean((Ridge(alpha=a, fit_intercept=False).fit(F, y).predict(Fv) - yv) ** 2)
        for a in np.logspace(-3, 3, 13)
    ]
    assert fit.alpha == pytest.approx(np.logspace(-3, 3, 13)[int(np.argmin(vals))])
    assert fit.val_mse == pytest.approx(min(vals), rel=1e-6)
    # changing the test data cannot change the fit (it never sees it); changing val can
    fit2 = ridge_select(F, y, Fv, -yv, alphas=np.logspace(-3, 3, 13))
    assert fit2.alpha != fit.alpha
    with pytest.raises(ValueError, match="positive"):
        ridge_select(F, y, Fv, yv, alphas=[])


def test_relu_regime_map_rescaling_shifts_beta_aux_by_one_over_s_squared():
    from mtlab.theory import regime_map

    a = np.logspace(-3, 3, 25)
    base = regime_map("relu_ptft", a, s=1.0)
    shrunk = regime_map("relu_ptft", a * 100, s=0.1)  # m0 = s·√β_aux: the same m0
    assert np.allclose(base.l_order, shrunk.l_order, atol=1e-9)
    assert np.allclose(base.l_plus_fd, 1.0, atol=1e-6)
    misaligned = regime_map("relu_ptft", a, theta=0.9)
    assert misaligned.l_order.iloc[-1] < 1 < base.l_order.iloc[-1]
    with pytest.raises(ValueError, match="relu_ptft"):
        regime_map("relu", a)
