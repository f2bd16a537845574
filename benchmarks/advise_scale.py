"""Scale of the advice: exact grouping time by T × budget, and the cost of affinity probes on many
tasks (lookahead vs the first-order estimate vs no probe).

* ``grouping``: ``best_grouping`` on random affinity matrices (entries N(0, 0.1²), seed 0) for
  T = 6 … ``--max-tasks`` and budgets 2 … 4, with a ``--limit`` (default 60 s) anytime search:
  seconds, nodes, whether it finished, and for unfinished searches the certified gap
  (bound − best found).
* ``probes``: one MTL run of the own-data family (``mtlab.runs.owndata``) on a planted table
  widened to T tasks
  (noisy copies of the six planted targets), no probe vs lookahead probes vs first-order probes
  every 100 steps; the probes' share of the training time.

    python benchmarks/advise_scale.py [--parts grouping,probes] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from mtlab.advise.synthetic import planted_table
from mtlab.grouping import best_grouping
from mtlab.runs.config import make_config
from mtlab.runs.owndata import FAMILY, file_digest


def grouping(max_tasks: int, limit: float) -> list[dict[str, Any]]:
    rows = []
    for b in (2, 3, 4):
        for T in range(6, max_tasks + 1):
            A = np.random.default_rng(0).normal(0, 0.1, size=(T, T))
            t0 = time.perf_counter()
            g = best_grouping(A, b, time_limit=limit, anytime=True)
            rows.append({
                "tasks": T, "budget": b, "seconds": time.perf_counter() - t0, "nodes": g.nodes,
                "optimal": g.optimal, "gap": None if g.optimal else g.bound - g.value,
            })  # fmt: skip
            print(rows[-1], flush=True)
            if not g.optimal:
                break  # larger T only takes longer
    return rows


def probes(tasks: int, root: Path) -> dict[str, Any]:
    df = planted_table(4000, seed=0)
    base = ["a", "b", "c", "d", "e", "noise"]
    rng = np.random.default_rng(1)
    names = []
    for k in range(tasks):
        src = base[k % len(base)]
        name = f"{src}{k}"
        col = df[src].copy()
        if col.dtype.kind == "f" and src in ("b", "e"):
            col = col + 0.3 * rng.normal(size=len(col))
        df[name] = col
        names.append(name)
    df = df.drop(columns=base)
    path = root / "wide.csv"
    df.to_csv(path, index=False)
    out: dict[str, Any] = {"tasks": tasks}
    base = {"family": "owndata", "data": str(path), "data_sha256": file_digest(path),
            "targets": tuple(names), "tasks": tuple(names), "method": "mean", "steps": 300,
            "probe_every": 100}  # fmt: skip
    for label, fields in (
        ("no probe", {}),
        ("lookahead", {"probe": True, "first_order_above": 10**6}),
        ("first-order", {"probe": True, "first_order_above": 1}),
    ):
        row = FAMILY.record(make_config({**base, **fields}))[0]
        out[label] = {"seconds": row["train_seconds"] + row["measure_seconds"],
                      "probe_seconds": row["probe_seconds"], "probes": row["probes"]}  # fmt: skip
        print(tasks, label, out[label], flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--parts", default="grouping,probes")
    ap.add_argument("--max-tasks", type=int, default=14)
    ap.add_argument("--limit", type=float, default=60.0)
    ap.add_argument("--probe-tasks", default="6,12,24")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    result: dict[str, Any] = {}
    if "probes" in args.parts:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            result["probes"] = [probes(int(t), Path(tmp)) for t in args.probe_tasks.split(",")]
    if "grouping" in args.parts:
        result["grouping"] = grouping(args.max_tasks, args.limit)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
