import math

import pytest
import torch

from mtlab.models import DiagonalNet
from mtlab.train import EnsembleOptimizer, Hook, LoopConfig, TrainData, train_ensemble

ALL = ["w_pos", "w_neg", "v_pos", "v_neg"]


def _problem(e, d=40, n=12, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(e, n, d, generator=g, dtype=dtype)
    beta = torch.zeros(e, d, dtype=dtype)
    beta[:, :3] = torch.randn(e, 3, generator=g, dtype=dtype)
    y = torch.einsum("end,ed->en", x, beta) / d**0.5
    return TrainData([x / d**0.5], [y], (0,), torch.ones(1, dtype=dtype))


def _lrs(e):
    return torch.linspace(0.05, 0.2, e, dtype=torch.float64)


@pytest.mark.parametrize(
    "opt,batch", [("sgd", None), ("momentum", None), ("adam", None), ("sgd", 4)]
)
def test_batched_run_equals_runs_alone(opt, batch):
    e = 5
    net = DiagonalNet(40, 1)
    data = _problem(e)
    alphas = torch.tensor([1e-2, 1e-1, 3e-2, 0.5, 1e-2], dtype=torch.float64)
    cfg = LoopConfig(
        max_steps=3000,
        threshold=1e-9,
        optimizer=opt,
        batch_size=batch,
        log_every=500,
        sync_every=50,
        momentum=0.5,
    )
    lr = _lrs(e) if opt != "adam" else torch.full((e,), 1e-2, dtype=torch.float64)
    together = train_ensemble(net, net.init(alphas), data, ALL, lr, cfg, batch_seeds=range(e))
    assert len({o.steps for o in together}) > 1  # runs finish at different times (compaction)
    for i in range(e):
        alone = train_ensemble(
            net,
            net.init(alphas[i : i + 1]),
            data.index(torch.tensor([i])),
            ALL,
            lr[i : i + 1],
            cfg,
            batch_seeds=[i],
        )[0]
        assert alone.status == together[i].status
        assert alone.steps == together[i].steps
        for k in ALL:
            assert torch.allclose(alone.params[k], together[i].params[k], rtol=1e-9, atol=1e-12)


def _fit(data, alpha, lrs, cfg, **kw):
    """Train ``len(lrs)`` runs of a 40-d diagonal net, all started at ``alpha``."""
    net = DiagonalNet(40, 1)
    lrs = torch.tensor(lrs, dtype=torch.float64)
    return train_ensemble(
        net, net.init(torch.full(lrs.shape, alpha, dtype=torch.float64)), data, ALL, lrs, cfg, **kw
    )


def test_threshold_stops_and_budget_reports_max_steps():
    data = _problem(2)
    out = _fit(
        data,
        0.1,
        [1.0, 1e-4],
        LoopConfig(max_steps=20_000, threshold=1e-8),
    )
    assert out[0].status == "converged" and out[0].train_loss < 1e-8 and out[0].steps < 20_000
    assert out[1].status == "max_steps" and out[1].steps == 20_000 and out[1].train_loss > 1e-8


def test_divergence_restarts_with_lr_over_ten():
    data = _problem(1)
    out = _fit(
        data,
        0.5,
        [200.0],
        LoopConfig(max_steps=5000, threshold=1e-8, max_restarts=5, sync_every=10),
    )[0]
    assert out.restarts >= 1
    assert out.lr == pytest.approx(200.0 / 10**out.restarts)
    assert out.status == "converged"
    assert any("restart" in p for p in out.curve)


def test_divergence_fails_after_max_restarts_and_others_continue():
    data = _problem(2)
    out = _fit(
        data,
        0.5,
        [1e6, 0.1],
        LoopConfig(max_steps=3000, threshold=1e-8, max_restarts=1, sync_every=10),
    )
    assert out[0].status == "failed" and "diverged" in out[0].reason and out[0].restarts == 2
    assert out[1].status == "converged"
    assert math.isnan(out[0].train_loss) or out[0].train_loss >= 0


def test_readout_only_training_keeps_first_layer():
    net = DiagonalNet(40, 1)
    data = _problem(1)
    p0 = net.init(torch.full((1,), 0.3, dtype=torch.float64))
    out = train_ensemble(
        net,
        p0,
        data,
        ["v_pos", "v_neg"],
        torch.tensor([0.1], dtype=torch.float64),
        LoopConfig(max_steps=300),
    )[0]
    assert torch.equal(out.params["w_pos"], p0["w_pos"])
    assert not torch.equal(out.params["v_pos"], p0["v_pos"])


def test_hooks_and_curves_and_on_finish_stream():
    data = _problem(3)
    seen, calls = [], []

    def hook(params, run_ids):
        calls.append(run_ids.clone())
        return {"w_norm": params["w_pos"].norm(dim=-1)}

    out = _fit(
        data,
        0.1,
        [0.2, 0.1, 0.05],
        LoopConfig(max_steps=4000, threshold=1e-8, log_every=100, sync_every=20),
        hooks=[Hook(every=200, fn=hook)],
        on_finish=lambda d: seen.extend(d),
    )
    assert sorted(o.index for o in seen) == [0, 1, 2]
    assert calls and all(c.dtype == torch.long for c in calls)
    for o in out:
        steps = [p["step"] for p in o.curve if "train_loss" in p]
        assert steps[0] == 0 and steps == sorted(steps)
        assert any("w_norm" in p for p in o.curve)
        assert o.curve[-1]["step"] == o.steps


def test_input_errors():
    net = DiagonalNet(40, 1)
    data = _problem(1)
    p = net.init(torch.full((1,), 0.1, dtype=torch.float64))
    with pytest.raises(ValueError, match="not in the model"):
        train_ensemble(net, p, data, ["bogus"], torch.tensor([0.1]), LoopConfig())
    with pytest.raises(ValueError, match="ensemble size"):
        train_ensemble(net, p, data, ALL, torch.tensor([0.1, 0.2]), LoopConfig())
    with pytest.raises(ValueError, match="optimizer"):
        LoopConfig(optimizer="lbfgs")
    with pytest.raises(ValueError, match="max_steps"):
        LoopConfig(max_steps=0)
    with pytest.raises(ValueError, match="one x"):
        TrainData([torch.zeros(1, 2, 3)], [], (0,), torch.ones(1))


@pytest.mark.parametrize("kind", ["sgd", "momentum", "adam"])
def test_optimizers_match_torch_optim(kind):
    torch.manual_seed(0)
    p_ref = torch.randn(1, 6, dtype=torch.float64, requires_grad=True)
    p_ens = {"p": p_ref.detach().clone()}
    ref = {
        "sgd": lambda: torch.optim.SGD([p_ref], lr=0.05),
        "momentum": lambda: torch.optim.SGD([p_ref], lr=0.05, momentum=0.9),
        "adam": lambda: torch.optim.Adam([p_ref], lr=0.05),
    }[kind]()
    ens = EnsembleOptimizer(kind, p_ens, ["p"], momentum=0.9)
    target = torch.randn(1, 6, dtype=torch.float64)
    for _ in range(25):
        ref.zero_grad()
        ((p_ref - target) ** 4).sum().backward()
        g = 4 * (p_ens["p"] - target) ** 3
        ref.step()
        ens.step(p_ens, {"p": g}, torch.tensor([0.05], dtype=torch.float64), torch.tensor([True]))
    assert torch.allclose(p_ens["p"], p_ref.detach(), rtol=1e-10)


def test_optimizer_mask_freezes_runs_and_reset_clears_state():
    p = {"p": torch.ones(2, 3, dtype=torch.float64)}
    opt = EnsembleOptimizer("momentum", p, ["p"])
    opt.step(
        p,
        {"p": torch.ones(2, 3, dtype=torch.float64)},
        torch.tensor([0.1, 0.1]),
        torch.tensor([True, False]),
    )
    assert torch.all(p["p"][1] == 1) and torch.all(p["p"][0] < 1)
    opt.reset(torch.tensor([True, False]))
    assert torch.all(opt.state["p.buf"][0] == 0) and torch.all(opt.state["p.buf"][1] != 0)


def test_zero_padded_runs_with_different_sample_counts_equal_runs_alone():
    """Runs with n = 7 and n = 12 rows share one ensemble through padding + counts."""
    net = DiagonalNet(40, 1)
    full = _problem(2)
    x, y = full.x[0].clone(), full.y[0].clone()
    x[0, 7:] = 0
    y[0, 7:] = 0
    padded = TrainData(
        [x], [y], (0,), full.weights, [torch.tensor([7.0, 12.0], dtype=torch.float64)]
    )
    cfg = LoopConfig(max_steps=3000, threshold=1e-9, sync_every=50)
    alphas = torch.tensor([0.1, 0.05], dtype=torch.float64)
    together = train_ensemble(net, net.init(alphas), padded, ALL, _lrs(2), cfg)
    short = TrainData([full.x[0][:1, :7]], [full.y[0][:1, :7]], (0,), full.weights)
    alone = [
        train_ensemble(net, net.init(alphas[:1]), short, ALL, _lrs(2)[:1], cfg)[0],
        train_ensemble(
            net, net.init(alphas[1:]), full.index(torch.tensor([1])), ALL, _lrs(2)[1:], cfg
        )[0],
    ]
    for a, b in zip(alone, together, strict=True):
        assert a.steps == b.steps and a.status == b.status
        assert torch.allclose(a.params["w_pos"], b.params["w_pos"], rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="full-batch"):
        train_ensemble(net, net.init(alphas), padded, ALL, _lrs(2), LoopConfig(batch_size=4))


def test_conflict_hook_gives_each_run_its_own_gramian():
    from mtlab.models import index_params
    from mtlab.train.hooks import conflict_hook, ensemble_gramians

    e, d, n = 3, 20, 10
    g = torch.Generator().manual_seed(3)
    x = torch.randn(e, n, d, generator=g, dtype=torch.float64)
    y1 = torch.randn(e, n, generator=g, dtype=torch.float64)
    y2 = -y1 + 0.3 * torch.randn(e, n, generator=g, dtype=torch.float64)  # competing targets
    data = TrainData([x, x], [y1, y2], (0, 1), torch.ones(2, dtype=torch.float64))
    net = DiagonalNet(d, n_tasks=2)
    params = net.init(torch.tensor([0.5, 0.3, 0.7], dtype=torch.float64))
    G = ensemble_gramians(net, params, data, net.shared_names)
    assert G.shape == (3, 2, 2)
    for r in range(e):
        alone = ensemble_gramians(
            net,
            index_params(params, torch.tensor([r])),
            data.index(torch.tensor([r])),
            net.shared_names,
        )
        torch.testing.assert_close(G[r], alone[0])
    out = train_ensemble(
        net,
        params,
        data,
        ALL,
        _lrs(e),
        LoopConfig(max_steps=300, log_every=100),
        hooks=[conflict_hook(net, data, every=100)],
    )
    points = [p for p in out[0].curve if "mean_cosine" in p]
    assert len(points) >= 3 and all(-1 <= p["mean_cosine"] <= 1 for p in points)
    assert points[0]["conflict_frequency"] in (0.0, 1.0)


def test_aggregated_step_rule_runs_each_run_on_its_own_jacobian():
    from torchjd.aggregation import UPGrad

    from mtlab.grad.step import AggregatedStep
    from mtlab.models import index_params
    from mtlab.train.ensemble import _mse_losses

    e, d, n = 3, 15, 8
    g = torch.Generator().manual_seed(5)
    x = torch.randn(e, n, d, generator=g, dtype=torch.float64)
    y1 = torch.randn(e, n, generator=g, dtype=torch.float64)
    y2 = -y1 + 0.5 * torch.randn(e, n, generator=g, dtype=torch.float64)
    data = TrainData([x, x], [y1, y2], (0, 1), torch.ones(2, dtype=torch.float64))
    net = DiagonalNet(d, n_tasks=2)
    params = {
        k: v.requires_grad_(True)
        for k, v in net.init(torch.tensor([0.5, 0.3, 0.7], dtype=torch.float64)).items()
    }
    step = AggregatedStep("upgrad", net.shared_names)
    out = step(_mse_losses(net, data, data.x, data.y), params, ALL, data.weights)
    assert out.task_weights.shape == (2, 3)
    r = 1  # the same run alone, UPGrad on its own Jacobian
    p1 = {k: v.detach()[r : r + 1].clone().requires_grad_(True) for k, v in params.items()}
    d1 = data.index(torch.tensor([r]))
    L = _mse_losses(net, d1, d1.x, d1.y)(p1)[:, 0]
    J = torch.stack(
        [
            torch.cat(
                [
                    gg.reshape(-1)
                    for gg in torch.autograd.grad(
                        L[t], [p1["w_pos"], p1["w_neg"]], retain_graph=True
                    )
                ]
            )
            for t in range(2)
        ]
    )
    expected = UPGrad()(J)
    got = torch.cat([out.grads["w_pos"][r], out.grads["w_neg"][r]])
    torch.testing.assert_close(got, expected, rtol=1e-8, atol=1e-12)
    assert float((J @ got).min()) >= -1e-10  # UPGrad: no task's loss increases to first order
    res = train_ensemble(
        net,
        index_params({k: v.detach() for k, v in params.items()}, torch.arange(e)),
        data,
        ALL,
        _lrs(e),
        LoopConfig(max_steps=200, log_every=100),
        step_rule=step,
    )
    assert all(math.isfinite(o.train_loss) for o in res)
    with pytest.raises(ValueError, match="Jacobian aggregator"):
        AggregatedStep("uw", net.shared_names)


class _CountingRule:
    """A stateful step rule: each run's gradient is scaled by 1 / (1 + k/3000), k = the number of
    steps that run has taken since it started (state keyed by run id, reset on restart)."""

    def __init__(self):
        from mtlab.grad import WeightedSum

        self.inner = WeightedSum(use_closed_form=False)
        self.count: dict[int, int] = {}

    def reset(self, run_ids):
        for r in run_ids:
            self.count.pop(r, None)

    def __call__(self, loss_fn, params, trainable, weights, run_ids=None):
        out = self.inner(loss_fn, params, trainable, weights)
        ids = run_ids.tolist()
        scale = torch.tensor([1.0 / (1 + self.count.get(r, 0) / 3000) for r in ids])
        for r in ids:
            self.count[r] = self.count.get(r, 0) + 1
        grads = {k: g * scale.view(-1, *[1] * (g.ndim - 1)).to(g) for k, g in out.grads.items()}
        return type(out)(out.task_losses, grads, out.task_weights)


def test_stateful_step_rule_keeps_each_runs_state_through_compaction():
    e = 5
    net = DiagonalNet(40, 1)
    data = _problem(e)
    alphas = torch.tensor([1e-2, 1e-1, 3e-2, 0.5, 1e-2], dtype=torch.float64)
    cfg = LoopConfig(max_steps=3000, threshold=1e-9, log_every=500, sync_every=50)
    lr = _lrs(e)
    together = train_ensemble(net, net.init(alphas), data, ALL, lr, cfg, step_rule=_CountingRule())
    assert len({o.steps for o in together}) > 1  # compaction happened
    for i in range(e):
        alone = train_ensemble(
            net, net.init(alphas[i : i + 1]), data.index(torch.tensor([i])), ALL,
            lr[i : i + 1], cfg, step_rule=_CountingRule(),
        )[0]  # fmt: skip
        assert alone.steps == together[i].steps
        for k in ALL:
            torch.testing.assert_close(alone.params[k], together[i].params[k])


def test_stateful_step_rule_is_reset_when_a_run_restarts():
    net = DiagonalNet(40, 1)
    data = _problem(2)
    alphas = torch.tensor([0.1, 0.1], dtype=torch.float64)
    cfg = LoopConfig(max_steps=400, log_every=100, sync_every=20, divergence_loss=10.0)
    lr = torch.tensor([0.1, 300.0], dtype=torch.float64)  # run 1 diverges, restarts at lr 30
    runs = train_ensemble(net, net.init(alphas), data, ALL, lr, cfg, step_rule=_CountingRule())
    assert runs[1].restarts >= 1 and runs[1].status != "failed"
    fresh = train_ensemble(
        net, net.init(alphas[1:]), data.index(torch.tensor([1])), ALL,
        torch.tensor([runs[1].lr], dtype=torch.float64), cfg, step_rule=_CountingRule(),
    )[0]  # fmt: skip
    for k in ALL:
        torch.testing.assert_close(fresh.params[k], runs[1].params[k])


def test_aggregated_step_state_follows_the_run_not_the_slot():
    from mtlab.grad.step import AggregatedStep

    e, d = 4, 20
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 16, d, generator=g, dtype=torch.float64) / d**0.5
    beta = torch.zeros(e, d, dtype=torch.float64)
    beta[:, :3] = torch.randn(e, 3, generator=g, dtype=torch.float64)
    ys = [torch.einsum("nd,ed->en", x[0], beta) * (1 + t) for t in range(2)]
    data = TrainData([x, x], ys, (0, 1), torch.ones(2, dtype=torch.float64))
    net = DiagonalNet(d, 2)
    alphas = torch.tensor([0.3, 0.1, 0.2, 0.05], dtype=torch.float64)
    cfg = LoopConfig(max_steps=3000, threshold=1e-4, log_every=500, sync_every=25)
    lr = torch.tensor([2.0, 1.0, 0.5, 0.3], dtype=torch.float64)

    def rule():
        return AggregatedStep("gradvac", ("w_pos", "w_neg"))

    together = train_ensemble(net, net.init(alphas), data, ALL, lr, cfg, step_rule=rule())
    assert len({o.steps for o in together}) > 1
    for i in range(e):
        alone = train_ensemble(
            net, net.init(alphas[i : i + 1]), data.index(torch.tensor([i])), ALL,
            lr[i : i + 1], cfg, step_rule=rule(),
        )[0]  # fmt: skip
        assert alone.steps == together[i].steps
        for k in ALL:
            torch.testing.assert_close(alone.params[k], together[i].params[k])


