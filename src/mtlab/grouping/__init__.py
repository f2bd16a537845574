"""Task grouping: which tasks should share a network, given a budget of ``b`` networks?

TAG's objective (Fifty et al. 2021): choose at most ``b`` groups of two or more tasks (groups may
overlap) that together cover every task. A task's score in group ``G`` is the mean affinity onto
it from ``G``'s other members, ``s_i(G) = mean_{j ∈ G, j ≠ i} A[i, j]`` (``A[recipient,
source]``); a grouping's value is the mean over tasks of each task's best score among the chosen
groups. Optionally singletons are allowed, with a user-given per-task score.

:func:`best_grouping` solves this **exactly** by branch-and-bound over the candidate groups
(ordered best first): a partial choice is abandoned when even giving every task its best score
among the groups still available cannot beat the best complete grouping found so far, or when some
uncovered task has no group left. :func:`brute_force_grouping` enumerates every combination (the
reference in tests). :func:`affinity_from_pairwise` builds the matrix for Standley et al.'s
higher-order approximation from pairwise STL / MTL validation results, and
:func:`cosine_affinity` the gradient-cosine baseline.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: the score of a task trained alone (``singletons``): no transfer from other tasks — the same
#: scale as a group member's mean affinity from its partners
SINGLETON_SCORE = 0.0
#: a grouping is acted on with confidence only if at least this share of the seeds' own affinity
#: matrices choose it too (:func:`stable_grouping`)
STABLE_FRACTION = 2 / 3


@dataclass
class Grouping:
    """``groups``: tuples of task indices; ``value``: the objective; ``names``: task names per
    group (when the tasks are named); ``nodes``: search nodes visited."""

    groups: list[tuple[int, ...]]
    value: float
    names: list[list[str]] | None = None
    nodes: int = 0
    #: False when a time limit stopped the search (``anytime=True``): ``value`` is then the best
    #: grouping found and ``bound`` a certified upper bound on the optimum's value
    optimal: bool = True
    bound: float | None = None


class AffinityFileError(ValueError):
    """An ``affinity.json`` that cannot be used; the message names the file and the problem."""


def _check_matrix(A) -> np.ndarray:
    A = np.asarray(A, dtype=float)
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"affinity must be a square matrix (got shape {A.shape})")
    off = A[~np.eye(A.shape[0], dtype=bool)]
    if not np.isfinite(off).all():
        raise ValueError("affinity has non-finite off-diagonal entries")
    return A


def candidate_groups(n_tasks: int, max_size: int | None = None) -> list[tuple[int, ...]]:
    """Every group of two or more tasks (up to ``max_size``)."""
    top = n_tasks if max_size is None else min(max_size, n_tasks)
    return [g for k in range(2, top + 1) for g in itertools.combinations(range(n_tasks), k)]


def neighbourhood_groups(A, neighbours: int, max_size: int) -> list[tuple[int, ...]]:
    """Candidate groups for many tasks: for each task, every group of 2 … ``max_size`` tasks made
    of it and some of its ``neighbours`` most affine partners (by the symmetrised affinity
    ``(A + Aᵀ) / 2``). The exact search over every group is out of reach beyond a few dozen tasks
    (C(48, 6) alone is 12 million groups); these are the groups whose members all rank among
    one member's best partners."""
    A = np.asarray(A, float)
    T = A.shape[0]
    sym = (A + A.T) / 2
    np.fill_diagonal(sym, -np.inf)
    out: set[tuple[int, ...]] = set()
    for i in range(T):
        near = [int(j) for j in np.argsort(-sym[i], kind="stable")[: min(neighbours, T - 1)]]
        for k in range(1, min(max_size, len(near) + 1)):
            for rest in itertools.combinations(near, k):
                out.add(tuple(sorted((i, *rest))))
    return sorted(out, key=lambda g: (len(g), g))


