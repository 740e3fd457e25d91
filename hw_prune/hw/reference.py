"""Reference layer-spec sets: published ZCU104 numbers (DESIGN.md 3) and the pruned ResNet-50 series.

The pruned ResNet-50s are made by scaling every bottleneck's inner width (conv1/conv2 outputs) by
one factor, keeping the residual widths, until the model's ops (2 x MACs) match the published GOPs.
"""

from __future__ import annotations

from functools import lru_cache

from hw_prune.layers import LayerSpec, extract_layer_specs

# Vitis AI 3.0 model zoo, ZCU104 (2 x B4096 @ 300 MHz): (name, GOPs, single-thread fps, multi-thread fps)
PUBLISHED_ZCU104: list[tuple[str, float, float, float]] = [
    ("resnet50", 8.2, 84.7, 161.9),
    ("resnet50-pruned30", 5.8, 98.1, 181.9),
    ("resnet50-pruned40", 4.9, 104.7, 192.1),
    ("resnet50-pruned50", 4.1, 114.2, 208.3),
    ("resnet50-pruned60", 3.3, 127.7, 230.0),
    ("resnet50-pruned70", 2.5, 139.0, 254.3),
    ("mobilenetv2", 0.602, 284.7, 621.0),
]


def gops(specs: list[LayerSpec]) -> float:
    return 2 * sum(s.macs for s in specs) / 1e9


@lru_cache(maxsize=None)
def model_specs(name: str, size: int = 224) -> tuple[LayerSpec, ...]:
    """Layer specs of a built-in model at size x size with 1000 classes (>64 px) or 10 (CIFAR size)."""
    from hw_prune.models import build_builtin

    nc = 1000 if size > 64 else 10
    shape = (1, 3, size, size)
    return tuple(extract_layer_specs(build_builtin(name, nc, shape), shape))


def scale_bottlenecks(specs: list[LayerSpec] | tuple[LayerSpec, ...], factor: float) -> list[LayerSpec]:
    """ResNet-50 with every bottleneck's inner width multiplied by `factor` (residual widths kept)."""
    out = []
    for s in specs:
        parts = s.name.split(".")
        if s.op == "conv" and len(parts) == 3 and parts[0].startswith("layer") and parts[2] in ("conv1", "conv2",
                                                                                                   "conv3"):
            cin, cout = s.cin, s.cout
            if parts[2] in ("conv2", "conv3"):
                cin = max(1, round(s.cin * factor))
            if parts[2] in ("conv1", "conv2"):
                cout = max(1, round(s.cout * factor))
            s = s.with_channels(cin, cout)
        out.append(s)
    return out


def pruned_resnet50_specs(target_gops: float) -> list[LayerSpec]:
    """ResNet-50 at 224 with bottleneck widths scaled uniformly to `target_gops` (bisection on the factor)."""
    base = model_specs("resnet50", 224)
    lo, hi = 0.05, 1.0
    for _ in range(40):
        mid = (lo + hi) / 2
        if gops(scale_bottlenecks(base, mid)) > target_gops:
            hi = mid
        else:
            lo = mid
    return scale_bottlenecks(base, (lo + hi) / 2)


def published_specs(name: str) -> list[LayerSpec]:
    """Specs for one row of PUBLISHED_ZCU104."""
    row = {r[0]: r for r in PUBLISHED_ZCU104}[name]
    if name == "resnet50":
        return list(model_specs("resnet50", 224))
    if name == "mobilenetv2":
        return list(model_specs("mobilenetv2", 224))
    return pruned_resnet50_specs(row[1])
