"""A synthetic table with planted structure, for trying ``mtlab advise`` and testing it:
tasks ``a``, ``b``, ``c`` read one latent score of the features, ``d`` and ``e`` another,
``noise`` is unrelated to the features; ``b`` and ``e`` are regression tasks, and every task
misses a fraction of its labels (70 % by default: a task alone has few labels, its block more).
``python -m mtlab.advise.synthetic table.csv [--rows 10000]`` writes one (``--tasks 16`` or
``--tasks 48``: a planted many-task table, :func:`planted_many`, printing its target names);
``python -m mtlab.advise.synthetic DIR --digits`` writes scikit-learn's digits as images with a
label table (:func:`digit_images`)."""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

BLOCK_LETTERS = "ABCDEFGHIJKMOPQRSTUVWXYZ"  # not L (loners) nor N (noise tasks)


def planted_table(
    rows: int = 10_000, features: int = 20, seed: int = 0, missing: float = 0.7
) -> pd.DataFrame:
    """The table (module doc): ``x0 … x{features-1}`` and the six targets. Each block's latent
    score is a product of two projections (an MLP needs data to learn it, so sharing the labels
    of a block's tasks helps); every target misses a fraction ``missing`` of its labels
    (independently), so no task alone has all the data."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features))
    w = rng.normal(size=(4, features))
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    p = x @ w.T
    s1, s2 = p[:, 0] * p[:, 1], p[:, 2] * p[:, 3]
    noise = 0.3 * rng.normal(size=(5, rows))
    df = pd.DataFrame(x, columns=[f"x{i}" for i in range(features)])
    df["a"] = np.where(s1 + noise[0] > 0, "yes", "no")
    df["b"] = 2.0 * s1 + noise[1]
    df["c"] = np.digitize(s1 + noise[2], [-0.5, 0.5])
    df["d"] = (s2 + noise[3] > 0).astype(int)
    df["e"] = 2.0 * s2 + noise[4]
    df["noise"] = rng.integers(0, 2, size=rows)
    for col in ("a", "b", "c", "d", "e", "noise"):
        df.loc[rng.random(rows) < missing, col] = np.nan
    return df


def planted_blocks(
    blocks: int = 4, per_block: int = 3, loners: int = 2, noise: int = 2, rows: int = 10_000,
    features: int = 40, kept: float = 0.2, seed: int = 0,
) -> pd.DataFrame:
    """A many-task table with planted structure: ``blocks`` blocks of ``per_block`` tasks
    (``A1``, ``A2``, … ``B1`` …; the letters skip L and N) that each read one latent score of
    the features — a product of two projections plus a third, so a network needs data to learn
    it and a block's labels help each other — ``loners`` tasks ``L1`` … that read a latent of
    their own, and ``noise`` tasks ``N1`` … whose labels are unrelated to the features. Within a
    block the tasks differ in kind: the first is a binary class (``yes``/``no``), the second a
    regression, the third three ordered classes, then again. Every task keeps a fraction
    ``kept`` of its labels (independently per task), so no task alone has much data."""
    if min(blocks, per_block, rows, features) < 1 or min(loners, noise) < 0:
        raise ValueError("need blocks, per_block, rows, features >= 1 and loners, noise >= 0")
    if not 0 < kept <= 1:
        raise ValueError(f"kept must be in (0, 1] (got {kept})")
    if blocks > len(BLOCK_LETTERS) or features < 3:
        raise ValueError(f"at most {len(BLOCK_LETTERS)} blocks, and at least 3 features")
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features))
    df = pd.DataFrame(x, columns=[f"x{i}" for i in range(features)])

    def latent() -> np.ndarray:
        w = rng.normal(size=(3, features))
        w /= np.linalg.norm(w, axis=1, keepdims=True)
        p = x @ w.T
        s = p[:, 0] * p[:, 1] + p[:, 2]
        return (s - s.mean()) / s.std()

    def target(s: np.ndarray, k: int) -> np.ndarray:
        e = s + 0.3 * rng.normal(size=rows)
        if k % 3 == 0:
            return np.where(e > 0, "yes", "no")
        if k % 3 == 1:
            return 2.0 * e
        return np.digitize(e, [-0.5, 0.5])

    for letter in BLOCK_LETTERS[:blocks]:
        s = latent()
        for k in range(per_block):
            df[f"{letter}{k + 1}"] = target(s, k)
    for k in range(loners):
        df[f"L{k + 1}"] = target(latent(), k)
    for k in range(noise):
        df[f"N{k + 1}"] = (rng.integers(0, 2, size=rows) if k % 2 == 0
                           else rng.normal(size=rows))  # fmt: skip
    for col in df.columns[features:]:
        df[col] = df[col].astype(object) if df[col].dtype.kind in "OU" else df[col].astype(float)
        df.loc[rng.random(rows) >= kept, col] = np.nan
    return df


#: the planted many-task tables of the estimator benchmark, by number of tasks
PLANTED = {16: {"blocks": 4, "per_block": 3, "loners": 2, "noise": 2},
           48: {"blocks": 12, "per_block": 3, "loners": 6, "noise": 6}}  # fmt: skip


def planted_many(tasks: int, rows: int = 10_000, seed: int = 0) -> pd.DataFrame:
    """The planted table of ``tasks`` tasks (a key of :data:`PLANTED`: 16 — 4 blocks of 3, 2
    loners, 2 noise tasks — or 48 — 12 blocks of 3, 6 loners, 6 noise tasks), 40 features, each
    task keeping a fifth of its labels."""
    if tasks not in PLANTED:
        raise ValueError(f"planted tables have {' or '.join(map(str, PLANTED))} tasks (got {tasks})")
    return planted_blocks(**PLANTED[tasks], rows=rows, seed=seed)


def planted_block(task: str) -> str | None:
    """The block letter of a task of :func:`planted_blocks` (``A2`` → ``A``); None for a loner
    (``L…``), a noise task (``N…``) or any other name."""
    if len(task) >= 2 and task[0] in BLOCK_LETTERS and task[1:].isdigit():
        return task[0]
    return None


def block_recovery(groups: Sequence[Sequence[str]]) -> dict[str, float]:
    """How well a grouping recovers the planted blocks of :func:`planted_blocks`, on the pairs
    of block tasks (loners and noise tasks must go somewhere when the budget is the number of
    blocks, and where they go is not block recovery): ``precision`` — of the pairs of block
    tasks the grouping puts in one group, the fraction that are block mates; ``recall`` — of the
    pairs of block mates among the tasks grouped, the fraction put in one group. Also the
    fraction of loners and noise tasks placed with a block task (``others_with_blocks``)."""
    tasks = sorted({t for g in groups for t in g})
    together = {tuple(sorted(p)) for g in groups for p in itertools.combinations(set(g), 2)}
    blocked = [t for t in tasks if planted_block(t) is not None]
    mates = {(a, b) for a, b in itertools.combinations(sorted(blocked), 2)
             if planted_block(a) == planted_block(b)}  # fmt: skip
    grouped = {(a, b) for a, b in together if planted_block(a) and planted_block(b)}
    others = [t for t in tasks if planted_block(t) is None]
    with_blocks = [t for t in others
                   if any(t in g and any(planted_block(u) for u in g) for g in groups)]  # fmt: skip
    return {
        "precision": len(grouped & mates) / len(grouped) if grouped else float("nan"),
        "recall": len(grouped & mates) / len(mates) if mates else float("nan"),
        "others_with_blocks": len(with_blocks) / len(others) if others else float("nan"),
    }


def digit_images(folder: str | Path, tasks: tuple[str, ...] = ("odd", "ge5", "prime", "closed_loop")
                 ) -> Path:  # fmt: skip
    """scikit-learn's handwritten digits (offline; 1797 images, 8 × 8) as PNG files in
    ``folder`` with ``folder/labels.csv``: ``file``, the digit attributes ``tasks`` (see
    :mod:`mtlab.tasks.datasets`) and ``ink`` (the image's mean intensity, a regression target) —
    a real image set for ``mtlab advise --images``. Returns the label table's path."""
    from PIL import Image

    from mtlab.tasks.datasets import DIGIT_ATTRIBUTES, _digits

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    images, digits = _digits()
    rows = []
    for i, (img, d) in enumerate(zip(images, digits, strict=True)):
        name = f"digit{i:04d}.png"
        Image.fromarray((img * 255).round().astype(np.uint8)).save(folder / name)
        rows.append({"file": name, **{t: int(d in DIGIT_ATTRIBUTES[t]) for t in tasks},
                     "ink": float(img.mean())})  # fmt: skip
    path = folder / "labels.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("path", help="the table to write (with --digits: the image folder)")
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tasks", type=int, default=None, choices=sorted(PLANTED),
                    help="a planted many-task table (blocks, loners, noise tasks) instead")
    ap.add_argument("--digits", action="store_true",
                    help="write scikit-learn's digits as PNG files + labels.csv instead")  # fmt: skip
    args = ap.parse_args(argv)
    if args.digits:
        print(digit_images(args.path))
    elif args.tasks is not None:  # prints the target names, for --targets
        df = planted_many(args.tasks, args.rows, args.seed)
        df.to_csv(args.path, index=False)
        print(",".join(c for c in df.columns if not c.startswith("x")))
    else:
        planted_table(args.rows, seed=args.seed).to_csv(args.path, index=False)


if __name__ == "__main__":  # pragma: no cover
    main()
