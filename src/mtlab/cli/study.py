"""``mtlab list``, ``mtlab reproduce STUDY``, ``mtlab stability STUDY``, ``mtlab run SWEEP.yaml``
and ``mtlab report OUT``."""

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
    rp.add_argument(
        "--seed-offset", type=int, default=0,
        help="run on seeds OFFSET … OFFSET + n − 1 instead of 0 … n − 1 (a disjoint draw)",
    )  # fmt: skip
    options.add_sweep(rp)
    rp.set_defaults(run=reproduce, trains=True)
    st = sub.add_parser(
        "stability",
        help="rerun a study's preset on seeds disjoint from the default ones and list every "
        "claim whose verdict moved",
        description="Runs the preset twice — on its default seeds (OUT/default) and on the next "
        "as many seeds (OUT/offset-N) — and compares the verdicts: a claim that flips between "
        "holds and contradicted is not a stable finding. Writes OUT/stability.json.",
    )  # fmt: skip
    st.add_argument("study")
    st.add_argument("--preset", default="quick")
    st.add_argument("--out", type=Path, required=True)
    st.add_argument("--seed-offset", type=options.positive, default=None,
                    help="the second draw's first seed (default: the preset's seed count)")
    st.add_argument("--quiet", action="store_true")
    st.set_defaults(run=stability, trains=True)
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
    from mtlab.studies.base import StudyInputs, offset_seeds

    try:
        study = get_study(args.study)
        study.preset(args.preset)
        if args.data_dir is not None and not args.data_dir.is_dir():
            return fail(f"--data-dir {args.data_dir}: no such directory")
        data_dir = None if args.data_dir is None else str(args.data_dir)
        configs = study.configs(args.preset, args.seeds, StudyInputs(data_dir=data_dir))
        configs = offset_seeds(configs, args.seed_offset)
    except ValueError as err:
        return fail(str(err))
    extra = {"seeds": args.seeds, **({"seed_offset": args.seed_offset} if args.seed_offset else {})}
    return execute_sweep(args, study.name, args.preset, configs, extra)


def stability(args: argparse.Namespace) -> int:
    import json

    from mtlab.cli import main
    from mtlab.studies import get_study
    from mtlab.studies.claims import verdict_changes

    try:
        study = get_study(args.study)
        offset = args.seed_offset or study.preset(args.preset).seeds
    except ValueError as err:
        return fail(str(err))
    outs = {"default": args.out / "default", "offset": args.out / f"offset-{offset}"}
    quiet = ["--quiet"] if args.quiet else []
    for key, extra in (("default", []), ("offset", ["--seed-offset", str(offset)])):
        code = main(["reproduce", study.name, "--preset", args.preset, "--out", str(outs[key]),
                     *extra, *quiet])  # fmt: skip
        if code != 0:
            return code
    claims = {k: json.loads((p / "claims.json").read_text())["claims"] for k, p in outs.items()}
    rows = verdict_changes(claims["default"], claims["offset"])
    flipped = [r for r in rows if r["move"] == "flipped"]
    (args.out / "stability.json").write_text(json.dumps(
        {"study": study.name, "preset": args.preset, "seed_offset": offset, "claims": rows,
         "flipped": [r["id"] for r in flipped]}, indent=2))  # fmt: skip
    print(f"{study.name} --preset {args.preset}: default seeds vs seeds from {offset}")
    for r in rows:
        print(f"  {r['move']:24s} {r['first'] or '—':13s} → {r['second'] or '—':13s} {r['id']}")
    print(f"{len(flipped)} of {len(rows)} claims flipped between holds and contradicted"
          + (": " + ", ".join(r["id"] for r in flipped) if flipped else ""))  # fmt: skip
    return 0


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
