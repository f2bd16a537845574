import pytest
import torch

from mtlab.tasks import (
    SETTINGS,
    SparseTeacherSpec,
    Split,
    TaskData,
    linear_task,
    rms_normalised_gaussian,
    sample_teachers,
    setting_defaults,
    task_inputs,
)
from mtlab.tasks.sparse_teacher import default_overlap


def _pair(setting, seed=0, d=200, k1=20, normalisation="l2"):
    dflt = setting_defaults(setting, k1)
    overlap = (
        dflt["overlap"] if dflt["overlap"] is not None else default_overlap(setting, dflt["k2"])
    )
    spec = SparseTeacherSpec(
        d=d,
        k1=k1,
        k2=dflt["k2"],
        overlap=overlap,
        main_signs=dflt["main_signs"],
        normalisation=normalisation,
    )
    return spec, sample_teachers(spec, seed, setting)


@pytest.mark.parametrize("setting", SETTINGS)
def test_teacher_supports_overlap_and_signs(setting):
    spec, tp = _pair(setting)
    assert set(tp.beta_aux.nonzero().flatten().tolist()) == set(tp.support_aux.tolist())
    assert set(tp.beta_main.nonzero().flatten().tolist()) == set(tp.support_main.tolist())
    assert tp.support_aux.numel() == spec.k1 and tp.support_main.numel() == spec.k2
    shared = set(tp.support_aux.tolist()) & set(tp.support_main.tolist())
    assert len(shared) == spec.overlap
    assert torch.allclose(tp.beta_aux.norm(), torch.tensor(1.0, dtype=torch.float64))
    assert torch.allclose(tp.beta_main.norm(), torch.tensor(1.0, dtype=torch.float64))
    idx = torch.tensor(sorted(shared), dtype=torch.long)
    same = torch.sign(tp.beta_aux[idx]) == torch.sign(tp.beta_main[idx])
    if spec.main_signs == "same":
        assert same.all()
    if setting == "identical":
        assert torch.equal(tp.beta_aux, tp.beta_main)
    if setting == "all_aux":
        assert not same.all()  # a different function of the same features


def test_aux_teacher_is_shared_across_settings_and_seeds_differ():
    a = {s: _pair(s)[1].beta_aux for s in SETTINGS}
    assert all(torch.equal(a["identical"], v) for v in a.values())
    assert not torch.equal(_pair("identical", seed=1)[1].beta_aux, a["identical"])
    assert torch.equal(
        _pair("new_dims", seed=5)[1].beta_main, _pair("new_dims", seed=5)[1].beta_main
    )


def test_l1_normalisation():
    _, tp = _pair("nested_subset", normalisation="l1")
    assert float(tp.beta_aux.abs().sum()) == pytest.approx(1.0)
    assert float(tp.beta_main.abs().sum()) == pytest.approx(1.0)


def test_spec_validation():
    with pytest.raises(ValueError, match="overlap"):
        SparseTeacherSpec(d=100, k1=10, k2=5, overlap=6)
    with pytest.raises(ValueError, match="k2"):
        SparseTeacherSpec(d=100, k1=10, k2=101, overlap=0)
    with pytest.raises(ValueError, match="do not fit"):
        SparseTeacherSpec(d=20, k1=15, k2=10, overlap=0)
    with pytest.raises(ValueError, match="unknown setting"):
        setting_defaults("bogus", 10)


def test_inputs_are_rms_normalised_and_deterministic():
    x = rms_normalised_gaussian(50, 30, torch.Generator().manual_seed(0))
    assert torch.allclose((x**2).mean(1), torch.ones(50, dtype=torch.float64))
    assert torch.equal(
        task_inputs(3, "main", "train", 16, 30), task_inputs(3, "main", "train", 16, 30)
    )
    assert not torch.equal(
        task_inputs(3, "main", "train", 16, 30), task_inputs(3, "main", "test", 16, 30)
    )
    with pytest.raises(ValueError, match="sample count"):
        task_inputs(0, "main", "train", -1, 30)


def test_linear_task_targets_and_noise():
    beta = torch.zeros(30, dtype=torch.float64)
    beta[:3] = 1.0
    t = linear_task("main", beta, 0, {"train": 20, "test": 10})
    assert torch.allclose(t["train"].y, t["train"].x @ beta)
    noisy = linear_task("main", beta, 0, {"train": 2000}, noise=0.5)
    resid = noisy["train"].y - noisy["train"].x @ beta
    assert float(resid.std()) == pytest.approx(0.5, rel=0.1)
    with pytest.raises(KeyError, match="no split"):
        t["val"]


def test_split_and_taskdata_validation():
    with pytest.raises(ValueError, match=r"\(n, d\) or \(n, C, H, W\)"):
        Split(torch.zeros(3), torch.zeros(3))
    with pytest.raises(ValueError, match=r"got shape \(3, 2, 2\)"):
        Split(torch.zeros(3, 2, 2), torch.zeros(3))
    assert Split(torch.zeros(3, 1, 4, 4), torch.zeros(3)).n == 3  # images
    with pytest.raises(ValueError, match="rows"):
        Split(torch.zeros(3, 2), torch.zeros(4))
    td = TaskData("a", {"train": Split(torch.zeros(3, 2), torch.zeros(3))})
    assert td["train"].n == 3
