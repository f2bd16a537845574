"""``mtlab estimators``: how well each cheap transfer estimator agrees with the realised transfer
on your own table — every estimator's runs and every pair of tasks trained together, in one
run folder — and what each costs (:mod:`mtlab.advise.estimators`)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from mtlab.cli import options
from mtlab.cli.folder import execute_sweep, fail

DESCRIPTION = (
    "Trains, per seed, every task alone and every pair of tasks together (the realised transfer "
    "1 − L_i(i with j) / L_i(i alone), the reference) and the runs of each estimator; then "
    "judges each estimator against the realised transfer: its cost in task-training steps "
    "(and as a fraction of the realised pairs'), Spearman and Pearson correlation over the "
    "pairs, sign accuracy on pairs whose realised transfer is clearly non-zero (beyond 2 s.e.), "
    "and the grouping regret per budget — beside the realised matrix's own split-half "
    "reliability and what a fresh replicate of it would score. The estimators train on seeds "
    "of their own (1000 on), so that "
    "none shares its noise with the reference. Writes estimators.json, estimators.csv, estimators.md and "
    "estimators.png."
)


def add(sub: Any) -> None:
    from mtlab.advise.estimators import ESTIMATORS

    ap = sub.add_parser("estimators", description=DESCRIPTION,
                        help="your own data: transfer estimators against the realised transfer "
                        "(cost, correlation, sign accuracy, grouping regret)")  # fmt: skip
    options.add_data(ap, required=True)
    cheap = [n for n in ESTIMATORS if n != "pairs"]
    ap.add_argument("--estimators", default=",".join(cheap),
                    help=f"the estimators judged (default {','.join(cheap)})")  # fmt: skip
    ap.add_argument("--seeds", type=options.positive, default=3,
                    help="the estimators' seeds (default 3, as mtlab advise)")  # fmt: skip
    ap.add_argument("--reference-seeds", type=options.positive, default=None,
                    help="the realised pairs' seeds (default --seeds): more make the "
                    "reference less noisy; the estimators' cost is still counted against the "
                    "realised pairs on as many seeds as theirs")  # fmt: skip
    ap.add_argument("--budgets", default="2,4", help="grouping budgets for the regret")
    ap.add_argument("--model", default=None, help="mlp:WIDTH,… (default mlp:128,128)")
    ap.add_argument("--steps", type=options.positive, default=None,
                    help="the step budget (default as mtlab advise)")  # fmt: skip
    ap.add_argument("--patience", type=options.positive, default=5)
    ap.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    ap.add_argument("--batch-size", type=options.positive, default=128)
    options.add_sweep(ap, report=False, append=False)
    ap.set_defaults(run=run, trains=True)


def run(args: argparse.Namespace) -> int:
    from mtlab.advise.estimators import Context, estimator_context, make_estimator, pending
    from mtlab.advise.pipeline import auto_steps
    from mtlab.cli import owndata
    from mtlab.tasks.base import DataError

    try:
        names = options.names(args.estimators) or []
        ests = [make_estimator(n) for n in names]
        budgets = [int(b) for b in options.names(args.budgets) or []]
        if any(b < 1 for b in budgets):
            raise ValueError("--budgets must be positive")
        trunk, widths = options.model(args.model, owndata.is_images(args))
        # the runs are mtlab advise's own (study "advise"): the same settings give the same runs
        data = owndata.read(args, "advise", trunk, widths, steps=args.steps or 1,
                            lr=args.lr, batch_size=args.batch_size, patience=args.patience)  # fmt: skip
        data.base["steps"] = args.steps or auto_steps(data.prep, args.batch_size)
    except (ValueError, DataError) as err:
        return fail(str(err))
    ctx = Context(tuple(data.tasks), tuple(range(args.seeds)), data.config)
    ref = Context(ctx.tasks, tuple(range(args.reference_seeds or args.seeds)), ctx.make)
    own = estimator_context(ctx)  # the estimators' own seeds (not the reference's)
    configs = make_estimator("pairs").configs(ref) + [c for e in ests for c in e.configs(own)]
    configs = list({c.run_id(): c for c in configs}.values())
    args.no_report = True
    args.append = True  # more estimators (or seeds) later add their runs to the same folder
    extra = {"data": str(args.data), "estimators": names, "result": "estimators.json"}
    label = f"estimators on {len(data.tasks)} tasks of {args.data}"
    code = execute_sweep(args, "estimators", "custom", configs, extra, label, data.identity)
    if code != 0 or args.dry_run:  # (a dry run counts the runs known before any is trained)
        return code
    while more := pending(ests, own, _rows(args.out)):  # runs chosen from the runs stored
        code = execute_sweep(args, "estimators", "custom", more, extra, label, data.identity)
        if code != 0:
            return code
    write(ctx, names, budgets, args.out, ref.seeds)
    return 0


def _rows(out: Any) -> dict[str, dict[str, Any]]:
    from mtlab.runs.store import RunStore

    return {r["run_id"]: r for r in RunStore(out).rows()}


def write(ctx: Any, names: list[str], budgets: list[int], out: Any,
          reference_seeds: Any = None) -> dict[str, Any]:  # fmt: skip
    """Judge the estimators on the folder's runs; write the tables, the note and the figure."""
    import pandas as pd

    from mtlab.advise.estimators import compare

    rows = _rows(out)
    result = compare(ctx, names, rows, budgets, reference_seeds=reference_seeds)
    (out / "estimators.json").write_text(json.dumps(result, indent=1, default=float))
    table = pd.DataFrame(summary_rows(result))
    table.to_csv(out / "estimators.csv", index=False)
    (out / "estimators.md").write_text(markdown(result))
    figure(result, out / "estimators.png")
    print(markdown(result))
    print(f"estimators: {out / 'estimators.json'}", file=sys.stderr)
    return result


