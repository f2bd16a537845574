"""Results one can trust (issue 14): one writer per folder, one sweep per folder, idempotent
storing — each fault injected for real."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mtlab.cli import main
from mtlab.runs.store import FolderLocked, RunStore

SWEEP = "base: {d: 30, k1: 4, max_steps: 50, n_val: 10, n_test: 10}\ngrid: {n_main: [%s]}\n"


def _sweep(tmp_path: Path, name: str, n_main: str) -> Path:
    p = tmp_path / name
    p.write_text(SWEEP % n_main)
    return p


def _hold_lock(out: Path) -> subprocess.Popen:
    """Another process that holds ``out``'s lock until killed."""
    code = (
        "import sys, time\n"
        "from mtlab.runs.store import RunStore\n"
        f"with RunStore({str(out)!r}).lock():\n"
        "    print('held', flush=True)\n"
        "    time.sleep(120)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_writer_is_refused_naming_the_holder(tmp_path, capsys):
    out = tmp_path / "o"
    sweep = _sweep(tmp_path, "s.yaml", "4")
    holder = _hold_lock(out)
    try:
        assert main(["run", str(sweep), "--out", str(out), "--quiet", "--no-report"]) == 2
        err = capsys.readouterr().err
        assert f"pid {holder.pid}" in err and "in use" in err
        assert not (out / "rows.jsonl").exists()
    finally:
        holder.kill()
        holder.wait()


def test_the_lock_of_a_dead_process_is_taken_over(tmp_path):
    out = tmp_path / "o"
    holder = _hold_lock(out)
    holder.kill()  # kill -9: the lock file stays behind
    holder.wait()
    assert json.loads((out / ".lock").read_text())["pid"] == holder.pid
    sweep = _sweep(tmp_path, "s.yaml", "4")
    assert main(["run", str(sweep), "--out", str(out), "--quiet", "--no-report"]) == 0
    assert not (out / ".lock").exists()  # released after the command
    assert len(RunStore(out).rows()) == 1


def test_two_processes_at_once_train_each_run_once(tmp_path):
    out = tmp_path / "o"
    sweep = _sweep(tmp_path, "s.yaml", "4, 5, 6, 7, 8, 9, 10, 11")
    cmd = [sys.executable, "-m", "mtlab", "run", str(sweep), "--out", str(out), "--quiet",
           "--no-report", "--chunk", "1"]  # fmt: skip
    first = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not (out / ".lock").exists() and first.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    second = subprocess.run(cmd, stderr=subprocess.PIPE, text=True)
    first.wait(timeout=300)
    assert first.returncode == 0
    if second.returncode == 0:  # only if the first had already finished: then it resumed
        assert "skipped 8" in second.stderr
    else:
        assert second.returncode == 2 and "in use by pid" in second.stderr
    lines = (out / "rows.jsonl").read_text().splitlines()
    ids = [json.loads(x)["run_id"] for x in lines]
    assert len(ids) == len(set(ids)) == 8


def test_storing_is_idempotent_by_run_id(tmp_path):
    store = RunStore(tmp_path / "o")
    row = {"run_id": "abc", "status": "ok", "x": 1.0}
    curve = [{"step": 0, "loss": 1.0}, {"step": 1, "loss": 0.5}]
    assert store.add(row, curve) is True
    assert RunStore(tmp_path / "o").add(row, curve) is False  # a second writer's copy
    assert len(store.rows_path.read_text().splitlines()) == 1
    # lines written twice anyway (e.g. by an old version) never double a row or a curve
    with open(store.curves_path, "a") as f:
        f.write(json.dumps({"run_id": "abc", "curve": curve}) + "\n")
    with open(store.rows_path, "a") as f:
        f.write(json.dumps(row) + "\n")
    assert len(store.results()) == 1 and len(store.curves()) == 2


def test_a_folder_of_another_sweep_is_refused_unless_appended(tmp_path, capsys):
    out = tmp_path / "o"
    a, b = _sweep(tmp_path, "a.yaml", "4, 5"), _sweep(tmp_path, "b.yaml", "6")
    assert main(["run", str(a), "--out", str(out), "--quiet", "--no-report"]) == 0
    for extra in ([], ["--dry-run"]):  # the dry run gives the same verdict
        capsys.readouterr()
        assert main(["run", str(b), "--out", str(out), "--quiet", "--no-report", *extra]) == 2
        assert "another sweep" in capsys.readouterr().err
    assert len(RunStore(out).rows()) == 2
    # the same sweep again resumes
    assert main(["run", str(a), "--out", str(out), "--quiet", "--no-report"]) == 0
    assert main(["run", str(b), "--out", str(out), "--quiet", "--no-report", "--append"]) == 0
    cfg = RunStore(out).read_config()
    assert len(cfg["runs"]) == len(cfg["run_ids"]) == 3 and len(RunStore(out).rows()) == 3
    hist = json.loads((out / "sessions.json").read_text())
    assert [h["append"] for h in hist] == [False, False, True]
    # after appending, either sweep alone is "another sweep" of the folder
    assert main(["run", str(a), "--out", str(out), "--quiet", "--no-report"]) == 2


def test_affinity_into_a_study_folder_and_out_as_a_file_are_refused(tmp_path, capsys):
    out = tmp_path / "o"
    sweep = _sweep(tmp_path, "s.yaml", "4")
    assert main(["run", str(sweep), "--out", str(out), "--quiet", "--no-report"]) == 0
    assert main(["affinity", "--out", str(out), "--epochs", "1"]) == 2
    assert "already holds study" in capsys.readouterr().err
    f = tmp_path / "file"
    f.write_text("x")
    assert main(["run", str(sweep), "--out", str(f), "--quiet"]) == 2
    assert "is a file" in capsys.readouterr().err
    assert main(["affinity", "--out", str(f), "--epochs", "1"]) == 2


def test_lock_context_raises_for_a_live_holder(tmp_path):
    out = tmp_path / "o"
    holder = _hold_lock(out)
    try:
        with pytest.raises(FolderLocked, match=str(holder.pid)), RunStore(out).lock():
            pass
        assert json.loads((out / ".lock").read_text())["pid"] == holder.pid  # untouched
    finally:
        holder.kill()
        holder.wait()
    assert os.path.exists(out / ".lock")


def test_a_missing_solver_package_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "quadprog" else real(name, *a)
    )
    out = tmp_path / "b"
    code = main(["benchmark", "--dataset", "digit-attributes", "--methods", "mean,upgrad",
                 "--preset", "tiny", "--out", str(out)])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert "upgrad" in err and "pip install quadprog" in err
    assert not out.exists()  # nothing trained, nothing written


