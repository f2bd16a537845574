"""Transfer estimators, and how they are judged against the realised transfer.

An estimator answers "how much does training with task j help task i" for every pair without
training every pair: a budget in, an estimated ``T × T`` matrix out (rows: recipient, columns:
source), with its cost counted in task-training steps. It is judged against the *realised*
transfer — every pair trained together over seeds — by :func:`judge`:

* Spearman and Pearson correlation with the realised matrix over the off-diagonal pairs;
* sign accuracy on the pairs whose realised transfer is clearly non-zero (beyond ``clear`` standard
  errors);
* the *grouping regret* per budget: how much of the best grouping's realised value the grouping
  chosen on the estimate gives up, both groupings valued on the realised matrix
  (:func:`grouping_regret`);

beside the realised matrix's own split-half reliability (:func:`split_half_reliability`) and the
agreement a fresh replicate of the realised pairs on as many seeds would reach with it
(:func:`replicate_ceiling`): what an estimator as good as retraining every pair would score (a
noise-free estimate could reach at most its square root).

The estimators are plug-ins behind one interface (:class:`Estimator`): ``configs(ctx, rows)``
names the own-data runs it needs (trained by the executor into the folder's store, like every
training; runs chosen from earlier runs are named once those are stored: :func:`pending`),
``estimate(ctx, rows)`` turns their stored rows into a :class:`TransferEstimate` — the mean over
seeds, its standard error, and the cost of its runs in task-training steps (:func:`task_steps`).
:data:`ESTIMATORS` lists them: ``pairs`` (the realised transfer, the reference),
``short-pairs`` and ``short-pairs-19`` (the same trainings for 9 % and 19 % of the step budget),
``lookahead`` (TAG), ``first-order`` (its first-order form), ``linearised`` (Grad-TAG-style,
:mod:`mtlab.measure.linearised`), ``surrogate`` (random subsets of tasks, a linear model of
each task's loss change in which tasks trained with it) and ``screened`` (pairs chosen by how
alike the tasks' single-task networks answer, plus random ones; the rest filled in from them).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mtlab.measure.stats import finite_mean_se
from mtlab.runs.config import OwnDataRunConfig

#: a realised entry counts as clearly non-zero beyond this many standard errors
CLEAR_SE = 2.0


@dataclass(frozen=True)
class TransferEstimate:
    """One estimator's answer: ``matrix[i, j]`` the estimated transfer from source ``j`` onto
    recipient ``i`` (the diagonal is not used), its standard error over seeds where the
    estimator has seeds, and its cost in task-training steps."""

    name: str
    tasks: tuple[str, ...]
    matrix: np.ndarray
    cost_steps: float
    se: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        m = np.asarray(self.matrix, float)
        if m.shape != (len(self.tasks), len(self.tasks)):
            raise ValueError(f"{self.name}: a {len(self.tasks)} × {len(self.tasks)} matrix is "
                             f"needed for {len(self.tasks)} tasks (got {m.shape})")  # fmt: skip
        if self.se is not None and np.shape(self.se) != m.shape:
            raise ValueError(f"{self.name}: the standard errors' shape {np.shape(self.se)} is "
                             f"not the matrix's {m.shape}")  # fmt: skip
        if not self.cost_steps >= 0:
            raise ValueError(f"{self.name}: cost_steps must be >= 0 (got {self.cost_steps})")


def off_diagonal(m: np.ndarray) -> np.ndarray:
    """The off-diagonal entries of a square matrix, row by row."""
    m = np.asarray(m, float)
    return m[~np.eye(len(m), dtype=bool)]


def correlation(a: np.ndarray, b: np.ndarray, kind: str = "pearson") -> float:
    """Pearson or Spearman correlation of the entries finite in both (NaN below three, or if
    either is constant); of two matrices' off-diagonal entries: pass :func:`off_diagonal`'s."""
    from scipy.stats import pearsonr, spearmanr

    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    f = spearmanr if kind == "spearman" else pearsonr
    return float(f(a, b).statistic)


def sign_accuracy(estimate: np.ndarray, realised: np.ndarray, realised_se: np.ndarray,
                  clear: float = CLEAR_SE) -> tuple[float, int]:  # fmt: skip
    """(fraction of the clearly non-zero realised pairs — |realised| > ``clear`` s.e. — whose
    estimated sign matches, how many such pairs); NaN where there is none."""
    e, r, s = (off_diagonal(x) for x in (estimate, realised, realised_se))
    mask = np.isfinite(e) & np.isfinite(r) & np.isfinite(s) & (np.abs(r) > clear * s)
    if not mask.any():
        return float("nan"), 0
    return float(np.mean(np.sign(e[mask]) == np.sign(r[mask]))), int(mask.sum())


def grouping_value(matrix: np.ndarray, groups: Sequence[Sequence[int]]) -> float:
    """The grouping objective (:mod:`mtlab.grouping`: per task, the best mean incoming transfer
    over the groups it belongs to, averaged over tasks) of ``groups`` valued on ``matrix``."""
    from mtlab.grouping import SINGLETON_SCORE, group_scores

    m = np.asarray(matrix, float)
    best = np.full(len(m), -np.inf)
    multi = [tuple(g) for g in groups if len(g) > 1]
    if multi:
        best = group_scores(m, multi)[1].max(axis=0)
    for g in groups:
        if len(g) == 1:  # a task alone: no transfer
            best[g[0]] = max(best[g[0]], SINGLETON_SCORE)
    return float(best.mean())


#: above ``LARGE_T`` tasks a grouping is searched over neighbourhood groups
#: (:func:`mtlab.grouping.neighbourhood_groups`): each task with some of its ``NEIGHBOURS`` most
#: affine partners, at most ``MAX_GROUP`` tasks a group — every group of up to six of 48 tasks
#: would be 14 million
LARGE_T = 16
NEIGHBOURS, MAX_GROUP = 5, 6


def candidate_pool(matrix: np.ndarray) -> list[tuple[int, ...]] | None:
    """The groups a grouping of ``matrix`` is searched over: every group (None) up to
    ``LARGE_T`` tasks, else its neighbourhood groups."""
    from mtlab.grouping import neighbourhood_groups

    m = np.asarray(matrix, float)
    return None if len(m) <= LARGE_T else neighbourhood_groups(m, NEIGHBOURS, MAX_GROUP)


def search_groups(matrix: np.ndarray, budget: int, time_limit: float = 60.0) -> Any:
    """The best grouping of ``matrix`` with at most ``budget`` groups (a task alone scores 0)
    over :func:`candidate_pool`, as ``mtlab advise`` searches it; the best found within
    ``time_limit`` seconds (``optimal`` False)."""
    from mtlab.grouping import SINGLETON_SCORE, best_grouping

    m = np.nan_to_num(np.asarray(matrix, float))
    return best_grouping(m, budget, [SINGLETON_SCORE] * len(m), time_limit=time_limit,
                         anytime=True, candidates=candidate_pool(m))  # fmt: skip


def grouping_regret(estimate: np.ndarray, realised: np.ndarray, budget: int,
                    time_limit: float = 60.0, best: Any = None) -> dict[str, Any]:  # fmt: skip
    """The best grouping (at most ``budget`` groups, :func:`search_groups`) chosen on
    ``estimate`` and on ``realised``, both valued on ``realised``: ``regret`` = (best − chosen) /
    |best| (0: the estimate picks a grouping as good as the best; NaN when the best is 0).
    ``optimal``: both searches finished (over their candidate groups). ``best``: the realised
    matrix's grouping at this budget, if already searched."""
    chosen = search_groups(estimate, budget, time_limit)
    best = best if best is not None else search_groups(realised, budget, time_limit)
    v_chosen, v_best = grouping_value(realised, chosen.groups), best.value
    regret = (v_best - v_chosen) / abs(v_best) if v_best != 0 else float("nan")
    return {"budget": budget, "chosen": [list(g) for g in chosen.groups],
            "best": [list(g) for g in best.groups], "chosen_value": v_chosen,
            "best_value": v_best, "regret": float(regret),
            "optimal": bool(chosen.optimal and best.optimal)}  # fmt: skip


