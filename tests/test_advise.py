"""``mtlab advise`` (issue 16): the decision rules on small tables where they must hold and fail,
and the command end to end on a planted table (blocks recovered, the noise task never a
partner, regression and classification in one run, missing labels, resume, bad input)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from mtlab.advise.rules import (
    CLEAR_MARGIN_SE,
    clear_winner,
    paired_difference,
    stable_grouping,
)
from mtlab.advise.synthetic import planted_table
from mtlab.cli import main


def advice_candidates(out, task: str, regime: str, init_scale=None) -> list[dict]:
    import pandas as pd

    df = pd.read_parquet(out / "candidates.parquet")
    rows = df[(df.task == task) & (df.regime == regime) & (df.control == "")]
    if init_scale is not None:
        rows = rows[rows.init_scale == init_scale]
    return [{"test": v} for v in rows.test_metric]


def test_clear_winner_needs_more_than_its_noise():
    base = [0.80, 0.82, 0.81]
    assert clear_winner(base, [0.85, 0.87, 0.86])  # +0.05 every seed: se 0
    assert not clear_winner(base, [0.90, 0.78, 0.83])  # +0.027 ± 0.033: noise
    assert not clear_winner(base, [0.79, 0.81, 0.80])  # worse
    assert not clear_winner([0.8], [0.9])  # one seed: no error bar, nothing is clear
    mean, se = paired_difference(base, [0.90, 0.78, 0.83])
    assert mean == pytest.approx(0.0267, abs=1e-3) and mean < CLEAR_MARGIN_SE * se
    # exactly at the margin: not clear (strictly more than the margin)
    d = np.array([0.1, 0.2, 0.3])
    se = d.std(ddof=1) / math.sqrt(3)
    assert clear_winner([0, 0, 0], list(d)) == (d.mean() > CLEAR_MARGIN_SE * se)


def test_stable_grouping():
    chosen = [["a", "b"], ["c"]]
    assert stable_grouping(chosen, [[["b", "a"], ["c"]]] * 2 + [[["a"], ["b", "c"]]]) == (
        True,
        pytest.approx(2 / 3),
    )
    assert stable_grouping(chosen, [[["a"], ["b", "c"]]] * 2 + [chosen])[0] is False


def test_a_seed_whose_matrix_no_grouping_covers_does_not_agree(monkeypatch):
    """At 48 tasks and few groups the search starts from a greedy packing that can fail on one
    seed's matrix although it succeeded on the mean's: that seed disagrees, the advice goes on."""
    import mtlab.grouping as grouping

    A = np.array([[0, 0.3, 0.0], [0.3, 0, 0.0], [0.0, 0.0, 0]])
    bad = A + 0.01
    real = grouping.best_grouping

    def search(m, *args, **kw):
        if np.array_equal(m, bad):
            raise ValueError("no grouping with at most 2 groups covers all 3 tasks")
        return real(m, *args, **kw)

    monkeypatch.setattr(grouping, "best_grouping", search)
    out = grouping.by_budget(A, [2], per_seed=[A, bad], names=["a", "b", "c"],
                             singleton_scores=[0.0] * 3)  # fmt: skip
    g = out["2"]
    assert sorted(map(sorted, g["groups"])) == [["a", "b"], ["c"]]
    assert g["per_seed"][1] == [] and g["seeds_agree"] == 0.5


def recovers_blocks(groups: list[list[str]], blocks: list[set[str]]) -> bool:
    """Every block lies inside one group, and no group holds tasks of two blocks."""
    inside = all(any(b <= set(g) for g in groups) for b in blocks)
    mixed = any(sum(bool(b & set(g)) for b in blocks) > 1 for g in groups)
    return inside and not mixed


def test_recovers_blocks_must_hold_and_must_fail():
    blocks = [{"a", "b", "c"}, {"d", "e"}]
    assert recovers_blocks([["a", "b", "c", "noise"], ["d", "e"]], blocks)
    assert not recovers_blocks([["a", "b"], ["c", "d", "e"]], blocks)
    assert not recovers_blocks([["a", "b", "c", "d"], ["d", "e"]], blocks)


@pytest.mark.slow
def test_advise_on_a_planted_table(tmp_path, capsys):
    data = tmp_path / "t.csv"
    planted_table(3000, seed=1).to_csv(data, index=False)
    out = tmp_path / "adv"
    args = ["advise", "--data", str(data), "--targets", "a,b,c,d,e,noise", "--out", str(out),
            "--seeds", "3", "--steps", "300", "--model", "mlp:64,64", "--methods", "pcgrad",
            "--rescales", "0.25,1", "--quiet", "--time-budget", "0"]  # fmt: skip
    assert main(args) == 0
    advice = json.loads((out / "advice.json").read_text())
    assert advice["tasks"] == ["a", "b", "c", "d", "e", "noise"]
    assert advice["kinds"]["b"] == "regression" and advice["kinds"]["a"] == "classification"
    assert set(advice["groupings"]) == {str(b) for b in range(1, 7)}
    for task, d in advice["per_task"].items():
        assert d["regime"] in ("stl", "mtl", "ptft", "pretrain_rescale")
        assert d["metric"] == ("r2" if task in ("b", "e") else "accuracy")
        if d["clear"]:  # the noise task is never recommended as a partner or a source
            assert "noise" not in (d["partners"] or []) and d["source"] != "noise"
        # the baseline is the best STL over the initial scales tried (on validation)
        stl = [advice_candidates(out, task, "stl", sc) for sc in (0.125, 0.25, 1.0, 4.0)]
        assert sum(map(len, stl)) >= 6
        assert d["stl"] == pytest.approx(float(np.mean([c["test"] for c in
                               advice_candidates(out, task, "stl", d["stl_scale"])])))  # fmt: skip
        # a named partner or source was credited by its own null control, which was trained
        for unit in d["partners"] + ([d["source"]] if d["source"] else []):
            assert d["controls"][unit]["trained"] and d["controls"][unit]["credited"]
        assert len(advice_candidates(out, task, "reference")) == 3
        assert math.isfinite(d["reference"]["test"])
    A = np.asarray(advice["affinity"]["mean"])
    assert A.shape == (6, 6) and np.isfinite(A).all()
    # the planted blocks are recovered at budget 2, by the mean and by every seed: no group mixes
    # a,b,c with d,e (the noise task, which any partner regularises, may join either)
    assert advice["affinity"]["source"] == "pairs"
    for groups in [advice["groupings"]["2"]["groups"], *advice["groupings"]["2"]["per_seed"]]:
        assert recovers_blocks(groups, [{"a", "b", "c"}, {"d", "e"}]), groups
    for f in ("report.html", "report.md", "candidates.parquet", "groupings.csv", "affinity.csv",
              "figures/affinity.png", "figures/per_task.png", "figures/overview.png"):  # fmt: skip
        assert (out / f).exists(), f
    lines = (out / "rows.jsonl").read_text().splitlines()
    assert len(lines) == len({json.loads(x)["run_id"] for x in lines})  # each run trained once
    assert (out / "results.parquet").exists() and (out / "summary.csv").exists()
    capsys.readouterr()
    # a rerun resumes: nothing is trained again, and the advice is the same
    first = json.loads((out / "advice.json").read_text())
    assert main(args) == 0
    assert (out / "rows.jsonl").read_text().splitlines() == lines
    assert "trained 0 runs" in capsys.readouterr().err
    again = json.loads((out / "advice.json").read_text())
    assert {k: v for k, v in again.items() if k != "seconds"} == {
        k: v for k, v in first.items() if k != "seconds"}
    # other settings into the same folder are refused
    assert main([*args[:-2], "--time-budget", "0", "--lr", "0.01"]) == 2
    assert "for other data or settings" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--targets", "a,zz"], "no column(s) ['zz']"),
        (["--targets", "a", "--features", "x0,x1"], "at least two target tasks"),
        (["--targets", "a,b", "--model", "cnn"], "a CNN needs image inputs"),
        (["--targets", "a,b", "--methods", "nope"], "unknown method(s) nope"),
        (["--targets", "a,b", "--kinds", "a=ordinal"], "kinds must be"),
    ],
)
def test_advise_bad_input_exits_2_and_writes_nothing(tmp_path, capsys, extra, message):
    data = tmp_path / "t.csv"
    planted_table(100, seed=0).to_csv(data, index=False)
    out = tmp_path / "adv"
    assert main(["advise", "--data", str(data), "--out", str(out), *extra]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_affinity_on_an_own_table_over_seeds(tmp_path, capsys):
    data = tmp_path / "t.csv"
    planted_table(400, seed=2).drop(columns=["c", "noise"]).to_csv(data, index=False)
    out = tmp_path / "aff"
    args = ["affinity", "--data", str(data), "--targets", "a,b,d,e", "--out", str(out),
            "--seeds", "2", "--steps", "60", "--probe-every", "20", "--widths", "16"]  # fmt: skip
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "standard error over 2 seeds" in text and "budget 2:" in text
    saved = json.loads((out / "affinity.json").read_text())
    assert saved["tasks"] == ["a", "b", "d", "e"] and len(saved["meta"]["per_seed"]) == 2
    assert np.asarray(saved["meta"]["se"]).shape == (4, 4)
    assert main([*args[:4], "a,zz", *args[5:]]) == 2
    assert "no column(s) ['zz']" in capsys.readouterr().err


def test_benchmark_on_an_own_table(tmp_path, capsys):
    data = tmp_path / "t.csv"
    planted_table(600, seed=3).drop(columns=["c", "noise"]).to_csv(data, index=False)
    out = tmp_path / "bench"
    args = ["benchmark", "--data", str(data), "--targets", "a,b,d,e", "--out", str(out),
            "--methods", "mean,pcgrad", "--seeds", "2", "--steps", "60", "--model", "mlp:16",
            "--quiet"]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "method,delta_m,delta_m_se,n_seeds,n_failed" in printed
    dm = pd.read_csv(out / "delta_m.csv")
    assert set(dm.method) == {"stl", "mean", "pcgrad"} and (dm.n_seeds == 2).all()
    res = pd.read_parquet(out / "results.parquet")
    # Δm recomputed by hand from the stored table (one row per run and task): accuracy for a, d;
    # RMSE (lower is better) for b, e
    ref = res[res.method == "stl"].groupby("task")[["test_metric", "test_rmse"]].mean()
    got = res[res.method == "mean"].groupby("task")[["test_metric", "test_rmse"]].mean()
    keys = [("a", "test_metric"), ("b", "test_rmse"), ("d", "test_metric"), ("e", "test_rmse")]
    sign = {"test_metric": 1, "test_rmse": -1}
    by_hand = 100 * np.mean([sign[m] * (got[m][t] - ref[m][t]) / ref[m][t] for t, m in keys])
    assert dm.set_index("method").delta_m["mean"] == pytest.approx(by_hand)
    for f in ("report.html", "results.csv", "per_task.csv", "figures/delta_m.png"):
        assert (out / f).exists(), f
    lines = (out / "rows.jsonl").read_text().splitlines()
    assert len(lines) == 2 * (4 + 2)  # per seed: STL × 4 tasks, MTL × 2 methods
    assert main(args) == 0  # resumes: nothing trained again
    assert (out / "rows.jsonl").read_text().splitlines() == lines
    capsys.readouterr()
    assert main(["status", str(out)]) == 0
    status = capsys.readouterr().out
    assert "study 'benchmark', preset 'data'" in status
    for line in ("stl                 8      0       0      8", "all                12      0"):
        assert line in status, status


@pytest.mark.parametrize(
    "args, message",
    [
        (["--targets", "a,b", "--out", "X"], "--targets is for your own data (--data)"),
        (["--data", "D", "--targets", "a,b", "--out", "X", "--widths", "8"], "--widths is for"),
        (["--data", "D", "--targets", "a,b", "--out", "X", "--methods", "nope"], "unknown"),
        (["--data", "D", "--targets", "a,zz", "--out", "X"], "no column(s) ['zz']"),
        (["--data", "D", "--targets", "a,b", "--out", "X", "--address", "auto"],
         "only apply with --executor ray"),
    ],
)
def test_benchmark_bad_own_data_exits_2_and_writes_nothing(tmp_path, capsys, args, message):
    data = tmp_path / "t.csv"
    planted_table(400, seed=0)[["x0", "x1", "a", "b"]].to_csv(data, index=False)
    out = tmp_path / "bench"
    args = [{"D": str(data), "X": str(out)}.get(a, a) for a in args]
    assert main(["benchmark", *args]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_helpful_partners_only_clearly_positive_members():
    from mtlab.advise.rules import helpful_partners

    mean = [0.0, 0.10, 0.01, -0.2, 0.05]
    se = [0.0, 0.02, 0.01, 0.01, 0.03]
    assert helpful_partners(mean, se, 0) == [1]  # 0.01 ± 0.01 and 0.05 ± 0.03: within noise
    assert helpful_partners(mean, se, 0, members=[2, 3, 4]) == []
    assert helpful_partners(mean, [0.0, 0.02, 0.001, 0.01, 0.01], 0) == [1, 2, 4]
    assert helpful_partners(mean, [math.nan] * 5, 0) == []  # one seed: nothing is clear


def test_groupings_of_many_tasks_are_bounded_in_time_and_size(monkeypatch):
    """Above 16 tasks groups are capped (the candidate groups fit in memory), the searches
    share a fixed time, and a search that stops early says so with a certified bound."""
    import time

    from mtlab.advise import pipeline

    monkeypatch.setattr(pipeline, "GROUPING_SECONDS", 4.0)
    rng = np.random.default_rng(0)
    for T in (10, 18):
        tasks = [f"t{i}" for i in range(T)]
        A = rng.normal(0, 0.1, (T, T))
        per_seed = [A + rng.normal(0, 0.02, (T, T)) for _ in range(2)]
        t0 = time.perf_counter()
        out = pipeline._groupings(A, tasks, per_seed)
        assert time.perf_counter() - t0 < 60  # the share (plus building the candidate groups)
        for b, g in out.items():
            assert sorted({t for grp in g["groups"] for t in grp}) == sorted(tasks), b
            if T > pipeline.LARGE_T:
                assert max(len(grp) for grp in g["groups"]) <= pipeline.MAX_GROUP
            if not g["optimal"]:
                assert g["bound"] >= g["value"]
        if T > pipeline.LARGE_T:  # 3 groups of ≤ 6 cannot cover 18 tasks
            assert "3" in out and "2" not in out
        assert any(not g["optimal"] for g in out.values())  # the share did stop some searches


def test_advise_on_an_npz_with_default_targets(tmp_path, capsys):
    """An NPZ of ``x`` and one array per task: every array but ``x`` is a target."""
    df = planted_table(400, seed=4, missing=0.0)
    x = df[[f"x{i}" for i in range(20)]].to_numpy()
    data = tmp_path / "train.npz"
    np.savez(data, x=x, d=df["d"].to_numpy(), e=df["e"].to_numpy())
    out = tmp_path / "adv"
    args = ["advise", "--data", str(data), "--out", str(out), "--budget", "2", "--model",
            "mlp:16", "--seeds", "2", "--steps", "40", "--methods", "", "--rescales", "1",
            "--quiet"]  # fmt: skip
    assert main(args) == 0
    advice = json.loads((out / "advice.json").read_text())
    assert advice["tasks"] == ["d", "e"] and advice["kinds"]["e"] == "regression"
    assert advice["affinity"]["source"] == "pairs"


def _outcome(tasks, values, diverged=False, loss=None):
    from mtlab.advise.pipeline import Outcome

    metrics = {t: {"val_metric": v, "test_metric": v, "val_loss": loss or 1 - v,
                   "min_val_loss": loss or 1 - v, "test_loss": 1 - v} for t, v in values.items()}  # fmt: skip
    return Outcome(None, metrics, 1.0, diverged=diverged)


def test_diverged_trainings_are_never_averaged_in():
    from mtlab.advise.estimators import FAILED_PAIR_SCORE, Context, Pairs
    from mtlab.advise.pipeline import _metric
    from mtlab.runs.config import make_config

    ok, bad = _outcome(["a"], {"a": 0.8}), _outcome(["a"], {"a": 0.1}, diverged=True)
    assert _metric([ok, bad], "a")[0] == 0.8 and math.isnan(_metric([ok, bad], "a")[1])
    base = {"family": "owndata", "dataset": "digit-attributes", "targets": ("odd", "ge5")}

    def make(**fields):
        return make_config({**base, **fields})

    ctx = Context(("odd", "ge5"), (0, 1, 2), make)

    def row(tasks, loss, failed=False):
        return {"tasks": list(tasks), "steps": 10, "steps_done": 10, "train_seconds": 1.0,
                "status": "failed" if failed else "ok",
                "evals": [{"task": t, "min_val_loss": loss} for t in tasks]}  # fmt: skip

    def rows(pair_losses, failed):
        out = {ctx.stl(t, s).run_id(): row([t], 1.0) for t in ctx.tasks for s in ctx.seeds}
        for s, (loss, f) in enumerate(zip(pair_losses, failed, strict=True)):
            out[ctx.mtl(ctx.tasks, s).run_id()] = row(ctx.tasks, loss, f)
        return out

    # transfer 0.2 and 0.4 on the two finished seeds; the diverged seed is left out
    est = Pairs().estimate(ctx, rows([0.8, 0.6, 9.0], [False, False, True]))
    assert est.matrix[0, 1] == pytest.approx(0.3) and est.se[0, 1] == pytest.approx(0.1)
    assert est.cost_steps == 2 * 3 * 10 + 3 * 2 * 10  # six STL runs, three pairs of two tasks
    est = Pairs().estimate(ctx, rows([0.8, 0.6, 9.0], [True, True, True]))
    assert est.matrix[0, 1] == FAILED_PAIR_SCORE
    assert all(m[0, 1] == FAILED_PAIR_SCORE for m in est.meta["per_seed"])


def test_benchmark_summary_leaves_out_diverged_runs():
    from mtlab.studies.benchmark import summarise

    rows = []
    for method, seed, acc, failed in [("stl", 0, 0.5, False), ("stl", 1, 0.5, False),
                                      ("mean", 0, 0.6, False), ("mean", 1, 0.0, True),
                                      ("uw", 0, 0.0, True), ("uw", 1, 0.0, True)]:  # fmt: skip
        rows.append({"method": method, "seed": seed, "task": "a", "split": "test",
                     "metric": "accuracy", "value": acc, "higher_is_better": True,
                     "failed": failed})  # fmt: skip
    dm, per = summarise(pd.DataFrame(rows))
    dm = dm.set_index("method")
    assert dm.delta_m["mean"] == pytest.approx(20.0)  # 0.6 vs 0.5, the failed seed left out
    assert dm.n_failed["mean"] == 1 and dm.n_seeds["mean"] == 1
    assert math.isnan(dm.delta_m["uw"]) and dm.n_failed["uw"] == 2
    assert set(per.method) == {"stl", "mean"}


# ---------------------------------------------------------------- one engine (issue 22)

SMALL = ["--targets", "a,b,d,e", "--seeds", "2", "--steps", "150", "--model", "mlp:16",
         "--methods", "pcgrad", "--rescales", "0.5", "--time-budget", "0", "--quiet"]  # fmt: skip


def _small_table(tmp_path):
    data = tmp_path / "t.csv"
    planted_table(800, seed=5, missing=0.3).drop(columns=["c", "noise"]).to_csv(data, index=False)
    return data


def _content(out):
    """advice.json without its wall-clock seconds."""
    advice = json.loads((out / "advice.json").read_text())
    advice.pop("seconds")
    return advice


def _stored_ids(out):
    return [json.loads(x)["run_id"] for x in (out / "rows.jsonl").read_text().splitlines()
            if x.strip()]  # fmt: skip


class _Trainings:
    """Run ids appended to a file by every training — in this process or a forked worker."""

    def __init__(self, path) -> None:
        self.path = path

    def __iter__(self):
        text = self.path.read_text() if self.path.exists() else ""
        return iter(text.split())

    def __len__(self) -> int:
        return len(list(iter(self)))


def _count_trainings(monkeypatch, path) -> _Trainings:
    """Every training the own-data family starts (workers are forked with the counter)."""
    from mtlab.runs import owndata

    real = owndata.train_run

    def counting(cfg, *args, **kwargs):
        with open(path, "a") as f:
            f.write(cfg.run_id() + "\n")
        return real(cfg, *args, **kwargs)

    monkeypatch.setattr(owndata, "train_run", counting)
    return _Trainings(path)


def test_advise_killed_mid_stage_resumes_training_nothing_twice(tmp_path, capsys, monkeypatch):
    """kill -9 of ``mtlab advise`` mid-stage, then the same command: it resumes (the dead
    process's lock is taken over), trains exactly the runs not stored (every training counted),
    stores each run once, and gives the advice of an uninterrupted run."""
    import subprocess
    import sys
    import time

    data = _small_table(tmp_path)
    out, ref = tmp_path / "o", tmp_path / "ref"
    cmd = [sys.executable, "-m", "mtlab", "advise", "--data", str(data), "--out", str(out),
           *SMALL]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows = out / "rows.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if rows.exists() and len(rows.read_text().splitlines()) >= 6:
            break
        time.sleep(0.01)
    proc.kill()  # SIGKILL: no cleanup; the lock file stays behind
    proc.wait()
    before = len(set(_stored_ids(out)))
    assert 6 <= before and not (out / "advice.json").exists()  # stopped in its first stage
    assert (out / ".lock").exists()
    trainings = _count_trainings(monkeypatch, tmp_path / "trainings.txt")
    assert main(["advise", "--data", str(data), "--out", str(out), *SMALL]) == 0
    err = capsys.readouterr().err
    ids = _stored_ids(out)
    assert len(ids) == len(set(ids))  # no run stored twice
    assert sorted(trainings) == sorted(set(ids) - set(ids[:before]))  # no run trained twice
    assert f"trained {len(ids) - before} runs (0 failed)" in err  # only the missing ones
    assert f"{before} were stored already" in err
    assert main(["advise", "--data", str(data), "--out", str(ref), *SMALL]) == 0
    assert sorted(ids) == sorted(_stored_ids(ref))
    assert _content(out) == _content(ref)


@pytest.mark.slow
def test_advise_on_ray_gives_the_local_advice(tmp_path):
    """The stages on a local Ray instance (2 workers): the same runs and the same advice as in
    this process (one thread per run in both, so the numbers are bitwise equal)."""
    data = _small_table(tmp_path)
    local, ray = tmp_path / "local", tmp_path / "ray"
    assert main(["advise", "--data", str(data), "--out", str(local), *SMALL]) == 0
    assert main(["advise", "--data", str(data), "--out", str(ray), *SMALL,
                 "--executor", "ray"]) == 0  # fmt: skip
    assert sorted(_stored_ids(local)) == sorted(_stored_ids(ray))
    assert _content(local) == _content(ray)


def test_advise_dry_run_status_and_folder_policy(tmp_path, capsys):
    data = _small_table(tmp_path)
    out = tmp_path / "o"
    args = ["advise", "--data", str(data), "--out", str(out), *SMALL]
    assert main([*args, "--dry-run"]) == 0
    # the first stage: 4 tasks × 2 seeds × (STL at the one scale + the tree model); then the
    # 2 MTL runs on all tasks and 6 pairs × 2 seeds, and 8 STL runs at the networks' scale
    said = capsys.readouterr().out
    assert "16 runs of advise on 4 tasks" in said and "then 14 MTL runs and 8 STL runs" in said
    assert not out.exists()
    assert main(args) == 0
    capsys.readouterr()
    assert main(["status", str(out)]) == 0
    status = capsys.readouterr().out
    n = len(_stored_ids(out))
    assert f"all            {n:6d}      0       0 {n:6d}" in status, status
    assert "advice.json: written" in status and "study 'advise'" in status
    assert main(["report", str(out)]) == 2  # advise writes its own report: rerun it
    assert "rerun it" in capsys.readouterr().err
    # the data file moved: the same bytes, the same runs — the folder resumes, trains nothing
    moved = data.rename(tmp_path / "moved.csv")
    assert main(["advise", "--data", str(moved), "--out", str(out), *SMALL]) == 0
    assert "trained 0 runs" in capsys.readouterr().err
    data = moved
    # another study's folder, and a folder of an earlier mtlab, are refused
    assert main(["benchmark", "--data", str(data), "--targets", "a,b", "--features", "x0,x1",
                 "--out", str(out), "--quiet"]) == 2  # fmt: skip
    assert "already holds study 'advise'" in capsys.readouterr().err
    old = tmp_path / "old"
    old.mkdir()
    (old / "trainings.jsonl").write_text("")
    assert main(["advise", "--data", str(data), "--out", str(old), *SMALL]) == 2
    assert "written by an earlier mtlab (trainings.jsonl)" in capsys.readouterr().err


def test_a_rerun_trains_only_what_is_missing_or_needed(tmp_path, monkeypatch):
    """A finished run is trained again only if a run depends on it and its parameters are lost
    (own-data MTL and PT+FT runs store none: they are never redone)."""
    from mtlab.runs.config import make_config
    from mtlab.runs.executor import execute
    from mtlab.runs.owndata import file_digest
    from mtlab.runs.store import RunStore

    data = _small_table(tmp_path)
    base = {"family": "owndata", "data": str(data), "data_sha256": file_digest(data),
            "targets": ("a", "b", "d", "e"), "steps": 20, "widths": (8,)}  # fmt: skip
    stl = make_config({**base, "tasks": ("a",)})
    configs = [stl, make_config({**base, "tasks": ("a", "b"), "method": "mean"}),
               make_config({**base, "tasks": ("b",), "method": "ptft", "source": "a",
                            "rescale": 0.5})]  # fmt: skip
    store = RunStore(tmp_path / "o")
    assert execute(configs, store, progress=False)["trained"] == 3
    trainings = _count_trainings(monkeypatch, tmp_path / "trainings.txt")
    execute(configs, store, progress=False)
    assert list(trainings) == []
    (store.root / "params" / f"{stl.run_id()}.pt").unlink()  # the dependency's trunk is lost
    stats = execute(configs, store, progress=False)
    assert list(trainings) == [stl.run_id()] and stats["redone"] == 1


def test_a_changed_data_file_fails_its_runs_instead_of_mixing(tmp_path):
    from mtlab.runs.config import make_config
    from mtlab.runs.owndata import FAMILY, file_digest, load_data

    data = _small_table(tmp_path)
    cfg = make_config({"family": "owndata", "data": str(data), "data_sha256": file_digest(data),
                       "targets": ("a", "b", "d", "e"), "tasks": ("a",), "steps": 5})  # fmt: skip
    assert load_data({f: getattr(cfg, f) for f in cfg.model_fields}).table.n == 800
    planted_table(800, seed=6, missing=0.3).drop(columns=["c", "noise"]).to_csv(data, index=False)
    with pytest.raises(Exception, match="the file changed"):
        FAMILY.record(cfg)


def test_stages_skip_what_would_not_fit_in_the_time_budget():
    """A stage is skipped when its remaining runs, at the measured seconds per task-step of the
    stored runs over the executor's parallel slots, would not fit in the time left (stages
    accepted earlier count against it); stored runs cost nothing."""
    from types import SimpleNamespace

    from mtlab.advise.pipeline import Stages

    stored = {"s": {"status": "ok", "wall_s": 10.0, "tasks": ["a"], "steps": 1000}}  # 0.01 s
    cfg = lambda rid, probe=False: SimpleNamespace(run_id=lambda: rid, tasks=("a", "b"),  # noqa: E731
                                                   steps=1000, probe=probe)  # fmt: skip
    runs = [cfg(f"r{i}") for i in range(5)]  # 5 × 2 tasks × 1000 steps × 0.01 s = 100 s
    stages = Stages(lambda stage, c: {}, lambda: stored, budget=150.0)
    assert stages.fits("first", runs)  # 100 s of 150 s
    assert not stages.fits("second", [cfg(f"q{i}") for i in range(5)])  # 100 more: 50 s left
    assert stages.skipped and stages.skipped[0].startswith("second (5 trainings, ~100 s > 50")
    assert stages.fits("stored", [cfg("s")])  # stored already: nothing to train
    two = Stages(lambda stage, c: {}, lambda: stored, budget=150.0, slots=2)
    assert two.fits("first", runs) and two.fits("second", [cfg(f"q{i}") for i in range(5)])
    # a probed run costs 1.5×: 4 × 2 tasks × 1000 steps × 0.01 s × 1.5 / 2 slots = 60 s > 50 s
    assert not two.fits("probed", [cfg(f"p{i}", probe=True) for i in range(4)])
    assert Stages(lambda s, c: {}, lambda: stored, budget=None).fits("any", runs * 100)
