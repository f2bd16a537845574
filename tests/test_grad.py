"""The multi-task gradient engine, the methods chosen by name and the conflict diagnostics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from mtlab.grad.jacobian import (
    JacobianEngine,
    jacobian_batched,
    jacobian_loop,
    jacobian_representation,
)
from mtlab.grad.methods import (
    JACOBIAN_METHODS,
    METHODS,
    NON_CONFLICTING,
    DynamicWeightAverage,
    GradNorm,
    UncertaintyWeighting,
    check_methods,
    gradnorm_update,
    make_method,
)
from mtlab.measure.conflict import (
    condition_number,
    conflict_frequency,
    conflict_summary,
    cos_to_rest,
    magnitude_imbalance,
    pairwise_cosines,
)
from mtlab.models.multitask import MultiTaskNet, init_seeded

F64 = torch.float64


def _problem(trunk="mlp", T=4, seed=0):
    torch.manual_seed(seed)
    shape = (1, 6, 6) if trunk == "cnn" else (12,)
    widths = (4, 5) if trunk == "cnn" else (16, 8)
    model = init_seeded(MultiTaskNet(shape, [3] * T, trunk, widths), seed).double()
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(24, *shape, generator=g, dtype=F64)
    y = torch.randint(0, 3, (24, T), generator=g)

    def lf(out):
        return torch.stack([nn.functional.cross_entropy(out[1][t], y[:, t]) for t in range(T)])

    def losses():
        out = model(x)
        return lf(out), out[0]

    losses.lf, losses.x = lf, x  # type: ignore[attr-defined]
    return model, losses


# ---- Jacobian backends -------------------------------------------------------------------------
@pytest.mark.parametrize("trunk", ["mlp", "cnn"])
def test_backends_agree(trunk):
    model, losses = _problem(trunk)
    shared = model.shared_parameters()
    L, z = losses()
    J = jacobian_loop(L, shared)
    assert J.shape == (4, sum(p.numel() for p in shared))
    for chunk in (None, 1, 3):
        torch.testing.assert_close(jacobian_batched(L, shared, chunk), J, rtol=1e-10, atol=1e-12)
    auto = JacobianEngine("auto")
    res = auto(L, shared)
    assert res.backend in ("loop", "batched") and auto.timings
    torch.testing.assert_close(res.matrix, J, rtol=1e-10, atol=1e-12)
    # each row is the gradient of that task's loss alone
    for t in range(4):
        g = torch.autograd.grad(L[t], shared, retain_graph=True)
        torch.testing.assert_close(J[t], torch.cat([x.reshape(-1) for x in g]))
    # representation backend: gradients with respect to the shared representation
    Jz = jacobian_representation(L, z)
    assert Jz.shape == (4, z.numel())
    torch.testing.assert_close(
        Jz[2], torch.autograd.grad(L[2], z, retain_graph=True)[0].reshape(-1)
    )


def test_engine_errors():
    with pytest.raises(ValueError, match="unknown Jacobian backend"):
        JacobianEngine("vmap")
    with pytest.raises(ValueError, match="chunk"):
        JacobianEngine("batched", chunk=0)
    model, losses = _problem()
    L, _ = losses()
    with pytest.raises(ValueError, match="representation"):
        JacobianEngine("representation")(L, model.shared_parameters())
    with pytest.raises(ValueError, match="vector"):
        JacobianEngine("loop")(L[None], model.shared_parameters())


# ---- methods ----------------------------------------------------------------------------------
def _step(method_name, backend="loop", T=4):
    model, losses = _problem(T=T)
    method = make_method(method_name, T)
    if getattr(method, "needs_lookahead", False):  # IT-MTL scores candidates by lookahead
        from mtlab.grad.lookahead import LookaheadProbe

        shared_names = [n for n, _ in model.named_parameters() if n.startswith("trunk.")]
        probe = LookaheadProbe(model, shared_names, None, rule="sgd", eta=0.1)
        method.lookahead = lambda vecs: probe.evaluate(losses.x, losses.lf, vecs)
    model.zero_grad()
    L, z = losses()
    rec = method.backward(
        L, model.shared_parameters(), model.task_parameters(), z, JacobianEngine(backend), True
    )
    d = torch.cat([p.grad.reshape(-1) for p in model.shared_parameters()])
    J = jacobian_loop(losses()[0], model.shared_parameters())
    return rec, d, J, model


@pytest.mark.parametrize("name", METHODS)
def test_every_method_runs_and_returns_finite_weights(name):
    rec, d, J, model = _step(name)
    assert rec.weights.shape == (4,) and bool(torch.isfinite(rec.weights).all())
    assert bool(torch.isfinite(d).all()) and float(d.norm()) > 0
    assert rec.gramian is not None and rec.gramian.shape == (4, 4)
    # heads get the ordinary gradient of their own task's loss
    assert all(p.grad is not None for p in model.task_parameters())
    if name in NON_CONFLICTING:  # promised: no task's loss increases to first order
        assert float((J @ d).min()) >= -1e-8 * float(d.norm() * J.norm(dim=1).max())
    if name in ("mean", "upgrad", "mgda", "pcgrad", "imtl_g", "aligned_mtl", "dualproj"):
        assert float((J @ d).sum()) > 0  # a descent direction for the summed loss


def test_mean_weighting_equals_torchjd_mean_on_the_jacobian():
    from torchjd.aggregation import Mean

    rec, d, J, _ = _step("mean")
    torch.testing.assert_close(d, Mean()(J), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(rec.weights, torch.full((4,), 0.25, dtype=F64))


def test_jacobian_methods_apply_weights_times_jacobian():
    rec, d, J, _ = _step("upgrad")
    torch.testing.assert_close(d, rec.weights @ J, rtol=1e-8, atol=1e-10)
    assert rec.exact_weights
    rec2, _, _, _ = _step("graddrop")
    assert not rec2.exact_weights  # a masked combination: weights are a least-squares summary


def test_representation_backend_weights_and_single_backward():
    rec, d, J, _ = _step("mgda", backend="representation")
    # the trunk received one backward of Σ w_t L_t with the weights found on the representation
    torch.testing.assert_close(d, rec.weights @ J, rtol=1e-8, atol=1e-10)
    assert float(rec.weights.sum()) == pytest.approx(1.0, abs=1e-6)  # MGDA: convex weights


def test_check_methods_names_the_problem(monkeypatch):
    with pytest.raises(ValueError, match="unknown method 'adagrad'"):
        check_methods(["mean", "adagrad"])
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "cvxpy" else real(n, *a)
    )
    with pytest.raises(ValueError, match=r"mtlab\[solvers\]"):
        check_methods(["cagrad"])


def test_gradnorm_hand_worked_two_task_example():
    """w = (1, 1), ‖∇_W L_t‖ = (1, 3), L/L(0) = (0.5, 1): Ḡ = 2, r = (2/3, 4/3), α = 1 ⇒ targets
    (4/3, 8/3), G − target = (−1/3, +1/3) ⇒ ∂/∂w = (−1, +3); lr 0.1 ⇒ (1.1, 0.7) ⇒ renormalised
    to sum 2: (1.1, 0.7)·2/1.8."""
    w = gradnorm_update(
        torch.tensor([1.0, 1.0], dtype=F64),
        torch.tensor([1.0, 3.0], dtype=F64),
        torch.tensor([0.5, 1.0], dtype=F64),
        torch.tensor([1.0, 1.0], dtype=F64),
        alpha=1.0,
        lr=0.1,
    )
    torch.testing.assert_close(w, torch.tensor([1.1, 0.7], dtype=F64) * 2 / 1.8)


def test_gradnorm_moves_weight_toward_the_task_with_small_gradients():
    model, losses = _problem(T=2)
    method = GradNorm(2, alpha=0.0, lr=0.05)
    engine = JacobianEngine("loop")
    for _ in range(5):
        model.zero_grad()
        L, z = losses()
        method.backward(L, model.shared_parameters(), model.task_parameters(), z, engine)
    last = model.shared_parameters()[-2]  # the last weight matrix of the trunk
    L, _ = losses()
    norms = torch.stack(
        [torch.autograd.grad(L[t], last, retain_graph=True)[0].norm() for t in range(2)]
    )
    small = int(norms.argmin())
    assert float(method.w.sum()) == pytest.approx(2.0)
    assert float(method.w[small]) > 1.0  # α = 0: equalise w_t ‖∇L_t‖


def test_uncertainty_weighting_gradient():
    model, losses = _problem(T=3)
    uw = UncertaintyWeighting(3)
    L, z = losses()
    rec = uw.backward(
        L, model.shared_parameters(), model.task_parameters(), z, JacobianEngine("loop")
    )
    # d/ds_t [exp(−s_t) L_t + s_t] at s = 0 is 1 − L_t
    torch.testing.assert_close(uw.log_vars.grad, (1 - L.detach()).float())
    torch.testing.assert_close(rec.weights, torch.ones(3, dtype=F64))


def test_dynamic_weight_average():
    dwa = DynamicWeightAverage(2, temperature=2.0)
    for epoch_losses in ([1.0, 1.0], [0.5, 0.9]):
        dwa.after_step(torch.tensor(epoch_losses))
        dwa.end_epoch()
    w = dwa.weights(torch.zeros(2), [], JacobianEngine("loop"))
    r = torch.tensor([0.5, 0.9])
    torch.testing.assert_close(w, 2 * torch.softmax(r / 2.0, 0))
    assert float(w[1]) > float(w[0])  # the slower task gets more weight


# ---- conflict diagnostics ---------------------------------------------------------------------
def test_conflict_diagnostics_on_known_gradients():
    g = torch.tensor([[1.0, 0.0], [1.0, 1.0], [-2.0, 0.0]], dtype=F64)
    G = g @ g.T
    C = pairwise_cosines(G)
    assert float(C[0, 1]) == pytest.approx(1 / math.sqrt(2))
    assert float(C[0, 2]) == pytest.approx(-1.0)
    for t in range(3):
        rest = g.sum(0) - g[t]
        expected = float(g[t] @ rest / (g[t].norm() * rest.norm()))
        assert float(cos_to_rest(G)[t]) == pytest.approx(expected)
    assert conflict_frequency(G) == pytest.approx(2 / 3)
    assert magnitude_imbalance(G) == pytest.approx(2.0)
    assert condition_number(G) == math.inf  # three gradients in two dimensions
    G2 = torch.tensor([[4.0, 1.0], [1.0, 1.0]], dtype=F64)
    ev = np.linalg.eigvalsh(G2.numpy())
    assert condition_number(G2) == pytest.approx(ev[-1] / ev[0])
    s = conflict_summary(G)
    assert s["min_cosine"] == pytest.approx(-1.0) and s["conflict_frequency"] == pytest.approx(
        2 / 3
    )
    with pytest.raises(ValueError, match="square"):
        conflict_summary(torch.zeros(2, 3))


def test_famo_shifts_weight_to_the_task_that_improves_least():
    from mtlab.grad.methods import FAMO

    famo = FAMO(2, lr=0.5)
    eng = JacobianEngine("loop")
    w0 = famo.weights(torch.tensor([1.0, 1.0]), [], eng)
    torch.testing.assert_close(w0, torch.tensor([0.5, 0.5]))  # z = (½, ½), L = 1 ⇒ w = z / (c L)
    # task 0's loss halves, task 1's barely moves: FAMO favours task 1 afterwards
    famo.weights(torch.tensor([0.5, 0.95]), [], eng)
    z = torch.softmax(famo.logits, 0)
    assert float(z[1]) > float(z[0])
    w = famo.weights(torch.tensor([0.5, 0.95]), [], eng)  # same losses: only z differs
    L = torch.tensor([0.5, 0.95])
    torch.testing.assert_close(
        w * L * (torch.softmax(famo.logits, 0) / L).sum(), torch.softmax(famo.logits, 0)
    )


def test_gradnorm_uses_parameter_gradients_even_with_the_representation_backend():
    rec, d, _, _ = _step("gradnorm", backend="representation")
    assert bool(torch.isfinite(d).all()) and rec.weights.shape == (4,)


def _generated_jacobians():
    """Random Jacobians over task counts, widths and scales (near-zero to huge)."""
    for trial, scale in enumerate((1e-6, 1e-3, 1.0, 1e3, 1e6)):
        for T, P in ((2, 4), (3, 20), (5, 4), (5, 20)):
            g = torch.Generator().manual_seed(100 * trial + T * P)
            yield T, torch.randn(T, P, generator=g, dtype=torch.float64) * scale


def _combine(name, J):
    torch.manual_seed(0)  # GradDrop's masks
    return make_method(name, J.shape[0]).combine(J)[0]


@pytest.mark.parametrize("name", JACOBIAN_METHODS)
def test_declared_properties_hold_on_generated_jacobians(name):
    from mtlab.grad.methods import method_spec

    spec = method_spec(name)
    for T, J in _generated_jacobians():
        d = _combine(name, J)
        assert torch.isfinite(d).all()
        if spec.non_conflicting and T <= J.shape[1]:
            # up to torchjd's regularisation of the (scale-normalised) Gramian; with T <= P
            # (full row rank) a strictly conflict-free direction exists
            cos = (J @ d) / (J.norm(dim=1) * d.norm())
            assert cos.min() > -5e-3, (name, T, float(J.norm()), cos)
        if spec.homogeneous:
            torch.testing.assert_close(_combine(name, 7.0 * J), 7.0 * d, rtol=1e-6, atol=0.0)
        if spec.order_free:
            perm = torch.randperm(T, generator=torch.Generator().manual_seed(T))
            torch.testing.assert_close(_combine(name, J[perm]), d, rtol=1e-5, atol=1e-12 * J.norm())


def test_upgrad_stays_non_conflicting_for_tiny_gradients():
    # torchjd regularises the Gramian by 1e-4 (absolute): without scale normalisation UPGrad's
    # update conflicts with a task when ‖g‖ ~ 1e-3 (found by the property test above)
    J = torch.tensor([[1.0, 0.0], [-0.9, 0.3]], dtype=torch.float64) * 1e-3
    d = _combine("upgrad", J)
    assert (J @ d).min() >= 0


def test_make_method_rejects_unknown_options():
    with pytest.raises(ValueError, match=r"unknown option.*allowed: temperature"):
        make_method("dwa", 2, temperatur=2.0)
    with pytest.raises(ValueError, match="allowed: none"):
        make_method("upgrad", 2, c=0.1)
    assert make_method("cagrad", 2, c=0.2).aggregator.c == 0.2
    assert make_method("dwa", 2, temperature=3.0).temperature == 3.0


def test_abilities_are_declared_not_probed():
    assert make_method("itmtl", 2).needs_lookahead and not make_method("upgrad", 2).needs_lookahead
    assert make_method("uw", 2).stateful and not make_method("mean", 2).stateful
    with pytest.raises(TypeError, match="does not use a lookahead"):
        make_method("mean", 2).set_lookahead(lambda v: v)
    assert make_method("mean", 2).to("cpu").name == "mean"
