"""``mtlab advise``: which tasks together, MTL or PT+FT, which method, which rescaling — measured
on the user's own table, within a time budget, with seeds and standard errors on every comparison,
each recommendation judged against a fair single-task baseline and a null control, beside a
non-neural reference.

Every training is a run of the own-data family (:mod:`mtlab.runs.owndata`), and the stages are
sweeps of them, trained by :func:`mtlab.runs.executor.execute` into the folder's run store — in
this process or on Ray — so a rerun resumes and trains nothing twice. Runs that do not depend on
each other's results share one sweep, so that every worker is busy. The measurements (stages 1
and 2, the transfer estimate included: the grouping and every later stage stand on it) are
always trained; a later stage that would not fit in the time budget left is skipped and said
so. Every network trains for at most the command's step
budget (by default scaled to the data: :func:`auto_steps`) and stops at a validation plateau.

Stages:

1. STL: every task alone at every initial scale of ``rescales`` (the trunk's initial weights × s,
   the same grid PT+FT tunes its rescaling over) with twice the step budget (as many steps as
   pretraining and finetuning together), per seed — the task's *fair STL* is its best scale on
   validation (a task best at an end of the grid is tried one step beyond it in stage 2); and
   the non-neural reference (scikit-learn's ``HistGradientBoosting``,
   lightly tuned). The shared networks then start at the scale best for STL over all tasks
   (:func:`~mtlab.advise.rules.network_scale`).
2. MTL on all tasks with lookahead affinity probes, per seed → the lookahead affinity (mean and
   standard error over seeds); every task alone with the step budget at the networks' scale (the
   pretraining of PT+FT, and the baseline of the pairs). Above ``PAIRS_MAX_TASKS`` tasks the
   transfer that drives the grouping is estimated (:mod:`mtlab.advise.estimators`; by default
   the estimator :func:`~mtlab.advise.rules.default_estimator` picks from the measured
   evidence), its runs in this sweep. With ``affinity="pairs"`` (the default up
   to ``PAIRS_MAX_TASKS`` tasks), also every pair of tasks trained together → the *realised*
   pairwise transfer ``1 − L_i(i with j) / L_i(i alone)``, ``L`` the lowest validation loss over
   checkpoints, alone at the same initial scale (the unit of the lookahead affinity: a relative
   loss change), which then drives the grouping (the pairwise approximation of higher-order groups,
   as in Standley et al. 2020). The report gives the two matrices' correlation.
3. The exact grouping for every budget 1 … T (a task alone scores 0: no transfer), and whether
   each seed's own matrix chooses the same.
4. One sweep: the groups of the chosen budget (method ``mean``: predicted vs realised change per
   task); each task with the members of its group that clearly help it
   (:func:`~mtlab.advise.rules.helpful_partners`; the ``MAX_PARTNERS`` most helpful) under
   ``mean`` and the ``methods``; PT+FT of
   each task from each candidate source (every other task up to ``PTFT_ALL_SOURCES`` tasks, else
   the ``SOURCE_SHORTLIST`` with the highest transfer onto it) at the middle rescaling —
   sources are chosen by what PT+FT does, not by MTL affinity.
5. One sweep: each task's best source at every rescaling s, and the *null controls* of each
   task's best MTL candidate: the same network with each partner's labels permuted in turn.
   Then the null control of each task's best PT+FT: the same source with its labels permuted,
   at the same s (its pretraining run is the source's STL run with permuted labels).
6. Per task (:func:`_decide`): MTL is credited to its partners, PT+FT to its source, only if it
   clearly beats its null control (:func:`~mtlab.advise.rules.credited`); a PT+FT gain its null
   source matches is the pretraining-and-rescaling's (``pretrain_rescale``). The best eligible
   candidate is recommended only if it is a :func:`~mtlab.advise.rules.clear_winner` over the
   fair STL on validation, else "no clear winner" (STL). The numbers reported are on the test
   split; the reference is reported beside them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mtlab.advise.estimators import (
    ESTIMATORS,
    LARGE_T,
    MAX_GROUP,
    NEIGHBOURS,
    Context,
    candidate_pool,
    correlation,
    load_evidence,
    make_estimator,
    off_diagonal,
    pending,
)
from mtlab.advise.rules import (
    clear_winner,
    credited,
    default_estimator,
    finite_mean,
    helpful_partners,
    network_scale,
    paired_difference,
    reference_beats_networks,
)
from mtlab.grouping import SINGLETON_SCORE, by_budget
from mtlab.measure.stats import finite_mean_se
from mtlab.runs.config import OwnDataRunConfig
from mtlab.runs.owndata import REFERENCE_GRID
from mtlab.tasks.tables import Prepared

GROUPING_SECONDS = 60.0  # all grouping searches of one advice together (anytime beyond)
PAIRS_MAX_TASKS = 8  # ``affinity="auto"``: pairs up to this many tasks (28 pairs), else the
# estimator that measured best (rules.default_estimator)
AFFINITIES = ("auto", *ESTIMATORS)
PROBE_COST = 1.5  # a probed training's cost relative to an unprobed one (time estimates)
PTFT_ALL_SOURCES = 8  # up to this many tasks, every other task is tried as a PT+FT source …
SOURCE_SHORTLIST = 3  # … above, the tasks with the highest transfer onto it
MAX_PARTNERS = 3  # a task's MTL partners: the most helpful members of its group, at most this many
AUTO_EPOCHS = 20  # the default step budget: this many epochs of the largest task …
AUTO_STEPS = (800, 5000)  # … within these bounds
PATIENCE = 5  # evaluations without improvement that end a training (a validation plateau)


@dataclass(frozen=True)
class Options:
    seeds: int = 3
    budget: int | None = None  # the grouping budget whose groups are trained (default 2)
    methods: tuple[str, ...] = ("pcgrad", "uw")
    rescales: tuple[float, ...] = (0.125, 0.25, 0.5, 1.0)  # STL's initial scales, PT+FT's s
    time_budget: float | None = 600.0
    affinity: str = "auto"  # what drives the grouping: "pairs", "lookahead" or "auto" (module doc)

    def __post_init__(self) -> None:
        if self.affinity not in AFFINITIES:
            raise ValueError(f"affinity {self.affinity!r}: allowed {', '.join(AFFINITIES)}")
        if not self.rescales or any(not r > 0 for r in self.rescales):
            raise ValueError(f"rescales must be positive numbers (got {self.rescales})")


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
    steps_done: float = math.nan

    @classmethod
    def from_row(cls, cfg: OwnDataRunConfig, row: dict[str, Any]) -> Outcome:
        evals = {e["task"]: e for e in row.get("evals") or []}
        metrics = {t: {k: _number(v) for k, v in e.items()} for t, e in evals.items()}
        rows = [evals[t].get("affinity") for t in cfg.tasks if t in evals]
        affinity = rows if cfg.probe and rows and all(r is not None for r in rows) else None
        done = row.get("steps_done")
        return cls(cfg, metrics, float(row.get("wall_s") or 0.0), affinity,
                   diverged=row.get("status") == "failed",
                   steps_done=math.nan if done is None else float(done))  # fmt: skip


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
               for r in rows.values() if r.get("status") == "ok" and r.get("wall_s")
               and r.get("regime") != "reference"]  # fmt: skip
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


def _groupings(A: np.ndarray, tasks: list[str], per_seed: list[np.ndarray]) -> dict[str, Any]:
    """The best grouping for every budget 1 … T, and each seed's own choice
    (:func:`~mtlab.grouping.by_budget`; a task alone scores 0). The searches share
    ``GROUPING_SECONDS``; one stopped by its share returns the best grouping found with a
    certified upper bound on the optimum (``optimal`` false, ``bound``). Above
    ``LARGE_T`` tasks the candidate groups are the neighbourhood groups of ``A``
    (:func:`~mtlab.advise.estimators.candidate_pool`)."""
    T = len(tasks)
    size = MAX_GROUP if T > LARGE_T else None
    cands = candidate_pool(A)
    out = by_budget(A, range(1, T + 1), per_seed, tasks, [SINGLETON_SCORE] * T,
                    time_limit=GROUPING_SECONDS / (T * (1 + len(per_seed))), anytime=True,
                    candidates=cands)  # fmt: skip
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


def scale_field(v: float) -> float | None:
    """A scale as a config field (1 is the default initialisation: None, the runs' old ids)."""
    return None if v == 1.0 else float(v)


def auto_steps(prep: Prepared, batch_size: int) -> int:
    """The step budget of every training when ``--steps`` is not given: ``AUTO_EPOCHS`` epochs
    of the largest task's training split, within ``AUTO_STEPS`` (training stops earlier at a
    validation plateau: ``PATIENCE``)."""
    n = max(t["train"].n for t in prep.tasks)
    lo, hi = AUTO_STEPS
    return int(min(hi, max(lo, math.ceil(AUTO_EPOCHS * n / batch_size))))


def _rank(values: Sequence[float]) -> float:
    """A candidate's score for choosing: its mean over finite seeds (−inf if none)."""
    return finite_mean(values, -math.inf)


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
    scales = sorted(set(options.rescales))

    steps = make(tasks=(tasks[0],)).steps

    def stl_cfg(t: str, s: int, sc: float, n: int = steps) -> OwnDataRunConfig:
        return make(tasks=(t,), method="stl", seed=s, init_scale=scale_field(sc), steps=n)

    def mtl_cfg(g: Sequence[str], m: str, s: int, probe: bool = False,
                null: Sequence[str] = ()) -> OwnDataRunConfig:  # fmt: skip
        return make(tasks=tuple(g), method=m, seed=s, probe=probe,
                    init_scale=scale_field(net_scale), null=tuple(null))  # fmt: skip

    def ptft_cfg(t: str, src: str, r: float, s: int, null: bool = False) -> OwnDataRunConfig:
        return make(tasks=(t,), method="ptft", source=src, rescale=r, seed=s,
                    init_scale=scale_field(net_scale), null=(src,) if null else ())  # fmt: skip

    # (1) every task alone at every initial scale, for as many steps as pretraining and
    # finetuning together; the reference model
    stl_cfgs = {(t, sc): [stl_cfg(t, s, sc, 2 * steps) for s in seeds] for t in tasks
                for sc in scales}  # fmt: skip
    ref_cfgs = {t: [make(tasks=(t,), method="reference", seed=s) for s in seeds] for t in tasks}
    done = stages.run("every task alone at each initial scale; the reference model",
                      [c for v in (*stl_cfgs.values(), *ref_cfgs.values()) for c in v])  # fmt: skip
    stl = {k: [done[c.run_id()] for c in v] for k, v in stl_cfgs.items()}
    stl_val = {k: _rank(_metric(v, k[0])) for k, v in stl.items()}
    fair = {t: scales[int(np.argmax([stl_val[(t, sc)] for sc in scales]))] for t in tasks}
    net_scale = network_scale({sc: [stl_val[(t, sc)] for t in tasks] for sc in scales})

    # (2) all tasks together with probes; every pair; every task alone for the same budget (the
    # pairs' baseline and the PT+FT pretraining runs) — at the networks' scale
    mode = options.affinity
    evidence = load_evidence()
    if mode == "auto":
        mode = "pairs" if T <= PAIRS_MAX_TASKS else default_estimator(evidence["rows"], T)
    ctx = Context(tuple(tasks), tuple(seeds), make, init_scale=scale_field(net_scale))
    estimator = make_estimator(mode) if mode != "lookahead" else None
    est_cfgs = estimator.configs(ctx) if estimator is not None else []
    all_cfgs = [mtl_cfg(tasks, "mean", s, probe=True) for s in seeds]
    base_cfgs = {t: [stl_cfg(t, s, net_scale) for s in seeds] for t in tasks}
    # a task whose best initial scale is an end of the grid is tried one step beyond it too
    # (the fair STL is tuned to an interior optimum where one is within a step)
    beyond = {t: _beyond(fair[t], scales) for t in tasks}
    edge_cfgs = {(t, sc): [stl_cfg(t, s, sc, 2 * steps) for s in seeds]
                 for t, sc in beyond.items() if sc is not None}  # fmt: skip
    what = ("every pair of tasks together" if mode == "pairs"
            else f"the runs of the {mode} transfer estimate")  # fmt: skip
    # the transfer estimate is a measurement, trained whatever the time budget: without it the
    # grouping would stand on the lookahead affinity, which measured Spearman 0.15 against the
    # realised transfer at 48 tasks (estimator_evidence.json), and an estimate cut between its
    # rounds would waste the first
    want_est = estimator is not None
    done.update(stages.run("all tasks together with probes; each alone at their scale" + (
        f"; {what}" if want_est else ""),
        all_cfgs + [c for v in (*base_cfgs.values(), *edge_cfgs.values()) for c in v]
        + (est_cfgs if want_est else [])))  # fmt: skip
    base = {t: [done[c.run_id()] for c in v] for t, v in base_cfgs.items()}
    stl.update({k: [done[c.run_id()] for c in v] for k, v in edge_cfgs.items()})
    mtl_all = [done[c.run_id()] for c in all_cfgs]
    look, look_se, per_seed = _affinity(mtl_all)
    A, A_se, source = look, look_se, "lookahead"
    n_seeds = len(per_seed)
    while want_est and estimator is not None and (more := pending([estimator], ctx,
                                                                  stages.stored())):
        # the estimator's runs chosen from its runs stored (the screened pairs)
        done.update(stages.run(f"the runs the {mode} estimate chose", more))
    if want_est and estimator is not None:
        est = estimator.estimate(ctx, stages.stored())
        A, source = est.matrix, mode
        A_se = est.se if est.se is not None else np.full_like(A, np.nan)
        per_seed = list(est.meta.get("per_seed") or [])  # (the surrogate pools its seeds)
        n_seeds = int(est.meta.get("seeds", len(per_seed)))

    # (3) the grouping for every budget
    groupings = _groupings(A, tasks, per_seed)
    notes: list[str] = []
    wanted = min(options.budget or 2, T)
    feasible = sorted(int(b) for b in groupings)
    budget = next((b for b in feasible if b >= wanted), feasible[-1])
    if budget != wanted:
        notes.append(f"budget {wanted} cannot cover {T} tasks with the neighbourhood groups; "
                     f"budget {budget} was trained")  # fmt: skip
    inexact = [b for b in feasible if not groupings[str(b)]["optimal"]]
    if inexact:
        notes.append(
            f"budget(s) {', '.join(map(str, inexact))}: the grouping search stopped at its share "
            f"of {GROUPING_SECONDS:g} s; the grouping is the best found, and its value is within "
            "the certified bound in groupings.csv of the optimum"
        )
    if T > LARGE_T:
        notes.append(f"{T} tasks: the groups searched are each task with some of its {NEIGHBOURS} "
                     f"most affine partners, at most {MAX_GROUP} tasks a group")  # fmt: skip
    groups = groupings[str(budget)]["groups"]
    chosen = sorted({tuple(g) for g in groups if len(g) > 1})

    def group_cfgs(gs: Sequence[tuple[str, ...]], m: str) -> list[OwnDataRunConfig]:
        # MTL on all tasks with "mean" was trained already (the probes do not change training)
        return [mtl_cfg(g, m, s, probe=g == tuple(tasks) and m == "mean")
                for g in gs for s in seeds]  # fmt: skip

    # (4) the candidates: the groups; each task with the members of its group that clearly help
    # it (a partner always comes from the measured affinity) under each method; PT+FT from each
    # candidate source at the screening rescale
    own: dict[str, tuple[str, ...]] = {}
    for i, t in enumerate(tasks):
        members = [tasks.index(u) for u in _group_of(t, groups, A, tasks) if u != t]
        # the most helpful few: each partner gets a null control of its own
        helpful = helpful_partners(A[i], A_se[i], i, members)
        keep = [helpful[k] for k in np.argsort([-A[i, j] for j in helpful])[:MAX_PARTNERS]]
        if keep:
            own[t] = tuple(u for j, u in enumerate(tasks) if j == i or j in keep)
    cand_groups = sorted(set(own.values()))
    methods = ["mean", *options.methods]
    sources = {t: _candidate_sources(i, A, tasks) for i, t in enumerate(tasks)}
    screen = scales[len(scales) // 2]
    screen_cfgs = [ptft_cfg(t, src, screen, s) for t in tasks for src in sources[t]
                   for s in seeds]  # fmt: skip
    plan = {
        "grouped": stages.fits("grouped MTL", group_cfgs(chosen, "mean")),
        "partners": bool(cand_groups) and stages.fits(
            "MTL with helpful partners", group_cfgs(cand_groups, "mean")),
        "methods": bool(cand_groups) and len(methods) > 1 and stages.fits(
            "methods", [c for m in methods[1:] for c in group_cfgs(cand_groups, m)]),
        "ptft": bool(screen_cfgs) and stages.fits("PT+FT sources", screen_cfgs),
    }  # fmt: skip
    todo = (group_cfgs(chosen, "mean") if plan["grouped"] else []) + (
        group_cfgs(cand_groups, "mean") if plan["partners"] else []) + (
        [c for m in methods[1:] for c in group_cfgs(cand_groups, m)] if plan["methods"] else []
    ) + (screen_cfgs if plan["ptft"] else [])  # fmt: skip
    if todo:
        done.update(stages.run("groups, helpful partners, methods and PT+FT sources", todo))

    def trained(g: Sequence[str], m: str) -> list[Outcome]:
        return [done[c.run_id()] for c in group_cfgs([tuple(g)], m)]

    # the chosen groups as they are: predicted vs realised change per task
    verify: list[dict[str, Any]] = []
    for g in chosen if plan["grouped"] else []:
        res = trained(g, "mean")
        for t in g:
            i = tasks.index(t)
            predicted = float(np.mean([A[i, tasks.index(u)] for u in g if u != t]))
            gain, se = paired_difference(_metric(base[t], t), _metric(res, t))
            verify.append({"task": t, "group": list(g), "predicted_affinity": predicted,
                           "realised_change": gain, "realised_se": se,
                           "agree": (predicted > 0) == (gain > 0)})  # fmt: skip

    # (5) the best source of each task at every rescaling, and the best MTL candidate of each
    # task again with each partner's labels permuted
    best_src = {}
    for t in tasks if plan["ptft"] else []:
        by = {src: _rank(_metric([done[ptft_cfg(t, src, screen, s).run_id()] for s in seeds], t))
              for src in sources[t]}  # fmt: skip
        best_src[t] = max(by, key=by.__getitem__)
    best_mtl: dict[str, tuple[tuple[str, ...], str]] = {}
    for t, g in own.items():
        tried = [m for key, ms in (("partners", methods[:1]), ("methods", methods[1:]))
                 if plan[key] for m in ms]  # fmt: skip
        if tried:
            vals = [_rank(_metric(trained(g, m), t)) for m in tried]
            best_mtl[t] = (g, tried[int(np.argmax(vals))])
    grid_cfgs = [ptft_cfg(t, src, r, s) for t, src in best_src.items() for r in scales
                 if r != screen for s in seeds]  # fmt: skip
    null_mtl = [mtl_cfg(g, m, s, null=[p]) for t, (g, m) in best_mtl.items() for p in g
                if p != t for s in seeds]  # fmt: skip
    grid = bool(grid_cfgs + null_mtl) and stages.fits(
        "the best sources at every rescaling; the partners' null controls", grid_cfgs + null_mtl)
    if grid:
        done.update(stages.run("the best sources at every rescaling; the partners' null controls",
                               grid_cfgs + null_mtl))  # fmt: skip
    # (6) the sources' null controls, at each task's best rescaling of its best source
    best_s = {}
    for t, src in best_src.items():
        rs = scales if grid else [screen]
        vals = [_rank(_metric([done[ptft_cfg(t, src, r, s).run_id()] for s in seeds], t))
                for r in rs]  # fmt: skip
        best_s[t] = rs[int(np.argmax(vals))]
    null_ptft = [ptft_cfg(t, src, best_s[t], s, null=True) for t, src in best_src.items()
                 for s in seeds]  # fmt: skip
    nulls = bool(null_ptft) and stages.fits("the sources' null controls", null_ptft)
    if nulls:
        done.update(stages.run("the sources' null controls", null_ptft))

    candidates: dict[str, list[dict[str, Any]]] = {t: [] for t in tasks}

    def add(task: str, regime: str, outcomes: list[Outcome], **what: Any) -> None:
        fields = {"partners": [], "method": None, "source": None, "rescale": None,
                  "init_scale": None, "control": [], **what}  # fmt: skip
        candidates[task].append({
            "regime": regime, "val": _metric(outcomes, task), "test": _metric(outcomes, task, "test"),
            "failed": sum(o.diverged for o in outcomes),
            "steps_done": [o.steps_done for o in outcomes], **fields})  # fmt: skip

    for t in tasks:
        add(t, "reference", [done[c.run_id()] for c in ref_cfgs[t]])
        for (u, sc), res in sorted(stl.items()):
            if u == t:
                add(t, "stl", res, init_scale=sc)
    for key, ms in (("partners", methods[:1]), ("methods", methods[1:])):
        for g in cand_groups if plan[key] else []:
            for m in ms:
                res = trained(g, m)
                for t in g:
                    if own.get(t) == g:
                        add(t, "mtl", res, partners=[u for u in g if u != t], method=m,
                            init_scale=net_scale)  # fmt: skip
    for t in tasks if plan["ptft"] else []:
        for src in sources[t]:
            for r in scales if grid and src == best_src[t] else [screen]:
                res = [done[ptft_cfg(t, src, r, s).run_id()] for s in seeds]
                add(t, "ptft", res, source=src, rescale=r, init_scale=net_scale)
        if nulls:
            res = [done[ptft_cfg(t, best_src[t], best_s[t], s, null=True).run_id()] for s in seeds]
            add(t, "ptft", res, source=best_src[t], rescale=best_s[t], init_scale=net_scale,
                control=[best_src[t]])  # fmt: skip
    for t, (g, m) in best_mtl.items() if grid else []:
        for p in (u for u in g if u != t):
            res = [done[mtl_cfg(g, m, s, null=[p]).run_id()] for s in seeds]
            add(t, "mtl", res, partners=[u for u in g if u != t], method=m,
                init_scale=net_scale, control=[p])  # fmt: skip
    per_task = {t: _decide(t, candidates[t], prep) for t in tasks}
    if (best_mtl and not grid) or (best_src and not nulls):
        notes.append("some null controls were not trained (time budget): a partner or source "
                     "without its control is not credited with a gain")  # fmt: skip
    return {
        "tasks": tasks,
        "kinds": {t.name: t.kind for t in prep.tasks},
        "groupings": groupings,
        "budget": budget,
        "per_task": per_task,
        "verification": verify,
        "tuning": _tuning(options, scales, net_scale, screen, T, make(tasks=(tasks[0],))),
        "network_scale": net_scale,
        "stl_scale": {t: per_task[t]["stl_scale"] for t in tasks},
        "affinity": {
            "source": source,
            "mean": A.tolist(),
            "se": A_se.tolist(),
            "seeds": n_seeds,
            "lookahead": {"mean": look.tolist(), "se": look_se.tolist()},
            "lookahead_vs_used_corr": (correlation(off_diagonal(look), off_diagonal(A))
                                       if source != "lookahead" else None),
            "evidence": [r for r in evidence["rows"] if r["estimator"] == source],
            "evidence_about": {k: v for k, v in evidence.items() if k != "rows"},
        },
        "sources": sources,
        "skipped": stages.skipped,
        "notes": notes,
        "seconds": time.perf_counter() - stages.t0,
        "candidates": candidates,
    }


def _beyond(best: float, scales: list[float]) -> float | None:
    """The scale one step beyond an end of the grid that ``best`` sits at (a grid of one scale:
    none); the step is the grid's own ratio there."""
    if len(scales) < 2:
        return None
    if best == scales[0]:
        return scales[0] * scales[0] / scales[1]
    if best == scales[-1]:
        return scales[-1] * scales[-1] / scales[-2]
    return None


def _candidate_sources(i: int, A: np.ndarray, tasks: list[str]) -> list[str]:
    """The PT+FT sources tried for task ``i``: every other task up to ``PTFT_ALL_SOURCES``
    tasks, else the ``SOURCE_SHORTLIST`` with the highest transfer onto it in ``A``."""
    others = [j for j in range(len(tasks)) if j != i]
    if len(tasks) > PTFT_ALL_SOURCES:
        others = sorted(others, key=lambda j: -float(A[i, j]))[:SOURCE_SHORTLIST]
    return [tasks[j] for j in others]


def _tuning(options: Options, scales: list[float], net_scale: float, screen: float, T: int,
            cfg: OwnDataRunConfig) -> dict[str, str]:  # fmt: skip
    """What was tuned for each regime (on the validation split), in words."""
    grid = ", ".join(f"{s:g}" for s in scales)
    def plateau(n: int) -> str:
        return (f"up to {n} steps, stopped at a validation plateau ({cfg.patience} evaluations "
                f"{cfg.eval_every} steps apart without improvement)" if cfg.patience
                else f"{n} steps")  # fmt: skip

    chosen = ("every other task" if T <= PTFT_ALL_SOURCES
              else f"the {SOURCE_SHORTLIST} tasks with the highest transfer onto it")
    return {
        "stl": f"the initial scale of the network (× {grid}, and one step beyond an end of the "
               f"grid that is best); {plateau(2 * cfg.steps)} (as many as pretraining and "
               "finetuning together)",
        "mtl": f"the partners (the members of its group that clearly help it) and the method "
               f"({', '.join(['mean', *options.methods])}); initial scale {net_scale:g} (the "
               f"scale best for single-task training over all tasks); {plateau(cfg.steps)}",
        "ptft": f"the source ({chosen}, screened at s = {screen:g}; the best one at every s) "
                f"and the rescaling s (× {grid}) of its pretrained trunk; pretraining as STL at "
                f"scale {net_scale:g} and finetuning, each {plateau(cfg.steps)}",
        "reference": "scikit-learn's HistGradientBoosting: learning rate and leaves over "
                     f"{len(REFERENCE_GRID)} settings, boosting rounds by early stopping",
    }


def _decide(task: str, cands: list[dict[str, Any]], prep: Prepared) -> dict[str, Any]:
    """The recommendation (module doc, step 6): the fair STL is the best initial scale on
    validation. The best MTL candidate is eligible if it clearly beats the null control of each
    of its partners (that partner's labels permuted), the best PT+FT candidate in any case —
    credited to its source if it clearly beats the null source, else as pretrain-and-rescale.
    The best eligible candidate is recommended if it clearly beats the fair STL on validation."""
    kind = next(t.kind for t in prep.tasks if t.name == task)
    stl = max((c for c in cands if c["regime"] == "stl"), key=_score)
    ref = next((c for c in cands if c["regime"] == "reference"), None)
    networks = [c for c in cands if c["regime"] != "reference" and not c["control"]]
    nulls: dict[tuple[Any, ...], dict[tuple[str, ...], dict[str, Any]]] = {}
    for c in cands:
        if c["control"]:
            nulls.setdefault(_key(c), {})[tuple(c["control"])] = c

    def summary(c: dict[str, Any] | None) -> dict[str, Any] | None:
        if c is None:
            return None
        gain, se = paired_difference(stl["val"], c["val"])
        return {"val": finite_mean(c["val"]), "test": finite_mean(c["test"]),
                "val_gain_over_stl": gain, "val_gain_over_stl_se": se}  # fmt: skip

    def against(null: dict[str, Any] | None, cand: dict[str, Any], ok: bool) -> dict[str, Any]:
        """A null control: its numbers and the candidate's validation gain over it."""
        if null is None:
            return {"trained": False, "credited": False}
        gain, se = paired_difference(null["val"], cand["val"])
        return {"trained": True, "credited": ok, "val": finite_mean(null["val"]),
                "test": finite_mean(null["test"]), "val_gain_over_control": gain,
                "val_gain_over_control_se": se}  # fmt: skip

    eligible: list[dict[str, Any]] = []
    judged: dict[str, dict[str, Any]] = {}
    for regime in ("mtl", "ptft"):
        pool = [c for c in networks if c["regime"] == regime]
        if not pool:
            continue
        best = max(pool, key=_score)
        units = best["partners"] if regime == "mtl" else [best["source"]]
        found = nulls.get(_key(best), {})
        checks = {u: found.get((u,)) for u in units}
        credit = {u: c is not None and credited(c["val"], best["val"]) for u, c in checks.items()}
        judged[regime] = {
            "candidate": _describe(best), **(summary(best) or {}),
            "credited": bool(units) and all(credit.values()),
            "controls": {u: against(c, best, credit[u]) for u, c in checks.items()},
        }  # fmt: skip
        if judged[regime]["credited"] or regime == "ptft":  # uncredited PT+FT: pretrain-rescale
            eligible.append(best)
    best = max(eligible, key=_score) if eligible else stl
    clear = best is not stl and clear_winner(stl["val"], best["val"])
    chosen = best if clear else stl
    regime = chosen["regime"]
    if regime == "ptft" and not judged["ptft"]["credited"]:
        regime = "pretrain_rescale"
    test = np.asarray(chosen["test"], float)
    test = test[np.isfinite(test)]  # seeds whose training diverged are left out
    se = float(test.std(ddof=1) / math.sqrt(len(test))) if len(test) > 1 else math.nan
    diff, diff_se = paired_difference(stl["val"], best["val"])
    named = regime in ("mtl", "ptft")  # the partners or the source are credited with the gain
    return {
        "regime": regime,
        "partners": chosen["partners"] if named else [],
        "source": chosen["source"] if named else None,
        "pretrained_on": chosen["source"] if regime == "pretrain_rescale" else None,
        "rescale": chosen["rescale"],
        "method": chosen["method"],
        "init_scale": chosen["init_scale"],
        "stl": finite_mean(stl["test"]),
        "stl_val": finite_mean(stl["val"]),
        "stl_scale": stl["init_scale"],
        "stl_steps_done": finite_mean(stl["steps_done"]),
        "recommended": float(test.mean()) if len(test) else math.nan,
        "se": se,
        "metric": "r2" if kind == "regression" else "accuracy",
        "clear": clear,
        "best_candidate": _describe(best),
        "val_gain_over_stl": diff,
        "val_gain_se": diff_se,
        "controls": judged[chosen["regime"]]["controls"] if chosen["regime"] in judged else {},
        "judged": judged,
        "reference": summary(ref),
        "reference_beats_networks": ref is not None and reference_beats_networks(
            ref["val"], [c["val"] for c in networks]),
    }  # fmt: skip


def _score(c: dict[str, Any]) -> float:
    return _rank(c["val"])


def _key(c: dict[str, Any]) -> tuple[Any, ...]:
    """What a candidate and its null controls share."""
    return (c["regime"], tuple(c["partners"]), c["method"], c["source"], c["rescale"])


def _describe(c: dict[str, Any]) -> dict[str, Any]:
    return {k: c[k] for k in ("regime", "partners", "source", "rescale", "method", "init_scale")}


__all__ = ["AFFINITIES", "PAIRS_MAX_TASKS", "Options", "Outcome", "Stages", "advise",
           "auto_steps", "scale_field"]  # fmt: skip