def group_scores(
    A: np.ndarray,
    groups: Sequence[tuple[int, ...]],
    singleton_scores: Sequence[float] | None = None,
) -> tuple[list[tuple[int, ...]], np.ndarray]:
    """Scores ``(n_groups, T)``: ``s_i(G)`` for members, ``−inf`` elsewhere; singletons appended
    when ``singleton_scores`` is given."""
    T = A.shape[0]
    groups = list(groups)
    S = np.full((len(groups), T), -np.inf)
    by_size: dict[int, list[int]] = {}
    for k, g in enumerate(groups):
        by_size.setdefault(len(g), []).append(k)
    for size, rows in by_size.items():  # vectorised per group size: s_i(G) = mean_{j∈G∖i} A_ij
        if size < 2:
            raise ValueError(f"candidate groups hold two or more tasks (got size {size})")
        idx = np.asarray(rows)
        G = np.asarray([groups[k] for k in rows])  # (n, size)
        block = A[G[:, :, None], G[:, None, :]]  # (n, size, size)
        within = block.sum(2) - np.diagonal(block, axis1=1, axis2=2)
        S[idx[:, None], G] = within / (size - 1)
    if singleton_scores is not None:
        if len(singleton_scores) != T:
            raise ValueError(f"need one singleton score per task ({T})")
        single = np.full((T, T), -np.inf)
        single[np.arange(T), np.arange(T)] = np.asarray(singleton_scores, float)
        groups += [(i,) for i in range(T)]
        S = np.vstack([S, single])
    return groups, S


def _value(best: np.ndarray) -> float:
    return float(best.mean()) if np.isfinite(best).all() else -math.inf


def best_grouping(
    A,
    budget: int,
    singleton_scores: Sequence[float] | None = None,
    names: Sequence[str] | None = None,
    max_group_size: int | None = None,
    time_limit: float | None = None,
    anytime: bool = False,
    candidates: Sequence[tuple[int, ...]] | None = None,
) -> Grouping:  # long: one branch-and-bound whose nested search shares the incumbent
    """The exact optimum of TAG's grouping objective with at most ``budget`` groups (see module
    doc). Raises ``ValueError`` if no grouping covers every task within the budget. If the search
    exceeds ``time_limit`` seconds it raises ``TimeoutError`` — or, with ``anytime=True``, returns
    the best grouping found so far (searching on to the first one if none was found yet) with
    ``optimal=False`` and a certified upper ``bound`` on the
    optimum: the smaller of the root's submodular bound (the ``budget`` largest single-group
    gains) and the mean over tasks of each task's best score in any group. ``candidates``: the
    groups searched over (default every group up to ``max_group_size``; the optimum is then
    over these groups only)."""
    import time

    deadline = None if time_limit is None else time.perf_counter() + time_limit
    A = _check_matrix(A)
    T = A.shape[0]
    if budget < 1:
        raise ValueError(f"budget must be >= 1 (got {budget})")
    if T < 2 and singleton_scores is None:
        raise ValueError("grouping needs at least two tasks (or singleton scores)")
    pool = candidate_groups(T, max_group_size) if candidates is None else list(candidates)
    seeded: list[tuple[int, ...]] | None = None
    if candidates is not None:  # a complete grouping to start from (the pool may hold none)
        seeded = _agglomerate(A, budget, max((len(g) for g in pool), default=2),
                              singleton_scores)  # fmt: skip
        if seeded is None:
            raise ValueError(f"no grouping with at most {budget} groups of the candidates' "
                             f"sizes covers all {T} tasks")  # fmt: skip
        have = set(pool)
        pool += [g for g in seeded if len(g) > 1 and g not in have]
    groups, S = group_scores(A, pool, singleton_scores)
    n = len(groups)
    member = np.isfinite(S)
    # f(set) = Σ_i max_{G ∈ set} s_i(G) with uncovered tasks at a floor below every score is
    # monotone submodular (facility location), so f(X ∪ Y) ≤ f(X) + Σ_{y ∈ Y} gain(y | X): the
    # bound at a node is f(current) + the `left` largest single-group gains among the allowed
    # groups. Coverage is checked separately (a task nobody allowed contains ⇒ prune).
    finite = S[member]
    floor = (float(finite.min()) if finite.size else 0.0) - 1.0
    Sf = np.where(member, S, floor)
    best_val, best_set = -math.inf, []
    nodes = 0
    largest = max((len(g) for g in groups), default=1)
    capped = largest < T

    def search(
        allowed: np.ndarray, cur: np.ndarray, covered: np.ndarray, picked: list[int], left: int
    ) -> None:
        nonlocal best_val, best_set, nodes
        nodes += 1
        if deadline is not None and nodes % 32 == 0 and time.perf_counter() > deadline:
            if not anytime or math.isfinite(best_val):  # anytime: go on to a first grouping
                raise TimeoutError(f"grouping search exceeded {time_limit} s ({nodes} nodes)")
        if covered.all():
            v = float(cur.mean())
            if v > best_val + 1e-12:
                best_val, best_set = v, list(picked)
        if left == 0 or allowed.size == 0:
            return
        if not (covered | member[allowed].any(0)).all():
            return  # some task can no longer be covered
        if capped and int((~covered).sum()) > left * largest:
            return  # … or not by the groups left (possible only when groups are capped)
        gains = np.maximum(Sf[allowed] - cur, 0.0).sum(1)
        order = np.argsort(-gains, kind="stable")
        sorted_gains = gains[order]  # descending
        base = float(cur.sum())
        if (base + sorted_gains[:left].sum()) / T <= best_val + 1e-12:
            return
        for pos, idx in enumerate(order):
            if sorted_gains[pos] <= 0 and covered.all():
                break  # nothing left can improve a complete grouping
            rest = order[pos + 1 :]
            # this child's bound: its gain plus the (left − 1) best gains of the groups after it;
            # it only falls as pos grows, so the first failure ends the loop
            if (base + sorted_gains[pos : pos + left].sum()) / T <= best_val + 1e-12:
                break
            k = int(allowed[idx])
            search(
                allowed[rest],
                np.maximum(cur, Sf[k]),
                covered | member[k],
                [*picked, k],
                left - 1,
            )

    start = _greedy_partition(S, groups, budget, T)
    if seeded is not None:
        index = {g: k for k, g in enumerate(groups)}
        start = [index[g] for g in seeded if g in index]
        start = start if len(start) == len(seeded) else None
    if start is not None:  # a complete incumbent from the start: sharper pruning, and an
        best_set = start  # anytime search always has an answer
        best_val = float(np.max(Sf[start], axis=0).mean())
    optimal = True
    try:
        search(np.arange(n), np.full(T, floor), np.zeros(T, dtype=bool), [], budget)
    except TimeoutError:
        if not anytime:
            raise
        optimal = False
    bound = None
    if not optimal:
        gains = np.sort(np.maximum(Sf - floor, 0.0).sum(1))[::-1]
        root = (floor * T + float(gains[:budget].sum())) / T
        bound = min(root, float(S.max(0).mean()))
        if not math.isfinite(best_val):
            raise TimeoutError(
                f"grouping search found no complete grouping in {time_limit} s ({nodes} nodes)"
            )
    if not math.isfinite(best_val):
        raise ValueError(f"no grouping with at most {budget} groups covers all {T} tasks")
    chosen_groups = sorted((groups[k] for k in best_set), key=lambda g: (len(g), g))
    named = [[names[i] for i in g] for g in chosen_groups] if names is not None else None
    return Grouping(chosen_groups, best_val, named, nodes, optimal, bound)


