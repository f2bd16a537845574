"""Subspace tasks, the two-layer ReLU model, head-first training, subspace metrics and probes
(Collins et al. 2024)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from mtlab._seeding import generator
from mtlab.measure.probe import fit_probe
from mtlab.measure.subspace import principal_sines, sin_max, subspace_metrics
from mtlab.models import relu
from mtlab.runs.config import ConfigError, make_config
from mtlab.runs.executor import execute
from mtlab.runs.store import RunStore
from mtlab.runs.subspace import FAMILY
from mtlab.tasks.subspace import (
    SubspaceSpec,
    downstream_task,
    projection,
    sample_downstream,
    sample_tasks,
    task_offsets,
    unit_directions,
)
from mtlab.theory.pseudo_contrastive import (
    contrastive_kernel,
    population_one_step,
    pseudo_contrastive_loss,
    pseudo_contrastive_objective,
)
from mtlab.train.headfirst import alternating_sgd, one_step

F64 = torch.float64


def _instance(d=30, r=3, T=4, n=50, seed=0, dtype=F64, **spec_kw):
    spec = SubspaceSpec(d, r, **spec_kw)
    M = projection(d, r, seed, dtype)
    theta = unit_directions(T, r, seed, "theta", dtype)
    off = task_offsets(T, spec.offset, seed, dtype)

    def sampler(stream, tasks, n=n):
        return sample_tasks(spec, M, theta, off, n, seed, stream, tasks)

    return spec, M, theta, off, sampler


# ---- tasks ------------------------------------------------------------------------------------
def test_projection_has_orthonormal_rows():
    M = projection(40, 6, seed=3, dtype=F64)
    assert M.shape == (6, 40)
    torch.testing.assert_close(M @ M.T, torch.eye(6, dtype=F64), atol=1e-12, rtol=0)


def test_labels_depend_only_on_the_projection():
    _, M, theta, _, sampler = _instance(d=25, r=4, T=3, n=400)
    X, Y = sampler("head", range(3))
    # move every input by a component orthogonal to row(M): labels must not change
    noise = torch.randn(X.shape, generator=generator(9), dtype=F64)
    X_perp = X + noise - (noise @ M.T) @ M
    y_again = torch.where(torch.einsum("tnd,td->tn", X_perp, theta @ M) >= 0, 1.0, -1.0)
    assert torch.equal(Y, y_again.to(Y))
    assert set(Y.unique().tolist()) == {-1.0, 1.0}
    assert abs(float(Y.mean())) < 0.1  # balanced (odd) halfspaces


def test_each_task_has_its_own_stream_whatever_T():
    _, M, _, _, _ = _instance(d=20, r=3, T=1)
    spec = SubspaceSpec(20, 3)
    th5 = unit_directions(5, 3, 0, "theta", F64)
    th1 = unit_directions(1, 3, 0, "theta", F64)
    assert torch.equal(th5[:1], th1)
    off = torch.zeros(5, dtype=F64)
    X5, Y5 = sample_tasks(spec, M, th5, off, 30, 0, "rep")
    X1, Y1 = sample_tasks(spec, M, th1, off[:1], 30, 0, "rep")
    assert torch.equal(X5[0], X1[0]) and torch.equal(Y5[0], Y1[0])
    Xb, _ = sample_tasks(spec, M, th5, off, 30, 0, "rep", tasks=[3, 4])
    assert torch.equal(Xb, X5[3:])


def test_margin_offsets_and_label_noise():
    _, M, theta, _, _ = _instance(d=20, r=3, T=2)
    spec = SubspaceSpec(20, 3, margin=0.5)
    off = torch.zeros(2, dtype=F64)
    X, _ = sample_tasks(spec, M, theta, off, 300, 0, "head")
    s = torch.einsum("tnd,td->tn", X, theta @ M)
    assert float(s.abs().min()) >= 0.5
    noisy = SubspaceSpec(20, 3, label_noise=0.2)
    _, Yc = sample_tasks(SubspaceSpec(20, 3), M, theta, off, 4000, 0, "rep")
    _, Yn = sample_tasks(noisy, M, theta, off, 4000, 0, "rep")
    assert 0.17 < float((Yc != Yn).double().mean()) < 0.23
    c = task_offsets(50, 0.5, 0)
    assert float(c.abs().max()) <= 0.5 and float(c.std()) > 0.1


@pytest.mark.parametrize(
    "kw",
    [dict(d=3, r=4), dict(d=10, r=0), dict(d=10, r=2, label_noise=0.5), dict(d=10, r=2, margin=-1)],
)
def test_bad_spec_is_rejected(kw):
    with pytest.raises(ValueError):
        SubspaceSpec(**kw)


def test_downstream_tasks():
    M = projection(30, 4, 0, F64)
    xor = downstream_task("xor", 4, seed=0, index=1)
    assert xor.directions.shape == (2, 4)
    assert abs(float(xor.directions[0] @ xor.directions[1])) < 1e-6
    x, y = sample_downstream(xor, M, 2000, 0, "train", 1)
    z = (x @ M.T).float()
    expected = torch.sign((z @ xor.directions[0]) * (z @ xor.directions[1]))
    assert float((expected == y.float()).double().mean()) > 0.999
    custom = downstream_task(lambda z: z[:, 0] - 0.3, 4, seed=0)
    _, yc = sample_downstream(custom, M, 500, 0, "val")
    assert set(yc.unique().tolist()) <= {-1.0, 1.0}
    with pytest.raises(ValueError, match="unknown downstream task"):
        downstream_task("parity", 4, 0)
    with pytest.raises(ValueError, match="r >= 2"):
        downstream_task("xor", 1, 0)


# ---- model ------------------------------------------------------------------------------------
@pytest.mark.parametrize("loss", ["hinge", "logistic"])
@pytest.mark.parametrize("with_bias", [False, True])
def test_closed_form_gradients_match_autograd(loss, with_bias):
    _, _, _, _, sampler = _instance(d=12, r=3, T=3, n=40)
    X, Y = sampler("head", range(3))
    g = generator(1)
    W = torch.randn(16, 12, generator=g, dtype=F64).requires_grad_(True)
    A = (0.3 * torch.randn(3, 16, generator=g, dtype=F64)).requires_grad_(True)
    b = torch.randn(16, generator=g, dtype=F64) if with_bias else None
    gW, gA = torch.autograd.grad(relu.loss(W, A, X, Y, loss, b), (W, A))
    with torch.no_grad():
        torch.testing.assert_close(relu.shared_grad(W, A, X, Y, loss, b), gW)
        # the loss averages over tasks; head_grads are each task's own gradient
        torch.testing.assert_close(relu.head_grads(W, A, X, Y, loss, b) / 3, gA)


def test_zero_heads_give_zero_first_layer_gradient():
    _, _, _, _, sampler = _instance()
    X, Y = sampler("rep", range(4))
    W = relu.init_first_layer(20, 30, generator(0), F64)
    assert float(relu.shared_grad(W, torch.zeros(4, 20, dtype=F64), X, Y, "hinge").abs().max()) == 0


def test_unknown_loss():
    with pytest.raises(ValueError, match="unknown loss"):
        relu.margin_loss(torch.zeros(3), "squared")


# ---- theory -----------------------------------------------------------------------------------
def test_pseudo_contrastive_identity():
    """Notes target 1: the first-layer gradient after the zero-init head step equals the
    gradient of the pseudo-contrastive loss (float64, hinge, all margins < 1)."""
    d, m, T, n, eta_a = 100, 200, 3, 50, 0.01
    _, _, _, _, sampler = _instance(d=d, r=5, T=T, n=n)
    X1, Y1 = sampler("head", range(T))
    X2, Y2 = sampler("rep", range(T))
    W = relu.init_first_layer(m, d, generator(0, "W0"), F64)
    A = -eta_a * relu.head_grads(W, torch.zeros(T, m, dtype=F64), X1, Y1, "hinge")
    assert bool((Y2 * relu.outputs(W, A, X2) < 1).all())
    g_train = relu.shared_grad(W, A, X2, Y2, "hinge")
    Wg = W.clone().requires_grad_(True)
    (g_pc,) = torch.autograd.grad(pseudo_contrastive_loss(Wg, X1, Y1, X2, Y2, eta_a), Wg)
    assert float((g_train - g_pc).norm() / g_pc.norm()) < 1e-12
    # and the one_step algorithm applies exactly this gradient (weight decay 1/η_W erases W0)
    res = one_step(W, T, lambda s, t: (X1, Y1) if s == "head" else (X2, Y2), eta_a=eta_a)
    torch.testing.assert_close(res.W, -g_pc, atol=1e-14, rtol=1e-10)
    # without the stop-gradient the gradient differs (both sides move)
    (g_sym,) = torch.autograd.grad(
        pseudo_contrastive_loss(Wg, X1, Y1, X2, Y2, eta_a, stop_gradient=False), Wg
    )
    assert float((g_sym - g_pc).norm() / g_pc.norm()) > 0.1


def test_kernel_form_when_tasks_share_their_samples():
    """If every task labels the same points, the multi-task first-layer gradient after the head
    step is η_a ∇ of the explicit objective −E[K_T(x, x') ⟨sg σ(Wx), σ(Wx')⟩], K_T = Y1ᵀY2 / T."""
    d, r, T, n, m, eta_a = 30, 4, 6, 40, 50, 0.01
    M = projection(d, r, 0, F64)
    theta = unit_directions(T, r, 0, "theta", F64)
    g = generator(11)
    x1, x2 = (torch.randn(n, d, generator=g, dtype=F64) for _ in range(2))
    Y1 = torch.sign(theta @ M @ x1.T)  # (T, n): every task labels the same points
    Y2 = torch.sign(theta @ M @ x2.T)
    X1, X2 = x1.expand(T, n, d), x2.expand(T, n, d)
    W = relu.init_first_layer(m, d, generator(12), F64)
    A = -eta_a * relu.head_grads(W, torch.zeros(T, m, dtype=F64), X1, Y1, "hinge")
    g_train = relu.shared_grad(W, A, X2, Y2, "hinge")
    Wg = W.clone().requires_grad_(True)
    K = Y1.T @ Y2 / T
    loss = pseudo_contrastive_objective(Wg, x1, K, Xp=x2, stop_gradient=True)
    (g_pc,) = torch.autograd.grad(loss, Wg)
    torch.testing.assert_close(g_train, eta_a * g_pc, rtol=1e-10, atol=1e-16)


def test_contrastive_kernel_and_objective():
    Y = torch.tensor([[1.0, 1.0, -1.0], [1.0, -1.0, -1.0]])
    K = contrastive_kernel(Y)
    torch.testing.assert_close(
        K, torch.tensor([[1.0, 0.0, -1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 1.0]])
    )
    X = torch.randn(3, 4, generator=generator(2))
    W = torch.randn(5, 4, generator=generator(3))
    H = torch.relu(X @ W.T)
    expected = -(2 * K[0, 2] * (H[0] @ H[2])) / 6  # only the off-diagonal pair (0, 2) has K ≠ 0
    torch.testing.assert_close(pseudo_contrastive_objective(W, X, K), expected)


def test_population_one_step_predicts_the_update():
    d, r, T, m = 20, 3, 6, 40
    _, M, theta, _, sampler = _instance(d=d, r=r, T=T, n=20000)
    W0 = relu.init_first_layer(m, d, generator(5), F64)
    W1 = one_step(W0, T, sampler, eta_a=0.001).W
    pred = population_one_step(W0, M, theta, eta_a=0.001)
    cos = torch.nn.functional.cosine_similarity(W1, pred, dim=1)
    assert float(cos.mean()) > 0.97
    assert 0.7 < float(W1.norm() / pred.norm()) < 1.3  # the scale η_a η_W / 2π too


# ---- measures ---------------------------------------------------------------------------------
def test_principal_sines_match_scipy():
    from scipy.linalg import subspace_angles

    g = generator(4)
    U, _ = torch.linalg.qr(torch.randn(15, 3, generator=g, dtype=F64))
    V, _ = torch.linalg.qr(torch.randn(15, 4, generator=g, dtype=F64))
    expected = np.sort(np.sin(subspace_angles(U.numpy(), V.numpy())))[::-1]
    np.testing.assert_allclose(principal_sines(U, V).numpy(), expected, atol=1e-12)


def test_subspace_metrics_on_known_subspaces():
    d, r, m = 30, 3, 12
    M = projection(d, r, 1, F64)
    g = generator(6)
    W_in = torch.randn(m, r, generator=g, dtype=F64) @ M  # rows inside row(M), full rank
    met = subspace_metrics(W_in, M)
    assert met["energy"] == pytest.approx(1.0) and met["sin_max"] < 1e-6
    assert met["n_dirs"] == r and met["coverage"] > 0.1
    # rotate one direction of the subspace by a known angle φ out of it
    phi = 0.3
    out = torch.randn(d, generator=g, dtype=F64)
    out -= M.T @ (M @ out)
    out /= out.norm()
    R = M.clone()
    R[0] = math.cos(phi) * M[0] + math.sin(phi) * out
    W_rot = torch.randn(m, r, generator=g, dtype=F64) @ R
    assert sin_max(W_rot, M) == pytest.approx(math.sin(phi), abs=1e-9)
    # rank one along a direction inside the subspace: high energy, one direction, no coverage
    u = M[1]
    W_one = torch.randn(m, 1, generator=g, dtype=F64) * u + 1e-6 * torch.randn(m, d, generator=g)
    met1 = subspace_metrics(W_one, M)
    assert met1["energy"] > 0.99 and met1["n_dirs"] == 1
    assert met1["coverage"] < 1e-3 and met1["sin_max"] > 0.9
    # random init: energy ≈ r/d
    W0 = relu.init_first_layer(2000, d, generator(7), F64)
    assert subspace_metrics(W0, M)["energy"] == pytest.approx(r / d, rel=0.15)


# ---- algorithms -------------------------------------------------------------------------------
def test_single_task_learns_one_direction_multi_task_all():
    d, r, m = 40, 4, 100
    W0 = relu.init_first_layer(m, d, generator(0, "W0"), F64)
    _, M, _, _, sampler1 = _instance(d=d, r=r, T=1, n=4000)
    single = subspace_metrics(one_step(W0, 1, sampler1).W, M)
    assert single["n_dirs"] == 1 and single["sin_max"] > 0.9 and single["energy"] > 0.8
    _, M, _, _, sampler = _instance(d=d, r=r, T=32, n=500)
    multi = subspace_metrics(one_step(W0, 32, sampler).W, M)
    assert multi["n_dirs"] == r and multi["sin_max"] < 0.5


def test_head_rules_and_task_blocks():
    T, m, d = 5, 16, 20
    _, _, _, _, sampler = _instance(d=d, r=3, T=T, n=30)
    W0 = relu.init_first_layer(m, d, generator(1), F64)
    full = one_step(W0, T, sampler, task_block=None)
    blocked = one_step(W0, T, sampler, task_block=2)
    torch.testing.assert_close(full.W, blocked.W)
    shared = one_step(W0, T, sampler, heads="shared")
    torch.testing.assert_close(shared.A, full.A.mean(0, keepdim=True).expand(T, m))
    rand = torch.randn(T, m, generator=generator(2), dtype=F64)
    assert torch.equal(one_step(W0, T, sampler, heads="random", random_heads=rand).A, rand)
    with pytest.raises(ValueError, match="random_heads of shape"):
        one_step(W0, T, sampler, heads="random")
    with pytest.raises(ValueError, match="unknown head rule"):
        one_step(W0, T, sampler, heads="frozen")


def test_alternating_sgd_needs_enough_tasks():
    d, r, m = 30, 3, 40
    W0 = relu.init_first_layer(m, d, generator(0, "W0"), F64)
    final = {}
    for T in (1, 9):
        _, M, _, _, sampler = _instance(d=d, r=r, T=T, n=100)
        log = alternating_sgd(
            W0,
            T,
            lambda s, t, sampler=sampler: sampler(s, t),
            rounds=120,
            batch_tasks=6,
            generator=generator(1),
            log_every=40,
            measure=lambda W, A, M=M: subspace_metrics(W, M),
        )
        assert log.rounds == [0, 40, 80, 120]
        final[T] = log.records[-1]
    assert final[1]["sin_max"] > 0.9
    assert final[9]["sin_max"] < 0.5 and final[9]["n_dirs"] == r


# ---- probe ------------------------------------------------------------------------------------
def _probe_data(n=200, k=10, seed=0):
    w = np.random.default_rng(99).normal(size=k)  # one task; seed picks the samples
    g = np.random.default_rng(seed)
    F = g.normal(size=(n, k))
    return F, np.sign(F @ w + 0.3 * g.normal(size=n))


@pytest.mark.parametrize("probe", ["ridge", "logistic"])
def test_probe_picks_lambda_on_validation_data(probe):
    F, y = _probe_data(100)
    Fv, yv = _probe_data(500, seed=1)
    Fte, yte = _probe_data(800, seed=2)
    best = fit_probe(F, y, Fv, yv, probe)
    singles = {
        lam: fit_probe(F, y, Fv, yv, probe, lambdas=[lam]) for lam in (1e-3, 1e-2, 1e-1, 1.0)
    }
    assert best.val_acc == max(p.val_acc for p in singles.values())
    assert best.val_acc == singles[best.lam].val_acc
    assert best.accuracy(Fte, yte) > 0.8
    assert best.accuracy(Fte, -yte) == pytest.approx(1 - best.accuracy(Fte, yte))


def test_downstream_probe_never_sees_test_data(monkeypatch):
    """Corrupting the test split changes the reported test accuracy and nothing else: the
    probe's fit and its λ choice use only training and validation samples."""
    import mtlab.runs.subspace as fam_mod

    cfg = _cfg(down_halfspace=(10, 40), down_xor=(40,), T=6)
    W = relu.init_first_layer(16, 20, generator(3), F64).float()
    M = projection(20, 3, 0)
    clean = FAMILY.downstream(cfg, W, M)
    real = fam_mod.sample_downstream

    def corrupt(task, M, n, seed, split, index=0):
        x, y = real(task, M, n, seed, split, index)
        return (x, -y) if split == "test" else (x, y)

    monkeypatch.setattr(fam_mod, "sample_downstream", corrupt)
    dirty = FAMILY.downstream(cfg, W, M)
    assert len(clean) == len(dirty) == 2 * 3
    for a, b in zip(clean, dirty, strict=True):
        assert (a["lam"], a["val_acc"], a["train_acc"]) == (b["lam"], b["val_acc"], b["train_acc"])
        assert b["test_acc"] == pytest.approx(1 - a["test_acc"])


