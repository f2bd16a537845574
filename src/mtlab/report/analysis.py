"""What a report shows: an :class:`Analysis` — checked :class:`Claim` s, :class:`Section` s of
prose, figures and tables, and a summary line. Studies, ``mtlab advise`` and the benchmark build
one; :mod:`mtlab.report.document` renders it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

HOLDS, CONTRADICTED, INCONCLUSIVE = "holds", "contradicted", "inconclusive"
#: a claim's verdict: the data support it, the data go against it, or they cannot tell
VERDICTS = (HOLDS, CONTRADICTED, INCONCLUSIVE)


def as_verdict(value: bool | str) -> str:
    """A verdict from a rule's answer: one of :data:`VERDICTS`, or a bool (True: holds, False:
    contradicted — for a rule whose test can only hold or fail)."""
    if isinstance(value, str):
        if value not in VERDICTS:
            raise ValueError(f"verdict {value!r}: allowed {', '.join(VERDICTS)}")
        return value
    return HOLDS if value else CONTRADICTED


@dataclass
class Claim:
    """One checked claim: its text, its verdict (:data:`VERDICTS`) and the numbers behind it."""

    id: str
    text: str
    verdict: str
    evidence: dict[str, Any]
    figure: str | None = None
    source: str = ""

    def __post_init__(self) -> None:
        self.verdict = as_verdict(self.verdict)

    @property
    def holds(self) -> bool:
        return self.verdict == HOLDS

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "text": self.text,
            "verdict": self.verdict,
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


def verdict_counts(verdicts: list[str]) -> dict[str, int]:
    """How many of each verdict, in :data:`VERDICTS` order."""
    return {v: sum(x == v for x in verdicts) for v in VERDICTS}


__all__ = ["CONTRADICTED", "HOLDS", "INCONCLUSIVE", "VERDICTS", "Analysis", "Claim", "Section",
           "as_verdict", "verdict_counts"]  # fmt: skip
