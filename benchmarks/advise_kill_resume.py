"""``kill -9`` of ``mtlab advise`` mid-stage on the planted 10 000 × 6 table, then the same command:
how many runs were stored before the kill, how many the rerun trained (its own count, and the
rows added), whether any run is stored twice, and whether the advice equals an uninterrupted
run's (``--reference``, e.g. a folder of ``advise_end_to_end.py``; else one is run here).

    .venv/bin/python benchmarks/advise_kill_resume.py --reference /tmp/advise-e2e-…/local0 \\
        --json benchmarks/results/advise_kill_resume.json
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ADVISE = ["advise", "--targets", "a,b,c,d,e,noise", "--quiet"]


def ids(folder: Path) -> list[str]:
    lines = (folder / "rows.jsonl").read_text().splitlines()
    return [json.loads(x)["run_id"] for x in lines if x.strip()]


def content(folder: Path) -> dict:
    advice = json.loads((folder / "advice.json").read_text())
    advice.pop("seconds", None)
    return advice


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reference", type=Path, default=None, help="an uninterrupted advice")
    ap.add_argument("--kill-at", type=int, default=60, help="stored runs before the kill")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="advise-kill-"))
    data = tmp / "planted.csv"
    subprocess.run([sys.executable, "-m", "mtlab.advise.synthetic", str(data)], check=True)
    out = tmp / "adv"
    cmd = [sys.executable, "-m", "mtlab", *ADVISE, "--data", str(data), "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while proc.poll() is None and not (
        (out / "rows.jsonl").exists() and len(ids(out)) >= args.kill_at
    ):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = ids(out)
    lock_left = (out / ".lock").exists()
    t0 = time.perf_counter()
    rerun = subprocess.run(cmd, capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - t0
    after = ids(out)
    said = re.search(r"trained (\d+) runs \((\d+) failed\) .*; (\d+) were stored", rerun.stderr)
    assert said is not None, rerun.stderr
    if args.reference is None:
        args.reference = tmp / "ref"
        subprocess.run([*cmd[:-1], str(args.reference)], check=True, capture_output=True)
    result = {
        "stored_before_kill": len(before),
        "lock_left_by_the_kill": lock_left,
        "rerun_trained": int(said.group(1)),
        "rerun_said_stored_already": int(said.group(3)),
        "rows_after": len(after),
        "distinct_runs_after": len(set(after)),
        "trained_equals_missing": int(said.group(1)) == len(set(after)) - len(set(before)),
        "rerun_seconds": seconds,
        "advice_equals_uninterrupted": content(out) == content(args.reference),
        "runs_equal_uninterrupted": sorted(after) == sorted(ids(args.reference)),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
