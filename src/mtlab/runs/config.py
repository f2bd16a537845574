"""Validated run configurations (pydantic) and the family registry.

A *run config* is flat: every field is a column of the results table. A *family* (a task family
plus its model and regimes, e.g. ``diagonal``) owns a config class and knows how to train a chunk
of its runs as one ensemble (see :mod:`mtlab.runs.diagonal`).

Invalid input fails before any work with a :class:`ConfigError` whose message names the field,
the bad value and what is allowed; the CLI turns it into exit code 2.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mtlab.tasks.sparse_teacher import SETTINGS, default_overlap, setting_defaults


class ConfigError(ValueError):
    """Invalid configuration; ``str(err)`` lists every problem, one per line."""


def format_validation_error(err: ValidationError, where: str = "") -> str:
    lines: list[str] = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        msg = e["msg"]
        if not loc and msg.startswith("Value error, "):
            lines.extend(f"{where}{m}" for m in msg[len("Value error, ") :].split("; "))
            continue
        if e.get("type") == "extra_forbidden":
            msg = "unknown field (not allowed)"
        got = e.get("input")
        shown = "" if isinstance(got, dict) else f" (got {got!r})"
        lines.append(f"{where}{loc}: {msg}{shown}")
    return "\n".join(lines)


class RunConfig(BaseModel):
    """Fields every family shares. Subclasses add their own and set ``family``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    family: str
    study: str = Field("custom", min_length=1, description="study name recorded in every row")
    method: str
    seed: int = Field(0, ge=0)

    #: fields that do not affect a run of the given method (set to None in its row and run id)
    irrelevant: ClassVar[dict[str, tuple[str, ...]]] = {}

    def row_fields(self) -> dict[str, Any]:
        """The config as a results row: irrelevant fields (for this method) become None."""
        data = self.model_dump()
        for name in self.irrelevant.get(self.method, ()):
            data[name] = None
        return data

    def identity(self) -> dict[str, Any]:
        """What makes two runs the same run: the canonical row (a family may leave out where
        its inputs are read from, when their content identifies them)."""
        return self.row_fields()

    def run_id(self) -> str:
        """Stable 16-hex id of :meth:`identity` (identical runs share it, so sweeps dedupe)."""
        blob = json.dumps(self.identity(), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def dependencies(self) -> list[RunConfig]:
        """Runs that must finish first (e.g. pretraining)."""
        return []


_TRAIN_ONLY = ("momentum",)
_MAIN = ("setting", "k2", "overlap", "main_signs", "n_main", "lr", "max_steps")
_FT = ("rescale", "readout_init", "readout_rule", "pt_lr", "pt_max_steps")


class DiagonalRunConfig(RunConfig):
    """One diagonal-network run (Lippl & Lindsey 2024, §1): a teacher pair, a regime, training.

    ``method``: ``stl`` (main task alone), ``mtl`` (shared first layer, two readouts, pooled MSE over
    aux + main samples), ``pt`` (auxiliary task alone), ``ptft`` (finetune a PT run: readouts reset to
    γ, first layer × s, all trained), ``ptft_lr`` (the same start, readouts only).
    ``readout_init`` γ defaults by ``readout_rule``: ``paired`` γ = α·s (the authors' rescaling
    sweep), ``fixed`` γ = α.
    """

    family: Literal["diagonal"] = "diagonal"
    method: Literal["stl", "mtl", "pt", "ptft", "ptft_lr"] = "stl"
    setting: Literal["identical", "nested_subset", "all_aux", "new_dims", "partial_overlap"] = (
        "nested_subset"
    )
    d: int = Field(1000, ge=1, description="input dimension")
    k1: int = Field(40, ge=1, description="auxiliary support size")
    k2: int | None = Field(None, ge=1, description="main support size (default: by setting)")
    overlap: int | None = Field(None, ge=0, description="shared coordinates (default: by setting)")
    main_signs: Literal["same", "random"] | None = None
    normalisation: Literal["l2", "l1"] = "l2"
    noise: float = Field(0.0, ge=0, description="label-noise standard deviation")
    n_aux: int = Field(1024, ge=1)
    n_main: int = Field(32, ge=1)
    n_val: int = Field(1000, ge=1)
    n_test: int = Field(2000, ge=1)
    init_scale: float = Field(1e-3, gt=0, description="α: every weight starts at α")
    rescale: float = Field(1.0, gt=0, description="s: first layer × s after pretraining")
    readout_init: float | None = Field(None, gt=0, description="γ: readout re-init after PT")
    readout_rule: Literal["paired", "fixed"] = "paired"
    lr: float = Field(0.1, gt=0)
    pt_lr: float = Field(0.5, gt=0)
    optimizer: Literal["sgd", "momentum", "adam"] = "sgd"
    batch_size: int | None = Field(None, ge=1, description="None: full-batch gradient descent")
    momentum: float = Field(0.9, ge=0, lt=1)
    max_steps: int = Field(100_000, ge=1)
    pt_max_steps: int = Field(100_000, ge=1)
    threshold: float = Field(1e-10, ge=0, description="stop at train MSE below this (0: never)")
    max_restarts: int = Field(3, ge=0)
    divergence_loss: float = Field(100.0, gt=0)
    log_every: int = Field(1000, ge=1)
    dtype: Literal["float32", "float64"] = "float32"

    irrelevant: ClassVar[dict[str, tuple[str, ...]]] = {
        "pt": (*_MAIN, "rescale", "readout_init", "readout_rule"),
        "stl": ("n_aux", *_FT),
        "mtl": _FT,
        "ptft": (),
        "ptft_lr": (),
    }

    @model_validator(mode="after")
    def _resolve(self) -> DiagonalRunConfig:
        defaults = setting_defaults(self.setting, self.k1)
        k2 = self.k2 if self.k2 is not None else defaults["k2"]
        overlap = self.overlap if self.overlap is not None else defaults["overlap"]
        if overlap is None:
            overlap = default_overlap(self.setting, k2)
        signs = self.main_signs or defaults["main_signs"]
        errors = []
        if self.k1 > self.d:
            errors.append(f"k1: must be <= d={self.d} (got {self.k1})")
        if k2 > self.d:
            errors.append(f"k2: must be <= d={self.d} (got {k2})")
        if self.setting == "nested_subset" and k2 >= self.k1:
            errors.append(f"k2: setting 'nested_subset' needs k2 < k1={self.k1} (got {k2})")
        if self.setting in ("identical", "all_aux") and k2 != self.k1:
            errors.append(f"k2: setting {self.setting!r} needs k2 == k1={self.k1} (got {k2})")
        if self.setting == "new_dims" and overlap != 0:
            errors.append(f"overlap: setting 'new_dims' needs overlap 0 (got {overlap})")
        if overlap > min(self.k1, k2):
            errors.append(f"overlap: must be <= min(k1, k2)={min(self.k1, k2)} (got {overlap})")
        if self.k1 + k2 - overlap > self.d:
            errors.append(f"k2: k1 + k2 - overlap = {self.k1 + k2 - overlap} must be <= d={self.d}")
        if errors:
            raise ValueError("; ".join(errors))
        gamma = self.readout_init
        if gamma is None:
            gamma = self.init_scale * (self.rescale if self.readout_rule == "paired" else 1.0)
        object.__setattr__(self, "k2", k2)
        object.__setattr__(self, "overlap", overlap)
        object.__setattr__(self, "main_signs", signs)
        object.__setattr__(self, "readout_init", gamma)
        return self

    def row_fields(self) -> dict[str, Any]:
        data = super().row_fields()
        if self.optimizer != "momentum":
            data["momentum"] = None
        data["readout_rule"] = None  # resolved into readout_init
        return data

    def dependencies(self) -> list[RunConfig]:
        if self.method in ("ptft", "ptft_lr"):
            return [self.pretraining()]
        return []

    def pretraining(self) -> DiagonalRunConfig:
        """The PT run this finetuning run starts from (shared by every setting, n_main and s)."""
        return self.model_copy(update={"method": "pt"})


RELU_SETTINGS = {
    "identical": (1.0,) * 6,
    "correlated_0.9": (0.9,) * 6,
    "partial_new": (1.0, 1.0, 1.0, 0.0, 0.0, 0.0),
    "unrelated": (0.0,) * 6,
}
_RELU_MAIN = (
    "setting",
    "correlation",
    "correlations",
    "n_units",
    "magnitude",
    "main_signs",
    "n_main",
    "lr",
    "lr_rule",
    "max_steps",
)
_RELU_FT = ("rescale", "readout_init", "pt_lr", "pt_max_steps")
_RELU_TRAIN = ("lr", "lr_rule", "max_steps", "threshold", "max_restarts", "divergence_loss")


class ReluRunConfig(RunConfig):
    """One ReLU teacher–student run (Lippl & Lindsey 2024, §2): a teacher pair, a regime, training.

    ``setting`` picks the main teacher: ``identical`` / ``correlated_0.9`` / ``partial_new`` /
    ``unrelated`` (the paper's correlation vectors), ``uniform`` (every unit at cosine
    ``correlation``), ``custom`` (``correlations``, one per auxiliary unit), ``subset`` / ``new``
    (``n_units`` of the auxiliary units, or as many new orthogonal units). ``magnitude`` scales the
    main teacher's output.

    ``method``: ``stl``, ``mtl`` (shared hidden layer, two readouts, loss weighted by sample
    counts), ``pt`` (auxiliary task), ``ptft`` (readout redrawn at ``readout_init``·√(2/m), first
    layer × ``rescale``, all trained), ``ptft_lr`` (ridge on the rescaled pretrained hidden
    features) and ``ntk`` (ridge on the parameter-gradient features at the start of finetuning);
    ridge strengths come from ``logspace(−5, 10, ridge_alphas)``, chosen on validation data.
    ``lr_rule: inverse_square`` finetunes with ``lr / max(1, s)²`` (a larger first layer makes
    the same step size diverge).
    """

    family: Literal["relu"] = "relu"
    method: Literal["stl", "mtl", "pt", "ptft", "ptft_lr", "ntk"] = "stl"
    setting: Literal[
        "identical",
        "correlated_0.9",
        "partial_new",
        "unrelated",
        "uniform",
        "custom",
        "subset",
        "new",
    ] = "identical"
    correlation: float | None = Field(
        None, ge=-1, le=1, description="cosine of every main unit (setting 'uniform')"
    )
    correlations: tuple[float, ...] | None = Field(None, description="per-unit cosines ('custom')")
    n_units: int | None = Field(None, ge=1, description="main units (settings subset / new)")
    magnitude: float = Field(1.0, gt=0, description="main teacher output factor")
    main_signs: Literal["random", "same"] = "random"
    d: int = Field(15, ge=2, description="input dimension")
    n_aux_units: int = Field(6, ge=1, description="auxiliary teacher units")
    width: int = Field(1000, ge=1, description="student hidden units m")
    init_scale: float = Field(1e-3, gt=0, description="init N(0, (scale·√(2/fan_in))²)")
    n_aux: int = Field(1024, ge=1)
    n_main: int = Field(64, ge=1)
    n_val: int = Field(1000, ge=1)
    n_test: int = Field(10_000, ge=1)
    n_rep: int = Field(1000, ge=1, description="main inputs for PR / ENSD")
    rescale: float = Field(1.0, gt=0, description="s: first layer × s after pretraining")
    readout_init: float = Field(1e-3, gt=0, description="readout re-init scale after PT")
    lr: float = Field(0.5, gt=0)
    lr_rule: Literal["inverse_square", "fixed"] = "inverse_square"
    pt_lr: float = Field(0.5, gt=0)
    batch_size: int | None = Field(None, ge=1, description="None: full-batch gradient descent")
    max_steps: int = Field(100_000, ge=1)
    pt_max_steps: int = Field(100_000, ge=1)
    threshold: float = Field(1e-8, ge=0, description="stop at train MSE below this (0: never)")
    max_restarts: int = Field(3, ge=0)
    divergence_loss: float = Field(100.0, gt=0)
    log_every: int = Field(1000, ge=1)
    ridge_alphas: int = Field(100, ge=1, description="ridge grid size, logspace(-5, 10)")
    dtype: Literal["float32", "float64"] = "float32"

    irrelevant: ClassVar[dict[str, tuple[str, ...]]] = {
        "pt": (*_RELU_MAIN, "rescale", "readout_init", "ridge_alphas", "n_rep"),
        "stl": ("n_aux", *_RELU_FT, "ridge_alphas"),
        "mtl": (*_RELU_FT, "ridge_alphas"),
        "ptft": ("ridge_alphas",),
        "ptft_lr": _RELU_TRAIN,
        "ntk": _RELU_TRAIN,
    }

    @model_validator(mode="after")
    def _resolve(self) -> ReluRunConfig:
        k = self.n_aux_units
        errors = []
        corr = self.correlations
        if self.setting in RELU_SETTINGS:
            if k != 6:
                errors.append(f"setting: {self.setting!r} is defined for n_aux_units = 6 (got {k})")
            corr = RELU_SETTINGS[self.setting]
        elif self.setting == "uniform":
            if self.correlation is None:
                errors.append("correlation: setting 'uniform' needs a correlation")
            else:
                corr = (self.correlation,) * k
        elif self.setting == "custom":
            if corr is None or len(corr) != k:
                errors.append(
                    f"correlations: setting 'custom' needs {k} values "
                    f"(got {None if corr is None else len(corr)})"
                )
            elif any(not -1 <= c <= 1 for c in corr):
                errors.append(f"correlations: values must lie in [-1, 1] (got {corr})")
        if self.setting in ("subset", "new"):
            if self.n_units is None:
                errors.append(f"n_units: setting {self.setting!r} needs n_units")
            elif self.setting == "subset" and self.n_units > k:
                errors.append(f"n_units: 'subset' needs n_units <= n_aux_units={k}")
            corr = None
        elif self.n_units is not None and self.n_units != k:
            errors.append(
                f"n_units: only settings subset / new choose n_units (got {self.n_units})"
            )
        need = k
        if self.setting == "new":
            need = k + (self.n_units or 0)
        elif corr is not None and any(abs(c) < 1 for c in corr):
            need = 2 * k
        if need > self.d:
            errors.append(f"d: the teachers need {need} orthogonal directions (got d={self.d})")
        if errors:
            raise ValueError("; ".join(errors))
        if corr is not None:
            object.__setattr__(self, "correlations", tuple(float(c) for c in corr))
            if len(set(corr)) == 1:
                object.__setattr__(self, "correlation", float(corr[0]))
        if self.n_units is None:
            object.__setattr__(self, "n_units", k)
        return self

    def teacher_spec(self):
        """The :class:`~mtlab.tasks.relu_teacher.ReluTeacherSpec` of this run."""
        from mtlab.tasks.relu_teacher import ReluTeacherSpec

        mode = self.setting if self.setting in ("subset", "new") else "correlated"
        return ReluTeacherSpec(
            d=self.d,
            n_aux_units=self.n_aux_units,
            mode=mode,
            correlations=self.correlations or (1.0,) * self.n_aux_units,
            n_units=self.n_units or self.n_aux_units,
            magnitude=self.magnitude,
            main_signs=self.main_signs,
        )

    def row_fields(self) -> dict[str, Any]:
        data = super().row_fields()
        if data.get("correlations") is not None:
            data["correlations"] = ",".join(f"{c:g}" for c in data["correlations"])
        return data

    def dependencies(self) -> list[RunConfig]:
        return [self.pretraining()] if self.method in ("ptft", "ptft_lr", "ntk") else []

    def pretraining(self) -> ReluRunConfig:
        """The PT run this run starts from (shared by every main setting, n_main and s)."""
        return self.model_copy(update={"method": "pt"})

    def finetune_lr(self) -> float:
        if self.method == "ptft" and self.lr_rule == "inverse_square":
            return self.lr / max(1.0, self.rescale) ** 2
        return self.lr


class ImagesRunConfig(RunConfig):
    """One run of the deep-network rescaling check (Lippl & Lindsey 2024, §3.2 / §4): images split
    into an auxiliary task (all classes but two) and a binary main task (the two others, chosen by
    the seed; :mod:`mtlab.tasks.images`).

    ``method``: ``pt`` (auxiliary task), ``stl`` (main task from scratch), ``mtl`` (each epoch a
    pass over the main data then one over the auxiliary data, auxiliary loss scaled by the
    batch-count ratio), ``ptft`` (load the PT network, multiply **every** parameter — BatchNorm
    affines and both heads included — by ``rescale``, train everything on the main task). The
    network has one head per task (main: 2 outputs, auxiliary: the rest), which is the paper's
    shared 100-way head with the main logits never trained during pretraining.
    """

    family: Literal["images"] = "images"
    method: Literal["pt", "stl", "mtl", "ptft"] = "ptft"
    source: Literal["digits", "cifar100"] = "digits"
    data_dir: str | None = Field(None, description="CIFAR-100 python files (source cifar100)")
    trunk: Literal["mlp", "cnn", "resnet18"] = "cnn"
    widths: tuple[int, ...] = Field((32, 64), description="hidden widths / channels / base width")
    n_main: int = Field(50, ge=1, description="main-task training images")
    rescale: float = Field(1.0, gt=0, description="s: every pretrained parameter × s")
    lr: float = Field(1e-2, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    batch_size: int = Field(128, ge=1)
    max_epochs: int = Field(300, ge=1)
    pt_max_epochs: int = Field(100, ge=1)
    loss_threshold: float = Field(1e-2, ge=0, description="stop after an epoch below this")
    n_rep: int = Field(1000, ge=1, description="main pool images for PR / ENSD")

    irrelevant: ClassVar[dict[str, tuple[str, ...]]] = {
        "pt": ("n_main", "rescale", "max_epochs", "n_rep"),
        "stl": ("rescale", "pt_max_epochs"),
        "mtl": ("rescale", "pt_max_epochs"),
        "ptft": (),
    }

    @model_validator(mode="after")
    def _check(self) -> ImagesRunConfig:
        errors = []
        if self.source == "cifar100" and not self.data_dir:
            errors.append("data_dir: source 'cifar100' needs the folder of the CIFAR-100 files")
        if self.source == "digits" and self.data_dir:
            errors.append("data_dir: source 'digits' ships with scikit-learn; remove data_dir")
        if self.source == "digits" and self.trunk == "resnet18":
            errors.append("trunk: resnet18 is for 32×32 images (source cifar100)")
        if not self.widths or min(self.widths) < 1:
            errors.append(f"widths: need at least one positive width (got {self.widths})")
        if errors:
            raise ValueError("; ".join(errors))
        return self

    def dependencies(self) -> list[RunConfig]:
        return [self.pretraining()] if self.method == "ptft" else []

    def pretraining(self) -> ImagesRunConfig:
        return self.model_copy(update={"method": "pt"})


FEATURES = ("mtl", "single_task", "random_features", "raw_input", "shared_head", "random_heads")
_PRETRAIN = (
    "n1",
    "n2",
    "eta_a",
    "eta_w",
    "weight_decay",
    "loss",
    "margin",
    "label_noise",
    "offset",
    "pretrain_bias",
    "rounds",
    "batch_tasks",
    "head_steps",
    "samples_per_round",
    "log_every",
    "T",
    "method",
    "random_head_scale",
)


class SubspaceRunConfig(RunConfig):
    """One subspace-task run (Collins et al. 2024): pretrain a first layer ``W`` on ``T`` halfspace
    tasks in an ``r``-dimensional subspace of ``ℝ^d`` (or skip pretraining), then measure subspace
    recovery and downstream accuracy of a linear probe on frozen features.

    ``method``: ``one_step`` (heads first then one representation step, weight decay ``1/η_W``)
    or ``alternating`` (alternating SGD with persistent heads, ``rounds`` rounds of
    ``batch_tasks`` tasks, ``samples_per_round`` fresh samples each).
    ``features``: ``mtl`` (learned per-task heads), ``shared_head`` (one head for all tasks),
    ``random_heads`` (fixed random per-task heads), ``single_task`` (one task with the whole
    budget: ``T·n1`` head and ``T·n2`` representation samples; ``T`` is the MTL run it matches),
    ``random_features`` (``W`` at initialisation) and ``raw_input`` (the probe sees ``x``).
    Downstream probes: ``down_halfspace`` / ``down_xor`` list the ``n_down`` values for fresh
    halfspace / XOR tasks, each averaged over ``down_tasks`` tasks; features are
    ``σ(Ŵx + b')`` with unit rows ``Ŵ`` and fresh biases ``b' ~ N(0, down_bias_std²)``.
    """

    family: Literal["subspace"] = "subspace"
    method: Literal["one_step", "alternating"] = "one_step"
    features: Literal[
        "mtl", "single_task", "random_features", "raw_input", "shared_head", "random_heads"
    ] = "mtl"
    part: str = Field("", description="label recorded in every row (the study part)")
    d: int = Field(100, ge=2, description="input dimension")
    r: int = Field(5, ge=1, description="subspace dimension")
    T: int = Field(10, ge=1, description="pretraining tasks (single_task: the budget it matches)")
    m: int = Field(200, ge=1, description="hidden width")
    n1: int = Field(500, ge=1, description="head-step samples per task")
    n2: int = Field(500, ge=1, description="representation-step samples per task")
    loss: Literal["hinge", "logistic"] | None = Field(
        None, description="default: hinge (one_step), logistic (alternating)"
    )
    eta_a: float | None = Field(None, gt=0, description="head step; default 0.01 / 2")
    eta_w: float | None = Field(None, gt=0, description="first-layer step; default 1 / 2")
    weight_decay: float | None = Field(
        None, ge=0, description="default: 1/eta_w (one_step, erases W0), 0.01 (alternating)"
    )
    random_head_scale: float = Field(0.02, gt=0, description="std of fixed random heads")
    margin: float = Field(0.0, ge=0)
    label_noise: float = Field(0.0, ge=0, lt=0.5)
    offset: float = Field(0.0, ge=0, description="task offsets c_t ~ U[-offset, offset]")
    pretrain_bias: float = Field(0.0, ge=0, description="std of fixed pretraining biases (0: none)")
    rounds: int = Field(300, ge=1, description="alternating: rounds")
    batch_tasks: int = Field(10, ge=1, description="alternating: tasks per round")
    head_steps: int = Field(1, ge=1, description="alternating: head steps per round (tau)")
    samples_per_round: int = Field(100, ge=1, description="alternating: fresh samples per task")
    log_every: int = Field(10, ge=1, description="alternating: rounds between measurements")
    down_halfspace: tuple[int, ...] = Field((), description="n_down values, halfspace tasks")
    down_xor: tuple[int, ...] = Field((), description="n_down values, XOR tasks")
    down_tasks: int = Field(5, ge=1, description="downstream tasks averaged per kind")
    down_bias_std: float = Field(0.5, ge=0)
    probe: Literal["ridge", "logistic"] = "ridge"
    n_val: int = Field(500, ge=1)
    n_test: int = Field(4000, ge=1)
    dtype: Literal["float32", "float64"] = "float32"

    irrelevant: ClassVar[dict[str, tuple[str, ...]]] = {}

    @model_validator(mode="after")
    def _resolve(self) -> SubspaceRunConfig:
        errors = []
        if self.r > self.d:
            errors.append(f"r: must be <= d={self.d} (got {self.r})")
        if self.method == "alternating" and self.features not in ("mtl", "single_task"):
            errors.append(
                f"features: method 'alternating' supports 'mtl' and 'single_task' "
                f"(got {self.features!r})"
            )
        if any(n < 1 for n in (*self.down_halfspace, *self.down_xor)):
            errors.append("down_halfspace/down_xor: n_down values must be >= 1")
        if self.down_xor and self.r < 2:
            errors.append(f"down_xor: the XOR task needs r >= 2 (got r={self.r})")
        if errors:
            raise ValueError("; ".join(errors))
        one = self.method == "one_step"
        defaults = {
            "loss": "hinge" if one else "logistic",
            "eta_a": 0.01 if one else 2.0,
            "eta_w": 1.0 if one else 2.0,
        }
        for k, v in defaults.items():
            if getattr(self, k) is None:
                object.__setattr__(self, k, v)
        if self.weight_decay is None:
            eta_w = self.eta_w if self.eta_w is not None else defaults["eta_w"]
            object.__setattr__(self, "weight_decay", 1.0 / float(eta_w) if one else 1e-2)
        return self

    def row_fields(self) -> dict[str, Any]:
        data = super().row_fields()
        if self.features in ("random_features", "raw_input"):
            for k in _PRETRAIN:
                data[k] = None
            if self.features == "raw_input":
                data["m"] = None
                data["down_bias_std"] = None
        else:
            if self.features != "random_heads":
                data["random_head_scale"] = None
            if self.method == "one_step":
                for k in ("rounds", "batch_tasks", "head_steps", "samples_per_round", "log_every"):
                    data[k] = None
            else:
                data["n1"] = data["n2"] = None
        return data


def method_errors(method: str) -> list[str]:
    """Why ``method`` cannot train a multi-task run (unknown, or a missing optional solver)."""
    from mtlab.grad.methods import check_methods, method_names

    if method not in method_names():
        return [f"method: unknown method {method!r}; allowed: stl, {', '.join(method_names())}"]
    try:
        check_methods([method])
    except ValueError as err:
        return [f"method: {err}"]
    return []


def dataset_errors(name: str | None) -> list[str]:
    """Why ``name`` is not a built-in dataset (empty if it is)."""
    from mtlab.tasks.datasets import DATASETS

    if name in DATASETS:
        return []
    return [f"dataset: unknown dataset {name!r}; allowed: {', '.join(DATASETS)}"]


class MtbenchRunConfig(RunConfig):
    """One run of the real-data multi-task benchmark (``mtlab benchmark``): a network with a shared
    trunk and one head per task, trained on ``dataset`` with a multi-task ``method`` (see
    :mod:`mtlab.grad.methods`), or ``method: stl`` on the single task ``task``.

    Model selection (the epoch whose parameters are kept) uses the mean validation accuracy only.
    """

    family: Literal["mtbench"] = "mtbench"
    method: str = "mean"
    dataset: str = "multi-digits"
    task: str | None = Field(None, description="the task of an stl run (None for MTL)")
    trunk: Literal["mlp", "cnn"] = "mlp"
    widths: tuple[int, ...] = Field((128, 128), description="hidden widths / channels")
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    backend: Literal["loop", "batched", "representation", "auto"] = "auto"
    diagnostics_every: int = Field(20, ge=1, description="steps between conflict diagnostics")

    @model_validator(mode="after")
    def _check(self) -> MtbenchRunConfig:
        from mtlab.tasks.datasets import DATASETS, dataset_tasks

        errors = dataset_errors(self.dataset)
        if self.method == "stl":
            if self.task is None:
                errors.append("task: method 'stl' needs the task to train")
            elif self.dataset in DATASETS and self.task not in dataset_tasks(self.dataset):
                errors.append(
                    f"task: {self.task!r} is not a task of {self.dataset!r}; allowed: "
                    f"{', '.join(dataset_tasks(self.dataset))}"
                )
        else:
            errors += method_errors(self.method)
            if self.task is not None:
                errors.append(f"task: only stl runs name a task (got {self.task!r})")
        if not self.widths or min(self.widths) < 1:
            errors.append(f"widths: need at least one positive width (got {self.widths})")
        if errors:
            raise ValueError("; ".join(errors))
        return self


class TransferenceRunConfig(RunConfig):
    """One pass of the transference pipeline on a dataset (study ``transference``): train all
    tasks together with lookahead probes → affinity (probes of the first ``warmup`` fraction of
    training dropped) → the best grouping for ``budget`` → train the groups, all tasks together,
    single tasks, IT-MTL and the plain sum on the same data; first-order agreement vs η."""

    family: Literal["transference"] = "transference"
    method: Literal["pipeline"] = "pipeline"
    dataset: str = "planted-groups"
    widths: tuple[int, ...] = (64, 4)
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(3e-3, gt=0)
    probe_every: int = Field(8, ge=1)
    probe_eta: float = Field(0.1, gt=0, description="step of the SGD lookahead probe")
    warmup: float = Field(0.5, ge=0, lt=1, description="fraction of probes dropped (early)")
    budget: int = Field(3, ge=1)
    etas: tuple[float, ...] = (0.3, 0.1, 0.03, 0.01, 0.003)
    itmtl: bool = True

    @model_validator(mode="after")
    def _check(self) -> TransferenceRunConfig:

        errors = dataset_errors(self.dataset)
        if self.itmtl:  # IT-MTL's candidates include UPGrad (the projector's solver)
            errors += [e.replace("method:", "itmtl:", 1) for e in method_errors("itmtl")]
        if errors:
            raise ValueError("; ".join(errors))
        return self


_TEACHER_FIELDS = ("angle", "d", "n1", "n2", "noise")
_DATA_FIELDS = ("dataset", "data_path", "tasks")


class TrajectoryRunConfig(RunConfig):
    """One recorded training trajectory (Mueller, Dredze & Andrews 2024): a network with a shared
    trunk and one head per task, trained on every task of the setting (``method``: a multi-task
    method) or on ``task`` alone (``method: stl``, the same network with one head), measured at a
    checkpoint schedule dense early (:func:`mtlab.train.minibatch.checkpoint_schedule`).

    ``setting``: ``teacher`` — two regression tasks ``t1``, ``t2`` with linear teachers at
    ``angle`` degrees in R^d, ``n1``/``n2`` training samples, label noise ``noise``
    (:mod:`mtlab.tasks.teacher_angle`); ``dataset`` — the classification tasks ``tasks`` (default:
    all) of a built-in dataset; ``file`` — the target columns ``tasks`` of a CSV, Parquet or NPZ
    table (``data_path``; read by :mod:`mtlab.tasks.tables`, the reader of every ``--data``
    command: classification and regression targets, missing labels). The trunk's initialisation
    depends on the seed only and each head's on the seed and its task's name, so STL and MTL runs
    of a task start from the same parameters and draw the same batches for it.
    """

    family: Literal["trajectory"] = "trajectory"
    method: str = "sum"
    task: str | None = Field(None, description="the task of an stl run (None for MTL)")
    setting: Literal["teacher", "dataset", "file"] = "teacher"
    angle: float = Field(90.0, ge=0, le=180, description="teacher angle in degrees")
    d: int = Field(20, ge=2)
    n1: int = Field(25, ge=2)
    n2: int = Field(200, ge=2)
    noise: float = Field(0.5, ge=0)
    dataset: str | None = None
    data_path: str | None = None
    tasks: tuple[str, ...] | None = Field(None, description="tasks of the MTL network")
    trunk: Literal["linear", "mlp"] = "linear"
    widths: tuple[int, ...] = Field((1,), min_length=1)
    steps: int = Field(2000, ge=1)
    lr: float = Field(0.02, gt=0)
    optimizer: Literal["sgd", "adam"] = "sgd"
    momentum: float = Field(0.0, ge=0, lt=1)
    batch_size: int = Field(32, ge=1)
    n_early: int = Field(20, ge=0, description="checkpoints in the early phase (geometric)")
    early_frac: float = Field(0.3, gt=0, lt=1, description="the early phase: this share of steps")
    n_late: int = Field(10, ge=0, description="checkpoints after the early phase (even)")
    probe_size: int = Field(256, ge=2, description="fixed training probe per task")
    factor_params: Literal["shared", "all"] = "shared"
    factors: tuple[str, ...] = (
        "sharpness",
        "fisher_trace",
        "coherence",
        "noise_scale",
        "grad_norm",
    )
    lanczos_tol: float = Field(1e-3, gt=0)
    fisher_samples: int = Field(1, ge=1)
    noise_batch: int = Field(8, ge=1)

    def row_fields(self) -> dict[str, Any]:
        data = super().row_fields()
        for name in _DATA_FIELDS if self.setting == "teacher" else _TEACHER_FIELDS:
            data[name] = None
        return data

    def task_names(self) -> list[str]:
        """The tasks of the setting (an MTL run trains them all)."""
        if self.setting == "teacher":
            return ["t1", "t2"]
        if self.tasks:
            return list(self.tasks)
        if self.setting == "dataset" and self.dataset is not None:
            from mtlab.tasks.datasets import dataset_tasks

            return list(dataset_tasks(self.dataset))
        return []

    def setting_id(self) -> str:
        """A short label of the setting (what the report groups by)."""
        k = "x".join(str(w) for w in self.widths)
        if self.setting == "teacher":
            return f"angle={self.angle:g} width={k} n={self.n1}/{self.n2}"
        src = self.dataset if self.setting == "dataset" else self.data_path
        return f"{src} [{','.join(self.task_names())}] {self.trunk}:{k}"

    @model_validator(mode="after")
    def _check(self) -> TrajectoryRunConfig:
        from mtlab.measure.trajectory import FACTORS
        from mtlab.tasks.datasets import DATASETS

        errors = dataset_errors(self.dataset) if self.setting == "dataset" else []
        if self.setting == "file" and not self.data_path:
            errors.append("data_path: setting 'file' needs the path of a CSV, Parquet or NPZ table")
        if self.setting == "file" and not self.tasks:
            errors.append("tasks: setting 'file' needs the task (label) columns")
        names = self.task_names()
        if self.setting == "dataset" and self.dataset in DATASETS and self.tasks:
            from mtlab.tasks.datasets import dataset_tasks

            bad = [t for t in self.tasks if t not in dataset_tasks(self.dataset)]
            if bad:
                errors.append(
                    f"tasks: {bad} are not tasks of {self.dataset!r}; allowed: "
                    f"{', '.join(dataset_tasks(self.dataset))}"
                )
        if self.method == "stl":
            if self.task is None:
                errors.append("task: method 'stl' needs the task to train")
            elif names and self.task not in names:
                errors.append(f"task: {self.task!r} is not one of {names}")
        else:
            errors += method_errors(self.method)
        bad_f = [f for f in self.factors if f not in FACTORS]
        if bad_f:
            errors.append(f"factors: unknown {bad_f}; allowed: {', '.join(FACTORS)}")
        if self.method != "stl" and not errors:
            from mtlab.grad.methods import make_method

            if make_method(self.method, 2).needs_lookahead:
                errors.append(
                    f"method: {self.method!r} needs lookahead probes (not supported here)"
                )
        if errors:
            raise ValueError("; ".join(errors))
        return self


_OWN_FT = ("source", "rescale", "pt_steps")
_OWN_PROBE = ("probe_every", "probe_batch", "probe_eta", "probe_rule", "first_order_above")
#: fields added after own-data folders existed: left out of a run's identity at their default, so
#: the runs stored before keep their ids
_OWN_LATER = {"init_scale": None, "null": (), "patience": None, "linearise": None,
              "signature": None}
_OWN_NETWORK = ("trunk", "widths", "steps", "lr", "batch_size", "eval_every", "init_scale",
                "patience")  # fmt: skip


class OwnDataRunConfig(RunConfig):
    """One training on a user's own data — a table (CSV, Parquet, NPZ), a label table naming
    image files, or IDX files, read and checked by :mod:`mtlab.tasks.tables` — or on a built-in
    ``dataset`` read the same way, through a network with a shared trunk (``mlp`` widths or
    ``cnn`` channels) and one head per task (:mod:`mtlab.runs.owndata`).

    ``method``: ``stl`` (one task alone), ``ptft`` (one task, its trunk starting from the trunk
    of the ``stl`` run of ``source`` — same seed, ``pt_steps`` steps — multiplied by
    ``rescale``), a multi-task method (MTL on ``tasks``, :mod:`mtlab.grad.methods`), or
    ``reference``: one task fitted by scikit-learn's ``HistGradientBoosting`` (lightly tuned on the
    validation split — the non-neural reference, no network). ``init_scale``: the trunk's
    initial weights × s (STL and MTL; PT+FT: its pretraining run's, the finetuning starting from
    that run's trunk × ``rescale``). ``null``:
    tasks whose training labels are permuted (a seeded permutation per task) — the null control
    of a partner (MTL) or a source (PT+FT: the source's pretraining run has them permuted), which
    keeps the labels' distribution and the procedure but none of their relation to the inputs.
    ``patience``: training stops once no task's validation metric nor loss improved for that many
    evaluations (a validation plateau; ``steps`` is then the budget). With
    ``probe`` the training measures lookahead affinity (TAG's lookahead: ``probe_rule`` ``sgd``, a
    step of ``probe_eta`` · gradient, or ``optimizer``, the step Adam would take) on fixed per-task
    batches every ``probe_every`` steps after the first tenth of training; above
    ``first_order_above`` tasks its first-order estimate only. Each
    task is scored at its best validation checkpoint (every ``eval_every`` steps).

    The data fields are the data's identity: the file's SHA-256 (``data_sha256``; IDX labels:
    ``labels_sha256``) is part of every run id, so a changed file is never mistaken for the one a
    folder was trained on, and the reader's options are those of the command line.
    """

    family: Literal["owndata"] = "owndata"
    method: str = "stl"
    tasks: tuple[str, ...] = Field(min_length=1, description="the tasks of this network")
    null: tuple[str, ...] = Field((), description="tasks whose training labels are permuted")
    init_scale: float | None = Field(None, gt=0, description="the initial trunk × s")
    patience: int | None = Field(None, ge=1, description="evaluations without improvement")
    source: str | None = Field(None, description="ptft: the task whose STL trunk is finetuned")
    rescale: float | None = Field(None, gt=0, description="ptft: the pretrained trunk × s")
    pt_steps: int | None = Field(None, ge=1, description="ptft: the source run's steps")
    probe: bool = Field(False, description="measure lookahead affinity while training")
    data: str | None = Field(None, description="the table, label table or IDX image file")
    data_sha256: str | None = None
    dataset: str | None = Field(None, description="a built-in dataset instead of data")
    targets: tuple[str, ...] = Field(min_length=1, description="the target columns read")
    features: tuple[str, ...] | None = Field(None, description="None: every other column")
    kinds: tuple[str, ...] = Field((), description="kind overrides, name=kind")
    split_column: str | None = None
    images: str | None = Field(None, description="the folder of the images named in data")
    image_column: str | None = None
    image_size: int | None = Field(None, ge=1)
    labels: str | None = Field(None, description="IDX labels of an IDX data file")
    labels_sha256: str | None = None
    trunk: Literal["mlp", "cnn"] = "mlp"
    widths: tuple[int, ...] = Field((128, 128), min_length=1)
    steps: int = Field(800, ge=1)
    lr: float = Field(1e-3, gt=0, description="Adam")
    batch_size: int = Field(128, ge=1)
    eval_every: int = Field(100, ge=1)
    probe_every: int = Field(100, ge=1)
    probe_batch: int = Field(256, ge=1)
    probe_eta: float = Field(0.1, gt=0)
    probe_rule: Literal["sgd", "optimizer"] = "sgd"
    first_order_above: int = Field(12, ge=1)
    linearise: int | None = Field(None, ge=1, description="at the end of training: the "
                                  "linearised transfer estimate, trunk Jacobians projected to "
                                  "this many dimensions")  # fmt: skip
    signature: int | None = Field(None, ge=1, description="at the end of training (STL): the "
                                  "network's outputs on the first this many validation rows of "
                                  "the table, labelled or not — the task's signature")  # fmt: skip

    def row_fields(self) -> dict[str, Any]:
        data = super().row_fields()
        if self.method != "ptft":
            for name in _OWN_FT:
                data[name] = None
        if not self.probe:
            for name in _OWN_PROBE:
                data[name] = None
        if self.method == "reference":
            for name in _OWN_NETWORK:
                data[name] = None
        return data

    def identity(self) -> dict[str, Any]:
        """The row without the paths of files identified by their SHA-256: the same bytes moved
        elsewhere are the same runs (a folder resumes after its data file moved), and without
        the later fields at their default (the ids of the runs stored before them)."""
        row = self.row_fields()
        return {k: v for k, v in row.items()
                if not (k in ("data", "labels") and row.get(f"{k}_sha256"))
                and not (k in _OWN_LATER and v in (_OWN_LATER[k], None, ()))}  # fmt: skip

    @property
    def regime(self) -> str:
        return self.method if self.method in ("stl", "ptft", "reference") else "mtl"

    @model_validator(mode="after")
    def _check(self) -> OwnDataRunConfig:
        errors = []
        if (self.data is None) == (self.dataset is None):
            errors.append("data, dataset: give one of a data file and a built-in dataset")
        elif self.data is not None and not self.data_sha256:
            errors.append("data_sha256: a data file needs its SHA-256 (its identity)")
        elif self.dataset is not None:
            errors += dataset_errors(self.dataset)
        unknown = [t for t in self.tasks if t not in self.targets]
        if unknown:
            errors.append(f"tasks: {unknown} are not among the targets {list(self.targets)}")
        if len(set(self.tasks)) != len(self.tasks):
            errors.append(f"tasks: a task appears twice ({list(self.tasks)})")
        if self.method in ("stl", "ptft", "reference"):
            if len(self.tasks) != 1:
                errors.append(f"tasks: method {self.method!r} trains one task (got {self.tasks})")
        else:
            errors += method_errors(self.method)
            if len(self.tasks) < 2:
                errors.append(f"tasks: MTL with {self.method!r} needs at least two tasks")
        if self.linearise is not None and self.regime != "mtl":
            errors.append("linearise: the linearised transfer estimate is made by an MTL run")
        if self.signature is not None and self.method != "stl":
            errors.append("signature: a task's signature is the output of its own network (stl)")
        if self.method == "ptft":
            if self.source is None or self.rescale is None:
                errors.append("source, rescale: method 'ptft' needs the source task and s")
            elif self.source not in self.targets or self.source in self.tasks:
                errors.append(f"source: {self.source!r} must be another of the targets")
        if min(self.widths) < 1:
            errors.append(f"widths: need positive widths (got {self.widths})")
        errors += self._null_errors()
        if errors:
            raise ValueError("; ".join(errors))
        return self

    def _null_errors(self) -> list[str]:
        if len(set(self.null)) != len(self.null):
            return [f"null: a task appears twice ({list(self.null)})"]
        if self.method == "ptft":
            if set(self.null) - {self.source}:
                return [f"null: a finetuning permutes only its source's labels (got {self.null})"]
        elif set(self.null) - set(self.tasks):
            return [f"null: {sorted(set(self.null) - set(self.tasks))} are not among the tasks"]
        elif self.method == "reference" and (self.null or self.probe):
            return ["null, probe: the reference model permutes no labels and has no probes"]
        elif self.regime == "mtl" and set(self.null) == set(self.tasks):
            return ["null: an MTL run keeps at least one task's labels"]
        return []

    def dependencies(self) -> list[RunConfig]:
        return [self.pretraining()] if self.method == "ptft" else []

    def pretraining(self) -> OwnDataRunConfig:
        """The ``stl`` run of the source whose trunk this finetuning starts from (the same run
        an STL stage trains, so it is trained once)."""
        assert self.source is not None
        return self.model_copy(update={
            "method": "stl", "tasks": (self.source,), "source": None, "rescale": None,
            "pt_steps": None, "probe": False, "steps": self.pt_steps or self.steps,
            "null": self.null, "init_scale": self.init_scale,
        })  # fmt: skip


#: config class per family name (built-in ones; ``mtlab.runs.family.register_family`` adds more)
FAMILIES: dict[str, type[RunConfig]] = {
    "diagonal": DiagonalRunConfig,
    "subspace": SubspaceRunConfig,
    "mtbench": MtbenchRunConfig,
    "transference": TransferenceRunConfig,
    "relu": ReluRunConfig,
    "images": ImagesRunConfig,
    "trajectory": TrajectoryRunConfig,
    "owndata": OwnDataRunConfig,
}


def make_config(data: dict[str, Any], where: str = "") -> RunConfig:
    """Validate one run config (``family`` defaults to ``diagonal``)."""
    family = data.get("family", "diagonal")
    cls = FAMILIES.get(family)
    if cls is None:
        raise ConfigError(
            f"{where}family: unknown family {family!r}; allowed: {', '.join(FAMILIES)}"
        )
    try:
        return cls.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, where)) from None


__all__ = [
    "FAMILIES",
    "SETTINGS",
    "ConfigError",
    "DiagonalRunConfig",
    "ImagesRunConfig",
    "MtbenchRunConfig",
    "OwnDataRunConfig",
    "ReluRunConfig",
    "RunConfig",
    "SubspaceRunConfig",
    "TrajectoryRunConfig",
    "TransferenceRunConfig",
    "make_config",
]
