"""One folder policy for every command that trains, and the sweep that runs in it.

A folder holds the runs of one study (or command) at one preset, on one data set with one set of
training settings (``identity``, for your own data): a rerun of the same command resumes it;
another study, preset or identity is refused, and so is another fixed sweep unless ``--append``.
The folder is checked before any work and again under its lock; the executor's resources are
checked before the folder is touched. Every training goes through
:func:`mtlab.runs.executor.execute` into the folder's :class:`~mtlab.runs.store.RunStore`.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

#: files an earlier mtlab (before one engine) wrote into advise / benchmark --data folders
OLD_MARKERS = ("advise_config.json", "benchmark_config.json", "trainings.jsonl")


def fail(msg: str) -> int:
    print(f"mtlab: error: {msg}", file=sys.stderr)
    return 2


def stored_ids(old: dict[str, Any]) -> list[str]:
    """Run ids of the sweep a folder's ``config.yaml`` records, in its order (folders written
    before ``run_ids`` was recorded: recomputed from the runs)."""
    if "run_ids" in old:
        return list(old["run_ids"])
    from mtlab.runs.config import make_config

    return [make_config(r).run_id() for r in old.get("runs", [])]


def check_out(
    out: Path,
    study: str,
    preset: str,
    configs: Sequence[Any] = (),
    append: bool = False,
    identity: dict[str, Any] | None = None,
) -> str | None:
    """Why ``out`` cannot take this command's runs (None: it can; module doc)."""
    if out.exists() and not out.is_dir():
        return f"--out {out} is a file, not a folder"
    cfg = out / "config.yaml"
    if not cfg.exists():
        old = [m for m in OLD_MARKERS if (out / m).exists()]
        if old:
            return (f"{out} was written by an earlier mtlab ({old[0]}); this version keeps "
                    "every training in the run store: choose another --out")  # fmt: skip
        return None
    from mtlab.runs.store import RunStore

    old_cfg = RunStore.read_config_at(out)
    if (old_cfg.get("study"), old_cfg.get("preset")) != (study, preset):
        return (
            f"{out} already holds study {old_cfg.get('study')!r} preset "
            f"{old_cfg.get('preset')!r}; choose another --out to run study {study!r} preset "
            f"{preset!r}"
        )
    if identity is not None and old_cfg.get("identity") != json.loads(json.dumps(identity)):
        where = f" on {old_cfg['data']}" if old_cfg.get("data") else ""
        return (f"{out} holds {study} runs for other data or settings{where}; choose another "
                "--out")  # fmt: skip
    new = {c.run_id() for c in configs}
    have = set(stored_ids(old_cfg))
    if configs and new != have and not append:
        return (
            f"{out} already holds another sweep of study {study!r} ({len(have)} runs; this "
            f"command plans {len(new)}, {len(new & have)} of them in the folder): choose "
            "another --out, or add --append to add this sweep's runs to it"
        )
    return None


def make_executor(args: argparse.Namespace) -> Any:
    """The executor the command line asks for (checked, not started); ExecutorError if not:
    worker processes on this machine (the default; ``--workers 0``: in this process) or Ray."""
    from mtlab.runs.executor import ExecutorError
    from mtlab.runs.workers import make_local_executor

    workers = getattr(args, "workers", None)
    if args.executor == "local":
        given = [
            flag
            for flag, value, default in (
                ("--address", args.address, None),
                ("--cpus-per-chunk", args.cpus_per_chunk, 1.0),
                ("--gpus-per-chunk", args.gpus_per_chunk, 0.0),
            )
            if value != default
        ]
        if given:
            raise ExecutorError(f"{', '.join(given)} only apply with --executor ray")
        if workers == 0 and args.retries != 3:
            raise ExecutorError("--retries applies to worker processes or Ray, not --workers 0")
        if args.retries < 0:
            raise ExecutorError(f"--retries must be >= 0 (got {args.retries})")
        return make_local_executor(workers, args.device, args.retries)
    if workers is not None:
        raise ExecutorError("--workers is for this machine; with --executor ray the cluster's "
                            "CPUs set how many chunks run at once (--cpus-per-chunk)")  # fmt: skip
    from mtlab.runs.ray_executor import RayExecutor, require_ray

    require_ray()  # the install line, before any work
    if args.chunk == "measure":
        raise ExecutorError(
            "--chunk measure times chunks on this machine, not on the cluster's workers: "
            "with --executor ray use --chunk auto (the default) or a number"
        )
    dev = None if args.device == "cpu" else args.device
    return RayExecutor(args.address, cpus_per_chunk=args.cpus_per_chunk,
                       gpus_per_chunk=args.gpus_per_chunk, retries=args.retries,
                       device=dev)  # fmt: skip


