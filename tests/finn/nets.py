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


def slice_tiny(model: TinyCNN, keep: float = 0.5) -> TinyCNN:
    """Physically prune every conv of a TinyCNN to `keep` of its channels (largest L1 norms).
    TEST-ONLY stand-in: to be replaced by hw_prune.graph.apply_widths / `hw_prune prune --uniform`
    (core developer) once that exists; the tests use apply_widths when it can be imported."""
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    bns = [m for m in model.features if isinstance(m, nn.BatchNorm2d)]
    widths = [max(1, int(round(c.out_channels * keep))) for c in convs]
    new = TinyCNN(widths, model.fc.out_features)
    nconvs = [m for m in new.features if isinstance(m, nn.Conv2d)]
    nbns = [m for m in new.features if isinstance(m, nn.BatchNorm2d)]
    prev = torch.arange(3)
    with torch.no_grad():
        for c, b, nc, nb, w in zip(convs, bns, nconvs, nbns, widths):
            idx = c.weight.abs().sum((1, 2, 3)).topk(w).indices.sort().values
            nc.weight.copy_(c.weight[idx][:, prev])
            for name in ("weight", "bias", "running_mean", "running_var"):
                getattr(nb, name).copy_(getattr(b, name)[idx])
            prev = idx
        new.fc.weight.copy_(model.fc.weight[:, prev])
        new.fc.bias.copy_(model.fc.bias)
    return new.eval()
