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
from mtlab.tasks.subspace import (
    DownstreamTask,
    SubspaceSpec,
    downstream_task,
    projection,
    sample_downstream,
    sample_tasks,
    unit_directions,
)

__all__ = [
    "SETTINGS",
    "DownstreamTask",
    "SparseTeacherSpec",
    "Split",
    "SubspaceSpec",
    "TaskData",
    "TeacherPair",
    "downstream_task",
    "label_noise",
    "linear_task",
    "projection",
    "rms_normalised_gaussian",
    "sample_downstream",
    "sample_tasks",
    "sample_teachers",
    "setting_defaults",
    "task_inputs",
    "unit_directions",
]
