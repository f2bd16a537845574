import json

import pytest
import torch

from mtlab.runs import RunStore, execute, make_config
from mtlab.runs.diagonal import FAMILY, split_data

SMALL = {
    "d": 60,
    "k1": 8,
    "n_aux": 96,
    "n_val": 50,
    "n_test": 50,
    "max_steps": 1500,
    "pt_max_steps": 1500,
    "threshold": 1e-8,
    "log_every": 500,
    "dtype": "float64",
}


def _cfgs(methods=("stl", "mtl", "ptft", "ptft_lr"), seeds=(0,), rescales=(1.0, 0.1), n=(8, 16)):
    out = []
    for seed in seeds:
        for m in methods:
            for nm in n:
                for s in rescales if m == "ptft" else (1.0,):
                    out.append(
                        make_config(
                            {**SMALL, "method": m, "seed": seed, "n_main": nm, "rescale": s}
                        )
                    )
    return out


def test_ptft_start_rescales_first_layer_and_resets_readout(tmp_path):
    store = RunStore(tmp_path)
    ft = make_config({**SMALL, "method": "ptft", "rescale": 0.1, "n_main": 8})
    execute([ft.pretraining()], store, progress=False)
    pt = store.load_params(ft.pretraining().run_id())
    _, params, data, trainable, lr, _ = FAMILY.build([ft], store.load_params)
    assert torch.allclose(params["w_pos"], 0.1 * pt["w_pos"])
    assert torch.allclose(params["w_neg"], 0.1 * pt["w_neg"])
    assert torch.all(params["v_pos"] == ft.readout_init) and ft.readout_init == pytest.approx(1e-4)
    assert trainable == ("w_pos", "w_neg", "v_pos", "v_neg") and float(lr[0]) == ft.lr
    lr_cfg = make_config({**SMALL, "method": "ptft_lr", "n_main": 8})
    assert FAMILY.build([lr_cfg], store.load_params)[3] == ("v_pos", "v_neg")
    x, y = split_data(ft, "main", "train")
    assert torch.equal(data.x[0][0], x) and torch.equal(data.y[0][0], y)


def test_mtl_pools_aux_and_main_samples():
    mtl = make_config({**SMALL, "method": "mtl", "n_main": 16})
    model, _, data, _, _, _ = FAMILY.build([mtl], lambda r: {})
    assert model.n_tasks == 2 and data.outputs == (0, 1)
    assert [x.shape[1] for x in data.x] == [96, 16]
    assert torch.allclose(
        data.weights[:, 0], torch.tensor([96 / 112, 16 / 112], dtype=torch.float64)
    )
    # MTL runs with different n_main share one ensemble: aux inputs shared, main sets padded
    other = make_config({**SMALL, "method": "mtl", "n_main": 8, "setting": "new_dims"})
    assert FAMILY.group_key(mtl) == FAMILY.group_key(other)
    _, _, data, _, _, _ = FAMILY.build([mtl, other], lambda r: {})
    assert data.x[0].shape[0] == 1 and data.x[1].shape == (2, 16, 60)
    assert data.counts[1].tolist() == [16.0, 8.0] and torch.all(data.x[1][1, 8:] == 0)


def test_sweep_writes_rows_and_resumes(required_columns, tmp_path):
    cfgs = _cfgs()
    store = RunStore(tmp_path)
    stats = execute(cfgs, store, progress=False)
    assert stats["trained"] == len(cfgs) + 1  # + the pretraining run
    df = store.results()
    for col in (
        *required_columns,
        "test_risk",
        "val_loss",
        "run_id",
    ):
        assert col in df.columns
    assert len(df) == len(cfgs) + 1 and set(df.status) <= {"converged", "max_steps"}
    assert (tmp_path / "results.parquet").exists() and (tmp_path / "results.csv").exists()
    assert (tmp_path / "curves.parquet").exists()
    again = execute(cfgs, store, progress=False)
    assert again["trained"] == 0 and again["skipped"] == len(cfgs) + 1  # dependencies count


def test_chunked_equals_one_by_one(tmp_path):
    cfgs = _cfgs(methods=("stl", "ptft", "mtl"), seeds=(0, 1))
    a, b = RunStore(tmp_path / "a"), RunStore(tmp_path / "b")
    execute(cfgs, a, chunk=1, progress=False)
    execute(cfgs, b, chunk="auto", progress=False)
    ra = a.results().set_index("run_id").sort_index()
    rb = b.results().set_index("run_id").sort_index()
    assert list(ra.index) == list(rb.index)
    assert (ra.steps == rb.steps).all() and (ra.status == rb.status).all()
    assert torch.allclose(
        torch.tensor(ra.test_risk.values), torch.tensor(rb.test_risk.values), rtol=1e-6, atol=1e-12
    )


