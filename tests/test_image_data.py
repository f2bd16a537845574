"""Images as a user's own data: a label table naming image files in a folder, and IDX files —
read, checked (every bad input exits 2 naming file, column and row, and writes nothing) and
advised on with a CNN."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from mtlab.cli import main
from mtlab.tasks.base import DataError
from mtlab.tasks.loaders import save_idx
from mtlab.tasks.tables import prepare, read_idx_table, read_image_table


def blobs(n: int, seed: int = 0, size: int = 8) -> tuple[np.ndarray, pd.DataFrame]:
    """``n`` grayscale images with one bright square each: ``left`` (is it in the left half?),
    ``row`` (its vertical position, a regression target) and ``big`` (2×2 or 3×3)."""
    rng = np.random.default_rng(seed)
    imgs = np.zeros((n, size, size), np.uint8)
    rows = []
    for i in range(n):
        k = int(rng.integers(2, 4))
        r, c = (int(v) for v in rng.integers(0, size - k + 1, size=2))
        imgs[i, r : r + k, c : c + k] = 255
        rows.append({"file": f"img{i}.png", "left": int(c + k / 2 <= size / 2), "row": r + k / 2,
                     "big": "yes" if k == 3 else "no"})  # fmt: skip
    return imgs, pd.DataFrame(rows)


def write_folder(tmp_path, n: int = 60, seed: int = 0):
    from PIL import Image

    imgs, df = blobs(n, seed)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for img, name in zip(imgs, df.file, strict=True):
        Image.fromarray(img).save(folder / name)
    df.loc[3, "row"] = np.nan  # a missing label: left out of that task only
    labels = tmp_path / "labels.csv"
    df.to_csv(labels, index=False)
    return labels, folder, imgs


def test_read_image_table_reads_kinds_missing_labels_and_pixels(tmp_path):
    labels, folder, imgs = write_folder(tmp_path)
    table = read_image_table(labels, folder, "file", ["left", "row", "big"])
    assert table.x.shape == (60, 1, 8, 8)
    np.testing.assert_allclose(table.x[:, 0], imgs / 255.0)
    assert [t.kind for t in table.targets] == ["classification", "regression", "classification"]
    prep = prepare(table, seed=0)
    sizes = {t.name: sum(t[s].n for s in ("train", "val", "test")) for t in prep.tasks}
    assert sizes == {"left": 60, "row": 59, "big": 60}
    train = prep.tasks[0]["train"].x
    assert train.shape[1:] == (1, 8, 8) and abs(float(train.mean())) < 0.2  # standardised


def test_rgb_images_and_resizing(tmp_path):
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, size in enumerate((8, 8, 12, 8)):
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(
            folder / f"{i}.png"
        )
    labels = tmp_path / "l.csv"
    pd.DataFrame({"file": [f"{i}.png" for i in range(4)], "y": [0, 1, 0, 1]}).to_csv(labels)
    with pytest.raises(DataError, match=r"row 3: image .*2.png is 12×12, the first one 8×8"):
        read_image_table(labels, folder, "file", ["y"])
    table = read_image_table(labels, folder, "file", ["y"], size=6)
    assert table.x.shape == (4, 3, 6, 6)


def test_idx_table(tmp_path):
    imgs, df = blobs(40)
    save_idx(tmp_path / "x.idx", imgs)
    save_idx(
        tmp_path / "y.idx", df[["left", "big"]].replace({"yes": 1, "no": 0}).to_numpy(np.uint8)
    )
    table = read_idx_table(tmp_path / "x.idx", tmp_path / "y.idx")
    assert table.tasks == ["label0", "label1"] and table.x.shape == (40, 1, 8, 8)
    save_idx(tmp_path / "short.idx", np.zeros(39, np.uint8))
    with pytest.raises(DataError, match="mismatched lengths: 40 images"):
        read_idx_table(tmp_path / "x.idx", tmp_path / "short.idx")


@pytest.mark.parametrize(
    "damage, extra, message",
    [
        ("garbage", [], "row 6: "),  # an unreadable image (and the message says which)
        ("missing", [], "row 6: image"),
        ("none", ["--targets", "left,zz"], "no column(s) ['zz']"),
        ("none", ["--image-column", "path"], "no column(s) ['path']"),
        ("none", ["--targets", "left,row", "--features", "x"], "--features does not apply"),
        ("none", ["--model", "cnn:0"], "widths must be positive"),
    ],
)
def test_bad_image_input_exits_2_and_writes_nothing(tmp_path, capsys, damage, extra, message):
    labels, folder, _ = write_folder(tmp_path)
    if damage == "garbage":
        (folder / "img5.png").write_bytes(b"not a png at all")
    elif damage == "missing":
        (folder / "img5.png").unlink()
    out = tmp_path / "adv"
    args = ["advise", "--data", str(labels), "--images", str(folder), "--out", str(out)]
    if "--targets" not in extra:
        args += ["--targets", "left,row"]
    assert main([*args, *extra]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    if damage == "garbage":
        assert "column 'file', row 6" in err and "not a readable image" in err
    assert not out.exists()


@pytest.mark.slow
def test_advise_on_images_with_a_cnn_and_on_idx(tmp_path, capsys):
    labels, folder, imgs = write_folder(tmp_path, n=120)
    out = tmp_path / "adv"
    common = ["--seeds", "2", "--steps", "40", "--methods", "", "--rescales", "1", "--quiet",
              "--time-budget", "0", "--batch-size", "32"]  # fmt: skip
    args = ["advise", "--data", str(labels), "--images", str(folder), "--image-column", "file",
            "--targets", "left,row,big", "--out", str(out), "--model", "cnn:4,8", *common]  # fmt: skip
    assert main(args) == 0
    advice = json.loads((out / "advice.json").read_text())
    assert advice["tasks"] == ["left", "row", "big"]
    assert advice["per_task"]["row"]["metric"] == "r2"
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["identity"]["trunk"] == "cnn" and config["identity"]["images"] == str(folder)
    assert (out / "report.html").exists()
    # IDX images and labels, the CNN by default
    _, df = blobs(120)
    save_idx(tmp_path / "x.idx", imgs)
    save_idx(tmp_path / "y.idx", np.stack([df.left, df.big == "yes"], 1).astype(np.uint8))
    out2 = tmp_path / "adv_idx"
    assert main(["advise", "--data", str(tmp_path / "x.idx"), "--labels",
                 str(tmp_path / "y.idx"), "--out", str(out2), *common]) == 0  # fmt: skip
    config = yaml.safe_load((out2 / "config.yaml").read_text())
    assert config["identity"]["trunk"] == "cnn" and config["identity"]["widths"] == [16, 32]
    assert json.loads((out2 / "advice.json").read_text())["tasks"] == ["label0", "label1"]


def test_affinity_on_images(tmp_path, capsys):
    labels, folder, _ = write_folder(tmp_path, n=80)
    out = tmp_path / "aff"
    args = ["affinity", "--data", str(labels), "--images", str(folder), "--targets", "left,row",
            "--out", str(out), "--steps", "40", "--widths", "4,8", "--batch-size", "16"]  # fmt: skip
    assert main(args) == 0
    saved = json.loads((out / "affinity.json").read_text())
    assert saved["tasks"] == ["left", "row"]
    assert main(["affinity", "--targets", "left", "--out", str(tmp_path / "x")]) == 2
    assert "--targets is for your own data" in capsys.readouterr().err


def test_digit_images_round_trip(tmp_path):
    from mtlab.advise.synthetic import digit_images
    from mtlab.tasks.datasets import _digits

    labels = digit_images(tmp_path / "digits", tasks=("odd", "prime"))
    table = read_image_table(labels, tmp_path / "digits", "file", ["odd", "prime", "ink"])
    images, digits = _digits()
    assert table.x.shape == (1797, 1, 8, 8)
    np.testing.assert_allclose(table.x[:, 0], np.round(images * 255) / 255, atol=1e-6)
    assert (table.y["odd"] == digits % 2).all() and table.targets[2].kind == "regression"