def split_half_reliability(per_seed: Sequence[np.ndarray]) -> float:
    """Spearman correlation (off-diagonal) between the mean matrix of the first half of the
    seeds and that of the second half: how well the realised matrix agrees with itself (see
    :func:`replicate_ceiling` for what that allows an estimator). Needs two seeds or more."""
    mats = [np.asarray(m, float) for m in per_seed]
    if len(mats) < 2:
        raise ValueError("split-half reliability needs two seeds or more")
    half = len(mats) // 2
    a = np.nanmean(mats[:half], axis=0)
    b = np.nanmean(mats[half:], axis=0)
    return correlation(off_diagonal(a), off_diagonal(b), "spearman")


def replicate_ceiling(split_half: float, seeds: int) -> float:
    """How well a fresh replicate of the realised pairs — every pair trained again on as many
    other seeds — would agree with the realised matrix: what an estimator as reliable as the
    reference scores (a noise-free estimate, the seeds' mean itself, at most its square root).
    From the split-half correlation ``r`` between the means of ``h = seeds // 2`` and
    ``seeds − h`` seeds: with one seed's reliability ``ρ`` and the Spearman–Brown reliability
    of a k-seed mean ``ρ_k = kρ / (1 + (k − 1)ρ)``, ``r = √(ρ_h ρ_{seeds−h})``; solved for
    ``ρ``, the result is ``ρ_seeds``. 0 for ``r ≤ 0``; NaN if unknown."""
    from scipy.optimize import brentq

    if seeds < 2 or not math.isfinite(split_half):
        return float("nan")
    if split_half <= 0:
        return 0.0
    if split_half >= 1:
        return 1.0
    h = seeds // 2

    def rel(k: int, rho: float) -> float:
        return k * rho / (1 + (k - 1) * rho)

    rho = brentq(lambda x: math.sqrt(rel(h, x) * rel(seeds - h, x)) - split_half, 1e-12, 1.0)
    return float(rel(seeds, rho))


