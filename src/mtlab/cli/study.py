"""``mtlab list``, ``mtlab reproduce STUDY``, ``mtlab run SWEEP.yaml`` and ``mtlab report OUT``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mtlab.cli import options
from mtlab.cli.folder import execute_sweep, fail


def add(sub: Any) -> None:
    sub.add_parser("list", help="registered studies, descriptions and presets").set_defaults(
        run=list_studies)
    rp = sub.add_parser("reproduce", help="run a registered study at a preset")
    rp.add_argument("study")
    rp.add_argument("--preset", default="quick")
    rp.add_argument(
        "--seeds", type=options.positive, default=None, help="number of seeds (default: preset's)"
    )
    rp.add_argument(
        "--data-dir", type=Path, default=None,
        help="external data for studies that read it (images-rescaling --preset paper: "
        "the CIFAR-100 python files)",
    )  # fmt: skip
    options.add_sweep(rp)
    rp.set_defaults(run=reproduce, trains=True)
    sp = sub.add_parser("run", help="run a YAML sweep of run configs")
    sp.add_argument("sweep", type=Path)
    options.add_sweep(sp)
    sp.set_defaults(run=run_sweep, trains=True)
    rep = sub.add_parser("report", help="rebuild figures and the report of a run folder")
    rep.add_argument("out", type=Path)
    rep.set_defaults(run=report)


def list_studies(args: argparse.Namespace) -> int:
    from mtlab.studies import REGISTRY

    for name, st in sorted(REGISTRY.items()):
        print(f"{name:12s} {st.description}")
        for pname, pr in st.presets.items():
            print(f"{'':12s}   --preset {pname:6s} {pr.description} (seeds: {pr.seeds})")
    return 0


def reproduce(args: argparse.Namespace) -> int:
    from mtlab.studies import get_study
    from mtlab.studies.base import StudyInputs

    try:
        study = get_study(args.study)
        study.preset(args.preset)
        if args.data_dir is not None and not args.data_dir.is_dir():
            return fail(f"--data-dir {args.data_dir}: no such directory")
        data_dir = None if args.data_dir is None else str(args.data_dir)
        configs = study.configs(args.preset, args.seeds, StudyInputs(data_dir=data_dir))
    except ValueError as err:
        return fail(str(err))
    return execute_sweep(args, study.name, args.preset, configs, {"seeds": args.seeds})


def run_sweep(args: argparse.Namespace) -> int:
    from mtlab.runs.sweep import load_sweep
    from mtlab.studies import REGISTRY

    spec, configs = load_sweep(args.sweep)
    name = spec.get("study", "custom")
    report_as = name if name in REGISTRY else "custom"
    label = f"sweep {name!r} from {args.sweep} (report: study {report_as!r})"
    return execute_sweep(args, report_as, "yaml", configs, {"sweep": spec}, label)


def report(args: argparse.Namespace) -> int:
    from mtlab.runs.store import RunStore
    from mtlab.studies import REGISTRY
    from mtlab.studies.report import make_report

    if not (args.out / "config.yaml").exists():
        return fail(f"{args.out} is not an mtlab run folder (no config.yaml)")
    study = RunStore.read_config_at(args.out).get("study")
    if study not in REGISTRY:
        return fail(f"{args.out} holds the runs of `mtlab {study}`, whose report that command "
                    "writes: rerun it (it reuses every stored run)")  # fmt: skip
    paths = make_report(args.out)
    print(f"report: {paths['html']}\n        {paths['md']}")
    return 0


__all__ = ["add"]
