"""The ``mtlab`` command line.

::

    mtlab list                                          registered studies and their presets
    mtlab reproduce diagonal --preset quick --out runs/diag [--seeds N]
    mtlab run my_sweep.yaml --out runs/mine             any grid of the building blocks
    mtlab report runs/diag                              rebuild figures + report from results

Exit codes: 0 success, 1 failure while running, 2 invalid input (nothing is trained or written).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

from mtlab import __version__


def _chunk(value: str) -> int | str:
    if value in ("auto", "measure"):
        return value
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--chunk must be 'auto', 'measure' or a positive integer (got {value!r})"
        ) from None
    if n < 1:
        raise argparse.ArgumentTypeError(
            f"--chunk must be 'auto', 'measure' or a positive integer (got {value!r})"
        )
    return n


def _device(value: str) -> str:
    import torch

    try:
        dev = torch.device(value)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"--device: unknown device {value!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError("--device cuda: no CUDA device is available here")
    return value


def _positive(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer (got {value!r})")
    return n


def data_opts(p: Any, required: bool) -> None:  # a parser or an argument group
    """A user's own data: a table, a label table with an image folder, or IDX files."""
    p.add_argument(
        "--data", type=Path, required=required,
        help="your own data: a CSV, Parquet or NPZ table; with --images a label table naming "
        "image files; with --labels an IDX image file",
    )  # fmt: skip
    p.add_argument(
        "--targets", default=None, help="comma-separated target columns (default for an NPZ: "
        "every array but x; for IDX: the label columns)",
    )  # fmt: skip
    p.add_argument("--features", default=None, help="comma-separated (default: all others)")
    p.add_argument(
        "--kinds", default=None, help="override inferred task kinds: ltv=regression,churn=classification"
    )  # fmt: skip
    p.add_argument("--split-column", default=None, help="a column of train / val / test")
    p.add_argument("--images", type=Path, default=None, help="a folder of images named in --data")
    p.add_argument("--image-column", default="file", help="the column naming each row's image")
    p.add_argument(
        "--image-size", type=_positive, default=None,
        help="resize every image to N×N (default: all must have the first one's size)",
    )  # fmt: skip
    p.add_argument("--labels", type=Path, default=None, help="IDX labels for an IDX --data")


