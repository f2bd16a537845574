"""``mtlab advise`` before and after its recommendations got controls (issue 23): the advice, its
time and the tree model's numbers, on the README's planted 10 000 × 6 table, on scikit-learn's
digits as images, and on a planted 16-task table with blocks (``planted_blocks``) — where every
partner or source the advice names must come from the task's own block unless its null control
credits it. Defaults (3 seeds, MLP 128-128 or CNN 16-32), 2 cores, one round each: the times are
the cost of the procedure, not a speed comparison.

    .venv/bin/python benchmarks/advise_controls.py --baseline-src /tmp/before/src \\
        --json benchmarks/results/advise_controls.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_advise(src: str | None, args: list[str], out: Path) -> dict:
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = src
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "mtlab.cli", "advise", *args, "--out", str(out),
                           "--quiet"], env=env, capture_output=True, text=True)  # fmt: skip
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"advise failed ({src or 'this checkout'}):\n{proc.stderr[-3000:]}")
    advice = json.loads((out / "advice.json").read_text())
    per_task = {}
    for task, d in advice["per_task"].items():
        per_task[task] = {
            "regime": d["regime"] if d["clear"] else "stl (no clear winner)",
            "partners": d.get("partners") or [], "source": d.get("source"),
            "pretrained_on": d.get("pretrained_on"), "rescale": d.get("rescale"),
            "method": d.get("method"), "metric": d["metric"],
            "recommended": d["recommended"], "stl": d["stl"], "stl_scale": d.get("stl_scale"),
            "tree": (d.get("reference") or {}).get("test"),
            "tree_beats_networks": d.get("reference_beats_networks"),
            "controls": d.get("controls"),
        }  # fmt: skip
    runs = sum(1 for x in (out / "rows.jsonl").read_text().splitlines() if x.strip())
    return {"wall_s": wall, "runs": runs, "per_task": per_task, "skipped": advice["skipped"]}


def block_check(per_task: dict) -> list[str]:
    """Named partners or sources from another block that their null control did not credit."""
    bad = []
    for task, d in per_task.items():
        named = d["partners"] + ([d["source"]] if d["source"] else [])
        for u in named:
            same = u[0] == task[0] and task[0] not in "LN"
            ok = (d.get("controls") or {}).get(u, {}).get("credited")
            if not same and not ok:
                bad.append(f"{task} <- {u}")
    return bad


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--baseline-src", default=None, help="the earlier mtlab's src folder")
    ap.add_argument("--only", default="planted,digits,blocks")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    import pandas as pd

    from mtlab.advise.synthetic import digit_images, planted_blocks, planted_table

    tmp = Path(tempfile.mkdtemp(prefix="advise_controls_"))
    cases = {}
    planted = tmp / "planted.csv"
    planted_table(10_000).to_csv(planted, index=False)
    labels = digit_images(tmp / "digits")
    blocks = tmp / "blocks16.csv"
    planted_blocks(kept=0.05).to_csv(blocks, index=False)
    cases["planted"] = ["--data", str(planted), "--targets", "a,b,c,d,e,noise"]
    cases["digits"] = ["--data", str(labels), "--images", str(tmp / "digits"),
                       "--image-column", "file", "--targets", "odd,ge5,prime,closed_loop,ink",
                       "--model", "cnn:16,32"]  # fmt: skip
    names = [c for c in pd.read_csv(blocks, nrows=1).columns if not c.startswith("x")]
    cases["blocks"] = ["--data", str(blocks), "--targets", ",".join(names), "--affinity", "pairs",
                       "--time-budget", "0"]  # fmt: skip
    # the cases measured before are kept (``--only`` reruns some)
    results: dict = json.loads(a.json.read_text()) if a.json and a.json.exists() else {}
    for name in a.only.split(","):
        results[name] = {}
        sides = [("after", None)] + ([("before", a.baseline_src)] if a.baseline_src and
                                     name != "blocks" else [])  # fmt: skip
        for side, src in sides:
            print(f"{name}: {side} …", file=sys.stderr, flush=True)
            r = run_advise(src, cases[name], tmp / f"{name}-{side}")
            results[name][side] = r
            print(f"  {r['wall_s']:.0f} s, {r['runs']} runs", file=sys.stderr, flush=True)
            for task, d in r["per_task"].items():
                what = d["source"] or d["pretrained_on"] or ",".join(d["partners"])
                tree = "" if d["tree"] is None else f" tree {d['tree']:.3f}"
                print(f"    {task:12s} {d['regime']:22s} {what:10s} {d['recommended']:.3f} "
                      f"(STL {d['stl']:.3f}){tree}", file=sys.stderr)  # fmt: skip
        if name == "blocks":
            results[name]["uncredited_cross_block"] = block_check(results[name]["after"]["per_task"])
            print(f"  cross-block without credit: {results[name]['uncredited_cross_block']}",
                  file=sys.stderr)  # fmt: skip
        if a.json:  # after every case: a later failure keeps what was measured
            a.json.parent.mkdir(parents=True, exist_ok=True)
            a.json.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
