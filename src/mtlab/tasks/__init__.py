"""Layer 0: task families and their data (no models, no training)."""

from mtlab.tasks.base import Split, TaskData, rms_normalised_gaussian
from mtlab.tasks.sparse_teacher import (
    SETTINGS,
    SparseTeacherSpec,
    TeacherPair,
    label_noise,
    linear_task,
    sample_teachers,
    setting_defaults,
    task_inputs,
)

__all__ = [
    "SETTINGS",
    "SparseTeacherSpec",
    "Split",
    "TaskData",
    "TeacherPair",
    "label_noise",
    "linear_task",
    "rms_normalised_gaussian",
    "sample_teachers",
    "setting_defaults",
    "task_inputs",
]
