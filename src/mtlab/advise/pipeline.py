"""``mtlab advise``: which tasks together, MTL or PT+FT, which method, which rescaling — measured
on the user's own table, within a time budget, with seeds and standard errors on every comparison.

Every training is a run of the own-data family (:mod:`mtlab.runs.owndata`), and the stages are
sweeps of them, trained by :func:`mtlab.runs.executor.execute` into the folder's run store — in
this process or on Ray — so a rerun resumes and trains nothing twice. The stages that do not
depend on each other's results share one sweep, so that every worker is busy: (1, 2, 2b) the
measurements, then (4, 5, 6) the candidates. A stage that would not fit in the time budget left is
skipped and said so.

Stages:

1. STL: every task alone, per seed.
2. MTL on all tasks with lookahead affinity probes, per seed → the lookahead affinity (mean and
   standard error over seeds).
2b. With ``affinity="pairs"`` (the default up to ``PAIRS_MAX_TASKS`` tasks): every pair of tasks
   trained together, per seed → the *realised* pairwise transfer ``1 − L_i(i with j) /
   L_i(i alone)``, ``L`` the lowest validation loss over checkpoints (the unit of the lookahead
   affinity: a relative loss change), which then drives the grouping (the pairwise
   approximation of higher-order groups, as in Standley et al. 2020). Measured on planted
   tables: the lookahead affinity of a wide MLP with separate heads can miss transfer that
   comes from learning shared features (its cross-task entries within their noise), the
   pairwise transfer does not; the report gives their correlation.
3. The exact grouping for every budget 1 … T (a task alone scores 0: no transfer), and whether
   each seed's own matrix chooses the same.
4. The groups of the chosen budget trained (method ``mean``): predicted (the task's mean affinity
   from its partners) vs realised (its validation metric in the group minus alone).
5. MTL candidates: each task with the members of its group that clearly help it
   (:func:`~mtlab.advise.rules.helpful_partners`), with ``mean`` and a few multi-task methods.
6. PT+FT for each task with a helpful source (:func:`~mtlab.advise.rules.helpful_source`): the
   source's STL trunk × s for each rescaling s, finetuned on the task.
7. Per task, the candidate with the best mean validation metric; recommended over STL only if it
   is a :func:`~mtlab.advise.rules.clear_winner` on validation, else "no clear winner" (STL).
   The numbers reported are on the test split.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mtlab.advise.rules import (
    clear_winner,
    helpful_partners,
    helpful_source,
    paired_difference,
)
from mtlab.grouping import SINGLETON_SCORE, by_budget
from mtlab.measure.stats import finite_mean_se
from mtlab.runs.config import OwnDataRunConfig
from mtlab.tasks.tables import Prepared

GROUPING_SECONDS = 60.0  # all grouping searches of one advice together (anytime beyond)
LARGE_T = 16  # above this many tasks, groups hold at most MAX_GROUP_SIZE_LARGE_T tasks
MAX_GROUP_SIZE_LARGE_T = 6
FAILED_PAIR_SCORE = -1.0  # a pair whose every training diverged: "do not train together"
PAIRS_MAX_TASKS = 8  # ``affinity="auto"``: pairs up to this many tasks (28 pairs), else lookahead
AFFINITIES = ("auto", "pairs", "lookahead")
PROBE_COST = 1.5  # a probed training's cost relative to an unprobed one (time estimates)


@dataclass(frozen=True)
class Options:
    seeds: int = 3
    budget: int | None = None  # the grouping budget whose groups are trained (default 2)
    methods: tuple[str, ...] = ("pcgrad", "uw")
    rescales: tuple[float, ...] = (0.5, 1.0, 2.0)
    time_budget: float | None = 600.0
    affinity: str = "auto"  # what drives the grouping: "pairs", "lookahead" or "auto" (module doc)

    def __post_init__(self) -> None:
        if self.affinity not in AFFINITIES:
            raise ValueError(f"affinity {self.affinity!r}: allowed {', '.join(AFFINITIES)}")


@dataclass
class Outcome:
    """One finished run as the rules read it: per task (at its best validation checkpoint) the
    validation / test metric and loss and the lowest validation loss; the affinity ``(T, T)``
    (recipient × source) averaged over probes, if probed; ``diverged`` for a failed run (never
    averaged in)."""

    config: OwnDataRunConfig
    metrics: dict[str, dict[str, float]]
    seconds: float
    affinity: list[list[float]] | None = None
    diverged: bool = False

    @classmethod
    def from_row(cls, cfg: OwnDataRunConfig, row: dict[str, Any]) -> Outcome:
        evals = {e["task"]: e for e in row.get("evals") or []}
        metrics = {t: {k: _number(v) for k, v in e.items()} for t, e in evals.items()}
        rows = [evals[t].get("affinity") for t in cfg.tasks if t in evals]
        affinity = rows if cfg.probe and rows and all(r is not None for r in rows) else None
        return cls(cfg, metrics, float(row.get("wall_s") or 0.0), affinity,
                   diverged=row.get("status") == "failed")  # fmt: skip


def _number(v: Any) -> Any:
    """A stored value back as it was trained (the store writes ±inf as strings, NaN as null)."""
    if v is None:
        return math.nan
    return float(v) if v in ("inf", "-inf") else v


#: trains a stage's runs (one sweep) and returns what the store holds for each run id
Train = Callable[[str, Sequence[OwnDataRunConfig]], dict[str, dict[str, Any]]]


class Stages:
    """The stages' sweeps: ``train(stage, configs)`` trains the runs not yet stored (one sweep,
    dependencies first) and returns the stored rows; :meth:`fits` says whether a stage's
    remaining runs fit in the time budget, from the cost per task and step of the runs stored so
    far over ``slots`` runs at a time."""

    def __init__(self, train: Train, stored: Callable[[], dict[str, dict[str, Any]]],
                 budget: float | None, slots: int = 1) -> None:  # fmt: skip
        self.train, self.stored = train, stored
        self.budget, self.slots = budget, max(1, slots)
        self.t0 = time.perf_counter()
        self.skipped: list[str] = []
        self.committed = 0.0  # estimated seconds of the stages accepted but not yet trained
        self.accepted: set[str] = set()

    def _cost(self, rows: dict[str, dict[str, Any]]) -> float | None:
        per = [float(r["wall_s"]) / (len(r["tasks"]) * int(r["steps"]))
               for r in rows.values() if r.get("status") == "ok" and r.get("wall_s")]  # fmt: skip
        return float(np.median(per)) if per else None

    def fits(self, stage: str, configs: Sequence[OwnDataRunConfig]) -> bool:
        rows = self.stored()
        todo = {c.run_id(): c for c in configs if c.run_id() not in rows}
        todo = {k: c for k, c in todo.items() if k not in self.accepted}
        per = self._cost(rows)
        if self.budget is None or not todo or per is None:
            self.accepted |= set(todo)
            return True
        need = sum(per * len(c.tasks) * c.steps * (PROBE_COST if c.probe else 1)
                   for c in todo.values()) / self.slots  # fmt: skip
        left = self.budget - (time.perf_counter() - self.t0) - self.committed
        if need > left:
            self.skipped.append(f"{stage} ({len(todo)} trainings, ~{need:.0f} s > {left:.0f} s left)")
            return False
        self.committed += need
        self.accepted |= set(todo)
        return True

    def run(self, stage: str, configs: Sequence[OwnDataRunConfig]) -> dict[str, Outcome]:
        """Train ``configs`` as one sweep; their outcomes by run id."""
        unique = list({c.run_id(): c for c in configs}.values())
        rows = self.train(stage, unique)
        self.committed = 0.0  # the estimates are now measured time
        self.accepted.clear()
        return {c.run_id(): Outcome.from_row(c, rows[c.run_id()]) for c in unique}


def _metric(outcomes: Sequence[Outcome], task: str, split: str = "val") -> list[float]:
    """Per seed; NaN for a training that diverged (a failed run is never averaged in: the
    rules and means drop NaN, paired by seed)."""
    return [math.nan if o.diverged else float(o.metrics[task][f"{split}_metric"])
            for o in outcomes]  # fmt: skip


def _affinity(outcomes: Sequence[Outcome]) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    mats = [np.asarray(o.affinity, float) for o in outcomes
            if o.affinity is not None and not o.diverged]  # fmt: skip
    if not mats:
        raise RuntimeError("no affinity was measured (every MTL run diverged?)")
    mean, se = finite_mean_se(np.stack(mats))
    return mean, se, mats


def _pair_affinity(
    stl: dict[str, list[Outcome]], pairs: dict[tuple[int, int], list[Outcome]], tasks: list[str]
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Per seed, ``Z[i, j] = 1 − L_i(i with j) / L_i(i alone)``, each ``L`` the lowest validation
    loss over the run's checkpoints (early stopping on the loss: a task a network can only
    memorise — pure noise — then gains nothing from a partner that merely slows its
    overfitting); the mean, its standard error and the per-seed matrices."""

    def low(o: Outcome, task: str) -> float:
        m = o.metrics[task]
        return math.nan if o.diverged else float(m.get("min_val_loss", m["val_loss"]))

    T = len(tasks)
    n = len(next(iter(stl.values())))
    mats = [np.zeros((T, T)) for _ in range(n)]
    for (i, j), outcomes in pairs.items():
        for s, o in enumerate(outcomes):
            for r, src in ((i, j), (j, i)):
                mats[s][r, src] = 1.0 - low(o, tasks[r]) / low(stl[tasks[r]][s], tasks[r])
    mean, se = finite_mean_se(np.stack(mats))
    # a pair with no finite seed (its trainings diverged) must not be grouped together
    mean = np.where(np.isfinite(mean), mean, FAILED_PAIR_SCORE)
    mats = [np.where(np.isfinite(m), m, FAILED_PAIR_SCORE) for m in mats]
    return mean, se, mats


