"""Deep-network rescaling check: CIFAR loader, ResNet-18, aux/main image splits, the phase loop,
the images family and study."""

import json
import pickle

import numpy as np
import pandas as pd
import pytest
import torch

from mtlab.cli import main
from mtlab.loop import rescale_
from mtlab.models.multitask import MultiTaskNet
from mtlab.models.resnet import resnet18_trunk
from mtlab.runs.config import ConfigError, make_config
from mtlab.runs.images import build_net
from mtlab.tasks.base import DataError
from mtlab.tasks.images import load_aux_main, split_aux_main
from mtlab.tasks.loaders import load_cifar, save_cifar
from mtlab.train.transfer import Phase, PhaseTrainConfig, mtl_aux_weight, train_phases


def _fake_cifar(tmp_path, n_classes=5, per_class=6, test_per_class=2):
    g = np.random.default_rng(0)
    y = np.repeat(np.arange(n_classes), per_class)
    yt = np.repeat(np.arange(n_classes), test_per_class)
    x = g.integers(0, 256, (len(y), 3, 32, 32), dtype=np.uint8)
    xt = g.integers(0, 256, (len(yt), 3, 32, 32), dtype=np.uint8)
    save_cifar(tmp_path, x, y, xt, yt, [f"class{i}" for i in range(n_classes)])
    return x, y, xt, yt


def test_cifar_loader_reads_the_python_pickle_layout(tmp_path):
    x, y, xt, yt = _fake_cifar(tmp_path)
    for where in (tmp_path, tmp_path / "cifar-100-python"):  # the folder or its parent
        d = load_cifar(where)
        assert np.array_equal(d["x_train"], x) and np.array_equal(d["y_train"], y)
        assert np.array_equal(d["x_test"], xt) and np.array_equal(d["y_test"], yt)
        assert d["classes"] == [f"class{i}" for i in range(5)]


def test_cifar_loader_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="no such directory"):
        load_cifar(tmp_path / "missing")
    _fake_cifar(tmp_path)
    root = tmp_path / "cifar-100-python"
    (root / "test").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="test: not a CIFAR python-pickle"):
        load_cifar(tmp_path)
    with open(root / "test", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 10), np.uint8), b"fine_labels": [0, 1]}, f)
    with pytest.raises(DataError, match=r"\(n, 3072\)"):
        load_cifar(tmp_path)
    with open(root / "test", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 3072), np.uint8)}, f)
    with pytest.raises(DataError, match="missing key 'fine_labels'"):
        load_cifar(tmp_path)
    with open(root / "test", "wb") as f:
        pickle.dump({b"data": np.zeros((1, 3072), np.uint8), b"fine_labels": [9]}, f)
    with pytest.raises(DataError, match="outside"):
        load_cifar(tmp_path)
    (root / "meta").unlink()
    with pytest.raises(DataError, match="meta: no such file"):
        load_cifar(tmp_path)
    with pytest.raises(ValueError, match="variant"):
        load_cifar(tmp_path, variant="cifar1000")


def test_cifar_split_for_the_study(tmp_path):
    _fake_cifar(tmp_path)
    d = load_aux_main("cifar100", seed=3, data_dir=str(tmp_path))
    assert d.input_shape == (3, 32, 32)
    assert len(d.y_main_pool) == 12 and len(d.y_main_test) == 4 and len(d.aux_classes) == 3
    assert set(d.main_classes).isdisjoint(d.aux_classes)
    assert float(d.x_aux.min()) >= -1 and float(d.x_aux.max()) <= 1  # (x − 0.5)/0.5
    with pytest.raises(ValueError, match="needs data_dir"):
        load_aux_main("cifar100", 0)


def test_digit_split_varies_with_seed_and_is_nested_and_balanced():
    a, b = load_aux_main("digits", 0), load_aux_main("digits", 1)
    assert a.main_classes != b.main_classes
    assert len(a.aux_classes) == 8 and a.input_shape == (1, 8, 8)
    x10, y10 = a.main_train(10)
    x50, _ = a.main_train(50)
    assert torch.equal(x50[:10], x10)  # n_main sets are nested
    assert int(y10.sum()) == 5  # balanced prefix
    assert set(a.y_aux.tolist()) == set(range(8))
    # main test images are not in the main training pool
    pool = {tuple(r) for r in a.x_main_pool.flatten(1).tolist()}
    assert not any(tuple(r) in pool for r in a.x_main_test.flatten(1).tolist())
    with pytest.raises(ValueError, match="n_main must be"):
        a.main_train(10_000)


def test_split_aux_main_maps_labels():
    x = np.zeros((12, 1, 2, 2), np.float32)
    y = np.arange(12) % 4
    d = split_aux_main(x, y, x, y, 4, seed=0)
    assert set(d.y_main_pool.tolist()) == {0, 1} and set(d.y_aux.tolist()) == {0, 1}


def test_resnet18_trunk_and_multitask_net():
    trunk = resnet18_trunk(3, base=4)
    assert trunk(torch.randn(2, 3, 32, 32)).shape == (2, 32)
    n_conv = sum(
        isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3) for m in trunk.modules()
    )
    assert n_conv == 17  # stem + 8 blocks × 2: with the head, the 18 weight layers
    net = MultiTaskNet((3, 32, 32), [2, 98], "resnet18", (4,))
    z, logits = net(torch.randn(2, 3, 32, 32))
    assert z.shape == (2, 32) and logits[0].shape == (2, 2) and logits[1].shape == (2, 98)
    with pytest.raises(ValueError, match="base width"):
        resnet18_trunk(3, base=0)


