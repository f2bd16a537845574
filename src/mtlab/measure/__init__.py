"""Layer 1: pure measurements (no mutation of models, optimisers or random streams)."""

from mtlab.measure.features import RidgeFit, gradient_features, ridge_select
from mtlab.measure.probe import Probe, fit_probe
from mtlab.measure.regression import relative_distance, support_recall
from mtlab.measure.representation import (
    effective_units,
    ensd,
    kmeans_profile,
    participation_ratio,
    unit_alignment,
)
from mtlab.measure.subspace import energy_fraction, principal_sines, sin_max, subspace_metrics

__all__ = [
    "Probe",
    "RidgeFit",
    "effective_units",
    "energy_fraction",
    "ensd",
    "fit_probe",
    "gradient_features",
    "kmeans_profile",
    "participation_ratio",
    "principal_sines",
    "relative_distance",
    "ridge_select",
    "sin_max",
    "subspace_metrics",
    "support_recall",
    "unit_alignment",
]
