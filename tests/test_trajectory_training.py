"""The trajectory lab's training: checkpoint schedule, paired STL/MTL runs, measuring never
changes training, the family end to end and its bad input."""

from __future__ import annotations

import pytest
import torch

from mtlab.runs.config import ConfigError, TrajectoryRunConfig, make_config
from mtlab.runs.trajectory import build_network, record_trajectory, setting_tasks
from mtlab.train.minibatch import checkpoint_schedule


def test_checkpoint_schedule_is_dense_early() -> None:
    cps = checkpoint_schedule(5000, n_early=20, early_frac=0.3, n_late=10)
    assert cps[0] == 0 and cps[-1] == 5000 and list(cps) == sorted(set(cps))
    assert sum(1 for c in cps if 0 < c <= 1500) >= 20
    assert sum(1 for c in cps if c > 1500) == 10
    assert checkpoint_schedule(10, n_early=20) == tuple(range(11))
    with pytest.raises(ValueError):
        checkpoint_schedule(0)


def _cfg(**kw) -> TrajectoryRunConfig:
    base = dict(steps=60, n_early=6, n_late=3, probe_size=32, widths=(2,))
    return TrajectoryRunConfig(**{**base, **kw})


@pytest.mark.parametrize("method", ["sum", "pcgrad"])
def test_measuring_does_not_change_training(method: str) -> None:
    cfg = _cfg(method=method, optimizer="adam", lr=0.01)
    _row, rows, measured = record_trajectory(cfg)
    _, none, plain = record_trajectory(cfg, measure=False)
    assert rows and not none
    for (k, a), (_, b) in zip(
        measured.state_dict().items(), plain.state_dict().items(), strict=False
    ):
        assert torch.equal(a, b), k


def test_stl_and_mtl_runs_of_a_task_start_from_the_same_parameters_and_batches() -> None:
    stl, mtl = _cfg(method="stl", task="t2"), _cfg(method="sum")
    tasks = setting_tasks(mtl)
    a = build_network(stl, [t for t in tasks if t.name == "t2"])
    b = build_network(mtl, tasks)
    for p, q in zip(a.trunk.parameters(), b.trunk.parameters(), strict=False):
        assert torch.equal(p, q)
    assert torch.equal(a.heads[0].weight, b.heads[1].weight)
    # same probe and the same step-0 numbers for t2 in both runs
    _, rs, _ = record_trajectory(stl)
    _, rm, _ = record_trajectory(mtl)
    s0 = next(r for r in rs if r["step"] == 0)
    m0 = next(r for r in rm if r["step"] == 0 and r["task"] == "t2")
    assert s0["train_loss"] == m0["train_loss"] and s0["val_loss"] == m0["val_loss"]


def test_rows_carry_every_measure_and_mtl_conflict() -> None:
    row, rows, _ = record_trajectory(_cfg(method="sum"))
    assert row["status"] == "ok" and row["regime"] == "mtl"
    need = {
        "task",
        "step",
        "epoch_frac",
        "train_loss",
        "val_loss",
        "val_metric",
        "sharpness",
        "fisher_trace",
        "coherence",
        "noise_scale",
        "grad_norm",
        "weight_norm",
        "dist_init",
        "cos_to_rest",
        "mean_cosine",
    }
    assert need <= set(rows[0])
    assert {r["task"] for r in rows} == {"t1", "t2"}
    # two tasks: cos to the rest is the pairwise cosine
    r0 = rows[0]
    assert r0["cos_to_rest"] == pytest.approx(r0["mean_cosine"])
    _, srows, _ = record_trajectory(_cfg(method="stl", task="t1"))
    assert "cos_to_rest" not in srows[0]


def test_a_diverging_run_is_failed_with_its_reason() -> None:
    row, _rows, _ = record_trajectory(_cfg(method="sum", lr=50.0, steps=200, factors=()))
    assert row["status"] == "failed" and "non-finite" in row["reason"]


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"method": "nope"}, "unknown method"),
        ({"method": "stl"}, "needs the task"),
        ({"method": "stl", "task": "t9"}, "not one of"),
        ({"setting": "dataset", "dataset": "digits9"}, "unknown dataset"),
        ({"setting": "dataset", "dataset": "digit-attributes", "tasks": ["odd", "x"]}, "not tasks"),
        ({"setting": "file"}, "data_path"),
        ({"factors": ["sharpness", "vibes"]}, "unknown"),
        ({"method": "itmtl"}, "lookahead"),
    ],
)
def test_bad_configs_name_the_field(fields: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        make_config({"family": "trajectory", **fields})


def test_factors_on_all_parameters_include_the_task_head() -> None:
    from mtlab.measure.trajectory import CheckpointMeter, FactorOptions

    cfg = _cfg(method="sum")
    tasks = setting_tasks(cfg)
    model = build_network(cfg, tasks)
    shared = CheckpointMeter(model, tasks, FactorOptions(probe_size=32, params="shared"))
    every = CheckpointMeter(model, tasks, FactorOptions(probe_size=32, params="all"))
    assert every.names(1) == [*shared.names(1), "heads.1.weight", "heads.1.bias"]
    a, b = shared._factors(model, 1, 0), every._factors(model, 1, 0)
    # the shared block is a principal submatrix of the Hessian: its top eigenvalue is no larger
    assert a["sharpness"] <= b["sharpness"] * (1 + 1e-3)
    assert b["grad_norm"] >= a["grad_norm"] and b["fisher_trace"] > 0