def test_rescale_scales_every_parameter_not_buffers():
    net = MultiTaskNet((3, 32, 32), [2, 3], "resnet18", (2,))
    net.train()
    net(torch.randn(4, 3, 32, 32))  # move the BatchNorm statistics
    before = {k: v.clone() for k, v in net.state_dict().items()}
    rescale_(net, 0.25)
    params = dict(net.named_parameters())
    for k, v in net.state_dict().items():
        want = 0.25 * before[k] if k in params else before[k]
        assert torch.equal(v, want), k


def test_train_phases_converges_and_weights_aux():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 1, 4, 4, generator=g)
    y = (x.flatten(1)[:, 0] > 0).long()
    net = MultiTaskNet((1, 4, 4), [2, 3], "mlp", (16,))
    res = train_phases(
        net, [Phase(x, y, 0, 1.0, 8)], PhaseTrainConfig(lr=0.1, max_epochs=500, loss_threshold=0.05)
    )
    assert res.status == "converged" and res.final_loss < 0.05 and res.steps == 5 * res.epochs
    assert mtl_aux_weight(10, 1280) == pytest.approx(1 / 10)
    assert mtl_aux_weight(256, 1280) == pytest.approx(2 / 10)
    with pytest.raises(ValueError, match="matching"):
        Phase(x, y[:3], 0)


def test_images_config_errors():
    with pytest.raises(ConfigError, match="data_dir: source 'cifar100' needs"):
        make_config({"family": "images", "source": "cifar100"})
    with pytest.raises(ConfigError, match="resnet18 is for 32"):
        make_config({"family": "images", "trunk": "resnet18"})
    c = make_config({"family": "images", "method": "ptft", "rescale": 0.25, "n_main": 20})
    assert (
        c.pretraining().run_id()
        == make_config({"family": "images", "method": "ptft", "rescale": 2.0, "n_main": 200})
        .pretraining()
        .run_id()
    )


def test_build_net_is_seeded():
    c = make_config({"family": "images", "trunk": "mlp", "widths": [8]})
    d = load_aux_main("digits", 0)
    a, b = build_net(c, d), build_net(c, d)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_images_study_tiny_end_to_end(tmp_path, capsys):
    out = tmp_path / "img"
    args = ["reproduce", "images-rescaling", "--preset", "tiny", "--out", str(out), "--quiet"]
    assert main(args) == 0
    claims = json.loads((out / "claims.json").read_text())["claims"]
    assert {c["id"] for c in claims} == {
        "images.small_s_helps",
        "images.large_s_hurts",
        "images.nested_signature",
        "images.mtl_small_n",
    }
    df = pd.read_parquet(out / "results.parquet")
    assert set(df.method) == {"pt", "stl", "mtl", "ptft"} and set(df.trunk) == {"mlp", "cnn"}
    ft = df[df.method == "ptft"]
    assert ft[["pr_pre", "pr_post", "ensd", "test_acc"]].notna().all().all()
    for f in ("images_rescaling.png", "images_pr_ensd.png"):
        assert (out / "figures" / f).exists()


def test_images_paper_preset_needs_data_dir(tmp_path, capsys):
    out = tmp_path / "x"
    assert main(["reproduce", "images-rescaling", "--preset", "paper", "--out", str(out)]) == 2
    assert "--data-dir" in capsys.readouterr().err
    assert (
        main(
            [
                "reproduce",
                "relu-nested",
                "--preset",
                "tiny",
                "--data-dir",
                str(tmp_path),
                "--out",
                str(out),
            ]
        )
        == 2
    )
    assert "takes no --data-dir" in capsys.readouterr().err
    assert not out.exists()


def test_images_paper_preset_runs_on_a_cifar_file(tmp_path):
    _fake_cifar(tmp_path / "data", n_classes=4, per_class=6, test_per_class=2)
    from mtlab.studies import get_study
    from mtlab.studies.base import StudyInputs

    given = StudyInputs(data_dir=str(tmp_path / "data"))
    cfgs = get_study("images-rescaling").configs("paper", seeds=1, inputs=given)
    assert {c.trunk for c in cfgs} == {"resnet18"} and {c.source for c in cfgs} == {"cifar100"}
    # one PT and one PT+FT run of the paper's network on the tiny file (2 epochs)
    from mtlab.runs.executor import execute
    from mtlab.runs.store import RunStore

    small = [
        c.model_copy(update={"widths": (4,), "max_epochs": 2, "pt_max_epochs": 2})
        for c in cfgs
        if c.method == "ptft" and c.n_main == 10 and c.rescale == 0.25
    ]
    store = RunStore(tmp_path / "runs")
    execute(small, store, progress=False)
    df = store.results()
    assert set(df.method) == {"pt", "ptft"} and df.test_acc.notna().all()


def test_images_sweep_through_mtlab_run(tmp_path):
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        "study: img_try\n"
        "seeds: 1\n"
        "base: {family: images, trunk: mlp, widths: [16], max_epochs: 5, pt_max_epochs: 3}\n"
        "grids:\n"
        "  - {method: [stl], n_main: [10, 20]}\n"
        "  - {method: [ptft], n_main: [10, 20], rescale: [0.5, 1.0]}\n"
    )
    out = tmp_path / "out"
    assert main(["run", str(sweep), "--out", str(out), "--quiet"]) == 0
    assert (out / "figures" / "images_accuracy.png").exists()
    assert "ptft rescale=0.5" in (out / "report.md").read_text()
