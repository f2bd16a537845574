"""What a report shows: an :class:`Analysis` — checked :class:`Claim` s, :class:`Section` s of
prose, figures and tables, and a summary line. Studies, ``mtlab advise`` and the benchmark build
one; :mod:`mtlab.report.document` renders it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Claim:
    """One checked claim: its text, a true/false verdict and the numbers behind it."""

    id: str
    text: str
    verdict: bool
    evidence: dict[str, Any]
    figure: str | None = None
    source: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "text": self.text,
            "verdict": bool(self.verdict),
            "evidence": self.evidence,
            "figure": self.figure,
            "source": self.source,
        }


@dataclass
class Section:
    """A block of the report: heading, prose, figures (file names under figures/), tables."""

    title: str
    text: str = ""
    figures: list[str] = field(default_factory=list)
    tables: list[tuple[str, Any]] = field(default_factory=list)  # (caption, DataFrame)


@dataclass
class Analysis:
    claims: list[Claim]
    sections: list[Section]
    summary: str = ""


__all__ = ["Analysis", "Claim", "Section"]
