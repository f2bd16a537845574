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
  ran them before issue 26), and — ``by_dependency_hours`` — as the executor runs them now: the
  presets' real chunk plan, each chunk released once its own pretrainings have finished.

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


def _group_name(study: str, group: list[Any]) -> str:
    """The name a group's timing has in the projection JSONs."""
    c0 = group[0]
    if study == "diagonal":
        ns: list[int] = []
        for c in group:
            if c.n_main not in ns:
                ns.append(c.n_main)
        return f"{c0.method} " + ("0" if c0.method == "pt" else "/".join(map(str, ns)))
    if c0.method in ("ptft_lr", "ntk"):
        return f"{c0.method} (fits)"
    if c0.method in ("pt", "mtl"):
        return f"{c0.method} seed={c0.seed} (all n_main)"
    return f"{c0.method} n_main={c0.n_main}"


def _dependency_chunks(study: str) -> list[dict[str, Any]]:
    """The paper preset's chunks as the executor plans them (its dependency phases, groups and
    order; the measured ensemble sizes), each with its runs, the runs it depends on and its
    projected seconds (the group's measured per-run cost)."""
    from mtlab.runs.executor import _groups, expand_dependencies
    from mtlab.studies import get_study

    if study == "diagonal":
        rows = json.loads((RESULTS / "paper_projection.json").read_text())["paper"]["groups"]
        timing = {f"{g['method']} {g['n_main']}": g for g in rows}
        for g in timing.values():
            g["hours"] = g["upper_bound_hours"]
    else:
        rows = json.loads((RESULTS / "relu_paper_projection.json").read_text())[study]["groups"]
        timing = {g["group"]: g for g in rows}
    def per_run(cfg: Any, group: list[Any]) -> float:
        fitted = study != "diagonal" and cfg.method in ("ptft_lr", "ntk")  # timed per method
        t = timing[f"{cfg.method} (fits)" if fitted else _group_name(study, group)]
        return float(t["hours"]) * 3600 / int(t["runs"])

    chunks: list[dict[str, Any]] = []
    for phase in expand_dependencies(get_study(study).configs("paper")):
        for group in _groups(phase):
            size = int(timing[_group_name(study, group)].get("chunk", 1))
            for i in range(0, len(group), size):
                part = group[i : i + size]
                chunks.append({
                    "runs": {c.run_id() for c in part},
                    "deps": {d.run_id() for c in part for d in c.dependencies()},
                    "seconds": sum(per_run(c, group) for c in part),
                })  # fmt: skip
    return chunks


def _makespan_by_dependency(chunks: list[dict[str, Any]], machines: int) -> float:
    """List scheduling as :class:`~mtlab.runs.executor.Schedule` releases chunks: a free machine
    takes the first chunk, in plan order, whose dependencies have finished."""
    finished_at: dict[str, float] = {}
    waiting = list(range(len(chunks)))
    free = [0.0] * machines
    running: list[tuple[float, int]] = []
    now = 0.0
    while waiting or running:
        ready = [i for i in waiting if all(d in finished_at for d in chunks[i]["deps"])]
        while ready and free:
            i = ready.pop(0)
            waiting.remove(i)
            free.pop()
            heapq.heappush(running, (now + chunks[i]["seconds"], i))
        end, i = heapq.heappop(running)  # the next chunk to finish frees its machine
        now = end
        free.append(now)
        for r in chunks[i]["runs"]:
            finished_at[r] = now
    return now


def projection() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for study, chunks in _groups().items():
        longest = {p: max((c for c in chunks if c["phase"] == p), key=lambda c: c["seconds"])
                   for p in {c["phase"] for c in chunks}}  # fmt: skip
        one, _ = _makespan(chunks, 1)
        planned = _dependency_chunks(study)
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
                # as if finetuning chunks did not wait for anything (the bound given before)
                "without_barrier_hours": flat / 3600,
                # what the executor does now: each chunk waits for its own pretrainings only
                "by_dependency_hours": _makespan_by_dependency(planned, k) / 3600,
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
