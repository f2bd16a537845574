"""``summary.csv``: one row per cell of a sweep, written with every report.

A *cell* is one combination of the config fields that vary in the folder's sweep — every one of
them except the seed, so a report never averages over a field the user swept — and of the
evaluation keys that tell a run's evaluations apart (a family's ``eval_keys``: task, split, …).
Per cell: ``n_runs`` (distinct runs), ``n_failed`` (of those, failed) and, over the finished
runs only, the mean and standard error over seeds of each headline metric the families declare
(``<metric>_mean``, ``<metric>_se``). Failed runs never enter a mean; they are counted beside it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mtlab.runs.family import all_families, get_family

#: fields never treated as swept (labels, the seed, bookkeeping)
NOT_SWEPT = frozenset({"seed", "study", "run_id", "status", "reason"})


def _hashable(v: Any) -> Any:
    if isinstance(v, (list, tuple, dict, np.ndarray)):
        return str(list(v) if not isinstance(v, dict) else v)
    return v


def config_fields(results: pd.DataFrame) -> list[str]:
    """The config fields of the families present in ``results`` (in column order)."""
    names = set(results["family"].dropna().unique()) if "family" in results else {"diagonal"}
    fields: set[str] = set()
    for fam in all_families():
        if fam.name in names:
            fields |= set(fam.config_cls.model_fields)
    return [c for c in results.columns if c in fields]


def varying_fields(results: pd.DataFrame, exclude: frozenset[str] = NOT_SWEPT) -> list[str]:
    """The config fields that take more than one value over the runs (None counts as a
    value), the seed and labels excluded."""
    runs = results.drop_duplicates("run_id") if "run_id" in results else results
    out = []
    for c in config_fields(runs):
        if c in exclude:
            continue
        if runs[c].map(_hashable).nunique(dropna=False) > 1:
            out.append(c)
    return out


def _family_rows(results: pd.DataFrame) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Rows to summarise (each family's ``summary_rows``), its evaluation keys and metrics."""
    fams = (
        [get_family(str(n)) for n in results["family"].dropna().unique()]
        if "family" in results
        else [get_family("diagonal")]
    )
    parts, keys, metrics = [], [], []
    for fam in fams:
        part = results[results.family == fam.name] if "family" in results else results
        parts.append(fam.summary_rows(part))
        keys += [k for k in fam.eval_keys if k in results and k not in keys]
        metrics += [m for m in fam.headline if m in results and m not in metrics]
    return pd.concat(parts) if parts else results, keys, metrics


def summary_table(results: pd.DataFrame) -> pd.DataFrame:
    """The ``summary.csv`` table (see the module doc); empty for an empty folder."""
    if results.empty or "run_id" not in results:
        return pd.DataFrame(columns=["n_runs", "n_failed"])
    rows, eval_keys, metrics = _family_rows(results)
    keys = varying_fields(results) + [k for k in eval_keys if rows[k].nunique(dropna=False) > 1]
    rows = rows.assign(**{k: rows[k].map(_hashable) for k in keys})
    failed = rows.status == "failed" if "status" in rows else pd.Series(False, index=rows.index)
    out = []
    groups = rows.groupby(keys, dropna=False, sort=True) if keys else [((), rows)]
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        rec: dict[str, Any] = dict(zip(keys, key, strict=True))
        rec["n_runs"] = int(g.run_id.nunique())
        rec["n_failed"] = int(g[failed.loc[g.index]].run_id.nunique())
        ok = g[~failed.loc[g.index]]
        for m in metrics:
            per_seed = pd.to_numeric(ok[m], errors="coerce").dropna()
            n = len(per_seed)
            rec[f"{m}_mean"] = float(per_seed.mean()) if n else np.nan
            rec[f"{m}_se"] = float(per_seed.std(ddof=1) / np.sqrt(n)) if n > 1 else np.nan
        out.append(rec)
    return pd.DataFrame(out)


def failed_line(results: pd.DataFrame) -> str:
    """ "k of n runs failed (excluded from every mean)" or "" when none failed."""
    if results.empty or "status" not in results:
        return ""
    runs = results.drop_duplicates("run_id")
    k = int((runs.status == "failed").sum())
    return f"{k} of {len(runs)} runs failed (excluded from every mean)" if k else ""


__all__ = ["config_fields", "failed_line", "summary_table", "varying_fields"]