def build_parser() -> argparse.ArgumentParser:  # long: one declarative table of commands
    p = argparse.ArgumentParser(prog="mtlab", description="A lab bench for multi-task learning.")
    p.add_argument("--version", action="version", version=f"mtlab {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="registered studies, descriptions and presets")

    def run_opts(sp: argparse.ArgumentParser, out_required: bool = True) -> None:
        sp.add_argument(
            "--out", required=out_required, type=Path, help="output folder (resumes if present)"
        )
        sp.add_argument(
            "--chunk",
            type=_chunk,
            default="auto",
            help="runs per ensemble: 'auto' (the families' deterministic cost model: the same "
            "numbers on a busy and an idle machine), 'measure' (timed once, stored in "
            "OUT/plan.json and reused) or a number; 1 = one at a time",
        )
        sp.add_argument("--device", type=_device, default="cpu", help="torch device (default cpu)")
        cluster = sp.add_argument_group('cluster (Ray; pip install "mtlab[ray]")')
        cluster.add_argument(
            "--executor",
            choices=("local", "ray"),
            default="local",
            help="where chunks run: in this process (default) or as Ray tasks",
        )
        cluster.add_argument(
            "--address",
            default=None,
            help="Ray cluster to join ('auto' or host:port); default: start a local instance "
            "on this machine's cores, taken down when mtlab exits",
        )
        cluster.add_argument(
            "--cpus-per-chunk", type=float, default=1.0, help="CPUs a chunk declares (default 1)"
        )
        cluster.add_argument(
            "--gpus-per-chunk",
            type=float,
            default=0.0,
            help="GPUs a chunk declares, fractions allowed (0.25: four chunks per GPU); >0 "
            "trains on cuda",
        )
        cluster.add_argument(
            "--retries",
            type=int,
            default=3,
            help="times a chunk whose worker died is retried before its runs are tried one at a "
            "time, then stored as failed (default 3)",
        )
        sp.add_argument("--quiet", action="store_true", help="no progress bar")
        sp.add_argument("--no-report", action="store_true", help="train only; no figures/report")
        sp.add_argument(
            "--dry-run",
            action="store_true",
            help="validate and count the runs (by method); train and write nothing",
        )
        sp.add_argument(
            "--append",
            action="store_true",
            help="add this sweep's runs to a folder that holds another sweep of the same study "
            "and preset (recorded in sessions.json); without it such a folder is refused",
        )

    rp = sub.add_parser("reproduce", help="run a registered study at a preset")
    rp.add_argument("study")
    rp.add_argument("--preset", default="quick")
    rp.add_argument(
        "--seeds", type=_positive, default=None, help="number of seeds (default: preset's)"
    )
    rp.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="external data for studies that read it (images-rescaling --preset paper: "
        "the CIFAR-100 python files)",
    )
    run_opts(rp)
    sp = sub.add_parser("run", help="run a YAML sweep of run configs")
    sp.add_argument("sweep", type=Path)
    run_opts(sp)
    bp = sub.add_parser(
        "benchmark",
        help="STL vs MTL with multi-task methods on a real dataset (Δm, delta_m.csv, report)",
    )
    bp.add_argument(
        "--dataset", default="multi-digits",
        help="a built-in dataset: digit-attributes, multi-digits or planted-groups",
    )  # fmt: skip
    bp.add_argument(
        "--methods",
        default=None,
        help="comma-separated methods (default: the preset's); see `mtlab benchmark --list`",
    )
    bp.add_argument("--preset", default="quick", help="tiny, quick or full")
    bp.add_argument("--seeds", type=_positive, default=None, help="default: the preset's")
    bp.add_argument("--list", action="store_true", help="print the available methods and exit")
    bp.add_argument("--widths", default=None, help="built-in datasets: hidden widths, e.g. 256,256")
    bp.add_argument("--lr", type=float, default=None, help="Adam learning rate (default 1e-3)")
    bp.add_argument("--batch-size", type=_positive, default=None,
                    help="default: the preset's (built-in), 128 (--data)")  # fmt: skip
    own = bp.add_argument_group("your own data (instead of --dataset)")
    data_opts(own, required=False)
    own.add_argument("--model", default=None, help="as for advise: mlp:W,W,… or cnn:C,C,…")
    own.add_argument("--steps", type=_positive, default=800, help="steps per training (--data)")
    run_opts(bp, out_required=False)
    ap = sub.add_parser(
        "affinity", help="train with lookahead probes → affinity.json, heatmap, affinity over time"
    )
    ap.add_argument(
        "--dataset", default="digit-attributes",
        help="a built-in dataset: digit-attributes, multi-digits or planted-groups",
    )  # fmt: skip
    data_opts(ap.add_argument_group("your own data (instead of --dataset)"), required=False)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--epochs", type=_positive, default=50, help="built-in datasets")
    ap.add_argument("--steps", type=_positive, default=800, help="training steps (--data)")
    ap.add_argument("--seeds", type=_positive, default=1,
                    help="seeds averaged (mean ± s.e. per entry; grouping stability)")  # fmt: skip
    ap.add_argument("--widths", default="128,64",
                    help="MLP trunk widths (default 128,64); CNN channels for images")  # fmt: skip
    ap.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    ap.add_argument("--batch-size", type=_positive, default=64)
    ap.add_argument("--probe-every", type=_positive, default=100, help="steps between probes")
    ap.add_argument(
        "--rule",
        choices=("optimizer", "sgd"),
        default="optimizer",
        help="probe update: the optimiser's real (Adam) update, or lr·gradient",
    )
    ap.add_argument("--method", default="mean", help="how the network itself is trained")
    ap.add_argument("--seed", type=int, default=0, help="the first seed")
    ap.add_argument("--device", type=_device, default="cpu")
    tp = sub.add_parser(
        "trajectories",
        help="STL vs MTL training trajectories on a dataset or your own table: matched-loss gap, "
        "trajectory factors, gradient conflict (trajectories.parquet, gap.csv, report)",
    )
    src = tp.add_mutually_exclusive_group(required=True)
    src.add_argument("--dataset", help="a built-in dataset: digit-attributes or multi-digits")
    src.add_argument("--data", type=Path, help="a CSV / NPZ table (integer label columns)")
    tp.add_argument(
        "--tasks",
        default=None,
        help="comma-separated tasks (label columns); default: all of the dataset, or every "
        "array but 'x' of an NPZ",
    )
    tp.add_argument(
        "--methods",
        default=None,
        help="comma-separated multi-task methods; the first is the baseline (default: sum and "
        "the preset's)",
    )
    tp.add_argument("--preset", default="quick", help="tiny, quick or paper (steps, network)")
    tp.add_argument("--seeds", type=_positive, default=None, help="default: the preset's")
    run_opts(tp)
    gp = sub.add_parser("group", help="the best task grouping for each budget from affinity.json")
    gp.add_argument("affinity", type=Path)
    gp.add_argument("--budget", type=_positive, required=True)
    gp.add_argument("--json", action="store_true", help="print the grouping for --budget as JSON")
    gp.add_argument(
        "--singletons",
        action="store_true",
        help="also allow one-task groups; a task alone scores 0 (no transfer), so it is "
        "chosen where every group would give it negative affinity",
    )
    adv = sub.add_parser(
        "advise",
        help="your own data: which tasks together, MTL or PT+FT, which method, which rescaling "
        "(advice.json, report.html)",
        description="Trains, per seed: STL per task; MTL on all tasks with lookahead probes; every "
        "pair of tasks together (the realised transfer that drives the grouping, up to 8 tasks); "
        "the exact grouping per budget; the chosen groups (predicted vs realised); each task "
        "with its helpful partners under --methods; PT+FT from its most helpful source at each "
        "--rescales s. A task gets a recommendation only where its validation gain over STL "
        "exceeds 2 standard errors over seeds. Resumable: rerun the same command.",
    )
    data_opts(adv, required=True)
    adv.add_argument("--out", type=Path, required=True)
    adv.add_argument("--budget", type=_positive, default=None,
                     help="networks for the groups that are trained (default 2)")  # fmt: skip
    adv.add_argument("--seeds", type=_positive, default=3)
    adv.add_argument(
        "--model", default=None, help="mlp:WIDTH,WIDTH,… (default mlp:128,128) or, for images, "
        "cnn:CHANNELS,… (default cnn:16,32 with --images or --labels)",
    )  # fmt: skip
    adv.add_argument("--steps", type=_positive, default=800, help="steps per training")
    adv.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    adv.add_argument("--batch-size", type=_positive, default=128)
    adv.add_argument("--methods", default="pcgrad,uw", help="methods tried on the groups")
    adv.add_argument("--rescales", default="0.5,1,2", help="PT+FT rescalings s of the trunk")
    adv.add_argument(
        "--time-budget", type=float, default=600.0,
        help="seconds; later stages that would not fit are skipped and reported (0: no limit)",
    )  # fmt: skip
    adv.add_argument(
        "--affinity", choices=("auto", "pairs", "lookahead"), default="auto",
        help="what drives the grouping: the realised transfer of every pair of tasks trained "
        "together (pairs), the lookahead affinity of MTL on all tasks (lookahead), or pairs up "
        "to 8 tasks and lookahead beyond (auto, the default)",
    )  # fmt: skip
    adv.add_argument("--device", type=_device, default="cpu")
    adv.add_argument("--quiet", action="store_true")
    stp = sub.add_parser(
        "status", help="a run folder's progress: done / failed / pending per method, failures, ETA"
    )
    stp.add_argument("out", type=Path)
    stp.add_argument("--failures", type=_positive, default=10, help="failures to list")
    rep = sub.add_parser("report", help="rebuild figures and the report of a run folder")
    rep.add_argument("out", type=Path)
    return p


