"""The advice folder: ``advice.json``, tables (Parquet and CSV), figures and a self-contained
``report.html`` / ``report.md`` that say the recommendation in plain words with its evidence —
the fair single-task baseline, the null controls behind every credited partner or source, and the
non-neural reference beside them."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from mtlab.advise.rules import CLEAR_MARGIN_SE, STABLE_FRACTION
from mtlab.report.analysis import Analysis, Section
from mtlab.report.document import _json_safe, write_report
from mtlab.report.plotting import heatmap, mean_se, panel_grid, plt, save

ADVICE_KEYS = ("tasks", "groupings", "per_task")
COLOURS = {"reference": "tab:green", "stl": "tab:grey", "mtl": "tab:blue", "ptft": "tab:orange"}


def candidates_table(advice: dict[str, Any]) -> pd.DataFrame:
    """One row per task × candidate × seed (validation and test metric); ``control`` names the
    tasks whose labels a null control permuted (empty for a candidate)."""
    rows = []
    for task, cands in advice["candidates"].items():
        for c in cands:
            for seed, (v, t, n) in enumerate(zip(c["val"], c["test"], c["steps_done"],
                                                 strict=True)):  # fmt: skip
                rows.append({
                    "task": task, "regime": c["regime"], "partners": ",".join(c["partners"]),
                    "method": c["method"], "source": c["source"], "rescale": c["rescale"],
                    "init_scale": c["init_scale"], "control": ",".join(c["control"]),
                    "label": _label(c), "seed": seed, "failed": not math.isfinite(v),
                    "val_metric": v, "test_metric": t, "steps_done": n,
                })  # fmt: skip
    return pd.DataFrame(rows)


def _label(c: dict[str, Any]) -> str:
    regime = c["regime"]
    null = c.get("control") or []
    if regime == "reference":
        return "tree model (HistGradientBoosting)"
    if regime == "stl":
        return f"STL, initial scale ×{c['init_scale']:g}"
    if regime in ("ptft", "pretrain_rescale"):
        src = c.get("source") or c.get("pretrained_on")
        what = f"PT+FT from {'null ' if null else ''}{src} s={c['rescale']:g}"
        return what if regime == "ptft" else f"pretrain (on {src}) and rescale s={c['rescale']:g}"
    partners = [f"null {p}" if p in null else p for p in c["partners"]]
    return f"MTL +{','.join(partners)} ({c['method']})"


def _num(v: float | None) -> str:
    return "—" if v is None or not math.isfinite(v) else f"{v:.3f}"


def _control_text(d: dict[str, Any], regime: str) -> str:
    """The null controls of the judged candidate of ``regime``, in words."""
    j = d["judged"].get(regime)
    if j is None:
        return ""
    parts = []
    for unit, c in j["controls"].items():
        if not c["trained"]:
            parts.append(f"{unit}'s null control was not trained (time budget)")
            continue
        verdict = "credited" if c["credited"] else "not credited"
        parts.append(
            f"with {unit}'s labels permuted it reaches {_num(c['val'])} on validation, and the "
            f"candidate {c['val_gain_over_control']:+.3f} ± {c['val_gain_over_control_se']:.3f} "
            f"more ({unit} {verdict})"
        )
    return "; ".join(parts)


def _sentence(task: str, d: dict[str, Any]) -> str:
    metric = d["metric"]
    se = "" if not math.isfinite(d["se"]) else f" ± {d['se']:.3f}"
    alone = (f"alone (initial scale ×{d['stl_scale']:g}) {_num(d['stl'])}")
    ref = d.get("reference")
    tree = ""
    if ref is not None:
        tree = f" The tree model reaches {_num(ref['test'])}."
        if d.get("reference_beats_networks"):
            tree = (f" A tree model is better on this task than any shared network tried "
                    f"(test {_num(ref['test'])}, validation {_num(ref['val'])}).")  # fmt: skip
    best = d["best_candidate"]
    if not d["clear"]:
        if best["regime"] == "stl":
            why = "no candidate that earned its place beat training it alone on validation"
        else:
            why = (f"the best candidate that earned its place ({_label({**best, 'control': []})}) "
                   f"gained {d['val_gain_over_stl']:+.3f} ± {d['val_gain_se']:.3f} on "
                   f"validation — within {CLEAR_MARGIN_SE:g} standard errors, so no clear winner")
        uncredited = [
            f"{_label({**j['candidate'], 'control': []})} ({_control_text(d, r)})"
            for r, j in d["judged"].items() if r == "mtl" and not j["credited"]
        ]  # fmt: skip
        extra = (" MTL was not eligible: " + "; ".join(uncredited) + ".") if uncredited else ""
        return (f"**{task}**: train it alone (test {metric} {d['recommended']:.3f}{se}, initial "
                f"scale ×{d['stl_scale']:g}); {why}.{extra}{tree}")  # fmt: skip
    gain = (f"validation gain {d['val_gain_over_stl']:+.3f} ± {d['val_gain_se']:.3f} over the "
            f"fair STL, more than {CLEAR_MARGIN_SE:g} standard errors")  # fmt: skip
    if d["regime"] == "pretrain_rescale":
        return (
            f"**{task}**: pretrain and rescale — {_label(d)}: test {metric} "
            f"{d['recommended']:.3f}{se} vs {alone} ({gain}). The gain is the procedure's, not "
            f"{d['pretrained_on']}'s: {_control_text(d, 'ptft')}.{tree}"
        )
    return (f"**{task}**: {_label(d)} — test {metric} {d['recommended']:.3f}{se} vs {alone} "
            f"({gain}); {_control_text(d, d['regime'])}.{tree}")  # fmt: skip


ESTIMATED = {
    "surrogate": "a surrogate model of the transfer: random subsets of the tasks trained "
                 "together, and per task a linear model of its loss change in which tasks were "
                 "trained with it (Li, Nguyen & Zhang 2023)",
    "first-order": "the first-order lookahead affinity from MTL on all tasks",
    "linearised": "a linearised (Grad-TAG-style) estimate from MTL on all tasks",
    "screened": "screened pairs: each task trained with the tasks whose single-task networks "
                "answer most alike on the same inputs, and with random others; the transfer "
                "of the pairs not trained is filled in from what any partner does to the task "
                "(drawn toward what its loss alone predicts) plus how alike the two are",
}


def _evidence_text(aff: dict[str, Any]) -> str:
    """What the estimator measured against the realised transfer on the planted tables."""
    rows = aff.get("evidence") or []
    if not rows:
        return ""
    def ceiling(r: dict[str, Any]) -> str:
        c = r.get("replicate_ceiling")
        return "" if c is None else f"; a fresh replicate of it would reach {c:.2f}"

    def seeds(r: dict[str, Any]) -> str:
        n = r.get("reference_seeds")
        return "" if n is None else f"on {n} seeds, "

    parts = [f"{r['tasks']} tasks: Spearman {r['spearman']:.2f} with the realised transfer "
             f"({seeds(r)}its own split-half reliability {r['realised_split_half']:.2f}"
             f"{ceiling(r)}), "
             "grouping regret "
             f"{r['regret']:.0%} at {r['budget']} groups, at {r['cost_fraction']:.0%} of the cost "
             "of training every pair" for r in rows]  # fmt: skip
    return (" Measured against the realised transfer on planted tables (" + "; ".join(parts)
            + "; `python benchmarks/transfer_estimators.py`).")  # fmt: skip


def _estimated(source: str) -> str | None:
    """What an estimate other than the realised transfer is, in words (None: the realised
    transfer itself, or the lookahead)."""
    if source in ESTIMATED:
        return ESTIMATED[source]
    from mtlab.advise.estimators import ESTIMATORS

    fraction = getattr(ESTIMATORS[source](), "fraction", None) if source in ESTIMATORS else None
    if fraction is None:
        return None
    return (f"short trainings of every pair: each pair trained together, and each task alone, "
            f"for {fraction:.0%} of the step budget")  # fmt: skip


def _affinity_text(aff: dict[str, Any]) -> str:
    n = aff["seeds"]
    if aff["source"] == "lookahead":
        return (f"Grouped by the lookahead affinity from MTL on all tasks ({n} seeds)."
                + _evidence_text(aff))  # fmt: skip
    if (what := _estimated(aff["source"])) is not None:
        return (f"Grouped by {what} ({n} seeds), not by training every pair to the end (too "
                "many pairs)." + _evidence_text(aff))  # fmt: skip
    r = aff.get("lookahead_vs_used_corr")
    corr = "" if r is None or not math.isfinite(r) else (
        f" The lookahead affinity measured in MTL on all tasks correlates r = {r:.2f} with it "
        "(off-diagonal entries)."
    )  # fmt: skip
    return (
        f"Grouped by the realised pairwise transfer: each pair of tasks trained together "
        f"({n} seeds), entry = 1 − (the recipient's validation loss with the source) / (alone, "
        "at the same initial scale)." + corr
    )


def _figures(advice: dict[str, Any], cands: pd.DataFrame, fig_dir: Path) -> dict[str, str]:
    tasks = advice["tasks"]
    pairs = advice["affinity"]["source"] == "pairs"
    fig, ax = plt().subplots(figsize=(0.7 * len(tasks) + 3, 0.6 * len(tasks) + 2.5),
                             layout="constrained")  # fmt: skip
    source = "source (trained with this task …)" if pairs else "source (a step on this task …)"
    label = {"pairs": "realised pairwise transfer", "lookahead": "lookahead affinity"}.get(
        advice["affinity"]["source"], f"estimated transfer ({advice['affinity']['source']})")
    heatmap(ax, advice["affinity"]["mean"], tasks, label,
            se=advice["affinity"]["se"] if len(tasks) <= 8 else None, xlabel=source)  # fmt: skip
    out = {"affinity": save(fig, fig_dir, "affinity.png")}

    budgets = sorted(int(b) for b in advice["groupings"])
    fig, ax = plt().subplots(figsize=(5, 3.2), layout="constrained")
    ax.plot(budgets, [advice["groupings"][str(b)]["value"] for b in budgets], "o-")
    ax.axvline(advice["budget"], color="grey", ls=":", label="trained")
    ax.set_xlabel("budget (networks)")
    ax.set_ylabel("grouping value (mean affinity)")
    ax.legend()
    out["grouping"] = save(fig, fig_dir, "grouping_value.png")

    # the fair STL against the reference, per task: shown whatever else was trained
    fig, ax = plt().subplots(figsize=(max(5.0, 0.55 * len(tasks) + 2), 3.4), layout="constrained")
    x = range(len(tasks))
    for k, (what, colour) in enumerate((("stl", COLOURS["stl"]),
                                        ("recommended", "tab:purple"),
                                        ("reference", COLOURS["reference"]))):  # fmt: skip
        ys = [advice["per_task"][t][what] if what != "reference"
              else (advice["per_task"][t]["reference"] or {}).get("test", math.nan)
              for t in tasks]  # fmt: skip
        ax.bar([i + (k - 1) * 0.27 for i in x], ys, width=0.27, color=colour,
               label={"stl": "fair STL", "recommended": "recommended",
                      "reference": "tree model"}[what])  # fmt: skip
    ax.set_xticks(list(x), tasks, rotation=45 if len(tasks) > 8 else 0, fontsize=8)
    ax.set_ylabel("test metric (accuracy or R²)")
    ax.legend(fontsize=7)
    out["overview"] = save(fig, fig_dir, "overview.png")

    fig, axes = panel_grid(len(tasks), size=(5.2, 0.9 + 0.22 * cands.groupby("task")["label"]
                                             .nunique().max()))  # fmt: skip
    for ax, task in zip(axes, tasks, strict=True):
        d = cands[cands.task == task]
        labels = []
        for y, ((label, regime, control), rows) in enumerate(d.groupby(
                ["label", "regime", "control"], sort=False)):  # fmt: skip
            m, se, _ = mean_se(rows.test_metric.tolist())
            colour = COLOURS.get(str(regime), "k")
            ax.errorbar([m], [y], xerr=[se], fmt="s" if control else "o", color=colour,
                        mfc="white" if control else colour, ms=5, capsize=2)  # fmt: skip
            labels.append(label)
        stl = advice["per_task"][task]["stl"]
        if math.isfinite(stl):
            ax.axvline(stl, color="0.2", lw=0.8, ls=":", label="fair STL")
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        ax.invert_yaxis()
        ax.grid(axis="x", alpha=0.3)
        ax.set_xlabel(f"test {advice['per_task'][task]['metric']} (mean ± s.e. over seeds)")
        ax.set_title(f"{task}: {advice['per_task'][task]['regime']}", fontsize=9)
    out["per_task"] = save(fig, fig_dir, "per_task.png")
    return out


def _only_stl(advice: dict[str, Any], cands: pd.DataFrame) -> str | None:
    """Why no multi-task candidate was trained, when none was (else None)."""
    if cands.regime.isin(["mtl", "ptft"]).any():
        return None
    why = []
    if advice["skipped"]:
        why.append("the later stages did not fit in the time budget (" +
                   "; ".join(advice["skipped"]) + ")")  # fmt: skip
    else:
        why.append("no task's group held a partner that clearly helped it, and no PT+FT "
                   "source was tried")  # fmt: skip
    return ("No multi-task or PT+FT candidate was trained, only the measurements: " + "; ".join(why) +
            ". What was measured is shown: the pairwise matrix, and STL against the reference.")


def write_advice(advice: dict[str, Any], out: Path, meta: dict[str, Any]) -> dict[str, Path]:
    """Write everything of one advice into ``out``; returns the main paths."""
    out = Path(out)
    cands = candidates_table(advice)
    cands.to_parquet(out / "candidates.parquet", index=False)
    cands.to_csv(out / "candidates.csv", index=False)
    groupings = pd.DataFrame([
        {"budget": int(b), "groups": " | ".join(",".join(g) for g in v["groups"]),
         "value": v["value"], "optimal": v["optimal"], "bound": v["bound"],
         "seeds_agree": v["seeds_agree"], "stable": v["stable"]}
        for b, v in advice["groupings"].items()
    ])  # fmt: skip
    groupings.to_csv(out / "groupings.csv", index=False)
    verify = pd.DataFrame(advice["verification"])
    verify.to_csv(out / "verification.csv", index=False)
    A = pd.DataFrame(advice["affinity"]["mean"], index=advice["tasks"], columns=advice["tasks"])
    A.to_csv(out / "affinity.csv")
    look = advice["affinity"]["lookahead"]["mean"]
    pd.DataFrame(look, index=advice["tasks"], columns=advice["tasks"]).to_csv(
        out / "lookahead_affinity.csv"
    )
    public = {k: advice[k] for k in advice if k != "candidates"}
    (out / "advice.json").write_text(json.dumps(_json_safe(public), indent=2, default=str))
    figures = _figures(advice, cands, out / "figures")
    per_task = pd.DataFrame([
        {"task": t, "regime": d["regime"], "partners": ",".join(d["partners"]),
         "source": d["source"] or d["pretrained_on"], "rescale": d["rescale"],
         "method": d["method"], "metric": d["metric"], "fair STL": d["stl"],
         "STL scale": d["stl_scale"], "recommended": d["recommended"], "se": d["se"],
         "tree model": (d["reference"] or {}).get("test", math.nan), "clear": d["clear"]}
        for t, d in advice["per_task"].items()
    ]).set_index("task")  # fmt: skip
    controls = pd.DataFrame([
        {"task": t, "candidate": _label({**j["candidate"], "control": []}), "null of": unit,
         "candidate val": j["val"], "null val": c.get("val"),
         "gain over null": c.get("val_gain_over_control"),
         "se": c.get("val_gain_over_control_se"), "credited": c["credited"]}
        for t, d in advice["per_task"].items() for j in d["judged"].values()
        for unit, c in j["controls"].items()
    ])  # fmt: skip
    b = advice["budget"]
    g = advice["groupings"][str(b)]
    stable = (
        f"{g['seeds_agree']:.0%} of the seeds' own matrices choose it"
        + ("" if g["stable"] else f" (fewer than {STABLE_FRACTION:.0%}: not distinguishable "
           "from the groupings the other seeds chose — act on it with care)")
    )  # fmt: skip
    agree = int(verify["agree"].sum()) if len(verify) else 0
    tuning = pd.DataFrame([{"regime": k, "tuned on validation": v}
                           for k, v in advice["tuning"].items()]).set_index("regime")  # fmt: skip
    only = _only_stl(advice, cands)
    sections = [
        Section("Recommendation", "\n\n".join(
            [*([only] if only else []), *(_sentence(t, advice["per_task"][t])
                                          for t in advice["tasks"])]),
                figures=[figures["overview"]],
                tables=[("per task (test split; chosen on validation)", per_task)]),
        Section(
            "What each regime was tuned over",
            f"Every regime had its settings chosen on the validation split. The shared networks "
            f"start at initial scale ×{advice['network_scale']:g}, the scale best for "
            "single-task training over all tasks; each task's fair STL is its own best scale.",
            tables=[("tuning per regime", tuning)],
        ),
        Section(
            "Null controls",
            "A partner (MTL) or a source (PT+FT) is credited with a gain only if the candidate "
            f"beats the same procedure with that task's training labels permuted by more than "
            f"{CLEAR_MARGIN_SE:g} standard errors (paired by seed). A PT+FT gain its null source "
            "matches is the pretraining-and-rescaling's (recommended as such); an MTL candidate "
            "with a partner that is not credited is not recommended.",
            tables=[("the best candidates against their null controls (validation)", controls)]
            if len(controls) else [],
        ),
        Section(
            "Which tasks together",
            f"{_affinity_text(advice['affinity'])} At budget {b}: "
            f"{' | '.join(','.join(x) for x in g['groups'])} — {stable}. A task alone scores 0 "
            "(no transfer).",
            figures=[figures["affinity"], figures["grouping"]],
            tables=[("best grouping per budget", groupings.set_index("budget"))],
        ),
        Section(
            "Prediction vs reality",
            f"The groups of budget {b} were trained: the sign of the predicted affinity matched the "
            f"sign of the realised validation change for {agree} of {len(verify)} task(s)."
            if len(verify) else "No group of two or more tasks below all tasks was trained.",
            tables=[("predicted affinity vs realised change (validation)", verify)]
            if len(verify) else [],
        ),
        Section("Every candidate", "Each candidate's test metric (mean ± s.e. over seeds; the "
                "choice itself was made on validation). Grey: STL at each initial scale (the "
                "dotted line is the fair STL); green: the tree model; blue: MTL; orange: PT+FT; "
                "open squares: null controls.", figures=[figures["per_task"]]),
    ]  # fmt: skip
    if advice["skipped"]:
        sections.append(Section("Skipped for the time budget", "; ".join(advice["skipped"])))
    if advice.get("notes"):
        sections.append(Section("Notes", "\n\n".join(advice["notes"])))
    failed = int(cands["failed"].sum())
    trees = sum(bool(d.get("reference_beats_networks")) for d in advice["per_task"].values())
    summary = (
        f"{sum(d['clear'] for d in advice['per_task'].values())} of {len(advice['tasks'])} tasks "
        f"have a clear winner over the fair STL; the tree model beats every network on {trees}; "
        f"{advice['seconds']:.0f} s."
        + (
            f" {failed} per-task result(s) came from trainings that diverged; they are left out "
            "of every mean and rule."
            if failed
            else ""
        )
    )
    paths = write_report(out, study="advise", preset="custom", meta=meta,
                         analysis=Analysis([], sections, summary))  # fmt: skip
    return {"advice": out / "advice.json", **paths}


__all__ = ["ADVICE_KEYS", "candidates_table", "write_advice"]