def stable_grouping(
    chosen: Sequence[Sequence[str]], per_seed: Sequence[Sequence[Sequence[str]]],
    fraction: float = STABLE_FRACTION,
) -> tuple[bool, float]:  # fmt: skip
    """Whether ``chosen`` (groups of task names) is also the choice of at least ``fraction`` of
    the seeds; returns (stable, the fraction that agrees)."""

    def canon(groups: Sequence[Sequence[str]]) -> tuple[tuple[str, ...], ...]:
        return tuple(sorted(tuple(sorted(g)) for g in groups))

    if not per_seed:
        return False, math.nan
    agree = sum(canon(g) == canon(chosen) for g in per_seed) / len(per_seed)
    return agree >= fraction, agree


def by_budget(
    A, budgets: Sequence[int], per_seed: Sequence[np.ndarray] = (),
    names: Sequence[str] | None = None, singleton_scores: Sequence[float] | None = None,
    **search,
) -> dict[str, dict]:  # fmt: skip
    """Per budget (as a string): the best grouping of the (mean) matrix ``A`` — ``groups``,
    ``value``, ``optimal``, ``bound`` — each seed's own choice (``per_seed``) and whether
    it is ``stable`` (:func:`stable_grouping`; ``seeds_agree``). ``search``: the keyword
    arguments of :func:`best_grouping`; a budget no grouping can cover is left out."""
    out = {}
    for b in budgets:
        try:
            g = best_grouping(A, b, singleton_scores, names=names, **search)
        except ValueError:
            continue
        seeds = []
        for m in per_seed:
            try:
                seeds.append(best_grouping(m, b, singleton_scores, names=names, **search).names
                             or [])  # fmt: skip
            except ValueError:  # no grouping found on this seed's matrix: it does not agree
                seeds.append([])
        stable, agree = stable_grouping(g.names or [], seeds)
        out[str(b)] = {"groups": g.names, "value": g.value, "stable": stable,
                       "seeds_agree": agree, "per_seed": seeds, "optimal": g.optimal,
                       "bound": g.bound}  # fmt: skip
    return out


