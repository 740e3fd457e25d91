"""Channel groups on torch-pruning's DependencyGraph, and physical pruning of groups to given widths.

A *channel group* is a set of channels that must be pruned together: a conv's outputs plus its BN,
every consumer's inputs, and everything coupled through residual adds, concatenation (index
mapping), depthwise convs (in == out) and grouped convs (same channels removed in every group).
The group is named after its root module (the first conv / linear whose outputs it sets).
The network's input channels have no group; groups that set the network's outputs are not prunable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
import torch_pruning as tp
from torch import nn

from hw_prune.errors import UserError

MEMBER_TYPES = (nn.Conv2d, nn.Linear, nn.BatchNorm2d)


@dataclass
class ChannelGroup:
    name: str                                   # root module name
    width: int                                  # current number of channels
    members: list[tuple[str, str]] = field(default_factory=list)  # (module name, "out" | "in")
    divisor: int = 1                            # kept width must be a multiple of this
    prunable: bool = True
    reason: str = ""                            # why not prunable (empty when prunable)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "width": self.width, "members": [list(m) for m in self.members],
                "divisor": self.divisor, "prunable": self.prunable, "reason": self.reason}


@dataclass
class GraphInfo:
    """The DependencyGraph plus what we derived from it (kept together so pruning reuses one trace)."""

    dg: tp.DependencyGraph
    groups: list[ChannelGroup]
    roots: dict[str, nn.Module]
    blocks: dict[str, int]                      # group name -> structured blocks (grouped convs)
    output_shape: tuple[int, ...]
    names: dict[nn.Module, str]


def _net(model: Any) -> nn.Module:
    return model.model if hasattr(model, "model") and isinstance(model.model, nn.Module) else model


def _output_layers(net: nn.Module, x: torch.Tensor) -> tuple[set[nn.Module], torch.Tensor]:
    """Conv/Linear layers whose outputs are the network's outputs (their channels are never pruned)."""
    seen: list[tuple[nn.Module, torch.Tensor]] = []
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append((m, o))) for m in net.modules()
             if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            out = net(x)
    finally:
        for h in hooks:
            h.remove()
    outs = [out] if isinstance(out, torch.Tensor) else [o for o in (out if isinstance(out, (list, tuple)) else [])
                                                        if isinstance(o, torch.Tensor)]
    ptrs = {o.data_ptr() for o in outs}
    found = {m for m, o in seen if isinstance(o, torch.Tensor) and o.data_ptr() in ptrs}
    if not found and seen:
        found = {seen[-1][0]}
    if not outs:
        raise UserError("the model's forward() returns no tensor; channel groups need a tensor output")
    return found, outs[0]


def _matches(name: str, patterns: Sequence[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in patterns)


def analyse(model: Any, input_shape: tuple[int, ...] = (1, 3, 32, 32), exclude: Sequence[str] = ()) -> GraphInfo:
    """Trace the model once (eval mode, so BN statistics are untouched) and derive its channel groups."""
    net = _net(model)
    names = {m: n for n, m in net.named_modules()}
    all_names = set(names.values())
    bad = [e for e in exclude if not any(n == e or n.startswith(e + ".") for n in all_names)]
    if bad:
        convs = [n for n, m in net.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))][:6]
        raise UserError(f"--exclude {' '.join(bad)}: no such module; use module names like {', '.join(convs)}")
    was = net.training
    net.eval()
    x = torch.randn(1, *input_shape[1:])
    try:
        out_layers, out = _output_layers(net, x)
        try:
            dg = tp.DependencyGraph().build_dependency(net, example_inputs=x, verbose=False)
        except Exception as e:  # tracing failures are a limitation of the model, tell the user which
            raise UserError(f"cannot trace the model's channel dependencies ({type(e).__name__}: "
                            f"{str(e).splitlines()[0][:120]}); use --uniform on a traceable model") from None
    finally:
        net.train(was)
    groups: list[ChannelGroup] = []
    roots: dict[str, nn.Module] = {}
    blocks: dict[str, int] = {}
    for g in dg.get_all_groups(root_module_types=(nn.Conv2d, nn.Linear)):
        root = g[0].dep.target.module
        name = names.get(root, "")
        members: list[tuple[str, str]] = []
        reason = ""
        grouped: list[int] = []
        for dep, _idxs in g:
            m = dep.target.module
            if not isinstance(m, MEMBER_TYPES):
                continue
            side = "out" if dg.is_out_channel_pruning_fn(dep.handler) else "in"
            mname = names.get(m, "?")
            if (mname, side) not in members:
                members.append((mname, side))
            if isinstance(m, nn.Conv2d) and m.groups > 1 and not (m.groups == m.in_channels == m.out_channels):
                grouped.append(m.groups)
            if side == "out" and m in out_layers:
                reason = f"sets the network's outputs ({mname})"
            elif _matches(mname, exclude) and not reason:
                reason = f"excluded ({mname})"
        width = len(g[0].idxs)
        div = math.lcm(*grouped) if grouped else 1
        if not reason and width <= 1:
            reason = "a single channel"
        groups.append(ChannelGroup(name, width, members, div, not reason, reason))
        roots[name] = root
        blocks[name] = div
    order = {n: i for i, n in enumerate(names.values())}
    groups.sort(key=lambda c: order.get(c.name, 0))
    return GraphInfo(dg, groups, roots, blocks, tuple(out.shape), names)


