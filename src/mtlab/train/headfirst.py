"""Head-first multi-task representation learning (Collins et al. 2024; paper notes §4).

Two algorithms on the two-layer ReLU network of :mod:`mtlab.models.relu` (shared ``W``, per-task
heads ``A`` starting at zero):

* :func:`one_step` — **heads first, then the representation**: each head takes one step on its
  task's ``n1`` samples with ``W`` fixed, then ``W`` takes one step on ``n2`` fresh samples per task
  with weight decay ``λ`` (default ``1/η_W``, which erases the initialisation:
  ``W1 = −η_W ∇_W L``). ``heads`` chooses the head rule: ``learned`` (the algorithm), ``shared``
  (one head for all tasks, fitted on the pooled labels) or ``random`` (fixed random per-task heads,
  no head step) — the ablations of the paper notes §4.4.
* :func:`alternating_sgd` — rounds of (sample a batch of tasks with fresh samples; ``τ`` head steps
  on each sampled task's own head; one ``W`` step on the averaged loss), heads persistent.

Both work on whole blocks of tasks at once (``X: (T_block, n, d)``): a step over ``T`` tasks is a
few batched matrix products, never a Python loop over tasks. ``task_block`` only bounds memory
(the data of a block is sampled, used and dropped; default: all tasks in one block); the result
does not depend on it (see :func:`auto_task_block`).

Data come from a ``sampler(stream, tasks) → (X, Y)`` that returns fresh samples of the listed
tasks (see :func:`mtlab.tasks.subspace.sample_tasks`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from mtlab.models.relu import check_loss, head_grads, shared_grad_sum

Sampler = Callable[[str, Sequence[int]], tuple[Tensor, Tensor]]
HEAD_RULES = ("learned", "shared", "random")


@dataclass
class OneStepResult:
    """``W`` after the representation step ``(m, d)`` and the heads ``A (T, m)`` it used."""

    W: Tensor
    A: Tensor


def _blocks(T: int, block: int) -> list[range]:
    return [range(s, min(s + block, T)) for s in range(0, T, block)]


def auto_task_block(
    n: int, d: int, m: int, itemsize: int = 4, device: torch.device | str = "cpu"
) -> int:
    """Tasks per block: a block's inputs and hidden activations take at most 8 MiB on CPU and
    1 GiB on a GPU. On CPU, cache-sized blocks matter: at d = 100, m = 200, n = 500 blocks of 1–32
    tasks run within 5 % of each other while one block of 100 tasks is 1.5× slower (measured)."""
    budget = (1 << 30) if torch.device(device).type == "cuda" else (8 << 20)
    per_task = itemsize * n * (d + m)
    return max(1, budget // max(per_task, 1))


def one_step(
    W0: Tensor,
    T: int,
    sampler: Sampler,
    *,
    eta_a: float = 0.01,
    eta_w: float = 1.0,
    weight_decay: float | None = None,
    loss: str = "hinge",
    heads: str = "learned",
    bias: Tensor | None = None,
    random_heads: Tensor | None = None,
    task_block: int | None = None,
) -> OneStepResult:
    """The one-round head-first algorithm (notes §4.1): returns ``W1`` and the heads.

    ``sampler("head", tasks)`` gives the ``n1`` head-step samples, ``sampler("rep", tasks)`` the
    ``n2`` fresh representation-step samples. ``random_heads (T, m)`` are the fixed heads of
    ``heads="random"``. ``W1 = W0 − η_W (∇_W L + λ W0)`` with ``λ = 1/η_W`` unless given.

    Keep ``η_a`` small (default 0.01): the analysis assumes every hinge margin stays below 1 after
    the head step; with large heads (e.g. ``η_a = 1`` at width 200) about half the margins
    exceed 1, those samples drop out of the representation step, and the selection leaks
    directions outside the subspace into ``W1`` (measured: energy 0.35 instead of 0.61 at T = 1).
    """
    check_loss(loss)
    if heads not in HEAD_RULES:
        raise ValueError(f"unknown head rule {heads!r}; allowed: {', '.join(HEAD_RULES)}")
    if T < 1:
        raise ValueError(f"need T >= 1 tasks (got {T})")
    m = W0.shape[0]
    lam = 1.0 / eta_w if weight_decay is None else weight_decay
    A = torch.zeros(T, m, dtype=W0.dtype, device=W0.device)
    blocks = _blocks(T, task_block or T)

    # -- head step (W fixed, heads from zero) ------------------------------------------------
    if heads == "random":
        if random_heads is None or random_heads.shape != (T, m):
            raise ValueError(f"heads='random' needs random_heads of shape {(T, m)}")
        A = random_heads.to(W0)
    else:
        for blk in blocks:
            X, Y = sampler("head", blk)
            A[blk.start : blk.stop] = -eta_a * head_grads(
                W0, A[blk.start : blk.stop], X, Y, loss, bias
            )
        if heads == "shared":  # one head on the pooled labels = the mean of the per-task steps
            A = A.mean(dim=0, keepdim=True).expand(T, m).contiguous()
    # -- representation step (heads fixed) ---------------------------------------------------
    G = torch.zeros_like(W0)
    for blk in blocks:
        X, Y = sampler("rep", blk)
        G += shared_grad_sum(W0, A[blk.start : blk.stop], X, Y, loss, bias)
    G /= T
    # (1 − η_W λ) W0 − η_W G: exact zero for λ = 1/η_W, no cancellation of a small G against W0
    return OneStepResult((1.0 - eta_w * lam) * W0 - eta_w * G, A)


@dataclass
class AlternatingLog:
    """What :func:`alternating_sgd` returns: final ``W``, heads ``A`` and the logged rounds."""

    W: Tensor
    A: Tensor
    rounds: list[int]
    records: list[dict[str, float]]


def alternating_sgd(
    W0: Tensor,
    T: int,
    sampler: Callable[[str, Sequence[int]], tuple[Tensor, Tensor]],
    *,
    rounds: int = 300,
    batch_tasks: int = 10,
    head_steps: int = 1,
    eta_a: float = 2.0,
    eta_w: float = 2.0,
    weight_decay: float = 1e-2,
    loss: str = "logistic",
    bias: Tensor | None = None,
    generator: torch.Generator | None = None,
    log_every: int = 10,
    measure: Callable[[Tensor, Tensor], dict[str, float]] | None = None,
    progress: bool = False,
) -> AlternatingLog:
    """Alternating SGD with persistent heads (notes §4.5; the paper's Appendix F in prose).

    Each round samples ``min(batch_tasks, T)`` distinct tasks (``generator``), draws fresh samples
    with ``sampler(f"round{k}", tasks)``, takes ``head_steps`` gradient steps on each sampled
    task's own head (``W`` fixed), then one step on ``W`` on the mean loss of the sampled tasks with
    weight decay. ``measure(W, A)`` is called at round 0 and every ``log_every`` rounds (and at
    the end); its dicts are returned with their round numbers.
    """
    check_loss(loss)
    if T < 1 or rounds < 0 or batch_tasks < 1 or head_steps < 1:
        raise ValueError(
            f"need T >= 1, rounds >= 0, batch_tasks >= 1, head_steps >= 1 "
            f"(got {T}, {rounds}, {batch_tasks}, {head_steps})"
        )
    W = W0.clone()
    m = W.shape[0]
    A = torch.zeros(T, m, dtype=W.dtype, device=W.device)
    B = min(batch_tasks, T)
    logged: list[int] = []
    records: list[dict[str, float]] = []

    def log(k: int) -> None:
        if measure is not None:
            logged.append(k)
            records.append(measure(W, A))

    log(0)
    it = range(1, rounds + 1)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="rounds", unit="round", leave=False)
    for k in it:
        tasks = torch.randperm(T, generator=generator)[:B].tolist() if B < T else list(range(T))
        X, Y = sampler(f"round{k}", tasks)
        idx = torch.as_tensor(tasks, device=W.device)
        Ab = A[idx]
        for _ in range(head_steps):
            Ab = Ab - eta_a * head_grads(W, Ab, X, Y, loss, bias)
        A[idx] = Ab
        W = W - eta_w * (shared_grad_sum(W, Ab, X, Y, loss, bias) / B + weight_decay * W)
        if k % log_every == 0 or k == rounds:
            log(k)
    return AlternatingLog(W, A, logged, records)


__all__ = [
    "HEAD_RULES",
    "AlternatingLog",
    "OneStepResult",
    "alternating_sgd",
    "auto_task_block",
    "one_step",
]