#: the score of a task trained alone in `mtlab group --singletons`: no inter-task transfer
SINGLETON_SCORE = 0.0


def _fail(msg: str) -> int:
    print(f"mtlab: error: {msg}", file=sys.stderr)
    return 2


def _stored_ids(old: dict[str, Any]) -> list[str]:
    """Run ids of the sweep a folder's ``config.yaml`` records, in its order (folders written
    before ``run_ids`` was recorded: recomputed from the runs)."""
    if "run_ids" in old:
        return list(old["run_ids"])
    from mtlab.runs.config import make_config

    return [make_config(r).run_id() for r in old.get("runs", [])]


def _check_out(
    out: Path, study: str, preset: str, configs: Any = (), append: bool = False
) -> str | None:
    """Why ``out`` cannot take this sweep (None: it can). A folder holds one sweep: the same
    study and preset and the same runs (a rerun resumes), or more runs with ``--append``."""
    if out.exists() and not out.is_dir():
        return f"--out {out} is a file, not a folder"
    cfg = out / "config.yaml"
    if not cfg.exists():
        return None
    from mtlab.runs.store import RunStore

    old = RunStore.read_config_at(out)
    if (old.get("study"), old.get("preset")) != (study, preset):
        return (
            f"{out} already holds study {old.get('study')!r} preset {old.get('preset')!r}; "
            f"choose another --out to run study {study!r} preset {preset!r}"
        )
    new = {c.run_id() for c in configs}
    have = set(_stored_ids(old))
    if configs and new != have and not append:
        return (
            f"{out} already holds another sweep of study {study!r} ({len(have)} runs; this "
            f"command plans {len(new)}, {len(new & have)} of them in the folder): choose "
            "another --out, or add --append to add this sweep's runs to it"
        )
    return None


