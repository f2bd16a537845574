"""``mtlab advise`` on the command line: parse, check everything before any training, run, write."""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any


def _fail(msg: str) -> int:
    print(f"mtlab: error: {msg}", file=sys.stderr)
    return 2


def _names(value: str | None) -> list[str] | None:
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]


DEFAULT_WIDTHS = {"mlp": (128, 128), "cnn": (16, 32)}


def model_spec(value: str | None, images: bool) -> tuple[str, tuple[int, ...]]:
    """``--model``: ``mlp:W,W,…`` or ``cnn:C,C,…`` (image inputs only) → (trunk, widths)."""
    kind, _, widths = (value or ("cnn" if images else "mlp")).partition(":")
    if kind not in DEFAULT_WIDTHS:
        raise ValueError(f"--model {value!r}: mlp:WIDTH,… or (for images) cnn:CHANNELS,…")
    if kind == "cnn" and not images:
        raise ValueError(f"--model {value!r}: a CNN needs image inputs (--images or --labels)")
    try:
        out = tuple(int(w) for w in widths.split(",")) if widths else DEFAULT_WIDTHS[kind]
    except ValueError:
        raise ValueError(f"--model {value!r}: widths must be integers") from None
    if not out or min(out) < 1:
        raise ValueError(f"--model {value!r}: widths must be positive")
    return kind, out


def kinds_option(value: str | None) -> dict[str, Any]:
    kinds: dict[str, Any] = {}  # checked by the readers
    for item in _names(value) or []:
        name, _, kind = item.partition("=")
        kinds[name] = kind
    return kinds


def read_user_data(args: Any) -> Any:
    """The user's data from the shared options (``mtlab.cli.data_opts``): a table, a label
    table with ``--images``, or IDX images with ``--labels``; raises TableError / ValueError."""
    from mtlab.tasks.tables import read_idx_table, read_image_table, read_table

    kinds = kinds_option(args.kinds) or None
    if args.images is not None and args.labels is not None:
        raise ValueError("--images (a label table naming image files) and --labels (IDX) "
                         "exclude each other")  # fmt: skip
    if args.labels is not None:
        if args.features or args.split_column:
            raise ValueError("--features / --split-column do not apply to IDX data")
        table = read_idx_table(args.data, args.labels, kinds)
        wanted = _names(args.targets)
        if wanted:
            unknown = [t for t in wanted if t not in table.tasks]
            if unknown:
                raise ValueError(f"--targets: no label column(s) {unknown} in {args.labels}; "
                                 f"columns: {table.tasks}")  # fmt: skip
            table.targets = [t for t in table.targets if t.name in wanted]
            table.y = {k: v for k, v in table.y.items() if k in wanted}
        return table
    if args.images is not None:
        targets = _names(args.targets)
        if not targets:
            raise ValueError("--targets: name the label columns of --data")
        if args.features:
            raise ValueError("--features does not apply to images (the image is the input)")
        return read_image_table(args.data, args.images, args.image_column, targets, kinds,
                                args.split_column, args.image_size)  # fmt: skip
    return read_table(args.data, _names(args.targets), _names(args.features), kinds,
                      args.split_column)  # fmt: skip


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _identity(args: Any, settings: Any) -> dict[str, Any]:
    """What must match for a folder to resume: the data (the bytes of the table / IDX files;
    an image folder by its path and the image size) and the training settings."""
    return {
        "data": str(args.data),
        "sha256": _digest(args.data),
        "targets": args.targets,
        "features": args.features,
        "kinds": args.kinds,
        "split_column": args.split_column,
        "images": None if args.images is None else str(args.images),
        "image_column": args.image_column if args.images is not None else None,
        "image_size": args.image_size,
        "labels_sha256": None if args.labels is None else _digest(args.labels),
        "settings": asdict(settings),
    }


def _methods(value: str | None) -> tuple[str, ...]:
    from mtlab.grad.methods import check_methods, method_names

    methods = tuple(_names(value) or [])
    unknown = [m for m in methods if m not in method_names()]
    if unknown:
        raise ValueError(f"--methods: unknown {unknown}; allowed: {', '.join(method_names())}")
    check_methods(methods)
    return methods


