"""Layer 1: pure measurements (no mutation of models, optimisers or random streams)."""

from mtlab.measure.curvature import (
    fisher_trace,
    gradient_coherence,
    noise_scale,
    per_example_grads,
    sharpness,
)
from mtlab.measure.features import RidgeFit, gradient_features, ridge_select
from mtlab.measure.gap import match_levels, matched_gap
from mtlab.measure.probe import Probe, fit_probe
from mtlab.measure.regression import relative_distance, support_recall
from mtlab.measure.representation import (
    effective_units,
    ensd,
    kmeans_profile,
    participation_ratio,
    unit_alignment,
)
from mtlab.measure.stats import correlate
from mtlab.measure.subspace import energy_fraction, principal_sines, sin_max, subspace_metrics

__all__ = [
    "Probe",
    "RidgeFit",
    "correlate",
    "effective_units",
    "energy_fraction",
    "ensd",
    "fisher_trace",
    "fit_probe",
    "gradient_coherence",
    "gradient_features",
    "kmeans_profile",
    "match_levels",
    "matched_gap",
    "noise_scale",
    "participation_ratio",
    "per_example_grads",
    "principal_sines",
    "relative_distance",
    "ridge_select",
    "sharpness",
    "sin_max",
    "subspace_metrics",
    "support_recall",
    "unit_alignment",
]