def judge(estimate: TransferEstimate, realised: np.ndarray, realised_se: np.ndarray,
          budgets: Sequence[int] = (), clear: float = CLEAR_SE,
          time_limit: float = 60.0, best: dict[int, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    """One estimator against the realised transfer: its cost, Spearman and Pearson with the
    realised matrix (off-diagonal), sign accuracy on the clearly non-zero pairs, and the
    grouping regret at each budget."""
    realised = np.asarray(realised, float)
    if realised.shape != estimate.matrix.shape:
        raise ValueError(f"the realised matrix {realised.shape} and {estimate.name}'s "
                         f"{estimate.matrix.shape} differ")  # fmt: skip
    e, r = off_diagonal(estimate.matrix), off_diagonal(realised)
    acc, n_clear = sign_accuracy(estimate.matrix, realised, realised_se, clear)
    return {
        "estimator": estimate.name,
        "cost_steps": estimate.cost_steps,
        "spearman": correlation(e, r, "spearman"),
        "pearson": correlation(e, r, "pearson"),
        "sign_accuracy": acc,
        "clear_pairs": n_clear,
        "grouping": [grouping_regret(estimate.matrix, realised, b, time_limit,
                                     (best or {}).get(b)) for b in budgets],
    }


# ---- the estimators -------------------------------------------------------------------------

FAILED_PAIR_SCORE = -1.0  # a pair whose every training diverged: "do not train together"
Rows = dict[str, dict[str, Any]]  # the store's rows by run id


@dataclass(frozen=True)
class Context:
    """What every estimator is given: the tasks, the seeds and ``make(**fields)``, which builds a
    run's config with the command's data and training settings (``steps``: the step budget)."""

    tasks: tuple[str, ...]
    seeds: tuple[int, ...]
    make: Callable[..., OwnDataRunConfig]
    init_scale: float | None = None

    @property
    def steps(self) -> int:
        return int(self.make(tasks=self.tasks[:1]).steps)

    def stl(self, task: str, seed: int) -> OwnDataRunConfig:
        return self.make(tasks=(task,), method="stl", seed=seed, init_scale=self.init_scale)

    def mtl(self, tasks: Sequence[str], seed: int, **fields: Any) -> OwnDataRunConfig:
        return self.make(tasks=tuple(tasks), method="mean", seed=seed,
                         init_scale=self.init_scale, **fields)  # fmt: skip


def task_steps(row: dict[str, Any]) -> float:
    """A run's cost in task-training steps: tasks × steps trained, plus the seconds it spent
    probing or linearising converted at the run's own seconds per task-step."""
    steps = row.get("steps_done")
    base = len(row["tasks"]) * float(row["steps"] if steps is None else steps)
    extra = float(row.get("probe_seconds") or 0.0) + float(row.get("linearise_seconds") or 0.0)
    train = float(row.get("train_seconds") or 0.0)
    return base + (extra * base / train if extra and train > 0 and base > 0 else 0.0)


def _evals(row: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["task"]: e for e in row.get("evals") or []}


def _low(row: dict[str, Any], task: str) -> float:
    """The task's lowest validation loss over the run's checkpoints (NaN for a failed run)."""
    if row.get("status") != "ok":
        return math.nan
    e = _evals(row)[task]
    v = e.get("min_val_loss", e.get("val_loss"))
    return math.nan if v is None or isinstance(v, str) else float(v)


class Estimator:
    """The interface (module doc); ``name`` as on the command line."""

    name = ""

    def configs(self, ctx: Context, rows: Rows | None = None) -> list[OwnDataRunConfig]:
        """The runs the estimate needs. ``rows``: the runs stored so far — an estimator whose
        later runs depend on earlier results (:class:`Screened`) names only the first ones
        until they are stored (train them with :func:`pending` until nothing is left)."""
        raise NotImplementedError

    def estimate(self, ctx: Context, rows: Rows) -> TransferEstimate:
        raise NotImplementedError

    def _result(self, ctx: Context, mats: list[np.ndarray], rows: Rows,
                **meta: Any) -> TransferEstimate:  # fmt: skip
        mean, se = finite_mean_se(np.stack(mats))
        np.fill_diagonal(mean, 0.0)  # a task onto itself is not a transfer (never used)
        cost = sum(task_steps(rows[c.run_id()]) for c in self.configs(ctx, rows))
        return TransferEstimate(self.name, ctx.tasks, mean, cost, se,
                                {"seeds": len(mats), "per_seed": mats, **meta})  # fmt: skip


class Pairs(Estimator):
    """The realised transfer (the reference): per seed every task alone and every pair
    together, ``Z[i, j] = 1 − L_i(i with j) / L_i(i alone)`` with ``L`` the lowest validation loss
    over the run's checkpoints (early stopping on the loss: a task a network can only memorise
    — pure noise — gains nothing from a partner that merely slows its overfitting). A pair with
    no finite seed scores ``FAILED_PAIR_SCORE``."""

    name = "pairs"

    def configs(self, ctx: Context, rows: Rows | None = None) -> list[OwnDataRunConfig]:
        T = len(ctx.tasks)
        return [ctx.stl(t, s) for t in ctx.tasks for s in ctx.seeds] + [
            ctx.mtl((ctx.tasks[i], ctx.tasks[j]), s)
            for i in range(T) for j in range(i + 1, T) for s in ctx.seeds]  # fmt: skip

    def estimate(self, ctx: Context, rows: Rows) -> TransferEstimate:
        tasks, T = ctx.tasks, len(ctx.tasks)
        mats = []
        for s in ctx.seeds:
            m = np.zeros((T, T))
            alone = [_low(rows[ctx.stl(t, s).run_id()], t) for t in tasks]
            for i in range(T):
                for j in range(i + 1, T):
                    row = rows[ctx.mtl((tasks[i], tasks[j]), s).run_id()]
                    for r, src in ((i, j), (j, i)):
                        m[r, src] = 1.0 - _low(row, tasks[r]) / alone[r]
            mats.append(m)
        out = self._result(ctx, mats, rows)
        mean = np.where(np.isfinite(out.matrix), out.matrix, FAILED_PAIR_SCORE)
        per_seed = [np.where(np.isfinite(m), m, FAILED_PAIR_SCORE) for m in mats]
        return TransferEstimate(out.name, out.tasks, mean, out.cost_steps, out.se,
                                {**out.meta, "per_seed": per_seed})  # fmt: skip


class ShortPairs(Pairs):
    """The realised transfer of short trainings: every task alone and every pair together for
    ``fraction`` of the step budget (no early stop; four evaluations), the same estimate as
    :class:`Pairs` on them — what sharing does to the lowest validation loss early in
    training."""

    name = "short-pairs"

    def __init__(self, fraction: float = 0.09, name: str = "short-pairs") -> None:
        self.fraction = fraction
        self.name = name

    def _short(self, ctx: Context) -> Context:
        steps = max(1, round(self.fraction * ctx.steps))

        def make(**fields: Any) -> OwnDataRunConfig:
            return ctx.make(**{**fields, "steps": steps, "eval_every": max(1, steps // 4),
                               "patience": None})  # fmt: skip

        return Context(ctx.tasks, ctx.seeds, make, ctx.init_scale)

    def configs(self, ctx: Context, rows: Rows | None = None) -> list[OwnDataRunConfig]:
        return super().configs(self._short(ctx))

    def estimate(self, ctx: Context, rows: Rows) -> TransferEstimate:
        out = super().estimate(self._short(ctx), rows)
        return TransferEstimate(self.name, out.tasks, out.matrix, out.cost_steps, out.se,
                                {**out.meta, "fraction": self.fraction})  # fmt: skip


class Lookahead(Estimator):
    """TAG's lookahead affinity of MTL on all tasks (``first_order``: its first-order form,
    ``⟨g_i, u_j⟩ / L_i``), measured on the same probed runs — both forms at every task count —
    averaged over probes, then over seeds."""

    def __init__(self, first_order: bool = False) -> None:
        self.first_order = first_order
        self.name = "first-order" if first_order else "lookahead"

    def configs(self, ctx: Context, rows: Rows | None = None) -> list[OwnDataRunConfig]:
        return [ctx.mtl(ctx.tasks, s, probe=True, first_order_above=max(12, len(ctx.tasks)))
                for s in ctx.seeds]  # fmt: skip

    def estimate(self, ctx: Context, rows: Rows) -> TransferEstimate:
        mats = []
        for c in self.configs(ctx):
            row = rows[c.run_id()]
            if row.get("status") != "ok":
                continue
            ev = _evals(row)
            key = "first_order_per_probe" if self.first_order else "affinity_per_probe"
            per = [np.asarray(ev[t][key], float) for t in ctx.tasks]  # (probes, T) per task
            if min(len(p) for p in per) == 0:
                continue
            mats.append(np.stack([p.mean(0) for p in per]))
        if not mats:
            raise RuntimeError(f"{self.name}: no probed run finished with probes")
        return self._result(ctx, mats, rows)


class Linearised(Estimator):
    """Grad-TAG-style (:mod:`mtlab.measure.linearised`): MTL on all tasks for a ``fraction`` of
    the step budget, then each pair's training estimated on the network linearised in its
    trunk's parameters (projected to ``dim`` dimensions)."""

    name = "linearised"

    def __init__(self, dim: int = 64, fraction: float = 0.25) -> None:
        self.dim, self.fraction = dim, fraction

    def configs(self, ctx: Context, rows: Rows | None = None) -> list[OwnDataRunConfig]:
        steps = max(1, round(self.fraction * ctx.steps))
        return [ctx.mtl(ctx.tasks, s, linearise=self.dim, steps=steps, patience=None)
                for s in ctx.seeds]  # fmt: skip

    def estimate(self, ctx: Context, rows: Rows) -> TransferEstimate:
        mats = []
        for c in self.configs(ctx):
            row = rows[c.run_id()]
            if row.get("status") == "ok":
                ev = _evals(row)
                mats.append(np.asarray([ev[t]["linearised"] for t in ctx.tasks], float))
        if not mats:
            raise RuntimeError("linearised: every base run failed")
        return self._result(ctx, mats, rows, dim=self.dim, fraction=self.fraction)


class Surrogate(Estimator):
    """Random subsets of ``size`` tasks (Li, Nguyen & Zhang 2023): per seed ``rounds`` random
    partitions of the tasks into groups of ``size``, each trained together, and every task
    alone; per task a ridge regression of its loss change ``1 − L_i(S) / L_i(alone)`` on which
    other tasks were in ``S`` (pooled over seeds). Its coefficients are the estimate; the
    standard error is the jackknife over seeds."""

    name = "surrogate"
    RIDGE = 1.0

    def __init__(self, size: int = 4, rounds: int = 3) -> None:
        self.size, self.rounds = size, rounds

    def subsets(self, ctx: Context, seed: int) -> list[tuple[str, ...]]:
        import torch

        from mtlab._seeding import generator

        g = generator(seed, "surrogate-subsets")
        out = []
        T = len(ctx.tasks)
        for _ in range(self.rounds):
            perm = torch.randperm(T, generator=g).tolist()
            for k in range(0, T, self.size):
                part = sorted(perm[k : k + self.size])
                if len(part) >= 2:
                    out.append(tuple(ctx.tasks[i] for i in part))
        return out

    def configs(self, ctx: Context, rows: Rows | None = None) -> list[OwnDataRunConfig]:
        return [ctx.stl(t, s) for t in ctx.tasks for s in ctx.seeds] + [
            ctx.mtl(sub, s) for s in ctx.seeds for sub in self.subsets(ctx, s)]

    def _fit(self, ctx: Context, obs: list[tuple[int, list[int], float]]) -> np.ndarray:
        T = len(ctx.tasks)
        Z = np.zeros((T, T))
        for i in range(T):
            mine = [(m, y) for r, m, y in obs if r == i and math.isfinite(y)]
            if not mine:
                Z[i] = np.nan
                continue
            X = np.zeros((len(mine), T))
            for k, (members, _) in enumerate(mine):
                X[k, [j for j in members if j != i]] = 1.0
            y = np.asarray([v for _, v in mine])
            coef = np.linalg.solve(X.T @ X + self.RIDGE * np.eye(T), X.T @ y)
            Z[i] = coef
            Z[i, i] = 0.0
        return Z

    def _observations(self, ctx: Context, rows: Rows, seed: int) -> list[tuple[int, list[int], float]]:
        idx = {t: k for k, t in enumerate(ctx.tasks)}
        alone = {t: _low(rows[ctx.stl(t, seed).run_id()], t) for t in ctx.tasks}
        obs = []
        for sub in self.subsets(ctx, seed):
            row = rows[ctx.mtl(sub, seed).run_id()]
            members = [idx[t] for t in sub]
            for t in sub:
                obs.append((idx[t], members, 1.0 - _low(row, t) / alone[t]))
        return obs

    def estimate(self, ctx: Context, rows: Rows) -> TransferEstimate:
        per = {s: self._observations(ctx, rows, s) for s in ctx.seeds}
        Z = self._fit(ctx, [o for v in per.values() for o in v])
        n = len(ctx.seeds)
        if n > 1:  # the jackknife over seeds
            loo = np.stack([self._fit(ctx, [o for s, v in per.items() if s != out for o in v])
                            for out in ctx.seeds])  # fmt: skip
            se = np.sqrt((n - 1) / n * ((loo - loo.mean(0)) ** 2).sum(0))
        else:
            se = np.full_like(Z, np.nan)
        cost = sum(task_steps(rows[c.run_id()]) for c in self.configs(ctx, rows))
        return TransferEstimate(self.name, ctx.tasks, Z, cost, se,
                                {"seeds": n, "size": self.size, "rounds": self.rounds})  # fmt: skip


def signature_similarity(signatures: Sequence[np.ndarray | None]) -> np.ndarray:
    """How alike the tasks' networks answer on the same inputs: the RV coefficient (linear CKA;
    for one output each, the squared correlation) between every two tasks' signatures — each
    an ``(n, outputs)`` matrix of the network's outputs on the same ``n`` rows, classification
    logits centred per row (a softmax does not see their mean) and every output centred. 0
    where a signature is missing or constant (the diagonal is 1)."""
    cent: list[np.ndarray | None] = []
    for sig in signatures:
        if sig is None or not np.isfinite(sig).all():
            cent.append(None)
            continue
        a = np.asarray(sig, float)
        if a.shape[1] > 1:  # logits: only their differences matter
            a = a - a.mean(1, keepdims=True)
        a = a - a.mean(0)
        cent.append(a if np.linalg.norm(a.T @ a) > 0 else None)
    T = len(cent)
    S = np.eye(T)
    for i in range(T):
        for j in range(i + 1, T):
            u, v = cent[i], cent[j]
            if u is not None and v is not None:
                S[i, j] = S[j, i] = (np.linalg.norm(u.T @ v) ** 2
                                     / (np.linalg.norm(u.T @ u) * np.linalg.norm(v.T @ v)))
    return S


def fit_row_similarity(T: int, obs: Sequence[tuple[int, int, float]], S: np.ndarray
                       ) -> tuple[np.ndarray, float]:  # fmt: skip
    """Least squares of the measured transfer ``y`` of ``(recipient i, source j, y)`` on a
    recipient effect ``a_i`` (what any partner does to task i) plus ``b · S[i, j]`` (what a
    partner as alike as ``S`` adds): ``(a, b)``. A recipient with no observation gets the mean
    of the others' ``a``."""
    A = np.zeros((len(obs), T + 1))
    y = np.zeros(len(obs))
    for k, (i, j, v) in enumerate(obs):
        A[k, i], A[k, T], y[k] = 1.0, S[i, j], v
    coef = np.linalg.lstsq(A, y, rcond=None)[0]
    a, b = coef[:T], float(coef[T])
    seen = np.zeros(T, bool)
    seen[[i for i, _, _ in obs]] = True
    if seen.any():
        a[~seen] = a[seen].mean()
    return a, b


def recipient_prior(T: int, per_seed: Sequence[Sequence[tuple[int, int, float]]], S: np.ndarray,
                    b: float, X: np.ndarray, pair_tau2: float = 0.0
                    ) -> tuple[np.ndarray, dict[str, Any]] | None:  # fmt: skip
    """Recipient effects shrunk toward what the tasks' covariates predict. Per seed, each
    recipient's effect is the mean of its observations ``(i, j, y)`` less ``b · S[i, j]``; over
    the seeds their mean ``â_i`` has the noise variance ``v`` (the seeds' spread, pooled over
    tasks, over the task's seeds; plus ``pair_tau2`` — the pair effects' variance beyond the fit,
    :func:`shrunk_transfer`'s ``tau2`` — over its number of partners: a pair trained on every
    seed adds its own effect to each). A least-squares fit of ``â`` on ``X`` (one row per task)
    gives the prior mean ``m``; ``τ²`` the spread of the effects beyond it (method of moments);
    each effect is ``m_i + τ² / (τ² + v_i) · (â_i − m_i)``, and a task with no observation gets
    ``m_i``. None when the data cannot say: fewer than two seeds with observations, or fewer
    than three tasks more than ``X`` has columns. Returns the effects and the fit (``coef``,
    ``tau2``, ``v``, ``weight``: the mean shrinkage weight)."""
    A = np.full((len(per_seed), T), np.nan)
    partners: list[set[int]] = [set() for _ in range(T)]
    for k, obs in enumerate(per_seed):
        total, n = np.zeros(T), np.zeros(T)
        for i, j, y in obs:
            total[i] += y - b * S[i, j]
            n[i] += 1
            partners[i].add(j)
        A[k, n > 0] = total[n > 0] / n[n > 0]
    seen = np.isfinite(A).sum(0)
    ok = seen > 0
    X = np.asarray(X, float)
    if (seen > 1).sum() < 2 or ok.sum() - X.shape[1] < 3:
        return None
    a_hat = np.array([np.mean(A[np.isfinite(A[:, i]), i]) if ok[i] else np.nan
                      for i in range(T)])  # fmt: skip
    spread = float(np.mean([np.var(A[np.isfinite(A[:, i]), i], ddof=1)
                            for i in range(T) if seen[i] > 1]))  # fmt: skip
    # the mean's noise: the seeds' own, plus the pair effects of its partners, which do not
    # average out over seeds that trained the same pairs
    v = spread / np.maximum(seen, 1) + pair_tau2 / np.maximum([len(p) for p in partners], 1)
    coef = np.linalg.lstsq(X[ok], a_hat[ok], rcond=None)[0]
    m = X @ coef
    resid = a_hat[ok] - m[ok]
    tau2 = max(0.0, float(np.sum(resid**2) / (ok.sum() - X.shape[1]) - np.mean(v[ok])))
    w = np.divide(tau2, tau2 + v, out=np.zeros(T), where=ok & (tau2 + v > 0))
    a = m + w * np.where(ok, a_hat - m, 0.0)
    return a, {"coef": coef.tolist(), "tau2": tau2, "v": float(np.mean(v[ok])),
               "weight": float(np.mean(w[ok]))}  # fmt: skip


def shrunk_transfer(T: int, obs: Sequence[tuple[int, int, float]], S: np.ndarray,
                    recipients: np.ndarray | None = None
                    ) -> tuple[np.ndarray, dict[str, float]]:  # fmt: skip
    """The full ``T × T`` transfer from measured pairs: the fit :func:`fit_row_similarity`
    everywhere (with ``recipients`` in place of its recipient effects where given:
    :func:`recipient_prior`), plus on each measured entry its mean residual shrunk by the
    empirical-Bayes weight ``τ² / (τ² + σ² / n)`` — ``σ²`` the residuals' variance across seeds
    within an entry, ``τ²`` the variance of the pair effects beyond the fit (method of moments),
    ``n`` the entry's seeds. Without two seeds of any entry ``σ²`` is unknown and the residuals
    are kept whole. Returns the matrix and the fit (``b``, ``sigma2``, ``tau2``)."""
    a, b = fit_row_similarity(T, obs, S)
    if recipients is not None:
        a = np.asarray(recipients, float)
    fit = a[:, None] + b * S
    res: dict[tuple[int, int], list[float]] = {}
    for i, j, v in obs:
        res.setdefault((i, j), []).append(v - fit[i, j])
    within = [(np.asarray(r) - np.mean(r)) for r in res.values() if len(r) > 1]
    dof = sum(len(r) - 1 for r in within)
    sigma2 = float(sum((r**2).sum() for r in within) / dof) if dof else math.nan
    means = {k: (float(np.mean(r)), len(r)) for k, r in res.items()}
    if math.isfinite(sigma2):
        tau2 = max(0.0, float(np.mean([m**2 - sigma2 / n for m, n in means.values()])))
    else:
        tau2 = math.nan
    out = fit.copy()
    for (i, j), (m, n) in means.items():
        w = 1.0 if not math.isfinite(sigma2) else (
            tau2 / (tau2 + sigma2 / n) if tau2 + sigma2 > 0 else 0.0)
        out[i, j] += w * m
    np.fill_diagonal(out, 0.0)
    return out, {"b": b, "sigma2": sigma2, "tau2": tau2}


class Screened(Estimator):
    """Pairs screened by the tasks' signatures: per seed every task alone, keeping its
    network's outputs on the same validation rows (its *signature*,
    :func:`mtlab.runs.owndata.signature`); then each task trained with its ``partners`` most
    alike tasks (:func:`signature_similarity`, over the seeds) and with ``random`` others drawn
    per seed. The measured transfer (as :class:`Pairs`) fits a recipient effect plus a slope on
    the similarity (:func:`shrunk_transfer`), which fills the pairs not trained; measured pairs
    add their own effect, shrunk by how much the seeds agree on it. The recipient effects —
    each seed's noisy, as every pair of a task on a seed shares its initialisation — are
    shrunk toward what the tasks' single-task runs predict of them (:meth:`covariates`,
    :func:`recipient_prior`). Every run trains for the
    share of the step budget that makes the whole cost ``share`` of the realised pairs' (at most
    the full budget)."""

    name = "screened"

    def __init__(self, partners: int = 2, random: int = 2, share: float = 0.06,
                 rows: int = 256) -> None:  # fmt: skip
        if partners < 1 or random < 0 or not 0 < share <= 1 or rows < 2:
            raise ValueError("screened: partners >= 1, random >= 0, 0 < share <= 1, rows >= 2")
        self.partners, self.random, self.share, self.rows = partners, random, share, rows

    def _ctx(self, ctx: Context) -> Context:
        T = len(ctx.tasks)
        pairs = min(T * (self.partners + self.random) / 2, T * (T - 1) / 2)
        steps = max(1, round(min(1.0, self.share * T * T / (T + 2 * pairs)) * ctx.steps))
        every = int(ctx.make(tasks=ctx.tasks[:1]).eval_every)

        def make(**fields: Any) -> OwnDataRunConfig:
            return ctx.make(**{**fields, "steps": steps,
                               "eval_every": min(every, max(1, steps // 4))})  # fmt: skip

        return Context(ctx.tasks, ctx.seeds, make, ctx.init_scale)

    def _alone(self, ctx: Context, task: str, seed: int) -> OwnDataRunConfig:
        return ctx.make(tasks=(task,), method="stl", seed=seed, init_scale=ctx.init_scale,
                        signature=self.rows)  # fmt: skip

    def similarity(self, ctx: Context, rows: Rows) -> np.ndarray:
        """:func:`signature_similarity` per seed, averaged over the seeds."""
        run = self._ctx(ctx)
        mats = []
        for s in ctx.seeds:
            sigs: list[np.ndarray | None] = []
            for t in ctx.tasks:
                row = rows[self._alone(run, t, s).run_id()]
                e = _evals(row).get(t, {}) if row.get("status") == "ok" else {}
                flat, outputs = e.get("signature"), e.get("signature_outputs")
                sigs.append(np.asarray(flat, float).reshape(-1, int(outputs))
                            if flat and outputs else None)  # fmt: skip
            mats.append(signature_similarity(sigs))
        return np.mean(mats, axis=0)

    def pairs(self, ctx: Context, rows: Rows, S: np.ndarray | None = None
              ) -> dict[int, list[tuple[int, int]]]:  # fmt: skip
        """Per seed, the pairs ``(i, j)``, ``i < j``, trained: every task's ``partners`` most
        alike (the same on every seed) and ``random`` others (seeded per seed). ``S``: the
        :meth:`similarity`, if already computed."""
        import torch

        from mtlab._seeding import generator

        T = len(ctx.tasks)
        S = self.similarity(ctx, rows) if S is None else S
        alike = set()
        for i in range(T):
            order = [int(j) for j in np.argsort(-S[i], kind="stable") if j != i]
            alike |= {(min(i, j), max(i, j)) for j in order[: self.partners]}
        out = {}
        for s in ctx.seeds:
            g = generator(s, "screened-partners")
            chosen = set(alike)
            for i in range(T):
                others = [j for j in torch.randperm(T, generator=g).tolist() if j != i]
                chosen |= {(min(i, j), max(i, j)) for j in others[: self.random]}
            out[s] = sorted(chosen)
        return out

    def configs(self, ctx: Context, rows: Rows | None = None) -> list[OwnDataRunConfig]:
        run = self._ctx(ctx)
        alone = [self._alone(run, t, s) for t in ctx.tasks for s in ctx.seeds]
        if rows is None or any(c.run_id() not in rows for c in alone):
            return alone
        return alone + [run.mtl((ctx.tasks[i], ctx.tasks[j]), s)
                        for s, prs in self.pairs(ctx, rows).items() for i, j in prs]  # fmt: skip

    def _observations(self, ctx: Context, rows: Rows, seed: int,
                      pairs: Sequence[tuple[int, int]]) -> list[tuple[int, int, float]]:  # fmt: skip
        run, tasks = self._ctx(ctx), ctx.tasks
        alone = [_low(rows[self._alone(run, t, seed).run_id()], t) for t in tasks]
        obs = []
        for i, j in pairs:
            row = rows[run.mtl((tasks[i], tasks[j]), seed).run_id()]
            for r, src in ((i, j), (j, i)):
                v = 1.0 - _low(row, tasks[r]) / alone[r]
                if math.isfinite(v):
                    obs.append((r, src, v))
        return obs

    def covariates(self, ctx: Context, rows: Rows) -> np.ndarray:
        """What predicts a task's recipient effect, from its single-task runs alone: one
        column per output kind (classification, regression: each kind its own intercept) and
        the log of its lowest validation loss alone, averaged over the seeds (centred within
        its kind; a harder task gains more from any partner — on the planted 48-task table
        the realised rows' means correlate 0.65 with it). A task with no finished run alone
        takes its kind's mean."""
        run = self._ctx(ctx)
        kinds, logs = [], []
        for t in ctx.tasks:
            got = [rows[self._alone(run, t, s).run_id()] for s in ctx.seeds]
            ok = [r for r in got if r.get("status") == "ok" and t in _evals(r)]
            kinds.append(str(_evals(ok[0])[t].get("kind")) if ok else "")
            lows = [_low(r, t) for r in ok]
            lows = [math.log(v) for v in lows if math.isfinite(v) and v > 0]
            logs.append(float(np.mean(lows)) if lows else math.nan)
        names = sorted(set(kinds))
        cols = [np.array([float(k == n) for k in kinds]) for n in names]
        x = np.asarray(logs)
        for n in names:  # centred within the kind: the kinds' losses are on other scales
            idx = np.array([k == n for k in kinds]) & np.isfinite(x)
            if idx.any():
                x[idx] -= x[idx].mean()
        return np.column_stack([*cols, np.nan_to_num(x, nan=0.0)])

    def estimate(self, ctx: Context, rows: Rows) -> TransferEstimate:
        T = len(ctx.tasks)
        S = self.similarity(ctx, rows)
        chosen = self.pairs(ctx, rows, S)
        per = {s: self._observations(ctx, rows, s, prs) for s, prs in chosen.items()}
        if not any(per.values()):
            raise RuntimeError("screened: no pair finished")
        everything = [o for v in per.values() for o in v]
        plain = shrunk_transfer(T, everything, S)[1]
        prior = recipient_prior(T, list(per.values()), S, plain["b"], self.covariates(ctx, rows),
                                plain["tau2"] if math.isfinite(plain["tau2"]) else 0.0)
        Z, fit = shrunk_transfer(T, everything, S, None if prior is None else prior[0])
        meta: dict[str, Any] = {**fit, "recipient_prior": None if prior is None else prior[1]}
        mats = [shrunk_transfer(T, v, S)[0] for v in per.values() if v]
        se = (np.std(mats, axis=0, ddof=1) / math.sqrt(len(mats)) if len(mats) > 1
              else np.full_like(Z, np.nan))  # fmt: skip
        cost = sum(task_steps(rows[c.run_id()]) for c in self.configs(ctx, rows))
        return TransferEstimate(self.name, ctx.tasks, Z, cost, se,
                                {"seeds": len(mats), "per_seed": mats, "similarity": S.tolist(),
                                 "pairs": sum(len(v) for v in per.values()), **meta})  # fmt: skip


def pending(estimators: Sequence[Estimator], ctx: Context, rows: Rows) -> list[OwnDataRunConfig]:
    """The runs ``estimators`` still need given the stored ``rows`` (each once): train them,
    store them, and ask again until nothing is left — an estimator's later runs can depend on
    its earlier ones (:meth:`Estimator.configs`)."""
    want = {c.run_id(): c for e in estimators for c in e.configs(ctx, rows)}
    return [c for k, c in want.items() if k not in rows]


#: every estimator by name, with its default settings
ESTIMATORS: dict[str, Callable[[], Estimator]] = {
    "pairs": Pairs,
    "short-pairs": ShortPairs,
    "short-pairs-19": lambda: ShortPairs(0.19, "short-pairs-19"),
    "lookahead": Lookahead,
    "first-order": lambda: Lookahead(first_order=True),
    "linearised": Linearised,
    "surrogate": Surrogate,
    "screened": Screened,
}


#: the estimators judged against the realised transfer train on seeds this far from the
#: reference's: a run on the same seed shares its initialisation and its minibatches with the
#: reference's runs (a short pair is the first steps of the realised pair's training), and
#: correlated noise would flatter the estimate
ESTIMATOR_SEED_OFFSET = 1000


def estimator_context(ctx: Context) -> Context:
    """``ctx`` on the estimators' own seeds (:data:`ESTIMATOR_SEED_OFFSET`)."""
    return Context(ctx.tasks, tuple(s + ESTIMATOR_SEED_OFFSET for s in ctx.seeds), ctx.make,
                   ctx.init_scale)  # fmt: skip


def compare(ctx: Context, names: Sequence[str], rows: Rows, budgets: Sequence[int] = (),
            time_limit: float = 10.0, reference_seeds: Sequence[int] | None = None
            ) -> dict[str, Any]:  # fmt: skip
    """Every estimator of ``names`` judged (:func:`judge`) against the realised transfer
    (:class:`Pairs` on ``reference_seeds``, default ``ctx``'s seeds; the estimators on
    :func:`estimator_context`'s, and both runs must be in ``rows``): its cost as a fraction of
    the realised pairs' cost on as many seeds as the estimator's, and in seconds, beside the
    realised matrix's split-half reliability and the agreement a fresh replicate of it would
    reach (:func:`replicate_ceiling`). A reference on more seeds than the estimators' is a
    less noisy yardstick; it does not change what an estimate costs."""
    ref_ctx = ctx if reference_seeds is None else Context(
        ctx.tasks, tuple(reference_seeds), ctx.make, ctx.init_scale)
    if not ref_ctx.seeds:
        raise ValueError("compare: the reference needs a seed")
    ref_est = Pairs()
    ref = ref_est.estimate(ref_ctx, rows)
    per_seed = ref.meta["per_seed"]
    per_estimator_seeds = ref.cost_steps * len(ctx.seeds) / len(ref_ctx.seeds)
    out: dict[str, Any] = {
        "tasks": list(ctx.tasks),
        "seeds": list(ctx.seeds),
        "reference_seeds": list(ref_ctx.seeds),
        "budgets": list(budgets),
        "realised": {"cost_steps": ref.cost_steps, "seconds": _seconds(ref_est, ref_ctx, rows),
                     "cost_steps_at_estimator_seeds": per_estimator_seeds,
                     "matrix": ref.matrix.tolist(), "se": ref.se.tolist() if ref.se is not None
                     else None,
                     "split_half_spearman": split_half_reliability(per_seed)
                     if len(per_seed) > 1 else float("nan")},
        "estimators": [],
    }
    best = {b: search_groups(ref.matrix, b, time_limit) for b in budgets}
    out["realised"]["replicate_ceiling"] = replicate_ceiling(
        out["realised"]["split_half_spearman"], len(per_seed))
    out["realised"]["grouping"] = {str(b): {"groups": [list(x) for x in g.groups],
                                            "value": g.value, "optimal": g.optimal}
                                   for b, g in best.items()}  # fmt: skip
    own = estimator_context(ctx)
    for name in names:
        est = make_estimator(name)
        e = est.estimate(own, rows)
        j = judge(e, ref.matrix, ref.se if ref.se is not None else np.full_like(ref.matrix, np.nan),
                  budgets, time_limit=time_limit, best=best)  # fmt: skip
        j["cost_fraction"] = (e.cost_steps / per_estimator_seeds if per_estimator_seeds
                              else float("nan"))  # fmt: skip
        j["seconds"] = _seconds(est, own, rows)
        j["matrix"] = e.matrix.tolist()
        j["se"] = None if e.se is None else e.se.tolist()
        out["estimators"].append(j)
    return out


def _seconds(est: Estimator, ctx: Context, rows: Rows) -> float:
    return float(sum(float(rows[c.run_id()].get("wall_s") or 0.0) for c in
                     {c.run_id(): c for c in est.configs(ctx, rows)}.values()))  # fmt: skip


EVIDENCE_FILE = "estimator_evidence.json"


def load_evidence() -> dict[str, Any]:
    """The estimators measured against the realised transfer on the planted tables
    (``benchmarks/transfer_estimators.py`` writes it into the package): ``rows``, one per
    (table, estimator), and how they were measured (``tables``, ``command``)."""
    import json
    from importlib import resources

    text = resources.files("mtlab.advise").joinpath(EVIDENCE_FILE).read_text()
    return dict(json.loads(text))


def make_estimator(name: str) -> Estimator:
    if name not in ESTIMATORS:
        raise ValueError(f"unknown estimator {name!r}; allowed: {', '.join(ESTIMATORS)}")
    return ESTIMATORS[name]()


__all__ = [
    "CLEAR_SE",
    "ESTIMATORS",
    "EVIDENCE_FILE",
    "Context",
    "Estimator",
    "Linearised",
    "Lookahead",
    "Pairs",
    "Screened",
    "Surrogate",
    "TransferEstimate",
    "candidate_pool",
    "compare",
    "correlation",
    "grouping_regret",
    "grouping_value",
    "judge",
    "load_evidence",
    "make_estimator",
    "off_diagonal",
    "pending",
    "recipient_prior",
    "replicate_ceiling",
    "search_groups",
    "shrunk_transfer",
    "sign_accuracy",
    "signature_similarity",
    "split_half_reliability",
    "task_steps",
]  # fmt: skip
