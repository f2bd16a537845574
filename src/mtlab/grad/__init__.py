"""Layer 1: the multi-task gradient engine (step rules; Jacobian backends and aggregators later)."""

from mtlab.grad.step import StepOutput, StepRule, WeightedSum

__all__ = ["StepOutput", "StepRule", "WeightedSum"]
