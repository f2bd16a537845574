"""The family contract: what the executor may ask of a family, and the registry of families.

A *family* (a task family plus its model and regimes) owns one config class and trains *chunks*
of its runs. The executor only ever calls the methods of :class:`Family`:

* :meth:`Family.per_run` — the config fields that may differ between runs of one chunk (the
  family reads them per run); **every other field is part of the group key**, so two configs that
  differ in a field the family reads from the chunk's first config can never share a chunk. The
  group key is derived from this declaration (:meth:`Family.group_key`), never written by hand.
* :meth:`Family.batched` — whether runs of this config are ensembled (``False``: one at a time).
* :meth:`Family.run_chunk` — train a chunk; each finished run goes to ``sink(row, curve, params,
  evals=...)``; it returns nothing (``max_steps`` runs are timing runs and store nothing).
* :meth:`Family.sort_key` (order inside a group: similar runs together) and
  :meth:`Family.bytes_per_run` (memory per run of an ensemble).
* :attr:`Family.columns` — the metric columns every stored row of the family carries (beside the
  config fields, ``run_id`` and ``status``).

The contract tests (``tests/test_family_contract.py``) run over every registered family: a chunk
of runs that differ in one per-run field gives the same rows as each run alone, configs differing
in any other field never share a group key, rows carry the declared columns.

Families are registered by name: the built-in ones lazily (their modules import torch-heavy
code), user ones with :func:`register_family`.
"""

from __future__ import annotations

import importlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Protocol

from torch import Tensor

from mtlab.runs.config import FAMILIES, RunConfig

#: loads a finished dependency's parameters by run id (PT runs for PT+FT)
Pretrained = Callable[[str], dict[str, Tensor]]
#: a run's row, its loss curve, its final parameters and optional evaluation rows
Record = tuple[dict[str, Any], list[dict[str, Any]], dict[str, Tensor], list[dict[str, Any]]]


class RowSink(Protocol):
    """Receives one finished run (the executor stores it)."""

    def __call__(
        self,
        row: dict[str, Any],
        curve: list[dict[str, Any]],
        params: dict[str, Tensor],
        evals: list[dict[str, Any]] | None = None,
    ) -> None: ...


#: bytes of training data per ensemble (bounds every ensemble size)
MEMORY_BUDGET = 2 * 1024**3

#: fields that never affect training (labels): per-run in every family
LABEL_FIELDS = frozenset({"study"})


