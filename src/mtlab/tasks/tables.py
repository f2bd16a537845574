"""A user's own multi-task table: features and target columns chosen by name, each target a
classification or a regression task, labels that may be missing per task.

:func:`read_table` reads a CSV, Parquet or NPZ file and checks it before any training: every bad
input (a file that cannot be read, an unknown column, a NaN or non-numeric feature, a target with
a single class or no labels, mismatched lengths) raises :class:`DataError` naming the file, the
column and — where there is one — the row (1-based data row; for a CSV, line = row + 1 with the
header). :func:`prepare` splits it (seeded, or by the user's split column), standardises the
features with the training split's mean and standard deviation only, standardises regression
targets the same way, and returns one :class:`~mtlab.tasks.supervised.SupervisedTask` per target
holding only the rows where that target is present — a missing label is thereby left out of its
task's loss, not imputed.

:func:`read_image_table` reads a label table whose column names image files in a folder, and
:func:`read_idx_table` MNIST-format IDX images and labels; their inputs are images ``(n, C, H, W)``
(standardised per channel), for a CNN.

Task kinds are inferred per column (overridable): a non-numeric or boolean column, or an integer
column with at most ``MAX_CLASSES_INFERRED`` distinct values, is a classification task; any other
numeric column is a regression task. Categorical features are one-hot encoded up to
``MAX_LEVELS`` levels, and rejected above it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtlab.tasks.base import DataError, Split, TaskData
from mtlab.tasks.supervised import Kind, SupervisedTask

MAX_CLASSES_INFERRED = 20
MAX_LEVELS = 50
SPLITS = ("train", "val", "test")
SPLIT_VALUES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


@dataclass(frozen=True)
class Target:
    """One target column: its task kind and, for classification, the original class values
    (index ``k`` of the task's labels is ``classes[k]``)."""

    name: str
    kind: Kind
    classes: tuple[Any, ...] = ()


@dataclass
class Table:
    """A checked table: numeric features ``x (n, d)`` (categoricals one-hot encoded) or images
    ``x (n, C, H, W)``, one
    target vector per task (class index or value, NaN where missing) and optional user splits."""

    path: Path
    features: list[str]
    x: np.ndarray
    targets: list[Target]
    y: dict[str, np.ndarray]
    split: np.ndarray | None = None  # per row: "train" / "val" / "test"
    encoded: dict[str, list[str]] = field(default_factory=dict)  # categorical → one-hot columns

    @property
    def n(self) -> int:
        return int(self.x.shape[0])

    @property
    def tasks(self) -> list[str]:
        return [t.name for t in self.targets]


def _frame(path: Path) -> Any:
    import pandas as pd

    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
            return _npz_frame(path, arrays)
        return pd.read_csv(path)
    except DataError:
        raise
    except Exception as err:  # the readers raise many kinds; one message for all
        kind = {".parquet": "Parquet", ".pq": "Parquet", ".npz": "NPZ"}.get(suffix, "CSV")
        raise DataError(
            f"{path}: not a readable {kind} file ({type(err).__name__}: {err})"
        ) from None


def _npz_frame(path: Path, arrays: dict[str, np.ndarray]) -> Any:
    """An NPZ as a frame: ``x`` (n, d) → columns x0 … x{d-1}; every other 1-D array (or the
    columns of ``y`` (n, T), named y0 …) is a column."""
    import pandas as pd

    if "x" not in arrays:
        raise DataError(f"{path}: no array 'x' (found {sorted(arrays)})")
    x = arrays.pop("x")
    x = x.reshape(len(x), -1)
    cols: dict[str, np.ndarray] = {f"x{i}": x[:, i] for i in range(x.shape[1])}
    if "y" in arrays:
        y = arrays.pop("y")
        y = y.reshape(len(y), -1)
        cols.update({f"y{i}": y[:, i] for i in range(y.shape[1])})
    for name, arr in arrays.items():
        if arr.ndim != 1:
            raise DataError(f"{path}: array {name!r} has shape {arr.shape}; targets are 1-D")
        cols[name] = arr
    lengths = {name: len(a) for name, a in cols.items()}
    if len(set(lengths.values())) > 1:
        first = next(iter(lengths))
        bad = next(k for k, v in lengths.items() if v != lengths[first])
        raise DataError(
            f"{path}: mismatched lengths: {first!r} has {lengths[first]} rows, "
            f"{bad!r} has {lengths[bad]}"
        )
    return pd.DataFrame(cols)


def _row(df: Any, mask: np.ndarray) -> int:
    """1-based data row of the first True in ``mask``."""
    return int(np.flatnonzero(mask)[0]) + 1


def infer_kind(values: Any) -> Kind:
    """``classification`` for non-numeric, boolean or few-valued integer columns, else
    ``regression`` (see the module docstring)."""
    import pandas as pd

    v = values.dropna()
    if not pd.api.types.is_numeric_dtype(v) or pd.api.types.is_bool_dtype(v):
        return "classification"
    integral = bool(np.all(np.mod(v.to_numpy(np.float64), 1) == 0))
    if integral and v.nunique() <= MAX_CLASSES_INFERRED:
        return "classification"
    return "regression"


def _target(path: Path, df: Any, name: str, kind: Kind | None) -> tuple[Target, np.ndarray]:
    import pandas as pd

    col = df[name]
    kind = kind or infer_kind(col)
    present = col.notna().to_numpy()
    if not present.any():
        raise DataError(f"{path}: target {name!r} has no labels")
    if kind == "regression":
        if not pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
            raise DataError(f"{path}: target {name!r} is not numeric; it cannot be regression")
        values = col.to_numpy(np.float64)
        bad = present & ~np.isfinite(values)
        if bad.any():
            raise DataError(f"{path}: target {name!r} is not finite at row {_row(df, bad)}")
        if np.nanstd(values) == 0:
            raise DataError(f"{path}: target {name!r} is constant; nothing to learn")
        return Target(name, "regression"), values
    classes = tuple(sorted(col.dropna().unique().tolist(), key=lambda v: (str(type(v)), v)))
    if len(classes) < 2:
        raise DataError(
            f"{path}: target {name!r} has a single class ({classes[0]!r}); a classification "
            "task needs at least 2"
        )
    index = {c: i for i, c in enumerate(classes)}
    y = np.full(len(col), np.nan)
    y[present] = [index[v] for v in col[present]]
    return Target(name, "classification", classes), y


def _features(
    path: Path, df: Any, names: Sequence[str]
) -> tuple[list[str], np.ndarray, dict[str, list[str]]]:
    import pandas as pd

    blocks, columns, encoded = [], [], {}
    for name in names:
        col = df[name]
        missing = col.isna().to_numpy()
        if missing.any():
            raise DataError(
                f"{path}: feature {name!r} is missing (NaN) at row {_row(df, missing)}; "
                "fill or drop it, or leave the column out with --features"
            )
        if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
            values = col.to_numpy(np.float64)
            bad = ~np.isfinite(values)
            if bad.any():
                raise DataError(f"{path}: feature {name!r} is not finite at row {_row(df, bad)}")
            blocks.append(values[:, None])
            columns.append(name)
            continue
        levels = sorted(col.astype(str).unique().tolist())
        if len(levels) > MAX_LEVELS:
            raise DataError(
                f"{path}: feature {name!r} is categorical with {len(levels)} levels (more than "
                f"{MAX_LEVELS}); encode it yourself or leave it out with --features"
            )
        onehot = (col.astype(str).to_numpy()[:, None] == np.asarray(levels)[None, :]).astype(float)
        blocks.append(onehot)
        encoded[name] = [f"{name}={lv}" for lv in levels]
        columns += encoded[name]
    if not blocks:
        raise DataError(f"{path}: no feature columns")
    return columns, np.concatenate(blocks, axis=1).astype(np.float32), encoded


def read_table(
    path: str | os.PathLike[str],
    targets: Sequence[str] | None = None,
    features: Sequence[str] | None = None,
    kinds: Mapping[str, Kind] | None = None,
    split_column: str | None = None,
) -> Table:
    """Read and check a user table (see the module docstring). ``targets``: default, for an NPZ,
    every array but ``x``; a CSV / Parquet file must name them. ``features``: default every
    other column (but the split column)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    df = _frame(path)
    if len(df) == 0:
        raise DataError(f"{path}: no rows")
    if targets is None:
        if path.suffix.lower() != ".npz":
            raise DataError(f"{path}: name the target columns (--targets a,b,c)")
        targets = [c for c in df.columns if not c.startswith("x")]
    targets = list(targets)
    kinds = dict(kinds or {})
    _check_names(path, df, targets, kinds,
                 [*(features or []), *([split_column] if split_column else [])])  # fmt: skip
    overlap = [c for c in (features or []) if c in targets]
    if overlap:
        raise DataError(f"{path}: column(s) {overlap} are both features and targets")
    feats = list(features) if features is not None else [
        c for c in df.columns if c not in targets and c != split_column
    ]  # fmt: skip
    columns, x, encoded = _features(path, df, feats)
    specs, ys, split = _targets_and_split(path, df, targets, kinds, split_column)
    return Table(path, columns, x, specs, ys, split, encoded)


def _targets_and_split(
    path: Path, df: Any, targets: Sequence[str], kinds: Mapping[str, Kind],
    split_column: str | None,
) -> tuple[list[Target], dict[str, np.ndarray], np.ndarray | None]:  # fmt: skip
    specs, ys = [], {}
    for name in targets:
        spec, y = _target(path, df, name, kinds.get(name))
        specs.append(spec)
        ys[name] = y
    split = None
    if split_column:
        raw = df[split_column].astype(str).str.lower().str.strip()
        bad = ~raw.isin(list(SPLIT_VALUES)).to_numpy()
        if bad.any():
            row = _row(df, bad)
            raise DataError(
                f"{path}: split column {split_column!r} has {df[split_column].iloc[row - 1]!r} "
                f"at row {row}; allowed: train, val, test"
            )
        split = raw.map(SPLIT_VALUES).to_numpy()
    return specs, ys, split


def _check_names(
    path: Path, df: Any, targets: Sequence[str], kinds: Mapping[str, Kind], other: Sequence[str]
) -> None:
    if not targets:
        raise DataError(f"{path}: no target columns")
    named = [*targets, *other, *kinds]
    unknown = [c for c in dict.fromkeys(named) if c not in df.columns]
    if unknown:
        raise DataError(f"{path}: no column(s) {unknown}; columns: {list(df.columns)}")
    bad_kind = {t: k for t, k in kinds.items() if k not in ("classification", "regression")}
    if bad_kind:
        raise DataError(f"kinds must be 'classification' or 'regression' (got {bad_kind})")


def _images(path: Path, folder: Path, names: Any, column: str, size: int | None) -> np.ndarray:
    """The images named by ``names`` (files in ``folder``) as ``(n, C, H, W)`` floats in [0, 1]:
    grayscale (C = 1) if the first image is, else RGB (C = 3); all of the first image's size,
    or resized to ``size`` × ``size``."""
    from PIL import Image, UnidentifiedImageError

    if not folder.is_dir():
        raise DataError(f"--images {folder}: no such folder")
    out: list[np.ndarray] = []
    mode, shape = None, None
    for i, name in enumerate(names):
        file = folder / str(name)
        where = f"{path}: column {column!r}, row {i + 1}"
        if not file.is_file():
            raise DataError(f"{where}: image {file} does not exist")
        try:
            with Image.open(file) as raw:
                raw.load()
                if mode is None:
                    mode = "L" if raw.mode in ("1", "L", "LA", "I", "I;16", "F") else "RGB"
                img = raw.convert(mode)
                if size is not None:
                    img = img.resize((size, size), Image.Resampling.BILINEAR)
                arr = np.asarray(img, dtype=np.uint8)
        except (UnidentifiedImageError, OSError, ValueError) as err:
            raise DataError(f"{where}: {file} is not a readable image ({err})") from None
        if shape is None:
            shape = arr.shape
        elif arr.shape != shape:
            raise DataError(
                f"{where}: image {file} is {arr.shape[1]}×{arr.shape[0]}, the first one "
                f"{shape[1]}×{shape[0]}; pass --image-size N to resize them all to N×N"
            )
        out.append(arr)
    x = np.stack(out).astype(np.float32) / 255.0
    return x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)


def read_image_table(
    path: str | os.PathLike[str],
    images: str | os.PathLike[str],
    image_column: str,
    targets: Sequence[str],
    kinds: Mapping[str, Kind] | None = None,
    split_column: str | None = None,
    size: int | None = None,
) -> Table:
    """A label table whose ``image_column`` names image files in the folder ``images`` (any
    format Pillow reads): the images are the inputs ``x (n, C, H, W)``, the ``targets`` columns
    the tasks (kinds, missing labels and splits as in :func:`read_table`). A missing or
    unreadable image, or one of another size (without ``size``), is a :class:`DataError`
    naming the table, the column and the row."""
    path, folder = Path(path), Path(images)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    df = _frame(path)
    if len(df) == 0:
        raise DataError(f"{path}: no rows")
    kinds = dict(kinds or {})
    targets = list(targets)
    _check_names(path, df, targets, kinds,
                 [image_column, *([split_column] if split_column else [])])  # fmt: skip
    if image_column in targets:
        raise DataError(f"{path}: the image column {image_column!r} is also a target")
    missing = df[image_column].isna().to_numpy()
    if missing.any():
        raise DataError(
            f"{path}: column {image_column!r} names no image at row {_row(df, missing)}"
        )
    specs, ys, split = _targets_and_split(path, df, targets, kinds, split_column)
    x = _images(path, folder, df[image_column].tolist(), image_column, size)
    return Table(path, [image_column], x, specs, ys, split)


def read_idx_table(
    images: str | os.PathLike[str],
    labels: str | os.PathLike[str],
    kinds: Mapping[str, Kind] | None = None,
) -> Table:
    """MNIST-format IDX files: images ``(n, H, W)`` (uint8 scaled to [0, 1]) and labels ``(n,)``
    (one task, ``label``) or ``(n, k)`` (tasks ``label0 … label{k−1}``), kinds inferred as for a
    table."""
    import pandas as pd

    from mtlab.tasks.loaders import load_idx_pair

    ipath, lpath = Path(images), Path(labels)
    xf, y2 = load_idx_pair(ipath, lpath)
    names = ["label"] if y2.shape[1] == 1 else [f"label{k}" for k in range(y2.shape[1])]
    df = pd.DataFrame({n: y2[:, k] for k, n in enumerate(names)})
    kinds = dict(kinds or {})
    _check_names(lpath, df, names, kinds, [])
    specs, ys, _ = _targets_and_split(lpath, df, names, kinds, None)
    return Table(ipath, ["pixels"], xf, specs, ys)


def read_data(
    data: str | os.PathLike[str],
    targets: Sequence[str] | None = None,
    features: Sequence[str] | None = None,
    kinds: Mapping[str, Kind] | None = None,
    split_column: str | None = None,
    images: str | os.PathLike[str] | None = None,
    image_column: str = "file",
    image_size: int | None = None,
    labels: str | os.PathLike[str] | None = None,
) -> Table:
    """A user's data, whichever form it takes — the one reader of every ``--data`` command: a
    table (:func:`read_table`); with ``images``, a label table naming image files in that folder
    (:func:`read_image_table`); with ``labels``, IDX images and labels (:func:`read_idx_table`,
    ``targets`` choosing among the label columns)."""
    if images is not None and labels is not None:
        raise DataError("--images (a label table naming image files) and --labels (IDX) "
                        "exclude each other")  # fmt: skip
    if labels is not None:
        if features or split_column:
            raise DataError("--features / --split-column do not apply to IDX data")
        table = read_idx_table(data, labels, kinds)
        if targets:
            unknown = [t for t in targets if t not in table.tasks]
            if unknown:
                raise DataError(f"{labels}: no label column(s) {unknown}; columns: "
                                f"{table.tasks}")  # fmt: skip
            table.targets = [t for t in table.targets if t.name in targets]
            table.y = {k: v for k, v in table.y.items() if k in targets}
        return table
    if images is not None:
        if not targets:
            raise DataError(f"{data}: name the label columns (--targets a,b,c)")
        if features:
            raise DataError("--features does not apply to images (the image is the input)")
        return read_image_table(data, images, image_column, targets, kinds, split_column,
                                image_size)  # fmt: skip
    return read_table(data, targets, features, kinds, split_column)


def read_dataset(name: str) -> Table:
    """A built-in dataset (:mod:`mtlab.tasks.datasets`, its split seeded 0) as a table: every
    task a classification target, the dataset's own split as the split column."""
    from mtlab.tasks.datasets import SPLITS as DS_SPLITS
    from mtlab.tasks.datasets import load_dataset

    ds = load_dataset(name, 0)
    splits = [s for s in DS_SPLITS if s in ds.x]
    x = np.concatenate([ds.x[s].numpy() for s in splits])
    y = np.concatenate([ds.y[s].numpy() for s in splits]).astype(float)
    split = np.concatenate([np.full(len(ds.x[s]), s) for s in splits])
    targets = [Target(t, "classification", tuple(range(k)))
               for t, k in zip(ds.tasks, ds.num_classes, strict=True)]  # fmt: skip
    ys = {t: y[:, i] for i, t in enumerate(ds.tasks)}
    return Table(Path(name), ["pixels"], x, targets, ys, split)


@dataclass
class Prepared:
    """A table ready to train on: one task per target, the split's row indices, and the
    training-split statistics used to standardise (features; regression targets)."""

    table: Table
    tasks: list[SupervisedTask]
    rows: dict[str, np.ndarray]
    mean: np.ndarray
    std: np.ndarray
    target_scale: dict[str, tuple[float, float]]  # regression target → (train mean, train std)

    def rmse(self, task: str, mse: float) -> float:
        """Root mean squared error in the target's own units, from the standardised MSE."""
        return float(np.sqrt(mse) * self.target_scale[task][1])


def split_rows(
    table: Table, seed: int = 0, fractions: Sequence[float] = (0.7, 0.15, 0.15)
) -> dict[str, np.ndarray]:
    """Row indices per split: the user's split column, or a seeded random split."""
    if table.split is not None:
        rows = {s: np.flatnonzero(table.split == s) for s in SPLITS}
    else:
        if len(fractions) != 3 or min(fractions) <= 0 or abs(sum(fractions) - 1) > 1e-9:
            raise DataError(
                f"split fractions must be 3 positive numbers summing to 1: {fractions}"
            )
        perm = np.random.default_rng(seed).permutation(table.n)
        cuts = np.floor(np.cumsum(fractions)[:-1] * table.n).astype(int)
        rows = {s: np.sort(p) for s, p in zip(SPLITS, np.split(perm, cuts), strict=True)}
    empty = [s for s in SPLITS if len(rows[s]) == 0]
    if empty:
        raise DataError(f"{table.path}: the {'/'.join(empty)} split has no rows")
    return rows


def prepare(
    table: Table,
    seed: int = 0,
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    dtype: torch.dtype = torch.float32,
) -> Prepared:
    """Split, standardise on the training split only, and build one task per target (with only
    the rows where that target is present)."""
    rows = split_rows(table, seed, fractions)
    train = table.x[rows["train"]]
    if table.x.ndim == 4:  # images: one mean and standard deviation per channel
        mean = train.mean((0, 2, 3), dtype=np.float64)[:, None, None]
        std = train.std((0, 2, 3), dtype=np.float64)[:, None, None]
    else:
        mean, std = train.mean(0, dtype=np.float64), train.std(0, dtype=np.float64)
    std[std == 0] = 1.0
    x = torch.as_tensor(((table.x - mean) / std).astype(np.float32), dtype=dtype)
    tasks, scale = [], {}
    for target in table.targets:
        y = table.y[target.name]
        present = {s: r[~np.isnan(y[r])] for s, r in rows.items()}
        for s, r in present.items():
            if len(r) < 2:
                raise DataError(
                    f"{table.path}: target {target.name!r} has {len(r)} label(s) in the {s} "
                    "split; at least 2 are needed"
                )
        if target.kind == "regression":
            mu, sd = float(y[present["train"]].mean()), float(y[present["train"]].std())
            sd = sd if sd > 0 else 1.0
            scale[target.name] = (mu, sd)
            vals = {s: torch.as_tensor((y[r] - mu) / sd, dtype=dtype)[:, None]
                    for s, r in present.items()}  # fmt: skip
            n_out = 1
        else:
            seen = np.unique(y[present["train"]])
            if len(seen) < 2:
                raise DataError(
                    f"{table.path}: target {target.name!r} has a single class in the train split"
                )
            vals = {s: torch.as_tensor(y[r], dtype=torch.long) for s, r in present.items()}
            n_out = len(target.classes)
        splits = {s: Split(x[r], vals[s]) for s, r in present.items()}
        tasks.append(SupervisedTask(TaskData(target.name, splits), target.kind, n_out))
    return Prepared(table, tasks, rows, mean, std, scale)


__all__ = [
    "MAX_CLASSES_INFERRED",
    "MAX_LEVELS",
    "Prepared",
    "Table",
    "Target",
    "infer_kind",
    "prepare",
    "read_data",
    "read_dataset",
    "read_idx_table",
    "read_image_table",
    "read_table",
    "split_rows",
]
