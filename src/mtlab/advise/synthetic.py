"""A synthetic table with planted structure, for trying ``mtlab advise`` and testing it:
tasks ``a``, ``b``, ``c`` read one latent direction of the features, ``d`` and ``e`` another,
``noise`` is unrelated to the features; ``b`` and ``e`` are regression tasks and miss a fraction
of their labels. ``python -m mtlab.advise.synthetic table.csv [--rows 10000]`` writes one."""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd


def planted_table(
    rows: int = 10_000, features: int = 20, seed: int = 0, missing: float = 0.2
) -> pd.DataFrame:
    """The table (module doc): ``x0 … x{features-1}`` and the six targets."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features))
    w1, w2 = rng.normal(size=features), rng.normal(size=features)
    w1, w2 = w1 / np.linalg.norm(w1), w2 / np.linalg.norm(w2)
    z1, z2 = x @ w1, x @ w2
    df = pd.DataFrame(x, columns=[f"x{i}" for i in range(features)])
    df["a"] = np.where(z1 + 0.3 * rng.normal(size=rows) > 0, "yes", "no")
    df["b"] = 2.0 * z1 + np.tanh(2 * z1) + 0.3 * rng.normal(size=rows)
    df["c"] = np.digitize(z1 + 0.3 * rng.normal(size=rows), [-0.7, 0.7])
    df["d"] = (z2 + 0.3 * rng.normal(size=rows) > 0.3).astype(int)
    df["e"] = np.abs(z2) + 0.3 * rng.normal(size=rows)
    df["noise"] = rng.integers(0, 2, size=rows)
    for col in ("b", "e"):
        df.loc[rng.random(rows) < missing, col] = np.nan
    return df


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("path")
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    planted_table(args.rows, seed=args.seed).to_csv(args.path, index=False)


if __name__ == "__main__":  # pragma: no cover
    main()
