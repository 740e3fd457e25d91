"""Per-channel importance of channel groups: l1, l2 (weight magnitude), taylor (|w * grad|), bn (|gamma|).

Scores are aggregated over every member of a group (the root conv's outputs, its BN, every
consumer's input slice), mapped back to the group's channel index through torch-pruning's index
mapping (so concatenation and flatten->linear are handled). Higher = more important.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hw_prune.errors import UserError

CRITERIA = ("l1", "l2", "taylor", "bn")


def _slice_score(m: nn.Module, side: str, idxs: Sequence[int], mode: str) -> np.ndarray | None:
    """Per-index score of one member: sum over the slice of |w| (l1), w^2 (l2), |w*grad| (taylor)."""
    w = getattr(m, "weight", None)
    if w is None or not isinstance(w, torch.Tensor):
        return None
    if mode == "taylor":
        if w.grad is None:
            return None
        t = (w.detach() * w.grad.detach()).abs()
    elif mode == "l1":
        t = w.detach().abs()
    else:
        t = w.detach() ** 2
    if isinstance(m, nn.BatchNorm2d):
        if mode == "bn" or mode in ("l1", "l2", "taylor"):
            return t[list(idxs)].cpu().numpy().astype(np.float64) if t.ndim == 1 else None
        return None
    if mode == "bn":
        return None
    if side == "out":
        flat = t.flatten(1).sum(1)
        return flat[list(idxs)].cpu().numpy().astype(np.float64)
    # input side
    if isinstance(m, nn.Conv2d) and m.groups > 1:
        if m.groups == m.in_channels == m.out_channels:  # depthwise: in == out
            return t.flatten(1).sum(1)[list(idxs)].cpu().numpy().astype(np.float64)
        per_g = m.in_channels // m.groups
        ipg = m.out_channels // m.groups
        col = t.sum(dim=(2, 3)) if t.ndim == 4 else t  # (out, in/groups)
        res = []
        for i in idxs:  # input channel i feeds the outputs of group i // per_g through column i % per_g
            blk = i // per_g
            res.append(float(col[blk * ipg:(blk + 1) * ipg, i % per_g].sum()))
        return np.asarray(res, dtype=np.float64)
    dims = [d for d in range(t.ndim) if d != 1]
    col = t.sum(dim=dims) if dims else t
    return col[list(idxs)].cpu().numpy().astype(np.float64)


def _taylor_grads(net: nn.Module, loader: Iterable, batches: int) -> None:
    """Accumulate loss gradients over a few batches (BN in eval mode so statistics stay put)."""
    if loader is None:
        raise UserError("criterion 'taylor' needs data; pass --data or use l1, l2 or bn")
    was = net.training
    net.eval()
    net.zero_grad(set_to_none=True)
    n = 0
    try:
        for i, (x, y) in enumerate(loader):
            if i >= batches:
                break
            F.cross_entropy(net(x), y).backward()
            n += 1
    finally:
        net.train(was)
    if n == 0:
        raise UserError("criterion 'taylor' got no batches of data; use more data or another criterion")


def group_importance(model: Any, input_shape: tuple[int, ...], groups: Sequence[Any], criterion: str = "l2",
                     loader: Iterable | None = None, batches: int = 4, info: Any = None) -> dict[str, np.ndarray]:
    """Per-channel scores for each group in `groups` (ChannelGroup or name), aggregated over its members."""
    from hw_prune.graph import _net, analyse

    criterion = criterion.lower()
    if criterion not in CRITERIA:
        raise UserError(f"unknown criterion '{criterion}'; use one of {', '.join(CRITERIA)}")
    net = _net(model)
    info = info or analyse(net, input_shape)
    if criterion == "taylor":
        _taylor_grads(net, loader, batches)
    out: dict[str, np.ndarray] = {}
    try:
        for g in groups:
            name = g if isinstance(g, str) else g.name
            root = info.roots[name]
            width = next(c.width for c in info.groups if c.name == name)
            pg = info.dg.get_pruning_group(root, info.dg.get_pruner_of_module(root).prune_out_channels,
                                           list(range(width)))
            score = np.zeros(width, dtype=np.float64)
            fallback = np.zeros(width, dtype=np.float64)
            for item in pg:
                dep, idxs = item.dep, item.idxs
                root_idxs = getattr(item, "root_idxs", idxs)
                m = dep.target.module
                if not isinstance(m, nn.Module):
                    continue
                side = "out" if info.dg.is_out_channel_pruning_fn(dep.handler) else "in"
                s = _slice_score(m, side, idxs, criterion)
                if criterion == "bn" and s is None and isinstance(m, (nn.Conv2d, nn.Linear)):
                    s2 = _slice_score(m, side, idxs, "l2")  # groups without BN fall back to l2
                    if s2 is not None:
                        np.add.at(fallback, np.asarray(root_idxs) % width, s2)
                if s is not None:
                    np.add.at(score, np.asarray(root_idxs) % width, s)
            if criterion == "bn" and not score.any():
                score = fallback
            if criterion == "l2":
                score = np.sqrt(score)
            out[name] = score
    finally:
        if criterion == "taylor":
            net.zero_grad(set_to_none=True)
    return out
