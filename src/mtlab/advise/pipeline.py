"""``mtlab advise``: which tasks together, MTL or PT+FT, which method, which rescaling — measured
on the user's own table, within a time budget, with seeds and standard errors on every comparison.

Stages (each training cached, so a rerun resumes; a stage that would not fit in the time budget
left is skipped and said so):

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
from pathlib import Path
from typing import Any

import numpy as np

from mtlab.advise.engine import Cache, Outcome, Settings, Spec, run
from mtlab.advise.rules import (
    clear_winner,
    helpful_partners,
    helpful_source,
    paired_difference,
    stable_grouping,
)
from mtlab.grouping import best_grouping
from mtlab.tasks.tables import Prepared

SINGLETON_SCORE = 0.0
GROUPING_SECONDS = 60.0  # all grouping searches of one advice together (anytime beyond)
LARGE_T = 16  # above this many tasks, groups hold at most MAX_GROUP_SIZE_LARGE_T tasks
MAX_GROUP_SIZE_LARGE_T = 6
FAILED_PAIR_SCORE = -1.0  # a pair whose every training diverged: "do not train together"
PAIRS_MAX_TASKS = 8  # ``affinity="auto"``: pairs up to this many tasks (28 pairs), else lookahead
AFFINITIES = ("auto", "pairs", "lookahead")


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


class _Runner:
    """Runs specs through the cache, counting time, with an optional progress callback."""

    def __init__(self, prep: Prepared, settings: Settings, cache: Cache, budget: float | None,
                 progress: Callable[[str], None] | None) -> None:  # fmt: skip
        self.prep, self.settings, self.cache = prep, settings, cache
        self.budget, self.progress = budget, progress
        self.t0 = time.perf_counter()
        self.cost: list[float] = []  # seconds per task-step of trainings done here
        self.skipped: list[str] = []

    def fits(self, stage: str, specs: Sequence[Spec]) -> bool:
        todo = [s for s in specs if self.cache.get(s) is None]
        if self.budget is None or not todo or not self.cost:
            return True
        per = float(np.median(self.cost))
        need = sum(per * len(s.tasks) * self._steps(s) * (1.5 if s.probe else 1) for s in todo)
        left = self.budget - (time.perf_counter() - self.t0)
        if need > left:
            self.skipped.append(
                f"{stage} ({len(todo)} trainings, ~{need:.0f} s > {left:.0f} s left)"
            )
            return False
        return True

    def _steps(self, spec: Spec) -> int:
        return spec.steps or self.settings.steps

    def __call__(self, specs: Sequence[Spec]) -> list[Outcome]:
        out = []
        for spec in specs:
            cached = self.cache.get(spec) is not None
            outcome = run(spec, self.prep, self.settings, self.cache)
            if not cached:
                self.cost.append(outcome.seconds / (len(spec.tasks) * self._steps(spec)))
                if self.progress is not None:
                    self.progress(f"{describe(spec)}, seed {spec.seed} ({outcome.seconds:.1f} s)")
            out.append(outcome)
        return out


def describe(spec: Spec) -> str:
    """One training in words, for progress lines."""
    tasks = "+".join(spec.tasks)
    if spec.regime == "ptft":
        return f"PT+FT {tasks} from {spec.source}, s={spec.rescale:g}"
    steps = f" ({spec.steps} steps)" if spec.steps else ""
    if spec.regime == "stl":
        return f"STL {tasks}{steps}"
    return f"MTL {tasks} ({spec.method}{', probes' if spec.probe else ''}){steps}"


def _metric(outcomes: Sequence[Outcome], task: str, split: str = "val") -> list[float]:
    """Per seed; NaN for a training that diverged (a failed run is never averaged in: the
    rules and means drop NaN, paired by seed)."""
    return [math.nan if o.diverged else float(o.metrics[task][f"{split}_metric"])
            for o in outcomes]  # fmt: skip


def _mean_se(stack: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard error over the first axis, of the finite entries only (NaN where fewer
    than one / two are finite)."""
    n = np.isfinite(stack).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        total = np.where(np.isfinite(stack), stack, 0.0).sum(0)
        mean = np.where(n > 0, total / np.maximum(n, 1), np.nan)
        dev = np.where(np.isfinite(stack), stack - mean, 0.0)
        var = (dev**2).sum(0) / np.maximum(n - 1, 1)
        se = np.where(n > 1, np.sqrt(var / np.maximum(n, 1)), np.nan)
    return mean, se