def test_runs_on_shared_draws_keep_one_copy_and_equal_runs_alone():
    """Six runs on two data draws (three each, interleaved): the inputs kept once per draw
    (``TrainData.src``) give the numbers of the runs alone — through compaction (runs finish at
    different times, a draw no run uses any more is dropped) — and the layout puts each draw's
    runs side by side."""
    from mtlab.train.ensemble import grouped_layout

    net = DiagonalNet(40, 1)
    two = _problem(2)
    src = torch.tensor([0, 1, 0, 1, 1, 0])
    grouped = TrainData([two.x[0]], [two.y[0][src]], (0,), two.weights, None, [src])
    per_run = TrainData([two.x[0][src]], [two.y[0][src]], (0,), two.weights)
    pos, k = grouped_layout(src, 2)
    assert k == 3 and sorted(pos.tolist()) == list(range(6))
    assert (pos // k == src).all()
    cfg = LoopConfig(max_steps=3000, threshold=1e-9, sync_every=50, log_every=500)
    alphas = torch.tensor([1e-2, 1e-1, 3e-2, 0.5, 1e-2, 0.2], dtype=torch.float64)
    lrs = torch.linspace(0.05, 0.2, 6, dtype=torch.float64)
    together = train_ensemble(net, net.init(alphas), grouped, ALL, lrs, cfg)
    reference = train_ensemble(net, net.init(alphas), per_run, ALL, lrs, cfg)
    assert len({o.steps for o in together}) > 1  # compaction happened
    for a, b in zip(reference, together, strict=True):
        assert a.steps == b.steps and a.status == b.status
        for name in ALL:
            assert torch.allclose(a.params[name], b.params[name], rtol=1e-9, atol=1e-12)
    kept = grouped.index(torch.tensor([1, 3]))  # both on draw 1: one shared copy
    assert kept.x[0].shape[0] == 1 and kept.src == [None]
    mixed = grouped.index(torch.tensor([4, 2]))
    assert mixed.x[0].shape[0] == 2 and torch.equal(mixed.per_run_x(0), two.x[0][[1, 0]])
    with pytest.raises(ValueError, match="full-batch"):
        train_ensemble(net, net.init(alphas), grouped, ALL, lrs, LoopConfig(batch_size=4))


def test_diagonal_closed_form_on_grouped_draws_equals_autograd():
    from mtlab.train.ensemble import _mse_losses

    net = DiagonalNet(40, 2)
    two = _problem(3)
    src = torch.tensor([2, 0, 2, 1, 0])
    data = TrainData([two.x[0], two.x[0]], [two.y[0][src], 2 * two.y[0][src]], (0, 1),
                     torch.tensor([0.3, 0.7], dtype=torch.float64), None, [src, src])  # fmt: skip
    params = {k: v.requires_grad_(True) for k, v in
              net.init(torch.full((5,), 0.3, dtype=torch.float64)).items()}  # fmt: skip
    fn = _mse_losses(net, data, data.x, data.y)
    w = data.weights[:, None].expand(-1, 5)
    losses, grads = fn.closed_form(params, w, tuple(ALL))
    auto = fn(params)
    total = (w * auto).sum()
    ref = torch.autograd.grad(total, [params[k] for k in ALL])
    assert torch.allclose(losses, auto.detach(), rtol=1e-12)
    for k, g in zip(ALL, ref, strict=True):
        assert torch.allclose(grads[k], g, rtol=1e-10, atol=1e-12)
