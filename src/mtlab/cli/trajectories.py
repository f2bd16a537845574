"""``mtlab trajectories``: the trajectories study on a built-in dataset or your own table."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mtlab.cli import options
from mtlab.cli.folder import execute_sweep, fail


def add(sub: Any) -> None:
    tp = sub.add_parser(
        "trajectories",
        help="STL vs MTL training trajectories on a dataset or your own table: matched-loss gap, "
        "trajectory factors, gradient conflict (trajectories.parquet, gap.csv, report)",
    )
    src = tp.add_mutually_exclusive_group(required=True)
    src.add_argument("--dataset", help="a built-in dataset: digit-attributes or multi-digits")
    src.add_argument("--data", type=Path, help="your own CSV, Parquet or NPZ table")
    tp.add_argument(
        "--tasks", default=None,
        help="comma-separated tasks (target columns; classification or regression); default: "
        "all of the dataset, or every array but 'x' of an NPZ",
    )  # fmt: skip
    tp.add_argument(
        "--methods", default=None,
        help="comma-separated multi-task methods; the first is the baseline (default: sum and "
        "the preset's)",
    )  # fmt: skip
    tp.add_argument("--preset", default="quick", help="tiny, quick or paper (steps, network)")
    tp.add_argument("--seeds", type=options.positive, default=None, help="default: the preset's")
    options.add_sweep(tp)
    tp.set_defaults(run=run, trains=True)


def _check_table(path: Path, tasks: list[str] | None) -> list[str]:
    """The table's tasks, read and split as the runs will (raises DataError / ValueError)."""
    from mtlab.tasks.tables import prepare, read_table

    if tasks is None and path.suffix.lower() != ".npz":
        raise ValueError("--tasks: name the target columns of --data")
    prep = prepare(read_table(path, tasks), seed=0)
    return [t.name for t in prep.tasks]


def run(args: argparse.Namespace) -> int:
    from mtlab.runs.config import dataset_errors
    from mtlab.studies import get_study
    from mtlab.studies.base import StudyInputs
    from mtlab.studies.trajectories import BASELINE
    from mtlab.tasks.base import DataError

    try:
        methods = options.methods(args.methods)
        if methods is not None and not methods:
            raise ValueError("--methods: name at least one method")
        tasks = options.names(args.tasks)
        if args.dataset is not None and (errors := dataset_errors(args.dataset)):
            raise ValueError(f"--{errors[0]}")
        if args.data is not None:
            tasks = _check_table(args.data, tasks)
        study = get_study("trajectories")
        study.preset(args.preset)
        given = StudyInputs(
            dataset=args.dataset,
            methods=None if methods is None else tuple(methods),
            tasks=None if tasks is None else tuple(tasks),
            data_path=None if args.data is None else str(args.data),
        )
        configs = study.configs(args.preset, args.seeds, given)
    except (ValueError, DataError) as err:
        return fail(str(err))
    used = methods or [BASELINE, *study.preset(args.preset).params["methods"]]
    extra = {"seeds": args.seeds, "dataset": args.dataset, "data": None if args.data is None
             else str(args.data), "tasks": tasks, "methods": used}  # fmt: skip
    label = f"trajectories on {args.dataset or args.data} (preset {args.preset})"
    return execute_sweep(args, study.name, f"custom-{args.preset}", configs, extra, label)


__all__ = ["add"]
