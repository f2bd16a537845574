"""Built-in multi-task datasets and the loaders for users' files."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch

from mtlab.tasks.base import DataError
from mtlab.tasks.datasets import (
    DIGIT_ATTRIBUTES,
    compose_digits,
    dataset_tasks,
    digit_attributes,
    load_dataset,
    multi_digits,
    split_indices,
)
from mtlab.tasks.loaders import (
    load_celeba_attributes,
    load_idx,
    load_mnist_idx,
    save_idx,
)


def test_digit_attributes_labels_follow_the_digit_table():
    ds = digit_attributes(seed=1)
    assert ds.tasks == list(DIGIT_ATTRIBUTES) and ds.num_classes == [2] * 9
    assert ds.input_shape == (1, 8, 8)
    n = sum(ds.x[s].shape[0] for s in ("train", "val", "test"))
    assert n == 1797
    assert abs(ds.x["train"].shape[0] / n - 0.6) < 0.01
    patterns = {tuple(int(d in DIGIT_ATTRIBUTES[t]) for t in ds.tasks) for d in range(10)}
    rows = {tuple(r) for r in ds.y["test"].tolist()}
    assert rows <= patterns and len(rows) == 10  # every digit appears in the test split
    assert float(ds.x["train"].max()) <= 1.0 and float(ds.x["train"].min()) >= 0.0
    # seeded: same split for the same seed, another for another seed
    assert torch.equal(digit_attributes(seed=1).x["val"], ds.x["val"])
    assert not torch.equal(digit_attributes(seed=2).x["val"], ds.x["val"])
    sub = ds.subset_tasks(["prime", "odd"])
    assert sub.tasks == ["prime", "odd"]
    assert torch.equal(sub.y["train"][:, 1], ds.y["train"][:, 0])
    with pytest.raises(ValueError, match="unknown task"):
        ds.subset_tasks(["heavy"])


def test_split_indices_are_disjoint_and_stratified():
    labels = np.repeat(np.arange(5), 40)
    parts = split_indices(labels, (0.5, 0.25, 0.25), seed=0)
    allidx = np.concatenate(parts)
    assert len(allidx) == 200 and len(set(allidx.tolist())) == 200
    for p, f in zip(parts, (0.5, 0.25, 0.25), strict=True):
        counts = np.bincount(labels[p], minlength=5)
        assert (counts == int(40 * f)).all()


def test_multi_digits_composition():
    left = np.zeros((1, 8, 8), np.float32)
    right = np.zeros((1, 8, 8), np.float32)
    left[0, :, 7] = 1.0
    right[0, :, 0] = 0.5
    over = compose_digits(left, right, "overlap", overlap=4)
    assert over.shape == (1, 8, 12)
    assert over[0, 0, 7] == 1.0 and over[0, 0, 4] == 0.5  # right digit starts at column 4
    sup = compose_digits(left, right, "superimpose", overlap=2)
    assert sup.shape == (1, 8, 10) and sup[0, 0, 2] == 0.5
    with pytest.raises(ValueError, match="layout"):
        compose_digits(left, right, "stack", 0)
    ds = multi_digits(seed=0, n=(300, 100, 100))
    assert ds.tasks == ["left", "right"] and ds.num_classes == [10, 10]
    assert ds.x["train"].shape == (300, 1, 8, 12)
    assert int(ds.y["test"].max()) <= 9
    assert dataset_tasks("multi-digits") == ["left", "right"]
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("cifar")


# ---- loaders ----------------------------------------------------------------------------------
def test_idx_roundtrip_and_mnist(tmp_path):
    g = np.random.default_rng(0)
    images = g.integers(0, 256, size=(40, 5, 6), dtype=np.uint8)
    labels = g.integers(0, 10, size=(40, 2)).astype(np.uint8)
    save_idx(tmp_path / "img.idx.gz", images)
    save_idx(tmp_path / "lab.idx", labels)
    assert np.array_equal(load_idx(tmp_path / "img.idx.gz"), images)
    ds = load_mnist_idx(tmp_path / "img.idx.gz", tmp_path / "lab.idx")
    assert ds.tasks == ["label0", "label1"] and ds.input_shape == (1, 5, 6)
    total = sum(ds.y[s].shape[0] for s in ("train", "val", "test"))
    assert total == 40
    save_idx(tmp_path / "one.idx", labels[:, 0])
    assert load_mnist_idx(tmp_path / "img.idx.gz", tmp_path / "one.idx").tasks == ["digit"]
    floats = g.normal(size=(3, 4)).astype(np.float32)
    save_idx(tmp_path / "f.idx", floats)
    assert np.allclose(load_idx(tmp_path / "f.idx"), floats)


def test_idx_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.idx"
    bad.write_bytes(b"\x01\x02\x08\x01\x00\x00\x00\x02ab")
    with pytest.raises(DataError, match=r"bad\.idx: not an IDX file"):
        load_idx(bad)
    short = tmp_path / "short.idx"
    short.write_bytes(bytes([0, 0, 8, 1]) + np.asarray([5], ">i4").tobytes() + b"abc")
    with pytest.raises(DataError, match=r"short\.idx: data size 3 bytes"):
        load_idx(short)
    with gzip.open(tmp_path / "t.idx.gz", "wb") as f:
        f.write(bytes([0, 0, 0x42, 1]))
    with pytest.raises(DataError, match="unknown IDX data type"):
        load_idx(tmp_path / "t.idx.gz")
    with pytest.raises(DataError, match="no such file"):
        load_idx(tmp_path / "missing.idx")
    save_idx(tmp_path / "img.idx", np.zeros((4, 2, 2), np.uint8))
    save_idx(tmp_path / "lab.idx", np.zeros(5, np.uint8))
    with pytest.raises(DataError, match=r"lab\.idx: mismatched lengths: 4 images"):
        load_mnist_idx(tmp_path / "img.idx", tmp_path / "lab.idx")


def _celeba(tmp_path, rows, count=None, header="Smiling Male Young"):
    lines = [str(count if count is not None else len(rows)), header, *rows]
    p = tmp_path / "list_attr_celeba.txt"
    p.write_text("\n".join(lines) + "\n")
    return p


def test_celeba_attributes_and_images(tmp_path):
    from PIL import Image

    rows = [f"{i:06d}.jpg {s} {m} 1" for i, (s, m) in enumerate([(1, -1), (-1, 1), (1, 1)] * 4)]
    attr = _celeba(tmp_path, rows)
    ds = load_celeba_attributes(attr, attributes=["Male", "Smiling"], fractions=(0.5, 0.25, 0.25))
    assert ds.tasks == ["Male", "Smiling"] and ds.num_classes == [2, 2]
    imgdir = tmp_path / "img"
    imgdir.mkdir()
    for i in range(12):
        Image.new("RGB", (20, 24), color=(10 * i, 0, 0)).save(imgdir / f"{i:06d}.jpg")
    ds2 = load_celeba_attributes(attr, imgdir, image_size=(8, 6), fractions=(0.5, 0.25, 0.25))
    assert ds2.input_shape == (3, 8, 6) and ds2.tasks == ["Smiling", "Male", "Young"]
    (imgdir / "000003.jpg").unlink()
    with pytest.raises(DataError, match=r"000003\.jpg listed but not found"):
        load_celeba_attributes(attr, imgdir)


def test_celeba_errors(tmp_path):
    with pytest.raises(DataError, match="header says 5 images but 2 rows"):
        load_celeba_attributes(_celeba(tmp_path, ["a.jpg 1 1 1", "b.jpg 1 1 1"], count=5))
    with pytest.raises(DataError, match="line 4 has 2 values, expected 3"):
        load_celeba_attributes(_celeba(tmp_path, ["a.jpg 1 1 1", "b.jpg 1 1"]))
    with pytest.raises(DataError, match="must be -1 or 1"):
        load_celeba_attributes(_celeba(tmp_path, ["a.jpg 1 0 1", "b.jpg 1 1 1"]))
    with pytest.raises(DataError, match=r"no attribute\(s\) \['Bald'\]"):
        load_celeba_attributes(_celeba(tmp_path, ["a.jpg 1 1 1"] * 3), attributes=["Bald"])
