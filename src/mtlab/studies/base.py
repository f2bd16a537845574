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


@dataclass(frozen=True)
class Pairing:
    """How the analysis compares runs: every planned run matching ``runs`` (field → allowed
    values; a run matching ``partner`` is exempt) is compared with a run matching ``partner``
    (field → value) that agrees with it on the fields ``on``. A run without that partner would
    be trained and then dropped from the analysis."""

    runs: dict[str, tuple[Any, ...]]
    partner: dict[str, Any]
    on: tuple[str, ...]

    @staticmethod
    def _matches(cfg: RunConfig, where: dict[str, Any], many: bool) -> bool:
        return all(
            (getattr(cfg, k, None) in v) if many else (getattr(cfg, k, None) == v)
            for k, v in where.items()
        )

    def unpaired(self, configs: list[RunConfig]) -> list[RunConfig]:
        """The planned runs this pairing needs a partner for and that have none."""
        key = lambda c: tuple(getattr(c, f, None) for f in self.on)  # noqa: E731
        partners = {key(c) for c in configs if self._matches(c, self.partner, False)}
        return [c for c in configs
                if self._matches(c, self.runs, True) and not self._matches(c, self.partner, False)
                and key(c) not in partners]  # fmt: skip


def unused_runs(configs: list[RunConfig], pairings: tuple[Pairing, ...]) -> list[tuple[str, str]]:
    """(run id, why) for every planned run the analysis could not use: a run without the partner
    a pairing compares it with, and a pretraining run (``method == "pt"``) that no planned run
    depends on."""
    out = []
    for p in pairings:
        out += [(c.run_id(), f"no run with {p.partner} on the same {', '.join(p.on)}")
                for c in p.unpaired(configs)]  # fmt: skip
    needed = {d.run_id() for c in configs for d in c.dependencies()}
    out += [(c.run_id(), "a pretraining run no planned run depends on")
            for c in configs if getattr(c, "method", None) == "pt" and c.run_id() not in needed]
    return out


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

    #: how the analysis compares planned runs (:class:`Pairing`); a contract test checks every
    #: preset's plan against them, so no planned run is trained and then left out
    pairings: ClassVar[tuple[Pairing, ...]] = ()

    def analyze(self, store: RunStore, fig_dir: Path, preset: str) -> Analysis:
        raise NotImplementedError

    def unused(self, configs: list[RunConfig]) -> list[tuple[str, str]]:
        """(run id, why) for every planned run the analysis could not use (:func:`unused_runs`)."""
        return unused_runs(configs, self.pairings)


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