def _agglomerate(
    A: np.ndarray, budget: int, max_size: int, singleton_scores: Sequence[float] | None
) -> list[tuple[int, ...]] | None:
    """A partition into at most ``budget`` groups of at most ``max_size`` tasks, by merging the
    two parts whose union gains the most (a group's worth: the sum over its members of their
    mean affinity from the others; a task alone its singleton score, or −inf without one); None
    if the sizes allow no such partition."""
    T = A.shape[0]
    alone = (np.full(T, -np.inf) if singleton_scores is None
             else np.asarray(singleton_scores, float))  # fmt: skip
    if math.ceil(T / max_size) > budget:
        return None

    def worth(g: tuple[int, ...]) -> float:
        if len(g) == 1:
            return float(alone[g[0]])
        block = A[np.ix_(g, g)]
        return float(((block.sum(1) - np.diag(block)) / (len(g) - 1)).sum())

    parts: list[tuple[int, ...]] = [(i,) for i in range(T)]
    values = [worth(p) for p in parts]
    while len(parts) > budget:
        best, pick = -math.inf, None
        for a in range(len(parts)):
            for b in range(a + 1, len(parts)):
                if len(parts[a]) + len(parts[b]) > max_size:
                    continue
                merged = tuple(sorted(parts[a] + parts[b]))
                w = worth(merged)
                gain = w - (values[a] if math.isfinite(values[a]) else 0.0) - (
                    values[b] if math.isfinite(values[b]) else 0.0)  # fmt: skip
                if gain > best or pick is None:
                    best, pick = gain, (a, b, merged, w)
        if pick is None:
            return None
        a, b, merged, w = pick
        keep = [k for k in range(len(parts)) if k not in (a, b)]
        parts = [parts[k] for k in keep] + [merged]
        values = [values[k] for k in keep] + [w]
    return parts


def _greedy_partition(
    S: np.ndarray, groups: list[tuple[int, ...]], budget: int, T: int
) -> list[int] | None:
    """A complete grouping of at most ``budget`` groups by agglomeration: from singletons (or
    pairs where singletons are not candidates), merge the two groups whose union scores best
    until the budget is met; None if the candidates allow no such merges."""
    index = {g: k for k, g in enumerate(groups)}

    def score(g: tuple[int, ...]) -> float:
        k = index.get(g)
        return -math.inf if k is None else float(S[k, list(g)].sum())

    parts: list[tuple[int, ...]] = [(i,) for i in range(T)]
    if any((i,) not in index for i in range(T)):  # no singletons: start from a pairing
        parts = [tuple(range(i, min(i + 2, T))) for i in range(0, T, 2)]
        if len(parts[-1]) == 1:
            parts[-2:] = [parts[-2] + parts[-1]]
        if any(p not in index for p in parts):
            return None
    while len(parts) > budget:
        best, pair = -math.inf, None
        for a in range(len(parts)):
            for b in range(a + 1, len(parts)):
                merged = tuple(sorted(parts[a] + parts[b]))
                gain = score(merged) - score(parts[a]) - score(parts[b])
                if merged in index and gain > best:
                    best, pair = gain, (a, b, merged)
        if pair is None:
            return None
        a, b, merged = pair
        parts = [p for k, p in enumerate(parts) if k not in (a, b)] + [merged]
    return [index[p] for p in parts]


def brute_force_grouping(
    A, budget: int, singleton_scores: Sequence[float] | None = None
) -> Grouping:
    """Every combination of at most ``budget`` candidate groups (the reference for tests)."""
    A = _check_matrix(A)
    groups, S = group_scores(A, candidate_groups(A.shape[0]), singleton_scores)
    best_val = -math.inf
    best: tuple[int, ...] = ()
    for b in range(1, budget + 1):
        for combo in itertools.combinations(range(len(groups)), b):
            v = _value(S[list(combo)].max(0))
            if v > best_val:
                best_val, best = v, combo
    if not math.isfinite(best_val):
        raise ValueError(f"no grouping with at most {budget} groups covers every task")
    return Grouping([groups[k] for k in best], best_val)