def make_report(out: Path) -> dict[str, Path]:
    """Analyse the results in ``out`` with its study and write figures + report."""
    from mtlab.report import write_report
    from mtlab.runs.store import RunStore
    from mtlab.studies import get_study

    store = RunStore(out)
    cfg = store.read_config()
    study = get_study(cfg["study"])
    preset = cfg.get("preset", "yaml")
    analysis = study.analyze(store, out / "figures", preset)
    history = (
        json.loads((out / "sessions.json").read_text()) if (out / "sessions.json").exists() else []
    )
    df = store.results()
    import torch

    from mtlab.studies.summary import failed_line, summary_table

    summary = summary_table(df)
    store.write_csv("summary.csv", summary)
    failed = failed_line(df)
    if failed:  # counted beside every mean: in the summary line and in every claim's evidence
        analysis.summary = f"{analysis.summary} {failed}.".strip()
        n_failed = int((df.drop_duplicates("run_id").status == "failed").sum())
        for claim in analysis.claims:
            claim.evidence = {**claim.evidence, "failed_runs_excluded": n_failed}
    n_runs = int(df.run_id.nunique()) if "run_id" in df else 0

    meta = {
        "command": cfg.get("command", ""),
        "paper": getattr(study, "paper", "") or "—",
        "preset": f"{preset}: {study.presets[preset].description}"
        if preset in study.presets
        else preset,
        "runs stored": f"{n_runs} ({failed or 'none failed'})",
        "training wall time (s)": round(sum(h.get("seconds", 0.0) for h in history), 1),
        "report written": _dt.datetime.now().isoformat(timespec="seconds"),
        "software": f"mtlab {__version__}, torch {torch.__version__}, Python {platform.python_version()}",
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
    }
    return write_report(out, study=study.name, preset=preset, analysis=analysis, meta=meta)


def _dry_run(configs: list[Any], label: str) -> int:
    """Print the number of runs per method (dependencies included); write nothing."""
    from collections import Counter

    from mtlab.runs.executor import expand_dependencies

    counts = Counter(c.method for phase in expand_dependencies(configs) for c in phase)
    print(
        f"{sum(counts.values())} runs of {label}: "
        + ", ".join(f"{m} {n}" for m, n in sorted(counts.items()))
    )
    return 0


def _record_session(store: Any, out: Path, stats: dict[str, Any], append: bool = False) -> None:
    """Append this session's command and counts to the folder's ``sessions.json``."""
    hist_path = out / "sessions.json"
    hist = json.loads(hist_path.read_text()) if hist_path.exists() else []
    hist.append(
        {
            "finished": _dt.datetime.now().isoformat(timespec="seconds"),
            "command": " ".join(["mtlab", *sys.argv[1:]]),
            "append": append,
            **{
                k: stats[k]
                for k in ("executor", "requested", "trained", "skipped", "failed", "seconds")
            },
        }
    )
    store.write_json("sessions.json", hist)