def channel_groups(model: Any, input_shape: tuple[int, ...] = (1, 3, 32, 32),
                   exclude: Sequence[str] = ()) -> list[ChannelGroup]:
    """All channel groups of `model` (prunable or not), in module order."""
    return analyse(model, input_shape, exclude).groups


def valid_width(width: int, full: int, divisor: int) -> bool:
    return 1 <= width <= full and (width == full or width % divisor == 0)


def snap_width(width: float, full: int, divisor: int = 1, channel_divisible: int = 1) -> int:
    """Round a wanted width to the nearest allowed one (multiple of lcm(divisor, channel_divisible), <= full)."""
    step = math.lcm(max(1, divisor), max(1, channel_divisible))
    if full <= step:
        return full
    w = int(round(width / step)) * step
    return int(min(full, max(step, w)))


def removal_indices(scores: np.ndarray, keep: int, blocks: int = 1) -> list[int]:
    """Indices to remove so that the `keep` highest-scoring channels remain.

    With `blocks` > 1 (grouped convs) the channels are `blocks` equal blocks and the same relative
    positions are kept in every block (what grouped convolutions need), scored by their sum.
    """
    n = len(scores)
    if blocks > 1:
        b = n // blocks
        rel = np.asarray(scores, dtype=np.float64).reshape(blocks, b).sum(0)
        keep_rel = np.sort(np.argsort(-rel, kind="stable")[: keep // blocks])
        drop_rel = sorted(set(range(b)) - set(keep_rel.tolist()))
        return [blk * b + r for blk in range(blocks) for r in drop_rel]
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    return sorted(int(i) for i in order[keep:])


def apply_widths(model: Any, input_shape: tuple[int, ...], widths: dict[str, int],
                 scores: dict[str, np.ndarray] | None = None, criterion: str = "l2",
                 loader: Any = None, info: GraphInfo | None = None) -> nn.Module:
    """Physically prune each named group to its width, keeping its most important channels. IN PLACE:
    the given model is changed and returned. Groups not named in `widths` keep their width.
    The output shape is checked to be unchanged.
    """
    net = _net(model)
    info = info or analyse(net, input_shape)
    by = {g.name: g for g in info.groups}
    unknown = [k for k in widths if k not in by]
    if unknown:
        raise UserError(f"unknown channel group(s) {', '.join(unknown[:5])}; the model's groups are "
                        f"{', '.join(list(by)[:8])}{' ...' if len(by) > 8 else ''} (regenerate the plan for this model)")
    todo = []
    for name, w in widths.items():
        g = by[name]
        w = int(w)
        if w == g.width:
            continue
        if not g.prunable:
            raise UserError(f"group {name} cannot be pruned ({g.reason}); keep its width {g.width}")
        if not valid_width(w, g.width, g.divisor):
            raise UserError(f"width {w} for group {name} is invalid: it must be 1..{g.width} and a multiple "
                            f"of {g.divisor}")
        todo.append((g, w))
    if not todo:
        return net
    if scores is None:
        from hw_prune.prune.importance import group_importance

        scores = group_importance(net, input_shape, [g for g, _ in todo], criterion, loader=loader, info=info)
    was = net.training
    net.eval()
    for g, w in todo:
        s = np.asarray(scores[g.name])
        if len(s) != g.width:
            raise UserError(f"importance scores for {g.name} have {len(s)} entries, the group has {g.width}")
        idxs = removal_indices(s, w, info.blocks.get(g.name, 1))
        root = info.roots[g.name]
        pg = info.dg.get_pruning_group(root, info.dg.get_pruner_of_module(root).prune_out_channels, idxs)
        pg.prune()
    try:
        with torch.no_grad():
            out = net(torch.zeros(1, *input_shape[1:]))
    finally:
        net.train(was)
    if tuple(out.shape[1:]) != tuple(info.output_shape[1:]):
        raise RuntimeError(f"pruning changed the output shape {info.output_shape} -> {tuple(out.shape)}")
    return net


def current_widths(model: Any, input_shape: tuple[int, ...] = (1, 3, 32, 32)) -> dict[str, int]:
    return {g.name: g.width for g in channel_groups(model, input_shape)}
