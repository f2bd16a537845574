"""ReLU teacher–student family and studies: configs, regimes, kernel baselines, tiny presets."""

import json

import pandas as pd
import pytest
import torch

from mtlab.cli import main
from mtlab.runs.config import ConfigError, ReluRunConfig, make_config
from mtlab.runs.executor import execute
from mtlab.runs.relu import FAMILY
from mtlab.runs.store import RunStore

SMALL = {
    "family": "relu",
    "width": 16,
    "n_aux": 64,
    "n_main": 16,
    "n_val": 50,
    "n_test": 80,
    "n_rep": 40,
    "max_steps": 200,
    "pt_max_steps": 200,
    "log_every": 50,
    "ridge_alphas": 12,
}


@pytest.mark.parametrize(
    "data,match",
    [
        ({"setting": "uniform"}, "correlation: setting 'uniform' needs"),
        ({"setting": "custom", "correlations": [1.0, 0.5]}, "needs 6 values"),
        ({"setting": "subset"}, "n_units: setting 'subset' needs"),
        ({"setting": "subset", "n_units": 7}, "n_units <= n_aux_units"),
        ({"setting": "identical", "n_units": 3}, "only settings subset / new"),
        ({"setting": "new", "n_units": 6, "d": 10}, "orthogonal directions"),
        ({"method": "finetune"}, "method"),
        ({"width": 0}, "width"),
    ],
)
def test_relu_config_errors(data, match):
    with pytest.raises(ConfigError, match=match):
        make_config({"family": "relu", **data})


def test_relu_config_resolves_settings_and_shares_pretraining():
    c = make_config({"family": "relu", "setting": "correlated_0.9", "method": "ptft"})
    assert c.correlations == (0.9,) * 6 and c.correlation == 0.9
    p = make_config({"family": "relu", "setting": "partial_new", "method": "ptft"})
    assert p.correlation is None and p.correlations == (1.0, 1.0, 1.0, 0.0, 0.0, 0.0)
    u = make_config({"family": "relu", "setting": "uniform", "correlation": 0.95})
    assert u.correlations == (0.95,) * 6
    # every main setting, n_main and s of a seed shares one pretraining run
    ids = {
        make_config({"family": "relu", "method": "ptft", **kw}).pretraining().run_id()
        for kw in (
            {"setting": "identical", "rescale": 10.0},
            {"setting": "subset", "n_units": 2, "n_main": 256},
            {"setting": "uniform", "correlation": 0.8, "magnitude": 0.1},
        )
    }
    assert len(ids) == 1
    assert make_config({"family": "relu", "method": "ptft", "rescale": 10.0}).finetune_lr() == (
        pytest.approx(0.005)
    )
    assert make_config({"family": "relu", "method": "ptft", "rescale": 0.1}).finetune_lr() == 0.5


def _store(tmp_path, cfgs, chunk="auto"):
    store = RunStore(tmp_path)
    execute(cfgs, store, chunk=chunk, progress=False)
    return store


def test_relu_ptft_start_is_rescaled_pretraining_with_small_readout(tmp_path):
    ft = make_config({**SMALL, "method": "ptft", "setting": "subset", "n_units": 2, "rescale": 0.1})
    store = _store(tmp_path, [ft.pretraining()])
    start = FAMILY.start(ft, store.load_params, "cpu")
    pt = store.load_params(ft.pretraining().run_id())
    assert torch.allclose(start["W"], 0.1 * pt["W"])
    assert start["A"].shape == (1, 1, 16)
    assert start["A"].std() < 1e-2 * pt["A"].std()  # readout redrawn at scale 1e-3


def test_relu_ensemble_matches_one_by_one(tmp_path):
    cfgs = [
        make_config({**SMALL, "method": m, "setting": "identical", "n_main": n, "seed": s})
        for m in ("stl", "mtl")
        for n in (16, 32)
        for s in (0, 1)
    ]
    a = _store(tmp_path / "a", cfgs, chunk=8).results().set_index("run_id")
    b = _store(tmp_path / "b", cfgs, chunk=1).results().set_index("run_id")
    for col in ("train_loss", "test_loss", "f1_norm", "pr_post"):
        assert a.loc[b.index, col].to_numpy() == pytest.approx(b[col].to_numpy(), rel=1e-4), col


def test_relu_mtl_pools_with_sample_weights_and_reports_group_norm(tmp_path):
    c = make_config({**SMALL, "method": "mtl", "setting": "identical"})
    df = _store(tmp_path, [c]).results()
    row = df.iloc[0]
    # the objective is the sample-weighted mean of the two task losses
    want = (64 * row.aux_train_loss + 16 * row.train_loss) / 80
    assert row.objective_loss == pytest.approx(want, rel=1e-4)
    assert row.group_norm >= row.f1_norm - 1e-9


