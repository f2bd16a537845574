"""``mtlab advise`` end to end on the planted 10 000 × 6 table with the defaults: wall time, and
where it goes — seconds per stage from the folder's ``trainings.jsonl``, and the price of the
realised pairwise transfer relative to the lookahead measurement it replaces as the grouping's
input (both measured in the same run).

    .venv/bin/python benchmarks/advise_end_to_end.py --json benchmarks/results/advise_end_to_end.json
    .venv/bin/python benchmarks/advise_end_to_end.py --folder runs/adv   # only the breakdown
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path


def stage(spec: dict, n_tasks: int) -> str:
    tasks = spec["tasks"]
    if spec.get("source"):
        return "PT+FT"
    if len(tasks) == 1:
        return "STL as long as PT+FT" if spec.get("steps") else "STL"
    if spec.get("probe"):
        return "MTL on all tasks with probes (lookahead)"
    if len(tasks) == 2 and spec["method"] == "mean":
        return "pairs (and 2-task groups)"
    return "groups and methods"


def breakdown(folder: Path) -> dict:
    lines = (folder / "trainings.jsonl").read_text().splitlines()
    rows = [json.loads(x) for x in lines if x.strip()]
    n_tasks = max(len(r["spec"]["tasks"]) for r in rows)
    seconds: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    probe = 0.0
    for r in rows:
        s = stage(r["spec"], n_tasks)
        seconds[s] += r["seconds"]
        count[s] += 1
        probe += r["extra"].get("probe_seconds", 0.0)
    advice = json.loads((folder / "advice.json").read_text())
    look = seconds["MTL on all tasks with probes (lookahead)"]
    pairs = seconds["pairs (and 2-task groups)"]
    return {
        "trainings": len(rows),
        "seconds_by_stage": dict(seconds),
        "trainings_by_stage": dict(count),
        "probe_seconds": probe,
        "pairs_over_lookahead": pairs / look if look else None,
        "affinity_source": advice["affinity"]["source"],
        "lookahead_vs_pairs_corr": advice["affinity"]["lookahead_vs_used_corr"],
        "advise_seconds": advice["seconds"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--folder", type=Path, default=None, help="only break down this advice")
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    out: dict = {}
    if args.folder is None:
        tmp = Path(tempfile.mkdtemp(prefix="advise-e2e-"))
        data, folder = tmp / "planted.csv", tmp / "adv"
        subprocess.run([sys.executable, "-m", "mtlab.advise.synthetic", str(data), "--rows",
                        str(args.rows)], check=True)  # fmt: skip
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "mtlab", "advise", "--data", str(data), "--targets",
                        "a,b,c,d,e,noise", "--out", str(folder), "--quiet"], check=True)  # fmt: skip
        out["wall_seconds"] = time.perf_counter() - t0
        out["rows"] = args.rows
    else:
        folder = args.folder
    out.update(breakdown(folder))
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
