"""Worker processes on one machine (issue 26), each fault injected for real: a worker killed
mid-chunk, a worker that always dies, the driver killed with SIGKILL or interrupted with Ctrl-C —
nothing finished is lost, nothing is doubled, no process is left behind, and the numbers are
bitwise those of one worker and of the in-process executor. Chunks are released by their own
dependencies (:class:`Schedule`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from processes import wait_gone, wait_rows  # tests/: shared with the other fault tests

from mtlab.cli import main
from mtlab.runs.diagonal import DiagonalFamily
from mtlab.runs.executor import LocalExecutor, Schedule, execute
from mtlab.runs.ray_guardian import descendants
from mtlab.runs.store import RunStore
from mtlab.runs.sweep import load_sweep
from mtlab.runs.workers import WorkerExecutor, granted_cores

SWEEP = (
    "base: {d: 30, k1: 4, n_val: 10, n_test: 10, max_steps: %d, method: stl, n_main: 8,\n"
    "       max_restarts: 0}\n"
    "grid: {lr: [0.05, %s], seed: [0, 1, 2]}\n"
)
PTFT = (
    "base: {d: 30, k1: 4, n_val: 10, n_test: 10, max_steps: 60, pt_max_steps: 60,\n"
    "       max_restarts: 0}\n"
    "grid: {method: [ptft], n_main: [4, 8], seed: [0, 1]}\n"
)


def _configs(tmp_path: Path, steps: int = 200, lr2: str = "0.02", text: str | None = None):
    path = tmp_path / "s.yaml"
    path.write_text(text or SWEEP % (steps, lr2))
    return path, load_sweep(path)[1]


def _frame(out: Path) -> pd.DataFrame:
    df = pd.read_parquet(out / "results.parquet")
    return df.drop(columns=[c for c in ("wall_s",) if c in df])


@pytest.mark.parametrize("text", [None, PTFT], ids=["stl", "ptft"])
def test_any_worker_count_gives_the_numbers_of_one_worker_and_of_in_process(
    tmp_path, one_thread, text
):
    _, cfgs = _configs(tmp_path, text=text)
    for n in (1, 3):
        ex = WorkerExecutor(n)
        stats = execute(cfgs, RunStore(tmp_path / f"w{n}"), chunk=2, progress=False, executor=ex)
        assert stats["executor"] == "workers" and stats["failed"] == 0
        assert all(c["pid"] != os.getpid() for c in stats["chunks"])  # trained in the workers
        assert ex._workers == []  # execute started it, so execute stopped its workers
    execute(cfgs, RunStore(tmp_path / "in"), chunk=2, progress=False, executor=LocalExecutor())
    pd.testing.assert_frame_equal(_frame(tmp_path / "w1"), _frame(tmp_path / "w3"))
    pd.testing.assert_frame_equal(_frame(tmp_path / "in"), _frame(tmp_path / "w3"))


def test_a_chunk_is_released_once_its_own_pretraining_is_stored(tmp_path):
    _, cfgs = _configs(tmp_path, text=PTFT)
    store = RunStore(tmp_path / "o")
    from mtlab.runs.executor import expand_dependencies

    pt, ft = expand_dependencies(cfgs)
    chunks = [[c] for c in pt] + [[c] for c in ft]
    failed: list[dict] = []
    sched = Schedule(chunks, store, lambda row, *a: failed.append(row))
    first = sched.ready()
    assert sorted(c[0].run_id() for c in first) == sorted(c.run_id() for c in pt)
    assert sched.ready() == [] and not sched.finished()
    done = pt[0]
    sched.stored({"run_id": done.run_id(), "status": "ok"})
    released = [c[0] for c in sched.ready()]  # the other pretraining is still running
    assert released and all(d.run_id() == done.run_id() for c in released
                            for d in c.dependencies())  # fmt: skip
    assert len(released) == sum(1 for c in ft if c.dependencies()[0].run_id() == done.run_id())
    sched.stored({"run_id": pt[1].run_id(), "status": "failed", "reason": "diverged"})
    assert sched.ready() == [] and sched.finished()  # its finetunings stored as failed
    assert len(failed) == len(ft) - len(released)
    assert all("diverged" in r["reason"] for r in failed)


def _die_once(monkeypatch, marker: Path, seed: int) -> None:
    """The first chunk holding a run of ``seed`` kills its own worker (as the OOM killer would)."""
    real = DiagonalFamily.run_chunk

    def faulty(self, cfgs, *args, **kwargs):
        if any(c.seed == seed for c in cfgs) and not marker.exists():
            marker.write_text("died")
            os.kill(os.getpid(), signal.SIGKILL)
        return real(self, cfgs, *args, **kwargs)

    monkeypatch.setattr(DiagonalFamily, "run_chunk", faulty)  # workers are forked with it


def test_a_killed_worker_is_retried_and_loses_nothing(tmp_path, monkeypatch, one_thread):
    _, cfgs = _configs(tmp_path)
    _die_once(monkeypatch, tmp_path / "marker", seed=1)
    stats = execute(cfgs, RunStore(tmp_path / "w"), chunk=2, progress=False,
                    executor=WorkerExecutor(2))  # fmt: skip
    assert (tmp_path / "marker").exists() and stats["failed"] == 0
    ids = [r["run_id"] for r in RunStore(tmp_path / "w").rows()]
    assert len(ids) == len(set(ids)) == 6
    monkeypatch.undo()
    execute(cfgs, RunStore(tmp_path / "in"), chunk=2, progress=False)
    pd.testing.assert_frame_equal(_frame(tmp_path / "in"), _frame(tmp_path / "w"))


def test_a_worker_that_always_dies_is_isolated_then_its_run_failed(tmp_path, monkeypatch):
    _, cfgs = _configs(tmp_path)
    real = DiagonalFamily.run_chunk

    def always(self, cfgs, *args, **kwargs):
        if any(c.seed == 2 for c in cfgs):
            os.kill(os.getpid(), signal.SIGKILL)
        return real(self, cfgs, *args, **kwargs)

    monkeypatch.setattr(DiagonalFamily, "run_chunk", always)
    stats = execute(cfgs, RunStore(tmp_path / "o"), chunk=6, progress=False,
                    executor=WorkerExecutor(2, retries=1))  # fmt: skip
    rows = RunStore(tmp_path / "o").rows()
    assert len(rows) == 6 and stats["failed"] == 2
    for r in rows:
        if r["seed"] == 2:
            assert r["status"] == "failed"
            assert "worker process died 2 time(s) (exit code -9)" in r["reason"]
        else:
            assert r["status"] != "failed"


def _driver(sweep: Path, out: Path, workers: int = 2) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "mtlab", "run", str(sweep), "--out", str(out), "--quiet",
           "--no-report", "--chunk", "1", "--workers", str(workers)]  # fmt: skip

    def default_sigint() -> None:  # a parent run in the background (nohup, CI) may ignore SIGINT
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    return subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint)


@pytest.mark.parametrize("how", ["kill -9 driver", "ctrl-c", "kill -9 worker"])
def test_stopped_mid_sweep_then_rerun(tmp_path, how, one_thread):
    sweep, cfgs = _configs(tmp_path, steps=6000)  # ≥ 0.5 s per run: the signal lands mid-sweep
    out = tmp_path / "o"
    proc = _driver(sweep, out)
    wait_rows(proc, out, 2)
    workers = descendants(proc.pid)
    assert len(workers) == 2
    if how == "kill -9 driver":
        proc.kill()  # no cleanup at all; the lock file stays behind
        proc.wait()
    elif how == "ctrl-c":
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 130
        assert proc.stderr is not None and "interrupted" in proc.stderr.read()
    else:
        os.kill(workers[0], signal.SIGKILL)  # its chunk is retried on a fresh worker
        assert proc.wait(timeout=120) == 0
    assert wait_gone(workers) == [], "worker processes outlived their driver"
    kept = [json.loads(x)["run_id"] for x in (out / "rows.jsonl").read_text().splitlines()]
    assert 2 <= len(kept) == len(set(kept))
    assert (len(kept) == 6) == (how == "kill -9 worker")
    args = ["run", str(sweep), "--out", str(out), "--quiet", "--no-report", "--chunk", "1"]
    assert main(args) == 0
    ids = [json.loads(x)["run_id"] for x in (out / "rows.jsonl").read_text().splitlines()]
    assert len(ids) == len(set(ids)) == 6  # exactly one row per run
    execute(cfgs, RunStore(tmp_path / "ref"), chunk=1, progress=False)
    pd.testing.assert_frame_equal(_frame(tmp_path / "ref"), _frame(out))


def test_workers_option_is_checked_before_any_work(tmp_path, capsys):
    sweep, _ = _configs(tmp_path)
    out = tmp_path / "o"
    with pytest.raises(SystemExit) as err:
        main(["run", str(sweep), "--out", str(out), "--workers", "-1"])
    assert err.value.code == 2
    assert main(["run", str(sweep), "--out", str(out), "--workers", "2", "--executor", "ray"]) == 2
    assert "--workers is for this machine" in capsys.readouterr().err
    assert main(["run", str(sweep), "--out", str(out), "--workers", "0", "--retries", "1"]) == 2
    assert not out.exists()
    assert main(["run", str(sweep), "--out", str(out), "--quiet", "--no-report"]) == 0
    sessions = json.loads((out / "sessions.json").read_text())
    assert sessions[-1]["executor"] == "workers" and granted_cores() >= 1