def test_group_caps_the_budget_and_one_task_is_one_rule(tmp_path, capsys):
    from mtlab.grouping import write_affinity

    four = write_affinity(
        tmp_path / "a4.json",
        ["a", "b", "c", "d"],
        [[0, 1, -1, -1], [1, 0, -1, -1], [-1, -1, 0, 1], [-1, -1, 1, 0]],
    )
    assert main(["group", str(four), "--budget", "5", "--json"]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert out["budget"] == 4 and out["requested_budget"] == 5 and "capped at 4" in captured.err
    assert main(["group", str(four), "--budget", "6"]) == 0
    assert len([ln for ln in capsys.readouterr().out.splitlines()[1:] if ln.strip()]) == 4
    one = write_affinity(tmp_path / "a1.json", ["a"], [[0.0]])
    for extra in ([], ["--json"]):
        assert main(["group", str(one), "--budget", "2", *extra]) == 2
        assert "at least 2" in capsys.readouterr().err
    assert main(["group", str(one), "--budget", "1", "--singletons", "--json"]) == 0


def test_grid_given_a_list_is_named_as_grid(tmp_path, capsys):
    sweep = tmp_path / "s.yaml"
    sweep.write_text("base: {d: 30}\ngrid:\n  - {n_main: [4]}\n")
    assert main(["run", str(sweep), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "grid: must be a mapping" in err and "grids:" in err


def test_a_run_that_cannot_fit_is_refused_by_the_dry_run_and_the_run(tmp_path, capsys):
    sweep = tmp_path / "big.yaml"
    sweep.write_text("base: {d: 2000000000, k1: 4, n_val: 10, n_test: 10}\ngrid: {n_main: [4]}\n")
    out = tmp_path / "o"
    for extra in (["--dry-run"], []):
        assert main(["run", str(sweep), "--out", str(out), "--quiet", *extra]) == 2
        err = capsys.readouterr().err
        assert "GiB" in err and "d=2000000000" in err and "Traceback" not in err
    assert not out.exists()  # no config.yaml, no params/


def test_unwritable_out_exits_2_with_one_line(tmp_path, capsys):
    sweep = _sweep(tmp_path, "s.yaml", "4")
    target = Path("/sys/mtlab-cannot-write-here")  # read-only for every user, root included
    assert main(["run", str(sweep), "--out", str(target), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "cannot write to --out" in err and len(err.strip().splitlines()) == 1
    f = tmp_path / "f"
    f.write_text("x")  # a path below a file: NotADirectoryError
    assert main(["run", str(sweep), "--out", str(f / "sub"), "--quiet"]) == 2
    assert "cannot write to --out" in capsys.readouterr().err


def test_a_ptft_run_of_a_failed_pretraining_names_the_dependency(tmp_path, capsys):
    sweep = tmp_path / "p.yaml"
    sweep.write_text(
        "base: {d: 30, k1: 4, n_val: 10, n_test: 10, max_steps: 50, pt_max_steps: 50,\n"
        "       pt_lr: 1.0e+9, max_restarts: 0}\n"
        "grid: {method: [ptft], n_main: [4, 8]}\n"
    )
    out = tmp_path / "o"
    assert main(["run", str(sweep), "--out", str(out), "--quiet", "--no-report"]) == 0
    err = capsys.readouterr().err
    assert "3 runs" in err  # one counting rule: the PT run is counted with its dependents
    rows = {r["method"]: r for r in RunStore(out).rows()}
    assert rows["pt"]["status"] == "failed"
    ft = [r for r in RunStore(out).rows() if r["method"] == "ptft"]
    assert len(ft) == 2 and all(r["status"] == "failed" for r in ft)
    assert all(f"dependency {rows['pt']['run_id']} (pt) failed" in r["reason"] for r in ft)
    # a finished rerun skips exactly what is stored
    assert main(["run", str(sweep), "--out", str(out), "--quiet", "--no-report"]) == 0
    assert "skipped 3 already stored" in capsys.readouterr().err


def test_reports_group_by_every_swept_field_and_count_failed_runs(tmp_path, capsys):
    import pandas as pd

    sweep = tmp_path / "lr.yaml"
    sweep.write_text(
        "base: {d: 30, k1: 4, n_val: 10, n_test: 10, max_steps: 200, method: stl, n_main: 8,\n"
        "       max_restarts: 0}\n"
        "grid: {lr: [0.05, 1.0e+9], seed: [0, 1]}\n"
    )
    out = tmp_path / "o"
    assert main(["run", str(sweep), "--out", str(out), "--quiet"]) == 0
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary.lr) == [0.05, 1e9]  # one row per swept value, the seed averaged
    assert list(summary.n_runs) == [2, 2] and list(summary.n_failed) == [0, 2]
    assert summary.test_loss_rel_mean.notna().tolist() == [True, False]  # failed: no mean
    # the diverging runs shared an ensemble with the others; only they failed, with the reason
    bad = [r for r in RunStore(out).rows() if r["lr"] == 1e9]
    assert all(r["status"] == "failed" and "diverged" in r["reason"] for r in bad)
    rows = [r for r in RunStore(out).rows() if r["lr"] == 0.05]
    assert summary.test_loss_rel_mean[0] == pytest.approx(sum(r["test_loss_rel"] for r in rows) / 2)
    report = (out / "report.md").read_text()
    assert "stl lr=0.05" in report and "stl lr=1e+09" in report
    assert "2 of 4 runs failed (excluded from every mean)" in report


def test_every_study_report_writes_summary_csv(tmp_path):
    import pandas as pd

    out = tmp_path / "t"
    assert main(["reproduce", "trajectories", "--preset", "tiny", "--out", str(out),
                 "--quiet"]) == 0  # fmt: skip
    summary = pd.read_csv(out / "summary.csv")
    assert {"method", "task", "n_runs", "n_failed", "test_metric_mean", "test_metric_se"} <= set(
        summary.columns
    )
    assert "seed" not in summary.columns and summary.n_runs.sum() == 18  # 13 runs, MTL: 2 tasks


def _busy_core() -> subprocess.Popen:
    """A competing process that keeps one core busy (as another user's job would)."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def test_same_numbers_idle_and_under_load(tmp_path):
    """--chunk auto is a deterministic plan: a tiny preset gives bitwise the same rows on an
    idle machine and with another process using a core."""
    import pandas as pd

    idle, busy = tmp_path / "idle", tmp_path / "busy"
    args = ["reproduce", "diagonal", "--preset", "tiny", "--quiet", "--no-report"]
    assert main([*args, "--out", str(idle)]) == 0
    load = _busy_core()
    try:
        assert main([*args, "--out", str(busy)]) == 0
    finally:
        load.kill()
        load.wait()
    a = pd.read_parquet(idle / "results.parquet").sort_values("run_id").reset_index(drop=True)
    b = pd.read_parquet(busy / "results.parquet").sort_values("run_id").reset_index(drop=True)
    timing = ["wall_s"]
    pd.testing.assert_frame_equal(a.drop(columns=timing), b.drop(columns=timing), check_exact=True)


def test_measured_plan_is_stored_and_reused(tmp_path, monkeypatch):
    from mtlab.runs import executor

    sweep = _sweep(tmp_path, "s.yaml", "4, 5, 6, 7")
    out = tmp_path / "o"
    assert main(["run", str(sweep), "--out", str(out), "--quiet", "--no-report",
                 "--chunk", "measure"]) == 0  # fmt: skip
    plan = json.loads((out / "plan.json").read_text())
    assert plan and all(isinstance(v, int) and v >= 1 for v in plan.values())

    def never(*a, **k):
        raise AssertionError("the stored plan must be reused, not measured again")

    monkeypatch.setattr(executor, "plan_chunk", never)
    (out / "rows.jsonl").write_text("")  # lose every row: the rerun trains all again
    assert main(["run", str(sweep), "--out", str(out), "--quiet", "--no-report",
                 "--chunk", "measure"]) == 0  # fmt: skip
    assert len(RunStore(out).rows()) == 4


def test_auto_chunk_is_a_function_of_the_group_only():
    from mtlab.runs.config import make_config
    from mtlab.runs.family import get_family

    diag = [make_config({"d": 30, "k1": 4, "n_main": n, "seed": s}) for n in (4, 8) for s in (0, 1)]
    fam = get_family("diagonal")
    assert fam.auto_chunk(diag) == 4 and fam.auto_chunk(diag, "cuda") == 4
    relu = get_family("relu")
    small = [
        make_config({"family": "relu", "width": 16, "n_main": 8, "seed": s}) for s in range(40)
    ]
    big = [
        make_config({"family": "relu", "width": 1000, "n_main": 256, "seed": s}) for s in range(4)
    ]
    assert relu.auto_chunk(small) == 16 and relu.auto_chunk(big) == 4
    assert get_family("trajectory").auto_chunk([make_config({"family": "trajectory"})]) == 1


def test_a_run_that_raises_is_isolated(tmp_path, monkeypatch):
    from mtlab.runs.diagonal import DiagonalFamily

    real = DiagonalFamily.run_chunk

    def flaky(self, cfgs, *a, **k):
        if any(c.n_main == 5 for c in cfgs):
            raise RuntimeError("boom")
        return real(self, cfgs, *a, **k)

    monkeypatch.setattr(DiagonalFamily, "run_chunk", flaky)
    sweep = _sweep(tmp_path, "s.yaml", "4, 5, 6")
    out = tmp_path / "o"
    assert main(["run", str(sweep), "--out", str(out), "--quiet", "--no-report"]) == 0
    rows = {r["n_main"]: r for r in RunStore(out).rows()}
    assert rows[5]["status"] == "failed" and rows[5]["reason"] == "raised RuntimeError: boom"
    assert rows[4]["status"] != "failed" and rows[6]["status"] != "failed"


def test_truncated_pretraining_params_are_redone_and_reported(tmp_path, capsys):
    import torch

    sweep = tmp_path / "p.yaml"
    sweep.write_text(
        "base: {d: 30, k1: 4, n_val: 10, n_test: 10, max_steps: 50, pt_max_steps: 50}\n"
        "grid: {method: [ptft], n_main: [4]}\n"
    )
    out = tmp_path / "o"
    assert main(["run", str(sweep), "--out", str(out), "--quiet", "--no-report"]) == 0
    pt = next(r for r in RunStore(out).rows() if r["method"] == "pt")
    path = out / "params" / f"{pt['run_id']}.pt"
    path.write_bytes(path.read_bytes()[:40])  # a crash mid-write of an older version
    capsys.readouterr()
    assert main(["run", str(sweep), "--out", str(out), "--quiet", "--no-report"]) == 0
    assert "redid 1 finished run" in capsys.readouterr().err
    assert set(torch.load(path, weights_only=True))  # readable again
    assert len((out / "rows.jsonl").read_text().splitlines()) == 2  # no row doubled
    path.unlink()  # missing altogether
    assert main(["run", str(sweep), "--out", str(out), "--quiet", "--no-report"]) == 0
    assert "redid 1 finished run" in capsys.readouterr().err and path.exists()


def test_chunk_settings_agree_within_tolerance(tmp_path):
    import numpy as np
    import pandas as pd

    frames = []
    for chunk in ("1", "auto"):
        out = tmp_path / chunk
        assert main(["reproduce", "diagonal", "--preset", "tiny", "--out", str(out), "--quiet",
                     "--no-report", "--chunk", chunk]) == 0  # fmt: skip
        frames.append(pd.read_parquet(out / "results.parquet").sort_values("run_id"))
    a, b = (f.test_loss.to_numpy(float) for f in frames)
    assert list(frames[0].run_id) == list(frames[1].run_id)
    # ensembles reduce in another order than runs alone (float32): stated tolerance 1e-3
    np.testing.assert_allclose(a, b, rtol=1e-3)


def test_summary_table_on_a_synthetic_results_table():
    import pandas as pd

    from mtlab.studies.summary import summary_table

    rows = []
    for lr in (0.1, 0.01):
        for seed in range(4):
            failed = lr == 0.1 and seed == 3
            rows.append({"family": "diagonal", "method": "stl", "lr": lr, "seed": seed,
                         "d": 30, "run_id": f"{lr}-{seed}",
                         "status": "failed" if failed else "converged",
                         "test_loss_rel": 9e8 if failed else lr + seed,
                         "test_loss": 1.0})  # fmt: skip
    s = summary_table(pd.DataFrame(rows))
    assert list(s.columns[:3]) == ["lr", "n_runs", "n_failed"]  # only lr varies; no seed column
    by = s.set_index("lr")
    assert by.loc[0.1, "n_runs"] == 4 and by.loc[0.1, "n_failed"] == 1
    assert by.loc[0.1, "test_loss_rel_mean"] == pytest.approx(0.1 + 1)  # seeds 0–2 only
    assert by.loc[0.01, "test_loss_rel_mean"] == pytest.approx(0.01 + 1.5)
    assert by.loc[0.01, "test_loss_rel_se"] > 0


def test_kill_9_mid_sweep_then_rerun_loses_and_doubles_nothing(tmp_path):
    import pandas as pd

    sweep = _sweep(tmp_path, "s.yaml", "4, 5, 6, 7, 8, 9, 10, 11")
    out, ref = tmp_path / "o", tmp_path / "ref"
    cmd = [sys.executable, "-m", "mtlab", "run", str(sweep), "--out", str(out), "--quiet",
           "--no-report", "--chunk", "1"]  # fmt: skip
    proc = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
    rows = out / "rows.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if rows.exists() and len(rows.read_text().splitlines()) >= 2:
            break
        time.sleep(0.01)
    proc.kill()  # SIGKILL: no cleanup, the lock file stays behind
    proc.wait()
    assert main(["run", str(sweep), "--out", str(out), "--quiet", "--no-report",
                 "--chunk", "1"]) == 0  # fmt: skip
    assert main(["run", str(sweep), "--out", str(ref), "--quiet", "--no-report",
                 "--chunk", "1"]) == 0  # fmt: skip
    ids = [json.loads(x)["run_id"] for x in rows.read_text().splitlines() if x.strip()]
    assert len(ids) == len(set(ids)) == 8
    a = pd.read_parquet(out / "results.parquet").sort_values("run_id").reset_index(drop=True)
    b = pd.read_parquet(ref / "results.parquet").sort_values("run_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(a.drop(columns="wall_s"), b.drop(columns="wall_s"))


def test_status_counts_failures_and_a_running_writer(tmp_path, capsys):
    sweep = tmp_path / "lr.yaml"
    sweep.write_text(
        "base: {d: 30, k1: 4, n_val: 10, n_test: 10, max_steps: 50, method: stl, n_main: 8,\n"
        "       max_restarts: 0}\n"
        "grid: {lr: [0.05, 1.0e+9]}\n"
    )
    out = tmp_path / "o"
    assert main(["run", str(sweep), "--out", str(out), "--quiet", "--no-report"]) == 0
    capsys.readouterr()
    assert main(["status", str(out)]) == 0
    text = capsys.readouterr().out
    assert "stl                 1      1       0      2" in text
    assert "failed" in text and "diverged" in text and "not running" in text
    holder = _hold_lock(out)
    try:
        assert main(["status", str(out)]) == 0
        assert f"running: pid {holder.pid}" in capsys.readouterr().out
    finally:
        holder.kill()
        holder.wait()
    assert main(["status", str(tmp_path)]) == 2  # not a run folder
