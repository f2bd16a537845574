"""Studies: a grid of run configs per preset, plus an analysis that turns results into figures
and verdicts on the paper's claims. A study never trains or measures by itself — it calls the
library (runs, theory, measure) and the report layer renders what it returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from mtlab.report.analysis import Analysis
from mtlab.runs.config import RunConfig
from mtlab.runs.store import RunStore


@dataclass(frozen=True)
class Preset:
    """A named size of a study; ``seeds`` is the default number of seeds."""

    name: str
    description: str
    seeds: int
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StudyInputs:
    """What a user may give a study beside its preset and seed count (one signature for every
    study: :meth:`Study.configs`). A study lists the fields it reads in ``Study.inputs``; the CLI
    refuses the others before any work."""

    data_dir: str | None = None
    dataset: str | None = None
    methods: tuple[str, ...] | None = None
    tasks: tuple[str, ...] | None = None
    data_path: str | None = None
    widths: tuple[int, ...] | None = None
    lr: float | None = None
    batch_size: int | None = None
    #: your own data: the :class:`~mtlab.runs.config.OwnDataRunConfig` fields every run shares
    #: (the data's identity and the training settings; ``mtlab.cli.owndata.read``)
    owndata: dict[str, Any] | None = None

    def given(self) -> set[str]:
        return {k for k, v in self.__dict__.items() if v is not None}


class Study:
    """Base class: subclasses set ``name``, ``description``, ``presets`` (and ``inputs``, the
    :class:`StudyInputs` fields they read), and implement :meth:`configs` and :meth:`analyze`."""

    name: str = ""
    description: str = ""
    presets: ClassVar[dict[str, Preset]] = {}
    paper: str = ""
    inputs: ClassVar[frozenset[str]] = frozenset()

    def preset(self, name: str) -> Preset:
        if name not in self.presets:
            raise ValueError(
                f"study {self.name!r} has no preset {name!r}; allowed: {', '.join(self.presets)}"
            )
        return self.presets[name]

    def n_seeds(self, preset: str, seeds: int | None) -> int:
        """``seeds`` if given (must be >= 1), else the preset's default."""
        n = seeds if seeds is not None else self.preset(preset).seeds
        if n < 1:
            raise ValueError(f"seeds must be >= 1; got {n}")
        return n

    def check_inputs(self, inputs: StudyInputs | None) -> StudyInputs:
        """``inputs`` (or the empty default); ``ValueError`` for a field this study does not read."""
        inputs = inputs or StudyInputs()
        extra = sorted(inputs.given() - self.inputs)
        if extra:
            flags = ", ".join("--" + e.replace("_", "-") for e in extra)
            raise ValueError(f"study {self.name!r} takes no {flags}")
        return inputs

    def configs(
        self, preset: str, seeds: int | None = None, inputs: StudyInputs | None = None
    ) -> list[RunConfig]:
        raise NotImplementedError

    def analyze(self, store: RunStore, fig_dir: Path, preset: str) -> Analysis:
        raise NotImplementedError


def offset_seeds(configs: list[RunConfig], offset: int) -> list[RunConfig]:
    """The same runs on seeds shifted by ``offset`` (seeds ``offset … offset + n − 1`` instead of
    ``0 … n − 1``): a disjoint draw of every random choice a run makes, its dependencies
    included (they are derived from the run)."""
    if offset < 0:
        raise ValueError(f"the seed offset must be >= 0 (got {offset})")
    return [c.model_copy(update={"seed": c.seed + offset}) for c in configs] if offset else configs


REGISTRY: dict[str, Study] = {}


def register(study: Study) -> Study:
    REGISTRY[study.name] = study
    return study


def get_study(name: str) -> Study:
    from mtlab import studies  # noqa: F401  (registers the built-in studies)

    if name not in REGISTRY:
        raise ValueError(f"unknown study {name!r}; registered: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]
