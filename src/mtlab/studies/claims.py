"""Claim rules, and the table helpers the studies share.

A :class:`ClaimRule` is a pure function from a table (pandas) to a verdict — ``holds``,
``contradicted`` or ``inconclusive``, decided on an interval (:func:`directional`,
:func:`equivalent`, :func:`above`, :func:`below`) — and its evidence. Its thresholds are written
once, as keyword parameters; the claim's text is rendered from the same parameters the function
tests (``text.format(**params)``), so the report can never state a threshold other than the one
applied. Every rule is tested on small synthetic tables for each verdict
(``tests/test_claim_rules.py``).

.. code-block:: python

    @claim_rule("x.beats_y", "X beats Y by more than {margin:g}: the mean difference over seeds "
                "has a 95% CI above {margin:g}.", margin=0.5)
    def x_beats_y(runs, *, margin):
        iv = seed_interval(runs, ["model"], "acc", lambda m: m["x"] - m["y"])
        return above(iv, margin), {"difference": ci(iv)}
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mtlab.report.analysis import (
    CONTRADICTED,
    HOLDS,
    INCONCLUSIVE,
    Claim,
    Section,
    as_verdict,
    verdict_counts,
)

Check = Callable[..., tuple[bool | str, dict[str, Any]]]


@dataclass(frozen=True)
class ClaimRule:
    """A claim: id, text template, the check, its thresholds and where the claim comes from."""

    id: str
    text: str
    check: Check
    params: Mapping[str, Any] = field(default_factory=dict)
    source: str = ""

    def rendered(self) -> str:
        return self.text.format(**self.params)

    def evaluate(self, table: Any, figure: str | None = None) -> Claim:
        """The verdict of this rule on ``table`` (a Claim with the evidence and thresholds)."""
        verdict, evidence = self.check(table, **self.params)
        evidence = {**evidence, "thresholds": dict(self.params)} if self.params else evidence
        return Claim(self.id, self.rendered(), as_verdict(verdict), evidence, figure, self.source)

    def verdict(self, table: Any) -> str:
        """The bare verdict (one of :data:`~mtlab.report.analysis.VERDICTS`; for tests)."""
        return as_verdict(self.check(table, **self.params)[0])

    def __call__(self, table: Any) -> bool:
        """Whether the claim holds on ``table`` (for tests)."""
        return self.verdict(table) == HOLDS


def claim_rule(
    id: str, text: str, *, source: str = "", **params: Any
) -> Callable[[Check], ClaimRule]:
    """Decorator: the function ``check(table, **params) -> (verdict, evidence)`` as a rule."""

    def wrap(check: Check) -> ClaimRule:
        rule = ClaimRule(id, text, check, params, source)
        rule.rendered()  # a template naming a missing parameter fails at import, not in a report
        return rule

    return wrap


# ---------------------------------------------------------------------------- numbers


def r(v: Any, digits: int = 4) -> Any:
    """``v`` rounded to ``digits`` significant digits (None / non-finite pass through)."""
    if v is None:
        return None
    if isinstance(v, (list, tuple, np.ndarray)):
        return [r(x, digits) for x in v]
    f = float(v)
    if not math.isfinite(f) or f == 0:
        return f
    return float(f"{f:.{digits}g}")




def spearman(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Spearman rank correlation (NaN for fewer than 3 points or a constant input)."""
    from scipy.stats import spearmanr

    if len(x) < 3 or np.ptp(np.asarray(x, float)) == 0 or np.ptp(np.asarray(y, float)) == 0:
        return float("nan")
    return float(spearmanr(x, y).statistic)






