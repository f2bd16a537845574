"""Lookahead transference, IT-MTL and task grouping."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from torch import nn

from mtlab.cli import main
from mtlab.grad.lookahead import LookaheadProbe, mean_affinity, optimizer_update
from mtlab.grad.methods import ITMTL, make_method
from mtlab.grouping import (
    AffinityFileError,
    affinity_from_pairwise,
    best_grouping,
    brute_force_grouping,
    cosine_affinity,
    read_affinity,
    write_affinity,
)
from mtlab.models.multitask import MultiTaskNet, init_seeded
from mtlab.tasks.datasets import planted_groups
from mtlab.train.multitask import MTTrainConfig, train_multitask


class _BNNet(nn.Module):
    """Shared trunk with BatchNorm and dropout (state and randomness), two heads."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.2))
        self.heads = nn.ModuleList([nn.Linear(8, 1), nn.Linear(8, 1)])

    def forward(self, x):
        z = self.trunk(x)
        return z, [h(z)[:, 0] for h in self.heads]


def test_probe_has_no_side_effects():
    torch.manual_seed(0)
    net = _BNNet()
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    x, y = torch.randn(32, 6), torch.randn(32, 2)

    def lf(out):
        return torch.stack([((out[1][t] - y[:, t]) ** 2).mean() for t in range(2)])

    opt.zero_grad()
    lf(net(x)).sum().backward()
    opt.step()
    state = copy.deepcopy(net.state_dict())  # parameters and BatchNorm running statistics
    opt_state = copy.deepcopy(opt.state_dict())
    rng = torch.get_rng_state()
    shared = [n for n, _ in net.named_parameters() if n.startswith("trunk.")]
    for batched in ("auto", False):  # with BatchNorm in training mode "auto" runs the loop
        LookaheadProbe(net, shared, opt, batched=batched)(x, lf)
    with pytest.raises(RuntimeError, match="buffers"):
        LookaheadProbe(net, shared, opt, batched=True)(x, lf)
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())
    assert torch.equal(torch.get_rng_state(), rng)
    after = opt.state_dict()
    for k, s in opt_state["state"].items():
        assert all(torch.equal(s[n], after["state"][k][n]) for n in s)


def test_training_with_and_without_probes_is_bitwise_identical():
    ds = planted_groups(0, n=(256, 64, 64))
    runs = []
    for probe_every in (0, 3):
        model = init_seeded(MultiTaskNet(ds.input_shape, ds.num_classes, "mlp", (16, 4)), 0)
        res = train_multitask(
            model,
            ds,
            make_method("mean", 9),
            MTTrainConfig(epochs=2, batch_size=32, probe_every=probe_every),
        )
        runs.append((model, res))
    (a, ra), (b, rb) = runs
    assert len(rb.probes) == 6 and not ra.probes
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert ra.metrics == rb.metrics


@pytest.mark.parametrize("kind", ["sgd", "nesterov", "adam", "adamw"])
def test_optimizer_update_equals_the_real_step(kind):
    torch.manual_seed(1)
    lin = nn.Linear(4, 3)
    make = {
        "sgd": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, dampening=0.1, weight_decay=0.01),
        "nesterov": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True),
        "adam": lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=0.01),
        "adamw": lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1),
    }[kind]
    opt = make(lin.parameters())
    x = torch.randn(8, 4)
    for _ in range(2):  # build optimiser state
        opt.zero_grad()
        lin(x).pow(2).sum().backward()
        opt.step()
    params = list(lin.parameters())
    grads = [torch.randn_like(p) for p in params]
    u = optimizer_update(opt, params, grads)
    before = [p.detach().clone() for p in params]
    for p, g in zip(params, grads, strict=True):
        p.grad = g.clone()
    opt.step()
    for p, b, uu in zip(params, before, u, strict=True):
        torch.testing.assert_close(b - uu, p.detach(), rtol=1e-5, atol=1e-7)


class _Linear(nn.Module):
    """Shared w (one unit: a bottleneck), identity heads."""

    def __init__(self, d: int, T: int) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(d))
        self.T = T

    def forward(self, x):
        z = x @ self.w
        return z, [z] * self.T


