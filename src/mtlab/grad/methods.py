"""Multi-task methods, chosen by name: how one update is formed from the per-task losses.

Two kinds, one interface (:meth:`Method.backward` sets ``.grad`` on the parameters and returns
a :class:`StepRecord` with the task weights it used):

* **Jacobian aggregators** — torchjd's aggregators applied to the Jacobian that
  :class:`mtlab.grad.jacobian.JacobianEngine` computed (``upgrad``, ``mgda``, ``pcgrad``,
  ``cagrad``, ``imtl_g``, ``nash_mtl``, ``aligned_mtl``, ``gradvac``, ``graddrop``, ``dualproj``,
  ``config``, ``fairgrad``). For Gramian-weighted aggregators the weights come from torchjd's
  weighting of ``J Jᵀ`` and the update is ``wᵀJ``; for the others (``graddrop``, ``config``) the
  update is the aggregator's vector and the recorded weights are the least-squares weights that
  best reproduce it from the task gradients (marked ``exact_weights=False``).
* **Loss weightings** — one backward of ``Σ_t w_t L_t``: ``mean`` and ``sum`` (constant weights:
  the same update as torchjd's Mean / Sum on the Jacobian, without computing it), ``uw``
  (uncertainty weighting, Kendall et al. 2018), ``dwa`` (dynamic weight average, Liu et al. 2019),
  ``gradnorm`` (Chen et al. 2018) and ``famo`` (Liu et al. 2023) — torchjd 0.18 has none of the
  last four.

Task-specific parameters always receive the ordinary gradient of ``Σ_t L_t`` (a head only
affects its own task). ``cagrad`` and ``nash_mtl`` need the optional solver extra
(``pip install 'mtlab[solvers]'``); the error says so before any training starts.
"""

from __future__ import annotations

import importlib.util
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from mtlab.grad.jacobian import JacobianEngine, jacobian_loop


@dataclass
class StepRecord:
    """Per-task losses ``(T,)`` and weights ``(T,)`` of one step; the Gramian ``(T, T)`` when it
    was computed (Jacobian methods always, weightings on diagnostic steps)."""

    losses: Tensor
    weights: Tensor
    gramian: Tensor | None = None
    exact_weights: bool = True


#: solver packages in mtlab's own dependencies (the others come with the ``solvers`` extra)
CORE_SOLVERS = frozenset({"qpsolvers", "quadprog"})


def check_methods(names: Sequence[str]) -> None:
    """Raise ``ValueError`` naming the problem for unknown methods or missing optional solvers."""
    for name in names:
        spec = method_spec(name)
        missing = [m for m in spec.extras if importlib.util.find_spec(m) is None]
        if missing:
            core = all(m in CORE_SOLVERS for m in missing)
            hint = (
                f"pip install {' '.join(missing)}  (mtlab's own dependencies: reinstall mtlab)"
                if core
                else "pip install 'mtlab[solvers]'"
            )
            raise ValueError(f"method {name!r} needs {', '.join(missing)} (not installed): {hint}")


def _assign(params: Sequence[Tensor], grads: Sequence[Tensor | None]) -> None:
    for p, g in zip(params, grads, strict=True):
        if g is None:
            continue
        p.grad = g.detach() if p.grad is None else p.grad + g.detach()


def _assign_flat(params: Sequence[Tensor], vector: Tensor) -> None:
    offset = 0
    for p in params:
        n = p.numel()
        g = vector[offset : offset + n].view_as(p)
        p.grad = g.detach().clone() if p.grad is None else p.grad + g.detach()
        offset += n


