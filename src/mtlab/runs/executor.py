"""Executing a sweep: dedupe, resume, order by dependency, batch into ensembles, run, store.

``execute(configs, store, executor=…)`` trains every run of ``configs`` not yet in ``store``,
grouping compatible runs (same family group key and dependency phase) into ensembles (chunks).
A chunk starts as soon as the runs it depends on (its pretrainings) are stored
(:class:`Schedule`). Where the chunks run is the :class:`Executor`'s part: in this process
(:class:`LocalExecutor`, the default of this function), in worker processes
(:class:`mtlab.runs.workers.WorkerExecutor`, the command line's default) or as Ray tasks
(:class:`mtlab.runs.ray_executor.RayExecutor`); the plan, the storing (this process is the only
writer) and the run isolation are the same for all three.

The ensemble size per group: ``chunk="auto"`` (default) asks the family's deterministic cost
model (:meth:`~mtlab.runs.family.Family.auto_chunk`), so the plan — and with it every number —
does not depend on how busy the machine is; ``chunk="measure"`` times a few steps at a handful of
sizes (1, 4, 16, 64, …), keeps the fastest and stores the choice in ``OUT/plan.json``, reused on
every rerun and resume of that folder; an ``int`` fixes it (1 = one run at a time). A progress
bar counts finished runs. Rows are stored as each run finishes (with Ray: as each chunk returns).
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, Protocol

import torch

from mtlab.runs.config import RunConfig
from mtlab.runs.family import Family, Pretrained, family_of
from mtlab.runs.store import RunStore

CANDIDATE_CHUNKS = (1, 4, 16, 64, 256)
#: ``auto``: the families' deterministic cost model; ``measure``: timed once per folder
CHUNKS = ("auto", "measure")
_chunk_cache: dict[tuple[Any, ...], int] = {}


def plan_chunk(
    fam: Family,
    group: Sequence[RunConfig],
    pretrained: Pretrained,
    device: str | torch.device,
    timing_steps: int = 30,
) -> int:
    """Ensemble size with the best measured throughput for this group (cached per group key)."""
    key = (fam.group_key(group[0]), len(group) >= CANDIDATE_CHUNKS[-1], str(device))
    if key in _chunk_cache:
        return min(_chunk_cache[key], len(group))
    cap = fam.memory_cap(group[0])
    sizes = [c for c in CANDIDATE_CHUNKS if c <= min(len(group), cap)]
    if len(group) > sizes[-1] and min(len(group), cap) not in sizes and len(group) <= cap:
        sizes.append(len(group))
    best, best_rate = 1, 0.0
    for size in sizes:
        fam.run_chunk(group[:size], pretrained, device=device, max_steps=3)  # warm-up
        t0 = time.perf_counter()
        fam.run_chunk(group[:size], pretrained, device=device, max_steps=timing_steps)
        rate = size / (time.perf_counter() - t0)
        if rate > best_rate * 1.05:
            best, best_rate = size, rate
        elif rate < best_rate * 0.8:
            break
    _chunk_cache[key] = best
    return best


def expand_dependencies(configs: Sequence[RunConfig]) -> list[list[RunConfig]]:
    """Phases of runs in dependency order (pretraining before finetuning), deduplicated."""
    phases: list[dict[str, RunConfig]] = []

    def place(cfg: RunConfig) -> int:
        deps = cfg.dependencies()
        level = 1 + max((place(d) for d in deps), default=-1)
        while len(phases) <= level:
            phases.append({})
        phases[level].setdefault(cfg.run_id(), cfg)
        return level

    for cfg in configs:
        place(cfg)
    return [list(p.values()) for p in phases]


def plan(configs: Sequence[RunConfig], store: RunStore) -> list[list[RunConfig]]:
    """The runs still to train, per dependency phase: those missing from ``store``, plus the
    finished dependencies of the sweep's runs whose parameters were lost (a run that depends on
    them starts from them). A finished run that no run depends on is never redone, whether or
    not its family stores parameters."""
    done = store.done_ids()
    phases = expand_dependencies(configs)
    todo = [[c for c in phase if c.run_id() not in done] for phase in phases]
    needed = {d.run_id() for phase in phases for c in phase for d in c.dependencies()}
    for p, phase in enumerate(phases[:-1]):
        for c in phase:
            rid = c.run_id()
            if rid in needed and rid in done and not store.params_ok(rid):
                todo[p].append(c)  # missing or unreadable (truncated) parameters: redone
    return todo


def planned_ids(configs: Sequence[RunConfig]) -> set[str]:
    """The run ids a sweep stands for: its runs and every run they depend on (what the dry run,
    the command's header, the executor's counts and the report all count)."""
    return {c.run_id() for phase in expand_dependencies(configs) for c in phase}


class Schedule:
    """The chunks of a sweep, each released as soon as the runs it starts from are stored —
    not after the whole previous phase (a finetuning chunk waits only for its own
    pretrainings). :meth:`ready` hands out, in plan order, every chunk whose dependencies are
    stored; a run whose dependency failed is stored as failed (its reason naming the
    dependency) instead of being trained on diverged parameters. Every executor drives one."""

    def __init__(self, chunks: Sequence[Sequence[RunConfig]], store: RunStore, sink: Any) -> None:
        self._sink = sink
        self._waiting: list[tuple[list[RunConfig], set[str]]] = [
            (list(part), {d.run_id() for c in part for d in c.dependencies()}) for part in chunks
        ]
        self._pending = {c.run_id() for part in chunks for c in part}  # not yet stored
        self._rows = {r["run_id"]: r for r in store.rows()}
        self.released = 0

    def stored(self, row: dict[str, Any]) -> None:
        """A run was stored (the executors' sink calls this)."""
        self._pending.discard(row["run_id"])
        self._rows[row["run_id"]] = row

    def finished(self) -> bool:
        """Every chunk has been handed out."""
        return not self._waiting

    def ready(self) -> list[list[RunConfig]]:
        """The chunks whose dependencies are all stored, removed from the schedule."""
        out, keep = [], []
        for part, deps in self._waiting:
            if deps & self._pending:
                keep.append((part, deps))
                continue
            runnable = []
            for cfg in part:
                bad = [d for d in cfg.dependencies()
                       if self._rows.get(d.run_id(), {}).get("status") == "failed"]  # fmt: skip
                if not bad:
                    runnable.append(cfg)
                    continue
                dep = self._rows[bad[0].run_id()]
                reason = f"dependency {dep['run_id']} ({dep.get('method')}) failed: {dep.get('reason')}"
                self._sink(failed_row(cfg, reason), [], {})
            if runnable:
                out.append(runnable)
        self._waiting = keep
        self.released += len(out)
        return out

    def check_progress(self, running: int) -> None:
        """Raise if chunks wait on runs that nothing is training (a planning bug)."""
        if self._waiting and running == 0:
            missing = sorted(set().union(*(d for _, d in self._waiting)) & self._pending)[:3]
            raise RuntimeError(f"chunks wait on runs that are not scheduled: {missing}")


def run_isolated(
    fam: Family,
    part: Sequence[RunConfig],
    pretrained: Pretrained,
    sink: Any,
    device: str | torch.device,
) -> None:
    """Train ``part``; a chunk that raises is retried one run at a time (the runs it had already
    handed to ``sink`` are kept), and a run that raises alone is handed to ``sink`` as failed with
    the exception as its reason — the sweep goes on. Used by every executor, in its workers."""
    emitted: set[str] = set()

    def tracking(row: dict[str, Any], *rest: Any, **kw: Any) -> None:
        emitted.add(row["run_id"])
        sink(row, *rest, **kw)

    try:
        fam.run_chunk(part, pretrained, sink=tracking, device=device)
        return
    except Exception as err:
        if len(part) == 1:
            sink(failed_row(part[0], f"raised {type(err).__name__}: {err}"), [], {})
            return
    for cfg in part:
        if cfg.run_id() not in emitted:
            run_isolated(fam, [cfg], pretrained, sink, device)


def train_remote_chunk(
    part: Sequence[RunConfig], deps: dict[str, dict[str, torch.Tensor]], device: str
) -> list[tuple[Any, ...]]:
    """Train one chunk away from the driver (a worker process, a Ray task): every finished run
    as ``(row, curve, CPU parameters, evaluations)``, for the driver to store."""
    results: list[tuple[Any, ...]] = []

    def sink(
        row: dict[str, Any],
        curve: list[dict[str, Any]],
        p: dict[str, torch.Tensor],
        evals: list[dict[str, Any]] | None = None,
    ) -> None:
        results.append((row, curve, {k: v.detach().cpu() for k, v in p.items()}, evals))

    run_isolated(family_of(part[0]), part, deps.__getitem__, sink, device)
    return results


def failed_row(cfg: RunConfig, reason: str) -> dict[str, Any]:
    """The stored row of a run that could not finish."""
    return {**cfg.row_fields(), "run_id": cfg.run_id(), "status": "failed", "reason": reason[:500]}


class Executor(Protocol):
    """Where the chunks run. The planning (dedupe, resume, dependency phases, ensemble sizes)
    and the storing are the executor-independent part (:func:`execute`); an executor takes
    the chunks that the :class:`Schedule` releases — a chunk as soon as the runs it depends on
    are stored — runs each through :func:`run_isolated`, so a raising run fails alone, and
    hands every finished run to ``sink`` in the driver, the only writer of the store."""

    name: str
    #: the torch device the chunks run on (for the ensemble cost model)
    device: str
    #: chunks that run at the same time (time estimates divide by it)
    slots: int

    def start(self) -> bool:
        """Acquire what the executor needs; True if this call did (False: already started).
        Raises :class:`ExecutorError` if the requested resources do not exist."""

    def close(self) -> None:
        """Release it; safe to call twice."""

    def run(self, schedule: Schedule, pretrained: Pretrained, sink: Any, on_chunk: Any) -> None:
        """Run every chunk of ``schedule`` as it becomes ready; ``on_chunk(part, seconds,
        info)`` after each."""


class ExecutorError(RuntimeError):
    """An executor cannot run here (missing extra, resources that do not exist)."""


class LocalExecutor:
    """In this process, one chunk after another; every run is stored as it finishes (the
    command line's ``--workers 0``; its default is :class:`mtlab.runs.workers.WorkerExecutor`)."""

    name = "local"
    slots = 1

    def __init__(self, device: str | torch.device = "cpu") -> None:
        self.device = str(device)

    def start(self) -> bool:
        return False

    def close(self) -> None:
        return None

    def run(self, schedule: Schedule, pretrained: Pretrained, sink: Any, on_chunk: Any) -> None:
        while not schedule.finished():
            parts = schedule.ready()
            schedule.check_progress(len(parts))
            for part in parts:
                t0 = time.perf_counter()
                run_isolated(family_of(part[0]), part, pretrained, sink, self.device)
                on_chunk(part, time.perf_counter() - t0, {})


def _groups(phase: Sequence[RunConfig]) -> list[list[RunConfig]]:
    """The phase's runs grouped by family and group key, each group in its family's order."""
    groups: dict[tuple[Any, ...], list[RunConfig]] = defaultdict(list)
    for cfg in phase:
        groups[(cfg.family, family_of(cfg).group_key(cfg))].append(cfg)
    for group in groups.values():
        # similar runs next to each other: less zero-padding inside a chunk
        group.sort(key=family_of(group[0]).sort_key)
    return list(groups.values())


def _chunk_size(
    fam: Family,
    group: Sequence[RunConfig],
    chunk: int | str,
    pretrained: Pretrained,
    device: str | torch.device,
    stored_plan: dict[str, int],
) -> int:
    if not fam.batched(group[0]):
        return 1  # a family whose runs are not ensembled
    if chunk == "auto":
        return fam.auto_chunk(group, device)
    if chunk == "measure":
        key = json.dumps([fam.name, [list(k) for k in fam.group_key(group[0])], str(device),
                          len(group) >= CANDIDATE_CHUNKS[-1]], default=str)  # fmt: skip
        if key not in stored_plan:  # measured once per folder, reused on rerun and resume
            stored_plan[key] = plan_chunk(fam, group, pretrained, device)
        return min(int(stored_plan[key]), len(group))
    return min(int(chunk), len(group))


def available_memory(device: str | torch.device = "cpu") -> int | None:
    """Bytes free for a run on ``device`` (MemAvailable on CPU, free memory on a GPU; None if
    unknown)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return int(torch.cuda.mem_get_info(dev)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def memory_problem(
    configs: Sequence[RunConfig], device: str | torch.device = "cpu", available: int | None = None
) -> str | None:
    """Why a run of ``configs`` cannot fit on ``device`` even alone (None: every one fits):
    its data alone (the family's :meth:`~mtlab.runs.family.Family.bytes_per_run`) exceeds the
    available memory. Names the fields to reduce."""
    free = available_memory(device) if available is None else available
    if free is None:
        return None
    worst: tuple[int, RunConfig] | None = None
    for cfg in configs:
        need = family_of(cfg).bytes_per_run(cfg)
        if worst is None or need > worst[0]:
            worst = (need, cfg)
    if worst is None or worst[0] <= free:
        return None
    need, cfg = worst
    fam = family_of(cfg)
    fields = ", ".join(f"{f}={getattr(cfg, f)}" for f in fam.memory_fields) or "its sizes"
    return (
        f"a {fam.name} run (method {cfg.method}) needs ~{need / 2**30:.1f} GiB for its data "
        f"alone, more than the {free / 2**30:.1f} GiB available on {device}: reduce {fields}"
    )


def execute(
    configs: Sequence[RunConfig],
    store: RunStore,
    *,
    chunk: int | str = "auto",
    device: str | torch.device = "cpu",
    progress: bool = True,
    executor: Executor | None = None,
    tables: bool = True,
) -> dict[str, Any]:  # long: the loader cache and the sink share the store, stats and bar
    """Train every run of ``configs`` missing from ``store`` with ``executor`` (default: in this
    process on ``device``); returns counts and timings. ``results.parquet`` and the other tables
    are rebuilt at the end (also when interrupted) unless ``tables`` is False (a command that
    runs several sweeps into one folder rebuilds them once, after the last)."""
    from tqdm.auto import tqdm

    if (isinstance(chunk, int) and chunk < 1) or (isinstance(chunk, str) and chunk not in CHUNKS):
        raise ValueError(f"chunk must be >= 1, 'auto' or 'measure'; got {chunk!r}")
    executor = executor or LocalExecutor(device)
    device = executor.device
    plan_path = store.root / "plan.json"
    stored_plan: dict[str, int] = json.loads(plan_path.read_text()) if plan_path.exists() else {}
    done = store.done_ids()
    todo = plan(configs, store)
    total = sum(len(t) for t in todo)
    requested = planned_ids(configs)  # one counting rule: every planned run, dependencies too
    redone = sum(c.run_id() in done for phase in todo for c in phase)
    stats: dict[str, Any] = {
        "executor": executor.name,
        "redone": redone,  # finished runs trained again for their missing / unreadable params
        "requested": len(requested),
        "trained": 0,
        "skipped": len(requested & done),
        "failed": 0,
        "seconds": 0.0,
        "chunks": [],
    }
    cache: dict[str, dict[str, torch.Tensor]] = {}

    def pretrained(run_id: str) -> dict[str, torch.Tensor]:
        if run_id not in cache:
            cache[run_id] = store.load_params(run_id)
        return cache[run_id]

    t_start = time.perf_counter()
    bar = tqdm(
        total=total, desc="runs", unit="run", disable=not progress or total == 0, dynamic_ncols=True
    )

    def sink(
        row: dict[str, Any],
        curve: list[dict[str, Any]],
        params: dict[str, torch.Tensor],
        evals: list[dict[str, Any]] | None = None,
    ) -> None:
        if store.add(row, curve, params, evals=evals):  # False: already stored (idempotent)
            stats["trained"] += 1
            stats["failed"] += row.get("status") == "failed"
        if schedule is not None:
            schedule.stored(row)
        bar.update(1)

    def on_chunk(part: Sequence[RunConfig], seconds: float, info: dict[str, Any]) -> None:
        stats["chunks"].append(
            {"method": part[0].method, "size": len(part), "seconds": seconds, **info}
        )
        bar.set_postfix_str(f"{len(stats['chunks'])} chunks done; last: {part[0].method} x{len(part)}")

    schedule: Schedule | None = None
    opened = executor.start()  # the caller may have started it (to check its resources first)
    try:
        chunks: list[list[RunConfig]] = []
        for phase in todo:  # the same plan as phase by phase; chunks never span two phases
            for group in _groups(phase):
                fam = family_of(group[0])
                size = _chunk_size(fam, group, chunk, pretrained, device, stored_plan)
                if chunk == "measure":
                    store.write_json("plan.json", stored_plan)
                chunks += [group[i : i + size] for i in range(0, len(group), size)]
        label = f"{len(chunks)} chunks"
        bar.set_postfix_str(label)
        schedule = Schedule(chunks, store, sink)
        executor.run(schedule, pretrained, sink, on_chunk)
    finally:
        bar.close()
        stats["seconds"] = time.perf_counter() - t_start
        if tables:
            store.write_tables()
        if opened:
            executor.close()
    return stats
