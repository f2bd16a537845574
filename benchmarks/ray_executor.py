"""Sweeps on Ray vs in-process: wall time, per-chunk overhead, and a cluster projection.

Three parts (``--parts``, default all):

* ``overhead``: ``--chunks`` one-run chunks of a few steps, in-process vs Ray with one worker;
  the difference per chunk is Ray's overhead (submit, schedule, pickle, return, store), and the
  instance's start-up time is timed separately. With the measured time per run of each preset,
  this gives the ensemble size that keeps the overhead under 5 % of a chunk.
* ``presets``: the quick ``diagonal`` and ``relu-nested`` presets, in-process (one intra-op thread:
  what ``mtlab`` uses on this 2-core machine) vs a local Ray instance with 1 and 2 workers (one
  CPU and one thread per chunk); the same ensemble plan, so the results must be bitwise equal
  (checked and reported).
* ``projection``: the paper presets on K machines like this one (K = 1, 8, 64), from the measured
  per-run-step cost of every ensemble group (``benchmarks/results/paper_projection.json`` and
  ``relu_paper_projection.json``: 2 threads, one chunk at a time, so one chunk per machine here),
  as upper bounds (every run uses its step budget). Chunks are list-scheduled in the executor's
  order onto free machines, phase by phase (pretraining before finetuning, as the executor
  runs them).

    python benchmarks/ray_executor.py [--parts overhead,presets,projection] [--json out.json]
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from mtlab.runs.executor import execute
from mtlab.runs.ray_executor import RayExecutor
from mtlab.runs.store import RunStore
from mtlab.runs.sweep import load_sweep
from mtlab.studies import get_study

RESULTS = Path(__file__).parent / "results"
TINY = (
    "base: {d: 30, k1: 4, n_val: 10, n_test: 10, max_steps: 20, method: stl, n_main: 8}\n"
    "grid: {seed: [%s]}\n"
)


def _frame(out: Path) -> pd.DataFrame:
    df = pd.read_parquet(out / "results.parquet").sort_values("run_id").reset_index(drop=True)
    return df.drop(columns=[c for c in df.columns if c in ("wall_s",)])


def overhead(n_chunks: int, root: Path) -> dict[str, Any]:
    path = root / "tiny.yaml"
    path.write_text(TINY % ", ".join(str(s) for s in range(n_chunks)))
    cfgs = load_sweep(path)[1]
    t0 = time.perf_counter()
    execute(cfgs, RunStore(root / "tiny-local"), chunk=1, progress=False)
    local = time.perf_counter() - t0
    ex = RayExecutor(num_cpus=1)
    t0 = time.perf_counter()
    ex.start()
    startup = time.perf_counter() - t0
    warm = load_sweep(path)[1][:1]  # the worker imports torch and mtlab once
    execute(warm, RunStore(root / "tiny-warm"), chunk=1, progress=False, executor=ex)
    t0 = time.perf_counter()
    stats = execute(cfgs, RunStore(root / "tiny-ray"), chunk=1, progress=False, executor=ex)
    ray_s = time.perf_counter() - t0
    ex.close()
    compute = sum(c["compute_seconds"] for c in stats["chunks"])
    return {
        "chunks": n_chunks,
        "local_s": local,
        "ray_s": ray_s,
        "ray_startup_s": startup,
        "overhead_per_chunk_s": (ray_s - local) / n_chunks,
        "worker_compute_s": compute,
    }


def preset(study: str, root: Path, worker_counts: tuple[int, ...] = (1, 2)) -> dict[str, Any]:
    cfgs = get_study(study).configs("quick")
    out: dict[str, Any] = {"study": study}
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    stats = execute(cfgs, RunStore(root / f"{study}-local"), progress=False)
    out["local_s"] = time.perf_counter() - t0
    out["runs"] = stats["trained"]
    out["chunks"] = len(stats["chunks"])
    out["median_run_s"] = float(
        pd.Series([c["seconds"] / c["size"] for c in stats["chunks"]]).median()
    )
    ref = _frame(root / f"{study}-local")
    out["local_compute_s"] = sum(c["seconds"] for c in stats["chunks"])
    for workers in worker_counts:
        ex = RayExecutor(num_cpus=workers)
        t0 = time.perf_counter()
        ex.start()
        startup = time.perf_counter() - t0
        folder = root / f"{study}-ray{workers}"
        t1 = time.perf_counter()
        rstats = execute(cfgs, RunStore(folder), progress=False, executor=ex)
        wall = time.perf_counter() - t1
        ex.close()
        got = _frame(folder)
        same = ref.equals(got[ref.columns]) if list(got.run_id) == list(ref.run_id) else False
        out[f"ray{workers}"] = {
            "startup_s": startup,
            "sweep_s": wall,
            "bitwise_equal": same,
            # the workers' own time in the families' code (vs local_compute_s: the same work)
            "worker_compute_s": sum(c["compute_seconds"] for c in rstats["chunks"]),
        }
    return out


def _groups() -> dict[str, list[dict[str, Any]]]:
    """Every paper preset's chunks: (name, phase, seconds), in the executor's order."""
    presets: dict[str, list[dict[str, Any]]] = {}
    diag = json.loads((RESULTS / "paper_projection.json").read_text())["paper"]["groups"]
    relu = json.loads((RESULTS / "relu_paper_projection.json").read_text())
    rows = [
        ("diagonal", g["method"], f"{g['method']} n_main={g['n_main']}", g["runs"],
         g.get("chunk", 1), g["upper_bound_hours"])
        for g in diag
    ]  # fmt: skip
    for study in ("relu-correlated", "relu-nested", "relu-magnitude"):
        rows += [
            (study, g["group"].split(" ")[0], g["group"], g["runs"], g.get("chunk", 1),
             g["hours"])
            for g in relu[study]["groups"]
        ]  # fmt: skip
    for study, method, name, runs, chunk, hours in rows:
        per_run = hours * 3600 / runs
        phase = 1 if method.startswith("ptft") else 0  # finetuning waits for its pretraining
        for start in range(0, runs, chunk):
            size = min(chunk, runs - start)
            presets.setdefault(study, []).append(
                {"group": name, "phase": phase, "seconds": per_run * size}
            )
    return presets


def _makespan(chunks: list[dict[str, Any]], machines: int) -> tuple[float, list[float]]:
    """List scheduling in submission order, one chunk per machine, phase after phase."""
    total, per_phase = 0.0, []
    for phase in sorted({c["phase"] for c in chunks}):
        free = [0.0] * machines
        for c in (c for c in chunks if c["phase"] == phase):
            heapq.heappush(free, heapq.heappop(free) + c["seconds"])
        per_phase.append(max(free))
        total += per_phase[-1]
    return total, per_phase


def projection() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for study, chunks in _groups().items():
        longest = {p: max((c for c in chunks if c["phase"] == p), key=lambda c: c["seconds"])
                   for p in {c["phase"] for c in chunks}}  # fmt: skip
        one, _ = _makespan(chunks, 1)
        row: dict[str, Any] = {"chunks": len(chunks), "longest": {}}
        for p, c in longest.items():
            row["longest"][f"phase {p}"] = {"group": c["group"], "hours": c["seconds"] / 3600}
        critical = sum(c["seconds"] for c in longest.values())
        row["critical_path_hours"] = critical / 3600
        for k in (1, 8, 64):
            span, phases = _makespan(chunks, k)
            flat, _ = _makespan([{**c, "phase": 0} for c in chunks], k)
            row[f"K={k}"] = {
                "hours": span / 3600,
                # as if finetuning chunks did not wait for the whole first phase (a bound on
                # what scheduling by each run's own dependency could gain)
                "without_barrier_hours": flat / 3600,
                "speedup": one / span,
                "phase_hours": [p / 3600 for p in phases],
                "at_critical_path": math.isclose(span, critical, rel_tol=0.02),
            }
        out[study] = row
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--parts", default="overhead,presets,projection")
    ap.add_argument("--chunks", type=int, default=60)
    ap.add_argument("--studies", default="diagonal,relu-nested")
    ap.add_argument("--workers", default="1,2", help="local Ray instances' worker counts")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    parts = args.parts.split(",")
    result: dict[str, Any] = {
        "machine": f"{platform.machine()}, {len(__import__('os').sched_getaffinity(0))} cores",
        "torch": torch.__version__,
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if "overhead" in parts:
            result["overhead"] = overhead(args.chunks, root)
            print(json.dumps(result["overhead"], indent=1), flush=True)
        if "presets" in parts:
            counts = tuple(int(w) for w in args.workers.split(","))
            result["presets"] = [preset(s, root, counts) for s in args.studies.split(",")]
            print(json.dumps(result["presets"], indent=1), flush=True)
    if "projection" in parts:
        result["projection"] = projection()
        print(json.dumps(result["projection"], indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
