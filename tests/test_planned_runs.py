"""Every planned run enters the analysis: for every study and preset (tiny, quick and the paper
preset, planned without training), no run lacks the partner its analysis compares it with, and
no pretraining run goes unused (issue 24: the trajectories paper preset trained 120 method runs
at angles with no STL run, then dropped them)."""

from __future__ import annotations

import pytest

from mtlab.studies import REGISTRY, get_study
from mtlab.studies.base import StudyInputs

#: studies that need a user's input to plan anything, with the input that plans their presets
NEEDS_INPUT = {"custom": None, "benchmark": None, "affinity": None}
INPUTS = {("images-rescaling", "paper"): StudyInputs(data_dir="/nonexistent/cifar-100-python")}


def plans():
    get_study("diagonal")  # registers the built-in studies
    for name, study in sorted(REGISTRY.items()):
        if name in NEEDS_INPUT:
            continue
        for preset in study.presets:
            yield pytest.param(name, preset, id=f"{name}-{preset}")


@pytest.mark.parametrize(("name", "preset"), list(plans()))
def test_every_planned_run_enters_the_analysis(name, preset):
    study = get_study(name)
    configs = study.configs(preset, inputs=INPUTS.get((name, preset)))
    assert configs, f"{name} --preset {preset} plans no run"
    unused = study.unused(configs)
    assert not unused, f"{len(unused)} planned runs of {name} --preset {preset} would be " \
        f"dropped, e.g. {unused[:3]}"


def test_a_plan_with_a_missing_partner_is_caught():
    """The check can fail: without its STL runs, every other run of the diagonal plan has no
    partner; without PT+FT at s = 1, the rescaled runs have none; a trajectories method run at
    an angle with no STL run has none; a pretraining run nobody finetunes from is unused."""
    diagonal = get_study("diagonal")
    plan = diagonal.configs("tiny")
    no_stl = [c for c in plan if c.method != "stl"]
    assert len(diagonal.unused(no_stl)) == sum(c.method in ("mtl", "ptft", "ptft_lr")
                                               for c in plan)  # fmt: skip
    no_s1 = [c for c in plan if not (c.method == "ptft" and c.rescale == 1.0)]
    assert {why for _, why in diagonal.unused(no_s1)} == {
        "no run with {'method': 'ptft', 'rescale': 1.0} on the same setting, n_main, seed"}
    pt = next(d for c in plan for d in c.dependencies() if d.method == "pt")
    orphan = pt.model_copy(update={"seed": 99})  # the executor adds pretraining as dependencies
    assert diagonal.unused([*plan, orphan]) == [
        (orphan.run_id(), "a pretraining run no planned run depends on")]
    traj = get_study("trajectories")
    tplan = traj.configs("tiny")
    stray = next(c for c in tplan if c.method not in ("stl", "sum")).model_copy(
        update={"angle": 45.0})  # a method run at an angle with neither STL nor baseline
    assert traj.unused([*tplan, stray]) == [
        (stray.run_id(), f"no run with {{'method': '{m}'}} on the same setting, angle, dataset, "
                         "seed") for m in ("stl", "sum")]
