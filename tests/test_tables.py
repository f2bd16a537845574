"""A user's own table (issue 16): kinds inferred per target, missing labels per task, categorical
features, train-only standardisation, user splits — and every bad input named before training."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from mtlab.tasks.base import DataError
from mtlab.tasks.tables import infer_kind, prepare, read_table


def _frame(n: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "a": rng.normal(5, 2, n),
            "b": rng.normal(-1, 0.5, n),
            "plan": rng.choice(["free", "pro", "team"], n),
        }
    )
    df["churn"] = np.where(df.a > 5, "yes", "no")  # strings: classification
    df["ltv"] = 100 * df.a + rng.normal(0, 1, n)  # floats: regression
    df["stars"] = rng.integers(1, 6, n)  # few integers: classification
    df.loc[::4, "ltv"] = np.nan  # a quarter of the rows lack this label
    return df


def test_kinds_missing_labels_categoricals_and_standardisation(tmp_path):
    path = tmp_path / "t.csv"
    _frame().to_csv(path, index=False)
    table = read_table(path, targets=["churn", "ltv", "stars"])
    assert [(t.name, t.kind) for t in table.targets] == [
        ("churn", "classification"),
        ("ltv", "regression"),
        ("stars", "classification"),
    ]
    assert table.targets[0].classes == ("no", "yes")
    assert table.features == ["a", "b", "plan=free", "plan=pro", "plan=team"]
    prep = prepare(table, seed=3)
    tasks = {t.name: t for t in prep.tasks}
    n_rows = {s: len(r) for s, r in prep.rows.items()}
    assert sum(n_rows.values()) == 200
    # the missing ltv labels are left out of that task only
    assert tasks["ltv"]["train"].n < n_rows["train"] == tasks["churn"]["train"].n
    assert torch.isfinite(tasks["ltv"]["train"].y).all()
    assert tasks["ltv"].n_out == 1 and tasks["stars"].n_out == 5
    # standardised with the training split's statistics only
    xt = tasks["churn"]["train"].x
    assert torch.allclose(xt.mean(0), torch.zeros(5), atol=1e-5)
    assert not torch.allclose(tasks["churn"]["test"].x.mean(0), torch.zeros(5), atol=1e-3)
    _, sd = prep.target_scale["ltv"]
    assert prep.rmse("ltv", 1.0) == pytest.approx(sd)
    # the same seed, the same split; a kind overridden
    assert all((prepare(table, seed=3).rows[s] == prep.rows[s]).all() for s in prep.rows)
    table2 = read_table(path, ["stars"], ["a", "b"], kinds={"stars": "regression"})
    assert table2.targets[0].kind == "regression"


def test_user_split_column_parquet_and_npz(tmp_path):
    df = _frame(90)
    df["part"] = ["train"] * 60 + ["valid"] * 15 + ["test"] * 15
    path = tmp_path / "t.parquet"
    df.to_parquet(path)
    table = read_table(path, targets=["churn"], features=["a", "b"], split_column="part")
    prep = prepare(table)
    assert [len(prep.rows[s]) for s in ("train", "val", "test")] == [60, 15, 15]
    x = np.random.default_rng(0).normal(size=(50, 3))
    np.savez(tmp_path / "t.npz", x=x, up=(x[:, 0] > 0).astype(int), level=x[:, 1] * 3.3)
    table = read_table(tmp_path / "t.npz")
    assert table.tasks == ["up", "level"] and table.features == ["x0", "x1", "x2"]
    assert [t.kind for t in table.targets] == ["classification", "regression"]
    assert infer_kind(pd.Series([0.5, 1.5, 2.0])) == "regression"


@pytest.mark.parametrize(
    "mutate, kwargs, message",
    [
        (None, {"targets": ["nope"]}, "no column(s) ['nope']"),
        (lambda d: d.assign(one="x"), {"targets": ["one"]}, "single class ('x')"),
        (lambda d: d.assign(a=d.a.where(d.index != 7)), {"targets": ["churn"]},
         "feature 'a' is missing (NaN) at row 8"),
        (lambda d: d.assign(id=[f"u{i}" for i in range(len(d))]),
         {"targets": ["churn"], "features": ["a", "id"]},
         "feature 'id' is categorical with 200 levels"),
        (None, {"targets": ["churn"], "kinds": {"churn": "regression"}}, "not numeric"),
        (None, {"targets": ["churn"], "features": ["churn"]}, "both features and targets"),
        (lambda d: d.assign(p="train"), {"targets": ["churn"], "split_column": "p"},
         "the val/test split has no rows"),
        (lambda d: d.assign(p="holdout"), {"targets": ["churn"], "split_column": "p"},
         "'holdout' at row 1"),
    ],
)  # fmt: skip
def test_bad_tables_are_named_with_file_column_and_row(tmp_path, mutate, kwargs, message):
    df = _frame()
    if mutate is not None:
        df = mutate(df)
    path = tmp_path / "bad.csv"
    df.to_csv(path, index=False)
    kwargs = {"features": ["a", "b", "plan"], **kwargs}  # not the other targets (NaN labels)
    with pytest.raises(DataError) as err:
        prepare(read_table(path, **kwargs))
    assert message in str(err.value) and str(path) in str(err.value)


def test_unreadable_and_mismatched_files(tmp_path):
    (tmp_path / "x.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataError, match="not a readable Parquet file"):
        read_table(tmp_path / "x.parquet", targets=["a"])
    np.savez(tmp_path / "m.npz", x=np.zeros((5, 2)), t=np.arange(4))
    with pytest.raises(DataError, match="mismatched lengths: 'x0' has 5 rows, 't' has 4"):
        read_table(tmp_path / "m.npz")
    with pytest.raises(DataError, match="no such file"):
        read_table(tmp_path / "missing.csv", targets=["a"])
    with pytest.raises(DataError, match="name the target columns"):
        (tmp_path / "t.csv").write_text("a,b\n1,2\n")
        read_table(tmp_path / "t.csv")
