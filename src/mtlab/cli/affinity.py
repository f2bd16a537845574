"""``mtlab affinity``: the lookahead affinity of a dataset's tasks, or of your own data's, over
seeds — the ``affinity`` study's runs in a run folder, ``affinity.json`` for ``mtlab group``."""

from __future__ import annotations

import argparse
from typing import Any

from mtlab.cli import options
from mtlab.cli.folder import execute_sweep, fail


def add(sub: Any) -> None:
    ap = sub.add_parser(
        "affinity", help="train with lookahead probes → affinity.json, heatmap, affinity over time"
    )
    ap.add_argument(
        "--dataset", default="digit-attributes",
        help="a built-in dataset: digit-attributes, multi-digits or planted-groups",
    )  # fmt: skip
    options.add_data(ap.add_argument_group("your own data (instead of --dataset)"), required=False)
    ap.add_argument("--epochs", type=options.positive, default=50, help="built-in datasets")
    ap.add_argument("--steps", type=options.positive, default=800, help="training steps (--data)")
    ap.add_argument("--seeds", type=options.positive, default=1,
                    help="seeds averaged (mean ± s.e. per entry; grouping stability)")  # fmt: skip
    ap.add_argument("--widths", default="128,64",
                    help="MLP trunk widths (default 128,64); CNN channels for images")  # fmt: skip
    ap.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    ap.add_argument("--batch-size", type=options.positive, default=64)
    ap.add_argument("--probe-every", type=options.positive, default=100,
                    help="steps between probes")  # fmt: skip
    ap.add_argument(
        "--rule", choices=("optimizer", "sgd"), default=None,
        help="probe update: the optimiser's real (Adam) update, or a step of 0.1 · gradient "
        "(default: optimizer for a built-in dataset, sgd for your own data)",
    )  # fmt: skip
    ap.add_argument("--method", default="mean", help="how the network itself is trained")
    ap.add_argument("--seed", type=int, default=0, help="the first seed")
    options.add_sweep(ap)
    ap.set_defaults(run=run, trains=True)


def run(args: argparse.Namespace) -> int:
    from mtlab.runs.config import dataset_errors, make_config
    from mtlab.runs.store import RunStore
    from mtlab.studies.affinity import affinity_text, folder_result
    from mtlab.tasks.base import DataError

    if (problem := options.own_data_without_data(args)) is not None:
        return fail(problem)
    seeds = list(range(args.seed, args.seed + args.seeds))
    identity = None
    try:
        options.methods(args.method, "--method")
        widths = options.widths(args.widths)
        if args.lr <= 0:
            raise ValueError(f"--lr {args.lr}: must be positive")
        if args.data is not None:
            from mtlab.cli import owndata

            images = owndata.is_images(args)
            data = owndata.read(args, "affinity", "cnn" if images else "mlp", widths,
                                steps=args.steps, lr=args.lr, batch_size=args.batch_size,
                                probe_every=args.probe_every,
                                probe_rule=args.rule or "sgd")  # fmt: skip
            identity = data.identity
            configs = [data.config(tasks=tuple(data.tasks), method=args.method, seed=s,
                                   probe=True) for s in seeds]  # fmt: skip
            where = str(args.data)
        else:
            if errors := dataset_errors(args.dataset):
                raise ValueError(f"--{errors[0]}")
            from mtlab.studies.affinity import dataset_base

            identity = dataset_base(args.dataset, args.epochs, args.batch_size, method=args.method,
                                    widths=widths, lr=args.lr, probe_every=args.probe_every,
                                    probe_rule=args.rule or "optimizer")  # fmt: skip
            configs = [make_config({**identity, "seed": s}) for s in seeds]
            where = args.dataset
    except (ValueError, DataError) as err:
        return fail(str(err))
    extra = {"seeds": seeds, "dataset": None if args.data is not None else args.dataset,
             "data": None if args.data is None else str(args.data)}  # fmt: skip
    code = execute_sweep(args, "affinity", "custom", configs, extra, f"affinity on {where}",
                         identity)  # fmt: skip
    if code == 0 and not args.dry_run and not args.no_report:
        result = folder_result(RunStore(args.out))
        if result is not None:
            print(affinity_text(result, args.out))
    return code


__all__ = ["add"]
