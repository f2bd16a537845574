"""Layer 2: what a report shows (:mod:`~mtlab.report.analysis`), how it is rendered (Markdown,
self-contained HTML, ``claims.json``: :mod:`~mtlab.report.document`) and the plotting helpers
every figure uses (:mod:`~mtlab.report.plotting`)."""

from mtlab.report.analysis import Analysis, Claim, Section
from mtlab.report.document import md_table, write_report

__all__ = ["Analysis", "Claim", "Section", "md_table", "write_report"]
