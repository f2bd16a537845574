import pytest
import torch

from mtlab.grad import WeightedSum
from mtlab.models import DiagonalNet, index_params, stack_params


def _params(e=3, d=7, t=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "w_pos": torch.rand(e, d, generator=g, dtype=torch.float64),
        "w_neg": torch.rand(e, d, generator=g, dtype=torch.float64),
        "v_pos": torch.rand(e, t, d, generator=g, dtype=torch.float64),
        "v_neg": torch.rand(e, t, d, generator=g, dtype=torch.float64),
    }


def test_forward_matches_explicit_coefficients():
    net = DiagonalNet(7, 2)
    p = _params()
    x = torch.randn(3, 5, 7, dtype=torch.float64)
    for t in range(2):
        beta = p["w_pos"] * p["v_pos"][:, t] - p["w_neg"] * p["v_neg"][:, t]
        expect = torch.einsum("end,ed->en", x, beta)
        assert torch.allclose(net.forward(p, x, t), expect)
        assert torch.allclose(net.forward(p, x[:1], t), torch.einsum("nd,ed->en", x[0], beta))
    assert net.coefficients(p).shape == (3, 2, 7)


def test_init_is_balanced_alpha():
    p = DiagonalNet(4, 2).init(torch.tensor([1e-3, 0.5]))
    assert torch.equal(p["w_pos"][1], torch.full((4,), 0.5, dtype=torch.float64))
    assert p["v_neg"].shape == (2, 2, 4)
    assert torch.allclose(
        DiagonalNet(4, 2).coefficients(p), torch.zeros(2, 2, 4, dtype=torch.float64)
    )


@pytest.mark.parametrize("trainable", [("w_pos", "w_neg", "v_pos", "v_neg"), ("v_pos", "v_neg")])
def test_closed_form_gradients_equal_autograd(trainable):
    net = DiagonalNet(7, 2)
    p = {k: v.requires_grad_(True) for k, v in _params().items()}
    xs = [torch.randn(3, 5, 7, dtype=torch.float64), torch.randn(1, 4, 7, dtype=torch.float64)]
    ys = [torch.randn(3, 5, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)]
    w = torch.tensor([0.7, 0.3], dtype=torch.float64)

    def loss_fn(params):
        return torch.stack(
            [
                ((net.forward(params, x, t) - y) ** 2).mean(-1)
                for t, (x, y) in enumerate(zip(xs, ys, strict=True))
            ]
        )

    ref = WeightedSum(use_closed_form=False)(loss_fn, p, trainable, w)
    loss_fn.closed_form = lambda params, ww, tr: net.mse_loss_and_grads(
        params, xs, ys, (0, 1), ww, tr
    )
    fast = WeightedSum()(loss_fn, p, trainable, w)
    assert torch.allclose(ref.task_losses, fast.task_losses)
    assert set(fast.grads) == set(trainable)
    for k in trainable:
        assert torch.allclose(ref.grads[k], fast.grads[k]), k


def test_reset_readout_and_scale_shared():
    net = DiagonalNet(5, 1)
    p = _params(e=2, d=5, t=1)
    r = net.reset_readout(p, torch.tensor([1e-3, 2e-3], dtype=torch.float64))
    assert torch.equal(r["w_pos"], p["w_pos"])
    assert torch.all(r["v_pos"][1] == 2e-3) and torch.all(r["v_neg"][0] == 1e-3)
    s = net.scale_shared(p, torch.tensor([0.1, 10.0], dtype=torch.float64))
    assert torch.allclose(s["w_neg"][1], 10 * p["w_neg"][1])
    assert torch.equal(s["v_pos"], p["v_pos"])


def test_index_and_stack_params():
    p = _params(e=4)
    sub = index_params(p, torch.tensor([2, 0]))
    assert torch.equal(sub["w_pos"][0], p["w_pos"][2])
    both = stack_params([sub, sub])
    assert both["v_pos"].shape[0] == 4


def test_bad_sizes():
    with pytest.raises(ValueError, match="d >= 1"):
        DiagonalNet(0)


def test_closed_form_with_padded_counts_equals_autograd():
    net = DiagonalNet(7, 1)
    p = {
        k: v[:, :1].requires_grad_(True) if k.startswith("v") else v.requires_grad_(True)
        for k, v in _params().items()
    }
    x = torch.randn(3, 6, 7, dtype=torch.float64)
    y = torch.randn(3, 6, dtype=torch.float64)
    counts = torch.tensor([6.0, 4.0, 2.0], dtype=torch.float64)
    for i, c in enumerate(counts.long().tolist()):
        x[i, c:] = 0
        y[i, c:] = 0
    w = torch.ones(1, dtype=torch.float64)

    def loss_fn(params):
        sq = (net.forward(params, x, 0) - y) ** 2
        return (sq.sum(-1) / counts)[None]

    ref = WeightedSum(use_closed_form=False)(loss_fn, p, list(p), w)
    loss_fn.closed_form = lambda params, ww, tr: net.mse_loss_and_grads(
        params, [x], [y], (0,), ww, tr, counts=[counts]
    )
    fast = WeightedSum()(loss_fn, p, list(p), w)
    assert torch.allclose(ref.task_losses, fast.task_losses)
    for k in p:
        assert torch.allclose(ref.grads[k], fast.grads[k]), k
