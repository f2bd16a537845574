"""Hard-parameter-sharing networks for real multi-task data: a shared trunk and one linear head per
task (``nn.Module``; the parameters split into :meth:`MultiTaskNet.shared_parameters` and
:meth:`MultiTaskNet.task_parameters`).

Trunks: ``mlp`` (flatten → Linear/ReLU layers), ``linear`` (flatten → Linear layers without
activations: a linear network, e.g. a narrow bottleneck), ``cnn`` (Conv3×3/ReLU blocks with 2×2 max
pooling after the first, then global average pooling) and ``resnet18`` (the CIFAR-style ResNet-18
of :mod:`mtlab.models.resnet`; ``widths[0]`` is its base width, 64 as standard).
``forward(x)`` returns the shared representation ``z: (batch, k)`` and the list of per-task
logits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeVar

import torch
from torch import Tensor, nn

M = TypeVar("M", bound=nn.Module)

TRUNKS = ("mlp", "linear", "cnn", "resnet18")


def mlp_trunk(in_features: int, widths: Sequence[int], activation: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Flatten()]
    prev = in_features
    for w in widths:
        layers += [nn.Linear(prev, w), nn.ReLU()] if activation else [nn.Linear(prev, w)]
        prev = w
    return nn.Sequential(*layers)


def cnn_trunk(in_channels: int, channels: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    prev = in_channels
    for i, c in enumerate(channels):
        layers += [nn.Conv2d(prev, c, 3, padding=1), nn.ReLU()]
        if i == 0:
            layers.append(nn.MaxPool2d(2, ceil_mode=True))
        prev = c
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers)


class MultiTaskNet(nn.Module):
    """Shared trunk + one linear head per task (``num_classes[t]`` outputs each; 1 output: a
    regression task)."""

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: Sequence[int],
        trunk: str = "mlp",
        widths: Sequence[int] = (128, 128),
    ) -> None:
        super().__init__()
        if trunk not in TRUNKS:
            raise ValueError(f"unknown trunk {trunk!r}; allowed: {', '.join(TRUNKS)}")
        if not num_classes or min(num_classes) < 1:
            raise ValueError(f"every task needs >= 1 output (got {list(num_classes)})")
        if not widths:
            raise ValueError("widths must name at least one layer")
        if trunk in ("mlp", "linear"):
            self.trunk = mlp_trunk(math.prod(input_shape), widths, activation=trunk == "mlp")
            self.feature_dim = widths[-1]
        else:
            if len(input_shape) != 3:
                raise ValueError(
                    f"the {trunk} trunk needs (C, H, W) inputs (got {tuple(input_shape)})"
                )
            if trunk == "cnn":
                self.trunk = cnn_trunk(input_shape[0], widths)
                self.feature_dim = widths[-1]
            else:
                from mtlab.models.resnet import resnet18_trunk

                self.trunk = resnet18_trunk(input_shape[0], widths[0])
                self.feature_dim = 8 * widths[0]
        self.heads = nn.ModuleList(nn.Linear(self.feature_dim, k) for k in num_classes)

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        z = self.trunk(x)
        return z, [h(z) for h in self.heads]

    def shared_parameters(self) -> list[nn.Parameter]:
        return list(self.trunk.parameters())

    def task_parameters(self) -> list[nn.Parameter]:
        return list(self.heads.parameters())


def seeded_network(
    input_shape: Sequence[int],
    heads: Sequence[tuple[str, int]],
    trunk: str,
    widths: Sequence[int],
    seed: int,
) -> MultiTaskNet:
    """A :class:`MultiTaskNet` whose trunk is initialised from ``seed`` alone and each head
    ``(name, outputs)`` from ``seed`` and its task's name — so a task's STL network and every MTL
    network that contains it start from the same trunk and the same head of that task."""
    from mtlab._seeding import derive_seed

    net = MultiTaskNet(input_shape, [k for _, k in heads], trunk, widths)
    init_seeded(net.trunk, derive_seed(seed, "trunk"))
    for head, (name, _) in zip(net.heads, heads, strict=True):
        init_seeded(head, derive_seed(seed, "head", name))
    return net


def init_seeded(model: M, seed: int) -> M:
    """Re-initialise every layer from a seeded stream (no global RNG)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                fan_in = m.weight[0].numel()
                bound = 1.0 / math.sqrt(fan_in)
                gain = math.sqrt(6.0 / fan_in)  # Kaiming-uniform with the ReLU gain
                m.weight.copy_((torch.rand(m.weight.shape, generator=g) * 2 - 1) * gain)
                if m.bias is not None:
                    m.bias.copy_(torch.rand(m.bias.shape, generator=g) * 2 * bound - bound)
    return model


@torch.no_grad()
def rescale_(model: nn.Module, s: float, names: Sequence[str] | None = None) -> nn.Module:
    """Multiply the named parameters (default: all) by ``s`` in place — the rescaling of
    pretrained weights before finetuning; buffers (BatchNorm statistics) are left alone."""
    if not math.isfinite(s) or s <= 0:
        raise ValueError(f"s must be a positive number (got {s})")
    params = dict(model.named_parameters())
    chosen = list(params) if names is None else list(names)
    unknown = [n for n in chosen if n not in params]
    if unknown:
        raise ValueError(f"unknown parameter name(s) {unknown}")
    for n in chosen:
        params[n].mul_(s)
    return model


__all__ = ["TRUNKS", "MultiTaskNet", "cnn_trunk", "init_seeded", "mlp_trunk", "rescale_",
           "seeded_network"]