def test_affinity_signs_orientation_and_first_order():
    g = torch.Generator().manual_seed(0)
    d = 5
    beta = torch.tensor([1.0, 0.5, 0.0, 0.0, 0.0])
    other = torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0])
    x = torch.randn(400, d, generator=g)
    Y = torch.stack([x @ beta, x @ beta, -(x @ beta), x @ other], dim=1)
    net = _Linear(d, 4)
    with torch.no_grad():
        net.w.copy_(0.1 * torch.ones(d))

    def lf(out):
        return torch.stack([((out[1][t] - Y[:, t]) ** 2).mean() for t in range(4)])

    probe = LookaheadProbe(net, ["w"], None, rule="sgd", eta=0.05)
    look = probe(x, lf)
    Z = look.affinity
    assert float(Z[1, 0]) > 0  # a shared teacher helps
    assert float(Z[2, 0]) < 0  # a competing teacher through the one shared unit hurts
    # orientation: Z[i, j] = 1 − L_i(w − η g_j) / L_i(w), recipient i, source j
    L = lf(net(x)).detach()
    gj = torch.autograd.grad(lf(net(x))[3], net.w)[0]
    with torch.no_grad():
        w0 = net.w.clone()
        net.w -= 0.05 * gj
        after = lf(net(x))
        net.w.copy_(w0)
    torch.testing.assert_close(Z[:, 3], 1 - after / L, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(Z[0, 3], Z[3, 0])  # asymmetric
    # first-order agreement improves as η → 0
    errs = []
    for eta in (0.1, 0.01, 0.001):
        lk = LookaheadProbe(net, ["w"], None, rule="sgd", eta=eta)(x, lf)
        errs.append(float((lk.affinity - lk.first_order).abs().sum() / lk.affinity.abs().sum()))
    assert errs[0] > errs[1] > errs[2] and errs[2] < 1e-2
    assert mean_affinity([look, look]).shape == (4, 4)
    # sources may be sets of tasks
    sets = LookaheadProbe(net, ["w"], None, rule="sgd", eta=0.05, sources=[(0, 1), (3,)])(x, lf)
    assert sets.affinity.shape == (4, 2)


def test_itmtl_applies_the_candidate_with_the_best_lookahead():
    method = ITMTL(2, candidates=("sum", "tasks"), objective="absolute")
    w = nn.Parameter(torch.tensor([1.0, -1.0]))
    losses = torch.stack([(w[0] - 2) ** 2, (w[1] + 3) ** 2])

    def lookahead(vecs):  # pretend task 1 alone wins
        return torch.tensor([[5.0, 5.0], [4.0, 4.0], [1.0, 1.0]])

    method.lookahead = lookahead
    from mtlab.grad.jacobian import JacobianEngine

    rec = method.backward(losses, [w], [], None, JacobianEngine("loop"))
    assert method.choices == {"task1": 1}
    torch.testing.assert_close(rec.weights, torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(w.grad, torch.tensor([0.0, 2 * (-1.0 + 3)]))
    with pytest.raises(ValueError, match="objective"):
        ITMTL(2, objective="max")
    with pytest.raises(ValueError, match="candidates"):
        ITMTL(2, candidates=("adam",))


# ---- grouping ---------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(12))
def test_grouping_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    T = int(rng.integers(3, 6))
    budget = int(rng.integers(1, 4))
    A = rng.normal(size=(T, T))
    single = rng.normal(size=T) if seed % 2 else None
    try:
        ref = brute_force_grouping(A, budget, single)
    except ValueError:
        with pytest.raises(ValueError):
            best_grouping(A, budget, single)
        return
    got = best_grouping(A, budget, single)
    assert got.value == pytest.approx(ref.value, abs=1e-12)
    assert len(got.groups) <= budget and set().union(*got.groups) == set(range(T))


def test_planted_blocks_are_recovered_and_orientation_matters():
    rng = np.random.default_rng(3)
    blocks = [(0, 1, 2), (3, 4), (5, 6, 7)]
    A = -np.ones((8, 8)) + 0.1 * rng.normal(size=(8, 8))
    for b in blocks:
        for i in b:
            for j in b:
                A[i, j] = 1 + 0.1 * rng.normal()
    g = best_grouping(A, 3, names=[f"t{i}" for i in range(8)])
    assert sorted(g.groups) == sorted(blocks)
    assert g.names is not None and ["t3", "t4"] in g.names
    # task 0 gains from 1 but 1 is hurt by 0: A[recipient, source]
    B = np.array([[0.0, 1.0, -1.0], [-2.0, 0.0, 0.5], [0.2, 0.3, 0.0]])
    one = best_grouping(B, 1)
    assert one.value == pytest.approx(np.mean([0.0, -0.75, 0.25]))
    from mtlab.grouping import group_scores

    _, S = group_scores(B, [(0, 1)])
    assert S[0, 0] == 1.0 and S[0, 1] == -2.0  # task 0 scores A[0, 1]; task 1 scores A[1, 0]


def test_pairwise_and_cosine_affinities():
    tasks = ["a", "b", "c"]
    stl = {"a": 0.8, "b": 0.5, "c": 0.9}
    pairs = {
        ("a", "b"): {"a": 0.88, "b": 0.45},
        ("a", "c"): {"a": 0.8, "c": 0.99},
        ("b", "c"): {"b": 0.55, "c": 0.9},
    }
    A, single = affinity_from_pairwise(tasks, stl, pairs)
    assert A[0, 1] == pytest.approx(0.1) and A[1, 0] == pytest.approx(-0.1)
    assert A[2, 0] == pytest.approx(0.1) and single == [0.0, 0.0, 0.0]
    g = best_grouping(A, 2, single)
    assert g.value >= 0  # singletons (STL) are always available
    with pytest.raises(ValueError, match="no pairwise result"):
        affinity_from_pairwise(["a", "b", "d"], stl, pairs)
    G = np.array([[4.0, -2.0], [-2.0, 4.0]])
    np.testing.assert_allclose(cosine_affinity([G, G]), [[1, -0.5], [-0.5, 1]])


def _aff(tmp_path, obj, name="a.json"):
    p = tmp_path / name
    p.write_text(json.dumps(obj) if not isinstance(obj, str) else obj)
    return p


@pytest.mark.parametrize(
    "obj,message",
    [
        ({"tasks": ["a", "b"], "affinity": [[0, 1, 2], [1, 0, 2]]}, "square"),
        ({"tasks": ["a", "b", "c"], "affinity": [[0, 1], [1, 0]]}, "3 task names"),
        ({"tasks": ["a", "b"], "affinity": [[0, float("nan")], [1, 0]]}, "NaN"),
        ({"tasks": ["a", "a"], "affinity": [[0, 1], [1, 0]]}, "unique"),
        (
            {"tasks": ["a", "b"], "affinity": [[0, 1], [1, 0]], "orientation": "source,recipient"},
            "orientation",
        ),
        ("{not json", "not valid JSON"),
    ],
)
def test_bad_affinity_files_exit_2(tmp_path, obj, message, capsys):
    path = _aff(tmp_path, obj)
    with pytest.raises(AffinityFileError, match=message):
        read_affinity(path)
    assert main(["group", str(path), "--budget", "2"]) == 2
    assert message.split()[0] in capsys.readouterr().err


def test_group_cli_table_and_json(tmp_path, capsys):
    path = write_affinity(
        tmp_path / "aff.json",
        ["a", "b", "c", "d"],
        [[0, 1, -1, -1], [1, 0, -1, -1], [-1, -1, 0, 1], [-1, -1, 1, 0]],
    )
    assert main(["group", str(path), "--budget", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["budget"] == 2 and sorted(out["groups"]) == [["a", "b"], ["c", "d"]]
    assert out["value"] == pytest.approx(1.0)
    assert main(["group", str(path), "--budget", "2"]) == 0
    table = capsys.readouterr().out
    assert "budget" in table and "a, b | c, d" in table


def test_affinity_cli_and_tiny_study(tmp_path, capsys):
    out = tmp_path / "aff"
    assert (
        main(
            [
                "affinity",
                "--dataset",
                "planted-groups",
                "--epochs",
                "2",
                "--probe-every",
                "10",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    tasks, A, meta = read_affinity(out / "affinity.json")
    assert len(tasks) == 9 and A.shape == (9, 9) and meta["probes"] >= 2
    figures = out / "figures"
    assert (figures / "affinity_heatmap.png").exists()
    assert (figures / "affinity_over_training.png").exists()
    assert main(["affinity", "--dataset", "imagenet", "--out", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()
    st = tmp_path / "tr"
    assert main(["reproduce", "transference", "--preset", "tiny", "--out", str(st), "--quiet"]) == 0
    claims = json.loads((st / "claims.json").read_text())["claims"]
    assert {
        "affinity.signs",
        "affinity.first_order_small_eta",
        "grouping.recovers_planted",
        "grouping.beats_all_together",
    } <= {c["id"] for c in claims}


def test_grouping_time_limit():
    A = np.random.default_rng(0).normal(size=(11, 11))
    with pytest.raises(TimeoutError, match="exceeded"):
        best_grouping(A, 4, time_limit=0.05)


def test_group_singletons_score_zero_not_the_diagonal(tmp_path, capsys):
    """A task alone scores 0 (no transfer), comparable with a member's mean affinity: the large
    diagonal (a task's lookahead onto itself) no longer makes every task a singleton."""
    import json

    from mtlab.cli import main
    from mtlab.grouping import write_affinity

    A = np.full((4, 4), 0.02)
    np.fill_diagonal(A, 0.2)  # 10× any cross entry, as measured lookahead diagonals are
    A[3, :3] = A[:3, 3] = -0.05  # task d and the others hurt each other
    path = write_affinity(tmp_path / "a.json", list("abcd"), A)
    assert main(["group", str(path), "--budget", "2", "--singletons", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert sorted(map(sorted, got["groups"])) == [["a", "b", "c"], ["d"]]


def test_anytime_grouping_returns_a_certified_bound():
    rng = np.random.default_rng(3)
    A = rng.normal(0, 0.1, size=(8, 8))
    exact = best_grouping(A, 3)  # 7 813 nodes
    assert exact.optimal and exact.bound is None
    quick = best_grouping(A, 3, time_limit=1e-6, anytime=True)  # stops at the first check
    assert not quick.optimal and quick.nodes == 32
    assert quick.value <= exact.value + 1e-12 <= quick.bound + 1e-12  # certified
    small = best_grouping(A[:5, :5], 2, time_limit=60, anytime=True)
    assert small.optimal and small.value == pytest.approx(brute_force_grouping(A[:5, :5], 2).value)
