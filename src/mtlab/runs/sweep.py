"""Sweeps from YAML: a base config plus a grid (cartesian product) or several grids (union).

.. code-block:: yaml

    study: my_sweep          # recorded in every row (default: custom)
    family: diagonal         # default: diagonal
    seeds: 2                 # shorthand for grid entry seed: [0, 1]
    base: {d: 200, k1: 20, n_aux: 256, max_steps: 5000}
    grid:                    # or  grids: [{...}, {...}]  (each a product; the union is run)
      method: [stl, mtl, ptft]
      n_main: [16, 32]
      rescale: [1.0, 0.1]

Every grid point is validated before any work; errors name the point, the field and the value.
Points that resolve to the same run (e.g. ``rescale`` for STL, which ignores it) run once.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from mtlab.runs.config import ConfigError, RunConfig, make_config

TOP_KEYS = {"study", "family", "seeds", "base", "grid", "grids"}


def expand(spec: dict[str, Any]) -> list[RunConfig]:
    """Validate a sweep spec (the YAML's mapping) and return its run configs (deduplicated)."""
    if not isinstance(spec, dict):
        raise ConfigError(
            f"sweep: the file must contain a mapping with keys {', '.join(sorted(TOP_KEYS))}"
        )
    unknown = sorted(set(spec) - TOP_KEYS)
    if unknown:
        raise ConfigError(
            f"sweep: unknown key(s) {unknown}; allowed: {', '.join(sorted(TOP_KEYS))}"
        )
    if "grid" in spec and "grids" in spec:
        raise ConfigError("sweep: give either 'grid' or 'grids', not both")
    base = spec.get("base") or {}
    if not isinstance(base, dict):
        raise ConfigError(f"base: must be a mapping of config fields (got {base!r})")
    if "grid" in spec and not isinstance(spec["grid"] or {}, dict):
        raise ConfigError(
            "grid: must be a mapping field -> list of values (got a "
            f"{type(spec['grid']).__name__}; several grids go under 'grids:')"
        )
    grids = spec.get("grids", [spec.get("grid") or {}])
    if not isinstance(grids, list) or not all(isinstance(g, dict) for g in grids):
        raise ConfigError("grids: must be a list of mappings field -> list of values")
    seeds = spec.get("seeds")
    if seeds is not None and (not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 1):
        raise ConfigError(f"seeds: must be a positive integer (got {seeds!r})")
    head: dict[str, Any] = {k: spec[k] for k in ("study", "family") if k in spec}
    configs: dict[str, RunConfig] = {}
    errors: list[str] = []
    point = 0
    for gi, grid in enumerate(grids):
        grid = dict(grid)
        if seeds is not None:
            if "seed" in grid or "seed" in base:
                raise ConfigError("seeds: give either 'seeds' or a 'seed' field, not both")
            grid["seed"] = list(range(seeds))
        for k, v in grid.items():
            if not isinstance(v, list) or not v:
                raise ConfigError(f"grid[{gi}].{k}: must be a non-empty list (got {v!r})")
        keys = list(grid)
        for values in itertools.product(*(grid[k] for k in keys)):
            overrides = dict(zip(keys, values, strict=True))
            where = f"grid point {point} ({', '.join(f'{k}={v}' for k, v in overrides.items())}): "
            point += 1
            try:
                cfg = make_config({**base, **head, **overrides}, where)
            except ConfigError as err:
                errors.append(str(err))
                continue
            configs.setdefault(cfg.run_id(), cfg)
    if errors:
        shown = errors[:10] + ([f"... and {len(errors) - 10} more"] if len(errors) > 10 else [])
        raise ConfigError("\n".join(shown))
    if not configs:
        raise ConfigError("sweep: the grid is empty")
    return list(configs.values())


def load_sweep(path: str | Path) -> tuple[dict[str, Any], list[RunConfig]]:
    """Read and validate a YAML sweep file; returns the raw spec and its configs."""
    import yaml

    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such sweep file")
    try:
        spec = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from None
    return spec, expand(spec)
