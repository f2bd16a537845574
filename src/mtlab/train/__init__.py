"""Layer 2: the one training loop, per-run optimisers and the training regimes."""

from mtlab.train.headfirst import alternating_sgd, one_step
from mtlab.train.loop import Hook, LoopConfig, RunOutcome, TrainData, train_ensemble
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