class Method:
    """Base class. ``backward(losses, shared, specific, rep, engine, want_gramian)``.

    Abilities are declared here, not probed: ``uses_jacobian`` (needs the T × P Jacobian),
    ``needs_lookahead`` (the trainer must call :meth:`set_lookahead` before each step),
    ``stateful`` (keeps state between steps: one instance per run, reset with the run),
    ``non_conflicting`` (promises ⟨g_t, d⟩ ≥ 0 for every task; tested on generated Jacobians).
    """

    name: str = ""
    uses_jacobian: bool = False
    needs_lookahead: bool = False
    stateful: bool = False
    non_conflicting: bool = False

    def __init__(self, n_tasks: int) -> None:
        if n_tasks < 1:
            raise ValueError(f"n_tasks must be >= 1 (got {n_tasks})")
        self.n_tasks = n_tasks

    def parameters(self) -> list[Tensor]:
        """Extra trainable tensors (trained by the model's optimiser), e.g. uncertainty weights."""
        return []

    def to(self, device: torch.device | str) -> Method:
        """Move the method's own tensors (if any) to ``device``."""
        return self

    def set_lookahead(self, fn: Callable[[list[Tensor]], Tensor]) -> None:
        """Give the method the losses-after-a-step function for this step (``needs_lookahead``)."""
        raise TypeError(f"method {self.name!r} does not use a lookahead")

    def end_epoch(self) -> None:
        """Called by the trainer after every epoch."""

    def backward(
        self,
        losses: Tensor,
        shared: Sequence[Tensor],
        specific: Sequence[Tensor],
        rep: Tensor | None,
        engine: JacobianEngine,
        want_gramian: bool = False,
    ) -> StepRecord:
        raise NotImplementedError


class LossWeighting(Method):
    """One backward of ``Σ_t w_t L_t + extra``; subclasses give :meth:`weights`."""

    def weights(self, losses: Tensor, shared: Sequence[Tensor], engine: JacobianEngine) -> Tensor:
        raise NotImplementedError

    def extra_loss(self, losses: Tensor) -> Tensor | None:
        return None

    def after_step(self, losses: Tensor) -> None:
        pass

    def backward(
        self,
        losses: Tensor,
        shared: Sequence[Tensor],
        specific: Sequence[Tensor],
        rep: Tensor | None,
        engine: JacobianEngine,
        want_gramian: bool = False,
    ) -> StepRecord:
        gramian = engine(losses, shared, rep).gramian.detach() if want_gramian else None
        w = self.weights(losses, shared, engine)
        total = (w * losses).sum()
        extra = self.extra_loss(losses)
        if extra is not None:
            total = total + extra
        own = self.parameters()
        targets = [*shared, *specific, *own]
        grads = torch.autograd.grad(total, targets, allow_unused=True)
        _assign(targets, grads)
        self.after_step(losses.detach())
        return StepRecord(losses.detach(), w.detach().clone(), gramian)


class ConstantWeights(LossWeighting):
    """``mean`` (w = 1/T) or ``sum`` (w = 1)."""

    def __init__(self, n_tasks: int, value: float, name: str) -> None:
        super().__init__(n_tasks)
        self.value = value
        self.name = name

    def weights(self, losses: Tensor, shared: Sequence[Tensor], engine: JacobianEngine) -> Tensor:
        return torch.full_like(losses, self.value).detach()


class UncertaintyWeighting(LossWeighting):
    """Kendall, Gal & Cipolla (2018): ``Σ_t exp(−s_t) L_t + s_t`` with learned ``s_t = log σ_t²``
    (initialised at 0); the recorded weights are ``exp(−s_t)``."""

    name = "uw"
    stateful = True

    def __init__(self, n_tasks: int) -> None:
        super().__init__(n_tasks)
        self.log_vars = torch.zeros(n_tasks, requires_grad=True)

    def parameters(self) -> list[Tensor]:
        return [self.log_vars]

    def to(self, device: torch.device | str) -> UncertaintyWeighting:
        self.log_vars = self.log_vars.detach().to(device).requires_grad_(True)
        return self

    def weights(self, losses: Tensor, shared: Sequence[Tensor], engine: JacobianEngine) -> Tensor:
        return torch.exp(-self.log_vars.to(losses))

    def extra_loss(self, losses: Tensor) -> Tensor | None:
        return self.log_vars.to(losses).sum()