def executor_label(executor: Any, args: argparse.Namespace) -> str:
    """Where the runs train, as the command's header says it."""
    if executor.name == "local":
        return " (in this process)"
    if executor.name == "workers":
        return f" ({executor.slots} worker processes)"
    return f" on Ray ({args.address or 'local instance'})"


def record_session(store: Any, stats: dict[str, Any], append: bool = False) -> None:
    """Append this session's command and counts to the folder's ``sessions.json``."""
    hist_path = store.root / "sessions.json"
    hist = json.loads(hist_path.read_text()) if hist_path.exists() else []
    keys = ("executor", "requested", "trained", "skipped", "failed", "seconds")
    hist.append({
        "finished": _dt.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join(["mtlab", *sys.argv[1:]]),
        "append": append,
        **{k: stats[k] for k in keys},
    })  # fmt: skip
    store.write_json("sessions.json", hist)


def count_runs(configs: Sequence[Any]) -> str:
    """"N runs: method n, …" (dependencies included)."""
    from collections import Counter

    from mtlab.runs.executor import expand_dependencies

    counts = Counter(c.method for phase in expand_dependencies(configs) for c in phase)
    return f"{sum(counts.values())} runs: " + ", ".join(f"{m} {n}" for m, n in sorted(counts.items()))


class Folder:
    """The output folder of one command (module doc). ``open(body)`` runs ``body(store)`` with
    the executor started and the folder locked; ``plan(configs)`` records runs in ``config.yaml``
    before they train (``mtlab status`` counts them as pending)."""

    def __init__(
        self,
        args: argparse.Namespace,
        study: str,
        preset: str,
        extra: dict[str, Any] | None = None,
        identity: dict[str, Any] | None = None,
        append: bool = False,
    ) -> None:
        self.args, self.out, self.study, self.preset = args, Path(args.out), study, preset
        self.extra, self.identity, self.append = dict(extra or {}), identity, append
        self.executor: Any = None
        self.store: Any = None
        self._recorded: tuple[list[Any], list[str]] | None = None  # config.yaml's runs and ids

    def problem(self, configs: Sequence[Any] = ()) -> str | None:
        """Why the folder or the executor cannot take ``configs`` (None: they can)."""
        from mtlab.runs.executor import ExecutorError, expand_dependencies, memory_problem

        try:
            self.executor = make_executor(self.args)
        except ExecutorError as err:
            return str(err)
        problem = check_out(self.out, self.study, self.preset, configs, self.append,
                            self.identity)  # fmt: skip
        if not problem and self.args.address is None and self.executor.device == "cpu":
            # this machine's memory (a cluster's workers, or a GPU, are not known from here)
            every = [c for phase in expand_dependencies(configs) for c in phase]
            problem = memory_problem(every, self.args.device)
        return problem

    def open(self, body: Callable[[Any], int], configs: Sequence[Any] = ()) -> int:
        """``body(store)`` inside the lock (its return value: the exit status)."""
        from mtlab.runs.executor import ExecutorError
        from mtlab.runs.store import FolderLocked, RunStore

        if self.executor is None and (problem := self.problem(configs)) is not None:
            return fail(problem)
        try:
            self.executor.start()  # resources no node has are refused before the folder is made
            self.store = RunStore(self.out)
            with self.store.lock():
                problem = check_out(self.out, self.study, self.preset, configs, self.append,
                                    self.identity)  # again, under the lock  # fmt: skip
                if problem:
                    return fail(problem)
                try:
                    return int(body(self.store))
                except KeyboardInterrupt:
                    print(f"\nmtlab: interrupted; finished runs are stored in {self.out} "
                          "(rerun the same command to resume)", file=sys.stderr)  # fmt: skip
                    return 130
        except (FolderLocked, ExecutorError) as err:
            return fail(str(err))
        except OSError as err:
            if not (self.out / "config.yaml").exists():  # refused before writing anything
                return fail(f"cannot write to --out {self.out}: {err.strerror or err}")
            raise
        finally:
            self.executor.close()

    def plan(self, configs: Sequence[Any]) -> None:
        """Record ``configs`` in ``config.yaml`` (kept with every run recorded there before)."""
        store = self.store
        runs = [c.model_dump() for c in configs]
        ids = [c.run_id() for c in configs]
        merge = self.append or self.identity is not None
        if merge and self._recorded is None and (self.out / "config.yaml").exists():
            old = store.read_config()
            self._recorded = (list(old.get("runs", [])), stored_ids(old))
        if merge and self._recorded is not None:
            known = set(ids)
            for r, rid in zip(*self._recorded, strict=True):
                if rid not in known:  # the folder keeps every run recorded in it
                    runs.append(r)
                    ids.append(rid)
                    known.add(rid)
        self._recorded = (runs, ids)
        head = {"study": self.study, "preset": self.preset,
                "command": " ".join(["mtlab", *sys.argv[1:]]), **self.extra}  # fmt: skip
        if self.identity is not None:
            head["identity"] = json.loads(json.dumps(self.identity))
        store.write_config({**head, "run_ids": ids, "runs": runs})

    def execute(self, configs: Sequence[Any], tables: bool = True) -> dict[str, Any]:
        """Train the runs of ``configs`` not yet stored (recorded in ``config.yaml`` first)."""
        from mtlab.runs.executor import execute

        self.plan(configs)
        return execute(configs, self.store, chunk=self.args.chunk, progress=not self.args.quiet,
                       executor=self.executor, tables=tables)  # fmt: skip


