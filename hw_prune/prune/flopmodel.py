"""Fast FLOPs of a model at arbitrary group widths, without pruning it.

Each Conv/Linear's FLOPs (from torch's counter) scale with its kept output and input channels; the
groups that set those channels (and how many of the layer's inputs each group channel feeds, e.g.
H*W for flatten -> linear) come from the dependency graph. Used to bisect thresholds quickly; the
final plan's FLOPs are always re-counted on the pruned model with torch's counter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from hw_prune.flops import count_flops
from hw_prune.graph import GraphInfo, analyse


@dataclass
class _Layer:
    flops: int
    cout: int
    cin: int
    depthwise: bool
    out_group: str | None = None
    in_groups: list[tuple[str, float]] = field(default_factory=list)  # (group, inputs per group channel)


class FlopModel:
    def __init__(self, model: Any, input_shape: tuple[int, ...], info: GraphInfo | None = None) -> None:
        net = model.model if hasattr(model, "model") and isinstance(model.model, nn.Module) else model
        self.info = info or analyse(net, input_shape)
        rep = count_flops(net, (1, *input_shape[1:]))
        self.total = rep.flops
        per = {d["name"]: d["flops"] for d in rep.layers}
        self.widths0 = {g.name: g.width for g in self.info.groups}
        self.layers: dict[str, _Layer] = {}
        mods = dict(net.named_modules())
        for name, m in mods.items():
            if isinstance(m, nn.Conv2d):
                dw = m.groups > 1 and m.groups == m.in_channels == m.out_channels
                self.layers[name] = _Layer(per.get(name, 0), m.out_channels, m.in_channels, dw)
            elif isinstance(m, nn.Linear):
                self.layers[name] = _Layer(per.get(name, 0), m.out_features, m.in_features, False)
        self.fixed = self.total - sum(l.flops for l in self.layers.values())  # ops outside conv/linear
        dg = self.info.dg
        for g in self.info.groups:
            root = self.info.roots[g.name]
            pg = dg.get_pruning_group(root, dg.get_pruner_of_module(root).prune_out_channels, list(range(g.width)))
            for item in pg:
                m = item.dep.target.module
                n = self.info.names.get(m) if isinstance(m, nn.Module) else None
                if n not in self.layers:
                    continue
                lay = self.layers[n]
                if dg.is_out_channel_pruning_fn(item.dep.handler):
                    lay.out_group = g.name
                else:
                    lay.in_groups.append((g.name, len(item.idxs) / max(1, g.width)))

    def flops(self, widths: dict[str, int]) -> int:
        """FLOPs when each group has width widths.get(name, current)."""
        def removed(gname: str) -> int:
            return self.widths0[gname] - int(widths.get(gname, self.widths0[gname]))

        total = float(self.fixed)
        for lay in self.layers.values():
            cout = lay.cout - (removed(lay.out_group) if lay.out_group else 0)
            if lay.depthwise:
                total += lay.flops * cout / lay.cout
                continue
            cin = lay.cin - sum(removed(g) * k for g, k in lay.in_groups if g != lay.out_group)
            total += lay.flops * (cout / lay.cout) * (max(cin, 0) / lay.cin)
        return int(round(total))
