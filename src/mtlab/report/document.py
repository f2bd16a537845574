"""Render a study's :class:`~mtlab.studies.base.Analysis` as ``report.md``, a self-contained
``report.html`` (figures embedded) and ``claims.json``."""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from typing import Any

from mtlab.report.analysis import CONTRADICTED, HOLDS, INCONCLUSIVE, Analysis, Claim

MARKS = {HOLDS: "✅", CONTRADICTED: "❌", INCONCLUSIVE: "❔"}
CSS = {HOLDS: "ok", CONTRADICTED: "no", INCONCLUSIVE: "un"}


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "–"
        return f"{v:.3g}"
    return str(v)


def md_table(df: Any) -> str:
    """A pandas DataFrame (index kept) as a GitHub-flavoured Markdown table."""
    df = df.reset_index()
    cols = [str(c) if not isinstance(c, tuple) else "/".join(map(str, c)) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(_fmt(v) for v in row) + " |")
    return "\n".join(lines)


def _rounded(obj: Any) -> Any:
    if isinstance(obj, float):
        return float(f"{obj:.3g}") if math.isfinite(obj) else str(obj)
    if isinstance(obj, dict):
        return {k: _rounded(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_rounded(v) for v in obj]
    return obj


def _json_safe(obj: Any) -> Any:
    """NaN/inf → None so that claims.json is strict JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    return obj


def _evidence(ev: dict[str, Any]) -> str:
    """The evidence as compact JSON with 3 significant digits (claims.json keeps full precision)."""
    return json.dumps(_rounded(ev), default=str, ensure_ascii=False)


def _claims_md(claims: list[Claim]) -> str:
    lines = ["| claim | verdict | evidence |", "|---|---|---|"]
    for c in claims:
        ev = _evidence(c.evidence).replace("|", "\\|")
        lines.append(
            f"| **{c.id}** — {c.text} | {MARKS[c.verdict]} {c.verdict} | `{ev}` |"
        )
    return "\n".join(lines)


def write_report(
    root: Path, *, study: str, preset: str, analysis: Analysis, meta: dict[str, Any]
) -> dict[str, Path]:  # long: the Markdown and HTML templates of one document
    """Write ``claims.json``, ``report.md`` and ``report.html`` into ``root``."""
    root = Path(root)
    claims_path = root / "claims.json"
    claims_path.write_text(
        json.dumps(
            _json_safe(
                {
                    "study": study,
                    "preset": preset,
                    "summary": analysis.summary,
                    "claims": [c.to_json() for c in analysis.claims],
                }
            ),
            indent=2,
            default=str,
            allow_nan=False,
        )
    )

    title = f"mtlab study `{study}` — preset `{preset}`"
    md = [f"# {title}", ""]
    for k, v in meta.items():
        md.append(f"- **{k}**: {v}")
    md += ["", analysis.summary, ""]
    if analysis.claims:
        md += ["## Claims", "", _claims_md(analysis.claims), ""]
    for s in analysis.sections:
        md += [f"## {s.title}", "", s.text, ""]
        for f in s.figures:
            md += [f"![{f}](figures/{f})", ""]
        for caption, table in s.tables:
            md += [f"*{caption}*", "", md_table(table), ""]
    (root / "report.md").write_text("\n".join(md))

    def img(name: str) -> str:
        path = root / "figures" / name
        if not path.exists():
            return f"<p>(missing figure {html.escape(name)})</p>"
        data = base64.b64encode(path.read_bytes()).decode()
        return f'<img alt="{html.escape(name)}" src="data:image/png;base64,{data}">'

    h = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>",
        "body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}",
        "table{border-collapse:collapse;font-size:13px;margin:.5em 0 1.5em}",
        "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}",
        "img{max-width:100%} .ok{color:#080;font-weight:bold} .no{color:#b00;font-weight:bold}",
        ".un{color:#a60;font-weight:bold}",
        "code{font-size:12px}</style></head><body>",
        f"<h1>{html.escape(title)}</h1><ul>",
    ]
    h += [f"<li><b>{html.escape(str(k))}</b>: {html.escape(str(v))}</li>" for k, v in meta.items()]
    h += ["</ul>", f"<p>{html.escape(analysis.summary)}</p>"]
    if analysis.claims:
        h += ["<h2>Claims</h2><table><tr><th>claim</th><th>verdict</th><th>evidence</th></tr>"]
        for c in analysis.claims:
            verdict = f"<span class={CSS[c.verdict]}>{c.verdict}</span>"
            h.append(
                f"<tr><td style='text-align:left'><b>{html.escape(c.id)}</b> — "
                f"{html.escape(c.text)}</td><td>{verdict}</td>"
                f"<td style='text-align:left'><code>{html.escape(_evidence(c.evidence))}"
                "</code></td></tr>"
            )
        h.append("</table>")
    for s in analysis.sections:
        h += [f"<h2>{html.escape(s.title)}</h2>", f"<p>{html.escape(s.text)}</p>"]
        h += [img(f) for f in s.figures]
        for caption, table in s.tables:
            h += [
                f"<p><i>{html.escape(caption)}</i></p>",
                table.to_html(float_format=lambda v: f"{v:.3g}", na_rep="–"),
            ]
    h.append("</body></html>")
    (root / "report.html").write_text("\n".join(h))
    return {"claims": claims_path, "md": root / "report.md", "html": root / "report.html"}
