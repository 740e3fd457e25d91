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


def random_width_specs(specs: list[LayerSpec] | tuple[LayerSpec, ...], rng: "object", lo: float = 0.25,
                       hi: float = 1.0) -> list[LayerSpec]:
    """A consistently re-widthed copy: each ResNet bottleneck / basic block and each MobileNetV2 inverted
    residual gets its own random inner width (x U(lo, hi), not rounded to any multiple), as a pruner would
    leave them. Layers outside such blocks keep their widths."""
    factors: dict[str, float] = {}

    def f(block: str) -> float:
        if block not in factors:
            factors[block] = float(rng.uniform(lo, hi))  # type: ignore[attr-defined]
        return factors[block]

    out = []
    for s in specs:
        p = s.name.split(".")
        if len(p) >= 3 and p[0].startswith("layer") and p[2] in ("conv1", "conv2", "conv3"):
            blk = ".".join(p[:2])
            last = "conv3" if any(x.name == f"{blk}.conv3" for x in specs) else "conv2"
            w = lambda c: max(1, round(c * f(blk)))  # noqa: E731
            cin = w(s.cin) if p[2] != "conv1" else s.cin
            cout = w(s.cout) if p[2] != last else s.cout
            s = s.with_channels(cin, cout)
        elif len(p) >= 4 and p[0] == "features" and p[2] == "conv":
            blk = ".".join(p[:2])
            convs = [x for x in specs if x.name.startswith(blk + ".conv.")]
            if len(convs) == 3:  # expand 1x1 -> depthwise -> project 1x1: scale the expanded width
                w = lambda c: max(1, round(c * f(blk)))  # noqa: E731
                if s.name == convs[0].name:
                    s = s.with_channels(None, w(s.cout))
                elif s.name == convs[1].name:
                    s = s.with_channels(w(s.cin), None)
                else:
                    s = s.with_channels(w(s.cin), None)
        out.append(s)
    return out
