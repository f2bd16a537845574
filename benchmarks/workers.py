"""Benchmark: worker processes (the default) against one worker and against training in-process.

Each configuration is a fresh ``mtlab reproduce STUDY --preset quick`` process, measured side by
side in one session on this machine: ``before`` (the code of ``--baseline``, a checkout from
before issue 26: in this process, one intra-op thread), ``--workers 0`` (in this process),
``--workers 1``, the default (one worker per granted core) idle, and the default with another
process busy on one core (a Python busy loop, as another user's job would be). Reported: wall
time of the command with its report (what a user waits for, verdicts included), the training
time it records in ``sessions.json``, ratios to ``before``, and whether the results are
bitwise equal to ``--workers 1``.

    python benchmarks/workers.py --baseline /path/to/old/checkout [--studies diagonal,relu-nested]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from load_robustness import same_results  # benchmarks/: the script's folder

#: (label, extra options, busy core); "before" runs the ``--baseline`` checkout's code
CONDITIONS = {
    "before": ([], False),
    "in-process": (["--workers", "0"], False),
    "1 worker": (["--workers", "1"], False),
    "default": ([], False),
    "default + one core busy": ([], True),
}


def run(cmd: list[str], busy: bool, env: dict[str, str] | None = None) -> float:
    load = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       env=env)  # fmt: skip
        return time.perf_counter() - t0
    finally:
        if load is not None:
            load.kill()
            load.wait()


def study(name: str, work: Path, conditions: list[str], baseline: str | None) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for label in conditions:
        opts, busy = CONDITIONS[label]
        env = None
        if label == "before":
            if baseline is None:
                continue
            env = {**os.environ, "PYTHONPATH": str(Path(baseline) / "src")}
        out = work / f"{name}-{label.replace(' ', '_').replace(',', '')}"
        cmd = [sys.executable, "-m", "mtlab", "reproduce", name, "--preset", "quick",
               "--out", str(out), "--quiet", *opts]  # fmt: skip
        wall = run(cmd, busy, env)
        session = json.loads((out / "sessions.json").read_text())[-1]
        rows[label] = {"wall_s": wall, "training_s": session["seconds"],
                       "executor": session["executor"], "out": out}  # fmt: skip
        print(f"{name:12s} {label:24s} {wall:7.1f} s (training {session['seconds']:6.1f} s)",
              flush=True)  # fmt: skip
    ref = rows.get("before", rows.get("in-process", {})).get("wall_s")
    one = rows.get("1 worker", {}).get("out")
    for label, row in rows.items():
        if ref:
            row["vs_before"] = row["wall_s"] / ref
        if one is not None:
            row["bitwise_equal_to_1_worker"] = same_results(one, row["out"])
        print(f"{name:12s} {label:24s} {row['wall_s']:7.1f} s (training {row['training_s']:6.1f} s)"
              f"  x{row.get('vs_before', float('nan')):.2f} of before"
              f"  bitwise = 1 worker: {row.get('bitwise_equal_to_1_worker')}", flush=True)
    if "default" in rows and "default + one core busy" in rows:
        rows["load_over_idle"] = rows["default + one core busy"]["wall_s"] / rows["default"]["wall_s"]
    for row in rows.values():
        if isinstance(row, dict):
            row.pop("out", None)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--studies", default="diagonal,relu-nested")
    ap.add_argument("--conditions", default=";".join(CONDITIONS),
                    help="';'-separated, of: " + "; ".join(CONDITIONS))  # fmt: skip
    ap.add_argument("--baseline", default=None,
                    help="a checkout of the code before (its src/ runs the 'before' condition)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mtlab-workers-"))
    result: dict[str, Any] = {
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores",
    }
    try:
        for name in args.studies.split(","):
            result[name] = study(name, work, args.conditions.split(";"), args.baseline)
            if args.json:
                Path(args.json).write_text(json.dumps(result, indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