def _prepared(args: Any, command: str) -> tuple[Any, Any, Any]:
    """The checked data, prepared, and the training settings (raises ValueError / TableError)."""
    from mtlab.advise.engine import Settings
    from mtlab.tasks.tables import prepare

    images = args.images is not None or args.labels is not None
    trunk, widths = model_spec(args.model, images)
    if args.lr <= 0:
        raise ValueError("--lr must be positive")
    table = read_user_data(args)
    if len(table.targets) < 2:
        raise ValueError(f"{command} needs at least two target tasks")
    settings = Settings(widths, args.lr, args.batch_size, args.steps, device=args.device,
                        trunk=trunk)  # fmt: skip
    return table, prepare(table, seed=0), settings


class _Folder:
    """An output folder of one command on one data set with one set of settings: refused if it
    holds a study's runs or another identity (``marker``), locked while it is written."""

    def __init__(self, out: Path, ident: dict[str, Any], marker: str, what: str) -> None:
        self.out, self.marker, self.what = out, out / marker, what
        self.ident = json.loads(json.dumps(ident))  # as stored (tuples → lists)

    def problem(self) -> str | None:
        out = self.out
        if out.exists() and not out.is_dir():
            return f"--out {out} is a file, not a folder"
        if (out / "config.yaml").exists():
            return f"{out} holds the runs of a study; choose another --out for the {self.what}"
        if self.marker.exists() and json.loads(self.marker.read_text()) != self.ident:
            return (f"{out} holds {self.what} for other data or settings ({self.marker}); "
                    "choose another --out")  # fmt: skip
        return None

    def run(self, body: Any) -> int:
        """``body()`` inside the folder's lock (its return: the exit status)."""
        from mtlab.runs.store import FolderLocked, RunStore

        try:
            self.out.mkdir(parents=True, exist_ok=True)
            with RunStore(self.out).lock():
                self.marker.write_text(json.dumps(self.ident, indent=2))
                try:
                    return int(body())
                except KeyboardInterrupt:
                    print(f"\nmtlab: interrupted; finished trainings are kept in {self.out} "
                          "(rerun the same command to resume)", file=sys.stderr)  # fmt: skip
                    return 130
        except FolderLocked as err:
            return _fail(str(err))
        except OSError as err:
            return _fail(f"cannot write to --out {self.out}: {err.strerror or err}")


def _announce(what: str, args: Any) -> Any:
    """Say what starts (stderr); the progress callback for each training (None with --quiet)."""
    print(f"mtlab: {what} -> {args.out}", file=sys.stderr)
    return None if args.quiet else (lambda m: print(f"  {m}", file=sys.stderr))


def _model_text(settings: Any) -> str:
    return f"{settings.trunk}:{','.join(map(str, settings.widths))}"


def advise_command(args: Any) -> int:
    from mtlab.advise.pipeline import Options, advise
    from mtlab.advise.report import write_advice
    from mtlab.tasks.tables import TableError

    try:
        methods = _methods(args.methods)
        rescales = tuple(float(v) for v in _names(args.rescales) or [])
        if any(r <= 0 for r in rescales):
            raise ValueError("--rescales must be positive")
        table, prep, settings = _prepared(args, "advise")
    except (ValueError, TableError) as err:
        return _fail(str(err))
    options = Options(args.seeds, args.budget, methods, rescales, args.time_budget or None,
                      args.affinity)  # fmt: skip
    folder = _Folder(args.out, _identity(args, settings), "advise_config.json", "an advice")
    if (problem := folder.problem()) is not None:
        return _fail(problem)

    def body() -> int:
        say = _announce(f"advising on {len(table.targets)} tasks of {args.data} ({table.n} rows)",
                        args)  # fmt: skip
        advice = advise(prep, settings, options, args.out, progress=say)
        meta = {"data": str(args.data), "rows": table.n, "seeds": args.seeds,
                "model": _model_text(settings), "steps": args.steps}  # fmt: skip
        paths = write_advice(advice, args.out, meta)
        for task in advice["tasks"]:
            d = advice["per_task"][task]
            what = d["regime"] if d["clear"] else "stl (no clear winner)"
            extra = d["partners"] or d["source"] or ""
            print(f"  {task:16s} {what:22s} {extra!s:24s} {d['metric']} "
                  f"{d['recommended']:.3f} (alone {d['stl']:.3f})")  # fmt: skip
        print(f"advice: {paths['advice']}\nreport: {paths['html']}")
        return 0

    return folder.run(body)


