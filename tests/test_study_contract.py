"""The study contract, checked over every registered study (``mtlab.studies.base.Study``):

* every preset plans valid configs of registered families, labelled with the study, with
  distinct run ids (dependencies included), through the one ``configs(preset, seeds, inputs)``
  signature;
* a study refuses inputs it does not declare, before any work;
* ``--dry-run`` counts exactly the planned runs (dependencies included) and writes nothing.
"""

from __future__ import annotations

import re

import pytest

from mtlab.cli import main
from mtlab.runs.executor import expand_dependencies
from mtlab.runs.family import family_names
from mtlab.studies import REGISTRY
from mtlab.studies.base import StudyInputs

STUDIES = sorted(n for n in REGISTRY if n != "custom")
# presets that read user files need an input that names them
NEEDS = {("images-rescaling", "paper"): StudyInputs(data_dir="/nonexistent")}


def _plan(name: str, preset: str):
    study = REGISTRY[name]
    return study.configs(preset, 1, NEEDS.get((name, preset)))


@pytest.mark.parametrize("name", STUDIES)
def test_every_preset_plans_valid_distinct_runs(name):
    study = REGISTRY[name]
    assert "tiny" in study.presets, f"{name}: every study has a tiny preset"
    for preset in study.presets:
        cfgs = _plan(name, preset)
        assert cfgs, f"{name}/{preset} plans no run"
        assert {c.family for c in cfgs} <= set(family_names())
        assert {c.study for c in cfgs} == {name}
        ids = [c.run_id() for c in cfgs]
        assert len(ids) == len(set(ids)), f"{name}/{preset}: duplicate runs"
        for c in cfgs:  # a config survives the round trip through its results row
            assert type(c).model_validate(c.model_dump()).run_id() == c.run_id()


@pytest.mark.parametrize("name", STUDIES)
def test_undeclared_inputs_are_refused(name):
    study = REGISTRY[name]
    for field in ("data_dir", "dataset", "methods"):
        if field in study.inputs:
            continue
        value = ("mean",) if field == "methods" else "x"
        with pytest.raises(ValueError, match="takes no --"):
            study.configs("tiny", 1, StudyInputs(**{field: value}))


@pytest.mark.parametrize("name", STUDIES)
def test_dry_run_counts_the_planned_runs_and_writes_nothing(name, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["reproduce", name, "--preset", "tiny", "--out", str(out), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    n = int(re.search(r"(\d+) runs", printed).group(1))
    planned = sum(len(p) for p in expand_dependencies(_plan(name, "tiny")))
    assert n == planned
    assert not out.exists()


@pytest.mark.parametrize("name", STUDIES)
def test_report_builds_from_a_folder_without_finished_runs(name, tmp_path):
    """A study's analysis never assumes a complete table: an empty store gives a report (the
    end-to-end tiny tests build each study's report from a stored table of real runs)."""
    from mtlab.report.analysis import Analysis
    from mtlab.runs.store import RunStore

    store = RunStore(tmp_path / "out")
    analysis = REGISTRY[name].analyze(store, tmp_path / "out" / "figures", "tiny")
    assert isinstance(analysis, Analysis) and analysis.summary
