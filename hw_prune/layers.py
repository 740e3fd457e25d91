"""Per-layer specs (op, channels, kernel, stride, groups, feature-map size): what cost models consume.

Extracted by tracing the model with torch.fx and propagating shapes, so functional ops (residual
adds, concatenation, pooling written as F.*) are seen too. Models fx cannot trace fall back to
module hooks (convs, linears and pooling only).
"""

from __future__ import annotations

import operator
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

OPS = ("conv", "dwconv", "fc", "pool", "add", "concat")


@dataclass(frozen=True)
class LayerSpec:
    """One layer as hardware sees it. `kernel`/`stride` are square sizes (height used when not square)."""

    op: str
    cin: int
    cout: int
    kernel: int = 1
    stride: int = 1
    groups: int = 1
    h_in: int = 1
    w_in: int = 1
    h_out: int = 1
    w_out: int = 1
    name: str = ""

    def key(self) -> tuple:
        """Identity for caching and lookup tables (everything but the name)."""
        return (self.op, self.cin, self.cout, self.kernel, self.stride, self.groups,
                self.h_in, self.w_in, self.h_out, self.w_out)

    @property
    def macs(self) -> int:
        if self.op in ("conv", "dwconv"):
            return self.h_out * self.w_out * self.cout * (self.cin // self.groups) * self.kernel * self.kernel
        if self.op == "fc":
            return self.cin * self.cout
        return 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "LayerSpec":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})

    def with_channels(self, cin: int | None = None, cout: int | None = None) -> "LayerSpec":
        """The same layer at other widths (depthwise keeps cin == cout == groups)."""
        ci = self.cin if cin is None else cin
        co = self.cout if cout is None else cout
        g = self.groups
        if self.op == "dwconv":
            co = ci = (co if cout is not None else ci)
            g = ci
        elif self.op in ("pool", "add"):
            co = ci = (ci if cin is not None else co)
        d = self.to_dict()
        d.update(cin=ci, cout=co, groups=g)
        return LayerSpec(**d)


def _hw(t: Any) -> tuple[int, int, int]:
    if isinstance(t, torch.Tensor):
        if t.dim() == 4:
            return t.shape[1], t.shape[2], t.shape[3]
        if t.dim() == 2:
            return t.shape[1], 1, 1
    return 0, 1, 1


def _conv_spec(name: str, m: nn.Conv2d, x: torch.Tensor, y: torch.Tensor) -> LayerSpec:
    c_in, hi, wi = _hw(x)
    c_out, ho, wo = _hw(y)
    dw = m.groups > 1 and m.groups == m.in_channels == m.out_channels
    return LayerSpec("dwconv" if dw else "conv", m.in_channels, m.out_channels, m.kernel_size[0], m.stride[0],
                     m.groups, hi, wi, ho, wo, name)


def _pool_spec(name: str, x: torch.Tensor, y: torch.Tensor, kernel: int | None, stride: int | None) -> LayerSpec:
    c, hi, wi = _hw(x)
    _, ho, wo = _hw(y)
    k = kernel if kernel else max(1, hi // max(1, ho))
    s = stride if stride else k
    return LayerSpec("pool", c, c, int(k), int(s), 1, hi, wi, ho, wo, name)


def _first(v: Any) -> int | None:
    if v is None:
        return None
    return int(v[0]) if isinstance(v, (tuple, list)) else int(v)


def _specs_fx(model: nn.Module, x: torch.Tensor) -> list[LayerSpec]:
    from torch.fx import symbolic_trace
    from torch.fx.passes.shape_prop import ShapeProp

    gm = symbolic_trace(model)
    ShapeProp(gm).propagate(x)
    modules = dict(gm.named_modules())
    specs: list[LayerSpec] = []

    def meta_t(n: Any) -> Any:
        tm = n.meta.get("tensor_meta") if hasattr(n, "meta") else None
        return torch.empty(tm.shape) if tm is not None and hasattr(tm, "shape") else None

    for node in gm.graph.nodes:
        out = meta_t(node)
        ins = [meta_t(a) for a in node.args if hasattr(a, "meta")]
        inp = ins[0] if ins else None
        if node.op == "call_module":
            m = modules[node.target]
            if isinstance(m, nn.Conv2d):
                specs.append(_conv_spec(node.target, m, inp, out))
            elif isinstance(m, nn.Linear):
                specs.append(LayerSpec("fc", m.in_features, m.out_features, name=node.target))
            elif isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
                specs.append(_pool_spec(node.target, inp, out, _first(m.kernel_size), _first(m.stride)))
            elif isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
                specs.append(_pool_spec(node.target, inp, out, None, None))
        elif node.op in ("call_function", "call_method"):
            fn = node.target
            if fn in (operator.add, torch.add, "add", "add_", operator.iadd) and len(ins) == 2 and out is not None \
                    and out.dim() == 4:
                c, h, w = _hw(out)
                specs.append(LayerSpec("add", c, c, 1, 1, 1, h, w, h, w, node.name))
            elif fn in (torch.cat, torch.concat) and out is not None and out.dim() == 4:
                c, h, w = _hw(out)
                specs.append(LayerSpec("concat", c, c, 1, 1, 1, h, w, h, w, node.name))
            elif fn in (F.max_pool2d, F.avg_pool2d) and inp is not None:
                k = node.args[1] if len(node.args) > 1 else node.kwargs.get("kernel_size")
                s = node.args[2] if len(node.args) > 2 else node.kwargs.get("stride")
                specs.append(_pool_spec(node.name, inp, out, _first(k), _first(s)))
            elif fn in (F.adaptive_avg_pool2d, F.adaptive_max_pool2d) and inp is not None:
                specs.append(_pool_spec(node.name, inp, out, None, None))
    return specs


def _specs_hooks(model: nn.Module, x: torch.Tensor) -> list[LayerSpec]:
    specs: list[LayerSpec] = []
    handles = []
    for name, m in model.named_modules():
        def hook(mod: nn.Module, args: tuple, out: torch.Tensor, name: str = name) -> None:
            inp = args[0]
            if isinstance(mod, nn.Conv2d):
                specs.append(_conv_spec(name, mod, inp, out))
            elif isinstance(mod, nn.Linear):
                specs.append(LayerSpec("fc", mod.in_features, mod.out_features, name=name))
            elif isinstance(mod, (nn.MaxPool2d, nn.AvgPool2d)):
                specs.append(_pool_spec(name, inp, out, _first(mod.kernel_size), _first(mod.stride)))
            elif isinstance(mod, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
                specs.append(_pool_spec(name, inp, out, None, None))
        if isinstance(m, (nn.Conv2d, nn.Linear, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d,
                          nn.AdaptiveMaxPool2d)):
            handles.append(m.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return specs


def extract_layer_specs(model: nn.Module, input_shape: tuple[int, ...] = (1, 3, 32, 32)) -> list[LayerSpec]:
    """Layer specs in execution order, for batch 1 at `input_shape`."""
    was_training = model.training
    model.eval()
    x = torch.zeros(1, *input_shape[1:])
    try:
        try:
            with torch.no_grad():
                return _specs_fx(model, x)
        except Exception:  # untraceable control flow: modules only
            return _specs_hooks(model, x)
    finally:
        model.train(was_training)
