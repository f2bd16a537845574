"""``mtlab status OUT``: a run folder's progress — done / failed / pending per method, the
failures' reasons, who writes into it now and an ETA. It reads the folder only, so it works while
a command writes into it, for every command that trains (studies, sweeps, ``advise``,
``benchmark``, ``affinity``, ``trajectories``)."""

from __future__ import annotations

import argparse
import datetime as _dt
from collections import Counter
from pathlib import Path
from typing import Any

from mtlab.cli import options
from mtlab.cli.folder import OLD_MARKERS, fail


def add(sub: Any) -> None:
    stp = sub.add_parser(
        "status", help="a run folder's progress: done / failed / pending per method, failures, ETA"
    )
    stp.add_argument("out", type=Path)
    stp.add_argument("--failures", type=options.positive, default=10, help="failures to list")
    stp.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from mtlab.runs.config import make_config
    from mtlab.runs.executor import expand_dependencies
    from mtlab.runs.store import RunStore

    if not (args.out / "config.yaml").exists():
        old = [m for m in OLD_MARKERS if (args.out / m).exists()]
        if old:
            return fail(f"{args.out} was written by an earlier mtlab ({old[0]}), which this "
                        "version does not read")  # fmt: skip
        return fail(f"{args.out} is not an mtlab run folder (no config.yaml)")
    cfg = RunStore.read_config_at(args.out)
    store = RunStore(args.out)
    planned = {c.run_id(): c.method for phase in expand_dependencies(
        [make_config(r) for r in cfg.get("runs", [])]) for c in phase}  # fmt: skip
    rows = {r["run_id"]: r for r in store.rows() if r["run_id"] in planned}
    failed = {k: r for k, r in rows.items() if r.get("status") == "failed"}
    total = Counter(planned.values())
    done: Counter[str] = Counter()
    bad: Counter[str] = Counter()
    for k in rows:
        (bad if k in failed else done)[planned[k]] += 1
    print(f"{args.out}: study {cfg.get('study')!r}, preset {cfg.get('preset')!r}")
    if cfg.get("data") or cfg.get("identity", {}).get("dataset"):
        print(f"data: {cfg.get('data') or cfg['identity']['dataset']}")
    print(f"{'method':14s} {'done':>6s} {'failed':>6s} {'pending':>7s} {'total':>6s}")
    for m in sorted(total):
        pending = total[m] - done[m] - bad[m]
        print(f"{m:14s} {done[m]:6d} {bad[m]:6d} {pending:7d} {total[m]:6d}")
    n_pending = len(planned) - len(rows)
    print(f"{'all':14s} {sum(done.values()):6d} {len(failed):6d} {n_pending:7d} {len(planned):6d}")
    for k, r in list(failed.items())[: args.failures]:
        print(f"  failed {k} ({planned[k]}): {r.get('reason')}")
    if len(failed) > args.failures:
        print(f"  … and {len(failed) - args.failures} more failures (--failures N)")
    if cfg.get("result"):  # a command whose runs are planned stage by stage (advise)
        written = (args.out / cfg["result"]).exists()
        print(f"{cfg['result']}: {'written' if written else 'not yet'}")
    _print_running(store, n_pending)
    return 0


def _print_running(store: Any, n_pending: int) -> None:
    """Who writes into the folder now, and an ETA from its rate so far."""
    holder = store.holder()
    if holder is None:
        print("not running" + (f" ({n_pending} runs pending: rerun the command to resume)"
                               if n_pending else ""))  # fmt: skip
        return
    started = _dt.datetime.fromisoformat(holder["started"])
    elapsed = (_dt.datetime.now() - started).total_seconds()
    new = len(store.done_ids()) - int(holder.get("stored_at_start", 0))
    eta = f", ETA {n_pending * elapsed / new / 60:.1f} min" if new > 0 and n_pending else ""
    print(
        f"running: pid {holder['pid']} on {holder['host']} since {holder['started']} "
        f"({new} runs stored since{eta})"
    )


__all__ = ["add"]