class Family(ABC):
    """Base class of every family; see the module docstring for the contract."""

    name: ClassVar[str]
    config_cls: ClassVar[type[RunConfig]]
    #: metric columns every row of this family carries
    columns: ClassVar[tuple[str, ...]] = ()
    #: columns that are wall-clock timings or chosen by timing (they differ between identical runs)
    timing_columns: ClassVar[tuple[str, ...]] = ("wall_s",)

    def batched(self, cfg: Any) -> bool:
        """Whether runs of ``cfg``'s kind share ensembles (default: yes)."""
        return True

    @abstractmethod
    def per_run(self, cfg: Any) -> frozenset[str]:
        """Config fields that may differ inside one chunk of ``cfg``'s group."""

    def group_key(self, cfg: RunConfig) -> tuple[tuple[str, str], ...]:
        """Runs with equal keys may share a chunk: every row field not declared per-run."""
        row = cfg.row_fields()
        skip = self.per_run(cfg) | LABEL_FIELDS
        return tuple(
            (k, json.dumps(row[k], sort_keys=True, default=str))
            for k in sorted(row)
            if k not in skip
        )

    def sort_key(self, cfg: Any) -> tuple[Any, ...]:
        """Order inside a group (similar runs next to each other: less zero-padding)."""
        return ()

    #: the metrics a report's ``summary.csv`` gives mean and s.e. of, per cell
    headline: ClassVar[tuple[str, ...]] = ()
    #: evaluation-row fields that tell a run's evaluations apart (cells of ``summary.csv``)
    eval_keys: ClassVar[tuple[str, ...]] = ()

    def summary_rows(self, results: Any) -> Any:
        """The rows of this family's results that ``summary.csv`` summarises (default: all)."""
        return results

    def auto_chunk(self, group: Sequence[Any], device: Any = "cpu") -> int:
        """The ensemble size of ``--chunk auto``: a deterministic cost model (never a timing), so
        the same command trains the same ensembles — and gives bitwise the same numbers — on an
        idle and on a loaded machine. Default: the whole group, at most 64 runs on a CPU (256 on
        a GPU) and within :meth:`memory_cap`."""
        if not group or not self.batched(group[0]):
            return 1
        limit = 256 if str(device).startswith("cuda") else 64
        return int(min(len(group), limit, self.memory_cap(group[0])))

    def memory_cap(self, cfg: Any) -> int:
        """The most runs like ``cfg`` whose data fits in :data:`MEMORY_BUDGET` (at least 1)."""
        return max(1, MEMORY_BUDGET // max(self.bytes_per_run(cfg), 1))

    #: the config fields that drive :meth:`bytes_per_run` (named when a run cannot fit)
    memory_fields: ClassVar[tuple[str, ...]] = ()

    def bytes_per_run(self, cfg: Any) -> int:
        """Bytes of training data one run adds to an ensemble (bounds the ensemble size)."""
        return 1

    @abstractmethod
    def run_chunk(
        self,
        cfgs: Sequence[Any],
        pretrained: Pretrained | None = None,
        sink: RowSink | None = None,
        device: Any = "cpu",
        max_steps: int | None = None,
    ) -> None:
        """Train ``cfgs`` (one group); each finished run goes to ``sink``. ``max_steps`` (timing
        runs) overrides the budget, disables the threshold and stores nothing."""


class SequentialFamily(Family):
    """A family whose runs are not ensembled: the executor hands it one config at a time.
    Subclasses implement :meth:`record` (row, curve, params, evaluation rows)."""

    def batched(self, cfg: Any) -> bool:
        return False

    def per_run(self, cfg: Any) -> frozenset[str]:
        return frozenset(cfg.row_fields())  # one group per family; chunks of one run

    @abstractmethod
    def record(self, cfg: Any, device: Any = "cpu", pretrained: Pretrained | None = None) -> Record:
        """Train and measure one run; ``pretrained(run_id)`` loads a dependency's parameters."""

    def run_chunk(
        self,
        cfgs: Sequence[Any],
        pretrained: Pretrained | None = None,
        sink: RowSink | None = None,
        device: Any = "cpu",
        max_steps: int | None = None,
    ) -> None:
        import time

        for cfg in cfgs:
            t0 = time.perf_counter()
            row, curve, params, evals = self.record(cfg, device, pretrained)
            row["wall_s"] = time.perf_counter() - t0
            if sink is not None:
                sink(row, curve, params, evals=evals)


# ---------------------------------------------------------------------------- registry

_BUILTIN = {
    "diagonal": "mtlab.runs.diagonal",
    "subspace": "mtlab.runs.subspace",
    "mtbench": "mtlab.runs.mtbench",
    "transference": "mtlab.runs.transference",
    "relu": "mtlab.runs.relu",
    "images": "mtlab.runs.images",
    "trajectory": "mtlab.runs.trajectory",
    "owndata": "mtlab.runs.owndata",
}
_REGISTRY: dict[str, Family] = {}


def register_family(family: Family) -> Family:
    """Register ``family`` (and its config class, so sweeps and ``make_config`` know it)."""
    if not isinstance(family, Family):
        raise TypeError(f"{family!r} is not a mtlab.runs.family.Family")
    cls = family.config_cls
    declared = cls.model_fields["family"].default
    if declared != family.name:
        raise ValueError(
            f"family {family.name!r}: its config class {cls.__name__} declares family {declared!r}"
        )
    _REGISTRY[family.name] = family
    FAMILIES[family.name] = cls
    return family


def get_family(name: str) -> Family:
    """The registered family called ``name``."""
    if name not in _REGISTRY and name in _BUILTIN:
        importlib.import_module(_BUILTIN[name])  # registers itself
    if name not in _REGISTRY:
        raise ValueError(f"no family {name!r}; registered: {', '.join(family_names())}")
    return _REGISTRY[name]


def family_of(cfg: RunConfig) -> Family:
    """The family that trains ``cfg``."""
    return get_family(cfg.family)


def family_names() -> list[str]:
    return sorted(set(_BUILTIN) | set(_REGISTRY))


def all_families() -> list[Family]:
    return [get_family(n) for n in family_names()]


__all__ = [
    "LABEL_FIELDS",
    "Family",
    "Pretrained",
    "Record",
    "RowSink",
    "SequentialFamily",
    "all_families",
    "family_names",
    "family_of",
    "get_family",
    "register_family",
]
