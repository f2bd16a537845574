"""The family contract, checked over every registered family (see ``mtlab.runs.family``).

* grouping covers every field that affects training: two configs that differ in one field not
  declared per-run never share a group key;
* a chunk of runs that differ in per-run fields gives the same rows as each run alone (a family
  that reads a per-run field from the chunk's first config fails here);
* rows carry the config fields, ``run_id``, ``status`` and the family's declared columns.

A new family must add tiny example configs to ``EXAMPLES`` (the first test says so).
"""

from __future__ import annotations

import math
import typing
from typing import Any

import numpy as np
import pytest
import torch

from mtlab.runs.config import ConfigError, RunConfig, make_config
from mtlab.runs.family import Family, family_names, get_family, register_family

_DIAG = {
    "family": "diagonal",
    "d": 30,
    "k1": 4,
    "n_aux": 48,
    "n_main": 8,
    "n_val": 20,
    "n_test": 20,
    "max_steps": 60,
    "pt_max_steps": 60,
    "threshold": 0.0,
    "log_every": 20,
}
_RELU = {
    "family": "relu",
    "setting": "identical",
    "width": 8,
    "n_aux": 32,
    "n_main": 8,
    "n_val": 20,
    "n_test": 20,
    "n_rep": 20,
    "max_steps": 40,
    "pt_max_steps": 40,
    "threshold": 0.0,
    "log_every": 20,
    "ridge_alphas": 5,
}


def _own_table() -> dict[str, Any]:
    """A small planted table in a temporary folder, and the own-data fields that read it."""
    import tempfile
    from pathlib import Path

    from mtlab.advise.synthetic import planted_table
    from mtlab.runs.owndata import file_digest

    path = Path(tempfile.mkdtemp(prefix="mtlab-contract-")) / "t.csv"
    planted_table(300, seed=0, missing=0.0)[["x0", "x1", "x2", "x3", "a", "b", "d"]].to_csv(
        path, index=False)  # fmt: skip
    return {"family": "owndata", "data": str(path), "data_sha256": file_digest(path),
            "targets": ("a", "b", "d"), "widths": (8,), "steps": 20, "eval_every": 10,
            "batch_size": 32}  # fmt: skip


_OWN = _own_table()
_PLANTED = ("g0t0", "g0t1", "g0t2", "g1t0", "g1t1", "g1t2", "g2t0", "g2t1", "g2t2")
EXAMPLES: dict[str, list[dict[str, Any]]] = {
    "diagonal": [{**_DIAG, "method": m} for m in ("stl", "mtl", "pt", "ptft", "ptft_lr")],
    "relu": [{**_RELU, "method": m} for m in ("stl", "mtl", "pt", "ptft", "ptft_lr", "ntk")],
    "subspace": [
        {"family": "subspace", "d": 12, "r": 2, "T": 3, "m": 8, "n1": 20, "n2": 20,
         "down_halfspace": (10,), "down_tasks": 1, "n_val": 20, "n_test": 40},
    ],
    "mtbench": [
        {"family": "mtbench", "dataset": "digit-attributes", "widths": (8,), "epochs": 1,
         "batch_size": 256, "diagnostics_every": 50},
    ],
    "transference": [
        {"family": "transference", "widths": (8, 4), "epochs": 1, "batch_size": 128,
         "probe_every": 4, "itmtl": False, "etas": (0.1,)},
    ],
    "images": [
        {"family": "images", "method": "stl", "trunk": "mlp", "widths": (8,), "n_main": 10,
         "max_epochs": 2, "pt_max_epochs": 2, "n_rep": 20},
    ],
    "trajectory": [
        {"family": "trajectory", "steps": 20, "n_early": 4, "n_late": 2, "probe_size": 16,
         "widths": (2,), "n1": 10, "n2": 20, "factors": ("coherence", "grad_norm")},
        {"family": "trajectory", "method": "stl", "task": "t1", "steps": 20, "n_early": 4,
         "n_late": 2, "probe_size": 16, "widths": (2,), "n1": 10, "n2": 20, "factors": ()},
    ],
    "owndata": [
        {**_OWN, "method": "stl", "tasks": ("a",)},
        {**_OWN, "method": "pcgrad", "tasks": ("a", "b", "d"), "probe": True, "probe_every": 5},
        {**_OWN, "method": "ptft", "tasks": ("b",), "source": "a", "rescale": 0.5},
        {"family": "owndata", "dataset": "planted-groups", "targets": _PLANTED,
         "tasks": _PLANTED[:3], "method": "mean", "probe": True, "probe_rule": "optimizer",
         "probe_every": 5, "widths": (8,), "steps": 20, "eval_every": 10, "batch_size": 32},
    ],
}  # fmt: skip


