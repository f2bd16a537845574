"""Layer 1: pure measurements (no mutation of models, optimisers or random streams)."""

from mtlab.measure.probe import Probe, fit_probe
from mtlab.measure.regression import relative_distance, support_recall
from mtlab.measure.subspace import energy_fraction, principal_sines, sin_max, subspace_metrics

__all__ = [
    "Probe",
    "energy_fraction",
    "fit_probe",
    "principal_sines",
    "relative_distance",
    "sin_max",
    "subspace_metrics",
    "support_recall",
]
