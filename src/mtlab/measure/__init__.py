"""Layer 1: pure measurements (no mutation of models, optimisers or random streams)."""

from mtlab.measure.regression import relative_distance, support_recall

__all__ = ["relative_distance", "support_recall"]