def _offdiag_corr(A: np.ndarray, B: np.ndarray) -> float:
    mask = ~np.eye(len(A), dtype=bool)
    a, b = A[mask], B[mask]
    if len(a) < 2 or a.std() == 0 or b.std() == 0:
        return math.nan
    return float(np.corrcoef(a, b)[0, 1])


def _groupings(A: np.ndarray, tasks: list[str], per_seed: list[np.ndarray]) -> dict[str, Any]:
    """The best grouping for every budget 1 … T, and each seed's own choice
    (:func:`~mtlab.grouping.by_budget`; a task alone scores 0). The searches share
    ``GROUPING_SECONDS``; one stopped by its share returns the best grouping found with a
    certified upper bound on the optimum (``optimal`` false, ``bound``). Above
    ``LARGE_T`` tasks groups hold at most ``MAX_GROUP_SIZE_LARGE_T`` tasks (``max_group_size``),
    so that the candidate groups fit in memory."""
    T = len(tasks)
    size = MAX_GROUP_SIZE_LARGE_T if T > LARGE_T else None
    out = by_budget(A, range(1, T + 1), per_seed, tasks, [SINGLETON_SCORE] * T,
                    max_group_size=size, time_limit=GROUPING_SECONDS / (T * (1 + len(per_seed))),
                    anytime=True)  # fmt: skip
    return {b: {**g, "max_group_size": size} for b, g in out.items()}