def _affinity(outcomes: Sequence[Outcome]) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    mats = [np.asarray(o.affinity, float) for o in outcomes
            if o.affinity is not None and not o.diverged]  # fmt: skip
    if not mats:
        raise RuntimeError("no affinity was measured (every MTL run diverged?)")
    mean, se = _mean_se(np.stack(mats))
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
    mean, se = _mean_se(np.stack(mats))
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
    """The best grouping for every budget 1 … T, and each seed's own choice. The searches share
    ``GROUPING_SECONDS``; one stopped by its share returns the best grouping found with a
    certified upper bound on the optimum (``optimal`` false, ``bound``). Above
    ``LARGE_T`` tasks groups hold at most ``MAX_GROUP_SIZE_LARGE_T`` tasks (``max_group_size``),
    so that the candidate groups fit in memory."""
    T = len(tasks)
    out: dict[str, Any] = {}
    single = [SINGLETON_SCORE] * T
    limit = GROUPING_SECONDS / (T * (1 + len(per_seed)))
    size = MAX_GROUP_SIZE_LARGE_T if T > LARGE_T else None

    def search(M: np.ndarray, b: int) -> Any:
        return best_grouping(M, b, single, names=tasks, max_group_size=size, time_limit=limit,
                             anytime=True)  # fmt: skip

    for b in range(1, T + 1):
        if size is not None and b * size < T:
            continue  # no grouping of at most b groups of ≤ size tasks covers every task
        g = search(A, b)
        seeds = [search(m, b).names or [] for m in per_seed]
        stable, agree = stable_grouping(g.names or [], seeds)
        out[str(b)] = {"groups": g.names, "value": g.value, "stable": stable, "seeds_agree": agree,
                       "per_seed": seeds, "optimal": g.optimal, "bound": g.bound,
                       "max_group_size": size}  # fmt: skip
    return out


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
    settings: Settings,
    options: Options,
    out: Path,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the stages (module doc) into ``out``; returns the advice (``advice.json``'s content)
    plus the tables behind it."""
    tasks = [t.name for t in prep.tasks]
    T = len(tasks)
    out.mkdir(parents=True, exist_ok=True)
    runner = _Runner(prep, settings, Cache(out), options.time_budget, progress)
    seeds = list(range(options.seeds))
    stl = {t: runner([Spec((t,), seed=s) for s in seeds]) for t in tasks}
    mtl_all = runner([Spec(tuple(tasks), seed=s, probe=True) for s in seeds])
    look, look_se, per_seed = _affinity(mtl_all)
    A, A_se, source = look, look_se, "lookahead"
    mode = options.affinity
    if mode == "auto":
        mode = "pairs" if T <= PAIRS_MAX_TASKS else "lookahead"
    pair_specs = {(i, j): [Spec((tasks[i], tasks[j]), seed=s) for s in seeds]
                  for i in range(T) for j in range(i + 1, T)}  # fmt: skip
    if mode == "pairs" and runner.fits(
        "pairwise transfer", [x for v in pair_specs.values() for x in v]
    ):
        pairs = {ij: runner(specs) for ij, specs in pair_specs.items()}
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
    candidates: dict[str, list[dict[str, Any]]] = {t: [] for t in tasks}

    def add(task: str, regime: str, outcomes: list[Outcome], **what: Any) -> None:
        candidates[task].append({"regime": regime, "val": _metric(outcomes, task),
                                 "test": _metric(outcomes, task, "test"),
                                 "failed": sum(o.diverged for o in outcomes), **what})  # fmt: skip

    for t in tasks:
        add(t, "stl", stl[t], partners=[], method=None, source=None, rescale=None, steps=None)
    chosen = sorted({tuple(g) for g in groups if len(g) > 1})

    def trained(g: tuple[str, ...], method: str = "mean") -> list[Outcome]:
        if g == tuple(tasks) and method == "mean":  # MTL on all tasks is trained already (the
            return mtl_all  # probes have no side effect on training)
        return runner([Spec(g, method, s) for s in seeds])

    def specs(gs: Sequence[tuple[str, ...]], methods: Sequence[str]) -> list[Spec]:
        return [Spec(g, m, s) for g in gs for m in methods for s in seeds
                if not (g == tuple(tasks) and m == "mean")]  # fmt: skip

    # the chosen groups as they are: predicted vs realised change per task
    verify: list[dict[str, Any]] = []
    if runner.fits("grouped MTL", specs(chosen, ["mean"])):
        for g in chosen:
            res = trained(g)
            for t in g:
                i = tasks.index(t)
                predicted = float(np.mean([A[i, tasks.index(u)] for u in g if u != t]))
                gain, se = paired_difference(_metric(stl[t], t), _metric(res, t))
                verify.append({"task": t, "group": list(g), "predicted_affinity": predicted,
                               "realised_change": gain, "realised_se": se,
                               "agree": (predicted > 0) == (gain > 0)})  # fmt: skip
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
    for stage, ms in (("MTL with helpful partners", methods[:1]), ("methods", methods[1:])):
        if not ms or not runner.fits(stage, specs(cand_groups, ms)):
            continue
        for g in cand_groups:
            for m in ms:
                res = trained(g, m)
                for t in g:
                    if own.get(t) == g:
                        add(t, "mtl", res, partners=[u for u in g if u != t], method=m,
                            source=None, rescale=None, steps=None)  # fmt: skip
    sources = {t: helpful_source(A[i], A_se[i], i) for i, t in enumerate(tasks)}
    ptft_specs = [Spec((t,), seed=s, source=tasks[j], rescale=r) for t, j in sources.items()
                  if j is not None for r in options.rescales for s in seeds]  # fmt: skip
    long = 2 * settings.steps
    long_specs = [Spec((t,), seed=s, steps=long) for t, j in sources.items() if j is not None
                  for s in seeds]  # fmt: skip
    if ptft_specs and runner.fits("PT+FT", ptft_specs + long_specs):
        for t, j in sources.items():
            if j is None:
                continue
            for r in options.rescales:
                res = runner([Spec((t,), seed=s, source=tasks[j], rescale=r) for s in seeds])
                add(t, "ptft", res, partners=[], method=None, source=tasks[j], rescale=r,
                    steps=None)  # fmt: skip
        # the control PT+FT needs: STL trained as long as pretraining + finetuning together (a
        # gain that is only more steps is not transfer)
        for t, j in sources.items():
            if j is not None:
                res = runner([Spec((t,), seed=s, steps=long) for s in seeds])
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
        "skipped": runner.skipped,
        "notes": notes,
        "seconds": time.perf_counter() - runner.t0,
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


__all__ = ["AFFINITIES", "PAIRS_MAX_TASKS", "Options", "advise"]