class DynamicWeightAverage(LossWeighting):
    """Liu, Johns & Davison (2019): ``w_t = T·softmax_t(r_t / τ)`` with ``r_t`` the ratio of task
    ``t``'s mean training loss in the last two epochs; ``w = 1`` for the first two epochs."""

    name = "dwa"
    stateful = True

    def __init__(self, n_tasks: int, temperature: float = 2.0) -> None:
        super().__init__(n_tasks)
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0 (got {temperature})")
        self.temperature = temperature
        self.history: list[Tensor] = []
        self._sum: Tensor | None = None
        self._count = 0

    def weights(self, losses: Tensor, shared: Sequence[Tensor], engine: JacobianEngine) -> Tensor:
        if len(self.history) < 2:
            return torch.ones_like(losses)
        r = (self.history[-1] / self.history[-2].clamp_min(1e-12)).to(losses)
        return self.n_tasks * torch.softmax(r / self.temperature, dim=0)

    def after_step(self, losses: Tensor) -> None:
        self._sum = losses.cpu() if self._sum is None else self._sum + losses.cpu()
        self._count += 1

    def end_epoch(self) -> None:
        if self._count and self._sum is not None:
            self.history.append(self._sum / self._count)
        self._sum, self._count = None, 0


def gradnorm_update(
    w: Tensor,
    grad_norms: Tensor,
    losses: Tensor,
    initial_losses: Tensor,
    alpha: float,
    lr: float,
) -> Tensor:
    """One GradNorm step on the task weights (Chen et al. 2018, Algorithm 1).

    ``G_t = w_t ‖∇_W L_t‖`` for the last shared layer ``W``; ``Ḡ = mean_t G_t``; relative inverse
    training rates ``r_t = L̃_t / mean(L̃)`` with ``L̃_t = L_t / L_t(0)``; targets ``Ḡ r_t^α``
    (held constant); ``∂/∂w_t Σ_s |G_s − target_s| = sign(G_t − target_t) ‖∇_W L_t‖``. After the
    step the weights are clamped positive and renormalised to sum to ``T``.
    """
    T = w.shape[0]
    G = w * grad_norms
    ratio = losses / initial_losses.clamp_min(1e-12)
    r = ratio / ratio.mean()
    target = G.mean() * r**alpha
    grad = torch.sign(G - target) * grad_norms
    w_new = torch.clamp(w - lr * grad, min=1e-4)
    return T * w_new / w_new.sum()


class GradNorm(LossWeighting):
    """GradNorm (Chen et al. 2018): task weights trained to equalise ``w_t‖∇_W L_t‖`` across tasks
    at rates set by each task's relative training progress (``alpha``); ``W`` is the last shared
    parameter tensor. The model is updated with the current weights, then the weights take one
    :func:`gradnorm_update` step (learning rate ``lr``)."""

    name = "gradnorm"
    stateful = True

    def __init__(self, n_tasks: int, alpha: float = 1.5, lr: float = 0.025) -> None:
        super().__init__(n_tasks)
        self.alpha = alpha
        self.lr = lr
        self.w = torch.ones(n_tasks)
        self.initial: Tensor | None = None
        self._norms: Tensor | None = None

    def weights(self, losses: Tensor, shared: Sequence[Tensor], engine: JacobianEngine) -> Tensor:
        last = [p for p in shared if p.ndim >= 2][-1:] or list(shared)[-1:]
        # (T, |W|): per-task gradients on the last shared layer (always parameter-level)
        J = (
            jacobian_loop(losses, last)
            if engine.backend == "representation"
            else engine(losses, last).matrix
        )
        self._norms = J.norm(dim=1).detach()
        if self.initial is None:
            self.initial = losses.detach().clone()
        return self.w.to(losses)

    def after_step(self, losses: Tensor) -> None:
        assert self._norms is not None and self.initial is not None
        self.w = gradnorm_update(
            self.w.to(losses),
            self._norms.to(losses),
            losses,
            self.initial.to(losses),
            self.alpha,
            self.lr,
        ).cpu()