def completed(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of runs that did not fail (failed runs never enter a mean; they are counted in
    the report's summary and run table)."""
    return df[df.status != "failed"] if "status" in df else df


# ---------------------------------------------------------------------------- decisions


def directional(lo: float, hi: float, minimum: float = 0.0) -> str:
    """The verdict on a predicted *positive* effect from its interval ``[lo, hi]`` (flip the
    sign of an effect predicted negative): ``holds`` when the whole interval lies above
    ``minimum`` (the smallest effect the claim counts), ``contradicted`` when it lies wholly
    below it (no effect of that size, or the opposite one), else ``inconclusive`` — also when
    the interval is undefined."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return INCONCLUSIVE
    if lo > minimum:
        return HOLDS
    if hi < minimum:
        return CONTRADICTED
    return INCONCLUSIVE


def equivalent(lo: float, hi: float, delta: float) -> str:
    """The verdict on a claim of *absence* (an equivalence test): ``holds`` only when the whole
    interval lies inside ``(−delta, delta)``, ``contradicted`` when it lies wholly outside (an
    effect larger than ``delta``), else ``inconclusive`` — an interval that straddles ``±delta``
    (too little data to tell) never passes."""
    if delta <= 0:
        raise ValueError(f"delta must be positive (got {delta})")
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return INCONCLUSIVE
    if -delta < lo and hi < delta:
        return HOLDS
    if lo >= delta or hi <= -delta:
        return CONTRADICTED
    return INCONCLUSIVE


def all_of(verdicts: Sequence[str]) -> str:
    """A claim made of parts: holds if every part holds, contradicted if any part is
    contradicted, else inconclusive."""
    if any(v == CONTRADICTED for v in verdicts):
        return CONTRADICTED
    return HOLDS if verdicts and all(v == HOLDS for v in verdicts) else INCONCLUSIVE


def computed(ok: bool, present: bool = True) -> str:
    """The verdict on a property of a computation (an identity, a closed form; no seeds): holds
    or is contradicted; inconclusive only when the computation is missing."""
    return INCONCLUSIVE if not present else HOLDS if ok else CONTRADICTED


def below(iv: Any, cut: float) -> str:
    """A statistic predicted to lie *below* ``cut`` (an :class:`~mtlab.measure.stats.Interval`):
    holds when its whole interval does, contradicted when its whole interval lies above."""
    return directional(cut - iv.hi, cut - iv.lo)


def above(iv: Any, cut: float) -> str:
    """A statistic predicted to lie *above* ``cut``: holds when its whole interval does,
    contradicted when its whole interval lies below."""
    return directional(iv.lo - cut, iv.hi - cut)


def ci(iv: Any, digits: int = 4) -> dict[str, Any]:
    """An interval as evidence: the point, the 95% interval and how many units it resampled."""
    return {"point": r(iv.point, digits), "ci95": [r(iv.lo, digits), r(iv.hi, digits)],
            "units": iv.clusters}  # fmt: skip


def ratio_interval(a: pd.Series, b: pd.Series, statistic: Any = np.mean,
                   cluster: str | None = "seed") -> Any:  # fmt: skip
    """The geometric mean of ``a / b`` over their common index (e.g. ``(n_main, seed)``) with
    its bootstrap interval, resampling whole values of the index level ``cluster`` (a seed's
    rows share its draw of the data). With two seeds the interval is about their range; with
    one it is undefined (every decision on it is inconclusive). ``statistic`` of the log ratios
    (np.median for medians); ``cluster=None``: every row its own unit."""
    from mtlab.measure.stats import Interval, cluster_bootstrap

    common = a.index.intersection(b.index)
    x, y = a.loc[common].to_numpy(float), b.loc[common].to_numpy(float)
    keep = (x > 0) & (y > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log(x[keep] / y[keep])
    labels = (np.asarray(common.get_level_values(cluster))[keep]
              if cluster is not None and cluster in common.names else None)
    iv = cluster_bootstrap([logs], statistic, labels)

    def exp(v: float) -> float:
        return math.exp(v) if math.isfinite(v) else v

    return Interval(exp(iv.point), exp(iv.lo), exp(iv.hi), iv.n, iv.clusters, iv.confidence)


def seed_interval(rows: pd.DataFrame, keys: Sequence[str], value: str,
                  statistic: Callable[[pd.Series], float], *, n_resamples: int = 1000,
                  seed: int = 0) -> Any:  # fmt: skip
    """``statistic`` of the mean over seeds of ``value`` (a Series indexed by ``keys``: a curve,
    a grid) with its 95% percentile-bootstrap interval, resampling whole seeds (a seed's rows
    share its draw of the data). Seeds missing a cell are left out of that cell's mean. With up
    to six seeds the bootstrap distribution is enumerated exactly
    (:func:`mtlab.measure.stats.resample_counts`). With two
    seeds the interval spans what each seed alone gives; with one it is undefined."""
    from mtlab.measure.stats import Interval, resample_counts, weighted_interval

    wide = rows.pivot_table(index="seed", columns=list(keys), values=value, aggfunc="mean")
    arr, cols = wide.to_numpy(float), wide.columns
    finite = np.isfinite(arr)
    filled = np.where(finite, arr, 0.0)

    def stat(counts: np.ndarray) -> float:
        n = counts @ finite
        with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.where(n > 0, (counts @ filled) / np.maximum(n, 1), np.nan)
            return float(statistic(pd.Series(mean, index=cols)))

    nan = math.nan
    if arr.size == 0:
        return Interval(nan, nan, nan, 0, 0, 0.95)
    point = stat(np.ones(len(arr)))
    if len(arr) < 2:
        return Interval(point, nan, nan, int(finite.sum()), len(arr), 0.95)
    counts, weights = resample_counts(len(arr), n_resamples, seed)
    values = np.array([stat(c) for c in counts])
    lo, hi = weighted_interval(values, weights)
    return Interval(point, lo, hi, int(finite.sum()), len(arr), 0.95)


def verdict_changes(first: Sequence[Mapping[str, Any]], second: Sequence[Mapping[str, Any]]
                    ) -> list[dict[str, Any]]:  # fmt: skip
    """Per claim id of either list (``claims.json`` entries), its verdict in both and how it
    moved: ``same``; ``flipped`` (between holds and contradicted — the data answered one way,
    then the other); ``to / from inconclusive``; ``missing`` where one run has no such claim."""
    a = {c["id"]: c["verdict"] for c in first}
    b = {c["id"]: c["verdict"] for c in second}
    rows = []
    for cid in [*a, *(k for k in b if k not in a)]:
        va, vb = a.get(cid), b.get(cid)
        if va is None or vb is None:
            move = "missing"
        elif va == vb:
            move = "same"
        elif INCONCLUSIVE in (va, vb):
            move = "to / from inconclusive"
        else:
            move = "flipped"
        rows.append({"id": cid, "first": va, "second": vb, "move": move})
    return rows


# ---------------------------------------------------------------------------- report pieces


def claims_line(claims: Sequence[Claim], preset: str, runs: int) -> str:
    """The report's first line: "N of M checked claims hold (C contradicted, I inconclusive)
    at preset `p` (R runs"."""
    n = verdict_counts([c.verdict for c in claims])
    return (f"{n[HOLDS]} of {len(claims)} checked claims hold ({n[CONTRADICTED]} contradicted, "
            f"{n[INCONCLUSIVE]} inconclusive) at preset `{preset}` ({runs} runs")  # fmt: skip


def runs_section(df: pd.DataFrame, by: str = "method") -> Section:
    """Run status counts and steps per ``by`` (the last section of a study's report)."""
    tables: list[tuple[str, Any]] = [
        ("status counts", df.groupby([by, "status"]).size().unstack(fill_value=0))
    ]
    if "steps" in df:
        tables.append(("steps", df.groupby(by).steps.agg(["median", "max"])))
    return Section("Runs", f"Run status and steps per {by}.", [], tables)


def evaluate_all(rules: Sequence[ClaimRule], table: Any, figure: str | None = None) -> list[Claim]:
    """Every rule of ``rules`` on the same table."""
    return [rule.evaluate(table, figure) for rule in rules]


__all__ = [
    "ClaimRule",
    "above",
    "all_of",
    "below",
    "ci",
    "claim_rule",
    "claims_line",
    "completed",
    "computed",
    "directional",
    "equivalent",
    "evaluate_all",
    "r",
    "ratio_interval",
    "runs_section",
    "seed_interval",
    "spearman",
    "verdict_changes",
]
