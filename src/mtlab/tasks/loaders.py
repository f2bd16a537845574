"""Readers of published data formats. Each returns arrays or a
:class:`~mtlab.tasks.datasets.MultiTaskDataset`; a malformed file raises
:class:`~mtlab.tasks.base.DataError` naming the file and the problem. (A user's own table, label
table of images or IDX pair for ``--data`` is read by :mod:`mtlab.tasks.tables`.)

* :func:`load_idx` — the IDX format of MNIST / MultiMNIST (``.gz`` too): magic ``0x0000``,
  a type byte, the number of dimensions, big-endian ``int32`` sizes, then the data.
* :func:`load_mnist_idx` — an images file plus a labels file (``(n,)`` for MNIST, ``(n, k)`` for
  MultiMNIST's several labels per image) → a dataset with one task per label column.
* :func:`load_celeba_attributes` — CelebA's ``list_attr_celeba.txt`` (count line, header line of
  attribute names, then ``file v1 … v40`` with ±1) and optionally the images it names.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from mtlab.tasks.base import DataError
from mtlab.tasks.datasets import SPLITS, MultiTaskDataset, split_indices

IDX_TYPES: dict[int, np.dtype[Any] | type[np.generic]] = {
    0x08: np.uint8,
    0x09: np.int8,
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _open(path: Path) -> IO[bytes]:
    if path.suffix == ".gz":
        return gzip.open(path, "rb")  # type: ignore[return-value]  # GzipFile is a binary IO
    return open(path, "rb")


def load_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """An IDX file as a NumPy array of its declared type and shape."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    try:
        with _open(path) as f:
            raw = f.read()
    except OSError as err:
        raise DataError(f"{path}: cannot read ({err})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path}: not an IDX file (bad magic number {raw[:4].hex()})")
    code, ndim = raw[2], raw[3]
    if code not in IDX_TYPES:
        raise DataError(f"{path}: unknown IDX data type 0x{code:02x}")
    head = 4 + 4 * ndim
    if len(raw) < head:
        raise DataError(f"{path}: truncated header ({ndim} dimensions declared)")
    shape = tuple(int(v) for v in np.frombuffer(raw[4:head], dtype=">i4"))
    dtype = np.dtype(IDX_TYPES[code])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - head != expected:
        raise DataError(
            f"{path}: data size {len(raw) - head} bytes does not match shape {shape} "
            f"({expected} bytes expected)"
        )
    return np.frombuffer(raw[head:], dtype=dtype).reshape(shape)


