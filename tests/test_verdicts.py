"""Verdicts a scientist can defend (issue 24): three values, the decision rules behind them
(a predicted direction, an equivalence test for a claim of absence), and intervals that resample
whole clusters when rows share a run or a setting."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from mtlab.measure.stats import (
    cluster_bootstrap,
    correlation_interval,
    mean_interval,
    resample_counts,
)
from mtlab.report.analysis import Claim, as_verdict, verdict_counts
from mtlab.studies.claims import (
    above,
    all_of,
    below,
    claim_rule,
    claims_line,
    directional,
    equivalent,
    ratio_interval,
    seed_interval,
)


def test_verdicts_are_three_valued():
    assert as_verdict(True) == "holds" and as_verdict(False) == "contradicted"
    assert as_verdict("inconclusive") == "inconclusive"
    with pytest.raises(ValueError, match="allowed"):
        as_verdict("maybe")
    c = Claim("x", "X.", True, {})
    assert c.verdict == "holds" and c.holds and c.to_json()["verdict"] == "holds"
    assert not Claim("x", "X.", "inconclusive", {}).holds
    assert verdict_counts(["holds", "inconclusive", "holds"]) == {
        "holds": 2, "contradicted": 0, "inconclusive": 1}  # fmt: skip
    claims = [Claim("a", "", "holds", {}), Claim("b", "", "contradicted", {}),
              Claim("c", "", "inconclusive", {})]  # fmt: skip
    assert claims_line(claims, "quick", 7) == (
        "1 of 3 checked claims hold (1 contradicted, 1 inconclusive) at preset `quick` (7 runs")


def test_a_predicted_direction():
    assert directional(0.1, 0.3) == "holds"
    assert directional(-0.3, -0.1) == "contradicted"  # the opposite effect
    assert directional(-0.1, 0.3) == "inconclusive"  # the interval straddles 0
    # a minimum effect: a sliver above 0 is not an effect the claim counts
    assert directional(0.001, 0.02, minimum=0.05) == "contradicted"
    assert directional(0.02, 0.09, minimum=0.05) == "inconclusive"
    assert directional(math.nan, 1.0) == "inconclusive"


def test_a_claim_of_absence_is_an_equivalence_test():
    assert equivalent(-0.05, 0.08, delta=0.1) == "holds"
    assert equivalent(-0.05, 0.3, delta=0.1) == "inconclusive"  # straddles δ: cannot tell
    assert equivalent(-0.9, 0.9, delta=0.1) == "inconclusive"  # small n: a wide interval
    assert equivalent(0.2, 0.4, delta=0.1) == "contradicted"  # clearly an effect
    assert equivalent(-0.4, -0.15, delta=0.1) == "contradicted"
    with pytest.raises(ValueError, match="delta"):
        equivalent(0, 0, delta=0)


def test_parts_of_a_claim():
    assert all_of(["holds", "holds"]) == "holds"
    assert all_of(["holds", "inconclusive"]) == "inconclusive"
    assert all_of(["inconclusive", "contradicted"]) == "contradicted"
    assert all_of([]) == "inconclusive"


def test_a_rule_may_answer_any_of_the_three():
    @claim_rule("t.small", "The mean is within ±{delta:g} of 0.", delta=0.1)
    def small(table, *, delta):
        iv = mean_interval(table, n_resamples=500)
        return equivalent(iv.lo, iv.hi, delta), {"mean": iv.point, "ci": [iv.lo, iv.hi]}

    rng = np.random.default_rng(0)
    assert small.verdict(rng.normal(0, 0.05, 200)) == "holds"
    assert small.verdict(rng.normal(0, 1.0, 6)) == "inconclusive"  # n = 6 cannot tell
    assert small.verdict(rng.normal(1.0, 0.05, 50)) == "contradicted"
    claim = small.evaluate(rng.normal(0, 1.0, 6))
    assert claim.verdict == "inconclusive" and claim.evidence["thresholds"] == {"delta": 0.1}
    assert not small(rng.normal(0, 1.0, 6))  # "holds?" is False for an inconclusive claim


def _clustered(rng, clusters=10, per=20, spread=1.0, noise=0.05):
    centre = rng.normal(0, spread, clusters)
    values = np.repeat(centre, per) + rng.normal(0, noise, clusters * per)
    return values, np.repeat(np.arange(clusters), per)


def test_the_cluster_bootstrap_is_wide_where_the_naive_one_is_too_narrow():
    rng = np.random.default_rng(1)
    naive_cover = cluster_cover = 0
    trials = 60
    for k in range(trials):
        values, labels = _clustered(rng)  # true mean 0; ten independent clusters, not 200 rows
        naive = mean_interval(values, n_resamples=300, seed=k)
        clustered = mean_interval(values, labels, n_resamples=300, seed=k)
        assert clustered.clusters == 10 and naive.clusters == 200
        assert (clustered.hi - clustered.lo) > 2.5 * (naive.hi - naive.lo)
        naive_cover += naive.lo < 0 < naive.hi
        cluster_cover += clustered.lo < 0 < clustered.hi
    assert naive_cover / trials < 0.5  # the naive 95 % interval misses the truth most times
    assert cluster_cover / trials > 0.8


def test_cluster_bootstrap_edges_and_correlations():
    iv = cluster_bootstrap([[1.0, math.nan, 3.0]], np.mean)
    assert iv.n == 2 and iv.point == 2.0
    one = mean_interval([1.0, 2.0], clusters=["a", "a"])
    assert one.clusters == 1 and math.isnan(one.lo)  # one cluster: no interval
    with pytest.raises(ValueError, match="cluster labels"):
        mean_interval([1.0, 2.0], clusters=["a"])
    rng = np.random.default_rng(2)
    x = rng.normal(size=60)
    rho = correlation_interval(x, x + 0.3 * rng.normal(size=60), n_resamples=300)
    assert rho.point > 0.8 and rho.lo > 0.6
    assert math.isnan(correlation_interval([1, 2], [2, 1]).point)


def test_the_seed_bootstrap_is_exact_for_few_seeds():
    """Up to six seeds every distinct resample is listed with its multinomial probability: the
    probabilities sum to one and match a large Monte-Carlo bootstrap; beyond six, random
    resamples. Two seeds give the range of what each seed alone gives."""
    for n in range(2, 7):
        counts, p = resample_counts(n, 0, 0)
        assert len(counts) == math.comb(2 * n - 1, n) and (counts.sum(1) == n).all()
        assert p.sum() == pytest.approx(1.0)
    counts, p = resample_counts(8, 500, 0)
    assert counts.shape == (500, 8) and p.sum() == pytest.approx(1.0)
    rows = pd.DataFrame({"seed": [0, 0, 1, 1], "x": [1, 2, 1, 2], "v": [1.0, 3.0, 2.0, 6.0]})
    iv = seed_interval(rows, ["x"], "v", lambda m: m[2] - m[1])  # seed 0: 2, seed 1: 4
    assert (iv.point, iv.lo, iv.hi, iv.clusters) == (3.0, 2.0, 4.0, 2)
    assert below(iv, 5) == "holds" and above(iv, 3) == "inconclusive" and above(iv, 5) == (
        "contradicted")
    one = seed_interval(rows[rows.seed == 0], ["x"], "v", lambda m: m[2] - m[1])
    assert one.point == 2.0 and math.isnan(one.lo) and below(one, 5) == "inconclusive"
    # five seeds: the exact interval equals a Monte-Carlo one with many resamples
    rng = np.random.default_rng(1)
    five = pd.DataFrame({"seed": np.repeat(range(5), 2), "x": [1, 2] * 5,
                         "v": rng.normal(size=10)})  # fmt: skip
    exact = seed_interval(five, ["x"], "v", lambda m: m.mean())
    per_seed = five.groupby("seed").v.mean().to_numpy()
    mc = np.percentile([per_seed[rng.integers(0, 5, 5)].mean() for _ in range(40000)],
                       [2.5, 97.5])  # fmt: skip
    assert exact.lo == pytest.approx(mc[0], abs=0.05) and exact.hi == pytest.approx(mc[1],
                                                                                   abs=0.05)
    # the cluster bootstrap enumerates the same distribution for few clusters
    clustered = mean_interval(per_seed)
    assert (clustered.lo, clustered.hi) == (pytest.approx(exact.lo), pytest.approx(exact.hi))


def test_ratio_interval_pairs_cells_and_resamples_seeds():
    idx = pd.MultiIndex.from_product([[16, 64], [0, 1]], names=["n_main", "seed"])
    a = pd.Series([1.0, 2.0, 1.0, 2.0], index=idx)
    b = pd.Series([2.0, 2.0, 2.0, 2.0], index=idx)
    iv = ratio_interval(a, b)
    assert iv.point == pytest.approx(math.sqrt(0.5)) and iv.clusters == 2
    assert (iv.lo, iv.hi) == (pytest.approx(0.5), pytest.approx(1.0))
    assert ratio_interval(a, b, cluster=None).clusters == 4


def test_every_planned_method_run_of_the_trajectories_study_has_its_stl_and_baseline():
    """The method runs are paired with the STL and baseline runs of the same angle: a method
    angle with no STL run would be trained and then dropped from the analysis (issue 24 found
    the paper preset's 45° and 135° method runs, 120 of them, in that state)."""
    from mtlab.studies.trajectories import PRESETS

    for name, preset in PRESETS.items():
        p = preset.params
        assert set(p["method_angles"]) <= set(p["angles"]), name


def test_verdict_changes_between_two_draws():
    from mtlab.studies.claims import verdict_changes

    a = [{"id": "x", "verdict": "holds"}, {"id": "y", "verdict": "holds"},
         {"id": "z", "verdict": "contradicted"}, {"id": "w", "verdict": "holds"}]  # fmt: skip
    b = [{"id": "x", "verdict": "holds"}, {"id": "y", "verdict": "contradicted"},
         {"id": "z", "verdict": "inconclusive"}, {"id": "v", "verdict": "holds"}]  # fmt: skip
    moves = {r["id"]: r["move"] for r in verdict_changes(a, b)}
    assert moves == {"x": "same", "y": "flipped", "z": "to / from inconclusive",
                     "w": "missing", "v": "missing"}  # fmt: skip


def test_disjoint_seeds_shift_every_run_and_its_dependencies():
    from mtlab.runs.executor import expand_dependencies
    from mtlab.studies import get_study
    from mtlab.studies.base import offset_seeds

    configs = get_study("diagonal").configs("tiny")
    shifted = offset_seeds(configs, 5)
    seeds = {c.seed for phase in expand_dependencies(configs) for c in phase}
    moved = {c.seed for phase in expand_dependencies(shifted) for c in phase}
    assert moved == {s + 5 for s in seeds} and not moved & seeds
    assert len({c.run_id() for c in shifted}) == len({c.run_id() for c in configs})
    assert offset_seeds(configs, 0) is configs
    with pytest.raises(ValueError, match="offset"):
        offset_seeds(configs, -1)


def test_stability_command_reruns_on_disjoint_seeds(tmp_path, capsys):
    import json

    from mtlab.cli import main

    out = tmp_path / "stab"
    assert main(["stability", "subspace", "--preset", "tiny", "--out", str(out), "--quiet"]) == 0
    said = capsys.readouterr().out
    report = json.loads((out / "stability.json").read_text())
    assert report["seed_offset"] == 1 and (out / "offset-1" / "claims.json").exists()
    ids = [r["id"] for r in report["claims"]]
    assert len(ids) == 11 and all(r["move"] != "missing" for r in report["claims"])
    assert report["flipped"] == [r["id"] for r in report["claims"] if r["move"] == "flipped"]
    assert f"{len(report['flipped'])} of 11 claims flipped" in said
    default = json.loads((out / "default" / "rows.jsonl").read_text().splitlines()[0])
    offset = json.loads((out / "offset-1" / "rows.jsonl").read_text().splitlines()[0])
    assert default["seed"] == 0 and offset["seed"] == 1