def _group_of(
    task: str, groups: Sequence[Sequence[str]], A: np.ndarray, tasks: list[str]
) -> list[str]:
    """The task's group at this budget (the one giving it the best score when groups overlap)."""
    i = tasks.index(task)
    best, best_score = [task], SINGLETON_SCORE
    for g in groups:
        if task in g and len(g) > 1:
            score = float(np.mean([A[i, tasks.index(j)] for j in g if j != task]))
            if len(best) == 1 or score > best_score:
                best, best_score = list(g), score
    return best


def advise(  # long: the stages read as one procedure
    prep: Prepared,
    make: Callable[..., OwnDataRunConfig],
    options: Options,
    stages: Stages,
) -> dict[str, Any]:
    """Run the stages (module doc); ``make(**fields)`` builds a run's config (the data and the
    training settings are the command's). Returns the advice (``advice.json``'s content) plus
    the tables behind it."""
    tasks = [t.name for t in prep.tasks]
    T = len(tasks)
    seeds = list(range(options.seeds))
    steps = make(tasks=(tasks[0],)).steps

    def stl_cfg(t: str, s: int, n: int | None = None) -> OwnDataRunConfig:
        return make(tasks=(t,), method="stl", seed=s, **({"steps": n} if n else {}))

    def mtl_cfg(g: Sequence[str], m: str, s: int, probe: bool = False) -> OwnDataRunConfig:
        return make(tasks=tuple(g), method=m, seed=s, probe=probe)

    mode = options.affinity
    if mode == "auto":
        mode = "pairs" if T <= PAIRS_MAX_TASKS else "lookahead"
    stl_cfgs = {t: [stl_cfg(t, s) for s in seeds] for t in tasks}
    all_cfgs = [mtl_cfg(tasks, "mean", s, probe=True) for s in seeds]
    pair_cfgs = {(i, j): [mtl_cfg((tasks[i], tasks[j]), "mean", s) for s in seeds]
                 for i in range(T) for j in range(i + 1, T)}  # fmt: skip
    first = [c for v in stl_cfgs.values() for c in v] + all_cfgs
    pairs_cfgs = [c for v in pair_cfgs.values() for c in v]
    want_pairs = mode == "pairs"
    done = stages.run("every task alone; all tasks together with probes", first)
    if want_pairs and stages.fits("pairwise transfer", pairs_cfgs):
        done.update(stages.run("every pair of tasks together", pairs_cfgs))
    else:
        want_pairs = False
    stl = {t: [done[c.run_id()] for c in v] for t, v in stl_cfgs.items()}
    mtl_all = [done[c.run_id()] for c in all_cfgs]
    look, look_se, per_seed = _affinity(mtl_all)
    A, A_se, source = look, look_se, "lookahead"
    if want_pairs:
        pairs = {ij: [done[c.run_id()] for c in v] for ij, v in pair_cfgs.items()}
        A, A_se, per_seed = _pair_affinity(stl, pairs, tasks)
        source = "pairs"
    groupings = _groupings(A, tasks, per_seed)
    notes: list[str] = []
    wanted = min(options.budget or 2, T)
    feasible = sorted(int(b) for b in groupings)
    budget = next((b for b in feasible if b >= wanted), feasible[-1])
    if budget != wanted:
        notes.append(f"budget {wanted} cannot cover {T} tasks with groups of at most "
                     f"{MAX_GROUP_SIZE_LARGE_T}; budget {budget} was trained")  # fmt: skip
    inexact = [b for b in feasible if not groupings[str(b)]["optimal"]]
    if inexact:
        notes.append(
            f"budget(s) {', '.join(map(str, inexact))}: the grouping search stopped at its share "
            f"of {GROUPING_SECONDS:g} s; the grouping is the best found, and its value is within "
            "the certified bound in groupings.csv of the optimum"
        )
    if T > LARGE_T:
        notes.append(f"{T} tasks: groups were limited to {MAX_GROUP_SIZE_LARGE_T} tasks each")
    groups = groupings[str(budget)]["groups"]
    chosen = sorted({tuple(g) for g in groups if len(g) > 1})

    def group_cfgs(gs: Sequence[tuple[str, ...]], m: str) -> list[OwnDataRunConfig]:
        # MTL on all tasks with "mean" was trained already (the probes do not change training)
        return [mtl_cfg(g, m, s, probe=g == tuple(tasks) and m == "mean")
                for g in gs for s in seeds]  # fmt: skip

    # MTL candidates: each task with the members of its group that clearly help it
    # (rules.helpful_partners) — a partner always comes from the measured affinity, never one
    # that merely shares the task's network
    own: dict[str, tuple[str, ...]] = {}
    for i, t in enumerate(tasks):
        members = [tasks.index(u) for u in _group_of(t, groups, A, tasks) if u != t]
        keep = helpful_partners(A[i], A_se[i], i, members)
        if keep:
            own[t] = tuple(u for j, u in enumerate(tasks) if j == i or j in keep)
    cand_groups = sorted(set(own.values()))
    methods = ["mean", *options.methods]
    sources = {t: helpful_source(A[i], A_se[i], i) for i, t in enumerate(tasks)}
    with_source = [(t, tasks[j]) for t, j in sources.items() if j is not None]
    long = 2 * steps

    def ptft_cfg(t: str, src: str, r: float, s: int) -> OwnDataRunConfig:
        return make(tasks=(t,), method="ptft", source=src, rescale=r, seed=s)

    ptft_cfgs = [ptft_cfg(t, src, r, s) for t, src in with_source for r in options.rescales
                 for s in seeds]  # fmt: skip
    # the control PT+FT needs: STL trained as long as pretraining + finetuning together (a gain
    # that is only more steps is not transfer)
    long_cfgs = [stl_cfg(t, s, long) for t, _ in with_source for s in seeds]
    plan = {
        "grouped": stages.fits("grouped MTL", group_cfgs(chosen, "mean")),
        "partners": bool(cand_groups) and stages.fits(
            "MTL with helpful partners", group_cfgs(cand_groups, "mean")),
        "methods": bool(cand_groups) and len(methods) > 1 and stages.fits(
            "methods", [c for m in methods[1:] for c in group_cfgs(cand_groups, m)]),
        "ptft": bool(ptft_cfgs) and stages.fits("PT+FT", ptft_cfgs + long_cfgs),
    }  # fmt: skip
    todo = (group_cfgs(chosen, "mean") if plan["grouped"] else []) + (
        group_cfgs(cand_groups, "mean") if plan["partners"] else []) + (
        [c for m in methods[1:] for c in group_cfgs(cand_groups, m)] if plan["methods"] else []
    ) + (ptft_cfgs + long_cfgs if plan["ptft"] else [])  # fmt: skip
    if todo:
        done.update(stages.run("groups, helpful partners, methods and PT+FT", todo))

    def trained(g: Sequence[str], m: str) -> list[Outcome]:
        return [done[c.run_id()] for c in group_cfgs([tuple(g)], m)]

    candidates: dict[str, list[dict[str, Any]]] = {t: [] for t in tasks}

    def add(task: str, regime: str, outcomes: list[Outcome], **what: Any) -> None:
        candidates[task].append({"regime": regime, "val": _metric(outcomes, task),
                                 "test": _metric(outcomes, task, "test"),
                                 "failed": sum(o.diverged for o in outcomes), **what})  # fmt: skip

    for t in tasks:
        add(t, "stl", stl[t], partners=[], method=None, source=None, rescale=None, steps=None)
    # the chosen groups as they are: predicted vs realised change per task
    verify: list[dict[str, Any]] = []
    for g in chosen if plan["grouped"] else []:
        res = trained(g, "mean")
        for t in g:
            i = tasks.index(t)
            predicted = float(np.mean([A[i, tasks.index(u)] for u in g if u != t]))
            gain, se = paired_difference(_metric(stl[t], t), _metric(res, t))
            verify.append({"task": t, "group": list(g), "predicted_affinity": predicted,
                           "realised_change": gain, "realised_se": se,
                           "agree": (predicted > 0) == (gain > 0)})  # fmt: skip
    for key, ms in (("partners", methods[:1]), ("methods", methods[1:])):
        for g in cand_groups if plan[key] else []:
            for m in ms:
                res = trained(g, m)
                for t in g:
                    if own.get(t) == g:
                        add(t, "mtl", res, partners=[u for u in g if u != t], method=m,
                            source=None, rescale=None, steps=None)  # fmt: skip
    for t, src in with_source if plan["ptft"] else []:
        for r in options.rescales:
            res = [done[ptft_cfg(t, src, r, s).run_id()] for s in seeds]
            add(t, "ptft", res, partners=[], method=None, source=src, rescale=r, steps=None)
    for t, _ in with_source if plan["ptft"] else []:
        res = [done[stl_cfg(t, s, long).run_id()] for s in seeds]
        add(t, "stl", res, partners=[], method=None, source=None, rescale=None, steps=long)
    per_task = {t: _decide(t, candidates[t], prep) for t in tasks}
    return {
        "tasks": tasks,
        "kinds": {t.name: t.kind for t in prep.tasks},
        "groupings": groupings,
        "budget": budget,
        "per_task": per_task,
        "verification": verify,
        "affinity": {
            "source": source,
            "mean": A.tolist(),
            "se": A_se.tolist(),
            "seeds": len(per_seed),
            "lookahead": {"mean": look.tolist(), "se": look_se.tolist()},
            "lookahead_vs_used_corr": _offdiag_corr(look, A) if source == "pairs" else None,
        },
        "sources": {t: (None if j is None else tasks[j]) for t, j in sources.items()},
        "skipped": stages.skipped,
        "notes": notes,
        "seconds": time.perf_counter() - stages.t0,
        "candidates": candidates,
    }


