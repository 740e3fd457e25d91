"""A plain CNN rebuilt from LayerSpecs, so a dataflow cost can be estimated for widths that no model
has yet (the pruning search asks about many candidate widths).

Only chains are rebuilt: conv / dwconv (+BN+ReLU), pool, fc, in the order given; residual `add` and
`concat` specs are skipped. That matches what FINN maps here (a residual add between HW layers is left
unmapped by finn-plus' default steps, see docs/readme/50-finn.md), and adds cost FINN little next to
the convolutions. Where a spec's cin differs from the running channel count (a branch), the chain's
count is used so the network stays valid.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from hw_prune.errors import UserError
from hw_prune.layers import LayerSpec

MAC_OPS = ("conv", "dwconv", "fc")


def proxy_network(specs: Sequence[LayerSpec]) -> tuple[nn.Module, tuple[int, int, int, int]]:
    first = next((s for s in specs if s.op in MAC_OPS), None)
    if first is None:
        raise UserError("no conv / fc layers in the given layer specs; nothing for FINN to build")
    c, h, w = first.cin, first.h_in, first.w_in
    shape = (1, c, h, w)
    mods: list[nn.Module] = []
    flat = False
    fcs = [i for i, s in enumerate(specs) if s.op == "fc"]
    for i, s in enumerate(specs):
        if s.op in ("conv", "dwconv") and not flat:
            k, st = max(1, s.kernel), max(1, s.stride)
            groups = c if s.op == "dwconv" else (s.groups if c % s.groups == 0 and s.cout % s.groups == 0 else 1)
            cout = c if s.op == "dwconv" else s.cout
            mods += [nn.Conv2d(c, cout, k, st, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]
            c, h, w = cout, (h + 2 * (k // 2) - k) // st + 1, (w + 2 * (k // 2) - k) // st + 1
        elif s.op == "pool" and not flat:
            if s.h_out == 1 and s.w_out == 1:
                if h > 1 or w > 1:
                    mods.append(nn.AdaptiveAvgPool2d(1))
                h = w = 1
            else:
                k = max(2, s.kernel)
                st = max(1, s.stride or k)
                if h >= k and w >= k:
                    mods.append(nn.MaxPool2d(k, st))
                    h, w = (h - k) // st + 1, (w - k) // st + 1
        elif s.op == "fc":
            if not flat:
                if h > 1 or w > 1:
                    mods.append(nn.AdaptiveAvgPool2d(1))
                mods.append(nn.Flatten())
                flat, c = True, c
            mods.append(nn.Linear(c, s.cout))
            c = s.cout
            if i != fcs[-1]:
                mods.append(nn.ReLU())
    torch.manual_seed(0)  # same specs -> same weights -> same QONNX bytes -> FINN build cache hits
    net = nn.Sequential(*mods)
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
    return net.eval(), shape
