"""``mtlab benchmark``: the multi-task methods against STL (Δm) on a built-in dataset or on your
own data — both the ``benchmark`` study, in one kind of run folder."""

from __future__ import annotations

import argparse
from typing import Any

from mtlab.cli import options
from mtlab.cli.folder import execute_sweep, fail


def add(sub: Any) -> None:
    bp = sub.add_parser(
        "benchmark",
        help="STL vs MTL with multi-task methods on a real dataset or your own (Δm, "
        "delta_m.csv, report)",
    )
    bp.add_argument(
        "--dataset", default="multi-digits",
        help="a built-in dataset: digit-attributes, multi-digits or planted-groups",
    )  # fmt: skip
    bp.add_argument(
        "--methods", default=None,
        help="comma-separated methods (default: the preset's; with --data mean,pcgrad,upgrad,uw); "
        "see `mtlab benchmark --list`",
    )  # fmt: skip
    bp.add_argument("--preset", default="quick", help="tiny, quick or full")
    bp.add_argument("--seeds", type=options.positive, default=None,
                    help="default: the preset's (built-in), 3 (--data)")  # fmt: skip
    bp.add_argument("--list", action="store_true", help="print the available methods and exit")
    bp.add_argument("--widths", default=None, help="built-in datasets: hidden widths, e.g. 256,256")
    bp.add_argument("--lr", type=float, default=None, help="Adam learning rate (default 1e-3)")
    bp.add_argument("--batch-size", type=options.positive, default=None,
                    help="default: the preset's (built-in), 128 (--data)")  # fmt: skip
    own = bp.add_argument_group("your own data (instead of --dataset)")
    options.add_data(own, required=False)
    own.add_argument("--model", default=None, help="as for advise: mlp:W,W,… or cnn:C,C,…")
    own.add_argument("--steps", type=options.positive, default=800,
                     help="steps per training (--data)")  # fmt: skip
    options.add_sweep(bp, out_required=False)
    bp.set_defaults(run=run, trains=True)


def list_methods() -> int:
    from mtlab.grad.methods import method_names

    print("loss weightings: " + ", ".join(method_names("weighting")))
    print("Jacobian aggregators (torchjd): " + ", ".join(method_names("jacobian")))
    return 0


def run(args: argparse.Namespace) -> int:
    from mtlab.studies import get_study
    from mtlab.studies.base import StudyInputs
    from mtlab.tasks.base import DataError

    if args.list:
        return list_methods()
    if args.out is None:
        return fail("benchmark: --out is required")
    if (problem := options.own_data_without_data(args)) is not None:
        return fail(problem)
    study = get_study("benchmark")
    identity = None
    try:
        methods = options.methods(args.methods, stl=True)
        if args.data is not None:
            from mtlab.cli import owndata
            from mtlab.studies.benchmark import DATA_METHODS

            if args.widths is not None:
                raise ValueError("--widths is for the built-in datasets; with --data use "
                                 "--model mlp:W,W")  # fmt: skip
            methods = [m for m in (methods or DATA_METHODS) if m != "stl"]  # STL: the baseline
            if not methods:
                raise ValueError("--methods: name at least one multi-task method")
            trunk, widths = options.model(args.model, owndata.is_images(args))
            data = owndata.read(args, "benchmark", trunk, widths, steps=args.steps,
                                lr=1e-3 if args.lr is None else args.lr,
                                batch_size=args.batch_size or 128)  # fmt: skip
            identity = data.identity
            given = StudyInputs(methods=tuple(methods), owndata=data.base)
            preset, seeds, where = "data", args.seeds or 3, str(args.data)
        else:
            given = StudyInputs(
                dataset=args.dataset,
                methods=None if methods is None else tuple(methods),
                widths=None if args.widths is None else options.widths(args.widths),
                lr=args.lr,
                batch_size=args.batch_size,
            )
            preset, seeds, where = args.preset, args.seeds, args.dataset
        study.preset(args.preset)
        if args.lr is not None and args.lr <= 0:
            raise ValueError("--lr must be positive")
        configs = study.configs(args.preset, seeds, given)
    except (ValueError, DataError) as err:
        return fail(str(err))
    extra = {"seeds": seeds, "dataset": args.dataset if args.data is None else None,
             "data": None if args.data is None else str(args.data), "methods": methods}  # fmt: skip
    label = f"benchmark on {where}"
    code = execute_sweep(args, study.name, preset, configs, extra, label, identity)
    if code == 0 and not args.no_report and not args.dry_run:
        print((args.out / "delta_m.csv").read_text().rstrip())
    return code


__all__ = ["add"]
