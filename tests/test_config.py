import pytest

from mtlab.runs import ConfigError, expand, load_sweep, make_config


@pytest.mark.parametrize(
    "bad,field",
    [
        ({"n_main": -3}, "n_main"),
        ({"n_main": 0}, "n_main"),
        ({"method": "foo"}, "method"),
        ({"rescale": 0}, "rescale"),
        ({"rescale": -1.0}, "rescale"),
        ({"init_scale": 0}, "init_scale"),
        ({"setting": "nested_subset", "k2": 40}, "k2"),
        ({"k2": 1001}, "k2"),
        ({"k1": 2000}, "k1"),
        ({"setting": "new_dims", "overlap": 2}, "overlap"),
        ({"setting": "partial_overlap", "k2": 10, "overlap": 11}, "overlap"),
        ({"optimizer": "lbfgs"}, "optimizer"),
        ({"bogus": 1}, "bogus"),
        ({"momentum": 1.0}, "momentum"),
        ({"family": "resnet"}, "family"),
    ],
)
def test_invalid_values_name_the_field(bad, field):
    with pytest.raises(ConfigError) as err:
        make_config(bad)
    assert field in str(err.value)


def test_setting_defaults_are_resolved():
    c = make_config({"setting": "nested_subset"})
    assert (c.k2, c.overlap, c.main_signs) == (5, 5, "same")
    c = make_config({"setting": "partial_overlap"})
    assert (c.k2, c.overlap) == (40, 20)
    c = make_config({"setting": "new_dims", "k2": 8})
    assert (c.k2, c.overlap, c.main_signs) == (8, 0, "random")
    assert make_config({"setting": "all_aux"}).k2 == 40


def test_readout_rule():
    assert make_config({"method": "ptft", "rescale": 0.1}).readout_init == pytest.approx(1e-4)
    assert (
        make_config({"method": "ptft", "rescale": 0.1, "readout_rule": "fixed"}).readout_init
        == 1e-3
    )
    assert make_config({"method": "ptft", "rescale": 0.1, "readout_init": 0.5}).readout_init == 0.5


def test_irrelevant_fields_dedupe_and_pretraining_is_shared():
    a = make_config({"method": "stl", "rescale": 0.1})
    b = make_config({"method": "stl", "rescale": 1.0})
    assert a.run_id() == b.run_id() and a.row_fields()["rescale"] is None
    assert (
        make_config({"method": "ptft", "rescale": 0.1}).run_id()
        != make_config({"method": "ptft", "rescale": 1.0}).run_id()
    )
    ft1 = make_config({"method": "ptft", "setting": "new_dims", "n_main": 16})
    ft2 = make_config({"method": "ptft_lr", "setting": "identical", "n_main": 64})
    assert ft1.pretraining().run_id() == ft2.pretraining().run_id()
    assert (
        make_config({"method": "ptft", "seed": 1}).pretraining().run_id()
        != ft1.pretraining().run_id()
    )
    assert [d.method for d in ft1.dependencies()] == ["pt"]
    assert make_config({"method": "mtl"}).dependencies() == []


def test_sweep_expansion_and_union(tmp_path):
    spec = {
        "study": "mine",
        "seeds": 2,
        "base": {"d": 100, "k1": 10},
        "grids": [
            {"method": ["stl", "mtl"], "n_main": [8, 16]},
            {"method": ["ptft"], "rescale": [1.0, 0.1], "n_main": [8]},
        ],
    }
    cfgs = expand(spec)
    assert len(cfgs) == (4 + 2) * 2
    assert {c.study for c in cfgs} == {"mine"} and {c.d for c in cfgs} == {100}
    # points resolving to the same run are run once
    assert len(expand({"grid": {"method": ["stl"], "rescale": [1.0, 0.5]}})) == 1
    path = tmp_path / "s.yaml"
    path.write_text("base: {d: 50, k1: 5}\ngrid:\n  n_main: [4, 8]\n")
    _, cfgs = load_sweep(path)
    assert sorted(c.n_main for c in cfgs) == [4, 8]


@pytest.mark.parametrize(
    "spec,msg",
    [
        ({"grid": {"n_main": [8, -1]}}, "grid point 1 (n_main=-1): n_main"),
        ({"grid": {"n_main": 8}}, "must be a non-empty list"),
        ({"grid": {"n_main": []}}, "must be a non-empty list"),
        ({"gird": {}}, "unknown key"),
        ({"grid": {}, "grids": []}, "either 'grid' or 'grids'"),
        ({"seeds": 0}, "seeds"),
        ({"seeds": 2, "grid": {"seed": [0]}}, "seeds"),
        ({"base": [1, 2]}, "base"),
        ([1, 2], "mapping"),
    ],
)
def test_sweep_errors(spec, msg):
    with pytest.raises(ConfigError, match=msg.replace("(", r"\(").replace(")", r"\)")):
        expand(spec)


def test_load_sweep_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="no such sweep file"):
        load_sweep(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("grid: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_sweep(bad)


def test_example_sweeps_validate():
    from pathlib import Path

    files = sorted((Path(__file__).parents[1] / "examples").glob("*.yaml"))
    assert files
    for f in files:
        _, cfgs = load_sweep(f)
        assert cfgs
