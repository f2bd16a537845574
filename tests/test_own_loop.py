"""mtlab inside a user's own training loop (issue 16): the four entry points of ``mtlab.loop`` on
a plain ``nn.Module`` with a standard optimiser."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from mtlab import loop


class Net(nn.Module):
    def __init__(self, d: int = 6, h: int = 16, tasks: int = 3) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(d, h), nn.ReLU())
        self.heads = nn.ModuleList(nn.Linear(h, 1) for _ in range(tasks))

    def forward(self, x):
        z = self.trunk(x)
        return [head(z).squeeze(-1) for head in self.heads]


def _data(n: int = 64, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    w = torch.randn(6, generator=g)
    ys = [x @ w, x @ w + 0.1 * torch.randn(n, generator=g), torch.randn(n, generator=g)]
    return x, ys


SHARED = ["trunk.0.weight", "trunk.0.bias"]


def _losses_fn(ys):
    return lambda out: torch.stack([((o - y) ** 2).mean() for o, y in zip(out, ys, strict=True)])


def test_affinity_probe_in_an_own_loop_is_side_effect_free_and_saved(tmp_path):
    torch.manual_seed(0)
    model = Net()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    probe = loop.AffinityProbe(model, SHARED, opt, every=5, tasks=["a", "b", "noise"])
    x, ys = _data()
    for step in range(20):
        fn = _losses_fn(ys)
        before = [p.detach().clone() for p in model.parameters()]
        probe.maybe(step, x, fn)
        assert all(torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))
        opt.zero_grad()
        fn(model(x)).sum().backward()
        opt.step()
    assert probe.steps == [0, 5, 10, 15]
    mean, se = probe.affinity()
    assert mean.shape == se.shape == (3, 3) and bool((se >= 0).all())
    assert mean[0, 1] > mean[0, 2]  # the related task helps a; the noise task less
    data = json.loads(probe.save(tmp_path / "affinity.json").read_text())
    assert data["tasks"] == ["a", "b", "noise"] and data["meta"]["probes"] == 4
    with pytest.raises(ValueError, match="unknown shared parameter"):
        loop.AffinityProbe(model, ["trunk.9.weight"])


def test_a_method_forms_the_update_of_an_own_optimizer():
    x, ys = _data()
    fn = _losses_fn(ys)
    torch.manual_seed(1)
    a, b = Net(), Net()
    b.load_state_dict(a.state_dict())
    update = loop.MultiTaskBackward(a, SHARED, method="mean", n_tasks=3)
    record = update(fn(a(x)))
    fn(b(x)).mean().backward()
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.allclose(p.grad, q.grad, atol=1e-6)
    assert torch.allclose(record.weights, torch.full((3,), 1 / 3, dtype=record.weights.dtype))
    # a Jacobian method: the Gramian comes with every step, and the conflict diagnostics with it
    c = Net()
    c.load_state_dict(a.state_dict())
    rec = loop.MultiTaskBackward(c, SHARED, method="pcgrad", n_tasks=3)(fn(c(x)))
    diag = loop.conflict(rec.gramian)
    assert diag["cosines"].shape == (3, 3) and 0 <= diag["conflict_frequency"] <= 1
    G = loop.task_gramian(fn(a(x)), [p for n, p in a.named_parameters() if n in SHARED])
    assert torch.allclose(G, rec.gramian.to(G.dtype), rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="expected 3 per-task losses"):
        update(fn(a(x))[:2])
    with pytest.raises(ValueError, match="no Gramian"):
        loop.conflict(None)


def test_rescale_before_finetuning():
    net = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    net[1].running_mean.fill_(2.0)
    w = net[0].weight.detach().clone()
    loop.rescale_(net, 0.5)
    assert torch.allclose(net[0].weight, 0.5 * w)
    assert torch.equal(net[1].running_mean, torch.full((4,), 2.0))  # buffers stay
    loop.rescale_(net, 2.0, names=["0.weight"])
    assert torch.allclose(net[0].weight, w)
    with pytest.raises(ValueError, match="positive"):
        loop.rescale_(net, 0.0)


def test_first_order_only_probe_skips_the_lookahead_and_matches_the_estimate():
    from mtlab.grad.lookahead import LookaheadProbe

    torch.manual_seed(0)
    model = Net()
    x, ys = _data()
    full = LookaheadProbe(model, SHARED, None, rule="sgd", eta=0.1)(x, _losses_fn(ys))
    cheap = LookaheadProbe(model, SHARED, None, rule="sgd", eta=0.1, first_order_only=True)(
        x, _losses_fn(ys)
    )
    assert torch.allclose(cheap.affinity, full.first_order)
    assert torch.isnan(cheap.after).all() and torch.allclose(cheap.losses, full.losses)