class FAMO(LossWeighting):
    """FAMO (Liu, Liu, Stone & Liu, NeurIPS 2023): the update follows ``Σ_t z_t log L_t`` with
    ``z = softmax(ξ)``, i.e. task weights ``w_t = z_t / (c · L_t)``, ``c = Σ_s z_s / L_s``; the
    logits ``ξ`` take a step (``lr``, decay ``gamma``) that favours the tasks whose log-loss
    fell least since the previous step: ``ξ ← ξ − lr (∂z/∂ξ)ᵀ δ − lr·gamma·ξ`` with
    ``δ_t = log L_t(previous step) − log L_t(now)`` (consecutive minibatches, as the authors'
    implementation does). Losses are shifted by ``min_loss`` (0 for cross-entropy)."""

    name = "famo"
    stateful = True

    def __init__(
        self, n_tasks: int, lr: float = 0.025, gamma: float = 1e-3, min_loss: float = 0.0
    ) -> None:
        super().__init__(n_tasks)
        self.lr, self.gamma, self.min_loss = lr, gamma, min_loss
        self.logits = torch.zeros(n_tasks)
        self._prev: Tensor | None = None

    def _update(self, losses: Tensor) -> None:
        cur = (losses.detach().cpu().double() - self.min_loss).clamp_min(1e-8)
        if self._prev is not None:
            delta = self._prev.log() - cur.log()
            xi = self.logits.double().requires_grad_(True)
            with torch.enable_grad():
                (d,) = torch.autograd.grad(torch.softmax(xi, 0), xi, grad_outputs=delta)
            self.logits = (self.logits.double() - self.lr * (d + self.gamma * self.logits)).float()
        self._prev = cur

    def weights(self, losses: Tensor, shared: Sequence[Tensor], engine: JacobianEngine) -> Tensor:
        self._update(losses)
        z = torch.softmax(self.logits, 0).to(losses)
        D = (losses.detach() - self.min_loss).clamp_min(1e-8)
        c = (z / D).sum()
        return z / (c * D)


class JacobianAggregation(Method):
    """A torchjd aggregator applied to the engine's Jacobian of the shared parameters."""

    uses_jacobian = True

    def __init__(
        self,
        n_tasks: int,
        name: str,
        aggregator: Any,
        *,
        non_conflicting: bool = False,
        scale_invariant: bool = False,
        stateful: bool = False,
    ) -> None:
        super().__init__(n_tasks)
        self.name = name
        self.aggregator = aggregator
        self.non_conflicting = non_conflicting
        #: the weighting of c·G equals that of G: weights are computed on the Gramian scaled to
        #: unit mean diagonal, so torchjd's absolute regularisation (1e-4) cannot swamp small
        #: gradients (without it UPGrad is not non-conflicting when ‖g‖ ≲ 1e-2)
        self.scale_invariant = scale_invariant
        self.stateful = stateful

    def combine(self, J: Tensor) -> tuple[Tensor, Tensor, bool]:
        """(update vector, task weights, weights exact?) for a Jacobian ``J: (T, P)``."""
        from torchjd.aggregation import GramianWeightedAggregator, WeightedAggregator

        agg = self.aggregator
        if isinstance(agg, GramianWeightedAggregator):
            G = J @ J.T
            if self.scale_invariant:
                scale = G.diagonal().mean()
                if scale > 0:
                    G = G / scale
            w = agg.gramian_weighting(G)
            return w @ J, w, True
        if isinstance(agg, WeightedAggregator):
            w = agg.weighting(J)
            return w @ J, w, True
        v = agg(J)
        w = torch.linalg.lstsq(J.T, v.unsqueeze(1)).solution.squeeze(1)
        return v, w, False

    def backward(
        self,
        losses: Tensor,
        shared: Sequence[Tensor],
        specific: Sequence[Tensor],
        rep: Tensor | None,
        engine: JacobianEngine,
        want_gramian: bool = False,
    ) -> StepRecord:
        jac = engine(losses, shared, rep)
        J = jac.matrix.detach()
        if jac.backend == "representation":
            # weights from the representation-level Jacobian, one backward of Σ w_t L_t
            _, w, exact = self.combine(J)
            grads = torch.autograd.grad((w.detach() * losses).sum(), shared, retain_graph=True)
            _assign(shared, grads)
        else:
            v, w, exact = self.combine(J)
            _assign_flat(shared, v)
        if specific:
            _assign(specific, torch.autograd.grad(losses.sum(), specific, allow_unused=True))
        return StepRecord(losses.detach(), w.detach(), J @ J.T, exact)


