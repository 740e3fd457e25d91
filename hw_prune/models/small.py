"""Small reference CNNs: VGG-style, DenseNet-like (concatenation) and ResNeXt-like (grouped convs)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


def _cbr(cin: int, cout: int, k: int = 3, s: int = 1, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class VGGSmall(nn.Module):
    """VGG-like stack for 32x32 inputs: 64-64-M-128-128-M-256-256-M, global pool, FC."""

    CFG = (64, 64, "M", 128, 128, "M", 256, 256, "M")

    def __init__(self, num_classes: int = 10, cfg: tuple = CFG) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += _cbr(cin, int(v))
                cin = int(v)
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def PlainCNN(widths: Sequence[int] = (32, 64, 64), num_classes: int = 10) -> VGGSmall:
    """conv-BN-ReLU per width with max-pools between, global average pool, FC: the plain shape FINN's
    dataflow flow maps end to end (no residual adds, which FINN's streamlining cannot handle)."""
    cfg: list = []
    for i, c in enumerate(widths):
        cfg += [int(c)] + (["M"] if i < len(widths) - 1 else [])
    return VGGSmall(num_classes, tuple(cfg))


class DenseLayer(nn.Module):
    def __init__(self, cin: int, growth: int) -> None:
        super().__init__()
        self.body = nn.Sequential(*_cbr(cin, 2 * growth, 1), *_cbr(2 * growth, growth, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.body(x)], 1)


class DenseNetTiny(nn.Module):
    """DenseNet-like: dense blocks that concatenate features, 1x1 transitions with pooling."""

    def __init__(self, num_classes: int = 10, growth: int = 12, layers: tuple[int, ...] = (3, 3, 3)) -> None:
        super().__init__()
        cin = 2 * growth
        mods: list[nn.Module] = _cbr(3, cin, 3)
        for i, n in enumerate(layers):
            for _ in range(n):
                mods.append(DenseLayer(cin, growth))
                cin += growth
            if i < len(layers) - 1:
                mods += _cbr(cin, cin // 2, 1) + [nn.AvgPool2d(2)]
                cin //= 2
        self.features = nn.Sequential(*mods)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


class ResNeXtBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, groups: int) -> None:
        super().__init__()
        mid = cout // 2
        self.body = nn.Sequential(*_cbr(cin, mid, 1), *_cbr(mid, mid, 3, stride, groups=groups),
                                  nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.short = (nn.Identity() if stride == 1 and cin == cout else
                      nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.short(x))


class ResNeXtTiny(nn.Module):
    """ResNeXt-like network with grouped 3x3 convolutions (cardinality 4)."""

    def __init__(self, num_classes: int = 10, groups: int = 4) -> None:
        super().__init__()
        self.stem = nn.Sequential(*_cbr(3, 32, 3))
        blocks, cin = [], 32
        for cout, s in ((64, 1), (64, 1), (128, 2), (128, 1), (256, 2), (256, 1)):
            blocks.append(ResNeXtBlock(cin, cout, s, groups))
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))