def affinity_from_pairwise(
    tasks: Sequence[str],
    stl: Mapping[str, float],
    pairs: Mapping[tuple[str, str], Mapping[str, float]],
    higher_is_better: bool = True,
) -> tuple[np.ndarray, list[float]]:
    """Standley et al. (2020)'s higher-order approximation: ``A[i, j]`` = task ``i``'s validation
    performance when trained with ``j`` (``pairs[(i, j)][i]``), relative to its STL performance;
    the singleton score of a task is 0 (training it alone). Returns (matrix, singleton scores)."""
    T = len(tasks)
    A = np.zeros((T, T))
    sign = 1.0 if higher_is_better else -1.0
    for a in range(T):
        for b in range(T):
            if a == b:
                continue
            key = (tasks[a], tasks[b]) if (tasks[a], tasks[b]) in pairs else (tasks[b], tasks[a])
            if key not in pairs:
                raise ValueError(f"no pairwise result for {tasks[a]!r} with {tasks[b]!r}")
            A[a, b] = sign * (pairs[key][tasks[a]] - stl[tasks[a]]) / abs(stl[tasks[a]])
    return A, [0.0] * T


def cosine_affinity(gramians: Sequence[np.ndarray]) -> np.ndarray:
    """The gradient-cosine baseline: mean over steps of ``G_ij / √(G_ii G_jj)``."""
    Cs = []
    for G in gramians:
        G = np.asarray(G, float)
        d = np.sqrt(np.clip(np.diag(G), 1e-300, None))
        Cs.append(G / np.outer(d, d))
    return np.mean(Cs, axis=0)


# ---- affinity.json ----------------------------------------------------------------------------
def write_affinity(path, tasks: Sequence[str], A, meta: Mapping | None = None) -> Path:
    """Write the exchange format ``{"tasks", "affinity", "orientation", "meta"}``."""
    A = np.asarray(A, float)
    obj = {
        "tasks": list(tasks),
        "affinity": [[float(v) for v in row] for row in A],
        "orientation": "recipient,source",
        "meta": dict(meta or {}),
    }
    path = Path(path)
    path.write_text(json.dumps(obj, indent=2))
    return path


def read_affinity(path: str | os.PathLike[str]) -> tuple[list[str], np.ndarray, dict]:
    """Read and validate an ``affinity.json`` (see :func:`write_affinity`)."""
    path = Path(path)
    if not path.exists():
        raise AffinityFileError(f"{path}: no such file")
    try:
        obj = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise AffinityFileError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(obj, dict) or "tasks" not in obj or "affinity" not in obj:
        raise AffinityFileError(f"{path}: needs the keys 'tasks' and 'affinity'")
    tasks = obj["tasks"]
    if not isinstance(tasks, list) or not all(isinstance(t, str) for t in tasks):
        raise AffinityFileError(f"{path}: 'tasks' must be a list of names")
    if len(set(tasks)) != len(tasks):
        raise AffinityFileError(f"{path}: task names must be unique")
    orientation = obj.get("orientation", "recipient,source")
    if orientation != "recipient,source":
        raise AffinityFileError(
            f"{path}: orientation {orientation!r} not supported (use 'recipient,source')"
        )
    try:
        A = np.asarray(obj["affinity"], dtype=float)
    except (TypeError, ValueError):
        raise AffinityFileError(f"{path}: 'affinity' must be a matrix of numbers") from None
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise AffinityFileError(f"{path}: 'affinity' must be square (got shape {A.shape})")
    if A.shape[0] != len(tasks):
        raise AffinityFileError(
            f"{path}: {len(tasks)} task names but a {A.shape[0]}×{A.shape[1]} affinity matrix"
        )
    off = A[~np.eye(len(tasks), dtype=bool)]
    if not np.isfinite(off).all():
        raise AffinityFileError(f"{path}: 'affinity' has NaN or infinite off-diagonal entries")
    return tasks, A, dict(obj.get("meta", {}))


__all__ = [
    "SINGLETON_SCORE",
    "STABLE_FRACTION",
    "AffinityFileError",
    "Grouping",
    "affinity_from_pairwise",
    "best_grouping",
    "brute_force_grouping",
    "by_budget",
    "candidate_groups",
    "cosine_affinity",
    "group_scores",
    "neighbourhood_groups",
    "read_affinity",
    "stable_grouping",
    "write_affinity",
]