class ITMTL(Method):
    """IT-MTL (Fifty et al. 2021, "choosing gradient combinations per step"): evaluate candidate
    combined updates by lookahead on the current batch and apply the best.

    ``candidates``: names among ``sum``, ``mean`` and any Jacobian aggregator (e.g. ``pcgrad``,
    ``upgrad``), plus ``tasks`` (each task's gradient alone). ``objective``: ``total_ratio``
    (minimise Σ_t L_t(after)/L_t(before)) or ``absolute`` (minimise Σ_t L_t(after)). The trainer
    sets :attr:`lookahead` each step (candidate gradient vectors → losses after the step,
    ``(K, T)``, through the optimiser's update rule, without side effects). With ``every = k``
    the lookahead runs every k-th step and the last choice is reused in between. ``choices``
    counts what was applied.
    """

    uses_jacobian = True
    needs_lookahead = True
    stateful = True
    OBJECTIVES = ("total_ratio", "absolute")

    def __init__(
        self,
        n_tasks: int,
        candidates: Sequence[str] = ("sum", "pcgrad", "upgrad", "tasks"),
        objective: str = "total_ratio",
        every: int = 1,
    ) -> None:
        super().__init__(n_tasks)
        if objective not in self.OBJECTIVES:
            raise ValueError(f"unknown objective {objective!r}; allowed: {self.OBJECTIVES}")
        allowed = {"sum", "mean", "tasks", *jacobian_methods()}
        bad = [c for c in candidates if c not in allowed]
        if bad or not candidates:
            raise ValueError(f"IT-MTL candidates must be among {sorted(allowed)} (got {bad})")
        self.name = "itmtl"
        self.candidates = list(candidates)
        self.objective = objective
        self.aggs: dict[str, JacobianAggregation] = {}
        for c in candidates:
            if c in jacobian_methods():
                agg = make_method(c, n_tasks)
                assert isinstance(agg, JacobianAggregation)
                self.aggs[c] = agg
        if every < 1:
            raise ValueError(f"every must be >= 1 (got {every})")
        self.every = every
        self._calls = 0
        self._last: str | None = None
        self.lookahead: Callable[[list[Tensor]], Tensor] | None = None
        self.choices: dict[str, int] = {}

    def _candidates(self, J: Tensor) -> tuple[list[str], list[Tensor], list[Tensor]]:
        T = J.shape[0]
        labels, vecs, weights = [], [], []
        for c in self.candidates:
            if c in ("sum", "mean"):
                w = torch.full((T,), 1.0 if c == "sum" else 1.0 / T, dtype=J.dtype, device=J.device)
                labels.append(c)
                vecs.append(w @ J)
                weights.append(w)
            elif c == "tasks":
                for t in range(T):
                    w = torch.zeros(T, dtype=J.dtype, device=J.device)
                    w[t] = 1.0
                    labels.append(f"task{t}")
                    vecs.append(J[t])
                    weights.append(w)
            else:
                v, w, _ = self.aggs[c].combine(J)
                labels.append(c)
                vecs.append(v)
                weights.append(w)
        return labels, vecs, weights

    def set_lookahead(self, fn: Callable[[list[Tensor]], Tensor]) -> None:
        self.lookahead = fn

    def backward(
        self,
        losses: Tensor,
        shared: Sequence[Tensor],
        specific: Sequence[Tensor],
        rep: Tensor | None,
        engine: JacobianEngine,
        want_gramian: bool = False,
    ) -> StepRecord:
        if self.lookahead is None:
            raise RuntimeError("IT-MTL needs a lookahead function (set by the trainer)")
        jac = engine(losses, shared)
        J = jac.matrix.detach()
        labels, vecs, weights = self._candidates(J)
        if self._last is not None and self._calls % self.every:
            k = labels.index(self._last)  # between evaluations: keep the last choice
        else:
            after = self.lookahead(vecs)  # (K, T)
            before = losses.detach()
            if self.objective == "total_ratio":
                score = (after / before.clamp_min(1e-12)).sum(1)
            else:
                score = after.sum(1)
            k = int(torch.argmin(score))
            self._last = labels[k]
        self._calls += 1
        self.choices[labels[k]] = self.choices.get(labels[k], 0) + 1
        _assign_flat(shared, vecs[k])
        if specific:
            _assign(specific, torch.autograd.grad(losses.sum(), specific, allow_unused=True))
        return StepRecord(losses.detach(), weights[k].detach(), J @ J.T, True)


