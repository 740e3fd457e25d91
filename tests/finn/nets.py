"""Small CNNs for the FINN tests (importable as tests.finn.nets:tiny_cnn by `--model`)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class TinyCNN(nn.Module):
    """conv-BN-ReLU x3 with two max-pools, global average pool, FC: the shape FINN maps end to end."""

    def __init__(self, widths: Sequence[int] = (16, 32, 32), num_classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for i, c in enumerate(widths):
            layers += [nn.Conv2d(cin, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
            if i < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
            cin = c
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


def tiny_cnn(widths: Sequence[int] = (16, 32, 32), num_classes: int = 10) -> TinyCNN:
    return TinyCNN(tuple(widths), num_classes)


def prime_cnn() -> TinyCNN:
    """37 channels (prime): FINN's folding can only use parallelism 1 or 37 on it."""
    return TinyCNN((37, 37, 37))
