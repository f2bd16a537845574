"""Sweeps on Ray (issue 15), each fault injected for real on a local Ray instance: a killed
worker, a worker that always dies, a run that raises or diverges inside a Ray chunk, the driver
killed with SIGKILL or interrupted with Ctrl-C — nothing finished is lost, nothing is doubled, and
the numbers equal those of the local executor (bitwise: the same ensemble plan)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from processes import wait_gone, wait_rows  # tests/: shared with the other fault tests

from mtlab.cli import main
from mtlab.runs.executor import ExecutorError, execute
from mtlab.runs.ray_executor import RayExecutor
from mtlab.runs.ray_guardian import descendants
from mtlab.runs.store import RunStore
from mtlab.runs.sweep import load_sweep

TESTS = Path(__file__).parent
#: six stl runs in one ensemble group; the lr=1e9 ones diverge
SWEEP = (
    "base: {d: 30, k1: 4, n_val: 10, n_test: 10, max_steps: %d, method: stl, n_main: 8,\n"
    "       max_restarts: 0}\n"
    "grid: {lr: [0.05, %s], seed: [0, 1, 2]}\n"
)


def _configs(tmp_path: Path, steps: int = 200, lr2: str = "0.02", name: str = "s.yaml"):
    path = tmp_path / name
    path.write_text(SWEEP % (steps, lr2))
    return path, load_sweep(path)[1]


def _frame(out: Path) -> pd.DataFrame:
    df = pd.read_parquet(out / "results.parquet").sort_values("run_id").reset_index(drop=True)
    return df.drop(columns=[c for c in ("wall_s",) if c in df])


def test_local_and_ray_give_the_same_runs_and_numbers(tmp_path, one_thread):
    _, cfgs = _configs(tmp_path)
    local = execute(cfgs, RunStore(tmp_path / "local"), chunk=2, progress=False)
    ex = RayExecutor(num_cpus=2)
    remote = execute(cfgs, RunStore(tmp_path / "ray"), chunk=2, progress=False, executor=ex)
    assert remote["executor"] == "ray" and remote["trained"] == local["trained"] == 6
    assert [c["size"] for c in remote["chunks"]] == [c["size"] for c in local["chunks"]]
    assert all(c["pid"] != os.getpid() for c in remote["chunks"])  # trained in the workers
    pd.testing.assert_frame_equal(_frame(tmp_path / "local"), _frame(tmp_path / "ray"))
    assert ex._ray is None and ex._guardian is None  # execute started it, so it closed it


def test_a_run_that_raises_or_diverges_in_a_ray_chunk_fails_alone(tmp_path, one_thread):
    _, cfgs = _configs(tmp_path, lr2="1.0e+9")
    env = {
        "env_vars": {"PYTHONPATH": str(TESTS), "MTLAB_FAULT_RAISE_SEED": "1"},
        "worker_process_setup_hook": "ray_faults.install",
    }
    ex = RayExecutor(num_cpus=2, runtime_env=env)
    stats = execute(cfgs, RunStore(tmp_path / "o"), chunk=3, progress=False, executor=ex)
    rows = {(r["lr"], r["seed"]): r for r in RunStore(tmp_path / "o").rows()}
    assert len(rows) == 6 and stats["failed"] == 4
    for lr in (0.05, 1e9):  # the raising runs: alone, with the exception as the reason
        assert rows[(lr, 1)]["reason"] == "raised RuntimeError: injected fault"
    for seed in (0, 2):
        assert rows[(1e9, seed)]["status"] == "failed" and "diverged" in rows[(1e9, seed)]["reason"]
        assert rows[(0.05, seed)]["status"] != "failed"
    local = execute(
        [c for c in cfgs if c.seed != 1], RunStore(tmp_path / "l"), chunk=3, progress=False
    )
    assert local["trained"] == 4
    a, b = _frame(tmp_path / "o"), _frame(tmp_path / "l")
    a, b = (f[f.status != "failed"].reset_index(drop=True) for f in (a, b))
    cols = [c for c in b.columns if b[c].notna().any()]  # not the columns only failures fill
    pd.testing.assert_frame_equal(a[cols], b[cols], check_dtype=False)  # the same numbers


def test_a_killed_worker_is_retried_and_loses_nothing(tmp_path, one_thread):
    _, cfgs = _configs(tmp_path, steps=6000)
    killed: list[int] = []

    def kill_a_chunk() -> None:  # SIGKILL the first worker seen training a chunk
        deadline = time.time() + 120
        while not killed and time.time() < deadline:
            for pid in descendants(os.getpid()):
                try:
                    cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
                except OSError:
                    continue
                if cmd.startswith(b"ray::mtlab"):
                    time.sleep(0.3)  # mid-chunk
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                    return
            time.sleep(0.02)

    killer = threading.Thread(target=kill_a_chunk)
    killer.start()
    ex = RayExecutor(num_cpus=2, retries=2)
    stats = execute(cfgs, RunStore(tmp_path / "ray"), chunk=3, progress=False, executor=ex)
    killer.join()
    assert killed, "no chunk was seen running"
    assert stats["trained"] == 6 and stats["failed"] == 0
    assert killed[0] not in {c["pid"] for c in stats["chunks"]}  # its chunk ran again elsewhere
    ids = [r["run_id"] for r in RunStore(tmp_path / "ray").rows()]
    assert len(ids) == len(set(ids)) == 6
    execute(cfgs, RunStore(tmp_path / "local"), chunk=3, progress=False)
    pd.testing.assert_frame_equal(_frame(tmp_path / "local"), _frame(tmp_path / "ray"))


def test_a_worker_that_always_dies_is_isolated_then_its_run_failed(tmp_path):
    _, cfgs = _configs(tmp_path)
    env = {
        "env_vars": {"PYTHONPATH": str(TESTS), "MTLAB_FAULT_DIE_SEED": "2"},
        "worker_process_setup_hook": "ray_faults.install",
    }
    ex = RayExecutor(num_cpus=2, retries=1, runtime_env=env)
    stats = execute(cfgs, RunStore(tmp_path / "o"), chunk=6, progress=False, executor=ex)
    rows = RunStore(tmp_path / "o").rows()
    assert len(rows) == 6 and stats["failed"] == 2
    for r in rows:
        if r["seed"] == 2:
            assert r["status"] == "failed" and "Ray worker was lost 2 time(s)" in r["reason"]
        else:
            assert r["status"] != "failed"


def _driver(sweep: Path, out: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "mtlab", "run", str(sweep), "--out", str(out), "--quiet",
           "--no-report", "--chunk", "1", "--executor", "ray"]  # fmt: skip
    env = {**os.environ, "MTLAB_THREADS": "1"}

    def default_sigint() -> None:  # a parent run in the background (nohup, CI) may ignore SIGINT
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    return subprocess.Popen(
        cmd, stderr=subprocess.PIPE, text=True, env=env, preexec_fn=default_sigint
    )


@pytest.mark.parametrize("how", ["kill -9", "ctrl-c"])
def test_the_driver_stopped_mid_sweep_then_rerun(tmp_path, how, one_thread):
    sweep, cfgs = _configs(tmp_path, steps=8000)  # ≥ 1 s per run: the signal lands mid-sweep
    out = tmp_path / "o"
    proc = _driver(sweep, out)
    wait_rows(proc, out, 2)
    started = descendants(proc.pid)  # the guardian and the Ray instance it holds
    assert len(started) >= 3
    if how == "kill -9":
        proc.kill()  # no cleanup at all; the lock file stays behind
        proc.wait()
    else:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 130
        assert proc.stderr is not None and "interrupted" in proc.stderr.read()
    assert wait_gone(started) == [], "Ray processes outlived their driver"
    kept = [json.loads(x)["run_id"] for x in (out / "rows.jsonl").read_text().splitlines()]
    assert 2 <= len(kept) == len(set(kept)) < 6
    args = ["run", str(sweep), "--out", str(out), "--quiet", "--no-report", "--chunk", "1"]
    assert main([*args, "--executor", "ray"]) == 0
    ids = [r["run_id"] for r in RunStore(out).rows()]
    assert len(ids) == len(set(ids)) == 6
    execute(cfgs, RunStore(tmp_path / "local"), chunk=1, progress=False)
    pd.testing.assert_frame_equal(_frame(tmp_path / "local"), _frame(out))


def test_cluster_options_are_checked_before_any_work(tmp_path, capsys, monkeypatch):
    sweep, _ = _configs(tmp_path)
    out = tmp_path / "o"
    base = ["run", str(sweep), "--out", str(out), "--quiet"]
    cases = [
        (["--address", "auto"], "--address only apply with --executor ray"),
        (["--executor", "ray", "--chunk", "measure"], "--chunk measure times chunks"),
        (["--executor", "ray", "--gpus-per-chunk", "-1"], "--gpus-per-chunk must be >= 0"),
        (["--executor", "ray", "--cpus-per-chunk", "0"], "--cpus-per-chunk must be > 0"),
        (["--executor", "ray", "--cpus-per-chunk", "64"], "no node of the Ray cluster has 64 CPUs"),
    ]
    for extra, message in cases:
        assert main([*base, *extra]) == 2
        assert message in capsys.readouterr().err
        assert not out.exists()  # refused before the folder is touched
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a)
    )
    assert main([*base, "--executor", "ray"]) == 2
    assert 'pip install "mtlab[ray]"' in capsys.readouterr().err and not out.exists()
    with pytest.raises(ExecutorError, match="--gpus-per-chunk"):
        RayExecutor(device="cuda")
