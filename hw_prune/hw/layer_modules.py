"""Single-layer torch modules built from LayerSpecs, so one layer can be exported and timed alone."""

from __future__ import annotations

import math

import torch
from torch import nn

from hw_prune.layers import LayerSpec


def _pad(size_in: int, size_out: int, k: int, s: int) -> int:
    """Symmetric padding that gives `size_out` from `size_in` (as close as one padding value allows)."""
    return max(0, math.ceil(((size_out - 1) * s + k - size_in) / 2))


class _AddConst(nn.Module):
    """Residual-style elementwise add of the input and a second tensor of the same shape."""

    def __init__(self, c: int, h: int, w: int) -> None:
        super().__init__()
        self.register_buffer("other", torch.randn(1, c, h, w))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.other


class _Concat(nn.Module):
    """Channel concatenation of the input with a second tensor (output has `c` channels)."""

    def __init__(self, c_other: int, h: int, w: int) -> None:
        super().__init__()
        self.register_buffer("other", torch.randn(1, c_other, h, w))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.other], 1)


def layer_module(spec: LayerSpec) -> tuple[nn.Module, tuple[int, ...]]:
    """(module, input shape at batch 1) that computes `spec`."""
    op, k, s = spec.op, max(1, spec.kernel), max(1, spec.stride)
    if op in ("conv", "dwconv"):
        m = nn.Conv2d(spec.cin, spec.cout, k, s, padding=_pad(spec.h_in, spec.h_out, k, s), groups=spec.groups)
        return m, (1, spec.cin, spec.h_in, spec.w_in)
    if op == "fc":
        return nn.Linear(spec.cin, spec.cout), (1, spec.cin)
    if op == "pool":
        if spec.h_out == 1 and spec.w_out == 1:
            return nn.AdaptiveAvgPool2d(1), (1, spec.cin, spec.h_in, spec.w_in)
        return nn.MaxPool2d(k, s, padding=min(k // 2, _pad(spec.h_in, spec.h_out, k, s))), \
            (1, spec.cin, spec.h_in, spec.w_in)
    if op == "add":
        return _AddConst(spec.cout, spec.h_out, spec.w_out), (1, spec.cout, spec.h_out, spec.w_out)
    if op == "concat":
        half = max(1, spec.cout // 2)
        return _Concat(spec.cout - half, spec.h_out, spec.w_out), (1, half, spec.h_out, spec.w_out)
    raise ValueError(f"unknown op '{op}'")