def _examples(name: str) -> list[RunConfig]:
    return [make_config(e) for e in EXAMPLES[name]]


def _mutate(cfg: RunConfig, field: str) -> RunConfig | None:
    """``cfg`` with one field changed to another valid value (None if none is found)."""
    value = getattr(cfg, field)
    info = type(cfg).model_fields[field]
    candidates: list[Any] = []
    if isinstance(value, bool):
        candidates = [not value]
    elif isinstance(value, int):
        candidates = [value + 1, value * 2, max(value - 1, 0)]
    elif isinstance(value, float):
        candidates = [value * 0.5, value * 0.9 if value else 0.1, value + 0.05]
    elif isinstance(value, str):
        args = [
            a
            for t in (info.annotation, *typing.get_args(info.annotation))
            if typing.get_origin(t) is typing.Literal
            for a in typing.get_args(t)
        ]
        candidates = [a for a in args if a != value]
    elif isinstance(value, tuple) and value and all(isinstance(v, int) for v in value):
        candidates = [tuple(v + 1 for v in value)]
    for new in candidates:
        try:
            out = make_config({**cfg.model_dump(), field: new})
        except (ConfigError, ValueError):
            continue
        if out.run_id() != cfg.run_id():
            return out
    return None


class _Collect:
    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self.params: dict[str, dict[str, torch.Tensor]] = {}

    def __call__(self, row, curve, params, evals=None) -> None:
        self.rows[row["run_id"]] = row
        self.params[row["run_id"]] = params


def _train(fam: Family, cfgs: list[RunConfig], pretrained) -> dict[str, dict[str, Any]]:
    sink = _Collect()
    fam.run_chunk(cfgs, pretrained, sink=sink)
    return sink.rows


def _pretrained_loader(cfgs: list[RunConfig]):
    """Trains every dependency of ``cfgs`` once; returns the loader the executor would pass."""
    store: dict[str, dict[str, torch.Tensor]] = {}
    for dep in {d.run_id(): d for c in cfgs for d in c.dependencies()}.values():
        sink = _Collect()
        get_family(dep.family).run_chunk([dep], store.__getitem__, sink=sink)
        store.update(sink.params)
    return store.__getitem__


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or bool(np.isclose(a, b, rtol=1e-4, atol=1e-7))
    return a == b


def test_every_family_has_examples():
    assert set(family_names()) == set(EXAMPLES), "add tiny example configs for the new family"


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_group_key_covers_every_field_not_declared_per_run(name):
    fam = get_family(name)
    for cfg in _examples(name):
        assert fam.group_key(cfg) == fam.group_key(make_config(cfg.model_dump()))
        per_run = fam.per_run(cfg)
        for field in type(cfg).model_fields:
            other = _mutate(cfg, field)
            if other is None or other.method != cfg.method:
                continue
            if field not in per_run and field != "study":
                assert fam.group_key(other) != fam.group_key(cfg), f"{name}: {field}"


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_chunk_equals_runs_alone_and_rows_carry_columns(name):
    torch.manual_seed(0)
    fam = get_family(name)
    for cfg in _examples(name):
        variants = [cfg]
        if fam.batched(cfg):
            for field in sorted(fam.per_run(cfg)):
                other = _mutate(cfg, field)
                if other is not None and fam.group_key(other) == fam.group_key(cfg):
                    variants.append(other)
        else:
            variants.append(make_config({**cfg.model_dump(), "seed": cfg.seed + 1}))
        pretrained = _pretrained_loader(variants)
        together = _train(fam, variants, pretrained)
        assert set(together) == {v.run_id() for v in variants}
        for v in variants:
            alone = _train(fam, [v], pretrained)[v.run_id()]
            row = together[v.run_id()]
            assert set(row) == set(alone)
            diff = [k for k in row if k not in fam.timing_columns and not _same(row[k], alone[k])]
            assert not diff, f"{name}/{cfg.method}: batched != alone in {diff}"
            missing = {"run_id", "status", *fam.columns, *v.row_fields()} - set(row)
            assert not missing, f"{name}: rows lack declared columns {missing}"


def test_register_family_checks_the_config_class():
    from mtlab.runs.config import DiagonalRunConfig

    class Wrong(Family):
        name = "other"
        config_cls = DiagonalRunConfig

        def per_run(self, cfg):
            return frozenset()

        def run_chunk(self, cfgs, pretrained=None, sink=None, device="cpu", max_steps=None):
            return None

    with pytest.raises(ValueError, match="declares family 'diagonal'"):
        register_family(Wrong())
    with pytest.raises(TypeError):
        register_family(object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no family 'nope'"):
        get_family("nope")
