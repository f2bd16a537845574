"""A CIFAR-style ResNet-18 trunk in plain PyTorch (He et al. 2016; no torchvision).

3×3 stride-1 stem (no max-pool: the input is 32×32), four stages of two basic blocks with
``base, 2·base, 4·base, 8·base`` channels (strides 1, 2, 2, 2), BatchNorm after every convolution,
global average pooling → ``8·base`` features (512 for the standard ``base = 64``). Lippl &
Lindsey used torchvision's ImageNet-stem ResNet-18 on 32×32 inputs; the CIFAR stem is the
common choice for 32×32 images and is what this trunk implements.
"""

from __future__ import annotations

from torch import Tensor, nn


class BasicBlock(nn.Module):
    """Two 3×3 convolutions with BatchNorm and a (projected when needed) identity shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn1(self.conv1(x)).relu()
        out = self.bn2(self.conv2(out))
        return (out + self.shortcut(x)).relu()


def resnet18_trunk(in_channels: int = 3, base: int = 64) -> nn.Sequential:
    """The trunk ``(B, in_channels, H, W)`` → ``(B, 8·base)``."""
    if base < 1:
        raise ValueError(f"base width must be >= 1; got {base}")
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, base, 3, 1, 1, bias=False),
        nn.BatchNorm2d(base),
        nn.ReLU(),
    ]
    c = base
    for stage, stride in enumerate((1, 2, 2, 2)):
        out = base * 2**stage
        layers += [BasicBlock(c, out, stride), BasicBlock(out, out, 1)]
        c = out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers)


__all__ = ["BasicBlock", "resnet18_trunk"]