def make_executor(args: argparse.Namespace) -> Any:
    """The executor the command line asks for (checked, not started); ExecutorError if not."""
    from mtlab.runs.executor import ExecutorError, LocalExecutor

    if args.executor == "local":
        given = [
            flag
            for flag, value, default in (
                ("--address", args.address, None),
                ("--cpus-per-chunk", args.cpus_per_chunk, 1.0),
                ("--gpus-per-chunk", args.gpus_per_chunk, 0.0),
                ("--retries", args.retries, 3),
            )
            if value != default
        ]
        if given:
            raise ExecutorError(f"{', '.join(given)} only apply with --executor ray")
        return LocalExecutor(args.device)
    from mtlab.runs.ray_executor import RayExecutor, require_ray

    require_ray()  # the install line, before any work
    if args.chunk == "measure":
        raise ExecutorError(
            "--chunk measure times chunks on this machine, not on the cluster's workers: "
            "with --executor ray use --chunk auto (the default) or a number"
        )
    device = None if args.device == "cpu" else args.device
    return RayExecutor(
        args.address,
        cpus_per_chunk=args.cpus_per_chunk,
        gpus_per_chunk=args.gpus_per_chunk,
        retries=args.retries,
        device=device,
    )


def _execute(
    args: argparse.Namespace,
    study: str,
    preset: str,
    configs,
    extra: dict[str, Any],
    label: str | None = None,
) -> int:
    label = label or f"study {study!r} (preset {preset})"
    from mtlab.runs.executor import ExecutorError, expand_dependencies, memory_problem
    from mtlab.runs.store import FolderLocked, RunStore

    try:
        executor = make_executor(args)
    except ExecutorError as err:
        return _fail(str(err))
    append = bool(getattr(args, "append", False))
    problem = _check_out(args.out, study, preset, configs, append)
    if not problem and args.address is None and executor.device == "cpu":
        # this machine's memory (a cluster's workers, or a GPU, are not known from here)
        every = [c for phase in expand_dependencies(configs) for c in phase]
        problem = memory_problem(every, args.device)
    if problem:
        return _fail(problem)
    if args.dry_run:
        return _dry_run(configs, label)
    try:
        executor.start()  # resources that no node has are refused before the folder is touched
        store = RunStore(args.out)
        with store.lock():
            return _locked_run(args, store, study, preset, configs, extra, label, append, executor)
    except (FolderLocked, ExecutorError) as err:
        return _fail(str(err))
    except OSError as err:
        if not (args.out / "config.yaml").exists():  # refused before writing anything
            return _fail(f"cannot write to --out {args.out}: {err.strerror or err}")
        raise
    finally:
        executor.close()


def _locked_run(
    args: argparse.Namespace,
    store: Any,
    study: str,
    preset: str,
    configs: Any,
    extra: dict[str, Any],
    label: str,
    append: bool,
    executor: Any,
) -> int:
    """The body of :func:`_execute` while the folder's lock is held."""
    from mtlab.runs.executor import execute, planned_ids

    problem = _check_out(args.out, study, preset, configs, append)  # again, under the lock
    if problem:
        return _fail(problem)
    runs = [c.model_dump() for c in configs]
    ids = [c.run_id() for c in configs]
    if append and (args.out / "config.yaml").exists():
        old = store.read_config()
        old_runs = old.get("runs", [])
        old_ids = _stored_ids(old)
        known = set(ids)
        for r, rid in zip(old_runs, old_ids, strict=True):
            if rid not in known:  # the folder keeps every sweep appended to it
                runs.append(r)
                ids.append(rid)
                known.add(rid)
    store.write_config(
        {
            "study": study,
            "preset": preset,
            "command": " ".join(["mtlab", *sys.argv[1:]]),
            **extra,
            "run_ids": ids,
            "runs": runs,
        }
    )
    where = "" if executor.name == "local" else f" on Ray ({args.address or 'local instance'})"
    print(
        f"mtlab: {len(planned_ids(configs))} runs of {label} -> {args.out}{where}", file=sys.stderr
    )
    try:
        stats = execute(
            configs, store, chunk=args.chunk, progress=not args.quiet, executor=executor
        )
    except KeyboardInterrupt:
        print(
            f"\nmtlab: interrupted; finished runs are stored in {args.out} "
            "(rerun the same command to resume)",
            file=sys.stderr,
        )
        return 130
    _record_session(store, args.out, stats, append)
    if stats.get("redone"):
        print(
            f"mtlab: redid {stats['redone']} finished run(s) whose stored parameters were missing "
            "or unreadable (needed by runs that depend on them)",
            file=sys.stderr,
        )
    print(
        f"mtlab: trained {stats['trained']} runs ({stats['failed']} failed), skipped "
        f"{stats['skipped']} already stored, in {stats['seconds']:.1f} s",
        file=sys.stderr,
    )
    if not args.no_report:
        paths = make_report(args.out)
        claims = json.loads(paths["claims"].read_text())["claims"]
        for c in claims:
            print(f"  [{'holds' if c['verdict'] else 'NOT shown'}] {c['id']}: {c['text']}")
        print(f"report: {paths['html']}\n        {paths['md']}")
    return 0