def test_probe_errors():
    F, y = _probe_data(50)
    with pytest.raises(ValueError, match="unknown probe"):
        fit_probe(F, y, F, y, "svm")
    with pytest.raises(ValueError, match="shapes do not match"):
        fit_probe(F, y[:10], F, y)
    with pytest.raises(ValueError, match="positive"):
        fit_probe(F, y, F, y, lambdas=[0.0])


# ---- runs layer -------------------------------------------------------------------------------
def _cfg(**kw):
    return make_config(
        {
            "family": "subspace",
            "d": 20,
            "r": 3,
            "m": 16,
            "T": 4,
            "n1": 40,
            "n2": 40,
            "n_val": 50,
            "n_test": 100,
            "down_tasks": 2,
            **kw,
        }
    )


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="features: method 'alternating'"):
        _cfg(method="alternating", features="random_features")
    with pytest.raises(ConfigError, match="r: must be <= d"):
        _cfg(r=30)
    with pytest.raises(ConfigError, match="down_xor"):
        _cfg(r=1, down_xor=(10,))
    with pytest.raises(ConfigError, match="features"):
        _cfg(features="contrastive")


def test_config_defaults_and_dedupe():
    one = _cfg()
    assert (one.loss, one.eta_a, one.eta_w, one.weight_decay) == ("hinge", 0.01, 1.0, 1.0)
    alt = _cfg(method="alternating")
    assert (alt.loss, alt.eta_a, alt.weight_decay) == ("logistic", 2.0, 0.01)
    # random features do not depend on the pretraining settings: one run for every T
    assert (
        _cfg(features="random_features", T=4).run_id()
        == _cfg(features="random_features", T=50, n1=7).run_id()
    )
    row = _cfg(features="raw_input").row_fields()
    assert row["m"] is None and row["T"] is None and row["method"] is None