def summary_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for e in result["estimators"]:
        row = {k: e[k] for k in ("estimator", "cost_steps", "cost_fraction", "seconds",
                                 "spearman", "pearson", "sign_accuracy", "clear_pairs")}  # fmt: skip
        for g in e["grouping"]:
            row[f"regret_budget_{g['budget']}"] = g["regret"]
        out.append(row)
    return out


def markdown(result: dict[str, Any]) -> str:
    r = result["realised"]
    budgets = result["budgets"]
    seeds, ref_seeds = len(result["seeds"]), len(result.get("reference_seeds", result["seeds"]))
    head = ("| estimator | cost (task-steps) | of the realised pairs' on as many seeds | Spearman "
            "| Pearson | sign accuracy (clear pairs) | "
            + " | ".join(f"regret, budget {b}" for b in budgets) + " |")  # fmt: skip
    lines = [
        f"# Transfer estimators against the realised transfer ({len(result['tasks'])} tasks; "
        f"the estimators on {seeds} seeds, the realised pairs on {ref_seeds})", "",
        f"Realised pairs: {r['cost_steps']:.0f} task-steps ({r['seconds']:.0f} s of training); "
        f"split-half Spearman of the realised matrix {r['split_half_spearman']:.2f}; a fresh "
        f"replicate of the realised pairs on {ref_seeds} other seeds would agree with "
        f"it to about {r.get('replicate_ceiling', float('nan')):.2f} (Spearman–Brown; a "
        "noise-free estimate at most its square root).", "", head,
        "|" + "---|" * (6 + len(budgets)),
    ]  # fmt: skip
    for e in result["estimators"]:
        regrets = " | ".join(f"{g['regret']:.1%}" for g in e["grouping"])
        lines.append(f"| {e['estimator']} | {e['cost_steps']:.0f} | {e['cost_fraction']:.1%} | "
                     f"{e['spearman']:.2f} | {e['pearson']:.2f} | {e['sign_accuracy']:.2f} "
                     f"({e['clear_pairs']}) | {regrets} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def figure(result: dict[str, Any], path: Any) -> None:
    """Each estimator's estimate against the realised transfer (one panel each)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from mtlab.advise.estimators import off_diagonal

    ests = result["estimators"]
    fig, axes = plt.subplots(1, max(1, len(ests)), figsize=(3.2 * max(1, len(ests)), 3.2),
                             squeeze=False)  # fmt: skip
    real = off_diagonal(np.asarray(result["realised"]["matrix"]))
    for ax, e in zip(axes[0], ests, strict=False):
        ax.scatter(real, off_diagonal(np.asarray(e["matrix"])), s=6, alpha=0.6)
        ax.set_title(f"{e['estimator']}: ρ = {e['spearman']:.2f}\ncost {e['cost_fraction']:.0%} "
                     "of the pairs'", fontsize=9)  # fmt: skip
        ax.set_xlabel("realised transfer")
        ax.axhline(0, color="0.7", lw=0.5)
        ax.axvline(0, color="0.7", lw=0.5)
    axes[0][0].set_ylabel("estimate")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


__all__ = ["add", "markdown", "write"]