def _own_data_options(args: argparse.Namespace) -> str | None:
    """Options of your own data given without --data (they would be ignored silently)."""
    names = ("targets", "features", "kinds", "split_column", "images", "labels", "model")
    own = [f for f in names if getattr(args, f, None) is not None]
    return None if not own else f"--{own[0].replace('_', '-')} is for your own data (--data)"


def _benchmark(args: argparse.Namespace) -> int:
    from mtlab.grad.methods import method_names
    from mtlab.studies import get_study
    from mtlab.studies.base import StudyInputs

    if args.list:
        print("loss weightings: " + ", ".join(method_names("weighting")))
        print("Jacobian aggregators (torchjd): " + ", ".join(method_names("jacobian")))
        return 0
    if args.data is not None:
        from mtlab.advise.cli import benchmark_command

        return benchmark_command(args)
    if (problem := _own_data_options(args)) is not None:
        return _fail(problem)
    if args.out is None:
        return _fail("benchmark: --out is required")
    study = get_study("benchmark")
    methods = None
    if args.methods is not None:
        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
        unknown = [m for m in methods if m not in method_names() and m != "stl"]
        if unknown:
            allowed = ", ".join(method_names())
            return _fail(f"--methods: unknown method(s) {', '.join(unknown)}; allowed: {allowed}")
    try:
        study.preset(args.preset)
        try:
            widths = None if args.widths is None else tuple(int(w) for w in args.widths.split(","))
        except ValueError:
            raise ValueError(f"--widths {args.widths!r}: comma-separated integers") from None
        given = StudyInputs(
            dataset=args.dataset,
            methods=None if methods is None else tuple(methods),
            widths=widths,
            lr=args.lr,
            batch_size=args.batch_size,
        )
        configs = study.configs(args.preset, args.seeds, given)
    except ValueError as err:
        return _fail(str(err))
    extra = {"seeds": args.seeds, "dataset": args.dataset, "methods": methods}
    code = _execute(args, study.name, args.preset, configs, extra)
    if code == 0 and not args.no_report and not args.dry_run:
        print((args.out / "delta_m.csv").read_text().rstrip())
    return code


def _split(value: str | None) -> list[str] | None:
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]


def _npz_tasks(path: Path) -> list[str] | None:
    """The task arrays of an NPZ holding ``x`` and one array per task (None otherwise)."""
    if path.suffix != ".npz" or not path.exists():
        return None
    import numpy as np

    try:
        keys = list(np.load(path).keys())
    except (OSError, ValueError):
        return None
    return None if "y" in keys or "x" not in keys else [k for k in keys if k != "x"] or None


