"""The trajectories study and ``mtlab trajectories`` end to end (tiny preset), and bad input
refused with exit 2 before any work."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mtlab.cli import main

TRAJ = {"regime", "method", "setting", "task", "seed", "step", "epoch_frac", "train_loss",
        "val_loss", "val_metric", "sharpness", "fisher_trace", "coherence", "noise_scale",
        "grad_norm", "weight_norm", "dist_init", "cos_to_rest", "mean_cosine"}  # fmt: skip
GAP = {"setting", "method", "task", "seed", "level", "gap", "match", "mismatch", "phase",
       "final_transfer"}  # fmt: skip


def test_tiny_preset_end_to_end(tmp_path):
    out = tmp_path / "t"
    assert main(["reproduce", "trajectories", "--preset", "tiny", "--out", str(out),
                 "--quiet"]) == 0  # fmt: skip
    traj = pd.read_parquet(out / "trajectories.parquet")
    assert TRAJ <= set(traj.columns)
    assert set(traj.regime) == {"stl", "mtl"} and set(traj.task) == {"t1", "t2"}
    # the conflict measures are logged for MTL runs only
    assert traj[traj.regime == "stl"].cos_to_rest.isna().all()
    assert traj[traj.regime == "mtl"].cos_to_rest.notna().all()
    gaps = pd.read_csv(out / "gap.csv")
    assert GAP <= set(gaps.columns) and set(gaps.match) == {"first_passage", "interpolated"}
    assert set(gaps.phase) <= {"early", "late"}
    # never extrapolated: every level lies inside both runs' training-loss ranges
    assert (gaps.mismatch.abs() < np.inf).all()
    corr = pd.read_csv(out / "correlations.csv")
    assert {"all", "teacher, bottleneck"} == set(corr.group)
    assert {"spearman", "spearman_lo", "spearman_hi", "pearson", "sign_agreement"} <= set(corr)
    claims = json.loads((out / "claims.json").read_text())["claims"]
    assert [c["id"] for c in claims] == [
        "gap.early_sign_persists",
        "factors.do_not_explain_gap",
        "conflict.slowdown_not_transfer",
        "methods.change_optimisation_not_transfer",
    ]
    for name in ("val_vs_train", "gap_vs_level", "factors_vs_gap", "conflict", "methods"):
        assert (out / "figures" / f"{name}.png").exists()
    report = (out / "report.md").read_text()
    assert "probe_size = 32" in report and "Baseline MTL method: **sum**" in report


def test_own_table_end_to_end(tmp_path):
    """An NPZ of ``x`` plus one array per task: the tasks are found without --tasks."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 6)).astype(np.float32)
    np.savez(tmp_path / "mine.npz", x=x, a=(x[:, 0] > 0).astype(int), b=(x[:, 1] > 0).astype(int))
    out = tmp_path / "m"
    code = main(["trajectories", "--data", str(tmp_path / "mine.npz"),
                 "--methods", "mean,upgrad", "--preset", "tiny", "--out", str(out), "--quiet"])  # fmt: skip
    assert code == 0
    traj = pd.read_parquet(out / "trajectories.parquet")
    assert set(traj.method) == {"stl", "mean", "upgrad"} and set(traj.task) == {"a", "b"}
    report = (out / "report.md").read_text()
    assert "Baseline MTL method: **mean**" in report
    assert set(pd.read_csv(out / "gap.csv").method) == {"mean", "upgrad"}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--dataset", "digit-attributes", "--tasks", "odd,nope"], "nope"),
        (["--dataset", "digits9"], "unknown dataset"),
        (["--dataset", "multi-digits", "--methods", "mean,vibes"], "unknown method"),
        (["--data", "DATA", "--tasks", "a,zz"], "zz"),
        (["--data", "DATA"], "--tasks"),
        (["--data", "MISSING", "--tasks", "a"], "no such file"),
        (["--dataset", "multi-digits", "--preset", "huge"], "no preset"),
    ],
)
def test_bad_input_exits_2_before_any_work(tmp_path, capsys, argv, message):
    csv = tmp_path / "t.csv"
    pd.DataFrame({"f": [0.1, 0.2, 0.3], "a": [0, 1, 0]}).to_csv(csv, index=False)
    argv = [str(csv) if a == "DATA" else str(tmp_path / "none.csv") if a == "MISSING" else a
            for a in argv]  # fmt: skip
    out = tmp_path / "o"
    assert main(["trajectories", *argv, "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()
