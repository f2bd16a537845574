"""A run folder's report: its study's analysis of the stored results, ``summary.csv``, and the
documents (``report.md``, ``report.html``, ``claims.json``) — what every command that trains
writes at its end and ``mtlab report OUT`` rewrites."""

from __future__ import annotations

import datetime as _dt
import json
import platform
from pathlib import Path

from mtlab import __version__


def make_report(out: Path) -> dict[str, Path]:
    """Analyse the results in ``out`` with its study and write figures + report."""
    import torch

    from mtlab.report import write_report
    from mtlab.runs.store import RunStore
    from mtlab.studies import get_study
    from mtlab.studies.summary import failed_line, summary_table

    store = RunStore(out)
    cfg = store.read_config()
    study = get_study(cfg["study"])
    preset = cfg.get("preset", "yaml")
    analysis = study.analyze(store, out / "figures", preset)
    sessions = out / "sessions.json"
    history = json.loads(sessions.read_text()) if sessions.exists() else []
    df = store.results()
    store.write_csv("summary.csv", summary_table(df))
    failed = failed_line(df)
    if failed:  # counted beside every mean: in the summary line and in every claim's evidence
        analysis.summary = f"{analysis.summary} {failed}.".strip()
        n_failed = int((df.drop_duplicates("run_id").status == "failed").sum())
        for claim in analysis.claims:
            claim.evidence = {**claim.evidence, "failed_runs_excluded": n_failed}
    n_runs = int(df.run_id.nunique()) if "run_id" in df else 0
    described = preset in study.presets
    meta = {
        "command": cfg.get("command", ""),
        "paper": getattr(study, "paper", "") or "—",
        "preset": f"{preset}: {study.presets[preset].description}" if described else preset,
        "runs stored": f"{n_runs} ({failed or 'none failed'})",
        "training wall time (s)": round(sum(h.get("seconds", 0.0) for h in history), 1),
        "report written": _dt.datetime.now().isoformat(timespec="seconds"),
        "software": f"mtlab {__version__}, torch {torch.__version__}, Python "
        f"{platform.python_version()}",
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
    }
    return write_report(out, study=study.name, preset=preset, analysis=analysis, meta=meta)


__all__ = ["make_report"]
