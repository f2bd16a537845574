"""Image classification split into an auxiliary and a main task (Lippl & Lindsey 2024, §4).

The classes are permuted with the seed; the first two form the **main** task (binary, trained on
``n_main`` images, tested on held-out images of those two classes) and the rest the
**auxiliary** task (multi-class). Sources:

* ``digits`` — scikit-learn's handwritten digits (1797 images, 8×8, offline): 10 classes → main =
  2 digits, auxiliary = the other 8. Each class is split 60 / 40 into a train pool and a test set
  (seeded).
* ``cifar100`` — CIFAR-100 from the python-pickle files in ``data_dir``
  (:func:`mtlab.tasks.loaders.load_cifar`): main = 2 classes (train pool: their 1000 training
  images; test: their 200 test images), auxiliary = the other 98 classes.

Images are scaled to [0, 1] and normalised with mean 0.5, std 0.5 per channel (the paper's
normalisation); no augmentation. The ``n_main`` training images are the first ``n_main`` of a
seeded permutation of the main pool (balanced by class where possible), so the sets are nested in
``n_main``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

from mtlab._seeding import derive_seed

IMAGE_SOURCES = ("digits", "cifar100")


@dataclass(frozen=True)
class AuxMainImages:
    """Tensors of one aux/main split: ``x_*`` float32 ``(n, C, H, W)``, ``y_*`` int64.

    Main labels are 0/1 (index into ``main_classes``); auxiliary labels 0…K−1 (index into
    ``aux_classes``). ``x_main_pool`` holds every main training image available; runs train on a
    prefix of it (:meth:`main_train`)."""

    x_main_pool: Tensor
    y_main_pool: Tensor
    x_main_test: Tensor
    y_main_test: Tensor
    x_aux: Tensor
    y_aux: Tensor
    x_aux_test: Tensor
    y_aux_test: Tensor
    main_classes: tuple[int, int]
    aux_classes: tuple[int, ...]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_aux.shape[1:])

    def main_train(self, n: int) -> tuple[Tensor, Tensor]:
        if not 1 <= n <= len(self.y_main_pool):
            raise ValueError(
                f"n_main must be in [1, {len(self.y_main_pool)}] for this data; got {n}"
            )
        return self.x_main_pool[:n], self.y_main_pool[:n]


def _balanced_order(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A permutation that alternates classes (so every prefix is as balanced as possible)."""
    per = [rng.permutation(np.flatnonzero(y == c)) for c in np.unique(y)]
    order = []
    for k in range(max(len(p) for p in per)):
        for p in per:
            if k < len(p):
                order.append(p[k])
    return np.asarray(order, dtype=np.int64)


def _normalise(x: np.ndarray) -> Tensor:
    return torch.from_numpy(((x.astype(np.float32) - 0.5) / 0.5).astype(np.float32))


def split_aux_main(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    n_classes: int,
    seed: int,
) -> AuxMainImages:
    """Split images in [0, 1] ``(n, C, H, W)`` with labels ``0…n_classes−1`` by a seeded class
    permutation: main = the first two classes, auxiliary = the rest."""
    rng = np.random.default_rng(derive_seed(seed, "aux_main_classes", n_classes))
    perm = rng.permutation(n_classes)
    main, aux = perm[:2], perm[2:]
    aux_map = np.full(n_classes, -1)
    aux_map[aux] = np.arange(len(aux))

    def pick(x: np.ndarray, y: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        m = np.isin(y, classes)
        return x[m], y[m]

    xm, ym = pick(x_train, y_train, main)
    ym = (ym == main[1]).astype(np.int64)
    order = _balanced_order(ym, rng)
    xmt, ymt = pick(x_test, y_test, main)
    xa, ya = pick(x_train, y_train, aux)
    xat, yat = pick(x_test, y_test, aux)
    return AuxMainImages(
        _normalise(xm[order]),
        torch.from_numpy(ym[order]),
        _normalise(xmt),
        torch.from_numpy((ymt == main[1]).astype(np.int64)),
        _normalise(xa),
        torch.from_numpy(aux_map[ya].astype(np.int64)),
        _normalise(xat),
        torch.from_numpy(aux_map[yat].astype(np.int64)),
        (int(main[0]), int(main[1])),
        tuple(int(c) for c in aux),
    )


@lru_cache(maxsize=4)
def _digit_arrays(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]  # (1797, 1, 8, 8)
    y = d.target.astype(np.int64)
    rng = np.random.default_rng(derive_seed(seed, "digits_test_split"))
    test = np.zeros(len(y), bool)
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(y == c))
        test[idx[: round(0.4 * len(idx))]] = True
    return x[~test], y[~test], x[test], y[test]


@lru_cache(maxsize=2)
def _cifar_arrays(data_dir: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    from mtlab.tasks.loaders import load_cifar

    d = load_cifar(data_dir, "cifar100")

    def scale(a: np.ndarray) -> np.ndarray:
        return a.astype(np.float32) / 255.0

    x_tr, y_tr, x_te, y_te = (np.asarray(d[k]) for k in ("x_train", "y_train", "x_test", "y_test"))
    return scale(x_tr), y_tr, scale(x_te), y_te, len(d["classes"])


def load_aux_main(source: str, seed: int, data_dir: str | None = None) -> AuxMainImages:
    """The aux/main split of ``source`` ∈ {digits, cifar100} for ``seed`` (see module docstring)."""
    if source == "digits":
        xtr, ytr, xte, yte = _digit_arrays(seed)
        return split_aux_main(xtr, ytr, xte, yte, 10, seed)
    if source == "cifar100":
        if data_dir is None:
            raise ValueError(
                "cifar100 needs data_dir: the folder with the CIFAR-100 python files "
                "(train, test, meta) or its parent"
            )
        xtr, ytr, xte, yte, k = _cifar_arrays(str(data_dir))
        return split_aux_main(xtr, ytr, xte, yte, k, seed)
    raise ValueError(f"unknown image source {source!r}; allowed: {', '.join(IMAGE_SOURCES)}")


__all__ = ["IMAGE_SOURCES", "AuxMainImages", "load_aux_main", "split_aux_main"]