def print_stats(stats: dict[str, Any]) -> None:
    if stats.get("redone"):
        print(f"mtlab: redid {stats['redone']} finished run(s) whose stored parameters were "
              "missing or unreadable (needed by runs that depend on them)",
              file=sys.stderr)  # fmt: skip
    print(f"mtlab: trained {stats['trained']} runs ({stats['failed']} failed), skipped "
          f"{stats['skipped']} already stored, in {stats['seconds']:.1f} s",
          file=sys.stderr)  # fmt: skip


def execute_sweep(
    args: argparse.Namespace,
    study: str,
    preset: str,
    configs: Sequence[Any],
    extra: dict[str, Any] | None = None,
    label: str | None = None,
    identity: dict[str, Any] | None = None,
) -> int:
    """Check, lock, train every run of ``configs`` not yet in ``--out``, write the report (unless
    ``--no-report``) and say what each claim's verdict is. ``--dry-run`` counts and stops."""
    from mtlab.runs.executor import planned_ids

    label = label or f"study {study!r} (preset {preset})"
    append = bool(getattr(args, "append", False))
    folder = Folder(args, study, preset, extra, identity, append)
    if (problem := folder.problem(configs)) is not None:
        return fail(problem)
    if args.dry_run:
        print(f"{count_runs(configs).replace(' runs:', f' runs of {label}:', 1)}")
        return 0

    def body(store: Any) -> int:
        where = executor_label(folder.executor, args)
        print(f"mtlab: {len(planned_ids(configs))} runs of {label} -> {args.out}{where}",
              file=sys.stderr)  # fmt: skip
        stats = folder.execute(configs)
        record_session(store, stats, append)
        print_stats(stats)
        if getattr(args, "no_report", False):
            return 0
        from mtlab.studies.report import make_report

        paths = make_report(args.out)
        claims = json.loads(paths["claims"].read_text())["claims"]
        for c in claims:
            print(f"  [{c['verdict']}] {c['id']}: {c['text']}")
        print(f"report: {paths['html']}\n        {paths['md']}")
        return 0

    return folder.open(body, configs)


__all__ = ["Folder", "check_out", "execute_sweep", "executor_label", "fail", "make_executor",
           "record_session"]
