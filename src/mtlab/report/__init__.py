"""Layer 4: reports (Markdown, self-contained HTML, claims.json) from a study's analysis."""

from mtlab.report.document import md_table, write_report

__all__ = ["md_table", "write_report"]
