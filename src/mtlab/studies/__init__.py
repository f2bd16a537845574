"""Layer 4: one module per published study (config grid, analysis, figures, claims)."""

from mtlab.report.analysis import Analysis, Claim, Section
from mtlab.studies import (  # noqa: F401  (registration)
    affinity,
    benchmark,
    custom,
    diagonal,
    images,
    relu,
    subspace,
    trajectories,
    transference,
)
from mtlab.studies.base import REGISTRY, Preset, Study, get_study, register

__all__ = ["REGISTRY", "Analysis", "Claim", "Preset", "Section", "Study", "get_study", "register"]