def _decide(task: str, cands: list[dict[str, Any]], prep: Prepared) -> dict[str, Any]:
    """The candidate with the best mean validation metric; recommended only if it clearly
    beats STL on validation (rules.clear_winner), else STL with "no clear winner". STL is the
    better (on validation) of STL and, where PT+FT was tried, STL trained as long as PT+FT."""

    def score(c: dict[str, Any]) -> float:
        finite = [v for v in c["val"] if math.isfinite(v)]
        return float(np.mean(finite)) if finite else -math.inf

    stl = max((c for c in cands if c["regime"] == "stl"), key=score)
    best = max(cands, key=score)
    clear = best["regime"] != "stl" and clear_winner(stl["val"], best["val"])
    chosen = best if clear else stl
    test = np.asarray(chosen["test"], float)
    test = test[np.isfinite(test)]  # seeds whose training diverged are left out
    se = float(test.std(ddof=1) / math.sqrt(len(test))) if len(test) > 1 else math.nan
    kind = next(t.kind for t in prep.tasks if t.name == task)
    diff, diff_se = paired_difference(stl["val"], best["val"])
    return {
        "regime": chosen["regime"],
        "partners": chosen["partners"],
        "source": chosen["source"],
        "rescale": chosen["rescale"],
        "method": chosen["method"],
        "steps": chosen["steps"],
        "stl": float(np.nanmean(stl["test"])) if np.isfinite(stl["test"]).any() else math.nan,
        "stl_steps": stl["steps"],
        "recommended": float(test.mean()) if len(test) else math.nan,
        "se": se,
        "metric": "r2" if kind == "regression" else "accuracy",
        "clear": clear,
        "best_candidate": {
            k: best[k] for k in ("regime", "partners", "source", "rescale", "method", "steps")
        },
        "val_gain_over_stl": diff,
        "val_gain_se": diff_se,
    }


__all__ = ["AFFINITIES", "PAIRS_MAX_TASKS", "Options", "Outcome", "Stages", "advise"]
