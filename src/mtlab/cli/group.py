"""``mtlab group AFFINITY.json --budget B``: the best task grouping for each budget."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from mtlab.cli import options
from mtlab.cli.folder import fail


def add(sub: Any) -> None:
    gp = sub.add_parser("group", help="the best task grouping for each budget from affinity.json")
    gp.add_argument("affinity", type=Path)
    gp.add_argument("--budget", type=options.positive, required=True)
    gp.add_argument("--json", action="store_true", help="print the grouping for --budget as JSON")
    gp.add_argument(
        "--singletons", action="store_true",
        help="also allow one-task groups; a task alone scores 0 (no transfer), so it is "
        "chosen where every group would give it negative affinity",
    )  # fmt: skip
    gp.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from mtlab.grouping import (
        SINGLETON_SCORE,
        AffinityFileError,
        Grouping,
        best_grouping,
        read_affinity,
    )

    try:
        tasks, A, _ = read_affinity(args.affinity)
    except AffinityFileError as err:
        return fail(str(err))
    # a task alone receives no transfer: score 0, on the same scale as a group member's mean
    # affinity from its partners (the diagonal — a task's lookahead onto itself — is not)
    single = [SINGLETON_SCORE] * len(tasks) if args.singletons else None
    if len(tasks) < 2 and single is None:  # one rule for the table and --json
        return fail(
            f"{args.affinity} has {len(tasks)} task(s): a group needs at least 2 "
            "(--singletons allows one-task groups)"
        )
    budget = min(args.budget, len(tasks))
    if budget < args.budget:
        print(
            f"mtlab: budget {args.budget} > {len(tasks)} tasks: capped at {budget} (each task "
            "scores its best group, so more groups than tasks add nothing)",
            file=sys.stderr,
        )
    results: list[tuple[int, Grouping | None]] = []
    for b in range(1, budget + 1):
        try:
            results.append((b, best_grouping(A, b, single, names=tasks)))
        except ValueError:
            results.append((b, None))
    if args.json:
        last = results[-1][1]
        if last is None:
            return fail(f"no grouping with at most {budget} groups covers every task")
        out: dict[str, Any] = {"budget": budget, "groups": last.names, "value": last.value}
        if budget < args.budget:
            out["requested_budget"] = args.budget
        print(json.dumps(out))
        return 0
    print(f"{'budget':>6}  {'value':>9}  groups")
    for b, found in results:
        if found is None:
            print(f"{b:>6}  {'—':>9}  (no grouping of ≤ {b} groups covers every task)")
        else:
            print(f"{b:>6}  {found.value:9.4f}  " + " | ".join(", ".join(n) for n in found.names or []))
    return 0


__all__ = ["add"]