def _trajectories(args: argparse.Namespace) -> int:
    """``mtlab trajectories``: the trajectories study on one dataset or a user's table."""
    from mtlab.grad.methods import method_names
    from mtlab.studies import get_study
    from mtlab.studies.base import StudyInputs
    from mtlab.tasks.datasets import DATASETS
    from mtlab.tasks.loaders import DataFormatError, load_table

    methods, tasks = _split(args.methods), _split(args.tasks)
    if methods is not None:
        unknown = [m for m in methods if m not in method_names()]
        if unknown or not methods:
            allowed = ", ".join(method_names())
            return _fail(f"--methods: unknown method(s) {', '.join(unknown)}; allowed: {allowed}")
    if args.dataset is not None and args.dataset not in DATASETS:
        return _fail(f"--dataset: unknown dataset {args.dataset!r}; allowed: {', '.join(DATASETS)}")
    if args.data is not None:
        tasks = tasks or _npz_tasks(args.data)
        if not tasks:
            return _fail("--tasks: name the label columns of --data")
        try:
            load_table(args.data, tasks)  # every named target present and readable, before work
        except (DataFormatError, ValueError) as err:
            return _fail(str(err))
    study = get_study("trajectories")
    try:
        study.preset(args.preset)
        given = StudyInputs(
            dataset=args.dataset,
            methods=None if methods is None else tuple(methods),
            tasks=None if tasks is None else tuple(tasks),
            data_path=None if args.data is None else str(args.data),
        )
        configs = study.configs(args.preset, args.seeds, given)
    except ValueError as err:
        return _fail(str(err))
    from mtlab.studies.trajectories import BASELINE

    used = methods or [BASELINE, *study.preset(args.preset).params["methods"]]
    extra = {"seeds": args.seeds, "dataset": args.dataset, "data": None if args.data is None
             else str(args.data), "tasks": tasks, "methods": used}  # fmt: skip
    label = f"trajectories on {args.dataset or args.data} (preset {args.preset})"
    return _execute(args, study.name, f"custom-{args.preset}", configs, extra, label)


def _affinity(args: argparse.Namespace) -> int:
    from mtlab.grad.methods import check_methods
    from mtlab.runs.store import RunStore
    from mtlab.tasks.datasets import DATASETS

    if args.data is None and args.dataset not in DATASETS:
        return _fail(f"--dataset: unknown dataset {args.dataset!r}; allowed: {', '.join(DATASETS)}")
    if args.data is None and (problem := _own_data_options(args)) is not None:
        return _fail(problem)
    if args.out.exists() and not args.out.is_dir():
        return _fail(f"--out {args.out} is a file, not a folder")
    if (args.out / "config.yaml").exists():
        held = RunStore.read_config_at(args.out)
        return _fail(
            f"{args.out} holds the runs of study {held.get('study')!r}; choose another --out for "
            "the affinity measurement"
        )
    try:
        check_methods([args.method])
    except ValueError as err:
        return _fail(f"--method: {err}")
    try:
        widths = tuple(int(w) for w in args.widths.split(","))
        if not widths or min(widths) < 1 or args.lr <= 0:
            raise ValueError
    except ValueError:
        return _fail(f"--widths {args.widths!r} / --lr {args.lr}: positive integers / number")
    from mtlab.runs.affinity import combine_seeds, measure_affinity, measure_table_affinity
    from mtlab.studies.transference import affinity_report
    from mtlab.tasks.tables import TableError

    seeds = list(range(args.seed, args.seed + args.seeds))
    try:
        if args.data is not None:
            from mtlab.advise.cli import read_user_data
            from mtlab.tasks.tables import prepare

            images = args.images is not None or args.labels is not None
            results = measure_table_affinity(
                prepare(read_user_data(args), seed=0), seeds, steps=args.steps, widths=widths,
                lr=args.lr, batch_size=args.batch_size, probe_every=args.probe_every,
                method=args.method, device=args.device, trunk="cnn" if images else "mlp",
                label=str(args.data),
            )  # fmt: skip
        else:
            results = [
                measure_affinity(
                    args.dataset,
                    epochs=args.epochs,
                    probe_every=args.probe_every,
                    rule=args.rule,
                    method=args.method,
                    seed=s,
                    device=args.device,
                    widths=widths,
                    lr=args.lr,
                    batch_size=args.batch_size,
                )
                for s in seeds
            ]
    except (TableError, ValueError) as err:
        return _fail(str(err))
    result = combine_seeds(results)
    print(affinity_report(result, args.out))
    return 0


def _status(args: argparse.Namespace) -> int:
    """``mtlab status OUT`` (reads the folder only; works while a command writes into it)."""
    from collections import Counter

    from mtlab.runs.config import make_config
    from mtlab.runs.executor import expand_dependencies
    from mtlab.runs.store import RunStore

    if not (args.out / "config.yaml").exists():
        from mtlab.advise.cli import own_data_status

        if own_data_status(args.out):
            return 0
        return _fail(f"{args.out} is not an mtlab run folder (no config.yaml)")
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


