"""Benchmark: a sweep on an idle machine and with a competing process busy on one core.

The issue: on a shared 2-core machine the quick diagonal preset took 27 min instead of ~2 while
another process used a core (torch's two intra-op threads wait for each other whenever one is
descheduled), and the timing-based ensemble plan changed the numbers. For each threading option
the same sweep runs as a fresh ``mtlab`` process idle and under load (a Python busy loop pinned
to nothing, as another user's job would be), in one session; reported: wall times, the load /
idle ratio, and whether the results are bitwise equal.

Options: ``threads=<n>`` (``MTLAB_THREADS``) and ``passive`` (``OMP_WAIT_POLICY=PASSIVE``: idle
OpenMP threads sleep instead of spinning).

    python benchmarks/load_robustness.py [--preset quick | --sweep FILE] [--options 2 1 2,passive]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def same_results(a: Path, b: Path) -> bool:
    import pandas as pd

    x = pd.read_parquet(a / "results.parquet").sort_values("run_id").reset_index(drop=True)
    y = pd.read_parquet(b / "results.parquet").sort_values("run_id").reset_index(drop=True)
    drop = [c for c in ("wall_s", "sec_per_step") if c in x]
    try:
        pd.testing.assert_frame_equal(x.drop(columns=drop), y.drop(columns=drop), check_exact=True)
    except AssertionError:
        return False
    return True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="quick", help="diagonal study preset")
    ap.add_argument("--sweep", default=None, help="a sweep file instead of the preset")
    ap.add_argument("--options", nargs="+", default=["2", "1"])
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mtlab-load-"))
    target = (
        ["run", args.sweep] if args.sweep else ["reproduce", "diagonal", "--preset", args.preset]
    )
    rows = []
    try:
        for opt in args.options:
            threads, *flags = opt.split(",")
            env = {**os.environ, "MTLAB_THREADS": threads}
            if "passive" in flags:
                env["OMP_WAIT_POLICY"] = "PASSIVE"
            times = {}
            for cond in ("idle", "load"):
                out = work / f"{opt}-{cond}"
                cmd = [sys.executable, "-m", "mtlab", *target, "--out", str(out), "--quiet",
                       "--no-report"]  # fmt: skip
                busy = (
                    subprocess.Popen([sys.executable, "-c", "while True: pass"])
                    if cond == "load"
                    else None
                )
                try:
                    times[cond] = run(cmd, env)
                finally:
                    if busy is not None:
                        busy.kill()
                        busy.wait()
            equal = same_results(work / f"{opt}-idle", work / f"{opt}-load")
            row = {"option": opt, **times, "ratio": times["load"] / times["idle"], "bitwise": equal}
            rows.append(row)
            print(
                f"{opt:12s} idle {times['idle']:7.1f} s   load {times['load']:7.1f} s   "
                f"load/idle {row['ratio']:.2f}   results bitwise equal: {equal}",
                flush=True,
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