DEFAULT_BENCHMARK_METHODS = "mean,pcgrad,upgrad,uw"


def benchmark_command(args: Any) -> int:
    """``mtlab benchmark --data``: the methods on the user's own data (mtlab.advise.benchmark)."""
    from mtlab.advise.benchmark import benchmark_table, write_benchmark
    from mtlab.tasks.tables import TableError

    if args.out is None:
        return _fail("benchmark: --out is required")
    if getattr(args, "executor", "local") != "local" or getattr(args, "dry_run", False):
        return _fail("benchmark --data runs in-process: --executor ray / --dry-run do not apply")
    if args.widths is not None:
        return _fail("--widths is for the built-in datasets; with --data use --model mlp:W,W")
    args.lr = 1e-3 if args.lr is None else args.lr
    args.batch_size = args.batch_size or 128
    try:
        methods = _methods(args.methods or DEFAULT_BENCHMARK_METHODS)
        methods = tuple(m for m in methods if m != "stl")  # STL is always the baseline
        if not methods:
            raise ValueError("--methods: name at least one multi-task method")
        table, prep, settings = _prepared(args, "benchmark")
    except (ValueError, TableError) as err:
        return _fail(str(err))
    seeds = args.seeds or 3
    ident = {**_identity(args, settings), "command": "benchmark"}
    folder = _Folder(args.out, ident, "benchmark_config.json", "a benchmark")
    if (problem := folder.problem()) is not None:
        return _fail(problem)

    def body() -> int:
        say = _announce(f"benchmarking {', '.join(methods)} on {len(table.targets)} tasks of "
                        f"{args.data} ({table.n} rows, {seeds} seeds)", args)  # fmt: skip
        results = benchmark_table(prep, settings, methods, seeds, args.out, progress=say)
        meta = {"data": str(args.data), "rows": table.n, "seeds": seeds, "methods": list(methods),
                "model": _model_text(settings), "steps": args.steps}  # fmt: skip
        paths = write_benchmark(results, args.out, meta)
        print(paths["delta_m"].read_text().rstrip())
        print(f"report: {paths['html']}")
        return 0

    return folder.run(body)


def own_data_status(out: Path) -> bool:
    """``mtlab status`` of an advise or ``benchmark --data`` folder (False: it is not one): the
    trainings finished so far per regime, whether the result is written, who writes now."""
    from collections import Counter

    from mtlab.advise.engine import Cache
    from mtlab.runs.store import RunStore

    kinds = {"advise_config.json": ("advise", "advice.json"),
             "benchmark_config.json": ("benchmark --data", "delta_m.csv")}  # fmt: skip
    found = [(k, v) for k, v in kinds.items() if (out / k).exists()]
    if not found:
        return False
    marker, (command, result) = found[0]
    ident = json.loads((out / marker).read_text())
    done = Cache(out).done.values()
    by = Counter(o.spec.regime for o in done)
    seconds = sum(o.seconds for o in done)
    print(f"{out}: mtlab {command} on {ident.get('data')}")
    print(f"trainings finished: {len(done)} ({', '.join(f'{k} {v}' for k, v in sorted(by.items()))}"
          f"; {seconds:.0f} s of training)")  # fmt: skip
    print(f"{result}: {'written' if (out / result).exists() else 'not yet'}")
    holder = RunStore(out).holder()
    if holder is None:
        print("not running" + ("" if (out / result).exists() else
                               " (rerun the same command to resume)"))  # fmt: skip
    else:
        print(f"running: pid {holder['pid']} on {holder['host']} since {holder['started']}")
    return True