def _group(args: argparse.Namespace) -> int:
    from mtlab.grouping import AffinityFileError, Grouping, best_grouping, read_affinity

    try:
        tasks, A, _ = read_affinity(args.affinity)
    except AffinityFileError as err:
        return _fail(str(err))
    # a task alone receives no transfer: score 0, on the same scale as a group member's mean
    # affinity from its partners (the diagonal — a task's lookahead onto itself — is not)
    single = [SINGLETON_SCORE] * len(tasks) if args.singletons else None
    if len(tasks) < 2 and single is None:  # one rule for the table and --json
        return _fail(
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
            g = best_grouping(A, b, single, names=tasks)
        except ValueError:
            results.append((b, None))
            continue
        results.append((b, g))
    if args.json:
        last = results[-1][1]
        if last is None:
            return _fail(f"no grouping with at most {budget} groups covers every task")
        out = {"budget": budget, "groups": last.names, "value": last.value}
        if budget < args.budget:
            out["requested_budget"] = args.budget
        print(json.dumps(out))
        return 0
    print(f"{'budget':>6}  {'value':>9}  groups")
    for b, found in results:
        if found is None:
            print(f"{b:>6}  {'—':>9}  (no grouping of ≤ {b} groups covers every task)")
        else:
            print(
                f"{b:>6}  {found.value:9.4f}  "
                + " | ".join(", ".join(n) for n in found.names or [])
            )
    return 0


def configure_threads() -> int:
    """Intra-op threads: ``MTLAB_THREADS`` if set, else one less than the cores granted to this
    process (``os.sched_getaffinity``), at least one. Measured (BENCHMARKS.md): with a thread
    per core, one competing process made a sweep 15× slower (the threads wait for each other
    whenever one is descheduled); with a core left free it ran at its idle speed. The thread
    count is fixed per machine, never adapted to the load, because results with another count
    differ in the last float32 digits."""
    import torch

    env = os.environ.get("MTLAB_THREADS")
    try:
        n = int(env) if env else max(1, len(os.sched_getaffinity(0)) - 1)
    except (ValueError, AttributeError):
        n = torch.get_num_threads()
    if n >= 1 and n != torch.get_num_threads():
        torch.set_num_threads(n)
    return torch.get_num_threads()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in ("reproduce", "run", "benchmark", "trajectories", "affinity", "advise"):
        configure_threads()
    from mtlab.runs.config import ConfigError

    try:
        if args.command == "list":
            from mtlab.studies import REGISTRY

            for name, st in sorted(REGISTRY.items()):
                print(f"{name:12s} {st.description}")
                for pname, pr in st.presets.items():
                    print(f"{'':12s}   --preset {pname:6s} {pr.description} (seeds: {pr.seeds})")
            return 0
        if args.command == "reproduce":
            from mtlab.studies import get_study
            from mtlab.studies.base import StudyInputs

            try:
                study = get_study(args.study)
                study.preset(args.preset)
                if args.data_dir is not None and not args.data_dir.is_dir():
                    return _fail(f"--data-dir {args.data_dir}: no such directory")
                data_dir = None if args.data_dir is None else str(args.data_dir)
                configs = study.configs(args.preset, args.seeds, StudyInputs(data_dir=data_dir))
            except ValueError as err:
                return _fail(str(err))
            return _execute(args, study.name, args.preset, configs, {"seeds": args.seeds})
        if args.command == "run":
            from mtlab.runs.sweep import load_sweep

            spec, configs = load_sweep(args.sweep)
            name = spec.get("study", "custom")
            from mtlab.studies import REGISTRY

            report_as = name if name in REGISTRY else "custom"
            label = f"sweep {name!r} from {args.sweep} (report: study {report_as!r})"
            return _execute(args, report_as, "yaml", configs, {"sweep": spec}, label)
        if args.command == "benchmark":
            return _benchmark(args)
        if args.command == "affinity":
            return _affinity(args)
        if args.command == "trajectories":
            return _trajectories(args)
        if args.command == "group":
            return _group(args)
        if args.command == "advise":
            from mtlab.advise.cli import advise_command

            return advise_command(args)
        if args.command == "status":
            return _status(args)
        if args.command == "report":
            if not (args.out / "config.yaml").exists():
                return _fail(f"{args.out} is not an mtlab run folder (no config.yaml)")
            paths = make_report(args.out)
            print(f"report: {paths['html']}\n        {paths['md']}")
            return 0
    except ConfigError as err:
        return _fail(f"invalid configuration:\n{err}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
