"""The advice folder: ``advice.json``, tables (Parquet and CSV), figures and a self-contained
``report.html`` / ``report.md`` that say the recommendation in plain words with its evidence."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from mtlab.advise.rules import CLEAR_MARGIN_SE, STABLE_FRACTION
from mtlab.report.analysis import Analysis, Section
from mtlab.report.document import _json_safe, write_report
from mtlab.report.plotting import heatmap, panel_grid, plt, save

ADVICE_KEYS = ("tasks", "groupings", "per_task")


def candidates_table(advice: dict[str, Any]) -> pd.DataFrame:
    """One row per task × candidate × seed (validation and test metric)."""
    rows = []
    for task, cands in advice["candidates"].items():
        for c in cands:
            for seed, (v, t) in enumerate(zip(c["val"], c["test"], strict=True)):
                rows.append({
                    "task": task, "regime": c["regime"], "partners": ",".join(c["partners"]),
                    "method": c["method"], "source": c["source"], "rescale": c["rescale"],
                    "steps": c.get("steps"), "seed": seed, "failed": not math.isfinite(v),
                    "val_metric": v, "test_metric": t,
                })  # fmt: skip
    return pd.DataFrame(rows)


def _label(c: dict[str, Any]) -> str:
    if c["regime"] == "stl":
        steps = c.get("steps")
        return "STL" if steps is None or steps != steps else f"STL ({int(steps)} steps)"
    if c["regime"] == "ptft":
        return f"PT+FT from {c['source']} s={c['rescale']:g}"
    return f"MTL +{','.join(c['partners'])} ({c['method']})"


def _sentence(task: str, d: dict[str, Any]) -> str:
    metric = d["metric"]
    se = "" if not math.isfinite(d["se"]) else f" ± {d['se']:.3f}"
    best = d["best_candidate"]
    if not d["clear"]:
        if best["regime"] == "stl" and best.get("steps"):
            why = (
                f"trained alone for {best['steps']} steps (as long as pretraining plus "
                "finetuning) it did at least as well as every alternative on validation"
            )
        elif best["regime"] == "stl":
            why = "nothing beat training it alone on validation"
        else:
            why = (f"the best alternative ({_label({**best})}) gained {d['val_gain_over_stl']:+.3f} "
                   f"± {d['val_gain_se']:.3f} on validation — within {CLEAR_MARGIN_SE:g} standard "
                   "errors, so no clear winner")  # fmt: skip
        alone = "train it alone" + (f" for {d['steps']} steps" if d.get("steps") else "")
        return f"**{task}**: {alone} (test {metric} {d['recommended']:.3f}{se}); {why}."
    what = _label(d)
    return (
        f"**{task}**: {what} — test {metric} {d['recommended']:.3f}{se} vs {d['stl']:.3f} alone"
        + (f" for {d['stl_steps']} steps" if d.get("stl_steps") else "")
        + " "
        f"(validation gain {d['val_gain_over_stl']:+.3f} ± {d['val_gain_se']:.3f}, more than "
        f"{CLEAR_MARGIN_SE:g} standard errors)."
    )


def _affinity_text(aff: dict[str, Any]) -> str:
    n = aff["seeds"]
    if aff["source"] == "lookahead":
        return f"Grouped by the lookahead affinity from MTL on all tasks ({n} seeds)."
    r = aff.get("lookahead_vs_used_corr")
    corr = "" if r is None or not math.isfinite(r) else (
        f" The lookahead affinity measured in MTL on all tasks correlates r = {r:.2f} with it "
        "(off-diagonal entries)."
    )  # fmt: skip
    return (
        f"Grouped by the realised pairwise transfer: each pair of tasks trained together "
        f"({n} seeds), entry = 1 − (the recipient's validation loss with the source) / (alone)."
        + corr
    )


def _figures(advice: dict[str, Any], cands: pd.DataFrame, fig_dir: Path) -> list[str]:
    tasks = advice["tasks"]
    pairs = advice["affinity"]["source"] == "pairs"
    fig, ax = plt().subplots(figsize=(1.2 * len(tasks) + 2, 1.1 * len(tasks) + 1.5),
                             layout="constrained")  # fmt: skip
    source = "source (trained with this task …)" if pairs else "source (a step on this task …)"
    heatmap(ax, advice["affinity"]["mean"], tasks,
            "realised pairwise transfer" if pairs else "lookahead affinity",
            se=advice["affinity"]["se"], xlabel=source)  # fmt: skip
    save(fig, fig_dir, "affinity.png")

    budgets = sorted(int(b) for b in advice["groupings"])
    fig, ax = plt().subplots(figsize=(5, 3.2), layout="constrained")
    ax.plot(budgets, [advice["groupings"][str(b)]["value"] for b in budgets], "o-")
    ax.axvline(advice["budget"], color="grey", ls=":", label="trained")
    ax.set_xlabel("budget (networks)")
    ax.set_ylabel("grouping value (mean affinity)")
    ax.legend()
    save(fig, fig_dir, "grouping_value.png")

    fig, axes = panel_grid(len(tasks), size=(4.6, 3.4))
    for ax, task in zip(axes, tasks, strict=True):
        d = cands[cands.task == task]
        stl = d[(d.regime == "stl") & d.steps.isna()].set_index("seed")["test_metric"]
        groups = d.groupby(["regime", "partners", "method", "source", "rescale", "steps"],
                           dropna=False, sort=False)  # fmt: skip
        means, ses, labels = [], [], []
        for key, rows in groups:
            regime, partners, method, source, rescale, steps = key
            if regime == "stl" and steps != steps:  # the baseline itself (NaN steps)
                continue
            c = {"regime": regime, "partners": partners.split(",") if partners else [],
                 "method": method, "source": source, "rescale": rescale,
                 "steps": steps}  # fmt: skip
            diff = (rows.set_index("seed")["test_metric"] - stl).dropna()  # paired; no failed
            labels.append(_label(c))
            means.append(diff.mean())
            ses.append(diff.std(ddof=1) / math.sqrt(len(diff)) if len(diff) > 1 else 0)
        ax.barh(range(len(means)), means, xerr=ses, color="tab:blue", alpha=0.7)
        ax.axvline(0, color="0.3", lw=0.8)
        ax.set_yticks(range(len(means)), labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel(f"test {advice['per_task'][task]['metric']} − STL (mean ± s.e. over seeds)")
        ax.set_title(f"{task}: alone {stl.mean():.3f}")
    save(fig, fig_dir, "per_task.png")
    return ["affinity.png", "grouping_value.png", "per_task.png"]


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
    per_task = pd.DataFrame(advice["per_task"]).T[
        ["regime", "partners", "source", "rescale", "method", "metric", "stl", "recommended", "se",
         "clear"]
    ]  # fmt: skip
    b = advice["budget"]
    g = advice["groupings"][str(b)]
    stable = (
        f"{g['seeds_agree']:.0%} of the seeds' own matrices choose it"
        + ("" if g["stable"] else f" (fewer than {STABLE_FRACTION:.0%}: not distinguishable "
           "from the groupings the other seeds chose — act on it with care)")
    )  # fmt: skip
    agree = int(verify["agree"].sum()) if len(verify) else 0
    sections = [
        Section("Recommendation", "\n\n".join(_sentence(t, advice["per_task"][t])
                                              for t in advice["tasks"]),
                tables=[("per task (test split; chosen on validation)", per_task)]),
        Section(
            "Which tasks together",
            f"{_affinity_text(advice['affinity'])} At budget {b}: "
            f"{' | '.join(','.join(x) for x in g['groups'])} — {stable}. A task alone scores 0 "
            "(no transfer).",
            figures=figures[:2],
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
        Section("Every candidate", "Each candidate's test metric minus STL's, paired by seed "
                "(mean ± s.e.); the choice itself was made on validation.",
                figures=figures[2:]),
    ]  # fmt: skip
    if advice["skipped"]:
        sections.append(Section("Skipped for the time budget", "; ".join(advice["skipped"])))
    if advice.get("notes"):
        sections.append(Section("Notes", "\n\n".join(advice["notes"])))
    failed = int(cands["failed"].sum())
    summary = (
        f"{sum(d['clear'] for d in advice['per_task'].values())} of {len(advice['tasks'])} tasks "
        f"have a clear winner over training alone; {advice['seconds']:.0f} s."
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
