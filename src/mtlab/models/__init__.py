"""Layer 0: network specs with named shared / task-specific parameters, evaluated as ensembles."""

from mtlab.models.base import EnsembleModel, Params, index_params, per_run, stack_params
from mtlab.models.diagonal import DiagonalNet

__all__ = ["DiagonalNet", "EnsembleModel", "Params", "index_params", "per_run", "stack_params"]
