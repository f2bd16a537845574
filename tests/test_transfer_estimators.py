"""The transfer estimators as plug-ins (issue 25): each one's runs through the executor, its
estimate from the stored rows, the default chosen by the evidence, grouping for many tasks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mtlab.advise.estimators import (
    ESTIMATORS,
    Context,
    Surrogate,
    candidate_pool,
    compare,
    estimator_context,
    load_evidence,
    make_estimator,
    pending,
    task_steps,
)
from mtlab.advise.rules import default_estimator, evidence_table
from mtlab.advise.synthetic import PLANTED, block_recovery, planted_block, planted_many
from mtlab.grouping import best_grouping, neighbourhood_groups


def test_default_estimator_rule():
    rows = [{"estimator": "pairs", "tasks": 16, "cost_fraction": 1.0, "spearman": 1.0},
            {"estimator": "a", "tasks": 16, "cost_fraction": 0.2, "spearman": 0.5},
            {"estimator": "a", "tasks": 48, "cost_fraction": 0.2, "spearman": 0.5},
            {"estimator": "b", "tasks": 16, "cost_fraction": 0.05, "spearman": 0.4},
            {"estimator": "b", "tasks": 48, "cost_fraction": 0.05, "spearman": 0.3},
            {"estimator": "c", "tasks": 16, "cost_fraction": 0.3, "spearman": 0.9},
            {"estimator": "d", "tasks": 48, "cost_fraction": 0.05, "spearman": 0.3}]  # fmt: skip
    # 16 tasks (cap 25 %): c costs too much, a has the highest Spearman
    assert default_estimator(rows, 16) == "a" == default_estimator(rows, 20)
    # 48 tasks (cap 10 %): a costs too much there; b and d tie: the first by name
    assert default_estimator(rows, 48) == "b" == default_estimator(rows, 100)
    assert default_estimator(rows, 16, caps={16: 0.5}) == "c"
    rows[1]["spearman"] = float("nan")  # a was not measurable at 16 tasks: not a candidate
    assert default_estimator(rows, 16) == "b"
    rows[4]["cost_fraction"] = 0.02  # b cheaper than d at the same Spearman
    assert default_estimator(rows, 48) == "b"
    rows[4]["spearman"] = 0.29
    assert default_estimator(rows, 48) == "d"
    with pytest.raises(ValueError, match="no estimator"):
        default_estimator(rows[:1], 16)
    with pytest.raises(ValueError, match="no table"):
        default_estimator([], 16)


def test_the_evidence_table_is_the_nearest_on_a_log_scale():
    assert [evidence_table(t, [16, 48]) for t in (9, 16, 27, 28, 48, 500)] == [
        16, 16, 16, 48, 48, 48]  # fmt: skip


def test_the_shipped_evidence_names_a_default_at_every_table():
    ev = load_evidence()
    assert {r["tasks"] for r in ev["rows"]} == set(PLANTED)
    for T in PLANTED:
        name = default_estimator(ev["rows"], T)
        assert name in ESTIMATORS and name != "pairs"


def test_block_recovery_counts_only_pairs_of_block_tasks():
    groups = [["A1", "A2", "A3", "L1"], ["B1", "B2"], ["B3", "N1"]]
    r = block_recovery(groups)
    assert r["precision"] == 1.0  # A1-A2, A1-A3, A2-A3, B1-B2; L1 and N1 do not count
    assert r["recall"] == pytest.approx(4 / 6)  # B1-B3 and B2-B3 are missed
    assert r["others_with_blocks"] == 1.0
    assert block_recovery([["A1", "B1"], ["A2"], ["B2"]])["precision"] == 0.0
    assert planted_block("A12") == "A" and planted_block("L1") is None
    assert planted_block("N3") is None and planted_block("x0") is None


def test_planted_many_tables():
    df = planted_many(16, rows=300)
    targets = [c for c in df.columns if not c.startswith("x")]
    assert len(targets) == 16 and targets[-4:] == ["L1", "L2", "N1", "N2"]
    assert len([c for c in planted_many(48, rows=50).columns if not c.startswith("x")]) == 48
    with pytest.raises(ValueError, match="16 or 48"):
        planted_many(20)


def test_neighbourhood_groups_recover_planted_blocks_at_48_tasks():
    """Above LARGE_T the search runs over neighbourhood groups: small enough for 48 tasks, and
    the planted blocks are among them."""
    T = 48
    A = np.random.default_rng(0).normal(0, 0.01, (T, T))
    blocks = [tuple(range(3 * b, 3 * b + 3)) for b in range(12)]
    for b in blocks:
        A[np.ix_(b, b)] += 0.2
    pool = candidate_pool(A)
    assert pool is not None and len(pool) < 2000 and all(b in pool for b in blocks)
    assert candidate_pool(A[:16, :16]) is None
    g = best_grouping(A, 16, [0.0] * T, time_limit=10, anytime=True, candidates=pool)
    assert all(b in g.groups for b in blocks)
    assert neighbourhood_groups(A, 2, 3) == sorted(set(neighbourhood_groups(A, 2, 3)),
                                                   key=lambda x: (len(x), x))


def test_task_steps_converts_probe_seconds():
    row = {"tasks": ["a", "b"], "steps": 100, "steps_done": 50, "train_seconds": 2.0,
           "probe_seconds": 1.0, "linearise_seconds": 1.0}  # fmt: skip
    assert task_steps(row) == 100 + 100  # 2 s of probing at 100 task-steps per 2 s
    assert task_steps({"tasks": ["a"], "steps": 10, "steps_done": None}) == 10


def test_short_pairs_are_the_pairs_for_a_fraction_of_the_budget():
    from mtlab.advise.estimators import Pairs, ShortPairs
    from mtlab.runs.config import make_config

    base = {"family": "owndata", "dataset": "digit-attributes", "targets": ("odd", "ge5", "prime"),
            "steps": 800, "patience": 5}  # fmt: skip
    ctx = Context(base["targets"], (0, 1), lambda **f: make_config({**base, **f}))
    full, short = Pairs().configs(ctx), ShortPairs(0.1).configs(ctx)
    assert len(full) == len(short) == 2 * 3 + 2 * 3
    assert {c.steps for c in short} == {80} and {c.eval_every for c in short} == {20}
    assert {c.patience for c in short} == {None}
    assert [(c.tasks, c.seed) for c in short] == [(c.tasks, c.seed) for c in full]


def test_surrogate_subsets_cover_every_task_each_round():
    from mtlab.runs.config import make_config

    base = {"family": "owndata", "dataset": "digit-attributes",
            "targets": ("odd", "ge5", "prime", "closed_loop")}  # fmt: skip
    ctx = Context(base["targets"], (0, 1), lambda **f: make_config({**base, **f}))
    est = Surrogate(size=2, rounds=3)
    subs = est.subsets(ctx, 0)
    assert len(subs) == 6 and all(len(s) == 2 for s in subs)
    for r in range(3):
        assert sorted(t for s in subs[2 * r: 2 * r + 2] for t in s) == sorted(ctx.tasks)
    assert est.subsets(ctx, 0) == subs and est.subsets(ctx, 1) != subs


@pytest.mark.slow
def test_every_estimator_runs_through_the_executor(tmp_path):
    """Each estimator's runs trained by the executor into one store, then judged against the
    realised pairs on a tiny planted table (correctness of the plumbing, not of the numbers)."""
    from mtlab.advise.synthetic import planted_blocks
    from mtlab.runs.config import make_config
    from mtlab.runs.executor import execute
    from mtlab.runs.owndata import file_digest
    from mtlab.runs.store import RunStore

    data = tmp_path / "t.csv"
    planted_blocks(2, 2, 0, 1, rows=400, features=6, kept=0.5).to_csv(data, index=False)
    targets = ("A1", "A2", "B1", "B2", "N1")
    base = {"family": "owndata", "data": str(data), "data_sha256": file_digest(data),
            "targets": targets, "steps": 40, "widths": (8,), "eval_every": 10,
            "probe_every": 10}  # fmt: skip
    ctx = Context(targets, (0, 1), lambda **f: make_config({**base, **f}))
    names = [n for n in ESTIMATORS if n != "pairs"]
    own = estimator_context(ctx)
    configs = make_estimator("pairs").configs(ctx) + [
        c for n in names for c in make_estimator(n).configs(own)]
    # the estimators never train on the reference's seeds (their noise would be shared)
    assert {c.seed for c in configs[: len(make_estimator("pairs").configs(ctx))]}.isdisjoint(
        {c.seed for c in configs[len(make_estimator("pairs").configs(ctx)):]})
    store = RunStore(tmp_path / "runs")
    stats = execute(configs, store, progress=False)
    assert stats["failed"] == 0
    rows = {r["run_id"]: r for r in store.rows()}
    ests = [make_estimator(n) for n in names]
    while more := pending(ests, own, rows):  # the runs chosen from the runs stored
        assert execute(more, store, progress=False)["failed"] == 0
        rows = {r["run_id"]: r for r in store.rows()}
    # a single-task network's signature: its outputs on the same validation rows
    sig = [e for r in rows.values() for e in r["evals"] if e.get("signature") is not None]
    assert sig and all(len(e["signature"]) == e["signature_outputs"] * 60 for e in sig)
    assert {e["signature_outputs"] for e in sig} == {1, 2}  # a regression, a binary class
    # what predicts a recipient effect: its kind (one column each), its log loss alone
    # centred within the kind
    X = make_estimator("screened").covariates(own, rows)  # type: ignore[attr-defined]
    assert X.shape == (5, 3) and (X[:, :2].sum(1) == 1).all() and X[:, :2].sum(0).min() >= 1
    for k in range(2):
        assert X[X[:, k] == 1, 2].sum() == pytest.approx(0.0, abs=1e-9)
    assert np.ptp(X[:, 2]) > 0
    result = compare(ctx, names, rows, budgets=(2,), time_limit=5)
    assert [e["estimator"] for e in result["estimators"]] == names
    for e in result["estimators"]:
        m = np.asarray(e["matrix"])
        assert m.shape == (5, 5) and np.isfinite(m).all() and (np.diag(m) == 0).all()
        assert 0 < e["cost_fraction"] < math.inf and e["grouping"][0]["budget"] == 2
        assert np.asarray(e["se"]).shape == (5, 5)
    assert math.isfinite(result["realised"]["split_half_spearman"])


@pytest.mark.slow
@pytest.mark.parametrize(("name", "words"), [
    ("surrogate", "surrogate model of the transfer"),
    ("screened", "screened pairs")])  # fmt: skip
def test_advise_groups_by_an_estimator_and_states_its_evidence(tmp_path, name, words):
    """``--affinity surrogate`` or ``screened`` (``auto``'s choice above 8 tasks; its pairs
    are chosen from its first runs, a round of its own): its runs in the advice's folder, the
    grouping from its estimate, and the report stating what it measured against the realised
    transfer."""
    from mtlab.advise.synthetic import planted_blocks
    from mtlab.cli import main

    data = tmp_path / "t.csv"
    planted_blocks(2, 2, 0, 1, rows=400, features=6, kept=0.5).to_csv(data, index=False)
    out = tmp_path / "adv"
    args = ["advise", "--data", str(data), "--targets", "A1,A2,B1,B2,N1", "--out", str(out),
            "--model", "mlp:8", "--seeds", "2", "--steps", "40", "--methods", "",
            "--rescales", "1", "--affinity", name, "--time-budget", "0", "--quiet"]
    assert main(args) == 0
    import json

    advice = json.loads((out / "advice.json").read_text())
    aff = advice["affinity"]
    assert aff["source"] == name and np.asarray(aff["mean"]).shape == (5, 5)
    assert np.isfinite(np.asarray(aff["mean"])).all()
    assert all(r["estimator"] == name for r in aff["evidence"])
    if name == "screened":  # both rounds trained into the folder: the pairs it chose too
        from mtlab.runs.store import RunStore

        rows = RunStore(out).rows()
        assert any(r.get("evals") and r["evals"][0].get("signature") for r in rows)
    report = (out / "report.md").read_text()
    assert words in report
    if aff["evidence"]:
        assert "Measured against the realised transfer on planted tables" in report


def test_the_report_names_an_estimate_as_an_estimate():
    """Short pairs are an estimate of the realised transfer, not the realised transfer."""
    from mtlab.advise.report import _affinity_text

    for source, share in (("short-pairs", "9%"), ("short-pairs-19", "19%"), ("surrogate", None)):
        text = _affinity_text({"source": source, "seeds": 3})
        assert "realised pairwise transfer" not in text and "not by training every pair" in text
        assert share is None or f"{share} of the step budget" in text
    assert "realised pairwise transfer" in _affinity_text({"source": "pairs", "seeds": 3})


def test_signature_similarity_is_the_squared_correlation_and_sees_logits_as_softmax_does():
    from mtlab.advise.estimators import signature_similarity

    rng = np.random.default_rng(0)
    z = rng.normal(size=(200, 1))
    a, b = z + 0.5 * rng.normal(size=(200, 1)), 3 * z + 1
    logits = np.hstack([z, -z]) + 7.0  # a shift of every logit changes no probability
    S = signature_similarity([a, b, logits, rng.normal(size=(200, 1)), None, np.ones((200, 1))])
    assert S[0, 1] == pytest.approx(np.corrcoef(a[:, 0], b[:, 0])[0, 1] ** 2)
    assert S[1, 2] == pytest.approx(1.0)  # the logits' difference is 2z: as alike as 3z + 1
    assert S[0, 3] < 0.05 and (S[4] == np.eye(6)[4]).all() and (S[5] == np.eye(6)[5]).all()
    assert np.allclose(S, S.T) and (np.diag(S) == 1).all()


def test_shrunk_transfer_recovers_a_recipient_effect_plus_a_similarity_slope():
    from mtlab.advise.estimators import fit_row_similarity, shrunk_transfer

    rng = np.random.default_rng(1)
    T = 8
    S = rng.random((T, T))
    S = (S + S.T) / 2
    a = rng.normal(0, 0.05, T)
    truth = a[:, None] + 0.2 * S
    pairs = [(i, j) for i in range(T) for j in range(T) if i != j and (i + j) % 3 == 0]
    obs = [(i, j, truth[i, j]) for i, j in pairs]
    a_fit, b_fit = fit_row_similarity(T, obs, S)
    assert b_fit == pytest.approx(0.2) and np.allclose(a_fit, a)
    out, fit = shrunk_transfer(T, obs, S)  # one seed: no residual to shrink, the fit is exact
    off = ~np.eye(T, dtype=bool)
    assert np.allclose(out[off], truth[off]) and (np.diag(out) == 0).all()
    assert math.isnan(fit["sigma2"])  # no entry has two seeds: the seeds' noise is unknown
    # two seeds that disagree on a pair's own effect: it is shrunk toward the fit; a pair
    # effect the seeds agree on is kept (nearly) whole
    noisy = [(i, j, truth[i, j] + (0.1 if (i, j) == (0, 3) else 0.0) * s) for i, j in pairs
             for s in (-1, 1)]  # fmt: skip
    agreed = [(i, j, truth[i, j] + (0.3 if (i, j) == (1, 2) else 0.0)) for i, j in pairs
              for _ in (0, 1)]  # fmt: skip
    out_noisy, fit_noisy = shrunk_transfer(T, noisy, S)
    assert fit_noisy["sigma2"] > 0 and abs(out_noisy[0, 3] - truth[0, 3]) < 0.02
    out_agreed, fit_agreed = shrunk_transfer(T, agreed, S)
    assert fit_agreed["sigma2"] == pytest.approx(0.0, abs=1e-12)
    assert out_agreed[1, 2] - (fit_agreed["b"] * S[1, 2]) > 0.2


def test_recipient_effects_shrink_toward_what_the_covariates_predict():
    """Per-seed recipient effects as noisy as the planted 48-task table's (each seed's noise
    shared by all of a recipient's pairs): shrunk toward a fit on a covariate that predicts
    them, they are nearer the truth than their plain mean; a covariate that predicts nothing
    leaves well-measured effects (nearly) whole; one seed, or too few tasks, cannot say."""
    from mtlab.advise.estimators import recipient_prior

    rng = np.random.default_rng(3)
    T, seeds = 40, 3
    x = rng.normal(size=T)
    a = 0.02 * x + rng.normal(0, 0.005, T)  # the truth: mostly what the covariate says
    S = np.eye(T)
    X = np.column_stack([np.ones(T), x])

    def observe(noise):
        per = []
        for _ in range(seeds):
            shared = rng.normal(0, noise, T)  # the seed's own effect, shared by the row
            per.append([(i, j, a[i] + shared[i] + rng.normal(0, 0.002))
                        for i in range(T) for j in rng.choice(np.delete(np.arange(T), i), 4,
                                                               replace=False)])  # fmt: skip
        return per

    per = observe(0.03)
    out, fit = recipient_prior(T, per, S, 0.0, X)
    plain = np.array([np.mean([y for s in per for i, _, y in s if i == t]) for t in range(T)])
    assert np.mean((out - a) ** 2) < 0.5 * np.mean((plain - a) ** 2)
    assert fit["coef"][1] == pytest.approx(0.02, abs=0.006) and 0 <= fit["weight"] < 0.5
    # a covariate unrelated to well-measured effects: they stand (weight near 1)
    quiet = observe(0.001)
    noise_x = np.column_stack([np.ones(T), rng.normal(size=T)])
    out_q, fit_q = recipient_prior(T, quiet, S, 0.0, noise_x)
    assert fit_q["weight"] > 0.9 and np.corrcoef(out_q, a)[0, 1] > 0.95
    # the similarity slope is taken out before the effects are averaged
    S2 = rng.random((T, T))
    tilted = [[(i, j, y + 0.5 * S2[i, j]) for i, j, y in s] for s in quiet]
    assert np.allclose(recipient_prior(T, tilted, S2, 0.5, noise_x)[0], out_q)
    assert recipient_prior(T, per[:1], S, 0.0, X) is None  # one seed: its noise is unknown
    assert recipient_prior(4, [[(0, 1, 0.1), (1, 0, 0.2), (2, 3, 0.0), (3, 2, 0.1)]] * 2,
                           np.eye(4), 0.0, np.ones((4, 2))) is None  # 4 tasks, 2 columns


def _rows_with_signatures(ctx, est, latent):
    """Stored rows of a screened estimator's single-task runs whose signatures read
    ``latent[task]`` (plus noise): what the engine would store."""
    rng = np.random.default_rng(0)
    rows = {}
    for c in est.configs(ctx):
        (t,) = c.tasks
        sig = latent[t] + 0.1 * rng.normal(size=latent[t].shape)
        rows[c.run_id()] = {"status": "ok", "tasks": [t], "steps": c.steps, "evals": [
            {"task": t, "min_val_loss": 1.0, "signature": sig.ravel().tolist(),
             "signature_outputs": 1}]}  # fmt: skip
    return rows


def test_screened_trains_alike_partners_chosen_from_the_signatures_then_random_ones():
    from mtlab.advise.estimators import Screened, pending
    from mtlab.runs.config import make_config

    tasks = ("A1", "A2", "A3", "B1", "B2", "B3", "N1")
    base = {"family": "owndata", "dataset": "digit-attributes", "targets": tasks, "steps": 800,
            "patience": 5, "eval_every": 100}  # fmt: skip
    ctx = Context(tasks, (0, 1), lambda **f: make_config({**base, **f}))
    for bad in ({"partners": 0}, {"random": -1}, {"share": 0.0}, {"share": 1.5}, {"rows": 1}):
        with pytest.raises(ValueError, match="screened: partners >= 1"):
            Screened(**bad)
    est = Screened(partners=2, random=1, share=0.09, rows=50)
    first = est.configs(ctx)
    assert [(c.tasks, c.seed, c.method, c.signature) for c in first] == [
        ((t,), s, "stl", 50) for t in tasks for s in (0, 1)]  # fmt: skip
    # the budget: 7 tasks, at most 7 · 3 / 2 pairs a seed, 9 % of the realised pairs' steps
    assert first[0].steps == round(0.09 * 49 / (7 + 2 * 10.5) * 800)
    assert first[0].eval_every == min(100, first[0].steps // 4)
    rng = np.random.default_rng(3)
    za, zb, zn = (rng.normal(size=(50, 1)) for _ in range(3))
    latent = {"A1": za, "A2": za, "A3": za, "B1": zb, "B2": zb, "B3": zb, "N1": zn}
    rows = _rows_with_signatures(ctx, est, latent)
    S = est.similarity(ctx, rows)
    assert S[0, 1] > 0.9 and S[0, 3] < 0.3
    pairs = est.pairs(ctx, rows)
    idx = {t: i for i, t in enumerate(tasks)}
    mates = {(idx[a], idx[b]) for a, b in (("A1", "A2"), ("A1", "A3"), ("A2", "A3"),
                                          ("B1", "B2"), ("B1", "B3"), ("B2", "B3"))}  # fmt: skip
    for s in (0, 1):
        assert mates <= set(pairs[s]) and all(i < j for i, j in pairs[s])
    assert pairs[0] != pairs[1]  # the random partners are drawn per seed
    assert est.pairs(ctx, rows) == pairs == est.pairs(ctx, rows, S)  # and reproducibly
    later = pending([est], ctx, rows)
    assert len(later) == sum(len(p) for p in pairs.values())
    assert {c.method for c in later} == {"mean"} and {c.steps for c in later} == {first[0].steps}


def test_signature_is_only_for_single_task_runs():
    from mtlab.runs.config import make_config

    base = {"family": "owndata", "dataset": "digit-attributes", "targets": ("odd", "ge5")}
    cfg = make_config({**base, "tasks": ("odd",), "signature": 8})
    assert cfg.signature == 8
    # a later field: the runs stored before it keep their ids
    assert "signature" not in make_config({**base, "tasks": ("odd",)}).identity()
    with pytest.raises(ValueError, match="signature"):
        make_config({**base, "tasks": ("odd", "ge5"), "method": "mean", "signature": 8})


def test_the_replicate_ceiling_is_the_spearman_brown_reliability_of_all_seeds():
    from mtlab.advise.estimators import replicate_ceiling

    # two seeds: the split half is one seed's reliability ρ; the ceiling 2ρ / (1 + ρ)
    assert replicate_ceiling(0.32, 2) == pytest.approx(0.64 / 1.32)
    # three seeds: one against two, √(ρ · 2ρ/(1 + ρ)) = r
    c = replicate_ceiling(0.435, 3)
    rho = c / (3 - 2 * c)
    assert math.sqrt(rho * 2 * rho / (1 + rho)) == pytest.approx(0.435)
    assert replicate_ceiling(-0.1, 3) == 0.0 and replicate_ceiling(1.0, 2) == 1.0
    assert math.isnan(replicate_ceiling(0.5, 1)) and math.isnan(replicate_ceiling(math.nan, 3))
    # four seeds: two against two, r is a two-seed mean's reliability; the ceiling doubles it
    assert replicate_ceiling(0.5, 4) == pytest.approx(2 * 0.5 / 1.5)


def test_the_report_states_the_evidence_beside_its_ceiling():
    from mtlab.advise.report import _affinity_text

    row = {"tasks": 48, "spearman": 0.36, "realised_split_half": 0.32, "replicate_ceiling": 0.48,
           "regret": 0.006, "budget": 12, "cost_fraction": 0.087}  # fmt: skip
    text = _affinity_text({"source": "screened", "seeds": 2, "evidence": [row]})
    assert "screened pairs" in text and "not by training every pair" in text
    assert "Spearman 0.36" in text and "a fresh replicate of it would reach 0.48" in text
    assert "9% of the cost" in text
    assert "on 4 seeds" not in text
    row["reference_seeds"] = 4
    assert "realised transfer (on 4 seeds, its own" in _affinity_text(
        {"source": "screened", "seeds": 2, "evidence": [row]})
    del row["replicate_ceiling"], row["reference_seeds"]  # evidence measured before either
    assert "fresh replicate" not in _affinity_text({"source": "screened", "seeds": 2,
                                                    "evidence": [row]})  # fmt: skip


@pytest.mark.slow
def test_estimators_command_judges_against_a_reference_on_more_seeds(tmp_path):
    """``mtlab estimators --reference-seeds 3`` on 2 estimator seeds: the realised pairs on
    seeds 0–2, the estimators on their own two, the cost counted against the realised pairs on
    two seeds; the tables, the note and the figure written; a second call trains nothing."""
    import json

    import pandas as pd

    from mtlab.advise.synthetic import planted_blocks
    from mtlab.cli import main
    from mtlab.runs.store import RunStore

    data = tmp_path / "t.csv"
    planted_blocks(2, 2, 0, 1, rows=400, features=6, kept=0.5).to_csv(data, index=False)
    out = tmp_path / "est"
    args = ["estimators", "--data", str(data), "--targets", "A1,A2,B1,B2,N1", "--out", str(out),
            "--model", "mlp:8", "--seeds", "2", "--reference-seeds", "3", "--steps", "40",
            "--estimators", "short-pairs,screened", "--budgets", "2", "--quiet"]
    assert main(args) == 0
    result = json.loads((out / "estimators.json").read_text())
    assert result["seeds"] == [0, 1] and result["reference_seeds"] == [0, 1, 2]
    r = result["realised"]
    assert r["cost_steps_at_estimator_seeds"] == pytest.approx(r["cost_steps"] * 2 / 3)
    for e in result["estimators"]:
        assert e["cost_fraction"] == pytest.approx(e["cost_steps"]
                                                   / r["cost_steps_at_estimator_seeds"])
    seeds = {row["seed"] for row in RunStore(out).rows()}
    assert seeds == {0, 1, 2, 1000, 1001}  # the estimators never train on the reference's
    assert list(pd.read_csv(out / "estimators.csv")["estimator"]) == ["short-pairs", "screened"]
    assert "the realised pairs on 3" in (out / "estimators.md").read_text()
    assert (out / "estimators.png").stat().st_size > 0
    n = len(RunStore(out).rows())
    assert main(args) == 0 and len(RunStore(out).rows()) == n  # resumed: nothing trained again
    bad = [*args]
    bad[bad.index("--reference-seeds") + 1] = "0"
    with pytest.raises(SystemExit):  # a reference needs a seed
        main(bad)