def test_kernel_baselines_choose_ridge_on_validation_only(tmp_path, monkeypatch):
    import mtlab.runs.relu as relu_mod

    cfg = make_config({**SMALL, "method": "ptft_lr", "setting": "correlated_0.9"})
    ntk = cfg.model_copy(update={"method": "ntk"})
    store = _store(tmp_path, [cfg.pretraining()])
    row, _ = FAMILY.kernel_run(cfg, store.load_params, "cpu")
    row_ntk, _ = FAMILY.kernel_run(ntk, store.load_params, "cpu")
    assert row["n_features"] == 16 and row_ntk["n_features"] == 16 + 16 * 15
    real = relu_mod.split_data

    def other_test(c, task, split):  # different test data: the fit must not change
        x, y = real(c, task, split)
        return (x, -3 * y) if split == "test" else (x, y)

    monkeypatch.setattr(relu_mod, "split_data", other_test)
    row2, _ = FAMILY.kernel_run(cfg, store.load_params, "cpu")
    assert row2["ridge_alpha"] == row["ridge_alpha"] and row2["val_loss"] == row["val_loss"]
    assert row2["test_loss"] != row["test_loss"]


@pytest.mark.parametrize(
    "study,claims,figures",
    [
        (
            "relu-correlated",
            {
                "relu.shared_features_help",
                "relu.unrelated_negative_transfer",
                "relu.correlated_favours_ptft",
                "relu.linear_probe_needs_same_features",
                "relu.mtl_small_n",
            },
            ["relu_generalization.png"],
        ),
        (
            "relu-nested",
            {
                "relu.nested_small_s",
                "relu.lazy_large_s",
                "relu.small_s_like_stl_on_new",
                "relu.nested_signature",
            },
            ["relu_nested_loss.png", "relu_nested_pr_ensd.png", "relu_nested_kmeans.png"],
        ),
        (
            "relu-magnitude",
            {
                "relu.penalty_conservation",
                "relu.penalty_misaligned",
                "relu.magnitude_or_direction",
                "relu.magnitude_gain_concentrated",
            },
            ["relu_magnitude_grid.png", "relu_penalty_landscape.png"],
        ),
    ],
)
def test_relu_study_tiny_end_to_end(study, claims, figures, tmp_path, required_columns):
    out = tmp_path / study
    assert main(["reproduce", study, "--preset", "tiny", "--out", str(out), "--quiet"]) == 0
    got = json.loads((out / "claims.json").read_text())
    assert {c["id"] for c in got["claims"]} == claims
    for f in figures:
        assert (out / "figures" / f).exists(), f
    df = pd.read_parquet(out / "results.parquet")
    for col in (*required_columns, "n_units", "correlation", "magnitude"):
        assert col in df.columns, col
    assert not (df.status == "failed").any()
    # a rerun trains nothing new
    assert main(["reproduce", study, "--preset", "tiny", "--out", str(out), "--quiet"]) == 0
    assert len(pd.read_parquet(out / "results.parquet")) == len(df)


def test_relu_quick_presets_keep_every_setting_method_and_scale():
    from mtlab.studies import get_study

    cor = get_study("relu-correlated").configs("quick")
    assert {c.setting for c in cor} == {"identical", "correlated_0.9", "partial_new", "unrelated"}
    assert {c.method for c in cor} == {"stl", "mtl", "ptft", "ptft_lr", "ntk"}
    nes = get_study("relu-nested").configs("quick")
    assert {c.rescale for c in nes if c.method == "ptft"} == {0.01, 0.1, 1.0, 10.0}
    assert {c.n_units for c in nes} == set(range(1, 7))
    assert {c.setting for c in nes} == {"subset", "new"}
    mag = get_study("relu-magnitude").configs("quick")
    assert {c.correlation for c in mag} == {0.8, 0.9, 0.95, 0.99, 1.0}
    assert {c.magnitude for c in mag} == {1.0, 0.5, 0.1, 0.05, 0.01}
    for cfgs in (cor, nes, mag):
        assert {64, 256} <= {c.n_main for c in cfgs}
    assert isinstance(cor[0], ReluRunConfig)


def test_relu_sweep_through_mtlab_run_and_custom_report(tmp_path):
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        "study: relu_try\n"
        "seeds: 1\n"
        "base: {family: relu, setting: subset, n_units: 2, width: 16, n_aux: 64, n_main: 16,\n"
        "       n_val: 40, n_test: 60, n_rep: 30, max_steps: 100, pt_max_steps: 100}\n"
        "grids:\n"
        "  - {method: [stl, ptft], init_scale: [0.001, 1.0]}\n"
    )
    out = tmp_path / "out"
    assert main(["run", str(sweep), "--out", str(out), "--quiet"]) == 0
    assert (out / "figures" / "test_loss.png").exists()
    report = (out / "report.md").read_text()
    assert "init_scale=1" in report and "subset n_units=2" in report


def test_relu_minibatch_sgd_trains(tmp_path):
    cfgs = [
        make_config({**SMALL, "method": m, "setting": "identical", "batch_size": 8, "lr": 0.2})
        for m in ("stl", "mtl")
    ]
    df = _store(tmp_path, cfgs).results().set_index("method")
    zero = df.loc["stl", "zero_loss"]
    for m in ("stl", "mtl"):
        assert df.loc[m, "status"] in ("converged", "max_steps")
        assert df.loc[m, "train_loss"] < 0.5 * zero  # it learned from minibatches