def test_run_rows_per_evaluation_and_resume(tmp_path):
    cfgs = [
        _cfg(features=f, down_halfspace=(10, 30), down_xor=(30,))
        for f in ("mtl", "single_task", "random_features", "raw_input")
    ]
    cfgs.append(_cfg(method="alternating", rounds=6, log_every=3, samples_per_round=20))
    store = RunStore(tmp_path)
    stats = execute(cfgs, store, progress=False)
    assert stats["trained"] == 5
    df = store.results()
    # 4 one-step runs: 1 recovery + 2 tasks x (2 halfspace + 1 xor) probes; alternating: 3 rounds
    assert len(df) == 4 * (1 + 2 * 3) + 3
    mtl = df[(df.features == "mtl") & (df.method == "one_step")]
    assert set(mtl.evaluation) == {"recovery", "downstream"}
    assert mtl[mtl.evaluation == "downstream"].test_acc.between(0, 1).all()
    assert df[df.features == "raw_input"].energy.isna().all()
    alt = df[df.method == "alternating"]
    assert sorted(alt["round"]) == [0, 3, 6]
    assert store.load_params(cfgs[0].run_id())["W"].shape == (16, 20)
    # same data for every feature type of a seed: identical downstream labels ⇒ raw input and
    # random features see the same tasks; a rerun trains nothing
    assert execute(cfgs, store, progress=False)["trained"] == 0
    # random features = the very initialisation the trained layers start from
    W_rf = store.load_params(cfgs[2].run_id())["W"]
    W0 = relu.init_first_layer(16, 20, generator(0, "W0", 20, 16))
    assert torch.equal(W_rf, W0)