# ---------------------------------------------------------------------------- registry

MethodKind = Literal["weighting", "jacobian", "lookahead"]


@dataclass(frozen=True)
class MethodSpec:
    """A registered method: its factory ``(n_tasks, **typed options) -> Method``, its kind, the
    optional packages it needs and a one-line summary."""

    name: str
    factory: Callable[..., Method]
    kind: MethodKind
    extras: tuple[str, ...] = ()
    summary: str = ""
    #: properties of a Jacobian aggregator's update d(J), each tested on generated Jacobians:
    #: ⟨g_t, d⟩ ≥ 0 for every task; d(cJ) = c·d(J) for c > 0; permuting tasks leaves d unchanged
    non_conflicting: bool = False
    homogeneous: bool = False
    order_free: bool = False

    def options(self) -> list[str]:
        """The keyword options the factory takes (after ``n_tasks``)."""
        params = list(inspect.signature(self.factory).parameters.values())[1:]
        return [p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]


_REGISTRY: dict[str, MethodSpec] = {}


def register_method(spec: MethodSpec) -> MethodSpec:
    """Make ``spec.name`` available to :func:`make_method`, the CLI and the configs."""
    _REGISTRY[spec.name] = spec
    return spec


def method_spec(name: str) -> MethodSpec:
    if name not in _REGISTRY:
        raise ValueError(f"unknown method {name!r}; allowed: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def method_names(kind: MethodKind | None = None) -> tuple[str, ...]:
    return tuple(n for n, s in _REGISTRY.items() if kind is None or s.kind == kind)


def jacobian_methods() -> tuple[str, ...]:
    return method_names("jacobian")


def make_method(name: str, n_tasks: int, **options: Any) -> Method:
    """The method called ``name`` for ``n_tasks`` tasks; ``options`` are that method's typed
    keyword options (e.g. ``temperature`` for dwa, ``alpha``/``lr`` for gradnorm, ``c`` for
    cagrad); an option the method does not take is a ``ValueError`` naming the allowed ones."""
    check_methods([name])
    spec = _REGISTRY[name]
    unknown = sorted(set(options) - set(spec.options()))
    if unknown:
        allowed = ", ".join(spec.options()) or "none"
        raise ValueError(
            f"method {name!r}: unknown option(s) {', '.join(unknown)}; allowed: {allowed}"
        )
    return spec.factory(n_tasks, **options)


def _mean(n_tasks: int) -> Method:
    return ConstantWeights(n_tasks, 1.0 / n_tasks, "mean")


def _sum(n_tasks: int) -> Method:
    return ConstantWeights(n_tasks, 1.0, "sum")


for _spec in (
    MethodSpec("mean", _mean, "weighting", summary="w_t = 1/T"),
    MethodSpec("sum", _sum, "weighting", summary="w_t = 1"),
    MethodSpec("uw", UncertaintyWeighting, "weighting", summary="uncertainty weighting"),
    MethodSpec("dwa", DynamicWeightAverage, "weighting", summary="dynamic weight average"),
    MethodSpec("gradnorm", GradNorm, "weighting", summary="GradNorm"),
    MethodSpec("famo", FAMO, "weighting", summary="FAMO"),
):
    register_method(_spec)


def _aggregator(
    name: str,
    build: Callable[..., Any],
    *,
    extras: tuple[str, ...] = (),
    non_conflicting: bool = False,
    scale_invariant: bool = False,
    stateful: bool = False,
    homogeneous: bool = True,
    order_free: bool = True,
    summary: str = "",
) -> None:
    """Register the torchjd aggregator ``build(n_tasks, **options)`` as method ``name``."""

    def factory(n_tasks: int, **options: Any) -> Method:
        return JacobianAggregation(
            n_tasks,
            name,
            build(n_tasks, **options),
            non_conflicting=non_conflicting,
            scale_invariant=scale_invariant,
            stateful=stateful,
        )

    factory.__signature__ = inspect.signature(build)  # type: ignore[attr-defined]
    register_method(
        MethodSpec(
            name, factory, "jacobian", extras, summary, non_conflicting, homogeneous, order_free
        )
    )


def _tjd() -> Any:
    import torchjd.aggregation as A

    return A


def _plain(cls: str) -> Callable[[int], Any]:
    """A factory for torchjd's aggregator ``cls`` that takes no option."""

    def build(n_tasks: int) -> Any:
        return getattr(_tjd(), cls)()

    return build


def _cagrad(n_tasks: int, c: float = 0.4) -> Any:
    return _tjd().CAGrad(c=c)


def _nash_mtl(n_tasks: int) -> Any:
    return _tjd().NashMTL(n_tasks=n_tasks)


def _fairgrad(n_tasks: int, alpha: float = 1.0) -> Any:
    return _tjd().FairGrad(alpha=alpha)


_QP = ("qpsolvers", "quadprog")  # torchjd's dual-cone projector (UPGrad, DualProj)
_aggregator(
    "upgrad",
    _plain("UPGrad"),
    non_conflicting=True,
    scale_invariant=True,
    extras=_QP,
    summary="UPGrad",
)
_aggregator("mgda", _plain("MGDA"), non_conflicting=True, scale_invariant=True, summary="MGDA")
_aggregator("pcgrad", _plain("PCGrad"), order_free=False, summary="PCGrad (projects in task order)")
_aggregator(
    "cagrad",
    _cagrad,
    extras=("cvxpy", "clarabel"),
    homogeneous=False,
    summary="CAGrad (solver tolerance)",
)
_aggregator("imtl_g", _plain("IMTLG"), summary="IMTL-G")
_aggregator(
    "nash_mtl",
    _nash_mtl,
    extras=("cvxpy", "ecos"),
    stateful=True,
    homogeneous=False,
    order_free=False,
    summary="Nash-MTL (solver tolerance)",
)
_aggregator("aligned_mtl", _plain("AlignedMTL"), summary="Aligned-MTL")
_aggregator(
    "gradvac",
    _plain("GradVac"),
    stateful=True,
    homogeneous=False,
    order_free=False,
    summary="GradVac",
)
_aggregator("graddrop", _plain("GradDrop"), order_free=False, summary="GradDrop (random masks)")
_aggregator(
    "dualproj",
    _plain("DualProj"),
    non_conflicting=True,
    scale_invariant=True,
    extras=_QP,
    summary="DualProj",
)
_aggregator("config", _plain("ConFIG"), non_conflicting=True, summary="ConFIG")
_aggregator("fairgrad", _fairgrad, homogeneous=False, summary="FairGrad")
# its default candidates include UPGrad, hence the projector's solver
register_method(
    MethodSpec("itmtl", ITMTL, "lookahead", extras=_QP, summary="IT-MTL (lookahead choice)")
)

#: the registered names at import time (register_method adds more; use method_names())
WEIGHTING_METHODS = method_names("weighting")
JACOBIAN_METHODS = method_names("jacobian")
METHODS = method_names()
NON_CONFLICTING = tuple(n for n, spec in _REGISTRY.items() if spec.non_conflicting)


__all__ = [
    "FAMO",
    "ITMTL",
    "JACOBIAN_METHODS",
    "METHODS",
    "NON_CONFLICTING",
    "WEIGHTING_METHODS",
    "ConstantWeights",
    "DynamicWeightAverage",
    "GradNorm",
    "JacobianAggregation",
    "LossWeighting",
    "Method",
    "MethodSpec",
    "StepRecord",
    "UncertaintyWeighting",
    "check_methods",
    "gradnorm_update",
    "jacobian_methods",
    "make_method",
    "method_names",
    "method_spec",
    "register_method",
]
