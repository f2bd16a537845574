"""Run ids are a folder's identity: a refactor that changed them would make every existing folder
train its runs again. ``tests/data/run_ids.json`` pins, per study preset and per example sweep,
the number of planned runs (dependencies included) and a digest of their sorted ids, recorded
before the one-engine refactor (issue 22). Re-pinned on purpose since: ``trajectories/paper``
(issue 24: its method runs moved to angles that have STL and baseline runs); ``trajectories``
tiny / quick / paper (issue 24: runs measured with half the probe and on all parameters added —
every earlier id is still planned, so existing folders resume and train only the new runs)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from mtlab.runs.executor import expand_dependencies
from mtlab.runs.sweep import load_sweep
from mtlab.studies import get_study
from mtlab.studies.base import StudyInputs

ROOT = Path(__file__).resolve().parents[1]
PINNED = json.loads((ROOT / "tests" / "data" / "run_ids.json").read_text())


def _digest(configs) -> dict:
    ids = sorted({c.run_id() for phase in expand_dependencies(configs) for c in phase})
    return {"runs": len(ids), "sha256": hashlib.sha256("\n".join(ids).encode()).hexdigest()}


@pytest.mark.parametrize("key", sorted(PINNED["studies"]))
def test_study_run_ids_unchanged(key):
    name, preset = key.split("/")
    inputs = None
    if name == "images-rescaling" and preset == "paper":  # reads CIFAR-100 from a folder
        inputs = StudyInputs(data_dir="/nonexistent/cifar")
    assert _digest(get_study(name).configs(preset, inputs=inputs)) == PINNED["studies"][key]


@pytest.mark.parametrize("path", sorted(PINNED["sweeps"]))
def test_example_sweep_run_ids_unchanged(path):
    _, configs = load_sweep(ROOT / path)
    assert _digest(configs) == PINNED["sweeps"][path]
