"""``mtlab advise``: which of your tasks together, MTL or PT+FT, which method, which rescaling.
Its stages are sweeps of own-data runs (:mod:`mtlab.advise.pipeline`) in one run folder."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mtlab.cli import options
from mtlab.cli.folder import Folder, count_runs, executor_label, fail, record_session

DESCRIPTION = (
    "Trains, per seed: STL per task at each initial scale of --rescales (the fair single-task "
    "baseline is the best) and a gradient-boosted tree reference; MTL on all tasks with "
    "lookahead probes; every pair of tasks together (the realised transfer that drives the "
    "grouping, up to 8 tasks; beyond, a cheaper estimate of it: --affinity); the exact "
    "grouping per budget; the chosen groups (predicted vs "
    "realised); each task with its helpful partners under --methods; PT+FT from each candidate "
    "source, the best one at each --rescales s; null controls (the partner's or source's "
    "labels permuted). A task gets a recommendation only where its validation gain over the "
    "fair STL exceeds 2 standard errors over seeds, and a partner or source is credited only "
    "where it clearly beats its null control. Every training is a run of the folder's store: a "
    "rerun of the same command resumes, and --executor ray trains each stage's runs in parallel."
)


def add(sub: Any) -> None:
    from mtlab.advise.pipeline import AFFINITIES

    adv = sub.add_parser(
        "advise", description=DESCRIPTION,
        help="your own data: which tasks together, MTL or PT+FT, which method, which rescaling "
        "(advice.json, report.html)",
    )  # fmt: skip
    options.add_data(adv, required=True)
    adv.add_argument("--budget", type=options.positive, default=None,
                     help="networks for the groups that are trained (default 2)")  # fmt: skip
    adv.add_argument("--seeds", type=options.positive, default=3)
    adv.add_argument(
        "--model", default=None, help="mlp:WIDTH,WIDTH,… (default mlp:128,128) or, for images, "
        "cnn:CHANNELS,… (default cnn:16,32 with --images or --labels)",
    )  # fmt: skip
    adv.add_argument(
        "--steps", type=options.positive, default=None,
        help="the step budget of every training (default: 20 epochs of the largest task, "
        "within 800 … 5000); training stops earlier at a validation plateau (--patience)",
    )  # fmt: skip
    adv.add_argument(
        "--patience", type=options.positive, default=5,
        help="evaluations (100 steps apart) without a better validation metric or loss that "
        "end a training (default 5)",
    )  # fmt: skip
    adv.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    adv.add_argument("--batch-size", type=options.positive, default=128)
    adv.add_argument("--methods", default="pcgrad,uw", help="methods tried on the groups")
    adv.add_argument(
        "--rescales", default="0.125,0.25,0.5,1",
        help="the scales s tuned: STL's initial trunk × s, and PT+FT's pretrained trunk × s",
    )  # fmt: skip
    adv.add_argument(
        "--time-budget", type=float, default=600.0,
        help="seconds; a stage after the measurements (every task alone, the transfer "
        "estimate) that would not fit is skipped and reported (0: no limit)",
    )  # fmt: skip
    adv.add_argument(
        "--affinity", choices=AFFINITIES, default="auto",
        help="what drives the grouping: the realised transfer of every pair of tasks trained "
        "together (pairs), or an estimate of it — short-pairs, short-pairs-19, lookahead, "
        "first-order, linearised, surrogate, screened (mtlab estimators compares them on your "
        "table); "
        "auto, the default: pairs up to 8 tasks, beyond them the estimator that measured best "
        "against the realised transfer on the planted table nearest your task count "
        "(benchmarks/transfer_estimators.py)",
    )  # fmt: skip
    options.add_sweep(adv, report=False, append=False)
    adv.set_defaults(run=run, trains=True)


def _dry_run(data: Any, opts: Any, label: str) -> int:
    """The runs of the first stages (the later ones depend on what these measure)."""
    from mtlab.advise.pipeline import PAIRS_MAX_TASKS, scale_field

    tasks, seeds = data.tasks, range(opts.seeds)
    first = [data.config(tasks=(t,), method="stl", seed=s, init_scale=scale_field(sc),
                         steps=2 * data.base["steps"])
             for t in tasks for s in seeds for sc in sorted(set(opts.rescales))]  # fmt: skip
    first += [data.config(tasks=(t,), method="reference", seed=s) for t in tasks for s in seeds]
    from mtlab.advise.estimators import Context, load_evidence, make_estimator
    from mtlab.advise.rules import default_estimator

    mode = opts.affinity
    if mode == "auto":
        mode = ("pairs" if len(tasks) <= PAIRS_MAX_TASKS
                else default_estimator(load_evidence()["rows"], len(tasks)))  # fmt: skip
    est = [] if mode == "lookahead" else make_estimator(mode).configs(
        Context(tuple(tasks), tuple(seeds), data.config))
    n_mtl = opts.seeds + sum(c.regime == "mtl" for c in est)
    what = {"pairs": "every pair", "lookahead": ""}.get(mode, f"the {mode} estimate's runs")
    print(f"{count_runs(first).replace(' runs:', f' runs of {label} in its first stage:', 1)}"
          f"; then {n_mtl} MTL runs and {len(tasks) * opts.seeds} STL runs at the initial scale "
          "these choose (all tasks with probes"
          f"{', ' + what if what else ''}); the candidates after the grouping "
          "(groups, partners, methods, PT+FT, controls) depend on what these measure; every "
          f"network at most {data.base['steps']} steps (the STL at each scale "
          f"{2 * data.base['steps']})")  # fmt: skip
    return 0


def run(args: argparse.Namespace) -> int:
    from mtlab.advise.pipeline import Options, Stages, advise, auto_steps
    from mtlab.advise.report import write_advice
    from mtlab.cli import owndata
    from mtlab.tasks.base import DataError

    try:
        methods = tuple(options.methods(args.methods) or [])
        rescales = tuple(float(v) for v in options.names(args.rescales) or [])
        if any(r <= 0 for r in rescales):
            raise ValueError("--rescales must be positive")
        trunk, widths = options.model(args.model, owndata.is_images(args))
        data = owndata.read(args, "advise", trunk, widths, steps=args.steps or 1, lr=args.lr,
                            batch_size=args.batch_size, patience=args.patience)  # fmt: skip
        data.base["steps"] = args.steps or auto_steps(data.prep, args.batch_size)
    except (ValueError, DataError) as err:
        return fail(str(err))
    opts = Options(args.seeds, args.budget, methods, rescales, args.time_budget or None,
                   args.affinity)  # fmt: skip
    label = f"advise on {len(data.tasks)} tasks of {args.data}"
    folder = Folder(args, "advise", "custom", {"result": "advice.json", "data": str(args.data)},
                    data.identity, append=True)  # fmt: skip
    if (problem := folder.problem()) is not None:
        return fail(problem)
    if args.dry_run:
        return _dry_run(data, opts, label)

    def body(store: Any) -> int:
        where = executor_label(folder.executor, args)
        print(f"mtlab: advising on {len(data.tasks)} tasks of {args.data} ({data.table.n} rows)"
              f" -> {args.out}{where}", file=sys.stderr)  # fmt: skip
        total: dict[str, Any] = {}
        before = len(store.done_ids())

        def train(stage: str, configs: Any) -> dict[str, dict[str, Any]]:
            if not args.quiet:
                print(f"  {stage}: {len(configs)} runs", file=sys.stderr)
            stats = folder.execute(configs, tables=False)  # written once, at the end
            for k in ("requested", "trained", "skipped", "failed", "seconds"):
                total[k] = total.get(k, 0) + stats[k]
            total["executor"] = stats["executor"]
            return {r["run_id"]: r for r in store.rows()}

        def stored() -> dict[str, dict[str, Any]]:
            return {r["run_id"]: r for r in store.rows()}

        stages = Stages(train, stored, opts.time_budget, folder.executor.slots)
        advice = advise(data.prep, data.config, opts, stages)
        if total:
            record_session(store, {**total, "skipped": before}, append=True)
            print(f"mtlab: trained {total['trained']} runs ({total['failed']} failed) in "
                  f"{total['seconds']:.1f} s; {before} were stored already", file=sys.stderr)
        store.write_tables()
        _summary(store)
        meta = {"data": str(args.data), "rows": data.table.n, "seeds": args.seeds,
                "model": f"{trunk}:{','.join(map(str, widths))}", "steps": data.base["steps"],
                "patience": args.patience,
                "executor": folder.executor.name}  # fmt: skip
        paths = write_advice(advice, args.out, meta)
        for task in advice["tasks"]:
            d = advice["per_task"][task]
            what = d["regime"] if d["clear"] else "stl (no clear winner)"
            extra = ",".join(d["partners"]) or d["source"] or d["pretrained_on"] or ""
            ref = d["reference"]["test"] if d["reference"] else float("nan")
            print(f"  {task:16s} {what:22s} {extra:24s} {d['metric']} "
                  f"{d['recommended']:.3f} (alone {d['stl']:.3f}, tree {ref:.3f})")  # fmt: skip
        print(f"advice: {paths['advice']}\nreport: {paths['html']}")
        return 0

    return folder.open(body)


def _summary(store: Any) -> None:
    """``summary.csv``: per run configuration and task, the metrics' mean and s.e. over seeds."""
    from mtlab.studies.summary import summary_table

    store.write_csv("summary.csv", summary_table(store.results()))


__all__ = ["add", "run"]
