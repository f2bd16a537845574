"""Layer 2: the training loops (see docs/ARCHITECTURE.md, *The training loops*), per-run optimisers
and the head-first algorithms."""

from mtlab.train.ensemble import Hook, LoopConfig, RunOutcome, TrainData, train_ensemble
from mtlab.train.headfirst import alternating_sgd, one_step
from mtlab.train.optim import OPTIMIZERS, EnsembleOptimizer

__all__ = [
    "OPTIMIZERS",
    "EnsembleOptimizer",
    "Hook",
    "LoopConfig",
    "RunOutcome",
    "TrainData",
    "alternating_sgd",
    "one_step",
    "train_ensemble",
]
