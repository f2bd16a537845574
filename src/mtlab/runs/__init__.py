"""Layer 3: validated configs, sweeps, the executor and the results store."""

from mtlab.runs.config import ConfigError, DiagonalRunConfig, RunConfig, make_config
from mtlab.runs.executor import execute
from mtlab.runs.store import RunStore
from mtlab.runs.sweep import expand, load_sweep

__all__ = [
    "ConfigError",
    "DiagonalRunConfig",
    "RunConfig",
    "RunStore",
    "execute",
    "expand",
    "load_sweep",
    "make_config",
]