def test_family_runs_on_float64_and_reports_theory_cosine():
    row, params, evals = FAMILY.run_one(_cfg(dtype="float64", T=8, n1=400, n2=400))
    assert params["W"].dtype == F64
    assert 0 < evals[0]["theory_cos"] <= 1
    assert evals[0]["evaluation"] == "recovery" and row["n_tasks_trained"] == 8


def test_tiny_study_end_to_end(tmp_path, required_subspace_columns):
    from mtlab.cli import main

    out = tmp_path / "sub"
    assert main(["reproduce", "subspace", "--preset", "tiny", "--out", str(out), "--quiet"]) == 0
    import pandas as pd

    df = pd.read_parquet(out / "results.parquet")
    missing = [c for c in required_subspace_columns if c not in df.columns]
    assert not missing
    assert set(df.part) == {"recovery", "downstream", "heads", "alternating"}
    assert set(df.features) == {
        "mtl",
        "single_task",
        "random_features",
        "raw_input",
        "shared_head",
        "random_heads",
    }
    assert set(df.downstream_task.dropna()) == {"halfspace", "xor"}
    claims = json.loads((out / "claims.json").read_text())
    claims = claims["claims"] if isinstance(claims, dict) else claims
    ids = {c["id"] for c in claims}
    assert {
        "recovery.needs_r_tasks",
        "downstream.d_independent",
        "heads.shared_head_fails",
        "alternating.recovers_with_enough_tasks",
        "theory.pseudo_contrastive_identity",
    } <= ids
    for fig in (
        "recovery_vs_T.png",
        "downstream_vs_n.png",
        "downstream_vs_d.png",
        "heads_ablation.png",
        "alternating_sgd.png",
    ):
        assert (out / "figures" / fig).stat().st_size > 1000
    assert "Collins" in (out / "report.html").read_text()


def test_subspace_sweep_file_through_the_cli(tmp_path):
    from mtlab.cli import main

    sweep = tmp_path / "s.yaml"
    sweep.write_text(
        "study: noise\nseeds: 1\n"
        "base: {family: subspace, d: 16, r: 2, m: 12, n1: 30, n2: 30, down_halfspace: [10],"
        " down_tasks: 1, n_val: 40, n_test: 60}\n"
        "grids:\n  - {features: [mtl], T: [2, 6], label_noise: [0.0, 0.3]}\n"
        "  - {features: [raw_input]}\n"
    )
    out = tmp_path / "out"
    assert main(["run", str(sweep), "--out", str(out), "--quiet"]) == 0
    report = (out / "report.md").read_text()
    assert "Subspace recovery" in report and "Downstream accuracy" in report
    assert "runs stored**: 5" in report
    bad = tmp_path / "bad.yaml"
    bad.write_text("study: x\nbase: {family: subspace, features: mtl}\ngrid: {d: [4], r: [9]}\n")
    assert main(["run", str(bad), "--out", str(tmp_path / "never"), "--quiet"]) == 2
    assert not (tmp_path / "never").exists()