def save_idx(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write ``array`` as an IDX file (uint8, int8, int16, int32, float32 or float64)."""
    codes = {
        np.dtype(v).newbyteorder(">") if np.dtype(v).itemsize > 1 else np.dtype(v): k
        for k, v in IDX_TYPES.items()
    }
    dt = array.dtype.newbyteorder(">") if array.dtype.itemsize > 1 else array.dtype
    if dt not in codes:
        raise ValueError(f"IDX cannot store dtype {array.dtype}")
    data = bytes([0, 0, codes[dt], array.ndim]) + np.asarray(array.shape, ">i4").tobytes()
    data += array.astype(dt).tobytes()
    path = Path(path)
    with gzip.open(path, "wb") if path.suffix == ".gz" else open(path, "wb") as f:
        f.write(data)


def _dataset(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    tasks: Sequence[str],
    seed: int,
    fractions: Sequence[float],
    meta: dict[str, Any],
) -> MultiTaskDataset:
    num_classes = [int(y[:, t].max()) + 1 for t in range(y.shape[1])]
    strat = y[:, 0] if num_classes[0] <= 1000 else np.zeros(len(y), dtype=np.int64)
    parts = split_indices(strat, fractions, seed)
    xs = {
        s: torch.from_numpy(np.ascontiguousarray(x[p])) for s, p in zip(SPLITS, parts, strict=True)
    }
    ys = {
        s: torch.from_numpy(np.ascontiguousarray(y[p])) for s, p in zip(SPLITS, parts, strict=True)
    }
    return MultiTaskDataset(name, list(tasks), num_classes, xs, ys, meta)


def load_idx_pair(
    images: str | os.PathLike[str], labels: str | os.PathLike[str]
) -> tuple[np.ndarray, np.ndarray]:
    """IDX images ``(n, H, W)`` and labels ``(n,)`` or ``(n, k)``: inputs ``(n, 1, H, W)``
    float32 (uint8 scaled to [0, 1]) and labels ``(n, k)`` — checked, naming the file."""
    x, y = load_idx(images), load_idx(labels)
    if x.ndim != 3:
        raise DataError(f"{images}: expected images of shape (n, H, W), got {x.shape}")
    if y.ndim not in (1, 2) or y.shape[0] != x.shape[0]:
        raise DataError(f"{labels}: mismatched lengths: {x.shape[0]} images in "
                        f"{Path(images).name}, labels of shape {y.shape}")  # fmt: skip
    scale = 255.0 if x.dtype == np.uint8 else 1.0
    return (x.astype(np.float32) / scale)[:, None], y.reshape(len(y), -1)


def load_mnist_idx(
    images: str | os.PathLike[str],
    labels: str | os.PathLike[str],
    seed: int = 0,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
) -> MultiTaskDataset:
    """MNIST / MultiMNIST from IDX files: images ``(n, H, W)`` → inputs ``(n, 1, H, W)`` scaled to
    [0, 1]; labels ``(n,)`` or ``(n, k)`` → ``k`` tasks (``digit`` or ``label0 … label{k−1}``)."""
    xf, y2 = load_idx_pair(images, labels)
    if y2.min() < 0:
        raise DataError(f"{labels}: labels must be non-negative class indices")
    y2 = y2.astype(np.int64)
    tasks = ["digit"] if y2.shape[1] == 1 else [f"label{k}" for k in range(y2.shape[1])]
    return _dataset("idx", xf, y2, tasks, seed, fractions, {"images": str(images)})


def load_celeba_attributes(
    attr_file: str | os.PathLike[str],
    image_dir: str | os.PathLike[str] | None = None,
    attributes: Sequence[str] | None = None,
    image_size: tuple[int, int] = (32, 32),
    seed: int = 0,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
) -> MultiTaskDataset:
    """CelebA-style attributes (±1 → 1/0), one binary task per attribute. With ``image_dir`` the
    named images are loaded (Pillow), converted to RGB, resized to ``image_size`` → inputs
    ``(n, 3, H, W)``; without it the inputs are the row indices ``(n, 1)`` (labels only)."""
    path = Path(attr_file)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    lines = [ln.split() for ln in path.read_text().splitlines() if ln.strip()]
    if len(lines) < 3:
        raise DataError(f"{path}: expected a count line, a header line and data rows")
    try:
        count = int(lines[0][0])
    except ValueError:
        raise DataError(f"{path}: first line must be the number of images") from None
    names = lines[1]
    rows = lines[2:]
    if len(rows) != count:
        raise DataError(f"{path}: header says {count} images but {len(rows)} rows follow")
    files, values = [], []
    for k, row in enumerate(rows, start=3):
        if len(row) != len(names) + 1:
            raise DataError(
                f"{path}: line {k} has {len(row) - 1} values, expected {len(names)}"
            )
        try:
            vals = [int(v) for v in row[1:]]
        except ValueError:
            raise DataError(f"{path}: line {k}: attribute values must be -1 or 1") from None
        if any(v not in (-1, 1) for v in vals):
            raise DataError(f"{path}: line {k}: attribute values must be -1 or 1")
        files.append(row[0])
        values.append(vals)
    chosen = list(attributes) if attributes is not None else names
    missing = [a for a in chosen if a not in names]
    if missing:
        raise DataError(f"{path}: no attribute(s) {missing}; the file has {names}")
    cols = [names.index(a) for a in chosen]
    y = (np.asarray(values)[:, cols] > 0).astype(np.int64)
    if image_dir is None:
        x = np.arange(len(files), dtype=np.float32)[:, None]
    else:
        from PIL import Image

        imgs = []
        for f in files:
            p = Path(image_dir) / f
            if not p.exists():
                raise DataError(f"{path}: image {p} listed but not found")
            with Image.open(p) as src:
                im = src.convert("RGB").resize(image_size[::-1])
                imgs.append(np.asarray(im, dtype=np.float32).transpose(2, 0, 1) / 255.0)
        x = np.stack(imgs)
    return _dataset("celeba", x, y, chosen, seed, fractions, {"attr_file": str(path)})


__all__ = [
    "load_celeba_attributes",
    "load_idx",
    "load_idx_pair",
    "load_mnist_idx",
    "save_idx",
]


CIFAR_FILES = {
    "cifar100": ("cifar-100-python", ("train",), "test", "meta", b"fine_label_names"),
    "cifar10": (
        "cifar-10-batches-py",
        tuple(f"data_batch_{i}" for i in range(1, 6)),
        "test_batch",
        "batches.meta",
        b"label_names",
    ),
}


def _unpickle(path: Path) -> dict[str, Any]:
    import pickle

    if not path.exists():
        raise DataError(f"{path}: no such file")
    try:
        with open(path, "rb") as f:
            obj = pickle.load(f, encoding="bytes")
    except Exception as err:  # any unpickling failure is a format problem
        raise DataError(f"{path}: not a CIFAR python-pickle file ({err})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _cifar_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    d = _unpickle(path)
    for key in ("data", label_key):
        if key not in d:
            raise DataError(f"{path}: missing key {key!r} (has {sorted(d)})")
    x = np.asarray(d["data"])
    y = np.asarray(d[label_key], dtype=np.int64)
    if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3 * 32 * 32:
        raise DataError(
            f"{path}: 'data' must be uint8 of shape (n, 3072); got {x.dtype} {x.shape}"
        )
    if y.shape != (x.shape[0],):
        raise DataError(f"{path}: {len(y)} labels for {x.shape[0]} images")
    return x.reshape(-1, 3, 32, 32), y


def load_cifar(
    data_dir: str | os.PathLike[str], variant: str = "cifar100", label: str = "fine"
) -> dict[str, np.ndarray | list[str]]:
    """CIFAR-100 or CIFAR-10 from the standard python-pickle files.

    ``data_dir`` is the folder holding the files (``train``/``test``/``meta`` for CIFAR-100,
    ``data_batch_1…5``/``test_batch``/``batches.meta`` for CIFAR-10) or its parent (which holds
    ``cifar-100-python/`` or ``cifar-10-batches-py/``). ``label``: ``fine`` or ``coarse``
    (CIFAR-100 only). Returns ``x_train, y_train, x_test, y_test`` (images ``uint8 (n, 3, 32,
    32)``, labels ``int64``) and ``classes`` (names). Only load files you trust: they are pickles.
    """
    if variant not in CIFAR_FILES:
        raise ValueError(f"variant must be one of {sorted(CIFAR_FILES)}; got {variant!r}")
    if label not in ("fine", "coarse") or (variant == "cifar10" and label != "fine"):
        raise ValueError(f"label must be 'fine' or 'coarse' (CIFAR-100 only); got {label!r}")
    sub, train_files, test_file, meta_file, names_key = CIFAR_FILES[variant]
    root = Path(data_dir)
    if not root.is_dir():
        raise DataError(f"{root}: no such directory")
    if (root / sub).is_dir():
        root = root / sub
    label_key = "labels" if variant == "cifar10" else f"{label}_labels"
    parts = [_cifar_batch(root / f, label_key) for f in train_files]
    x_test, y_test = _cifar_batch(root / test_file, label_key)
    meta = _unpickle(root / meta_file)
    key = names_key.decode() if label == "fine" else "coarse_label_names"
    if key not in meta:
        raise DataError(f"{root / meta_file}: missing key {key!r}")
    classes = [n.decode() if isinstance(n, bytes) else str(n) for n in meta[key]]
    x_train = np.concatenate([p[0] for p in parts])
    y_train = np.concatenate([p[1] for p in parts])
    for name, y in (("train", y_train), ("test", y_test)):
        if len(y) and (y.min() < 0 or y.max() >= len(classes)):
            raise DataError(
                f"{root}: {name} labels outside 0..{len(classes) - 1} ({y.min()}..{y.max()})"
            )
    return {
        "x_train": x_train,
        "y_train": y_train,
        "x_test": x_test,
        "y_test": y_test,
        "classes": classes,
    }


def save_cifar(
    data_dir: str | os.PathLike[str],
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    classes: Sequence[str],
) -> Path:
    """Write arrays in the CIFAR-100 python-pickle layout (``cifar-100-python/train|test|meta``,
    fine labels; coarse labels all 0) — for tests and for converting other image sets."""
    import pickle

    root = Path(data_dir) / "cifar-100-python"
    root.mkdir(parents=True, exist_ok=True)
    for name, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        blob = {
            b"data": np.asarray(x, np.uint8).reshape(len(x), -1),
            b"fine_labels": [int(v) for v in y],
            b"coarse_labels": [0] * len(y),
            b"batch_label": name.encode(),
        }
        with open(root / name, "wb") as f:
            pickle.dump(blob, f)
    with open(root / "meta", "wb") as f:
        pickle.dump(
            {
                b"fine_label_names": [c.encode() for c in classes],
                b"coarse_label_names": [b"all"],
            },
            f,
        )
    return root
