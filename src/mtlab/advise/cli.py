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


def _model(value: str) -> tuple[int, ...]:
    kind, _, widths = value.partition(":")
    if kind != "mlp":
        raise ValueError(f"--model {value!r}: only mlp:WIDTH,… is supported for tables")
    try:
        out = tuple(int(w) for w in widths.split(",")) if widths else (128, 128)
    except ValueError:
        raise ValueError(f"--model {value!r}: widths must be integers") from None
    if not out or min(out) < 1:
        raise ValueError(f"--model {value!r}: widths must be positive")
    return out


def _identity(args: Any, settings: Any) -> dict[str, Any]:
    """What must match for a folder to resume: the data (its bytes) and the training settings."""
    digest = hashlib.sha256(args.data.read_bytes()).hexdigest()
    return {
        "data": str(args.data),
        "sha256": digest,
        "targets": args.targets,
        "features": args.features,
        "kinds": args.kinds,
        "split_column": args.split_column,
        "settings": asdict(settings),
    }


def advise_command(args: Any) -> int:  # long: every check before any training, then one run
    from mtlab.advise.engine import Settings
    from mtlab.advise.pipeline import Options, advise
    from mtlab.advise.report import write_advice
    from mtlab.grad.methods import check_methods, method_names
    from mtlab.runs.store import FolderLocked, RunStore
    from mtlab.tasks.tables import TableError, prepare, read_table

    try:
        widths = _model(args.model)
        kinds: dict[str, Any] = {}  # checked by read_table
        for item in _names(args.kinds) or []:
            name, _, kind = item.partition("=")
            kinds[name] = kind
        methods = tuple(_names(args.methods) or [])
        unknown = [m for m in methods if m not in method_names()]
        if unknown:
            raise ValueError(f"--methods: unknown {unknown}; allowed: {', '.join(method_names())}")
        check_methods(methods)
        rescales = tuple(float(v) for v in _names(args.rescales) or [])
        if any(r <= 0 for r in rescales):
            raise ValueError("--rescales must be positive")
        if args.lr <= 0:
            raise ValueError("--lr must be positive")
        table = read_table(args.data, _names(args.targets), _names(args.features), kinds or None,
                           args.split_column)  # fmt: skip
        if len(table.targets) < 2:
            raise ValueError("advise needs at least two target tasks")
        prep = prepare(table, seed=0)
    except (ValueError, TableError) as err:
        return _fail(str(err))
    settings = Settings(widths, args.lr, args.batch_size, args.steps, device=args.device)
    options = Options(args.seeds, args.budget, methods, rescales, args.time_budget or None,
                      args.affinity)  # fmt: skip
    out: Path = args.out
    if out.exists() and not out.is_dir():
        return _fail(f"--out {out} is a file, not a folder")
    if (out / "config.yaml").exists():
        return _fail(f"{out} holds the runs of a study; choose another --out for the advice")
    ident = json.loads(json.dumps(_identity(args, settings)))  # as stored (tuples → lists)
    marker = out / "advise_config.json"
    if marker.exists() and json.loads(marker.read_text()) != ident:
        return _fail(
            f"{out} holds an advice for other data or settings ({marker}); choose another --out"
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
        with RunStore(out).lock():
            marker.write_text(json.dumps(ident, indent=2))
            print(f"mtlab: advising on {len(table.targets)} tasks of {args.data} "
                  f"({table.n} rows) -> {out}", file=sys.stderr)  # fmt: skip
            say = None if args.quiet else (lambda m: print(f"  {m}", file=sys.stderr))
            try:
                advice = advise(prep, settings, options, out, progress=say)
            except KeyboardInterrupt:
                print(f"\nmtlab: interrupted; finished trainings are kept in {out} (rerun the "
                      "same command to resume)", file=sys.stderr)  # fmt: skip
                return 130
            meta = {"data": str(args.data), "rows": table.n, "seeds": args.seeds,
                    "model": args.model, "steps": args.steps}  # fmt: skip
            paths = write_advice(advice, out, meta)
    except FolderLocked as err:
        return _fail(str(err))
    except OSError as err:
        return _fail(f"cannot write to --out {out}: {err.strerror or err}")
    for task in advice["tasks"]:
        d = advice["per_task"][task]
        what = d["regime"] if d["clear"] else "stl (no clear winner)"
        extra = d["partners"] or d["source"] or ""
        print(f"  {task:16s} {what:22s} {extra!s:24s} {d['metric']} {d['recommended']:.3f} "
              f"(alone {d['stl']:.3f})")  # fmt: skip
    print(f"advice: {paths['advice']}\nreport: {paths['html']}")
    return 0
