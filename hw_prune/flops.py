"""FLOPs and parameters, total and per layer, exactly as `torch.utils.flop_counter` counts them.

FLOPs here are torch's count: 2 x MACs for convolutions and linear layers; elementwise ops,
pooling and BatchNorm count 0 (as in torch's counter).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass
class FlopReport:
    flops: int
    params: int
    output_shape: list[int]
    layers: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _first_tensor(out: Any) -> torch.Tensor | None:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    return None


def count_flops(model: Any, input_shape: tuple[int, ...] = (1, 3, 32, 32)) -> FlopReport:
    """One forward pass at `input_shape` (batch as given) under FlopCounterMode, in eval mode."""
    net: nn.Module = model.model if hasattr(model, "model") and isinstance(model.model, nn.Module) else model
    was = net.training
    net.eval()
    shapes: dict[str, list[int]] = {}
    hooks = []
    leaves = [(n, m) for n, m in net.named_modules() if n and not any(True for _ in m.children())]
    for name, m in leaves:
        def hook(_m: nn.Module, _i: Any, out: Any, name: str = name) -> None:
            t = _first_tensor(out)
            if t is not None and name not in shapes:
                shapes[name] = list(t.shape)
        hooks.append(m.register_forward_hook(hook))
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as fc:
            out = net(torch.zeros(*input_shape))
    finally:
        for h in hooks:
            h.remove()
        net.train(was)
    counts = fc.get_flop_counts()
    prefix = type(net).__name__
    layers = []
    for name, m in leaves:
        per = counts.get(f"{prefix}.{name}", {})
        flops = int(sum(per.values()))
        params = sum(p.numel() for p in m.parameters(recurse=False))
        if flops == 0 and params == 0:
            continue
        layers.append({"name": name, "type": type(m).__name__, "flops": flops, "params": int(params),
                       "output_shape": shapes.get(name, [])})
    o = _first_tensor(out)
    return FlopReport(flops=int(fc.get_total_flops()), params=int(sum(p.numel() for p in net.parameters())),
                      output_shape=list(o.shape) if o is not None else [], layers=layers)