def test_interrupted_sweep_loses_no_finished_run(tmp_path):
    cfgs = _cfgs(methods=("stl",), seeds=(0, 1, 2))
    store = RunStore(tmp_path)
    real_add = store.add
    count = {"n": 0}

    def add(row, curve=None, params=None, **kw):
        if count["n"] == 3:
            raise KeyboardInterrupt
        real_add(row, curve, params, **kw)
        count["n"] += 1

    store.add = add  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        execute(cfgs, store, chunk=1, progress=False)
    assert len(RunStore(tmp_path).done_ids()) == 3
    stats = execute(cfgs, RunStore(tmp_path), progress=False)
    assert stats["trained"] == len(cfgs) - 3 and stats["skipped"] == 3
    assert len(RunStore(tmp_path).results()) == len(cfgs)


def test_store_ignores_a_torn_last_line(tmp_path):
    store = RunStore(tmp_path)
    store.add({"run_id": "a", "x": 1.0})
    with open(store.rows_path, "a") as f:
        f.write('{"run_id": "b", "x"')
    assert store.done_ids() == {"a"}
    store.add({"run_id": "c", "x": float("nan")})  # written on a fresh line after the torn one
    rows = store.rows()
    assert len(rows) == 2 and rows[1]["x"] is None
    with pytest.raises(FileNotFoundError, match="no stored parameters"):
        store.load_params("zzz")
    with pytest.raises(FileNotFoundError, match=r"config\.yaml"):
        store.read_config()
    assert json.loads((store.write_json("x.json", {"a": 1})).read_text()) == {"a": 1}


def test_missing_pretraining_params_are_recomputed(tmp_path):
    ft = make_config({**SMALL, "method": "ptft", "n_main": 8})
    store = RunStore(tmp_path)
    execute([ft], store, progress=False)
    (tmp_path / "params" / f"{ft.pretraining().run_id()}.pt").unlink()
    ft2 = make_config({**SMALL, "method": "ptft", "n_main": 16})
    stats = execute([ft2], store, progress=False)
    assert stats["trained"] == 2


def test_curves_log_val_and_test_losses_per_task(tmp_path):
    mtl = make_config({**SMALL, "method": "mtl", "n_main": 16, "init_scale": 1e-6})
    store = RunStore(tmp_path)
    execute([mtl], store, progress=False)
    curves = store.curves()
    metrics = set(curves.metric)
    assert {
        "val_loss_aux",
        "val_loss_main",
        "test_loss_aux",
        "test_loss_main",
        "test_risk",
        "train_loss_0",
        "train_loss_1",
    } <= metrics
    first = curves[(curves.step == 0) & (curves.metric == "val_loss_main")].value.iloc[0]
    _, y = split_data(mtl, "main", "val")
    assert first == pytest.approx(float((y**2).mean()), rel=1e-6)  # β ≈ 0 at init
    last = curves[curves.metric == "test_loss_main"].sort_values("step").value.iloc[-1]
    assert last < first


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_minibatch_optimizers_through_the_family(tmp_path, optimizer):
    lr = 0.01 if optimizer == "adam" else 0.05
    cfgs = [
        make_config(
            {
                **SMALL,
                "method": m,
                "n_main": 16,
                "optimizer": optimizer,
                "batch_size": 8,
                "lr": lr,
                "pt_lr": lr,
                "max_steps": 400,
                "pt_max_steps": 400,
                "seed": s,
            }
        )
        for m in ("stl", "mtl", "ptft")
        for s in (0, 1)
    ]
    a, b = RunStore(tmp_path / "a"), RunStore(tmp_path / "b")
    execute(cfgs, a, chunk=1, progress=False)
    execute(cfgs, b, chunk="auto", progress=False)
    ra = a.results().set_index("run_id").sort_index()
    rb = b.results().set_index("run_id").sort_index()
    assert len(ra) == len(cfgs) + 2 and (ra.steps == rb.steps).all()
    assert torch.allclose(
        torch.tensor(ra.test_risk.values), torch.tensor(rb.test_risk.values), rtol=1e-6
    )
    first = a.curves().query("metric == 'train_loss' and step == 0").value
    assert (ra.objective_loss.values < first.max()).all()  # every run made progress
