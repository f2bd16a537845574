"""Δm, the multi-task trainer's model selection, and `mtlab benchmark` end to end."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from mtlab.cli import main
from mtlab.grad.methods import make_method
from mtlab.measure.benchmark import delta_m
from mtlab.models.multitask import MultiTaskNet, init_seeded
from mtlab.tasks.datasets import multi_digits
from mtlab.train.multitask import MTTrainConfig, train_multitask


def _rows(method, seed, values, split="test"):
    return [
        {
            "method": method,
            "seed": seed,
            "task": t,
            "split": split,
            "metric": m,
            "value": v,
            "higher_is_better": m == "accuracy",
        }
        for (t, m), v in values.items()
    ]


def test_delta_m_on_a_constructed_table():
    stl = {("a", "accuracy"): 0.8, ("b", "accuracy"): 0.5}
    rows = _rows("stl", 0, stl) + _rows("stl", 1, stl)
    # seed 0: +10 % and +10 %; seed 1: +0 % and +20 % ⇒ seed-averaged (+5 %, +15 %) ⇒ Δm = +10 %
    rows += _rows("m", 0, {("a", "accuracy"): 0.88, ("b", "accuracy"): 0.55})
    rows += _rows("m", 1, {("a", "accuracy"): 0.80, ("b", "accuracy"): 0.60})
    rows += _rows("m", 0, {("a", "accuracy"): 0.10, ("b", "accuracy"): 0.10}, split="val")
    out = delta_m(pd.DataFrame(rows)).set_index("method")
    assert out.loc["stl", "delta_m"] == pytest.approx(0.0)
    assert out.loc["m", "delta_m"] == pytest.approx(10.0)
    # per seed: 10 and 10 ⇒ standard error 0
    assert out.loc["m", "delta_m_se"] == pytest.approx(0.0, abs=1e-12)
    # a lower-is-better metric flips the sign: loss 2.0 → 1.0 is +50 %
    loss = _rows("stl", 0, {("a", "loss"): 2.0}) + _rows("m", 0, {("a", "loss"): 1.0})
    assert delta_m(pd.DataFrame(loss), metrics=["loss"]).set_index("method").loc[
        "m", "delta_m"
    ] == pytest.approx(50.0)
    with pytest.raises(ValueError, match="needs the baseline"):
        delta_m(pd.DataFrame(_rows("m", 0, stl)))
    with pytest.raises(ValueError, match="has no result"):
        delta_m(pd.DataFrame(rows + _rows("x", 0, {("a", "accuracy"): 0.5})))


def test_model_selection_never_looks_at_test_labels():
    ds = multi_digits(seed=0, n=(400, 200, 200))
    cfg = MTTrainConfig(epochs=4, batch_size=64, diagnostics_every=3)

    def run(data):
        model = init_seeded(MultiTaskNet(ds.input_shape, ds.num_classes, "mlp", (32,)), 0)
        return train_multitask(model, data, make_method("pcgrad", 2), cfg)

    a = run(ds)
    ds.y["test"] = (ds.y["test"] + 1) % 10  # corrupt every test label
    b = run(ds)
    assert a.best_epoch == b.best_epoch and a.history == b.history
    assert a.metrics["val"] == b.metrics["val"]
    assert a.metrics["test"] != b.metrics["test"]
    assert a.diagnostics and {"mean_cosine", "w_left", "w_right"} <= set(a.diagnostics[0])
    assert a.sec_per_step > 0 and a.steps == 4 * 7


def test_benchmark_cli_end_to_end(tmp_path):
    out = tmp_path / "bench"
    code = main(
        [
            "benchmark",
            "--preset",
            "tiny",
            "--methods",
            "mean,uw",
            "--seeds",
            "2",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0
    df = pd.read_parquet(out / "results.parquet")
    for col in ("method", "task", "seed", "split", "metric", "value", "higher_is_better"):
        assert col in df.columns
    assert set(df.method) == {"stl", "mean", "uw"} and set(df.split) == {"val", "test"}
    # one row per (method, seed, task, split, metric)
    assert not df.duplicated(["method", "seed", "task", "split", "metric"]).any()
    summary = pd.read_csv(out / "delta_m.csv")
    assert list(summary.method) == ["stl", "mean", "uw"]
    assert {"delta_m", "delta_m_se", "sec_per_step", "left", "right"} <= set(summary.columns)
    assert summary.delta_m.notna().all()
    for fig in ("delta_m.png", "per_task.png", "conflict_diagnostics.png"):
        assert (out / "figures" / fig).exists()
    assert "Δm" in (out / "report.html").read_text()
    # rerun resumes: nothing trained again
    assert (
        main(
            [
                "benchmark",
                "--preset",
                "tiny",
                "--methods",
                "mean,uw",
                "--seeds",
                "2",
                "--out",
                str(out),
                "--quiet",
                "--no-report",
            ]
        )
        == 0
    )


@pytest.mark.parametrize(
    "args",
    [
        ["--methods", "mean,adamw"],
        ["--dataset", "cifar10"],
        ["--preset", "huge"],
        ["--widths", "8,x"],
        ["--lr", "-1"],
    ],
)
def test_benchmark_rejects_bad_input_before_any_work(tmp_path, args, capsys):
    out = tmp_path / "never"
    assert main(["benchmark", *args, "--out", str(out), "--quiet"]) == 2
    assert not out.exists()
    assert "error" in capsys.readouterr().err


def test_benchmark_width_lr_batch_size_reach_every_run():
    from mtlab.studies import get_study
    from mtlab.studies.base import StudyInputs

    given = StudyInputs(dataset="digit-attributes", widths=(8, 4), lr=0.01, batch_size=16)
    configs = get_study("benchmark").configs("tiny", 1, given)
    assert configs and all((c.widths, c.lr, c.batch_size) == ((8, 4), 0.01, 16) for c in configs)


def test_benchmark_list_methods(capsys):
    assert main(["benchmark", "--list"]) == 0
    text = capsys.readouterr().out
    assert "upgrad" in text and "gradnorm" in text


def test_trainer_runs_on_float64_cnn_with_representation_backend():
    ds = multi_digits(seed=1, n=(64, 32, 32))
    for s in ds.x:
        ds.x[s] = ds.x[s].double()
    model = init_seeded(MultiTaskNet(ds.input_shape, ds.num_classes, "cnn", (4, 6)), 1).double()
    res = train_multitask(
        model,
        ds,
        make_method("mgda", 2),
        MTTrainConfig(epochs=1, batch_size=16, backend="representation", diagnostics_every=1),
    )
    assert res.backend == "representation" and len(res.diagnostics) == 4
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_runs_with_random_aggregators_are_reproducible():
    ds = multi_digits(seed=2, n=(128, 64, 64))
    ds = ds.subset_tasks(["left", "right"])
    params = []
    for _ in range(2):
        model = init_seeded(MultiTaskNet(ds.input_shape, ds.num_classes, "mlp", (16,)), 0)
        train_multitask(
            model, ds, make_method("graddrop", 2), MTTrainConfig(epochs=1, batch_size=32)
        )
        params.append(torch.cat([p.detach().reshape(-1) for p in model.parameters()]))
    assert torch.equal(params[0], params[1])
