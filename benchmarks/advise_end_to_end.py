"""``mtlab advise`` end to end on the planted 10 000 × 6 table with the defaults, on 2 cores: wall
time with the local executor and with ``--executor ray`` (a local instance, one worker per core),
measured in the same run as a baseline (interleaved, ``--repeats`` rounds, the fastest of each
counts) — by default the same command with this checkout's code;
with ``--baseline-src DIR`` an earlier mtlab's ``src`` folder (e.g. a ``git worktree`` of the
commit before a change) — plus where the time goes (seconds per stage from the folder's run
store), whether the advice is the same in content across the three, and the price of the
realised pairwise transfer relative to the lookahead measurement.

    .venv/bin/python benchmarks/advise_end_to_end.py --json benchmarks/results/advise_end_to_end.json
    .venv/bin/python benchmarks/advise_end_to_end.py --baseline-src /tmp/before/src
    .venv/bin/python benchmarks/advise_end_to_end.py --folder runs/adv   # only the breakdown
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path


def stage(run: dict) -> str:
    tasks = run["tasks"]
    if run.get("regime") == "reference":
        return "tree reference"
    if run.get("null"):
        return "null controls"
    if run.get("source"):
        return "PT+FT"
    if len(tasks) == 1:  # the earlier advise: STL, and STL as long as PT+FT
        return "STL at each initial scale" if run["steps"] != run.get("_base_steps") else "STL"
    if run.get("probe"):
        return "MTL on all tasks with probes (lookahead)"
    if len(tasks) == 2 and run["method"] == "mean":
        return "pairs (and 2-task groups)"
    return "groups and methods"


def breakdown(folder: Path) -> dict:
    """Seconds and runs per stage from the folder's run store (rows.jsonl)."""
    rows = [json.loads(x) for x in (folder / "rows.jsonl").read_text().splitlines() if x.strip()]
    base_steps = min(r["steps"] for r in rows if r.get("steps"))
    seconds: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    probe = 0.0
    for r in rows:
        s = stage({**r, "_base_steps": base_steps})
        seconds[s] += float(r.get("wall_s") or 0.0)
        count[s] += 1
        probe += float(r.get("probe_seconds") or 0.0)
    advice = json.loads((folder / "advice.json").read_text())
    look = seconds["MTL on all tasks with probes (lookahead)"]
    pairs = seconds["pairs (and 2-task groups)"]
    return {
        "trainings": len(rows),
        "seconds_by_stage": dict(seconds),
        "trainings_by_stage": dict(count),
        "training_seconds": sum(seconds.values()),
        "probe_seconds": probe,
        "pairs_over_lookahead": pairs / look if look else None,
        "affinity_source": advice["affinity"]["source"],
        "lookahead_vs_pairs_corr": advice["affinity"]["lookahead_vs_used_corr"],
        "advise_seconds": advice["seconds"],
    }


def content(folder: Path) -> dict:
    advice = json.loads((folder / "advice.json").read_text())
    advice.pop("seconds", None)
    return advice


def advise(data: Path, out: Path, extra: list[str], src: str | None = None) -> float:
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = src
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "mtlab", "advise", "--data", str(data), "--targets",
                    "a,b,c,d,e,noise", "--out", str(out), "--quiet", *extra], check=True,
                   env=env)  # fmt: skip
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--folder", type=Path, default=None, help="only break down this advice")
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--baseline-src", default=None, help="an earlier mtlab's src folder")
    ap.add_argument("--no-ray", action="store_true")
    ap.add_argument("--repeats", type=int, default=2,
                    help="rounds of (baseline, local, ray), interleaved; the fastest of each counts")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    out: dict = {}
    if args.folder is not None:
        out.update(breakdown(args.folder))
    else:
        tmp = Path(tempfile.mkdtemp(prefix="advise-e2e-"))
        data = tmp / "planted.csv"
        subprocess.run([sys.executable, "-m", "mtlab.advise.synthetic", str(data), "--rows",
                        str(args.rows)], check=True)  # fmt: skip
        out["rows"] = args.rows
        out["baseline"] = args.baseline_src or "this checkout"
        times: dict[str, list[float]] = defaultdict(list)
        kinds = ["baseline", "local", *([] if args.no_ray else ["ray"])]
        for r in range(args.repeats):  # interleaved: the machine's drift hits every kind alike
            for kind in kinds:
                folder = tmp / f"{kind}{r}"
                extra = ["--executor", "ray"] if kind == "ray" else []
                src = args.baseline_src if kind == "baseline" else None
                times[kind].append(advise(data, folder, extra, src))
        out["seconds"] = dict(times)
        best = {k: min(v) for k, v in times.items()}
        out["baseline_seconds"], out["local_seconds"] = best["baseline"], best["local"]
        out["local"] = breakdown(tmp / "local0")
        out["local_over_baseline"] = best["local"] / best["baseline"]
        out["advice_local_equals_baseline"] = content(tmp / "local0") == content(tmp / "baseline0")
        if not args.no_ray:
            out["ray_seconds"] = best["ray"]
            out["ray_training_seconds"] = breakdown(tmp / "ray0")["training_seconds"]
            out["ray_over_local"] = best["ray"] / best["local"]
            out["ray_over_baseline"] = best["ray"] / best["baseline"]
            out["advice_ray_equals_local"] = content(tmp / "ray0") == content(tmp / "local0")
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
